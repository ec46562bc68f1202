"""The comparison report (report.py): McNemar's tests, marked slips, and report.md from hand-made eval folders and teachers."""
import json
from pathlib import Path

import pytest

import charts
import data
import evaluate as ev
import report
from test_evaluate import row


def test_mcnemar_exact_against_known_values():
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 7
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 7
    t = report.mcnemar(a, b)
    assert (t["n"], t["both_right"], t["only_a"], t["only_b"], t["both_wrong"]) == (24, 5, 10, 2, 7)
    assert t["p_exact"] == pytest.approx(158 / 4096) and round(t["p_exact"], 4) == 0.0386  # 2 * P(X <= 2 | 12, 1/2)
    assert t["chi2"] == pytest.approx(49 / 12) and round(t["p_chi2"], 4) == 0.0433         # chi-square table, 1 dof
    assert report.mcnemar(b, a)["p_exact"] == t["p_exact"]                                     # two-sided: symmetric
    t = report.mcnemar([True, False] * 3, [False, True] * 3)                                    # b == c: no difference at all
    assert (t["only_a"], t["only_b"], t["p_exact"], t["chi2"], t["p_chi2"]) == (3, 3, 1.0, 0.0, 1.0)
    t = report.mcnemar([True], [False])                                                         # |b - c| = 1: the correction's floor
    assert (t["p_exact"], t["chi2"], t["p_chi2"]) == (1.0, 0.0, 1.0)
    assert report.mcnemar([True, True], [True, True])["p_exact"] == 1.0                        # no discordant pair
    assert report.mcnemar([True] * 6, [False] * 6)["p_exact"] == pytest.approx(2 / 64)          # 0.03125


def write_eval(folder, mode, outputs, golds, run_dir):
    """An eval folder as evaluate_run writes it, from hand-made outputs."""
    folder.mkdir(parents=True)
    rows = [{**row(o, g, question=f"question {i}?"), "id": f"test-{i:05d}"} for i, (o, g) in enumerate(zip(outputs, golds))]
    m = {**ev.summarize(rows), "task": None, "label": mode, "latency_ms_median": 5.0 if mode == "answer" else 50.0,
         "latency_ms_p90": 60.0, "samples_per_s": 10.0, "tokens_per_s": 100.0}
    report = {"run": str(run_dir), "mode": mode, "device": "cpu", "results": [m],
              "efficiency": {"params": 2_000_000, "params_no_embeddings": 1_000_000, "peak_memory_mb": 300.0}}
    (folder / "eval.json").write_text(json.dumps(report))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_compare_on_hand_made_evals(tmp_path):
    # 24 problems, gold 1..24; baseline right on 0-9 and 12-16, cot right on 10-16: b = 10, c = 2
    golds = [str(i + 1) for i in range(24)]
    base_right, cot_right = set(range(10)) | set(range(12, 17)), set(range(10, 17))
    base_out = [f"#### {g if i in base_right else 0}" for i, g in enumerate(golds)]
    cot_out = [f"{g} - 1 = {int(g) - 1}\n{int(g) - 1} + 1 = {g}\n#### {g}" if i in cot_right else
               f"{g} * 2 = {2 * int(g) + 1}\n#### {2 * int(g) + 1}" for i, g in enumerate(golds)]
    (tmp_path / "cot").mkdir()
    (tmp_path / "cot" / "log.jsonl").write_text(json.dumps({"step": 1, "epoch": 0, "loss": 5.0, "lr": 0.1, "tokens": 1, "time": 1}) + "\n"
                                                + json.dumps({"step": 2, "val_loss": 4.0, "val_em": 0.5}) + "\n")
    write_eval(tmp_path / "answer" / "eval-test", "answer", base_out, golds, tmp_path / "answer")
    write_eval(tmp_path / "cot" / "eval-test", "cot", cot_out, golds, tmp_path / "cot")
    args = ev.parse_args(["--compare", "x", "--out", str(tmp_path / "report")])
    md = report.compare([tmp_path / "cot" / "eval-test", tmp_path / "answer" / "eval-test"], args).read_text()
    assert "| cot | 24 | 5 | 2 | 10 | 7 | 0.03857 |" in md                 # McNemar row, exact p to 4 digits
    assert "| answer (baseline) | 0.625 (0.427-0.788) |" in md             # 15/24 with its Wilson interval
    assert "| cot | 0.292 (0.149-0.492) | 2.00M (1.00M) | 50 / 60 |" in md  # 7/24
    assert "arithmetic slip**: 17 of 24" in md and "baseline right, cot wrong: 10 of 24 problems" in md
    assert "| cot | 7 (29%) | 17 (71%) | 0 (0%) | 0 (0%) | 0 (0%) |" in md
    # the baseline can be named; the answer run then is a student like any other
    md = report.compare([tmp_path / "cot" / "eval-test", tmp_path / "answer" / "eval-test"],
                    ev.parse_args(["--compare", "x", "--baseline", str(tmp_path / "cot"), "--out", str(tmp_path / "r2")])).read_text()
    assert "| answer | 24 | 5 | 10 | 2 | 7 | 0.03857 |" in md
    assert "Warning" not in md
    # two runs of one mode are told apart by their folders, in every table
    write_eval(tmp_path / "cot2" / "eval-test", "cot", cot_out, golds, tmp_path / "cot2")
    md = report.compare([tmp_path / "cot" / "eval-test", tmp_path / "cot2" / "eval-test", tmp_path / "answer" / "eval-test"],
                    ev.parse_args(["--compare", "x", "--out", str(tmp_path / "r3")])).read_text()
    assert "| cot [cot] | 24 | 5 | 2 | 10 | 7 | 0.03857 |" in md and "| cot [cot2] | 24 | 5 | 2 | 10 | 7 | 0.03857 |" in md


def test_compare_of_runs_scored_on_different_problems_shows_each_n_and_warns(tmp_path):
    """One run scored on 24 problems, the other on 5 of them: never 'Problems: 24 per model'; the paired test counts 5."""
    golds = [str(i + 1) for i in range(24)]
    write_eval(tmp_path / "answer" / "eval-test", "answer", [f"#### {g}" for g in golds], golds, tmp_path / "answer")
    write_eval(tmp_path / "cot" / "eval-test", "cot", [f"1 + 1 = 2\n#### {g}" for g in golds[:5]], golds[:5], tmp_path / "cot")
    md = report.compare([tmp_path / "answer" / "eval-test", tmp_path / "cot" / "eval-test"],
                        ev.parse_args(["--compare", "x", "--out", str(tmp_path / "report")])).read_text()
    assert "per model" not in md and "Problems: not the same for every model (answer 24, cot 5; test)" in md
    assert "**Warning: the models were scored on different problems (answer 24, cot 5): their exact matches are not comparable" in md
    assert "| cot | 5 | 5 | 0 | 0 | 0 | 1 |" in md  # McNemar on the 5 shared problems only
    (tmp_path / "notes.md").write_text("mine\n")  # --out naming a file: refused, the file kept
    with pytest.raises(ValueError, match="notes.md is a file"):
        report.compare([tmp_path / "answer" / "eval-test"], ev.parse_args(["--compare", "x", "--out", str(tmp_path / "notes.md")]))
    assert (tmp_path / "notes.md").read_text() == "mine\n"


def test_compare_warns_near_the_table_when_a_reasoning_model_writes_no_reasoning(tmp_path):
    golds = [str(i + 1) for i in range(6)]
    write_eval(tmp_path / "answer" / "eval-test", "answer", [f"#### {g}" for g in golds], golds, tmp_path / "answer")
    write_eval(tmp_path / "cot" / "eval-test", "cot", [f"#### {g}" for g in golds], golds, tmp_path / "cot")
    md = report.compare([tmp_path / "answer" / "eval-test", tmp_path / "cot" / "eval-test"],
                    ev.parse_args(["--compare", "x", "--out", str(tmp_path / "report")])).read_text()
    table, rest = md.split("## Errors inside the reasoning")
    assert "**Warning: cot writes no reasoning: 0.0 steps per output**" in table.split("| cot |")[-1]
    assert "answer writes" not in md and "Warning" not in rest


def test_mark_first_slip():
    teacher = "2 + 2 = 4\n4 * 3 = 12\n#### 12"
    assert report.mark_first_slip("2 + 2 = 4\n4 * 3 = 13\n4 + 1 = 6\n#### 13", teacher) == \
        "2 + 2 = 4\n4 * 3 = 13   <-- first false step: 4 * 3 is 12\n4 + 1 = 6\n#### 13"  # only the first is marked
    assert report.mark_first_slip("2 + 3 = 5\n5 * 3 = 15\n#### 15", teacher) == \
        "2 + 3 = 5   <-- first wrong step: the teacher computes no 5\n5 * 3 = 15\n#### 15"  # true, but off its path
    assert report.mark_first_slip("2 + 2 = 4\n4 * 3 = 12\n#### 12", teacher) == "2 + 2 = 4\n4 * 3 = 12\n#### 12"
    assert report.mark_first_slip("1 + 1 = 12\n#### 12", teacher).endswith("first false step: 1 + 1 is 2\n#### 12")


def test_mcnemar_bound_and_sizes():
    assert report.exact_p(10, 2) == pytest.approx(158 / 4096) and report.exact_p(0, 0) == 1.0
    # right on 15 and 22 of 24: they overlap on 13 to 15 problems; 13 gives the largest p, 2 * P(X <= 2 | 11)
    assert report.mcnemar_bound(15, 22, 24) == pytest.approx(2 * (1 + 11 + 55) / 2 ** 11)
    assert report.mcnemar_bound(5, 5, 10) == 1.0                    # they may be right on the same five
    assert report.mcnemar_bound(36, 1240, 1319) < 1e-300 and report.fmt_p(0.0) == "<1e-300"  # 0.0: beyond a float
    assert [charts.size_label(x) for x in (6_540_000, 175e9, 1e12, 500)] == ["6.54M", "175B", "1T", "500"]


def write_teacher(path, outputs, correct, model, params=None, published=None):
    """A teacher eval file as teacher.py --recorded writes it, from hand-made outputs."""
    rows = [{"id": f"test-{i:05d}", "question": f"question {i}?", "gold": str(i + 1), "output": o, "pred": data.extract_answer(o),
             "model": model, "correct": c, "prompt_tokens": None, "completion_tokens": None, "latency_s": None,
             "finish_reason": None} for i, (o, c) in enumerate(zip(outputs, correct))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    Path(f"{path}.summary.json").write_text(json.dumps({
        "mode": "recorded", "model": model, "recorded": f"{model}.json", "n": len(rows), "correct": sum(correct),
        "exact_match": sum(correct) / len(rows), "completion_tokens": 0, "latency_median_s": None, "latency_p90_s": None,
        "params": params, "published_exact_match": published, "empty_outputs": 0}))
    return path


def test_compare_with_teachers(tmp_path):
    # the 24 problems of test_compare_on_hand_made_evals: baseline right on 0-9 and 12-16, cot on 10-16
    golds = [str(i + 1) for i in range(24)]
    base_right, cot_right = set(range(10)) | set(range(12, 17)), set(range(10, 17))
    two_steps = lambda g: f"{g} - 1 = {int(g) - 1}\n{int(g) - 1} + 1 = {g}\n#### {g}"
    write_eval(tmp_path / "answer" / "eval-test", "answer", [f"#### {g if i in base_right else 0}" for i, g in enumerate(golds)],
               golds, tmp_path / "answer")
    write_eval(tmp_path / "cot" / "eval-test", "cot", [two_steps(g) if i in cot_right else f"{g} * 2 = {2 * int(g) + 1}\n#### {2 * int(g) + 1}"
                                                       for i, g in enumerate(golds)], golds, tmp_path / "cot")
    # big: right on all but 0 and 1, with cot's steps where it is right; secret: answers only, right on 0-11
    big = write_teacher(tmp_path / "big.jsonl", [two_steps(g) if i > 1 else "2 + 2 = 4\n4 * 3 = 13\n#### 13" for i, g in enumerate(golds)],
                        [i > 1 for i in range(24)], "big-175b", params=175e9, published=0.9)
    secret = write_teacher(tmp_path / "secret.jsonl", [f"#### {g if i < 12 else 0}" for i, g in enumerate(golds)],
                           [i < 12 for i in range(24)], "secret")
    runs = [tmp_path / "answer" / "eval-test", tmp_path / "cot" / "eval-test"]
    args = ev.parse_args(["--compare", "x", "--teacher", str(big), "--teacher", str(secret), "--out", str(tmp_path / "r"), "--side-by-side", "2",
                          "--data-dir", str(tmp_path / "no-gsm8k")])
    md = report.compare(runs, args).read_text()
    assert "| teacher big-175b (recorded, n=24) | 0.917 (0.742-0.977) | 175B (published) | — | — | — | — | 2.0 | 4.2% (8.3%) | recorded |" in md
    assert "| teacher secret (recorded, n=24) | 0.500 (0.314-0.686) | — |" in md
    # grounded: of each '{g} - 1 = {g-1}' / '{g-1} + 1 = {g}' with question 'question {g-1}?', only the carried {g-1}
    assert "| big-175b | `big-175b.json` | 91.7% | 90.0% | +1.7 | 0 | 25.0% |" in md and "| secret | `secret.json` | 50.0% | — | — | 0 | — |" in md
    # the best student is the baseline (15 of 24); against big: b = 2 (problems 0, 1), c = 9
    assert "### The best student (answer, 62.5%) against each teacher" in md
    assert "| big-175b | 24 | 13 | 2 | 9 | 0 | 0.06543 |" in md
    # cot's values against big's: 14 matched (its 7 right problems) of 31 written and 48 of big's
    assert "| cot | — / — | 0.45 / 0.29 | 0.00 / — |" in md and "| answer | — / — | — / 0.00 | — / — |" in md
    assert "| teacher big-175b | — | | |" in md  # no GSM8K at --data-dir: no reference values for the teachers
    assert "Not on the size chart, their size not published (or not one model's): secret (50.0%)." in md
    side = md.split("## Side by side")[1].split("\n## ")[0]
    assert "Teacher: big-175b." in side and side.count("**test-") == 2 and "### cot" in side and "### answer" not in side
    svg = (tmp_path / "r" / "accuracy_params.svg").read_text()
    assert "big-175b" in svg and "Not placed, size not published: secret 0.500" in svg
    assert "Teacher (big-175b):" in md  # the baseline examples show the first teacher's trace

    # published results keep no predictions: the per-problem parts give way to what the counts allow
    for run in runs:
        (run / "predictions.jsonl").unlink()
    md = report.compare(runs, args).read_text()
    assert "| big-175b | 24 | — | — | — | — | ≤ 0.06543 (bound) |" in md  # overlap 13 is the largest p, as it happens
    assert "were not kept for any of the students" in md and "no paired test" in md and "| cot | — / — | — | — |" in md
    assert "No compared student that writes equations has its predictions" in md


def test_teacher_that_is_not_an_eval_file_is_refused_in_one_line(tmp_path):
    """Traces (teacher.py without --eval) or a seen-stories set given as --teacher: named, not a KeyError."""
    traces_file = tmp_path / "gpt-4o-train.jsonl"
    traces_file.write_text(json.dumps({"id": "train-00000", "question": "q?", "trace": "1 + 1 = 2\n#### 2", "answer": "2"}) + "\n")
    seen = tmp_path / "seen.jsonl"
    seen.write_text(json.dumps({"id": "seen-train-00001", "story": "train-00001", "question": "q?", "answer": "#### 3"}) + "\n")
    for path in (traces_file, seen):
        with pytest.raises(ValueError, match=f"{path.name}: row 1 is not a scored reply"):
            report.load_teachers([path])
    good = write_teacher(tmp_path / "t.jsonl", ["#### 1"], [True], "t")
    Path(f"{good}.summary.json").write_text('{"model": "t", "n"')  # cut short: the rows still count
    assert report.load_teachers([good])[0]["em"] == 1.0
