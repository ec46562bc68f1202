"""
Score trained students (and the LLM teacher) on GSM8K with numbers, and compare them.

    python evaluate.py runs/cot                          # test split -> runs/cot/eval-test/
    python evaluate.py runs/cot --calculator --split val # -> runs/cot/eval-val-calc/
    python evaluate.py runs/cot/best.pt --eval-file other.jsonl --limit 100   # any {question, answer} JSONL
    python evaluate.py --compare runs/answer runs/cot runs/mixed --teacher traces/gpt-4o-eval-test.jsonl
    python evaluate.py --compare runs/answer runs/cot --teacher traces/gpt-4-eval-test.jsonl --teacher traces/gpt-3.5-eval-test.jsonl

One run writes predictions.jsonl (every problem, every step checked) and eval.json (the metrics).
--compare reads those files (evaluating a run first if they are missing; a folder that already
holds an eval.json, e.g. runs/cot/eval-test-calc, is read as it is) and writes report.md with
its SVG charts into --out (default runs/report/).
"""
import argparse
import json
import math
import random
import resource
import shlex
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import ablations
import cli_checks
import data
import download
import files
import intervals
import tokenizer
import traces
from charts import size_label, svg_chart  # the drawing, kept apart from the metrics
from checkpoint import load_checkpoint
from device import pick_device
from model import generate_many
from recorded import load_teacher_eval
from traces import arithmetic_error_rate, exact_match, step_correctness, step_values

CATEGORIES = ("correct", "arithmetic_slip", "wrong_reasoning", "no_answer", "cut_off")
CATEGORY_NAMES = {"correct": "correct", "arithmetic_slip": "arithmetic slip", "no_answer": "no or malformed answer",
                  "wrong_reasoning": "wrong reasoning, sound arithmetic", "cut_off": "cut off at the length limit"}

# -----------------------------------------------------------------------------
# Metrics: pure functions of strings and lists, so each can be checked on hand-made cases


def grounding(question, output):
    """
    Where the operands of an output's equations come from: numbers of the question or results of
    earlier steps (grounded), or neither (invented). The first thing that must move when a student
    learns to read a problem rather than recall one.
    Example: grounding("Tom has 5 apples and buys 3.", "5 + 3 = 8\\n8 * 2 = 16\\n#### 16") == {"operands": 4, "grounded": 3}
    """
    known = {data.normalize_number(x) for x in data.NUMBER.findall(question)}
    operands = grounded = 0
    for s in traces.check_trace(output)["steps"]:
        for x in data.NUMBER.findall(s.expression):
            operands += 1
            grounded += data.normalize_number(x) in known
        known.add(data.normalize_number(s.claimed))
    return {"operands": operands, "grounded": grounded}


def classify_failure(output, gold, cut_off):
    """
    One category per output, first match wins: correct (traces.exact_match); cut_off (hit the
    length limit); no_answer (no '#### <number>' last line); arithmetic_slip (some written equation is false); wrong_reasoning (every equation holds,
    vacuously so for answer-only outputs, yet the answer is wrong).
    Example: classify_failure("5 * 4 = 21\\n#### 21", "20", cut_off=False) == "arithmetic_slip"
    """
    c = traces.check_trace(output)
    if exact_match(output, gold):
        return "correct"
    if cut_off:
        return "cut_off"
    if not c["well_formed"]:
        return "no_answer"
    return "arithmetic_slip" if c["n_wrong"] else "wrong_reasoning"


def error_propagation(trace):
    """
    Where the first false equation falls (0-based step index, and its position 0..1 from first
    to last step) and how many false results are reused: their (wrong) value appears as an
    operand in a later step's expression. answer_from_wrong: the final answer is a false result.
    Example: error_propagation("5 * 4 = 21\\n21 - 3 = 18\\n#### 18")["wrong_reused"] == 1
    """
    c = traces.check_trace(trace)
    steps = c["steps"]
    wrong = [i for i, s in enumerate(steps) if not s.ok]
    operands = [{data.normalize_number(x) for x in data.NUMBER.findall(s.expression)} for s in steps]
    reused = sum(any(data.normalize_number(steps[i].claimed) in ops for ops in operands[i + 1:]) for i in wrong)
    first = wrong[0] if wrong else None
    return {"n_steps": len(steps), "wrong": len(wrong), "first_wrong": first,
            "first_wrong_position": None if first is None else first / max(1, len(steps) - 1),
            "wrong_reused": reused,
            "answer_from_wrong": any(data.normalize_number(steps[i].claimed) == c["answer"] for i in wrong)}


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


def summarize(rows):
    """
    Every metric of one model on one task from its predictions rows (what predictions.jsonl
    holds), so eval.json can always be recomputed from predictions.jsonl.
    Example: summarize(read_predictions("runs/cot/eval-test"))["exact_match"]
    """
    n, k = len(rows), sum(r["correct"] for r in rows)
    outputs = [r["output"] for r in rows]
    prop = [error_propagation(o) for o in outputs]
    firsts = [p["first_wrong"] for p in prop if p["first_wrong"] is not None]
    wrong = sum(p["wrong"] for p in prop)
    spr = [r["step_match"] for r in rows if r.get("step_match")]
    matched, n_out, n_ref = (sum(s[key] for s in spr) for key in ("matched", "n_output", "n_reference"))
    tokens = [r["n_tokens"] for r in rows]
    ground = [r.get("grounding") or grounding(r.get("question") or "", r["output"]) for r in rows]  # older predictions lack it
    operands = sum(g["operands"] for g in ground)
    return {"n": n, "correct": k, "exact_match": k / n if n else 0.0, "exact_match_ci95": list(intervals.wilson_interval(k, n)),
            **arithmetic_error_rate(outputs),
            "tokens_mean": float(np.mean(tokens)) if n else 0.0, "tokens_median": float(np.median(tokens)) if n else 0.0,
            "steps_mean": sum(p["n_steps"] for p in prop) / n if n else 0.0,
            # micro-averaged over all values, so a problem with many steps weighs more
            "step_precision": matched / n_out if n_out else None, "step_recall": matched / n_ref if n_ref else None,
            "operands": operands, "grounded_operand_rate": sum(g["grounded"] for g in ground) / operands if operands else None,
            "failures": {c: sum(r["category"] == c for r in rows) for c in CATEGORIES},
            "first_wrong_step": {str(i + 1): firsts.count(i) for i in range(4)} | {"5+": sum(i >= 4 for i in firsts)},
            "first_wrong_position_mean": float(np.mean([p["first_wrong_position"] for p in prop if p["first_wrong"] is not None])) if firsts else None,
            "wrong_results": wrong, "wrong_results_reused": sum(p["wrong_reused"] for p in prop),
            "wrong_reuse_rate": sum(p["wrong_reused"] for p in prop) / wrong if wrong else None,
            "answers_from_wrong_result": sum(p["answer_from_wrong"] for p in prop)}


def reasoning_warning(mode, m):
    """
    A warning when a model asked to reason writes almost none: fewer than one equation per output
    on average from a cot or shuffled run or a mixed run's cot task (a small student may learn to
    answer directly whatever it is asked). filler is left out: its reasoning is '.' tokens by design.
    Example: reasoning_warning("mixed", {"task": "cot", "label": "mixed/cot", "steps_mean": 0.0})
             == "mixed/cot writes no reasoning: 0.0 steps per output"
    """
    asked = m.get("task") == "cot" or (m.get("task") is None and mode in ("cot", "shuffled"))
    if asked and m["steps_mean"] < 1:  # rounded, not formatted: 0.96 must not read as 1.0
        return f"{m['label']} writes no reasoning: {round(m['steps_mean'], 2)} steps per output"
    return None


# -----------------------------------------------------------------------------
# One run: load, decode, score, write


def resolve_run(path):
    """
    (run folder, checkpoint file) from a run folder (its best.pt) or a checkpoint file. A folder
    without best.pt is an error that says how to go on with its run.
    Example: resolve_run("runs/cot") == (Path("runs/cot"), Path("runs/cot/best.pt"))
    """
    path = Path(path)
    if path.is_file():
        return path.parent, path
    if not path.is_dir():
        raise FileNotFoundError(f"run folder {path} not found: train it with `python train.py --mode <mode> --out {path}` or fix the path")
    if not (path / "best.pt").exists():
        raise FileNotFoundError(f"{path} has no best.pt: {unfinished_run_advice(path)}")
    return path, path / "best.pt"


def unfinished_run_advice(path):
    """
    What to do with a run folder that has no best.pt, with the command that does it: the train.py
    command the run recorded (config.json), else one made of its mode and preset.
    Example: unfinished_run_advice(Path("runs/answer"))  # "the run stopped before its first validation; continue it with ..."
    """
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else None
    if config is None:
        return f"it holds no run (no config.json); train one with `python train.py --mode <mode> --out {path}`"
    resume = config.get("resume_command") or shlex.join(["python", "train.py", "--mode", config.get("mode", "cot"), "--preset",
                                                          config.get("preset", "default"), "--out", str(path), "--resume"])
    if (path / "last.pt").exists():
        return f"the run stopped before its first validation; continue it with `{resume}`, or evaluate {path / 'last.pt'}"
    restart = resume.removesuffix(" --resume") + " --overwrite"
    return f"the run stopped before its first checkpoint (or is starting); start it again with `{restart}`"


def load_problems(split, eval_file=None, data_dir=None):
    """
    (id, question, gold answer, reference trace or None) of a GSM8K split, or of any JSONL of
    {question, answer} where answer is a GSM8K-style solution ('... #### 18') or just the number.
    Example: load_problems("test")[0][2] == "18"
    """
    if not eval_file:
        return [(p.id, p.question, p.answer, traces.reference_to_trace(p.solution)) for p in data.load_gsm8k(split, data_dir)]
    if not Path(eval_file).exists():
        raise FileNotFoundError(f"eval file {eval_file} not found: give a JSONL of {{\"question\", \"answer\"}} lines")
    out = []
    for i, row in enumerate(data.read_jsonl(eval_file), 1):
        answer = str(row.get("answer", "")) if isinstance(row, dict) else ""
        gold = data.extract_answer(answer)
        if gold is None or not isinstance(row.get("question"), str):
            raise ValueError(f"{eval_file}:{i}: needs a string 'question' and an 'answer' holding a number")
        ref = traces.reference_to_trace(answer) if "####" in answer else None
        out.append((str(row.get("id", f"{Path(eval_file).stem}-{i - 1:05d}")), row["question"], gold, ref))
    return out


def load_tokenizer(ckpt, run_dir):
    """
    The tokenizer the run was trained with, checked by its sha256 and by its size against the model's vocabulary.
    Example: tok = load_tokenizer(load_checkpoint("runs/cot/best.pt")[1], "runs/cot")
    """
    info = ckpt.get("tokenizer") or {}
    path = Path(info.get("path", ""))
    if not path.is_file():  # a run copied from another machine: look in this checkout's cache
        path = tokenizer.TOKENIZER_DIR / path.name
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer {info.get('path')} of run {run_dir} not found: train.py re-creates it "
                                f"(same --vocab-size and data), or copy it to {path}")
    tok = tokenizer.Tokenizer(path)
    if info.get("sha256") and tok.sha256 != info["sha256"]:
        raise ValueError(f"tokenizer {path} is not the one run {run_dir} was trained with (sha256 differs)")
    n = (ckpt.get("config") or {}).get("vocab_size")
    if n is not None and n != tok.vocab_size:  # ids would mean other pieces: every output garbled, silently
        raise ValueError(f"tokenizer {path} has {tok.vocab_size} pieces but the model of run {run_dir} has {n}: "
                         f"they were not trained together; give the run the tokenizer it was trained with")
    return tok


def eval_data(run_dir, split, eval_file, data_dir, other_data=False):
    """
    The file an evaluation scores, by content, against what the run was trained with (its
    config.json): {"file", "trained_on", "same_as_training", "warnings"}. A GSM8K split must be
    the very file the run recorded (sha256), else a ValueError, unless other_data asks for it; an
    --eval-file is other data by request. Warnings say what the numbers are not.
    Example: eval_data(Path("runs/cot"), "test", None, None)["same_as_training"] is True
    """
    path = Path(eval_file) if eval_file else data.resolve_data_dir(data_dir) / ("test.jsonl" if split == "test" else "train.jsonl")
    used = download.file_record(path)
    config = Path(run_dir) / "config.json"
    was = (json.loads(config.read_text()).get("data_files") or {}).get(split if split == "test" else "train") if config.exists() else None
    same = None if eval_file or not was else was["sha256"] == used["sha256"]  # None: nothing to compare with
    if same is False and not other_data:
        raise ValueError(f"{path} ({used['rows']} rows, sha256 {used['sha256'][:12]}...) is not the {path.name} run {run_dir} was trained "
                         f"with ({was['path']}, {was['rows']} rows, sha256 {was['sha256'][:12]}...); pass --data-dir to that "
                         f"folder, or --other-data to score this file anyway")
    warnings = []
    if same is False:
        warnings.append(f"scored on {path} ({used['rows']} rows), not the {path.name} the run was trained with ({was['rows']} rows)")
    if used.get("official") is False:
        warnings.append(f"{path} is not the official GSM8K {path.name} ({used['rows']} rows): not a GSM8K score")
    return {"file": used, "trained_on": was, "same_as_training": same, "warnings": warnings}


def decode_all(model, sources, max_new, batch_size, calculator, label=None, prefix=(), every=10.0):
    """
    Greedy outputs in the original order and the seconds taken: the batches of one generate_many
    call over all sources, made one call each so that a progress line with an ETA can be printed
    between, under label, at most every `every` seconds and at the end (no line without a label).
    Example: outs, seconds = decode_all(model, [[5, 6, 7], [8, 9]], 64, 32, None, "cot")
    """
    # generate_many sorts only the list it is given: sorting all sources here first keeps the
    # batches (and so the outputs) those of a single call over every source
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outs, t0 = [None] * len(sources), time.time()
    printed = t0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        for i, ids in zip(idx, generate_many(model, [sources[i] for i in idx], max_new, batch_size, calculator=calculator, prefix=prefix)):
            outs[i] = ids
        done, el = start + len(idx), time.time() - t0
        if label and (time.time() - printed >= every or done == len(sources)):
            print(f"  {label}: {done}/{len(sources)} problems | {el:.0f} s | eta {el / done * (len(sources) - done):.0f} s", flush=True)
            printed = time.time()
    return outs, time.time() - t0


def decode_and_score(model, tok, questions, golds, mode, task, reasoning_tokens, batch_size, calculator=None, label=None):
    """
    Greedy-decode each question as a task asks (its prefix forced, its budget: traces.decode_budget)
    and score each output by exact match: the one decode-and-score path of train.py (validation,
    test) and evaluate.py. Returns (token ids, texts, correct, seconds), in the order of questions.
    Example: ids, texts, correct, seconds = decode_and_score(model, tok, questions, golds, "cot", None, 512, 64)
    """
    prefix = tok.encode(traces.task_prefix(task))  # forced: a mixed model does the task it is asked
    max_new = traces.decode_budget(mode, task, reasoning_tokens)
    ids, seconds = decode_all(model, [tok.encode(q) for q in questions], max_new, batch_size, calculator, label, prefix)
    texts = [tok.decode(o) for o in ids]
    return ids, texts, [exact_match(t, g) for t, g in zip(texts, golds)], seconds


def batch1_latency(model, sources, max_new, device, calculator, prefix=()):
    """
    Seconds per sample at batch 1 with the KV cache, after one warm-up call (lazy init is not latency).
    Example: ms = 1000 * np.median(batch1_latency(model, sources[:20], 400, torch.device("cpu"), None))
    """
    times = []
    for k, src in enumerate([sources[0]] + sources):
        x = torch.tensor([src], device=device)
        t0 = time.perf_counter()
        model.generate(x, max_new, use_cache=True, calculator=calculator, prefix=prefix)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if k:
            times.append(time.perf_counter() - t0)
    return times


def eval_dir_name(split, eval_file, calculator, limit):
    """
    eval-test, eval-val-calc, eval-myfile-limit100: settings that change the numbers get their own folder.
    Example: eval_dir_name("val", None, True, 0) == "eval-val-calc"
    """
    name = f"eval-{Path(eval_file).stem if eval_file else split}"
    return name + ("-calc" if calculator else "") + (f"-limit{limit}" if limit else "")


def evaluate_run(run, split="test", eval_file=None, calculator=False, limit=0, out=None, batch_size=None,
                 max_new_tokens=None, latency_samples=20, device=None, data_dir=None, other_data=False):
    """
    Decode every problem greedily, check every output, write predictions.jsonl and eval.json
    into out (default RUN/eval-<split>[-calc][-limitN]/), return the eval.json dict.
    Example: evaluate_run("runs/cot", limit=100)["results"][0]["exact_match"]
    """
    run_dir, ckpt_path = resolve_run(run)
    device = pick_device(device)
    model, ckpt = load_checkpoint(str(ckpt_path), map_location=device)
    cfg = ckpt.get("train_config") or {}
    mode = cfg.get("mode", "cot")
    tok = load_tokenizer(ckpt, run_dir)
    problems = load_problems(split, eval_file, data_dir or cfg.get("data_dir") or None)[: limit or None]
    data_info = eval_data(run_dir, split, eval_file, data_dir or cfg.get("data_dir") or None, other_data)
    if not problems:
        raise ValueError(f"no problems to score in {eval_file or split}")
    out = Path(out or run_dir / eval_dir_name(split, eval_file, calculator, limit))
    out.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.generate(torch.tensor([tok.encode(problems[0][1])], device=device), 2)  # lazy init is not throughput
    rows, results, reasoning_tokens = [], [], max_new_tokens or cfg.get("max_new_tokens", 512)
    for task in ablations.ways_to_ask(mode):
        label = (f"{mode}/{task}" if task else mode) + ("+calc" if calculator else "")
        print(f"{label}: decoding {len(problems)} problems ({split if not eval_file else eval_file}), "
              f"up to {traces.decode_budget(mode, task, reasoning_tokens)} new tokens, on {device}")
        m, task_rows = score_task(model, tok, problems, mode, task, label, calculator, reasoning_tokens,
                                  batch_size or cfg.get("eval_batch", 64), latency_samples)
        results.append(m)
        rows += task_rows
    peak, kind = peak_memory(device)
    weights = sum({t.data_ptr(): t.numel() * t.element_size() for t in model.state_dict().values()}.values())  # tied once
    report = {"run": str(run_dir), "checkpoint": str(ckpt_path), "step": ckpt.get("step"), "mode": mode,
              "split": None if eval_file else split, "eval_file": eval_file, "limit": limit, "calculator": calculator,
              "device": str(device), "torch": torch.__version__, "data": data_info, "tokenizer_sha256": tok.sha256,
              "warnings": [w for w in (reasoning_warning(mode, m) for m in results) if w] + data_info["warnings"],
              "efficiency": {"params": model.num_params(), "params_no_embeddings": model.num_params(exclude_embeddings=True),
                             # the file also holds optimizer state, hence the weights' own size beside it
                             "checkpoint_mb": ckpt_path.stat().st_size / 2 ** 20, "weights_mb": weights / 2 ** 20,
                             "peak_memory_mb": peak, "peak_memory_kind": kind},
              "results": results}
    files.write_atomic(out / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    files.write_atomic(out / "eval.json", json.dumps(report, indent=2) + "\n")
    print_results(report, out)
    return report


def score_task(model, tok, problems, mode, task, label, calculator, reasoning_tokens, batch_size, latency_samples):
    """
    One task of one model on problems: (its metrics, its predictions rows, every output checked
    step by step), decoded by decode_and_score, with its batch-1 latency on the first problems.
    Example: m, rows = score_task(model, tok, load_problems("test")[:50], "cot", None, "cot", False, 512, 64, 20)
    """
    device = next(model.parameters()).device
    prefix = tok.encode(traces.task_prefix(task))
    max_new = traces.decode_budget(mode, task, reasoning_tokens)
    calc = traces.Calculator(tok) if calculator else None
    ids, texts, correct, seconds = decode_and_score(model, tok, [q for _, q, _, _ in problems], [gold for _, _, gold, _ in problems],
                                                   mode, task, reasoning_tokens, batch_size, calc, label)
    rows = []
    for (pid, q, gold, ref), o, text, ok in zip(problems, ids, texts, correct):
        cut, c = len(o) >= max_new, traces.check_trace(text)  # cut: no eos within the budget
        rows.append({"id": pid, "task": task, "question": q, "gold": gold, "output": text, "pred": c["answer"],
                     "correct": ok, "category": classify_failure(text, gold, cut),
                     "cut_off": cut, "n_tokens": len(o), "n_steps": c["n_steps"], "n_wrong": c["n_wrong"],
                     "steps": [{"expression": s.expression, "claimed": s.claimed, "value": s.value, "ok": s.ok} for s in c["steps"]],
                     "step_match": step_correctness(text, ref) if ref else None,
                     "grounding": grounding(q, text)})
    sources = [tok.encode(q) for _, q, _, _ in problems[:latency_samples]]
    lat = batch1_latency(model, sources, max_new, device, traces.Calculator(tok) if calculator else None, prefix) if latency_samples else []
    m = summarize(rows)
    m.update({"task": task, "label": label, "max_new_tokens": max_new, "decode_s": seconds,
              "samples_per_s": len(ids) / seconds, "tokens_per_s": sum(map(len, ids)) / seconds,
              "latency_ms_median": 1000 * float(np.median(lat)) if lat else None,
              "latency_ms_p90": 1000 * float(np.percentile(lat, 90)) if lat else None,
              "latency_samples": len(lat), "calculator_fired": calc.fired if calc else 0})
    return m, rows


def peak_memory(device):
    """(peak memory in MB, what was measured): the allocator's peak on a GPU, the process' on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20, "torch.cuda.max_memory_allocated"
    # the whole process' high-water mark (Python, torch, data), not the model alone; KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)
    return peak, "process high-water mark (ru_maxrss)"


def print_results(report, out):
    """One line per task of an evaluation, its warnings, and where it was written."""
    for m in report["results"]:
        lo, hi = m["exact_match_ci95"]
        print(f"{m['label']}: exact match {m['correct']}/{m['n']} = {m['exact_match']:.3f} (95% CI {lo:.3f}-{hi:.3f}) | "
              f"equations false {fmt(m['equation_error_rate'], '.1%')} | operands grounded {fmt(m['grounded_operand_rate'], '.1%')} | {m['tokens_mean']:.1f} tokens, {m['steps_mean']:.1f} steps | "
              f"latency {fmt(m['latency_ms_median'], '.0f')} ms | {m['samples_per_s']:.1f} samples/s | failures {m['failures']}")
    for w in report["warnings"]:
        print(f"warning: {w}")
    eff = report["efficiency"]
    print(f"peak memory {eff['peak_memory_mb']:.0f} MB ({eff['peak_memory_kind']}); wrote {out / 'predictions.jsonl'} and {out / 'eval.json'}")


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


# -----------------------------------------------------------------------------
# The comparison: report.md and SVG charts from eval.json files


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
                         "em": k / n, "ci": intervals.wilson_interval(k, len(rows)), "errors": arithmetic_error_rate(outputs),
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
             "normalized by `traces.normalize_reply`, the answer read by `data.extract_answer` (the `#### N` line, else "
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
    out.mkdir(parents=True, exist_ok=True)
    entries, data_warnings = compared_entries(runs, args)
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
    files.write_atomic(out / "report.md", "\n".join(lines))
    print(f"wrote {out / 'report.md'} and 4 charts beside it")
    return out / "report.md"


def compared_entries(runs, args):
    """
    One entry per (model, task) of the runs, evaluated first where no eval.json is found: label,
    mode, metrics, efficiency, run folder, predictions by id (None: not kept); and the warnings
    the eval.json files give about their data, once per folder.
    Example: entries, data_warnings = compared_entries(["runs/answer", "runs/cot"], args)
    """
    entries, data_warnings = [], []
    for run in runs:
        run = Path(run)
        folder = run if (run / "eval.json").exists() else resolve_run(run)[0] / eval_dir_name(args.split, args.eval_file, args.calculator, args.limit)
        if not (folder / "eval.json").exists():
            evaluate_run(run, args.split, args.eval_file, args.calculator, args.limit, folder, args.batch_size,
                         args.max_new_tokens, args.latency_samples, args.device, args.data_dir, args.other_data)
        report, rows = read_eval(folder)
        data_warnings += [f"{folder}: {w}" for w in (report.get("data") or {}).get("warnings", [])]
        run_dir = Path(report["run"])
        if not (run_dir / "config.json").exists() and (folder.parent / "config.json").exists():
            run_dir = folder.parent  # published results moved since: the eval folder sits in its run folder
        for m in report["results"]:
            preds = None if rows is None else {r["id"]: r for r in rows if r.get("task") == m["task"]}
            entries.append({"label": m["label"], "mode": report["mode"], "m": m, "eff": report["efficiency"], "run": str(run_dir),
                            "folder": str(folder), "device": report["device"], "preds": preds,
                            "scored": report.get("eval_file") or report.get("split") or "test", "preset": trained_preset(run_dir)})
    labels = Counter(e["label"] for e in entries)
    for e in entries:  # two runs of one mode (cot with and without --mask-results) are told apart by their folders
        if labels[e["label"]] > 1:
            e["label"] = f"{e['label']} [{Path(e['run']).name}]"
    return entries, data_warnings


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
             f"Problems: {entries[0]['m']['n'] if entries else 0} per model "
             f"({', '.join(sorted({e['scored'] for e in entries})) or args.eval_file or args.split}); "
             + (f"students trained with `train.py --preset {', '.join(presets)}`; " if presets else "")
             + f"written by `python evaluate.py --compare` on {time.strftime('%Y-%m-%d %H:%M')}. Latency is greedy decoding at batch 1 "
             f"with the KV cache (median / 90th percentile); memory is the peak of the evaluating process on CPU "
             f"(ru_maxrss, a process high-water mark) or torch's max allocated on CUDA.", "", "## Trade-off", "",
             f"| model | exact match (95% CI) | params (without embeddings) | latency ms median / p90 | samples/s batched | peak memory MB | "
             f"tokens / output (teachers: {'in the students’ tokenizer' if tok else 'API tokens'}) | steps / output | false equations (share of problems) | device |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in teachers:
        s, (lo, hi), ar = t["s"], t["ci"], t["errors"]
        lat = [s.get(k) for k in ("latency_median_s", "latency_p90_s")]
        size = f"{size_label(s['params'])} (published)" if s.get("params") else "—"
        recorded = s.get("mode") == "recorded"
        lines.append(f"| teacher {cell(t['label'], '')} ({'recorded' if recorded else 'upper bound'}, n={t['n']}) | {t['em']:.3f} ({lo:.3f}-{hi:.3f}) | {size} | "
                     + ("—" if lat[0] is None else f"{' / '.join(cell(None if x is None else 1000 * x, '.0f') for x in lat)} (API)")
                     + f" | — | — | {cell(t['tokens'], '.1f')} | {t['steps']:.1f} | "
                     f"{cell(ar['equation_error_rate'], '.1%')} ({cell(ar['problem_error_rate'], '.1%')}) | {'recorded' if recorded else 'API'} |")
    for e in entries:
        m, eff = e["m"], e["eff"]
        lo, hi = m["exact_match_ci95"]
        lines.append(f"| {e['label']}{' (baseline)' if e is base else ''} | {m['exact_match']:.3f} ({lo:.3f}-{hi:.3f}) | "
                     f"{eff['params'] / 1e6:.2f}M ({eff['params_no_embeddings'] / 1e6:.2f}M) | {cell(m['latency_ms_median'], '.0f')} / "
                     f"{cell(m['latency_ms_p90'], '.0f')} | {m['samples_per_s']:.1f} | {eff['peak_memory_mb']:.0f} | {m['tokens_mean']:.1f} | "
                     f"{m['steps_mean']:.1f} | {cell(m['equation_error_rate'], '.1%')} ({cell(m['problem_error_rate'], '.1%')}) | {e['device']} |")
    return lines


def report_notes(entries, teachers, unplaced, data_warnings):
    """What the trade-off table cannot show: its warnings, the two charts, and what is left out of the rest."""
    lines = []
    # computed again from the metrics, so eval.json files written before the warnings existed get them too
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


# train.PRESETS' test_limit of each preset (evaluate.py never imports train.py; a test checks that they agree)
PRESET_TEST_LIMIT = {"smoke": 32, "default": 0, "gpu": 0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("runs", nargs="+", help="run folder(s) (their best.pt) or checkpoint file(s); with --compare also eval folders")
    a("--compare", action="store_true", help="compare the runs: write report.md and SVG charts into --out")
    a("--teacher", action="append", help="--compare: a teacher's `teacher.py --eval` or `--recorded` JSONL, once per "
                                         "teacher; the first one's traces are shown beside the students'")
    a("--side-by-side", type=int, default=3, help="--compare: problems shown per student beside the first teacher's trace")
    a("--baseline", help="--compare: run folder to test against (default: the run whose mode is answer)")
    a("--split", default="test", choices=["test", "val"], help="GSM8K split to score")
    a("--eval-file", help="score this JSONL of {question, answer} lines instead of a GSM8K split")
    a("--calculator", action="store_true", help="calculator-augmented decoding: results after '=' are computed")
    a("--preset", choices=list(PRESET_TEST_LIMIT), help="train.py's preset names: --limit defaults to the preset's test_limit "
      "(smoke: the first 32 problems; default, gpu: all); batch size and decoding budget are the run's own")
    a("--limit", type=cli_checks.arg_number(int, at_least=0), help="score only the first N problems (0 = all; default: the preset's, else all)")
    a("--batch-size", type=cli_checks.arg_number(int, at_least=1), help="sequences decoded together (default: the run's eval_batch)")
    a("--max-new-tokens", type=cli_checks.arg_number(int, at_least=1), help="decoding budget for reasoning (default: the run's max_new_tokens)")
    a("--latency-samples", type=cli_checks.arg_number(int, at_least=0), default=20, help="first N problems timed one at a time for latency (0 = skip)")
    a("--examples", type=cli_checks.arg_number(int, at_least=0), default=1, help="--compare: examples shown per cell of right/wrong against the baseline")
    a("--other-data", action="store_true", help="score a GSM8K file other than the one the run was trained with (its sha256 "
      "differs); eval.json and the report say so")
    a("--device", help="cuda | mps | cpu (default: the best available)")
    a("--data-dir", help="GSM8K folder (default: the run's, else $GSM8K_DIR, else data/gsm8k)")
    a("--out", help="output folder (default: RUN/eval-<split>[-calc][-limitN]/, or runs/report/ with --compare)")
    args = p.parse_args(argv)
    if args.limit is None:
        args.limit = PRESET_TEST_LIMIT[args.preset] if args.preset else 0
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.compare:
            compare(args.runs, args)
        else:
            if args.out and len(args.runs) > 1:
                sys.exit("error: --out names one folder; evaluate one run at a time with it")
            for run in args.runs:
                evaluate_run(run, args.split, args.eval_file, args.calculator, args.limit, args.out, args.batch_size,
                             args.max_new_tokens, args.latency_samples, args.device, args.data_dir, args.other_data)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
