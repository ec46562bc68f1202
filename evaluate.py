"""
Score a trained student on GSM8K: decode every problem greedily, check every output step by step,
and write predictions.jsonl (every problem) and eval.json (every metric, recomputable from it).

    python evaluate.py runs/cot                          # test split -> runs/cot/eval-test/
    python evaluate.py runs/cot --calculator --split val # -> runs/cot/eval-val-calc/
    python evaluate.py runs/cot/best.pt --eval-file other.jsonl --limit 100   # any {question, answer} JSONL
    python evaluate.py --compare runs/answer runs/cot runs/mixed --teacher traces/gpt-4o-eval-test.jsonl
    python evaluate.py --compare runs/answer runs/cot --teacher traces/gpt-4-eval-test.jsonl --teacher traces/gpt-3.5-eval-test.jsonl

--compare is report.py's: it reads those files (evaluating a run first if they are missing; a
folder that already holds an eval.json, e.g. runs/cot/eval-test-calc, is read as it is) and writes
report.md with its SVG charts into --out (default runs/report/). Beside this file: eval_inputs.py
(the run folder, tokenizer and data file an evaluation reads, checked).
"""
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

import data
from ablations import ways_to_ask
from cli_checks import arg_number, refuse_missing_values
from files import portable_path, write_atomic
from intervals import wilson_interval
import traces
from eval_inputs import check_eval_out, eval_data, load_tokenizer, read_eval_file, resolve_run
from checkpoint import load_checkpoint
from device import pick_device
from model import generate_many
from target_loss import add_target_loss, target_losses
from traces import arithmetic_error_rate, exact_match, step_correctness

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


def summarize(rows):
    """
    Every metric of one model on one task from its predictions rows (what predictions.jsonl
    holds), so eval.json can always be recomputed from predictions.jsonl.
    Example: summarize(read_predictions("runs/cot/eval-test"))["exact_match"]
    """
    n, k = len(rows), sum(r["correct"] for r in rows)
    outputs = [r["output"] for r in rows]
    propagation = [error_propagation(o) for o in outputs]
    firsts = [p["first_wrong"] for p in propagation if p["first_wrong"] is not None]
    wrong = sum(p["wrong"] for p in propagation)
    step_matches = [r["step_match"] for r in rows if r.get("step_match")]
    matched, n_out, n_ref = (sum(s[key] for s in step_matches) for key in ("matched", "n_output", "n_reference"))
    tokens = [r["n_tokens"] for r in rows]
    operands = sum(r["grounding"]["operands"] for r in rows)
    return {"n": n, "correct": k, "exact_match": k / n if n else 0.0, "exact_match_ci95": list(wilson_interval(k, n)),
            **arithmetic_error_rate(outputs),
            "tokens_mean": float(np.mean(tokens)) if n else 0.0, "tokens_median": float(np.median(tokens)) if n else 0.0,
            "steps_mean": sum(p["n_steps"] for p in propagation) / n if n else 0.0,
            # micro-averaged over all values, so a problem with many steps weighs more
            "step_precision": matched / n_out if n_out else None, "step_recall": matched / n_ref if n_ref else None,
            "operands": operands, "grounded_operand_rate": sum(r["grounding"]["grounded"] for r in rows) / operands if operands else None,
            "failures": {c: sum(r["category"] == c for r in rows) for c in CATEGORIES},
            "first_wrong_step": {str(i + 1): firsts.count(i) for i in range(4)} | {"5+": sum(i >= 4 for i in firsts)},
            "first_wrong_position_mean": float(np.mean([p["first_wrong_position"] for p in propagation if p["first_wrong"] is not None])) if firsts else None,
            "wrong_results": wrong, "wrong_results_reused": sum(p["wrong_reused"] for p in propagation),
            "wrong_reuse_rate": sum(p["wrong_reused"] for p in propagation) / wrong if wrong else None,
            "answers_from_wrong_result": sum(p["answer_from_wrong"] for p in propagation)}


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


def load_problems(split, eval_file=None, data_dir=None):
    """
    (id, question, gold answer, reference trace or None) of a GSM8K split, or of any JSONL of
    {question, answer} where answer is a GSM8K-style solution ('... #### 18') or just the number (read_eval_file).
    Example: load_problems("test")[0][2] == "18"
    """
    if not eval_file:
        return [(p.id, p.question, p.answer, traces.reference_to_trace(p.solution)) for p in data.load_gsm8k(split, data_dir)]
    return read_eval_file(eval_file)  # every answer read exactly, a bad row named by its line (eval_inputs.py)


def decode_and_score(model, tok, questions, golds, mode, task, reasoning_tokens, batch_size, calculator=None, label=None):
    """
    Greedy-decode each question as a task asks (its prefix forced, its budget: traces.decode_budget)
    and score each output by exact match: the one decode-and-score path of train.py (validation,
    test) and evaluate.py. Returns (token ids, texts, correct, seconds), in the order of questions.
    Example: ids, texts, correct, seconds = decode_and_score(model, tok, questions, golds, "cot", None, 512, 64)
    """
    prefix, max_new = how_asked(tok, mode, task, reasoning_tokens)
    return decode_and_check(model, tok, questions, golds, prefix, max_new, batch_size, calculator, label)


def how_asked(tok, mode, task, reasoning_tokens):
    """
    (the prefix ids decoding forces, the new-token budget) of a task: a mixed model does the task it is asked.
    Example: how_asked(tok, "answer", None, 512) == ([], traces.ANSWER_TOKENS)
    """
    return tok.encode(traces.task_prefix(task)), traces.decode_budget(mode, task, reasoning_tokens)


def decode_and_check(model, tok, questions, golds, prefix, max_new, batch_size, calculator, label):
    """decode_and_score with the prefix and budget given: one model.generate_many call and its time, with
    progress lines under label (none without one)."""
    t0 = time.time()
    ids = generate_many(model, [tok.encode(q) for q in questions], max_new, batch_size, calculator=calculator, prefix=prefix,
                        on_batch=ProgressLine(label, t0) if label else None)
    seconds = time.time() - t0
    texts = [tok.decode(o) for o in ids]
    return ids, texts, [exact_match(t, g) for t, g in zip(texts, golds)], seconds


class ProgressLine:
    """
    A decoding progress line with an ETA, printed at most every `every` seconds and at the end:
    a generate_many on_batch callback.
    Example: generate_many(model, sources, 64, on_batch=ProgressLine("test decoding", time.time()))
    """

    def __init__(self, label, t0, every=10.0):
        self.label, self.t0, self.every, self.printed = label, t0, every, t0

    def __call__(self, done, total):
        now = time.time()
        if now - self.printed >= self.every or done == total:
            elapsed = now - self.t0
            print(f"  {self.label}: {done}/{total} problems | {elapsed:.0f} s | eta {elapsed / done * (total - done):.0f} s", flush=True)
            self.printed = now


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


def evaluate_run(run_path, split="test", eval_file=None, calculator=None, limit=0, out=None, batch_size=None,
                 max_new_tokens=None, latency_samples=20, device=None, data_dir=None, other_data=False, while_training=False):
    """
    Decode every problem greedily, check every output, write predictions.jsonl and eval.json
    into out (default RUN/eval-<split>[-calc][-limitN]/), return the eval.json dict. calculator
    None: as the run trained (on where its loss is calculator-aware). A run still training is
    refused unless while_training (None: not checked, for train.py scoring the run it holds).
    Example: evaluate_run("runs/cot", limit=100)["results"][0]["exact_match"]
    """
    run_dir, ckpt_path = resolve_run(run_path, while_training)
    device = pick_device(device)
    model, ckpt = load_checkpoint(str(ckpt_path), map_location=device)
    cfg = ckpt.get("train_config") or {}
    mode = cfg.get("mode", "cot")
    calculator = bool(cfg.get("mask_results")) if calculator is None else calculator
    tok = load_tokenizer(ckpt, run_dir)
    problems = load_problems(split, eval_file, data_dir or cfg.get("data_dir") or None)[: limit or None]
    data_info = eval_data(run_dir, split, eval_file, data_dir or cfg.get("data_dir") or None, other_data)
    if not problems:
        raise ValueError(f"no problems to score in {eval_file or split}")
    out = Path(out or run_dir / eval_dir_name(split, eval_file, calculator, limit))
    check_eval_out(out, run_dir, ckpt_path)  # a file, another run's folder or evaluation, is refused untouched
    out.mkdir(parents=True, exist_ok=True)
    long = long_questions(tok, problems, model.config.max_src_len)  # said now, before a long decoding
    data_info["warnings"] += [long] if long else []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.generate(torch.tensor([tok.encode(problems[0][1])], device=device), 2)  # lazy init is not throughput
    rows, results, reasoning_tokens = [], [], max_new_tokens or cfg.get("max_new_tokens", 512)
    losses = target_losses(model, tok, problems, mode, cfg)  # how well it knows each reference solution
    for task in ways_to_ask(mode):
        label = (f"{mode}/{task}" if task else mode) + ("+calc" if calculator else "")
        print(f"{label}: decoding {len(problems)} problems ({split if not eval_file else eval_file}), "
              f"up to {traces.decode_budget(mode, task, reasoning_tokens)} new tokens, on {device}")
        m, task_rows = score_task(model, tok, problems, mode, task, label, calculator, reasoning_tokens,
                                  batch_size or cfg.get("eval_batch", 64), latency_samples)
        add_target_loss(m, task_rows, losses, task or mode)  # the targets of a model asked once are filed under its mode
        results.append(m)
        rows += task_rows
    peak, kind = peak_memory(device)
    weights = sum({t.data_ptr(): t.numel() * t.element_size() for t in model.state_dict().values()}.values())  # tied once
    report = {"run": portable_path(run_dir), "checkpoint": portable_path(ckpt_path), "step": ckpt.get("step"), "mode": mode,
              "split": None if eval_file else split, "eval_file": eval_file and portable_path(eval_file), "limit": limit, "calculator": calculator,
              "device": str(device), "torch": torch.__version__, "data": data_info, "tokenizer_sha256": tok.sha256,
              "warnings": [w for w in (reasoning_warning(mode, m) for m in results) if w] + data_info["warnings"],
              "efficiency": {"params": model.num_params(), "params_no_embeddings": model.num_params(exclude_embeddings=True),
                             # the file also holds optimizer state, hence the weights' own size beside it
                             "checkpoint_mb": ckpt_path.stat().st_size / 2 ** 20, "weights_mb": weights / 2 ** 20,
                             "peak_memory_mb": peak, "peak_memory_kind": kind},
              "results": results}
    write_atomic(out / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_atomic(out / "eval.json", json.dumps(report, indent=2) + "\n")
    print_results(report, out, printed=[long])
    return report


def long_questions(tok, problems, max_src):
    """
    A warning, printed at once, when some questions are longer than the run's max_src_len tokens
    (train.py leaves such problems out of training): decoded as they are, slowly, beyond what it learned. None when none is.
    Example: long_questions(tok, problems, 384)  # "3 of 1319 questions are longer than the 384 tokens ..."
    """
    n = sum(len(tok.encode(q)) > max_src for _, q, _, _ in problems)
    if not n:
        return None
    warning = (f"{n} of {len(problems)} questions are longer than the {max_src} tokens the run's questions may have "
               f"(max_src_len): they are decoded whole, slowly, on inputs beyond any it learned from")
    print(f"warning: {warning}")
    return warning


def final_scores(checkpoint, sets, calculator, limit, device, data_dir):
    """
    train.py's end of a run: one checkpoint scored on each of sets ({name: (split, eval_file)}) by
    evaluate_run, into the run's usual eval-* folders, with one line per set: {name: its scores}.
    Example: final_scores(Path("runs/cot/last.pt"), {"test": ("test", None)}, True, 0, "cpu", None)["test"]["exact_match"]
    """
    scores = {}
    for name, (split, eval_file) in sets.items():
        report = evaluate_run(checkpoint, split, eval_file, calculator, limit, latency_samples=20 if name == "test" else 0,
                              device=device, data_dir=data_dir, while_training=None)  # train.py holds the lock: its own run
        m = report["results"][0]  # a mixed student's first way of being asked: cot
        scores[name] = {"n": m["n"], "correct": m["correct"], "exact_match": m["exact_match"], "ci95": m["exact_match_ci95"],
                        "eval": eval_dir_name(split, eval_file, calculator, limit), "by_task": {r["task"]: r["exact_match"] for r in report["results"] if r["task"]}}
    for name, sc in scores.items():
        print(f"{name:>5}: exact match {sc['correct']}/{sc['n']} = {sc['exact_match']:.1%} (95% CI {sc['ci95'][0]:.1%}-{sc['ci95'][1]:.1%})"
              f"{' with the calculator' if calculator else ''} -> {checkpoint.parent / sc['eval']}")
    return scores


def score_task(model, tok, problems, mode, task, label, calculator, reasoning_tokens, batch_size, latency_samples):
    """
    One task of one model on problems: (its metrics, its predictions rows, every output checked
    step by step), decoded by decode_and_score, with its batch-1 latency on the first problems.
    Example: m, rows = score_task(model, tok, load_problems("test")[:50], "cot", None, "cot", False, 512, 64, 20)
    """
    device = next(model.parameters()).device
    prefix, max_new = how_asked(tok, mode, task, reasoning_tokens)
    calc = traces.Calculator(tok) if calculator else None
    ids, texts, correct, seconds = decode_and_check(model, tok, [q for _, q, _, _ in problems], [gold for _, _, gold, _ in problems],
                                                    prefix, max_new, batch_size, calc, label)
    fired = calc.fired if calc else 0  # in the batched decoding; the latency runs below use the calculator too
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
    lat = batch1_latency(model, sources, max_new, device, calc, prefix) if latency_samples else []
    m = summarize(rows)
    m.update({"task": task, "label": label, "max_new_tokens": max_new, "decode_s": seconds,
              "samples_per_s": len(ids) / seconds, "tokens_per_s": sum(map(len, ids)) / seconds,
              "latency_ms_median": 1000 * float(np.median(lat)) if lat else None,
              "latency_ms_p90": 1000 * float(np.percentile(lat, 90)) if lat else None,
              "latency_samples": len(lat), "calculator_fired": fired})
    return m, rows


def peak_memory(device):
    """(peak memory in MB, what was measured): the allocator's peak on a GPU, the process' on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20, "torch.cuda.max_memory_allocated"
    # the whole process' high-water mark (Python, torch, data), not the model alone; KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)
    return peak, "process high-water mark (ru_maxrss)"


def print_results(report, out, printed=()):
    """One line per task of an evaluation, its warnings (but those printed already), and where it was written."""
    for m in report["results"]:
        lo, hi = m["exact_match_ci95"]
        print(f"{m['label']}: exact match {m['correct']}/{m['n']} = {m['exact_match']:.3f} (95% CI {lo:.3f}-{hi:.3f}) | "
              f"target loss {fmt(m.get('target_loss'), '.3f')} | equations false {fmt(m['equation_error_rate'], '.1%')} | operands grounded {fmt(m['grounded_operand_rate'], '.1%')} | {m['tokens_mean']:.1f} tokens, {m['steps_mean']:.1f} steps | "
              f"latency {fmt(m['latency_ms_median'], '.0f')} ms | {m['samples_per_s']:.1f} samples/s | failures {m['failures']}")
    for w in report["warnings"]:
        if w not in printed:
            print(f"warning: {w}")
    eff = report["efficiency"]
    print(f"peak memory {eff['peak_memory_mb']:.0f} MB ({eff['peak_memory_kind']}); wrote {out / 'predictions.jsonl'} and {out / 'eval.json'}")


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


# config_cli.PRESETS' test_limit of each preset (evaluate.py never imports train.py; a test checks that they agree)
PRESET_TEST_LIMIT = {"smoke": 32, "default": 0, "first-study": 0, "gpu": 0}


def parse_args(argv=None):
    """evaluate.py's flags (report.py reads the same ones for --compare). Example: parse_args(["runs/cot", "--calculator"]).limit == 0"""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = parser.add_argument  # one flag a line
    flag("runs", nargs="+", help="run folder(s) (their last.pt) or checkpoint file(s); with --compare also eval folders")
    flag("--compare", action="store_true", help="compare the runs: write report.md and SVG charts into --out")
    flag("--teacher", action="append", help="--compare: a teacher's `teacher.py --eval` or `--recorded` JSONL, once per "
                                            "teacher; the first one's traces are shown beside the students'")
    flag("--side-by-side", type=int, default=3, help="--compare: problems shown per student beside the first teacher's trace")
    flag("--baseline", help="--compare: run folder to test against (default: the run whose mode is answer)")
    flag("--split", default="test", choices=["test", "val"], help="GSM8K split to score")
    flag("--eval-file", help="score this JSONL of {question, answer} lines instead of a GSM8K split")
    flag("--calculator", action=argparse.BooleanOptionalAction, help="calculator-augmented decoding: results after '=' are "
         "computed (default: on for a run whose loss was calculator-aware, as it trained; off otherwise)")
    flag("--preset", choices=list(PRESET_TEST_LIMIT), help="train.py's preset names: --limit defaults to the preset's test_limit "
         "(smoke: the first 32 problems; default, gpu: all); batch size and decoding budget are the run's own")
    flag("--limit", type=arg_number(int, at_least=0), help="score only the first N problems (0 = all; default: the preset's, else all)")
    flag("--batch-size", type=arg_number(int, at_least=1), help="sequences decoded together (default: the run's eval_batch)")
    flag("--max-new-tokens", type=arg_number(int, at_least=1), help="decoding budget for reasoning (default: the run's max_new_tokens)")
    flag("--latency-samples", type=arg_number(int, at_least=0), default=20, help="first N problems timed one at a time for latency (0 = skip)")
    flag("--examples", type=arg_number(int, at_least=0), default=1, help="--compare: examples shown per cell of right/wrong against the baseline")
    flag("--other-data", action="store_true", help="score a GSM8K file other than the one the run was trained with (its sha256 "
         "differs); eval.json and the report say so")
    flag("--device", help="cuda | mps | cpu (default: the best available)")
    flag("--data-dir", help="GSM8K folder (default: the run's, else $GSM8K_DIR, else data/gsm8k)")
    flag("--out", help="output folder (default: RUN/eval-<split>[-calc][-limitN]/, or runs/report/ with --compare)")
    flag("--while-training", action="store_true", help="score a run that train.py is still training (it holds RUN/.lock): "
         "its checkpoint as it is now, an early one (refused without this flag)")
    args = parser.parse_args(argv)
    refuse_missing_values(parser, args)  # --limit=-- is a usage error, never []
    if args.limit is None:
        args.limit = PRESET_TEST_LIMIT[args.preset] if args.preset else 0
    return args


def main(argv=None):
    """Score each run given; with --compare, report.py compares them (run as its own program: it imports this file)."""
    args = parse_args(argv)
    if args.compare:
        report = str(Path(__file__).with_name("report.py"))
        os.execv(sys.executable, [sys.executable, report, *(sys.argv[1:] if argv is None else map(str, argv))])
    if args.out and len(args.runs) > 1:
        sys.exit("error: --out names one folder; evaluate one run at a time with it")
    try:
        for run_path in args.runs:
            evaluate_run(run_path, args.split, args.eval_file, args.calculator, args.limit, args.out, args.batch_size,
                         args.max_new_tokens, args.latency_samples, args.device, args.data_dir, args.other_data, args.while_training)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # eval.json and predictions.jsonl are written atomically: nothing is half-written
        print(f"\ninterrupted while scoring {run_path}: nothing written for it; run the same command again to score it", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
