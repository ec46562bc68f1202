"""study.py's report on hand-made run folders, against exact oracles: McNemar's counts of a pair of
predictions files matched by problem id, the p of each seed and the verdict, the mean and spread over
seeds, eval folders found by what their eval.json scored, the report-only command, a resumed study
that retrains nothing, and a run folder trained with other settings refused. No training: seconds."""
import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from math import comb
from pathlib import Path

import pytest

import study
from train import TrainConfig, resolve_config

ROOT = Path(__file__).resolve().parent.parent
SEEN = "results/seen-stories/seen-stories.jsonl"
WHERE = {"seen": {"split": None, "eval_file": SEEN}, "val": {"split": "val", "eval_file": None}, "test": {"split": "test", "eval_file": None}}


def write_eval(folder, s, rows, limit=0, calculator=True, predictions=True):
    """An eval folder as evaluate.py writes it, cut to what the study reads: eval.json and predictions.jsonl
    of rows [(problem id, right)]."""
    folder.mkdir(parents=True)
    k, n = sum(ok for _, ok in rows), len(rows)
    result = {"task": None, "n": n, "correct": k, "exact_match": k / n, "exact_match_ci95": [0.0, 1.0]}
    (folder / "eval.json").write_text(json.dumps({"mode": "x", **WHERE[s], "limit": limit, "calculator": calculator, "results": [result]}))
    if predictions:
        (folder / "predictions.jsonl").write_text("".join(json.dumps({"id": i, "task": None, "correct": ok}) + "\n" for i, ok in rows))


def make_run(root, name, mode, seed, sets, **config):
    """A run folder with the recipe's config.json (mode and seed set) and an eval folder per set:
    sets = {set: rows}, named eval-<set> as the lead's shell script names them."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**asdict(TrainConfig()), "mode": mode, "seed": seed, **config}))
    for s, rows in sets.items():
        write_eval(run / f"eval-{s}", s, rows)
    return run


def pair_rows(both_right, only_a, only_b, both_wrong):
    """Two runs' rows over the same problems, with McNemar's four counts as given: (a's rows, b's rows)."""
    kinds = [(True, True)] * both_right + [(True, False)] * only_a + [(False, True)] * only_b + [(False, False)] * both_wrong
    return [(f"p{i}", a) for i, (a, _) in enumerate(kinds)], [(f"p{i}", b) for i, (_, b) in enumerate(kinds)]


def exact_p(b, c):
    """McNemar's two-sided exact p by hand: 2 P(X <= min(b, c)), X ~ Bin(b + c, 1/2), at most 1."""
    return min(1.0, 2 * sum(comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))


def test_mcnemar_counts_of_a_hand_made_pair_matched_by_id(tmp_path):
    cot, answer = pair_rows(both_right=3, only_a=10, only_b=2, both_wrong=5)
    answer = answer[::-1] + [("only-in-answer", True)]  # another order, and one problem cot was not asked
    runs = study.collect_runs([make_run(tmp_path, "c", "cot", 1, {"test": cot}), make_run(tmp_path, "a", "answer", 1, {"test": answer})], None)
    result = study.analyse(runs)
    [test] = result["paired"]
    assert {k: test[k] for k in ("set", "seed", "a", "b", "n", "both_right", "only_a", "only_b", "both_wrong", "unpaired")} == \
        {"set": "test", "seed": 1, "a": "cot", "b": "answer", "n": 20, "both_right": 3, "only_a": 10, "only_b": 2, "both_wrong": 5, "unpaired": 1}
    assert test["p_exact"] == pytest.approx(158 / 4096) == pytest.approx(exact_p(10, 2))
    assert (test["a_exact_match"], test["b_exact_match"]) == (13 / 20, 5 / 20)
    assert runs[1]["scores"]["test"]["n"] == 21 and runs[1]["scores"]["test"]["correct"] == 6  # its own score: every problem it was asked
    assert result["verdicts"][0]["text"].startswith("cot beats answer on test with p < 0.05 in 1 of 1 seed (seed 1: 10 right only by cot, 2 only by answer, p = 0.03857)")


def three_seeds(root):
    """cot and answer on 20 test problems for seeds 1337, 2 and 3: cot wins clearly in two, ties in the third.
    cot's exact match 0.5, 0.75, 0.25 (mean 0.5); answer's 0.0, 0.2, 0.25 (mean 0.15)."""
    counts = {1337: (0, 10, 0, 10), 2: (3, 12, 1, 4), 3: (2, 3, 3, 12)}
    dirs = []
    for seed, c in counts.items():
        cot, answer = pair_rows(*c)
        dirs += [make_run(root / "runs", f"cot-16k-s{seed}", "cot", seed, {"test": cot}),
                 make_run(root / "runs", f"answer-16k-s{seed}", "answer", seed, {"test": answer})]
    return dirs


def test_per_seed_p_verdict_and_mean_with_spread_over_seeds(tmp_path):
    result = study.analyse(study.collect_runs(three_seeds(tmp_path), None))
    p = {t["seed"]: t["p_exact"] for t in result["paired"]}
    assert p == pytest.approx({1337: exact_p(10, 0), 2: exact_p(12, 1), 3: 1.0})
    [v] = result["verdicts"]
    assert (v["a_wins"], v["b_wins"], v["seeds"]) == ([1337, 2], [], [1337, 2, 3])
    assert v["text"] == ("cot beats answer on test with p < 0.05 in 2 of 3 seeds (seed 1337: 10 right only by cot, 0 only by answer, "
                         "p = 0.001953; seed 2: 12 right only by cot, 1 only by answer, p = 0.003418; seed 3: 3 right only by cot, "
                         "3 only by answer, p = 1)")
    assert result["means"]["test"]["cot"] == pytest.approx({"mean": 0.5, "min": 0.25, "max": 0.75, "seeds": [1337, 2, 3]})
    assert result["means"]["test"]["answer"] == pytest.approx({"mean": 0.15, "min": 0.0, "max": 0.25, "seeds": [1337, 2, 3]})
    report = "\n".join(study.report_lines(result))
    assert "| cot | 3 | 50.0% (25.0-75.0%) |" in report and "| answer | 3 | 15.0% (0.0-25.0%) |" in report
    assert "- **cot beats answer on test with p < 0.05 in 2 of 3 seeds" in report
    assert "| 2 | cot | answer | 20 | 3 | 12 | 1 | 4 | 75.0% | 20.0% | 0.003418 |" in report


def test_verdict_counts_the_other_way_too():
    tests = [{"a": "cot", "b": "answer", "set": "val", "seed": s, "only_a": a, "only_b": b, "p_exact": exact_p(a, b)}
             for s, a, b in ((1, 0, 9), (2, 9, 0), (3, 1, 7))]  # answer wins seed 1 (p 0.0039), cot seed 2, seed 3 p 0.07
    v = study.verdict(tests, "cot", "answer", "val")
    assert (v["a_wins"], v["b_wins"]) == ([2], [1])
    assert v["text"].startswith("cot beats answer on val with p < 0.05 in 1 of 3 seeds; answer beats cot in 1 (")
    assert study.verdict(tests, "cot", "answer", "test") is None


def test_report_only_command_reads_modes_seeds_and_sets_from_the_files(tmp_path):
    """The published result's command: runs named by a quoted glob, folders named anyhow; mode and seed from
    config.json, the set of each eval folder from its eval.json; no path of this machine in what it writes."""
    dirs = three_seeds(tmp_path)
    seen_cot, seen_answer = pair_rows(5, 4, 0, 1)
    write_eval(dirs[0] / "scored-on-stories", "seen", seen_cot)  # not named eval-seen: found by its eval_file
    write_eval(dirs[1] / "eval-seen", "seen", seen_answer)
    (dirs[0] / "eval-test").rename(dirs[0] / "whatever")
    r = subprocess.run([sys.executable, str(ROOT / "study.py"), "--report-only", "--runs", "runs/*-16k-s*", "--out", "paired"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    report, summary = (tmp_path / "paired" / "report.md").read_text(), (tmp_path / "paired" / "study.json").read_text()
    assert "cot beats answer on test with p < 0.05 in 2 of 3 seeds" in r.stdout and "in 2 of 3 seeds" in report
    assert "| runs/cot-16k-s1337 | cot | 1337 | 10/20 | 50.0% | 29.9-70.1% | whatever |" in report
    assert "| 1337 | cot | answer | 10 | 5 | 4 | 0 | 1 | 90.0% | 50.0% | 0.125 |" in report  # seen stories, seed 1337 only
    assert "cot beats answer on seen stories with p < 0.05 in 0 of 1 seed" in report
    assert "runs/answer-16k-s2: no evaluation of seen found" in report
    assert "| cot | 3 | 90.0% (90.0-90.0%, 1 seed) | 50.0% (25.0-75.0%) |" in report  # seen: seed 1337 alone
    data = json.loads(summary)
    assert data["report_only"] and data["seeds"] == [1337, 2, 3] and data["steps"] == [] and len(data["runs"]) == 6
    assert str(tmp_path) not in report + summary and str(ROOT) not in report + summary


def test_eval_folders_found_by_eval_json_and_chosen_when_several(tmp_path):
    right = [("p0", True), ("p1", False)]
    run_dir = make_run(tmp_path, "r", "cot", 1, {"test": right})
    write_eval(run_dir / "eval-test-limit1", "test", right[:1], limit=1)  # fewer problems: loses
    write_eval(run_dir / "eval-val-nocalc", "val", right, calculator=False)
    write_eval(run_dir / "eval-test-copied", "test", right, predictions=False)  # all else alike, but no predictions kept: loses
    write_eval(run_dir / "eval-other", "test", right)
    (run_dir / "eval-other" / "eval.json").write_text(json.dumps({**json.loads((run_dir / "eval-other" / "eval.json").read_text()),
                                                                  "eval_file": "elsewhere.jsonl", "split": None}))  # another file: not a set
    found = study.find_evals(study.read_run(run_dir))
    assert {s: f.name for s, f in found.items()} == {"test": "eval-test", "val": "eval-val-nocalc"}
    write_eval(run_dir / "eval-test-copy", "test", right)  # the same evaluation made twice: either will do
    assert study.find_evals(study.read_run(run_dir))["test"].name == "eval-test"
    shutil.rmtree(run_dir / "eval-test-copy")
    write_eval(run_dir / "eval-test-copy", "test", right[::-1] + [("p2", True)])  # alike but for its results: which one?
    with pytest.raises(SystemExit, match="eval-test and eval-test-copy both score test alike, with other results"):
        study.find_evals(study.read_run(run_dir))
    (run_dir / "metrics.json").write_text(json.dumps({"scores": {"test": {"eval": "eval-test-copy"}}}))  # what train.py wrote wins
    assert study.find_evals(study.read_run(run_dir))["test"].name == "eval-test-copy"


def test_predictions_missing_and_no_checkpoint_then_exact_match_only(tmp_path):
    a = make_run(tmp_path, "a", "answer", 1, {})
    c = make_run(tmp_path, "c", "cot", 1, {"test": [("p0", True), ("p1", True), ("p2", False)]})
    write_eval(a / "eval-test", "test", [("p0", False), ("p1", True), ("p2", False)], predictions=False)
    runs = study.collect_runs([a, c], None)  # no last.pt: nothing can be scored again
    assert runs[0]["scores"]["test"] | {"by_id": None} == {"n": 3, "correct": 1, "exact_match": 1 / 3, "ci95": pytest.approx([0.0615, 0.7923], abs=1e-4),
                                                           "eval": "eval-test", "calculator": True, "limit": 0, "by_id": None}
    result = study.analyse(runs)
    assert result["paired"] == [] and result["verdicts"] == []
    assert "cot against answer, seed 1, test: not tested (a run has no evaluation of it with predictions.jsonl)" in result["notes"]
    assert "| a | answer | 1 | 1/3 | 33.3% | 6.1-79.2% | eval-test (no predictions.jsonl) |" in "\n".join(study.report_lines(result))


def test_what_is_scored_again_and_how(tmp_path):
    """With a last.pt: a set without a folder is scored as train.py would have, a folder without predictions.jsonl again in place."""
    run_dir = make_run(tmp_path, "r", "cot", 1, {"seen": [("s0", True)]}, test_limit=8, mask_results=False)
    write_eval(run_dir / "eval-test", "test", [("p0", True)], limit=8, calculator=False, predictions=False)
    run = study.read_run(run_dir)
    assert study.remake_commands(run, study.find_evals(run), "python") == []  # no last.pt: nothing to score
    (run_dir / "last.pt").write_bytes(b"")
    assert study.remake_commands(run, study.find_evals(run), "python", ["--batch-size", "16"]) == [
        ["python", "evaluate.py", str(run_dir), "--split", "val", "--limit", "8", "--no-calculator", "--latency-samples", "0", "--batch-size", "16"],
        ["python", "evaluate.py", str(run_dir), "--split", "test", "--limit", "8", "--no-calculator", "--out", str(run_dir / "eval-test"), "--batch-size", "16"]]


def test_two_runs_of_one_mode_and_seed_exit(tmp_path):
    dirs = [make_run(tmp_path, name, "cot", 2, {}) for name in ("base-s2", "depth6-s2")]
    with pytest.raises(SystemExit, match="base-s2 and .*depth6-s2 are both cot with seed 2"):
        study.collect_runs(dirs, None)


def test_runs_trained_otherwise_are_named_in_the_notes(tmp_path):
    dirs = [make_run(tmp_path, "c", "cot", 1, {}), make_run(tmp_path, "a", "answer", 1, {}, lr=2e-3)]
    notes = study.analyse(study.collect_runs(dirs, None))["notes"]
    assert [n for n in notes if "not trained alike" in n] == [f"the runs were not trained alike: --lr 0.001 in {study.shown(dirs[0])}; 0.002 in {study.shown(dirs[1])}"]


def test_resumed_study_retrains_nothing_and_refuses_other_settings(tmp_path):
    """What each run of a study still needs: a finished one (metrics.json) nothing, a half-trained one --resume,
    one trained with other settings is refused untouched."""
    args = study.parse_args(["--preset", "smoke", "--out", str(tmp_path)])
    run_dir = tmp_path / "cot-s1337"
    run_dir.mkdir()
    config = asdict(resolve_config(study.train_argv(args, run_dir, "cot", 1337))[0])
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "last.pt").write_bytes(b"")
    assert study.plan_run(args, "python", run_dir, "cot", 1337) == \
        ["python", "train.py", "--mode", "cot", "--seed", "1337", "--out", str(run_dir), "--preset", "smoke", "--resume"]
    (run_dir / "metrics.json").write_text("{}")
    assert study.plan_run(args, "python", run_dir, "cot", 1337) is None
    (run_dir / "config.json").write_text(json.dumps({**config, "epochs": 3.0}))
    with pytest.raises(SystemExit, match=r"was trained with --epochs 3.0, not 4 as this study asks"):
        study.plan_run(args, "python", run_dir, "cot", 1337)
    with pytest.raises(SystemExit, match="was trained with --seed 1337, not 2"):  # a run is one seed's
        (run_dir / "config.json").write_text(json.dumps(config))
        study.plan_run(args, "python", run_dir, "cot", 2)


def test_flags_modes_seeds_and_pairs():
    assert study.parse_args([]).modes == ["cot", "answer"] and study.parse_args([]).seeds == [1337]
    assert study.parse_args([]).out == "runs/study" and study.parse_args(["--preset", "smoke"]).out == "runs/study-smoke"
    args = study.parse_args(["--seeds", "1337,2,3", "--controls"])
    assert (args.modes, args.seeds) == (["cot", "answer", "filler", "shuffled"], [1337, 2, 3])
    assert study.comparisons(args.modes) == [("cot", "answer"), ("filler", "answer"), ("shuffled", "answer"), ("filler", "cot"), ("shuffled", "cot")]
    assert study.train_argv(study.parse_args([]), Path("runs/study/cot-s2"), "cot", 2) == ["--mode", "cot", "--seed", "2", "--out", "runs/study/cot-s2"]
    assert study.shown("runs/x") == "runs/x" and study.shown("/nowhere/else/cot-s2") == "cot-s2"


def test_scores_that_disagree_with_metrics_json_are_noted(tmp_path):
    run_dir = make_run(tmp_path, "c", "cot", 1, {"test": [("p0", True), ("p1", False)]})
    (run_dir / "metrics.json").write_text(json.dumps({"scores": {"test": {"eval": "eval-test", "n": 2, "correct": 1}}}))
    assert not [n for n in study.analyse(study.collect_runs([run_dir], None))["notes"] if "metrics.json" in n]
    (run_dir / "metrics.json").write_text(json.dumps({"scores": {"test": {"eval": "eval-test", "n": 2, "correct": 2}}}))
    notes = study.analyse(study.collect_runs([run_dir], None))["notes"]
    assert f"{study.shown(run_dir)}: metrics.json says 2/2 on test, eval-test 1/2" in notes
