"""
The whole study in one command: train every student with the same size, budget and seed,
evaluate each with and without the calculator, and write the comparison report.

    python study.py --preset default --jobs 2        # 76 minutes on 2 CPU cores (measured)
    python study.py --preset gpu                     # one GPU
    python study.py --preset default --traces traces/gpt-4o-train.jsonl --teacher traces/gpt-4o-eval-test.jsonl
    python study.py --preset default --teachers ../shared/data/teachers   # recorded teachers' outputs in the report

Interrupted, it resumes: finished runs and evaluations are kept, a half-trained run goes on
from its last.pt. Ctrl-C or SIGTERM to the study is passed on to the running train.py or evaluate.py
as a Ctrl-C; the study waits for them to stop, then prints the command that resumes it and exits
with 130 (143 after SIGTERM). Each step is a plain call of train.py or evaluate.py, printed before it runs,
so any number in the report can be reproduced by hand. With --jobs N, N students train side
by side, each with its share of the CPU threads and its output in a log file; the evaluations
then run one at a time with every thread, so latency and memory are measured alike for all.
A run folder trained with other settings than the study's is refused, not reused.
"""
import argparse
import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

# Ctrl-C (or kill -TERM) sets this instead of raising KeyboardInterrupt, which would kill the
# running steps before they could save. Each step runs in a process group of its own, so a signal
# reaches it only through the study, exactly once, however it was sent (terminal, kill, a scheduler).
INTERRUPTED = threading.Event()
RUNNING, RUNNING_LOCK = set(), threading.RLock()  # the steps' processes; reentrant: the handler may run inside a holder
STOPPED_BY = []  # the signal that stopped the study, for its exit code (128 + signal)


def on_signal(signum, frame):
    """SIGINT or SIGTERM: pass a Ctrl-C on to every running step (train.py saves last.pt and stops) and start no other."""
    if not INTERRUPTED.is_set():
        STOPPED_BY.append(signum)
        print(f"\n{signal.Signals(signum).name}: waiting for the running steps to stop", file=sys.stderr, flush=True)
    INTERRUPTED.set()
    with RUNNING_LOCK:
        for proc in list(RUNNING):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)


if __name__ == "__main__":  # before the imports below, which take seconds (torch): a signal then is caught too
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

from run_folder import MAY_DIFFER_ON_RESUME
from train import MODES, resolve_config
from evaluate import eval_dir_name, parse_args as parse_eval_args
from cli_checks import arg_number
from files import write_atomic
from recorded import read_recorded
TRAIN_PRESET = {"smoke": "smoke", "default": "default", "gpu": "gpu", "cpu": "default"}  # train.py's presets; cpu: default's former name


class StepFailed(Exception):
    pass


class Interrupted(Exception):
    """Ctrl-C was pressed: the step that was running has stopped, and no other may start."""


class StepLog:
    """The timings of every step, kept in study.json and rewritten after each step (an
    interruption loses none); safe to share between the --jobs threads.

    Example: StepLog(Path("runs/study-cpu/study.json"), {"preset": "cpu"}).add("python train.py ...", 1345.2, 0)
    """

    def __init__(self, path, header):
        self.path, self.lock = path, threading.Lock()
        try:
            self.steps = json.loads(path.read_text())["steps"] if path.exists() else []
        except (ValueError, KeyError):
            sys.exit(f"error: {path} is corrupt; delete it (only step timings are lost) and rerun")
        self.summary = {**header, "steps": self.steps}
        self._write()

    def _write(self):
        self.summary.update(seconds=round(sum(step["seconds"] for step in self.steps), 1))
        write_atomic(self.path, json.dumps(self.summary, indent=2) + "\n")

    def add(self, cmd, seconds, returncode, **extra):
        with self.lock:
            self.steps.append({"cmd": cmd, "seconds": seconds, "returncode": returncode, **extra})
            self._write()

    def set(self, **fields):
        with self.lock:
            self.summary.update(fields)
            self._write()


def run_step(cmd, steps, log_file=None, threads=0):
    """
    Run one step, echoing it, and record its time at once. Output goes to the terminal, or,
    when several steps run side by side, appended to log_file. threads > 0 caps the step's
    CPU threads (OMP_NUM_THREADS). A failed step raises StepFailed with its command line; after
    a Ctrl-C, the step that got it too raises Interrupted once it has stopped, and no step starts.
    Example: run_step([sys.executable, "train.py", "--mode", "cot"], steps)
    """
    if INTERRUPTED.is_set():
        raise Interrupted
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # progress lines as they come, even into a log file
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    print("+ " + shlex.join(cmd) + (f"  (output: {log_file})" if log_file else ""), flush=True)
    t0 = time.time()
    if log_file:
        with open(log_file, "a") as f:
            returncode = run_child(cmd, env, stdout=f, stderr=subprocess.STDOUT)
    else:
        returncode = run_child(cmd, env)
    seconds = round(time.time() - t0, 1)
    steps.add(shlex.join(cmd), seconds, returncode, **({"threads": threads} if threads else {}))
    if INTERRUPTED.is_set():  # whatever it returned: a step that was stopped is no failure to report
        raise Interrupted
    if returncode != 0:
        where = f" (its output: {log_file})" if log_file else ""
        raise StepFailed(f"step failed ({returncode}): {shlex.join(cmd)}{where}; fix it and rerun study.py to resume")
    if log_file:
        print(f"  done in {seconds / 60:.1f} min: {shlex.join(cmd[1:4])}", flush=True)


def run_child(cmd, env, **streams):
    """
    Run one step in a process group of its own, known to on_signal while it runs, and wait for it
    to end: a signal to the study reaches it once, and the study never leaves it running alone.
    Example: run_child([sys.executable, "train.py", "--mode", "cot"], dict(os.environ)) == 0
    """
    proc = subprocess.Popen(cmd, env=env, process_group=0, **streams)
    with RUNNING_LOCK:
        RUNNING.add(proc)
    if INTERRUPTED.is_set():  # the signal came while it was starting
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait()
    finally:
        with RUNNING_LOCK:
            RUNNING.discard(proc)


def stale_setting(run_dir, train_argv):
    """The first setting with which run_dir was trained that train.py train_argv would not use,
    as (name, was, now), or None. A study must not mix students trained under other defaults.

    Example: stale_setting(Path("runs/study-cpu/cot"), ["--mode", "cot", "--preset", "default"])
    """
    config = run_dir / "config.json"
    if not config.exists():
        return None
    was = json.loads(config.read_text())
    for key, now in asdict(resolve_config(train_argv)[0]).items():
        if key not in MAY_DIFFER_ON_RESUME and key in was and was[key] != now:
            return key, was[key], now
    return None


def how_to_go_on(run_dir):
    """
    The train.py flag that goes on with an unfinished run folder: --resume from its last.pt;
    --overwrite when it stopped before its first checkpoint (nothing to keep, and train.py refuses
    a non-empty folder without one of the two); none for a new folder.
    Example: how_to_go_on(Path("runs/study-cpu/cot")) == ["--resume"]
    """
    if (run_dir / "last.pt").exists():
        return ["--resume"]
    return ["--overwrite"] if run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()) else []


def eval_preset(args):
    """evaluate.py's --preset for this study: the smoke study scores the smoke preset's few test problems, not all 1319.
    Example: eval_preset(parse_args(["--preset", "smoke"])) == ["--preset", "smoke"]
    """
    return ["--preset", TRAIN_PRESET[args.preset]]


def student_steps(args, py, run_dir, mode, limit):
    """What one student still needs: its train.py command (or None when trained already) and
    the evaluations whose eval.json is missing; plus the eval folders the report reads."""
    train_argv = ["--mode", mode, "--preset", TRAIN_PRESET[args.preset], "--out", str(run_dir)]
    train_argv += (["--traces", args.traces] if args.traces else []) + shlex.split(args.train_args)
    stale = stale_setting(run_dir, train_argv)
    if stale:
        key, was, now = stale
        sys.exit(f"error: {run_dir} was trained with --{key.replace('_', '-')} {was!r}, not {now!r} as this study "
                 f"asks; use another --out or delete {run_dir}")
    train = None
    if not (run_dir / "metrics.json").exists():
        train = [py, "train.py"] + train_argv + how_to_go_on(run_dir)
    else:
        print(f"{run_dir}: trained already")
    evals, folders = [], []
    for calc in (False, True):
        folder = run_dir / eval_dir_name("test", None, calc, limit)
        folders.append(str(folder))
        if not (folder / "eval.json").exists():
            evals.append([py, "evaluate.py", str(run_dir)] + ["--calculator"] * calc + eval_preset(args) + shlex.split(args.eval_args))
    if args.eval_file and not (run_dir / eval_dir_name("test", args.eval_file, False, limit) / "eval.json").exists():
        evals.append([py, "evaluate.py", str(run_dir), "--eval-file", args.eval_file] + eval_preset(args) + shlex.split(args.eval_args))
    return train, evals, folders


def check_step_args(parser, args, modes):
    """
    Read --train-args and --eval-args as train.py and evaluate.py will, before any step runs:
    a bad value is a usage error now, not a failed evaluation after an hour of training.
    Example: check_step_args(parser, parser.parse_args(["--eval-args", "--batch-size 0"]), ["cot"])  # exits 2
    """
    checks = {"--train-args": (args.train_args, lambda extra: resolve_config(["--mode", modes[0], "--preset", TRAIN_PRESET[args.preset], *extra])),
              "--eval-args": (args.eval_args, lambda extra: parse_eval_args(["RUN", *extra]))}
    for name, (text, check) in checks.items():
        try:
            extra = shlex.split(text)
            with contextlib.redirect_stderr(io.StringIO()) as err:  # their usage lines are not this tool's
                check(extra)
        except ValueError as e:  # shlex: an unclosed quote
            parser.error(f"{name}: {e}")
        except SystemExit:
            parser.error(f"{name}: {err.getvalue().strip().splitlines()[-1].split('error: ', 1)[-1]}")


def teacher_steps(py, teachers_dir, out):
    """The `teacher.py --recorded` command of every model in every recorded teacher file of
    teachers_dir (None where its eval file is written already), and the eval files they write.

    Example: teacher_steps(sys.executable, Path("../shared/data/teachers"), Path("runs/study-cpu/teachers"))
    """
    steps, files = [], []
    for path in sorted(teachers_dir.glob("*.json")) + sorted(teachers_dir.glob("*.jsonl")):
        for model in read_recorded(path)[1]:
            eval_file = out / (re.sub(r"[^\w.-]+", "-", model) + ".jsonl")
            done = Path(f"{eval_file}.summary.json").exists()
            steps.append(None if done else [py, "teacher.py", "--recorded", str(path), "--model", model, "--out", str(eval_file)])
            files.append(eval_file)
    if not files:
        sys.exit(f"error: no recorded teacher files (*.json, *.jsonl) in {teachers_dir}")
    return steps, files


def parse_args(argv=None):
    """
    The study's flags, checked before any step runs: modes, and --train-args / --eval-args as
    train.py and evaluate.py will read them.
    Example: parse_args(["--preset", "smoke", "--modes", "answer,cot"]).modes == ["answer", "cot"]
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(TRAIN_PRESET), default="default", help="study size: train.py's preset (smoke, default, gpu; cpu: default's former name)")
    parser.add_argument("--out", default="", help="study folder (default runs/study-<preset>)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated students to train")
    parser.add_argument("--jobs", type=arg_number(int, at_least=1), default=1, help="students run side by side, each with cores/jobs CPU threads and its output in "
                        "<out>/<mode>.log (on 2 CPU cores, 2 jobs do about 9%% more work than 1; small students can share a GPU too)")
    parser.add_argument("--traces", default="", help="teacher traces JSONL (default: GSM8K reference solutions)")
    parser.add_argument("--teacher", default="", help="the teacher's `teacher.py --eval` file, for its row of the report")
    parser.add_argument("--teachers", default="", help="folder of recorded teacher outputs on GSM8K test (e.g. "
                        "../shared/data/teachers): every model in it is scored into <out>/teachers/ and gets its report rows")
    parser.add_argument("--eval-file", default="", help="also score every student on this {question, answer} JSONL")
    parser.add_argument("--train-args", default="", help="extra train.py flags for every run, e.g. '--time-budget-min 20'")
    parser.add_argument("--eval-args", default="", help="extra evaluate.py flags for every evaluation, e.g. '--latency-samples 5'")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
    if len(set(modes)) < len(modes):
        parser.error(f"--modes {args.modes}: each student once")
    check_step_args(parser, args, modes)
    args.modes = modes
    return args


def train_students(plans, to_train, steps, out, jobs):
    """
    Run the train.py commands of to_train, jobs at a time (each with its share of the CPU threads
    and its output in <out>/<mode>.log when more than one); after a failure or a Ctrl-C no new
    one starts, and those running are let finish or stop, and kept. Returns the failures.
    Example: train_students(plans, ["answer", "cot"], steps, Path("runs/study-cpu"), 2)
    """
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    failures, stop = [], threading.Event()

    def train(mode):
        if stop.is_set():  # a step failed: start nothing new
            return
        try:
            run_step(plans[mode][0], steps, log_file=out / f"{mode}.log" if jobs > 1 else None, threads=threads)
        except StepFailed as e:
            failures.append(str(e))
            stop.set()
        except Interrupted:
            stop.set()

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(train, to_train))
    return failures


def evaluate_and_report(args, plans, recorded, recorded_files, steps, out, limit):
    """
    The evaluations still missing, one at a time with every thread; the recorded teachers' scores;
    then the comparison report over every student (and teacher).
    Example: evaluate_and_report(args, plans, [], [], steps, Path("runs/study-cpu"), 0)
    """
    for mode in args.modes:
        for cmd in plans[mode][1]:
            run_step(cmd, steps)
    for cmd in filter(None, recorded):
        run_step(cmd, steps)
    # best first: the first teacher is the one whose traces the report shows beside the students'
    score = lambda f: json.loads(Path(f"{f}.summary.json").read_text())["exact_match"]
    teachers = ([args.teacher] if args.teacher else []) + [str(f) for f in sorted(recorded_files, key=score, reverse=True)]
    compare = [folder for mode in args.modes for folder in plans[mode][2]]
    cmd = [sys.executable, "evaluate.py", "--compare", *compare, "--out", str(out / "report")]
    if "answer" in args.modes:
        cmd += ["--baseline", str(out / "answer" / eval_dir_name("test", None, False, limit))]
    run_step(cmd + [arg for t in teachers for arg in ("--teacher", t)], steps)


def stop_interrupted():
    """Leave after a Ctrl-C or SIGTERM, once every running step has stopped: what is kept, and the exact command that resumes."""
    print(f"interrupted: finished runs and evaluations are kept, a half-trained run goes on from its last.pt; resume with\n"
          f"  {shlex.join(['python', *sys.argv])}", file=sys.stderr)
    sys.exit(128 + (STOPPED_BY or [signal.SIGINT])[0])


def main():
    args = parse_args()
    out = Path(args.out or f"runs/study-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    steps = StepLog(out / "study.json", {"preset": args.preset, "trace_source": args.traces or "GSM8K reference solutions"})
    # the folders evaluate.py writes, named by the settings that change the numbers
    limit = parse_eval_args(["RUN", *eval_preset(args), *shlex.split(args.eval_args)]).limit
    plans = {mode: student_steps(args, sys.executable, out / mode, mode, limit) for mode in args.modes}
    recorded, recorded_files = teacher_steps(sys.executable, Path(args.teachers), out / "teachers") if args.teachers else ([], [])
    to_train = [mode for mode in args.modes if plans[mode][0]]
    jobs = max(1, min(args.jobs, len(to_train)))
    t0 = time.time()
    failures = train_students(plans, to_train, steps, out, jobs)
    if INTERRUPTED.is_set():
        stop_interrupted()
    if failures:  # the students still running when one failed were let finish, and are kept
        sys.exit("\n".join(f"error: {e}" for e in failures))
    try:
        evaluate_and_report(args, plans, recorded, recorded_files, steps, out, limit)
    except StepFailed as e:
        sys.exit(f"error: {e}")
    except Interrupted:
        stop_interrupted()
    steps.set(jobs=jobs, wall_seconds_this_call=round(time.time() - t0, 1))
    total = steps.summary["seconds"]
    print(f"study done in {(time.time() - t0) / 60:.1f} min ({total / 60:.1f} min of steps in all, trained {jobs} at a time): "
          f"{out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
