"""evaluate.py: every metric on hand-made cases with exact values, then end to end on tiny checkpoints."""
import json
import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import charts
import data
import download
import intervals
import traces
from tokenizer import train_tokenizer
import evaluate as ev

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("output, gold, cut, expected", [
    ("5 * 4 = 20\n#### 20", "20", False, "correct"),
    ("5 * 4 = 21\n#### 20", "20", False, "correct"),          # right answer despite the slip: exact match decides
    ("5 * 4 = 20\n20 * 4 = 8", "80", True, "cut_off"),
    ("5 * 4 = 21\n#### 21", "20", False, "arithmetic_slip"),
    ("5 * 4 = 20\n20 + 1 = 21\n#### 21", "19", False, "wrong_reasoning"),
    ("#### 7", "8", False, "wrong_reasoning"),                 # answer-only: nothing to check, wrong answer
    ("5 * 4 = 20 so the answer is", "20", False, "no_answer"),  # no '####': malformed, as when its last number is not gold
    ("5 * 4 = 20 so the answer is 3", "20", False, "no_answer"),
    ("", "20", False, "no_answer"),
    ("#### lots", "20", False, "no_answer"),
])
def test_classify_failure(output, gold, cut, expected):
    assert ev.classify_failure(output, gold, cut) == expected


def test_error_propagation():
    p = ev.error_propagation("5 * 4 = 21\n21 - 3 = 18\n18 / 2 = 9\n#### 9")
    assert p == {"n_steps": 3, "wrong": 1, "first_wrong": 0, "first_wrong_position": 0.0, "wrong_reused": 1, "answer_from_wrong": False}
    p = ev.error_propagation("2 + 2 = 4\n4 * 3 = 13\n#### 13")
    assert p == {"n_steps": 2, "wrong": 1, "first_wrong": 1, "first_wrong_position": 1.0, "wrong_reused": 0, "answer_from_wrong": True}
    p = ev.error_propagation("1 + 1 = 2\n2 + 2 = 5\n7 + 1 = 8\n5 * 2 = 11\n#### 11")  # two slips, the first carried on
    assert (p["first_wrong"], p["first_wrong_position"], p["wrong"], p["wrong_reused"]) == (1, 1 / 3, 2, 1)
    assert ev.error_propagation("2 + 2 = 4\n#### 4")["first_wrong"] is None
    assert ev.error_propagation("#### 4")["first_wrong_position"] is None


def test_mcnemar_exact_against_known_values():
    a = [True] * 10 + [False] * 2 + [True] * 5 + [False] * 7
    b = [False] * 10 + [True] * 2 + [True] * 5 + [False] * 7
    t = ev.mcnemar(a, b)
    assert (t["n"], t["both_right"], t["only_a"], t["only_b"], t["both_wrong"]) == (24, 5, 10, 2, 7)
    assert t["p_exact"] == pytest.approx(158 / 4096) and round(t["p_exact"], 4) == 0.0386  # 2 * P(X <= 2 | 12, 1/2)
    assert t["chi2"] == pytest.approx(49 / 12) and round(t["p_chi2"], 4) == 0.0433         # chi-square table, 1 dof
    assert ev.mcnemar(b, a)["p_exact"] == t["p_exact"]                                     # two-sided: symmetric
    t = ev.mcnemar([True, False] * 3, [False, True] * 3)                                    # b == c: no difference at all
    assert (t["only_a"], t["only_b"], t["p_exact"], t["chi2"], t["p_chi2"]) == (3, 3, 1.0, 0.0, 1.0)
    t = ev.mcnemar([True], [False])                                                         # |b - c| = 1: the correction's floor
    assert (t["p_exact"], t["chi2"], t["p_chi2"]) == (1.0, 0.0, 1.0)
    assert ev.mcnemar([True, True], [True, True])["p_exact"] == 1.0                        # no discordant pair
    assert ev.mcnemar([True] * 6, [False] * 6)["p_exact"] == pytest.approx(2 / 64)          # 0.03125


def test_reasoning_warning():
    m = lambda task, label, steps: {"task": task, "label": label, "steps_mean": steps}
    assert ev.reasoning_warning("mixed", m("cot", "mixed/cot", 0.0)) == "mixed/cot writes no reasoning: 0.0 steps per output"
    assert ev.reasoning_warning("cot", m(None, "cot+calc", 0.96)) == "cot+calc writes no reasoning: 0.96 steps per output"
    assert ev.reasoning_warning("shuffled", m(None, "shuffled", 0.5)) is not None
    assert ev.reasoning_warning("cot", m(None, "cot", 1.0)) is None            # one step per output is some reasoning
    assert ev.reasoning_warning("mixed", m("answer", "mixed/answer", 0.0)) is None  # asked to answer directly
    assert ev.reasoning_warning("answer", m(None, "answer", 0.0)) is None
    assert ev.reasoning_warning("filler", m(None, "filler", 0.0)) is None      # its reasoning is '.' tokens by design


def test_wilson_interval_known_value():
    lo, hi = intervals.wilson_interval(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)


def row(output, gold, cut=False, ref=None, n_tokens=10):
    c = traces.check_trace(output)
    return {"id": f"p{abs(hash(output)) % 10 ** 6}", "task": None, "output": output, "gold": gold, "pred": c["answer"],
            "correct": c["answer"] == gold, "category": ev.classify_failure(output, gold, cut), "cut_off": cut,
            "n_tokens": n_tokens, "step_match": traces.step_correctness(output, ref) if ref else None}


def test_summarize_hand_made():
    rows = [row("5 * 4 = 20\n20 + 1 = 21\n#### 21", "21", ref="5 * 4 = 20\n20 + 1 = 21\n#### 21", n_tokens=10),
            row("5 * 4 = 21\n21 - 1 = 20\n#### 20", "19", ref="5 * 4 = 20\n20 - 1 = 19\n#### 19", n_tokens=20),
            row("2 * 3 = 6\n6 * 3 = 18\n#### 18", "12", ref="2 * 6 = 12\n#### 12", n_tokens=30),
            row("1 + 1 = 2\n2 + 2 = 4\n4 + 4 = 8\n8 + 8 = 17\n16 + 16 = 33", "32", cut=True, n_tokens=64)]
    m = ev.summarize(rows)
    assert (m["n"], m["correct"], m["exact_match"]) == (4, 1, 0.25)
    assert m["exact_match_ci95"] == list(intervals.wilson_interval(1, 4))
    assert (m["equations"], m["wrong_equations"], m["problems_with_wrong"]) == (11, 3, 2)
    assert m["equation_error_rate"] == 3 / 11 and m["problem_error_rate"] == 0.5
    assert (m["tokens_mean"], m["tokens_median"], m["steps_mean"]) == (31.0, 25.0, 11 / 4)
    # step values, micro-averaged over the three problems with a reference: matched 2 + 1 (the 20) + 0,
    # of 6 written and 5 in the references
    assert m["step_precision"] == 3 / 6 and m["step_recall"] == 3 / 5
    assert m["failures"] == {"correct": 1, "arithmetic_slip": 1, "wrong_reasoning": 1, "no_answer": 0, "cut_off": 1}
    assert m["first_wrong_step"] == {"1": 1, "2": 0, "3": 0, "4": 1, "5+": 0}
    assert m["first_wrong_position_mean"] == pytest.approx((0 + 3 / 4) / 2)
    assert (m["wrong_results"], m["wrong_results_reused"], m["wrong_reuse_rate"]) == (3, 1, 1 / 3)
    assert m["answers_from_wrong_result"] == 1  # the cut-off one: its last number, 33, is a false result


def test_nice_ticks():
    assert charts.nice_ticks(0.03, 0.62) == [0.0, 0.2, 0.4, 0.6, 0.8]      # no negative accuracy for the margin's sake
    assert charts.nice_ticks(5, 400) == [0, 100, 200, 300, 400, 500]
    assert charts.nice_ticks(2.77, 7.29) == [2, 3, 4, 5, 6, 7, 8]
    assert charts.nice_ticks(0.34, 0.34) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # a single value sits inside the range
    assert charts.nice_ticks(-3, 4) == [-4, -2, 0, 2, 4, 6]
    assert charts.nice_ticks(0, 0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # all zero (validation at 0%): 0 to 1, not -1.5 to 1.5
    assert charts.nice_ticks(-2, -2) == [-3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5]  # a single negative value: below zero


def test_log_ticks():
    assert charts.log_ticks(6.5e6, 175e9) == [1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12]
    assert charts.log_ticks(1.89e6, 1.89e6) == [1e6, 1e7]  # every student one size: inside its decade
    assert charts.log_ticks(1e5, 1e5) == [1e4, 1e5, 1e6]    # a power of ten: not on the frame
    assert charts.log_ticks(1e6, 3e6) == [1e5, 1e6, 1e7]


def test_every_series_has_its_own_colour_and_marker():
    styles = [charts.series_style(k) for k in range(20)]
    assert len(set(styles)) == 20
    # the twelve rows of the CPU study: answer and filler (0, 8) and each '+calc' pair (k, k + 1) differ
    assert styles[0] != styles[8] and all(styles[k] != styles[k + 1] for k in range(11))


def test_spread_labels():
    assert charts.spread_labels([(0, 50, 100), (10, 60, 104), (200, 250, 104)]) == [100, 113, 104]  # only the overlapping one moves
    assert charts.spread_labels([(0, 50, 100)] * 3) == [100, 113, 126]
    assert charts.spread_labels([(0, 50, 130), (0, 50, 100), (0, 50, 110)]) == [130, 100, 113]  # placed top first
    assert charts.spread_labels([(0, 50, 100), (0, 50, 120)], gap=13) == [100, 120]  # far enough apart already
    assert charts.spread_labels([(0, 50, 100), (50, 90, 100)]) == [100, 100]  # spans that only touch
    assert charts.spread_labels([(0, 50, 100), (10, 60, 95), (20, 40, 107)]) == [108, 95, 121]
    # points on the plot's floor (every smoke student at 0% exact match): the labels stack upwards from it
    assert charts.spread_labels([(0, 50, 100)] * 3, lowest=110) == [84, 97, 110]
    assert charts.spread_labels([(0, 50, 100), (100, 150, 130)], lowest=110) == [100, 110]


def text_boxes(root):
    """(left, right, baseline) of every text in a chart, at the width the chart assumes for a character."""
    boxes = []
    for t in root.iter():
        if t.tag.endswith("text") and t.text and not t.get("transform"):
            x, w = float(t.get("x")), charts.CHAR_WIDTH * len(t.text)
            left = {"end": x - w, "middle": x - w / 2}.get(t.get("text-anchor"), x)
            boxes.append((left, left + w, float(t.get("y")), t.text))
    return boxes


def test_scatter_labels_never_overlap(tmp_path):
    """The smoke study's latency chart: twelve points within a few ms and a few points of each other."""
    names = ["answer", "answer+calc", "cot", "cot+calc", "mixed/cot", "mixed/answer", "mixed/cot+calc", "mixed/answer+calc",
             "filler", "filler+calc", "shuffled", "shuffled+calc"]
    for name, y in (("mid", lambda k: 0.01 + 0.001 * (k % 3)), ("floor", lambda k: 0.0)):  # the second: all at 0%
        series = [(n, [(10 + 0.3 * k, y(k))], [(0.0, 0.03)]) for k, n in enumerate(names)]
        charts.svg_chart(tmp_path / f"{name}.svg", "latency", "ms", "exact match", series, lines=False)
        root = ET.parse(tmp_path / f"{name}.svg").getroot()
        labels = [b for b in text_boxes(root) if b[3] in names and b[0] < 550]  # beside the points, not in the legend
        assert sorted(b[3] for b in labels) == sorted(names)
        assert all(40 + 10 < b[2] <= 420 - 50 for b in labels)  # inside the plot (top 40, floor 370)
        for i, a in enumerate(labels):
            for b in labels[:i]:
                assert not (a[0] < b[1] and b[0] < a[1] and abs(a[2] - b[2]) < charts.LINE_HEIGHT), (a, b)
    legend = [(g.get("fill"), g[0].tag.split("}")[-1] + str(sorted(g[0].attrib.items()))) for g in root.iter()
              if g.get("class") == "marker" and float(g.get("transform").split("(")[1].split()[0]) > 550]
    assert len(legend) == 12 and len(set(legend)) == 12  # every legend entry looks different


def test_all_zero_chart_has_no_negative_axis(tmp_path):
    charts.svg_chart(tmp_path / "v.svg", "val", "step", "exact match", [("answer", [(0, 0.0), (20, 0.0)], None)])
    ticks = [float(t.text) for t in ET.parse(tmp_path / "v.svg").getroot().iter()
             if t.tag.endswith("text") and t.get("text-anchor") == "end"]
    assert ticks == [0, 0.2, 0.4, 0.6, 0.8, 1]
    # no point at all (no latency measured), only the best teacher's line: 0 to 1, and said
    charts.svg_chart(tmp_path / "e.svg", "latency", "ms", "exact match", [("answer", [], None)], lines=False, hline=("best", 0.94))
    root = ET.parse(tmp_path / "e.svg").getroot()
    texts = [t for t in root.iter() if t.tag.endswith("text")]
    assert [float(t.text) for t in texts if t.get("text-anchor") == "end"] == [0, 0.2, 0.4, 0.6, 0.8, 1]
    assert "no data to show" in [t.text for t in texts]


def test_svg_chart_is_valid_xml(tmp_path):
    charts.svg_chart(tmp_path / "a.svg", "t <&>", "x", "y", [("cot & co", [(1, 0.2)], [(0.1, 0.3)]), ("answer", [(1, 0.2)], None)],
                 lines=False, hline=("teacher", 0.9))
    charts.svg_chart(tmp_path / "b.svg", "loss", "step", "loss", [("cot", [(0, 4.0), (10, 3.0), (20, 2.5)], None), ("empty", [], None)])
    charts.svg_chart(tmp_path / "c.svg", "nothing", "x", "y", [])
    for name in "abc":
        assert ET.parse(tmp_path / f"{name}.svg").getroot().tag.endswith("svg")
    assert "cot &amp; co" in (tmp_path / "a.svg").read_text()


# ----------------------------------------------------------------------------- files and errors


def test_eval_file_rows_and_errors(tmp_path):
    f = tmp_path / "extra.jsonl"
    f.write_text(json.dumps({"question": "q1?", "answer": "She has 3+4 = <<3+4=7>>7 pens.\n#### 7"}) + "\n"
                 + json.dumps({"id": "x", "question": "q2?", "answer": 12.50}) + "\n")
    assert ev.load_problems("test", f) == [("extra-00000", "q1?", "7", "She has 3 + 4 = 7 pens.\n#### 7"), ("x", "q2?", "12.5", None)]
    f.write_text(json.dumps({"question": "q?", "answer": "none"}) + "\n")
    with pytest.raises(ValueError, match="extra.jsonl:1"):
        ev.load_problems("test", f)
    with pytest.raises(FileNotFoundError, match="nothere.jsonl"):
        ev.load_problems("test", tmp_path / "nothere.jsonl")


def test_run_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder .*nope not found"):
        ev.resolve_run(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="has no best.pt: it holds no run"):
        ev.resolve_run(tmp_path)
    # an answer run stopped early: the advice is its own command (mode, preset), never a file that does not exist
    (tmp_path / "config.json").write_text(json.dumps({"mode": "answer", "preset": "smoke"}))
    with pytest.raises(FileNotFoundError, match=re.escape(f"start it again with `python train.py --mode answer --preset smoke --out {tmp_path} --overwrite`")):
        ev.resolve_run(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"mode": "answer", "resume_command": "python train.py --mode answer --resume"}))
    with pytest.raises(FileNotFoundError, match=re.escape(f"continue it with `python train.py --mode answer --resume`, or evaluate {tmp_path / 'last.pt'}")):
        ev.resolve_run(tmp_path)
    (tmp_path / "last.pt").unlink()
    (tmp_path / "eval.json").write_text("{not json")
    (tmp_path / "predictions.jsonl").write_text("")
    with pytest.raises(ValueError, match=f"{tmp_path}.*corrupt.*rerun"):
        ev.read_eval(tmp_path)
    r = subprocess.run([sys.executable, "evaluate.py", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "nope not found" in r.stderr


def test_a_tokenizer_whose_size_differs_from_the_model_is_refused(tmp_path, gsm8k_dir):
    texts = [p.question for p in data.load_gsm8k("train", gsm8k_dir)[:300]]
    tok = train_tokenizer(texts, tmp_path / "tok.model", 500)
    ckpt = {"tokenizer": {"path": tok.path}, "config": {"vocab_size": 4000}}  # a run without the tokenizer's sha256
    with pytest.raises(ValueError, match=r"tok.model has 500 pieces.*4000"):
        ev.load_tokenizer(ckpt, tmp_path)
    assert ev.load_tokenizer({**ckpt, "config": {"vocab_size": 500}}, tmp_path).vocab_size == 500


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke_runs(gsm8k_dir, tokenizer_dir, tmp_path_factory):
    """Real run folders, answer and cot: train.py's smoke preset for one pass (4 steps, seconds on a
    CPU), trained once for the tests below; each test writes only eval folders of its own into them."""
    runs, procs = {}, {}
    for mode in ("answer", "cot"):  # side by side, one thread each
        runs[mode] = tmp_path_factory.mktemp("runs") / mode
        procs[mode] = subprocess.Popen([sys.executable, "train.py", "--mode", mode, "--preset", "smoke", "--out", str(runs[mode]),
                                        "--epochs", "1", "--test-limit", "8", "--data-dir", str(gsm8k_dir), "--tokenizer-dir",
                                        str(tokenizer_dir), "--max-new-tokens", "20"], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for mode, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    return runs


def test_end_to_end_run_and_compare(tmp_path, gsm8k_dir, smoke_runs):
    runs = dict(smoke_runs)
    # a mixed run without a third training: the cot weights, asked both ways
    from checkpoint import load_checkpoint, save_checkpoint
    model, ckpt = load_checkpoint(runs["cot"] / "best.pt")
    runs["mixed"] = tmp_path / "mixed"
    extra = {k: v for k, v in ckpt.items() if k not in ("format", "config", "model")}
    save_checkpoint(runs["mixed"] / "best.pt", model, **{**extra, "train_config": {**ckpt["train_config"], "mode": "mixed"}})
    test = data.load_gsm8k("test", gsm8k_dir)[:8]
    teacher = tmp_path / "teacher.jsonl"  # right on even problems, a slip on odd ones
    trows = [{"id": p.id, "question": p.question, "gold": p.answer,
              "output": traces.reference_to_trace(p.solution) if i % 2 == 0 else "2 + 2 = 5\n#### 5", "pred": None,
              "correct": i % 2 == 0, "prompt_tokens": 100, "completion_tokens": 40, "latency_s": 1.0 + i, "finish_reason": "stop"}
             for i, p in enumerate(test)]
    teacher.write_text("".join(json.dumps(r) + "\n" for r in trows))
    Path(f"{teacher}.summary.json").write_text(json.dumps({"exact_match": 0.5, "n": 8, "correct": 4, "model": "fake-llm", "prompt_tokens": 800,
                                                            "completion_tokens": 320, "latency_median_s": 4.5, "latency_p90_s": 7.3}))
    env_run = lambda *a: subprocess.run([sys.executable, "evaluate.py", *map(str, a)], cwd=ROOT, capture_output=True, text=True, timeout=120)

    r = env_run(runs["cot"], "--limit", "8", "--latency-samples", "2", "--calculator")
    assert r.returncode == 0, r.stderr
    assert "eta" in r.stdout and "exact match" in r.stdout
    out = runs["cot"] / "eval-test-calc-limit8"
    report = json.loads((out / "eval.json").read_text())
    preds = data.read_jsonl(out / "predictions.jsonl")
    assert [p["id"] for p in preds] == [p.id for p in test] and [p["gold"] for p in preds] == [p.answer for p in test]
    m = report["results"][0]
    assert report["calculator"] and m["label"] == "cot+calc" and m["max_new_tokens"] == 20 and m["latency_samples"] == 2
    assert m["exact_match"] == sum(p["correct"] for p in preds) / 8 and m["n"] == 8
    assert report["warnings"] == [w for w in [ev.reasoning_warning("cot", m)] if w]
    assert all(f"warning: {w}" in r.stdout for w in report["warnings"])
    assert m == {**ev.summarize(preds), **{k: m[k] for k in m if k not in ev.summarize(preds)}}  # recomputable from predictions
    assert sum(m["failures"].values()) == 8 and all(p["n_tokens"] <= 20 for p in preds)
    assert all(p["cut_off"] == (p["n_tokens"] == 20) for p in preds)
    eff = report["efficiency"]
    assert eff["params"] > eff["params_no_embeddings"] > 0 and eff["peak_memory_mb"] > 0
    assert eff["checkpoint_mb"] == pytest.approx((runs["cot"] / "best.pt").stat().st_size / 2 ** 20)

    report_dir = tmp_path / "report"
    r = env_run("--compare", runs["answer"], runs["cot"], runs["mixed"], "--teacher", teacher, "--limit", "8",
                "--latency-samples", "1", "--out", report_dir)
    assert r.returncode == 0, r.stderr
    md = (report_dir / "report.md").read_text()
    assert "Problems: 8 per model (test); students trained with `train.py --preset smoke`;" in md  # what was scored, by what
    for svg in ("accuracy_latency.svg", "accuracy_params.svg", "train_loss.svg", "val_em.svg"):
        assert f"]({svg})" in md and ET.parse(report_dir / svg).getroot().tag.endswith("svg")
    for label in ("answer (baseline)", "| cot |", "mixed/cot", "mixed/answer", "teacher fake-llm", "McNemar", "baseline wrong, cot wrong"):
        assert label in md, label
    assert "0.500 (0.215-0.785)" in md  # the teacher's 4/8 with its Wilson interval
    for mode in ("answer", "cot", "mixed"):  # each run evaluated once, without the calculator, into its own folder
        rep = json.loads((runs[mode] / "eval-test-limit8" / "eval.json").read_text())
        preds = data.read_jsonl(runs[mode] / "eval-test-limit8" / "predictions.jsonl")
        assert len(preds) == 8 * len(rep["results"]) == (16 if mode == "mixed" else 8)
        assert [m["max_new_tokens"] for m in rep["results"]] == {"answer": [24], "cot": [20], "mixed": [20, 24]}[mode]
        for m in rep["results"]:
            assert m["exact_match"] == sum(p["correct"] for p in preds if p["task"] == m["task"]) / 8
        assert rep["warnings"] == [w for w in (ev.reasoning_warning(mode, m) for m in rep["results"]) if w]
        assert all(f"**Warning: {w}**" in md for w in rep["warnings"])


def test_evaluation_records_its_data_and_refuses_other_data_unless_asked(tmp_path, gsm8k_dir, smoke_runs):
    run = smoke_runs["answer"]
    evaluate = lambda *a: subprocess.run([sys.executable, "evaluate.py", str(run), "--limit", "4", "--latency-samples", "0", *map(str, a)],
                                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    r = evaluate("--data-dir", gsm8k_dir)
    assert r.returncode == 0, r.stderr
    report = json.loads((run / "eval-test-limit4" / "eval.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert report["data"]["file"] == download.file_record(gsm8k_dir / "test.jsonl") and report["data"]["file"]["official"]
    assert report["data"]["same_as_training"] is True and report["tokenizer_sha256"] == config["tokenizer_sha256"]
    # a 20-line test.jsonl is not "test": refused, unless asked for, and then said everywhere
    small = tmp_path / "small"
    small.mkdir()
    (small / "test.jsonl").write_text("".join((gsm8k_dir / "test.jsonl").read_text().splitlines(keepends=True)[:20]))
    r = evaluate("--data-dir", small)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error:") and "--other-data" in r.stderr
    assert "is not the test.jsonl run" in r.stderr and "Traceback" not in r.stderr
    r = evaluate("--data-dir", small, "--other-data", "--out", tmp_path / "eval-small")
    assert r.returncode == 0, r.stderr
    assert "NOT the official GSM8K test.jsonl: 20 rows" in r.stderr
    report = json.loads((tmp_path / "eval-small" / "eval.json").read_text())
    assert report["data"]["same_as_training"] is False and report["data"]["file"]["rows"] == 20
    assert len(report["data"]["warnings"]) == 2 and set(report["data"]["warnings"]) <= set(report["warnings"])
    assert all(f"warning: {w}" in r.stdout for w in report["data"]["warnings"])
    r = subprocess.run([sys.executable, "evaluate.py", "--compare", tmp_path / "eval-small", "--out", tmp_path / "report"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "not the test.jsonl the run was trained with" in (tmp_path / "report" / "report.md").read_text()


def write_eval(folder, mode, outputs, golds, run_dir):
    """An eval folder as evaluate_run writes it, from hand-made outputs."""
    folder.mkdir(parents=True)
    rows = [{**row(o, g), "id": f"test-{i:05d}", "question": f"question {i}?"} for i, (o, g) in enumerate(zip(outputs, golds))]
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
    md = ev.compare([tmp_path / "cot" / "eval-test", tmp_path / "answer" / "eval-test"], args).read_text()
    assert "| cot | 24 | 5 | 2 | 10 | 7 | 0.03857 |" in md                 # McNemar row, exact p to 4 digits
    assert "| answer (baseline) | 0.625 (0.427-0.788) |" in md             # 15/24 with its Wilson interval
    assert "| cot | 0.292 (0.149-0.492) | 2.00M (1.00M) | 50 / 60 |" in md  # 7/24
    assert "arithmetic slip**: 17 of 24" in md and "baseline right, cot wrong: 10 of 24 problems" in md
    assert "| cot | 7 (29%) | 17 (71%) | 0 (0%) | 0 (0%) | 0 (0%) |" in md
    # the baseline can be named; the answer run then is a student like any other
    md = ev.compare([tmp_path / "cot" / "eval-test", tmp_path / "answer" / "eval-test"],
                    ev.parse_args(["--compare", "x", "--baseline", str(tmp_path / "cot"), "--out", str(tmp_path / "r2")])).read_text()
    assert "| answer | 24 | 5 | 10 | 2 | 7 | 0.03857 |" in md
    assert "Warning" not in md
    # two runs of one mode are told apart by their folders, in every table
    write_eval(tmp_path / "cot2" / "eval-test", "cot", cot_out, golds, tmp_path / "cot2")
    md = ev.compare([tmp_path / "cot" / "eval-test", tmp_path / "cot2" / "eval-test", tmp_path / "answer" / "eval-test"],
                    ev.parse_args(["--compare", "x", "--out", str(tmp_path / "r3")])).read_text()
    assert "| cot [cot] | 24 | 5 | 2 | 10 | 7 | 0.03857 |" in md and "| cot [cot2] | 24 | 5 | 2 | 10 | 7 | 0.03857 |" in md


def test_compare_warns_near_the_table_when_a_reasoning_model_writes_no_reasoning(tmp_path):
    golds = [str(i + 1) for i in range(6)]
    write_eval(tmp_path / "answer" / "eval-test", "answer", [f"#### {g}" for g in golds], golds, tmp_path / "answer")
    write_eval(tmp_path / "cot" / "eval-test", "cot", [f"#### {g}" for g in golds], golds, tmp_path / "cot")
    md = ev.compare([tmp_path / "answer" / "eval-test", tmp_path / "cot" / "eval-test"],
                    ev.parse_args(["--compare", "x", "--out", str(tmp_path / "report")])).read_text()
    table, rest = md.split("## Errors inside the reasoning")
    assert "**Warning: cot writes no reasoning: 0.0 steps per output**" in table.split("| cot |")[-1]
    assert "answer writes" not in md and "Warning" not in rest


def test_grounding_counts_operands_from_the_question_and_earlier_steps():
    q = "Tom has 5 apples and buys 3 bags of 4 apples."
    assert ev.grounding(q, "3 * 4 = 12\n5 + 12 = 17\n#### 17") == {"operands": 4, "grounded": 4}
    assert ev.grounding(q, "2 * 6 = 12\n12 + 5 = 17\n#### 17") == {"operands": 4, "grounded": 2}  # 2 and 6 invented
    assert ev.grounding(q, "17 + 1 = 18\n#### 18") == {"operands": 2, "grounded": 0}  # a result is not known before its step
    assert ev.grounding(q, "#### 17") == {"operands": 0, "grounded": 0}


# ----------------------------------------------------------------------------- teachers beside the students


def test_mark_first_slip():
    teacher = "2 + 2 = 4\n4 * 3 = 12\n#### 12"
    assert ev.mark_first_slip("2 + 2 = 4\n4 * 3 = 13\n4 + 1 = 6\n#### 13", teacher) == \
        "2 + 2 = 4\n4 * 3 = 13   <-- first false step: 4 * 3 is 12\n4 + 1 = 6\n#### 13"  # only the first is marked
    assert ev.mark_first_slip("2 + 3 = 5\n5 * 3 = 15\n#### 15", teacher) == \
        "2 + 3 = 5   <-- first wrong step: the teacher computes no 5\n5 * 3 = 15\n#### 15"  # true, but off its path
    assert ev.mark_first_slip("2 + 2 = 4\n4 * 3 = 12\n#### 12", teacher) == "2 + 2 = 4\n4 * 3 = 12\n#### 12"
    assert ev.mark_first_slip("1 + 1 = 12\n#### 12", teacher).endswith("first false step: 1 + 1 is 2\n#### 12")


def test_mcnemar_bound_and_sizes():
    assert ev.exact_p(10, 2) == pytest.approx(158 / 4096) and ev.exact_p(0, 0) == 1.0
    # right on 15 and 22 of 24: they overlap on 13 to 15 problems; 13 gives the largest p, 2 * P(X <= 2 | 11)
    assert ev.mcnemar_bound(15, 22, 24) == pytest.approx(2 * (1 + 11 + 55) / 2 ** 11)
    assert ev.mcnemar_bound(5, 5, 10) == 1.0                    # they may be right on the same five
    assert ev.mcnemar_bound(36, 1240, 1319) < 1e-300 and ev.fmt_p(0.0) == "<1e-300"  # 0.0: beyond a float
    assert [ev.size_label(x) for x in (6_540_000, 175e9, 1e12, 500)] == ["6.54M", "175B", "1T", "500"]


def test_svg_chart_log_x_with_notes(tmp_path):
    charts.svg_chart(tmp_path / "s.svg", "size", "parameters", "exact match",
                     [("student", [(6.5e6, 0.02), (6.5e6, 0.3)], None), ("gpt3 175B", [(175e9, 0.35)], None)], lines=False, logx=True,
                     notes=["Not placed: gpt-4 0.940"])
    root = ET.parse(tmp_path / "s.svg").getroot()
    texts = [t.text for t in root.iter() if t.tag.endswith("text")]
    assert [t for t in texts if t and t[-1] in "MBT" and t[0].isdigit()] == ["1M", "10M", "100M", "1B", "10B", "100B", "1T"]
    assert "Not placed: gpt-4 0.940" in texts and texts.count("student") == 2  # the legend, and one label of two points
    xs = {float(g.get("transform").split("(")[1].split()[0]) for g in root.iter() if g.get("class") == "marker"}
    a, b = sorted(xs)[:2]  # the points (the legend's markers are further right)
    assert len([x for x in xs if x < 550]) == 2  # decades are equally wide: 6.5M and 175B sit 4.4 decades apart
    assert (b - a) / ((720 - 70 - 170) / 6) == pytest.approx(math.log10(175e9 / 6.5e6), abs=0.01)


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
    md = ev.compare(runs, args).read_text()
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
    md = ev.compare(runs, args).read_text()
    assert "| big-175b | 24 | — | — | — | — | ≤ 0.06543 (bound) |" in md  # overlap 13 is the largest p, as it happens
    assert "were not kept for any of the students" in md and "no paired test" in md and "| cot | — / — | — | — |" in md
    assert "No compared student that writes equations has its predictions" in md


def test_preset_names_and_limits_are_train_pys():
    import train
    assert set(ev.PRESET_TEST_LIMIT) == set(train.PRESETS)
    assert ev.PRESET_TEST_LIMIT == {name: train.TrainConfig(**o).test_limit for name, o in train.PRESETS.items()}
    assert ev.parse_args(["runs/x", "--preset", "smoke"]).limit == 32
    assert ev.parse_args(["runs/x", "--preset", "smoke", "--limit", "5"]).limit == 5
    assert ev.parse_args(["runs/x"]).limit == 0


def test_an_output_without_the_answer_line_is_never_right():
    """Issue 18: a filler or answer output without '####' was counted correct where its last number happened to be
    the answer and malformed everywhere else. Now exact match and the failure categories agree on every problem."""
    from traces import exact_match
    assert exact_match("3 * 6 = 18\n#### 18", "18") and exact_match("#### 1,800", "1800")
    for output in ("18", ". . . . 18", "3 * 6 = 18", "so the answer is 18"):
        for gold in ("18", "17"):
            assert not exact_match(output, gold), (output, gold)
            assert ev.classify_failure(output, gold, cut_off=False) == "no_answer"
            assert ev.classify_failure(output, gold, cut_off=True) == "cut_off"
    assert ev.classify_failure(". . . . \n#### 18", "18", cut_off=False) == "correct"
