"""
The whole study in one command: train every student with the same size, budget and seed,
evaluate each with and without the calculator, and write the comparison report.

    python study.py --preset cpu                     # about two hours on 2 CPU cores
    python study.py --preset gpu                     # one GPU
    python study.py --preset cpu --traces traces/gpt-4o-train.jsonl --teacher traces/gpt-4o-eval-test.jsonl

Interrupted, it resumes: finished runs and evaluations are kept, a half-trained run goes on
from its last.pt. Each step is a plain call of train.py or evaluate.py, printed before it runs,
so any number in the report can be reproduced by hand.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from train import MODES
from evaluate import eval_dir_name
from data import write_atomic
TRAIN_PRESET = {"cpu": "default", "gpu": "gpu", "smoke": "smoke"}


def run(cmd, log, summary_path):
    """
    Run one step, echoing it, and record its time in study.json at once (an interruption
    loses no timing); a failed step stops the study with its command line.
    Example: run([sys.executable, "train.py", "--mode", "cot"], log, Path("runs/study-cpu/study.json"))
    """
    print("+ " + shlex.join(cmd), flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # progress lines as they come, even into a log file
    log.append({"cmd": shlex.join(cmd), "seconds": round(time.time() - t0, 1), "returncode": r.returncode})
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update(steps=log, seconds=round(sum(step["seconds"] for step in log), 1))
    write_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
    if r.returncode != 0:
        sys.exit(f"error: step failed ({r.returncode}): {shlex.join(cmd)}; fix it and rerun study.py to resume")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(TRAIN_PRESET), default="cpu", help="study size: cpu (train.py preset default), gpu, smoke")
    parser.add_argument("--out", default="", help="study folder (default runs/study-<preset>)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated students to train")
    parser.add_argument("--traces", default="", help="teacher traces JSONL (default: GSM8K reference solutions)")
    parser.add_argument("--teacher", default="", help="the teacher's `teacher.py --eval` file, for its row of the report")
    parser.add_argument("--eval-file", default="", help="also score every student on this {question, answer} JSONL")
    parser.add_argument("--train-args", default="", help="extra train.py flags for every run, e.g. '--time-budget-min 20'")
    parser.add_argument("--eval-args", default="", help="extra evaluate.py flags for every evaluation, e.g. '--latency-samples 5'")
    args = parser.parse_args()
    out = Path(args.out or f"runs/study-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    summary_path = out / "study.json"  # keeps the timings of steps done before an interruption
    try:
        log = json.loads(summary_path.read_text())["steps"] if summary_path.exists() else []
    except (ValueError, KeyError):
        sys.exit(f"error: {summary_path} is corrupt; delete it (only step timings are lost) and rerun")
    write_atomic(summary_path, json.dumps({"preset": args.preset, "trace_source": args.traces or "GSM8K reference solutions",
                                           "steps": log}, indent=2) + "\n")
    runs = []
    for mode in args.modes.split(","):
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
        run_dir = out / mode
        runs.append(run_dir)
        if (run_dir / "metrics.json").exists():
            print(f"{run_dir}: trained already")
            continue
        cmd = [py, "train.py", "--mode", mode, "--preset", TRAIN_PRESET[args.preset], "--out", str(run_dir)]
        cmd += ["--traces", args.traces] if args.traces else []
        cmd += shlex.split(args.train_args)
        run(cmd + (["--resume"] if (run_dir / "last.pt").exists() else []), log, summary_path)
    # the folders evaluate.py writes, named by the settings that change the numbers
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--limit", type=int, default=0)
    limit = extra.parse_known_args(shlex.split(args.eval_args))[0].limit
    compare = []
    for run_dir in runs:
        for calc in (False, True):
            folder = run_dir / eval_dir_name("test", None, calc, limit)
            compare.append(str(folder))
            if not (folder / "eval.json").exists():
                run([py, "evaluate.py", str(run_dir)] + ["--calculator"] * calc + shlex.split(args.eval_args), log, summary_path)
        if args.eval_file and not (run_dir / eval_dir_name("test", args.eval_file, False, limit) / "eval.json").exists():
            run([py, "evaluate.py", str(run_dir), "--eval-file", args.eval_file] + shlex.split(args.eval_args), log, summary_path)
    cmd = [py, "evaluate.py", "--compare", *compare, "--out", str(out / "report")]
    if "answer" in args.modes.split(","):
        cmd += ["--baseline", str(out / "answer" / eval_dir_name("test", None, False, limit))]
    run(cmd + (["--teacher", args.teacher] if args.teacher else []), log, summary_path)
    total = json.loads(summary_path.read_text())["seconds"]
    print(f"study done ({total / 60:.1f} min of steps in all): {out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
