"""evaluate.py: every metric on hand-made cases with exact values, then end to end on tiny checkpoints."""
import json
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import charts
import data
import download
import eval_inputs
import intervals
import traces
from tokenizer import train_tokenizer
import evaluate as ev
import report

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


def row(output, gold, cut=False, ref=None, n_tokens=10, question=""):
    c = traces.check_trace(output)
    return {"id": f"p{abs(hash(output)) % 10 ** 6}", "task": None, "question": question, "output": output, "gold": gold,
            "pred": c["answer"], "correct": c["answer"] == gold, "category": ev.classify_failure(output, gold, cut), "cut_off": cut,
            "n_tokens": n_tokens, "step_match": traces.step_correctness(output, ref) if ref else None,
            "grounding": ev.grounding(question, output)}


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


def test_eval_file_answers_are_read_exactly_or_refused_by_line(tmp_path):
    """An answer is the number written, never a number inside it: 3/4 is 0.75, 1e3 is 1000; the rest is refused."""
    f = tmp_path / "exact.jsonl"
    exact = {"3/4": "0.75", "#### 3/4": "0.75", "1e3": "1000", 1e20: "100000000000000000000", 1e-05: "0.00001",
             "$1,200.50": "1200.5", "-5": "-5", 7: "7", "2 + 2 = 4\n#### 4": "4"}
    f.write_text("".join(json.dumps({"question": f"q{i}?", "answer": a}) + "\n" for i, a in enumerate(exact)))
    assert [gold for _, _, gold, _ in ev.load_problems("test", f)] == list(exact.values())
    for bad in ([8], {"x": 8}, True, "3 pens", "#### 8 dollars", "1/3", "", None):
        f.write_text(json.dumps({"question": "q?", "answer": 1}) + "\n" + json.dumps({"question": "q?", "answer": bad}) + "\n")
        with pytest.raises(ValueError, match="exact.jsonl:2: not a row of an eval file"):
            ev.load_problems("test", f)
    f.write_text(json.dumps({"question": "", "answer": 3}) + "\n")
    with pytest.raises(ValueError, match="exact.jsonl:1: not a row"):
        ev.load_problems("test", f)
    f.write_bytes(b'{"question": "caf\xe9?", "answer": 3}\n')
    with pytest.raises(ValueError, match="exact.jsonl: not UTF-8"):
        ev.load_problems("test", f)


def test_run_errors_name_the_path(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="run folder .*nope not found"):
        eval_inputs.resolve_run(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="has no last.pt: it holds no run"):
        eval_inputs.resolve_run(tmp_path)
    # an answer run stopped early: the advice is its own command (mode, preset), never a file that does not exist
    (tmp_path / "config.json").write_text(json.dumps({"mode": "answer", "preset": "smoke"}))
    with pytest.raises(FileNotFoundError, match=re.escape(f"start it again with `python train.py --mode answer --preset smoke --out {tmp_path} --overwrite`")):
        eval_inputs.resolve_run(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"")  # a run still training (no metrics.json): its last.pt, with a warning
    assert eval_inputs.resolve_run(tmp_path) == (tmp_path, tmp_path / "last.pt")
    assert "has not finished training" in capsys.readouterr().out
    (tmp_path / "metrics.json").write_text("{}")
    assert eval_inputs.resolve_run(tmp_path) == (tmp_path, tmp_path / "last.pt")
    assert "has not finished" not in capsys.readouterr().out
    (tmp_path / "last.pt").unlink()
    (tmp_path / "eval.json").write_text("{not json")
    (tmp_path / "predictions.jsonl").write_text("")
    with pytest.raises(ValueError, match=f"{tmp_path}.*corrupt.*rerun"):
        report.read_eval(tmp_path)
    r = subprocess.run([sys.executable, "evaluate.py", str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "nope not found" in r.stderr


def test_a_tokenizer_whose_size_differs_from_the_model_is_refused(tmp_path, gsm8k_dir):
    texts = [p.question for p in data.load_gsm8k("train", gsm8k_dir)[:300]]
    tok = train_tokenizer(texts, tmp_path / "tok.model", 500)
    ckpt = {"tokenizer": {"path": tok.path}, "config": {"vocab_size": 4000}}  # a run without the tokenizer's sha256
    with pytest.raises(ValueError, match=r"tok.model has 500 pieces.*4000"):
        eval_inputs.load_tokenizer(ckpt, tmp_path)
    assert eval_inputs.load_tokenizer({**ckpt, "config": {"vocab_size": 500}}, tmp_path).vocab_size == 500


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
    model, ckpt = load_checkpoint(runs["cot"] / "last.pt")
    runs["mixed"] = tmp_path / "mixed"
    extra = {k: v for k, v in ckpt.items() if k not in ("format", "config", "model")}
    save_checkpoint(runs["mixed"] / "last.pt", model, **{**extra, "train_config": {**ckpt["train_config"], "mode": "mixed"}})
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
    assert eff["checkpoint_mb"] == pytest.approx((runs["cot"] / "last.pt").stat().st_size / 2 ** 20)

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
    # --out that is a file, or a folder holding another run's evaluation: refused in one line, left as it was
    (tmp_path / "notes.txt").write_text("mine\n")
    r = evaluate("--out", tmp_path / "notes.txt")
    assert r.returncode == 1 and "notes.txt is a file" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    with pytest.raises(ValueError, match="eval-small holds the evaluation of run answer \\(last.pt\\), not of run cot"):
        eval_inputs.check_eval_out(tmp_path / "eval-small", smoke_runs["cot"], smoke_runs["cot"] / "last.pt")
    eval_inputs.check_eval_out(tmp_path / "eval-small", run, run / "last.pt")  # the same run's: a rerun replaces it
    r = subprocess.run([sys.executable, "evaluate.py", "--compare", tmp_path / "eval-small", "--out", tmp_path / "report"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "not the test.jsonl the run was trained with" in (tmp_path / "report" / "report.md").read_text()


def test_grounding_counts_operands_from_the_question_and_earlier_steps():
    q = "Tom has 5 apples and buys 3 bags of 4 apples."
    assert ev.grounding(q, "3 * 4 = 12\n5 + 12 = 17\n#### 17") == {"operands": 4, "grounded": 4}
    assert ev.grounding(q, "2 * 6 = 12\n12 + 5 = 17\n#### 17") == {"operands": 4, "grounded": 2}  # 2 and 6 invented
    assert ev.grounding(q, "17 + 1 = 18\n#### 18") == {"operands": 2, "grounded": 0}  # a result is not known before its step
    assert ev.grounding(q, "#### 17") == {"operands": 0, "grounded": 0}


# ----------------------------------------------------------------------------- teachers beside the students


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


def test_decoding_progress_line_every_interval_and_at_the_end(capsys):
    now = time.time()
    line = ev.ProgressLine("test decoding", t0=now - 20.0, every=10.0)  # started 20 s ago: the first batch is due a line
    line(64, 256)
    line(128, 256)  # within 10 s of the last line: quiet
    line(256, 256)  # the end: always
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("  test decoding: 64/256 problems | 20 s | eta 6")
    assert out[1].startswith("  test decoding: 256/256 problems |") and out[1].endswith("| eta 0 s")
