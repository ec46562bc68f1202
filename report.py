"""
The comparison report: report.md and its SVG charts from the eval.json (and predictions.jsonl)
of several runs and any number of teachers. Accuracy against cost, the teachers against the
students, errors inside the reasoning, paired McNemar tests against the baseline, the students'
traces beside a teacher's, examples, the most frequent failures and the training curves.
Serves evaluate.py: it imports evaluate (scoring a run that has no eval.json yet, the metrics),
never the other way round. `python evaluate.py --compare ...` runs this file's main.

    python report.py runs/answer runs/cot runs/mixed --teacher traces/gpt-4o-eval-test.jsonl
    python evaluate.py --compare runs/answer runs/cot      # the same

Example:
    compare(["runs/answer", "runs/cot"], evaluate.parse_args(["--compare", "x"]))  # -> runs/report/report.md
"""
import json
import math
import random
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np

import data
from files import write_atomic
from intervals import wilson_interval
import traces
from charts import size_label, svg_chart  # the drawing, kept apart from the numbers
from checkpoint import read_checkpoint
from eval_inputs import load_tokenizer, resolve_run
from evaluate import (CATEGORIES, CATEGORY_NAMES, eval_dir_name, evaluate_run, fmt, grounding, load_problems, parse_args,
                      reasoning_warning)
from recorded import load_teacher_eval
from traces import arithmetic_error_rate, step_correctness, step_values

# -----------------------------------------------------------------------------
# Paired tests: McNemar on the problems two models were both asked


def mcnemar(a_correct, b_correct):
    """
    Paired McNemar test of two models on the same problems. Only discordant pairs carry
    information: b = a right and b wrong, c = the reverse. p_exact is the two-sided exact
    binomial test, 2 * P(X <= min(b, c)) for X ~ Bin(b + c, 1/2); chi2 the continuity-corrected
    statistic max(0, |b - c| - 1)^2 / (b + c) with its 1-dof p-value, for reference (the correction
    never pushes the statistic below 0, so b == c gives p 1, as the exact test does).
    Example: mcnemar([1] * 10 + [0] * 2, [0] * 10 + [1] * 2)["p_exact"] == 0.0386 (rounded)
    """
    assert len(a_correct) == len(b_correct), "McNemar needs the same problems for both models"
    pairs = Counter((bool(a), bool(b)) for a, b in zip(a_correct, b_correct))
    b, c = pairs[(True, False)], pairs[(False, True)]
    n = b + c
    chi2 = max(0, abs(b - c) - 1) ** 2 / n if n else 0.0
    return {"n": len(a_correct), "both_right": pairs[(True, True)], "only_a": b, "only_b": c,
            "both_wrong": pairs[(False, False)], "p_exact": exact_p(b, c), "chi2": chi2,
            "p_chi2": math.erfc(math.sqrt(chi2 / 2))}


def exact_p(b, c):
    """
    McNemar's exact two-sided p from the discordant counts: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2).
    Example: round(exact_p(10, 2), 4) == 0.0386
    """
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2 ** n) if n else 1.0


def mcnemar_bound(k_a, k_b, n):
    """
    The largest exact McNemar p two models right on k_a and k_b of the same n problems can have,
    over every way their right answers may overlap: what can still be said when the per-problem
    results of one of them were not kept.
    Example: mcnemar_bound(36, 1240, 1319) < 1e-300 and mcnemar_bound(5, 5, 10) == 1.0
    """
    return max(exact_p(k_a - o, k_b - o) for o in range(max(0, k_a + k_b - n), min(k_a, k_b) + 1))


def fmt_p(p):
    """
    A p-value to 4 digits; below 1e-300 (where floats lose their digits) it reads as <1e-300.
    Example: fmt_p(0.038574) == "0.03857" and fmt_p(0.0) == "<1e-300"
    """
    return f"{p:.4g}" if p >= 1e-300 else "<1e-300"


# -----------------------------------------------------------------------------
# Reading what is compared


def read_eval(folder):
    """
    (eval.json dict, predictions rows) of an eval folder; a corrupt file is one clear error.
    The rows are None when predictions.jsonl was not kept (results/ holds eval.json alone), and
    the report then leaves out what needs them: paired tests, examples, step matches against a teacher.
    Example: report, rows = read_eval("runs/cot/eval-test"); report["results"][0]["exact_match"]
    """
    folder = Path(folder)
    try:
        report = json.loads((folder / "eval.json").read_text(encoding="utf-8"))
        kept = (folder / "predictions.jsonl").exists()
        rows = data.read_jsonl(folder / "predictions.jsonl") if kept else None
        assert isinstance(report.get("results"), list)
    except (ValueError, AssertionError, AttributeError, FileNotFoundError) as e:
        raise ValueError(f"{folder}: eval.json or predictions.jsonl is missing or corrupt ({str(e)[:120]}); "
                         f"delete {folder} and rerun `python evaluate.py {folder.parent}`") from None
    return report, rows


def load_teacher(path):
    """
    The teacher's (rows, summary) from `teacher.py --eval` or `teacher.py --recorded`.
    Example: rows, summary = load_teacher("traces/gpt-4-eval-test.jsonl"); summary["exact_match"]
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"teacher eval file {path} not found: make it with `python teacher.py ... --eval --out {path}` "
                                f"or `python teacher.py --recorded FILE --out {path}`")
    return load_teacher_eval(path)


def run_tokenizer(run_dir):
    """
    The tokenizer a run was trained with, found by its config.json, or None when this machine
    lacks it: teachers' traces are counted in the students' tokens when it is there.
    Example: tok = run_tokenizer("results/study-cpu/cot")
    """
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
        return load_tokenizer({"tokenizer": {"path": cfg["tokenizer"], "sha256": cfg.get("tokenizer_sha256")}}, run_dir)
    except (OSError, ValueError, KeyError):
        return None


def mark_first_slip(output, teacher_output):
    """
    A student's output with its first false or wrong step marked: the first equation that does
    not hold, or whose result is none of the teacher's intermediate values or its answer.
    Example: mark_first_slip("2 + 2 = 4\n4 * 3 = 13\n#### 13", "2 + 2 = 4\n4 * 3 = 12\n#### 12")
             == "2 + 2 = 4\n4 * 3 = 13   <-- first false step: 4 * 3 is 12\n#### 13"
    """
    lines = output.split("\n")
    teacher_values = set(step_values(teacher_output)) | {data.extract_answer(teacher_output)}
    for step in traces.check_trace(output)["steps"]:
        if not step.ok:
            lines[step.line] += f"   <-- first false step: {step.expression} is {step.value}"
        elif data.normalize_number(step.claimed) not in teacher_values:
            lines[step.line] += f"   <-- first wrong step: the teacher computes no {step.claimed}"
        else:
            continue
        break
    return "\n".join(lines)


def step_match_against(preds, other):
    """
    Step precision and recall of one model's outputs against another's intermediate values,
    micro-averaged over the problems both answered (None where there is nothing to divide by).
    Example: step_match_against(student["preds"], teacher["preds"])["recall"]
    """
    s = [step_correctness(preds[i]["output"], other[i]["output"]) for i in sorted(set(preds) & set(other))]
    matched, n_out, n_ref = (sum(x[k] for x in s) for k in ("matched", "n_output", "n_reference"))
    return {"precision": matched / n_out if n_out else None, "recall": matched / n_ref if n_ref else None}


def read_log(run_dir):
    """
    Training-loss and validation points of a run's log.jsonl (empty when there is none).
    Example: loss, val_em = read_log("runs/cot")  # [(step, loss), ...], [(step, exact match), ...]
    """
    path = Path(run_dir) / "log.jsonl"
    rows = data.read_jsonl(path) if path.exists() else []
    return ([(r["step"], r["loss"]) for r in rows if "loss" in r], [(r["step"], r["val_em"]) for r in rows if "val_em" in r])


def block(text):
    return "```\n" + (text or "(empty)").replace("```", "'''").strip() + "\n```"


def cell(x, spec=".3f"):
    return fmt(x, spec).replace("|", "\\|")


def load_teachers(paths, tok=None):
    """
    Every --teacher file as one entry: label, summary, predictions by id and the numbers of its
    report row. Tokens per output are counted in the students' tokenizer when it is at hand (so
    they compare with the students' column), else taken from the API's counts, else unknown.
    Example: [t["label"] for t in load_teachers(["traces/gpt-4-eval-test.jsonl"])] == ["gpt-4"]
    """
    teachers = []
    for path in paths or []:
        rows, s = load_teacher(path)
        outputs, k, n = [r["output"] for r in rows], sum(bool(r["correct"]) for r in rows), max(1, len(rows))
        tokens = (float(np.mean([len(tok.encode(o)) for o in outputs])) if tok and rows else
                  s["completion_tokens"] / n if s.get("completion_tokens") else None)
        ground = [grounding(r.get("question") or "", r["output"]) for r in rows]
        operands = sum(g["operands"] for g in ground)
        teachers.append({"label": s.get("model") or Path(path).stem, "s": s, "n": len(rows), "correct": k,
                         "grounded": sum(g["grounded"] for g in ground) / operands if operands else None,
                         "em": k / n, "ci": wilson_interval(k, len(rows)), "errors": arithmetic_error_rate(outputs),
                         "steps": sum(traces.check_trace(o)["n_steps"] for o in outputs) / n, "tokens": tokens,
                         "preds": {r["id"]: r for r in rows}})
    return teachers


def teacher_section(teachers, entries, references):
    """
    The report's teacher section: our score beside the publishers', the best student against each
    teacher (McNemar), and every model's intermediate values against the reference's and each
    teacher's. references: reference trace by problem id (empty when GSM8K is not at hand).
    Example: lines = teacher_section(load_teachers(["t.jsonl"]), entries, {})
    """
    lines = ["## Teachers", "", "Each teacher's outputs are scored by this project as a live teacher's replies are: "
             "normalized by `replies.normalize_reply`, the answer read by `data.extract_answer` (the `#### N` line, else "
             "the last number) and every equation checked by `traces.check_trace`. The publishers' score is their own "
             "verdict on the same replies, where the file holds one.", "",
             "Grounded: the share of equation operands that are numbers of the question or earlier results.", "",
             "| teacher | source | exact match, ours | publishers' score | difference (points) | empty replies | grounded operands |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for t in teachers:
        s, pub = t["s"], t["s"].get("published_exact_match")
        diff = "—" if pub is None else format(100 * (t["em"] - pub), "+.1f")
        source = s.get("recorded") or s.get("base_url") or "—"
        lines.append(f"| {t['label']} | `{source}` | {t['em']:.1%} | {fmt(pub, '.1%')} | {diff} | {s.get('empty_outputs', 0)} | {fmt(t['grounded'], '.1%')} |")
    best = max(entries, key=lambda e: e["m"]["exact_match"], default=None)
    if best:
        lines += ["", f"### The best student ({best['label']}, {best['m']['exact_match']:.1%}) against each teacher", "",
                  "McNemar's exact test on the problems both answered. Where the student's per-problem results were not "
                  "kept, p is a bound: the largest p their two counts allow, whichever problems each got right.", "",
                  "| teacher | problems | both right | only the student right | only the teacher right | both wrong | p (exact) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for t in teachers:
            ids = sorted(set(best["preds"] or {}) & set(t["preds"]))
            if ids:
                r = mcnemar([best["preds"][i]["correct"] for i in ids], [t["preds"][i]["correct"] for i in ids])
                lines.append(f"| {t['label']} | {r['n']} | {r['both_right']} | {r['only_a']} | {r['only_b']} | "
                             f"{r['both_wrong']} | {fmt_p(r['p_exact'])} |")
            elif best["m"]["n"] == t["n"]:
                bound = mcnemar_bound(best["m"]["correct"], t["correct"], t["n"])
                lines.append(f"| {t['label']} | {t['n']} | — | — | — | — | {'≤ ' * (bound >= 1e-300)}{fmt_p(bound)} (bound) |")
    pr = lambda x: f"{cell(x['precision'], '.2f')} / {cell(x['recall'], '.2f')}"
    lines += ["", "### Intermediate values against the reference's and each teacher's", "",
              "Step precision / recall, micro-averaged: the values a model writes right of each `=` against those of the "
              "reference solution, and against those of each teacher's output on the same problem. "
              "— : nothing to compare (no equations written, or predictions not kept).", "",
              "| model | reference | " + " | ".join(t["label"] for t in teachers) + " |", "| --- " * (len(teachers) + 2) + "|"]
    for e in entries:
        against = [pr(step_match_against(e["preds"], t["preds"])) if e["preds"] else "—" for t in teachers]
        reference = {"precision": e["m"]["step_precision"], "recall": e["m"]["step_recall"]}
        lines.append(f"| {e['label']} | {pr(reference)} | " + " | ".join(against) + " |")
    refs = {i: {"output": ref} for i, ref in references.items()}
    for t in teachers:  # how close a teacher's own path is to the reference solution's
        lines.append(f"| teacher {t['label']} | {pr(step_match_against(t['preds'], refs)) if refs else '—'} |" + " |" * len(teachers))
    return lines


def side_by_side(teacher, entries, n, seed=1):
    """
    Side-by-side examples: for every student with predictions that writes equations, n problems
    (drawn with a fixed seed) with the question, the teacher's trace and the student's, the
    student's first false or wrong step marked (mark_first_slip).
    Example: lines = side_by_side(load_teachers(["t.jsonl"])[0], entries, 3)
    """
    rng = random.Random(seed)  # its own generator: the other examples stay the ones they were
    mark = lambda r: "right" if r["correct"] else "wrong"
    lines = ["## Side by side: the students' traces beside the teacher's", "",
             f"Teacher: {teacher['label']}. Marked in each student trace: its first equation that is false, or whose "
             f"result is none of the teacher's values.", ""]
    shown = [e for e in entries if e["preds"] and e["m"]["steps_mean"] >= 1]
    if not shown:
        lines.append("No compared student that writes equations has its predictions (predictions.jsonl) here, "
                     "so there are no student traces to show.")
    for e in shown:
        ids = [i for i in sorted(set(e["preds"]) & set(teacher["preds"])) if step_values(e["preds"][i]["output"])]
        lines += [f"### {e['label']}", ""]
        for i in rng.sample(ids, min(n, len(ids))):
            p, t = e["preds"][i], teacher["preds"][i]
            lines += [f"**{i}** — {p['question']}", "", f"Gold answer: **{p['gold']}**", "",
                      f"{teacher['label']} ({mark(t)}):", block(t["output"]), "",
                      f"{e['label']} ({mark(p)}):", block(mark_first_slip(p["output"], t["output"])), ""]
    return lines


def compare(runs, args):
    """
    Evaluate what is missing, then write report.md and its SVG charts into args.out: one
    function per section of the report, in the order a reader meets them.
    Example: compare(["runs/answer", "runs/cot"], parse_args(["--compare", "x", "--teacher", "t.jsonl"]))
    """
    out = Path(args.out or "runs/report")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder for report.md and its charts")
    out.mkdir(parents=True, exist_ok=True)
    entries, data_warnings = compared_entries(runs, args)
    if problem_sets_differ(entries):
        data_warnings.append(f"the models were scored on different problems ({problem_sets_differ(entries).rstrip('; ')}): "
                             f"their exact matches are not comparable, and each paired test uses only the problems both were asked")
    tok = next((t for t in (run_tokenizer(e["run"]) for e in entries) if t), None)
    teachers = load_teachers(args.teacher, tok)
    teacher = teachers[0] if teachers else None  # the one whose traces the examples show
    base, entries = baseline_first(entries, args.baseline)
    paired = [e for e in entries if e is not base and e["preds"]] if base and base["preds"] else []
    unplaced = [t for t in teachers if not t["s"].get("params")]  # teachers whose size is not published

    lines = tradeoff_table(entries, base, teachers, tok, args)
    lines += report_notes(entries, teachers, unplaced, data_warnings)
    if teachers:
        lines += teachers_section(teachers, entries, args) + [""]
    lines += errors_table(entries)
    lines += paired_tests(paired, base)
    if teacher:
        lines += [""] + side_by_side(teacher, entries, args.side_by_side)
    lines += examples_section(paired, base, teacher, args.examples)
    lines += failures_section(entries)
    lines += draw_charts(out, entries, teachers, unplaced)
    write_atomic(out / "report.md", "\n".join(lines))
    print(f"wrote {out / 'report.md'} and 4 charts beside it")
    return out / "report.md"


def compared_entries(runs, args):
    """
    One entry per (model, task) of the runs, evaluated first where no eval.json is found (a run
    still training only with --while-training): label, mode, metrics, efficiency, run folder, the
    checkpoint's step, predictions by id (None: not kept); and the warnings (printed too): those the
    eval.json files give about their data, once per folder, a stale evaluation (stale_evaluation),
    a run compared with itself (compared_once, which refuses one evaluation given twice).
    Example: entries, data_warnings = compared_entries(["runs/answer", "runs/cot"], args)
    """
    entries, data_warnings, compared = [], [], []
    for run_path in map(Path, runs):
        calc = trained_with_calculator(run_path) if args.calculator is None else args.calculator
        folder = run_path if (run_path / "eval.json").exists() else resolve_run(run_path, None)[0] / eval_dir_name(args.split, args.eval_file, calc, args.limit)
        if not (folder / "eval.json").exists():
            evaluate_run(run_path, args.split, args.eval_file, calc, args.limit, folder, args.batch_size, args.max_new_tokens,
                         args.latency_samples, args.device, args.data_dir, args.other_data, args.while_training)
        report, rows = read_eval(folder)
        data_warnings += [f"{folder}: {w}" for w in (report.get("data") or {}).get("warnings", [])]
        run_dir = Path(report["run"])
        if not (run_dir / "config.json").exists() and (folder.parent / "config.json").exists():
            run_dir = folder.parent  # a copied run (results/): its eval folder sits in it, wherever eval.json says it was
        data_warnings += [w for w in [stale_evaluation(folder, report, run_dir)] if w]
        compared.append((folder, run_dir, report))
        for m in report["results"]:
            preds = None if rows is None else {r["id"]: r for r in rows if r.get("task") == m["task"]}
            entries.append({"label": m["label"], "mode": report["mode"], "m": m, "eff": report["efficiency"], "run": str(run_dir),
                            "folder": str(folder), "device": report["device"], "preds": preds, "step": report.get("step"),
                            "scored": report.get("eval_file") or report.get("split") or "test", "preset": trained_preset(run_dir)})
    data_warnings += compared_once(compared)
    for w in data_warnings:
        print(f"warning: {w}", file=sys.stderr)
    labels = Counter(e["label"] for e in entries)
    for e in entries:  # two runs of one mode (cot with and without --mask-results) are told apart by their folders
        if labels[e["label"]] > 1:
            e["label"] = f"{e['label']} [{Path(e['run']).name}]"
    return entries, data_warnings


def stale_evaluation(folder, report, run_dir):
    """
    A warning when the checkpoint an evaluation names was written after it (training went on, or
    started over): its scores are of weights that are no longer there. None when it is not, or
    when the checkpoint is not at hand (a copied run).
    Example: stale_evaluation(Path("runs/cot/eval-test"), report, Path("runs/cot"))  # "... evaluates step 2000 of ..."
    """
    name = report.get("checkpoint") or ""
    ckpt = Path(name) if "/" in name and Path(name).is_file() else Path(run_dir) / Path(name).name
    if not name or not ckpt.is_file() or ckpt.stat().st_mtime <= (folder / "eval.json").stat().st_mtime:
        return None
    try:
        step = read_checkpoint(ckpt).get("step")
    except (OSError, ValueError):
        step = "unknown (unreadable)"
    now = f"which is now at step {step}" if step != report.get("step") else "which was written again after it (at the same step)"
    return (f"{folder} evaluates step {report.get('step')} of {ckpt}, {now}: a stale evaluation, not of the model there; "
            f"score it again with `python evaluate.py {run_dir}` and the same flags")


def compared_once(compared):
    """
    Warnings about the (eval folder, run folder, eval.json) of the inputs of a comparison, raising a
    one-line ValueError where one evaluation, or one run scored the same way, is given twice (the
    report would show it twice, as its own baseline); a run scored two ways (e.g. with and without
    the calculator) is compared with itself, with a warning.
    Example: compared_once([(Path("runs/a/eval-test"), Path("runs/a"), report_a), (Path("runs/b/eval-test"), Path("runs/b"), report_b)]) == []
    """
    warnings, seen = [], []
    for folder, run_dir, report in compared:
        run = run_dir.resolve() if run_dir.is_dir() else None  # None: a run named by eval.json that is not here
        settings = tuple(report.get(k) for k in ("split", "eval_file", "limit", "calculator"))
        for other, other_run, other_settings in seen:
            if folder.resolve() == other.resolve():
                raise ValueError(f"{other} and {folder} are the same evaluation ({folder.resolve()}): give each once")
            if run is not None and run == other_run and settings == other_settings:
                raise ValueError(f"{other} and {folder} both evaluate run {run_dir} the same way: the report would show it "
                                 f"twice, tested against itself; give each run once")
            if run is not None and run == other_run:
                warnings.append(f"run {run_dir} is compared with itself ({other} and {folder}, scored otherwise): "
                                f"their paired test is one model against itself")
        seen.append((folder, run, settings))
    return warnings


def trained_with_calculator(run_path):
    """Whether a run's loss was calculator-aware (its config.json's mask_results): evaluate.py then decodes with the calculator."""
    config = (run_path if run_path.is_dir() else run_path.parent) / "config.json"
    return bool(config.exists() and json.loads(config.read_text()).get("mask_results"))


def problem_sets_differ(entries):
    """
    Each model's n ("answer 32, cot 5; ") when the models were not all scored on the same problems
    (by their ids where predictions were kept, else by file and n), else "" (one n says it all).
    Example: problem_sets_differ(entries) == ""  # every model on the same 1319 test problems
    """
    sets = {frozenset(e["preds"]) if e["preds"] else (e["scored"], e["m"]["n"]) for e in entries}
    return ", ".join(f"{e['label']} {e['m']['n']}" for e in entries) + "; " if len(sets) > 1 else ""


def trained_preset(run_dir):
    """The train.py preset a run folder was trained with, from its config.json (None when it is not there)."""
    try:
        return json.loads((Path(run_dir) / "config.json").read_text()).get("preset")
    except (OSError, ValueError, AttributeError):
        return None


def baseline_first(entries, baseline):
    """
    The baseline the students are tested against (the run or folder named by baseline, else the
    first answer-only entry, else None) and the entries with it first.
    Example: base, entries = baseline_first(entries, None)
    """
    b = Path(baseline or ".").resolve()
    b = b.parent if b.is_file() else b  # a checkpoint names its run
    named = [e for e in entries if baseline and b in (Path(e["run"]).resolve(), Path(e["folder"]).resolve())]
    base = (named or [e for e in entries if e["mode"] == "answer"] or [None])[0]
    students = [e for e in entries if e is not base]
    return base, ([base] if base else []) + students  # the baseline's row first


def tradeoff_table(entries, base, teachers, tok, args):
    """The report's title, what it measures, and its first table: accuracy against cost, a row per teacher and model."""
    presets = sorted({e["preset"] for e in entries if e["preset"]})
    lines = [f"# Chain-of-thought distillation on GSM8K: comparison", "",
             (f"Problems: not the same for every model ({differ}" if (differ := problem_sets_differ(entries)) else
              f"Problems: {entries[0]['m']['n'] if entries else 0} per model (")
             + f"{', '.join(sorted({e['scored'] for e in entries})) or args.eval_file or args.split}); "
             + (f"students trained with `train.py --preset {', '.join(presets)}`; " if presets else "")
             + f"written by `python evaluate.py --compare` on {time.strftime('%Y-%m-%d %H:%M')}. Latency is greedy decoding at batch 1 "
             f"with the KV cache (median / 90th percentile); memory is the peak of the evaluating process on CPU "
             f"(ru_maxrss, a process high-water mark) or torch's max allocated on CUDA.", "", "## Trade-off", "",
             f"| model | exact match (95% CI) | params (without embeddings) | latency ms median / p90 | samples/s batched | peak memory MB | "
             f"tokens / output (teachers: {'in the students’ tokenizer' if tok else 'API tokens'}) | steps / output | false equations (share of problems) | device | step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in teachers:
        s, (lo, hi), ar = t["s"], t["ci"], t["errors"]
        lat = [s.get(k) for k in ("latency_median_s", "latency_p90_s")]
        size = f"{size_label(s['params'])} (published)" if s.get("params") else "—"
        recorded = s.get("mode") == "recorded"
        lines.append(f"| teacher {cell(t['label'], '')} ({'recorded' if recorded else 'upper bound'}, n={t['n']}) | {t['em']:.3f} ({lo:.3f}-{hi:.3f}) | {size} | "
                     + ("—" if lat[0] is None else f"{' / '.join(cell(None if x is None else 1000 * x, '.0f') for x in lat)} (API)")
                     + f" | — | — | {cell(t['tokens'], '.1f')} | {t['steps']:.1f} | "
                     f"{cell(ar['equation_error_rate'], '.1%')} ({cell(ar['problem_error_rate'], '.1%')}) | {'recorded' if recorded else 'API'} | — |")
    for e in entries:
        m, eff = e["m"], e["eff"]
        lo, hi = m["exact_match_ci95"]
        lines.append(f"| {e['label']}{' (baseline)' if e is base else ''} | {m['exact_match']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{eff['params'] / 1e6:.2f}M ({eff['params_no_embeddings'] / 1e6:.2f}M) | {cell(m['latency_ms_median'], '.0f')} / "
                     f"{cell(m['latency_ms_p90'], '.0f')} | {m['samples_per_s']:.1f} | {eff['peak_memory_mb']:.0f} | {m['tokens_mean']:.1f} | "
                     f"{m['steps_mean']:.1f} | {cell(m['equation_error_rate'], '.1%')} ({cell(m['problem_error_rate'], '.1%')}) | {e['device']} | {cell(e['step'], '')} |")
    return lines


def report_notes(entries, teachers, unplaced, data_warnings):
    """What the trade-off table cannot show: its warnings, the two charts, and what is left out of the rest."""
    lines = []
    # from the metrics, not eval.json's own list: eval.json files in results/ may have none
    warnings = [w for w in (reasoning_warning(e["mode"], e["m"]) for e in entries) if w]
    for w in warnings:
        lines += ["", f"**Warning: {w}**, so its row above does not measure chain-of-thought."]
    for w in data_warnings:
        lines += ["", f"**Warning: {w}.**"]
    lines += ["", "![accuracy against latency](accuracy_latency.svg)", "", "![accuracy against parameters](accuracy_params.svg)", ""]
    if unplaced:
        lines += ["Not on the size chart, their size not published (or not one model's): "
                  + ", ".join(f"{t['label']} ({t['em']:.1%})" for t in unplaced) + ".", ""]
    missing = [e["label"] for e in entries if e["preds"] is None]
    if missing:
        which = "any of the students" if len(missing) == len(entries) else ", ".join(missing)
        lines += [f"Per-problem results (predictions.jsonl) were not kept for {which}: paired tests, examples "
                  f"and step matches against a teacher are left out for them.", ""]
    return lines


def teachers_section(teachers, entries, args):
    """The teachers against the students (teacher_section), with the reference solutions' step values where there are any."""
    references = {}
    try:
        references = {pid: ref for pid, _, _, ref in load_problems(args.split, args.eval_file, args.data_dir) if ref}
    except FileNotFoundError:  # the teachers' rows then have no reference column
        pass
    return teacher_section(teachers, entries, references)


def errors_table(entries):
    """Where each model's reasoning goes wrong: failure categories, step precision and recall, grounding, false results."""
    lines = ["## Errors inside the reasoning", "", "Step precision / recall: intermediate results written by the model against those of the "
             "reference solution (multisets, micro-averaged). First false equation: how many problems have their first false "
             "equation at step 1, 2, 3, 4, 5+. Reused: false results whose wrong value a later step takes as an operand. "
             "Grounded: operands that are numbers of the question or results of earlier steps (the rest are invented).", "",
             "| model | " + " | ".join(CATEGORY_NAMES[c] for c in CATEGORIES) + " | step precision | step recall | grounded operands | first false equation at 1/2/3/4/5+ | false results reused | answers that are a false result |",
             "| --- " * (len(CATEGORIES) + 7) + "|"]
    for e in entries:
        m = e["m"]
        lines.append(f"| {e['label']} | " + " | ".join(f"{m['failures'][c]} ({m['failures'][c] / max(1, m['n']):.0%})" for c in CATEGORIES)
                     + f" | {cell(m['step_precision'])} | {cell(m['step_recall'])} | {cell(m.get('grounded_operand_rate'), '.1%')} | {'/'.join(str(v) for v in m['first_wrong_step'].values())} | "
                     f"{m['wrong_results_reused']} of {m['wrong_results']} | {m['answers_from_wrong_result']} |")
    return lines


def paired_tests(paired, base):
    """McNemar's test of each student against the baseline on the problems both were asked, or why there is none."""
    if not paired:
        if base:
            return ["", "No per-problem results for the baseline and a student (predictions.jsonl): no paired test."]
        return ["", "No answer-only run among the compared ones (or --baseline): no paired test."]
    lines = ["", f"## Paired against the baseline ({base['label']})", "",
             "McNemar's test on the problems both were asked: only the discordant pairs count; p is the exact two-sided binomial test.", "",
             "| model | problems | both right | only model right | only baseline right | both wrong | p (exact) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in paired:
        ids = sorted(set(e["preds"]) & set(base["preds"]))
        t = mcnemar([e["preds"][i]["correct"] for i in ids], [base["preds"][i]["correct"] for i in ids])
        lines.append(f"| {e['label']} | {t['n']} | {t['both_right']} | {t['only_a']} | {t['only_b']} | {t['both_wrong']} | {t['p_exact']:.4g} |")
    return lines


def examples_section(paired, base, teacher, examples):
    """Up to examples problems per cell of right/wrong, each student against the baseline, the teacher's trace beside them."""
    lines = []
    rng = random.Random(0)  # the same examples every time the report is written
    for e in paired:
        lines += ["", f"## Examples: {e['label']} against {base['label']}", ""]
        ids = sorted(set(e["preds"]) & set(base["preds"]))
        for b_ok, s_ok in ((True, True), (True, False), (False, True), (False, False)):
            pool = [i for i in ids if base["preds"][i]["correct"] == b_ok and e["preds"][i]["correct"] == s_ok]
            lines.append(f"### baseline {'right' if b_ok else 'wrong'}, {e['label']} {'right' if s_ok else 'wrong'}: {len(pool)} of {len(ids)} problems\n")
            for i in rng.sample(pool, min(examples, len(pool))):
                p = e["preds"][i]
                lines += [f"**{i}** — {p['question']}", "", f"Gold answer: **{p['gold']}**", ""]
                if teacher and i in teacher["preds"]:
                    lines += [f"Teacher ({teacher['label']}):", block(teacher["preds"][i]["output"]), ""]
                lines += [f"Baseline ({base['label']}):", block(base["preds"][i]["output"]), "", f"{e['label']}:", block(p["output"]), ""]
    return lines


def failures_section(entries):
    """Each model's failure categories, most frequent first, with the shortest example of each."""
    lines = ["", "## Most frequent failures", ""]
    for e in [e for e in entries if e["preds"]]:
        wrong = Counter(r["category"] for r in e["preds"].values() if r["category"] != "correct")
        lines.append(f"### {e['label']}\n")
        for cat, k in wrong.most_common():
            ex = min((r for r in e["preds"].values() if r["category"] == cat), key=lambda r: (len(r["output"]), r["id"]))
            lines += [f"- **{CATEGORY_NAMES[cat]}**: {k} of {len(e['preds'])} problems. Shortest example, {ex['id']} (gold {ex['gold']}):", "",
                      block(ex["output"]), ""]
    return lines


def draw_charts(out, entries, teachers, unplaced):
    """The report's four SVG charts, written into out (the drawing is charts.py's); returns the training curves' section."""
    pts = [e for e in entries if e["m"]["latency_ms_median"] is not None]
    best = max(teachers, key=lambda t: t["em"], default=None)
    top = (f"best teacher ({best['label']})", best["em"]) if best else None
    svg_chart(out / "accuracy_latency.svg", "Exact match against latency (batch 1)", "median latency per sample (ms)", "exact match",
              [(e["label"], [(e["m"]["latency_ms_median"], e["m"]["exact_match"])], [e["m"]["exact_match_ci95"]]) for e in pts], lines=False, hline=top)
    # the students as one series: a dozen rows of one size would otherwise fill the legend
    sized = [("students", [(e["eff"]["params"], e["m"]["exact_match"]) for e in entries], [e["m"]["exact_match_ci95"] for e in entries])]
    sized += [(t["label"], [(t["s"]["params"], t["em"])], [t["ci"]]) for t in teachers if t not in unplaced]
    notes = textwrap.wrap("Not placed, size not published: " + ", ".join(f"{t['label']} {t['em']:.3f}" for t in unplaced), 105) if unplaced else []
    svg_chart(out / "accuracy_params.svg", "Exact match against size", "parameters (log scale)", "exact match", sized, lines=False,
              logx=True, notes=notes)
    logs = {e["run"]: (e["mode"], read_log(e["run"])) for e in entries}
    svg_chart(out / "train_loss.svg", "Training loss", "step", "loss", [(mode, loss, None) for mode, (loss, _) in logs.values()])
    svg_chart(out / "val_em.svg", "Validation exact match during training", "step", "exact match", [(mode, em, None) for mode, (_, em) in logs.values()])
    return ["## Training curves", "", "![training loss](train_loss.svg)", "", "![validation exact match](val_em.svg)", ""]


def main(argv=None):
    """`python evaluate.py --compare ...` (or `python report.py ...`): evaluate what is missing, write the report."""
    args = parse_args(argv)
    try:
        compare(args.runs, args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # eval.json, predictions.jsonl and report.md are written atomically: nothing is half-written
        print("\ninterrupted: the evaluations finished so far are kept; run the same command again to finish the report", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
