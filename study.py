"""
The comparison in one command: does a student trained on reasoning traces (cot) beat one trained
on the answers alone (answer), on the same problems, by more than the seeds' noise?

    python study.py --jobs 2                                # cot and answer, seed 1337: about 45 min on the 2-core VM
    python study.py --seeds 1337,2,3 --controls --jobs 2    # the paper-style study: 12 runs, about 4.5 hours
    python study.py --report-only --runs runs/recipe/cot-16k-s2 runs/recipe/answer-16k-s2 --out results/recipe/paired
    python study.py --preset smoke                          # the whole pipeline on a tiny student, under a minute

Each student trains with the recipe (train.py's default preset: 16 re-instantiated variants per
train problem, the calculator-aware loss, d128 3+3 ff512, 16,000 steps of 2,048-token batches):
about 45 minutes per run on one core of the 2-core VM. --jobs 2 trains two runs side by side, one
core each, so cot and answer of one seed take about 45 minutes, --seeds 1337,2,3 about 2 h 15 min,
and --controls (filler and shuffled too) doubles that. Each run is RUN_ROOT/<mode>-s<seed>
(RUN_ROOT: --out, default runs/study), trained by a plain `python train.py --mode M --seed S --out ...`,
printed before it runs; train.py scores last.pt at its end on seen stories with new numbers, val
and test. The study reads the three evaluations of each run (one that is missing is made again
by a printed `python evaluate.py RUN ...`) and writes report.md and study.json into RUN_ROOT: per set
and run the exact match with its 95% interval; McNemar's exact test of cot against answer on the
same problems, paired by problem id, for each seed and set (filler and shuffled against answer and
against cot when present); the mean over seeds per mode and set with its min-max spread; and, in
plain words, in how many seeds cot beats answer on test with p < 0.05.

--report-only writes the same report from run folders trained elsewhere (--runs: folders or
globs): each run's mode and seed come from its config.json, and its evaluations are found by what
their eval.json says they scored (split, or an eval_file of seen stories), whatever their names.

Interrupted, it resumes: a run with its metrics.json is never trained again, a half-trained run
goes on from its last.pt. Ctrl-C or SIGTERM to the study is passed on to the running train.py or
evaluate.py as a Ctrl-C; the study waits for them to stop, then prints the command that resumes it
and exits with 130 (143 after SIGTERM). With --jobs N, N runs train side by side, each with its
share of the CPU threads and its output in RUN_ROOT/<mode>-s<seed>.log (train.py scores each run
inside its job: the latencies in eval.json of runs trained side by side are one core's). A run
folder trained with other settings than the study asks for is refused, not reused. --compare (or
--teacher/--teachers) adds evaluate.py --compare's report of the first seed's test evaluations
(and the teachers') in RUN_ROOT/compare/.
"""
import argparse
import contextlib
import glob
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
from dataclasses import asdict, fields
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

import data
from config_cli import PRESETS
from run_folder import MAY_DIFFER_ON_RESUME
from train import MODES, TrainConfig, resolve_config
from evaluate import parse_args as parse_eval_args
from cli_checks import arg_number
from files import portable_path, write_atomic
from intervals import wilson_interval
from recorded import read_recorded
from report import fmt_p, mcnemar, read_eval
from variant_problems import SEEN_STORIES

SETS = {"seen": "seen stories with new numbers", "val": "val", "test": "test"}  # what train.py scores at its end
SHORT = {"seen": "seen stories", "val": "val", "test": "test"}  # as a verdict names them
STUDENTS, CONTROLS = ("cot", "answer"), ("filler", "shuffled")  # the default modes; --controls adds the others
ALPHA = 0.05  # "beats": more problems right only by it than only by the other, at McNemar's exact p below this


class StepFailed(Exception):
    """A step exited with an error: its command line, and where its output went."""


class Interrupted(Exception):
    """Ctrl-C was pressed: the step that was running has stopped, and no other may start."""


class StepLog:
    """The timings of every step, kept in study.json and rewritten after each step (an
    interruption loses none); safe to share between the --jobs threads. set() adds the report's numbers.

    Example: StepLog(Path("runs/study/study.json"), {"preset": "default"}).add("python train.py ...", 1345.2, 0)
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


def shown(path):
    """
    A path as study.json and report.md write it: as given when relative; when absolute, relative to
    the current folder if inside it, else files.portable_path (relative to the repository, else its
    name alone): never a folder of this machine.
    Example: shown("/work/main/runs/study/cot-s1337") == "runs/study/cot-s1337"  # run from /work/main
    """
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return portable_path(path)


def shown_cmd(cmd):
    """
    A step's command line as study.json keeps it: `python` for this interpreter, absolute paths by shown().
    Example: shown_cmd([sys.executable, "train.py", "--out", "runs/study/cot-s1"]) == "python train.py --out runs/study/cot-s1"
    """
    return shlex.join(["python" if i == 0 and w == sys.executable else shown(w) if w.startswith("/") else w for i, w in enumerate(cmd)])


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
    printed = shlex.join(["python" if cmd[0] == sys.executable else cmd[0], *cmd[1:]])
    print("+ " + printed + (f"  (output: {log_file})" if log_file else ""), flush=True)
    t0 = time.time()
    if log_file:
        with open(log_file, "a") as f:
            returncode = run_child(cmd, env, stdout=f, stderr=subprocess.STDOUT)
    else:
        returncode = run_child(cmd, env)
    seconds = round(time.time() - t0, 1)
    steps.add(shown_cmd(cmd), seconds, returncode, **({"threads": threads} if threads else {}))
    if INTERRUPTED.is_set():  # whatever it returned: a step that was stopped is no failure to report
        raise Interrupted
    if returncode != 0:
        where = f" (its output: {log_file})" if log_file else ""
        raise StepFailed(f"step failed ({returncode}): {printed}{where}; fix it and rerun study.py to resume")
    if log_file:
        print(f"  done in {seconds / 60:.1f} min: {shlex.join(cmd[1:6])}", flush=True)


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


# -----------------------------------------------------------------------------
# Training: one train.py per mode and seed


def stale_setting(run_dir, train_argv):
    """The first setting with which run_dir was trained that train.py train_argv would not use,
    as (name, was, now), or None. A study must not mix students trained under other defaults.

    Example: stale_setting(Path("runs/study/cot-s1337"), ["--mode", "cot", "--seed", "1337"])
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
    Example: how_to_go_on(Path("runs/study/cot-s1337")) == ["--resume"]
    """
    if (run_dir / "last.pt").exists():
        return ["--resume"]
    return ["--overwrite"] if run_dir.is_dir() and any(p.name != ".lock" for p in run_dir.iterdir()) else []


def run_name(mode, seed):
    """The folder of one run inside the study. Example: run_name("cot", 1337) == "cot-s1337" """
    return f"{mode}-s{seed}"


def train_argv(args, run_dir, mode, seed):
    """
    train.py's flags for one run of the study: its mode, seed and folder, then the preset (when not
    the default, the recipe), --traces and --train-args the study was given.
    Example: train_argv(parse_args([]), Path("runs/study/cot-s2"), "cot", 2) == ["--mode", "cot", "--seed", "2", "--out", "runs/study/cot-s2"]
    """
    argv = ["--mode", mode, "--seed", str(seed), "--out", str(run_dir)]
    argv += ["--preset", args.preset] if args.preset != "default" else []
    return argv + (["--traces", args.traces] if args.traces else []) + shlex.split(args.train_args)


def plan_run(args, py, run_dir, mode, seed):
    """
    The train.py command one run still needs (going on from where it stopped), or None when its
    metrics.json says it is trained and scored. A folder trained with other settings exits, untouched.
    Example: plan_run(parse_args([]), "python", Path("runs/study/cot-s1337"), "cot", 1337)[:4] == ["python", "train.py", "--mode", "cot"]
    """
    argv = train_argv(args, run_dir, mode, seed)
    stale = stale_setting(run_dir, argv)
    if stale:
        key, was, now = stale
        sys.exit(f"error: {run_dir} was trained with --{key.replace('_', '-')} {was!r}, not {now!r} as this study "
                 f"asks; use another --out or delete {run_dir}")
    if (run_dir / "metrics.json").exists():
        print(f"{run_dir}: trained already")
        return None
    return [py, "train.py", *argv, *how_to_go_on(run_dir)]


def train_runs(plans, steps, out, jobs):
    """
    Run the train.py commands of plans ({run name: command}), jobs at a time (each with its share
    of the CPU threads and its output in <out>/<run name>.log when more than one); after a failure
    or a Ctrl-C no new one starts, and those running are let finish or stop, and kept. Returns the failures.
    Example: train_runs({"cot-s1337": [...], "answer-s1337": [...]}, steps, Path("runs/study"), 2)
    """
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    failures, stop = [], threading.Event()

    def train(name):
        if stop.is_set():  # a step failed: start nothing new
            return
        try:
            run_step(plans[name], steps, log_file=out / f"{name}.log" if jobs > 1 else None, threads=threads)
        except StepFailed as e:
            failures.append(str(e))
            stop.set()
        except Interrupted:
            stop.set()

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(train, plans))
    return failures


def teacher_steps(py, teachers_dir, out):
    """The `teacher.py --recorded` command of every model in every recorded teacher file of
    teachers_dir (None where its eval file is written already), and the eval files they write.

    Example: teacher_steps(sys.executable, Path("../shared/data/teachers"), Path("runs/study/teachers"))
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


def compare_step(args, runs, out, steps):
    """
    With --compare, --teacher or --teachers: evaluate.py --compare (report.py) over the first seed's
    test evaluations and the teachers (recorded ones scored first) into <out>/compare: the cost
    table, failure categories, charts, and the students' traces beside the best teacher's.
    Example: compare_step(parse_args(["--compare"]), runs, Path("runs/study"), steps)
    """
    recorded, files = teacher_steps(sys.executable, Path(args.teachers), out / "teachers") if args.teachers else ([], [])
    for cmd in filter(None, recorded):
        run_step(cmd, steps)
    score = lambda f: json.loads(Path(f"{f}.summary.json").read_text())["exact_match"]  # best first: its traces are shown
    teachers = ([args.teacher] if args.teacher else []) + [str(f) for f in sorted(files, key=score, reverse=True)]
    first = runs[0]["seed"]
    folders = [str(r["dir"] / r["scores"]["test"]["eval"]) for r in runs if r["seed"] == first and "test" in r["scores"]]
    cmd = [sys.executable, "evaluate.py", "--compare", *folders, "--out", str(out / "compare")]
    run_step(cmd + [arg for t in teachers for arg in ("--teacher", t)], steps)


# -----------------------------------------------------------------------------
# Reading the runs: config.json, metrics.json, and the eval folders of seen, val and test


def read_json(path):
    """A JSON file's dict, or None when it is not there; a corrupt one exits with its name.
    Example: read_json(Path("runs/study/cot-s1337/config.json"))["mode"] == "cot"
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        sys.exit(f"error: {shown(path)} is corrupt ({str(e)[:80]})")


def read_run(run_dir):
    """
    One run folder as the report reads it: its mode and seed from config.json (a folder without one
    exits), its config and metrics.json (empty when it is not there yet), its path as shown.
    Example: read_run(Path("runs/study/cot-s1337"))["seed"] == 1337
    """
    config = read_json(run_dir / "config.json")
    if not isinstance(config, dict) or "mode" not in config or "seed" not in config:
        sys.exit(f"error: {run_dir}: no config.json with a mode and a seed; is it a train.py run folder?")
    return {"run": shown(run_dir), "dir": run_dir, "mode": config["mode"], "seed": config["seed"], "config": config,
            "metrics": read_json(run_dir / "metrics.json") or {}}


def eval_set(info):
    """
    The set an eval.json scored, as the report names it: seen (an eval_file of seen stories), val or
    test (GSM8K's split), else None (another file: not in the report).
    Example: eval_set({"split": None, "eval_file": "results/seen-stories/seen-stories.jsonl"}) == "seen"
    """
    if info.get("eval_file"):
        return "seen" if "seen-stories" in str(info["eval_file"]) else None
    return info.get("split") if info.get("split") in SETS else None


def find_evals(run):
    """
    The eval folder of each set in a run folder, found by what its eval.json scored, whatever its
    name: {set: folder}. Where several scored one set, the one metrics.json's scores name wins, then
    one whose predictions.jsonl was kept, then all problems (else the most), then the calculator as
    the run trained; two alike on all of these exit, named.
    Example: find_evals(read_run(Path("runs/study/cot-s1337")))["seen"].name == "eval-seen-stories-calc"
    """
    named = {s: (sc or {}).get("eval") for s, sc in (run["metrics"].get("scores") or {}).items()}
    calc = bool(run["config"].get("mask_results"))
    options = {}
    for path in sorted(run["dir"].glob("*/eval.json")):
        info = read_json(path) or {}
        s = eval_set(info)
        if s:
            limit = info.get("limit") or 0
            rank = (path.parent.name == named.get(s), (path.parent / "predictions.jsonl").exists(), limit == 0, limit,
                    bool(info.get("calculator")) == calc)
            options.setdefault(s, []).append((rank, path.parent))
    found = {}
    for s, ranked in options.items():
        ranked.sort(key=lambda o: o[0], reverse=True)
        tied = [folder for rank, folder in ranked if rank == ranked[0][0]]
        if len({json.dumps(answers(folder), sort_keys=True) for folder in tied}) > 1:
            sys.exit(f"error: {run['run']}: {tied[0].name} and {tied[1].name} both score {s} alike, with other results; "
                     f"move the one not to report out of the run folder")
        found[s] = tied[0]  # the same evaluation made twice (train.py's and a script's): either
    return found


def answers(folder):
    """
    What an eval folder says of each problem ({id: right}), else (n, correct) from its eval.json:
    two folders that agree on it report the same.
    Example: answers(Path("runs/study/cot-s1337/eval-test-calc"))["test-00000"] is False
    """
    if (folder / "predictions.jsonl").exists():
        return {r["id"]: bool(r["correct"]) for r in data.read_jsonl(folder / "predictions.jsonl") if r.get("task") in (None, "cot")}
    result = (read_json(folder / "eval.json") or {}).get("results") or [{}]
    return [result[0].get("n"), result[0].get("correct")]


def seen_file(config):
    """
    The seen-stories file a run was trained beside (its --seen-stories), found as train.py finds it
    (as given, else in the repository), or None when it is not here.
    Example: seen_file({"seen_stories": "results/seen-stories/seen-stories.jsonl"}) == "results/seen-stories/seen-stories.jsonl"
    """
    name = config.get("seen_stories") or SEEN_STORIES
    for path in (Path(name), data.ROOT / name):
        if path.is_file():
            return str(path)
    return None


def remake_commands(run, found, py, eval_args=()):
    """
    The evaluate.py commands a run needs before it can be reported: one per set without an eval
    folder (limit and calculator as train.py scored it), and one per folder whose predictions.jsonl
    is gone (made again in place, with its own settings); none without a last.pt to score.
    Example: remake_commands(run, {"seen": ..., "test": ...}, "python")[0][3:5] == ["--split", "val"]
    """
    if not (run["dir"] / "last.pt").exists():
        return []
    config, cmds = run["config"], []
    for s in SETS:
        folder = found.get(s)
        if folder is not None and (folder / "predictions.jsonl").exists():
            continue
        where = ["--split", s] if s != "seen" else ["--eval-file", seen_file(config)] if seen_file(config) else None
        if where is None:
            continue  # train.py scores no seen stories where the file is not at hand either
        info = read_json(folder / "eval.json") if folder else {"limit": config.get("test_limit") or 0, "calculator": bool(config.get("mask_results"))}
        cmd = [py, "evaluate.py", str(run["dir"]), *where, "--limit", str(info.get("limit") or 0),
               "--calculator" if info.get("calculator") else "--no-calculator"]
        cmds.append(cmd + ["--latency-samples", "0"] * (s != "test") + (["--out", str(folder)] if folder else []) + list(eval_args))
    return cmds


def set_score(folder):
    """
    One run's score on one set from its eval folder: n, correct, exact match with its 95% Wilson
    interval, the folder's name, and whether each problem was right by id ("by_id"; None when
    predictions.jsonl was not kept: no paired test). A mixed run's first task (cot) is the one read.
    Example: set_score(Path("runs/study/cot-s1337/eval-test-calc"))["exact_match"]
    """
    try:
        info, rows = read_eval(folder)
    except ValueError as e:
        sys.exit(f"error: {e}")
    m = info["results"][0]
    n, correct, by_id = m["n"], m["correct"], None
    if rows is not None:
        rows = [r for r in rows if r.get("task") == m.get("task")]
        by_id = {r["id"]: bool(r["correct"]) for r in rows}
        if len(by_id) < len(rows):
            sys.exit(f"error: {shown(folder)}/predictions.jsonl holds a problem id twice")
        n, correct = len(by_id), sum(by_id.values())
    return {"n": n, "correct": correct, "exact_match": correct / n if n else 0.0, "ci95": list(wilson_interval(correct, n)),
            "eval": folder.name, "calculator": info.get("calculator"), "limit": info.get("limit") or 0, "by_id": by_id}


def collect_runs(run_dirs, steps, eval_args=()):
    """
    Every run's scores on seen, val and test, after the evaluate.py steps that make what is missing
    (printed, one at a time with every thread): the read_run dicts with "scores" {set: set_score}.
    Two runs of one mode and seed exit: the report would not know which to pair.
    Example: runs = collect_runs([Path("runs/study/cot-s1337"), Path("runs/study/answer-s1337")], steps)
    """
    runs, seen = [read_run(d) for d in run_dirs], {}
    for run in runs:
        other = seen.setdefault((run["mode"], run["seed"]), run["run"])
        if other != run["run"]:
            sys.exit(f"error: {other} and {run['run']} are both {run['mode']} with seed {run['seed']}: report one of them")
    for run in runs:
        for cmd in remake_commands(run, find_evals(run), sys.executable, eval_args):
            run_step(cmd, steps)
        run["scores"] = {s: set_score(folder) for s, folder in sorted(find_evals(run).items(), key=lambda kv: list(SETS).index(kv[0]))}
    return runs


# -----------------------------------------------------------------------------
# The numbers: paired tests, means over seeds, the verdict


def comparisons(modes):
    """
    The pairs the report tests, (a, b) for a against b: every student against answer, and the
    controls (and mixed) against cot too, when both are there.
    Example: comparisons(["answer", "cot", "filler"]) == [("cot", "answer"), ("filler", "answer"), ("filler", "cot")]
    """
    ordered = [m for m in MODES if m in modes]
    pairs = [(m, "answer") for m in ordered if m != "answer" and "answer" in modes]
    return pairs + [(m, "cot") for m in ordered if m not in ("answer", "cot") and "cot" in modes]


def paired_test(a, b, s):
    """
    McNemar's exact test (report.mcnemar) of run a against run b on set s, on the problems both
    were scored on, paired by problem id; None when either has no predictions kept for s.
    Example: paired_test(cot_run, answer_run, "test")["only_a"]  # problems cot got right and answer wrong
    """
    sa, sb = a["scores"].get(s), b["scores"].get(s)
    if not (sa and sb and sa["by_id"] is not None and sb["by_id"] is not None):
        return None
    ids = sorted(set(sa["by_id"]) & set(sb["by_id"]))
    if not ids:
        return None
    t = mcnemar([sa["by_id"][i] for i in ids], [sb["by_id"][i] for i in ids])
    return {"set": s, "seed": a["seed"], "a": a["mode"], "b": b["mode"], "a_run": a["run"], "b_run": b["run"],
            **{k: t[k] for k in ("n", "both_right", "only_a", "only_b", "both_wrong", "p_exact")},
            "a_exact_match": (t["both_right"] + t["only_a"]) / t["n"], "b_exact_match": (t["both_right"] + t["only_b"]) / t["n"],
            "unpaired": len(set(sa["by_id"]) ^ set(sb["by_id"]))}


def seeds_of(runs):
    """The seeds of the runs, in the order they first come. Example: seeds_of(runs) == [1337, 2, 3]"""
    return list(dict.fromkeys(r["seed"] for r in runs))


def paired_tests(runs):
    """
    Every paired test of the study: each comparison, for each seed where both runs are there, on
    each set both scored with predictions; plus what could not be tested, in words.
    Example: tests, untested = paired_tests(runs); tests[0]["p_exact"]
    """
    by_key = {(r["mode"], r["seed"]): r for r in runs}
    tests, untested = [], []
    for a, b in comparisons({r["mode"] for r in runs}):
        for seed in seeds_of(runs):
            if (a, seed) not in by_key or (b, seed) not in by_key:
                continue
            for s in SETS:
                t = paired_test(by_key[(a, seed)], by_key[(b, seed)], s)
                if t:
                    tests.append(t)
                else:
                    untested.append(f"{a} against {b}, seed {seed}, {s}: not tested (a run has no evaluation of it with predictions.jsonl)")
    return tests, untested


def seed_means(runs):
    """
    {set: {mode: {"mean", "min", "max", "seeds"}}}: each mode's exact match on each set averaged
    over its seeds, with the lowest and highest seed.
    Example: seed_means(runs)["test"]["cot"] == {"mean": 0.5, "min": 0.25, "max": 0.75, "seeds": [1337, 2, 3]}
    """
    means = {}
    for s in SETS:
        for mode in [m for m in MODES if any(r["mode"] == m for r in runs)]:
            ems = [(r["seed"], r["scores"][s]["exact_match"]) for r in runs if r["mode"] == mode and s in r["scores"]]
            if ems:
                values = [em for _, em in ems]
                means.setdefault(s, {})[mode] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
                                                 "seeds": [seed for seed, _ in ems]}
    return means


def verdict(tests, a, b, s):
    """
    In how many seeds a beats b on set s (more problems right only by a than only by b, at
    McNemar's exact p < ALPHA), in plain words with the p of each seed; None when never tested.
    Example: verdict(tests, "cot", "answer", "test")["text"].startswith("cot beats answer on test with p < 0.05 in 2 of 3 seeds")
    """
    rows = [t for t in tests if (t["a"], t["b"], t["set"]) == (a, b, s)]
    if not rows:
        return None
    a_wins = [t["seed"] for t in rows if t["only_a"] > t["only_b"] and t["p_exact"] < ALPHA]
    b_wins = [t["seed"] for t in rows if t["only_b"] > t["only_a"] and t["p_exact"] < ALPHA]
    text = f"{a} beats {b} on {SHORT[s]} with p < {ALPHA:g} in {len(a_wins)} of {len(rows)} seed{'s' * (len(rows) != 1)}"
    text += f"; {b} beats {a} in {len(b_wins)}" if b_wins else ""
    per_seed = "; ".join(f"seed {t['seed']}: {t['only_a']} right only by {a}, {t['only_b']} only by {b}, p = {fmt_p(t['p_exact'])}" for t in rows)
    return {"a": a, "b": b, "set": s, "seeds": [t["seed"] for t in rows], "a_wins": a_wins, "b_wins": b_wins,
            "text": f"{text} ({per_seed})"}


def settings_that_differ(runs):
    """
    The train.py settings other than mode and seed (and those free to differ on resume) that the
    runs were not all trained with alike: {setting: {value: [runs]}}; empty for a sound comparison.
    Example: settings_that_differ(runs) == {}  # a study's runs, all trained by one recipe
    """
    keys = [f.name for f in fields(TrainConfig) if f.name not in MAY_DIFFER_ON_RESUME | {"mode", "seed"}]
    differ = {}
    for key in keys:
        values = {}
        for r in runs:
            values.setdefault(json.dumps(r["config"].get(key)), []).append(r["run"])
        if len(values) > 1:
            differ[key] = {json.loads(v): names for v, names in values.items()}
    return differ


def analyse(runs):
    """
    Everything the report states, as study.json keeps it: the runs and their scores, the paired
    tests, the means over seeds, the verdicts, and the notes (settings that differ, scores that do not
    agree with metrics.json, tests that could not be made).
    Example: study = analyse(collect_runs(run_dirs, steps)); study["verdicts"][0]["text"]
    """
    tests, untested = paired_tests(runs)
    verdicts = [v for a, b in comparisons({r["mode"] for r in runs}) for s in SETS if (v := verdict(tests, a, b, s))]
    notes = untested + [f"the runs were not trained alike: --{k.replace('_', '-')} " + "; ".join(f"{v!r} in {', '.join(names)}" for v, names in d.items())
                        for k, d in settings_that_differ(runs).items()]
    for r in runs:
        for s, sc in r["scores"].items():
            m = ((r["metrics"].get("scores") or {}).get(s)) or {}
            if m.get("eval") == sc["eval"] and (m.get("n"), m.get("correct")) != (sc["n"], sc["correct"]):
                notes.append(f"{r['run']}: metrics.json says {m.get('correct')}/{m.get('n')} on {s}, {sc['eval']} {sc['correct']}/{sc['n']}")
        notes += [f"{r['run']}: no evaluation of {s} found" for s in SETS if s not in r["scores"]]
    listed = [{"run": r["run"], "mode": r["mode"], "seed": r["seed"],
               "scores": {s: {k: v for k, v in sc.items() if k != "by_id"} | {"paired": sc["by_id"] is not None} for s, sc in r["scores"].items()}}
              for r in runs]
    return {"modes": [m for m in MODES if any(r["mode"] == m for r in runs)], "seeds": seeds_of(runs), "alpha": ALPHA,
            "runs": listed, "paired": tests, "means": seed_means(runs), "verdicts": verdicts, "notes": notes,
            "trained_with": recipe_line(runs[0]["config"]) if runs else ""}


def recipe_line(config):
    """
    The settings a run was trained with, in one line for the report's opening.
    Example: recipe_line(config) == "preset default: d128, 3+3 layers, ff 512, 16 variants per train problem, calculator-aware loss, 16000 steps, lr 0.001, GSM8K reference solutions"
    """
    c = config
    length = f"{c.get('steps')} steps" if c.get("steps") else f"{c.get('epochs')} epochs"
    return (f"preset {c.get('preset')}: d{c.get('d_model')}, {c.get('n_enc_layers')}+{c.get('n_dec_layers')} layers, ff {c.get('d_ff')}, "
            f"{c.get('variants')} variant{'s' * (c.get('variants') != 1)} per train problem, {'calculator-aware' if c.get('mask_results') else 'plain'} loss, "
            f"{length}, lr {c.get('lr')}, {c.get('trace_source') or 'GSM8K reference solutions'}")


# -----------------------------------------------------------------------------
# The report


def pct(x):
    """Example: pct(0.4183) == "41.8%" """
    return f"{100 * x:.1f}%"


def report_lines(study):
    """
    report.md, section by section: what was compared and how, the verdicts, the means over seeds,
    every run's score with its interval, every paired test, and the notes.
    Example: write_atomic(out / "report.md", "\\n".join(report_lines(analyse(runs))))
    """
    seeds = ", ".join(map(str, study["seeds"]))
    pairs = comparisons(study["modes"])
    lines = [f"# The study: {'; '.join(f'{a} against {b}' for a, b in pairs) or ', '.join(study['modes'])}", "",
             f"{len(study['runs'])} runs, seed{'s' * (len(study['seeds']) != 1)} {seeds}; trained with {study['trained_with']}.",
             "Exact match: greedy decoding of each run's last.pt, with the calculator where it trained with the calculator-aware loss; "
             "intervals are 95% Wilson intervals. Paired tests: McNemar's exact test (two-sided) on the problems both runs were "
             f"scored on, matched by problem id; a beats b when more problems are right only by a than only by b, at p < {study['alpha']:g}.", ""]
    lines += ["## Verdict", ""] + [f"- **{v['text']}**" if v["set"] == "test" and v["b"] == "answer" else f"- {v['text']}"
                                   for v in sorted(study["verdicts"], key=lambda v: v["set"] != "test")]
    lines += [] if study["verdicts"] else ["No pair of runs to test: a paired test needs two modes of one seed (cot and answer)."]
    lines += [""]
    lines += means_table(study) + runs_tables(study) + paired_tables(study)
    if study["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in study["notes"]] + [""]
    return lines


def means_table(study):
    """The means over seeds: one row per mode, one column per set, each 'mean (lowest-highest)'.
    Example: means_table(study)[4] == "| cot | 3 | 40.0% (35.0-45.0%) | ... |" """
    sets = [s for s in SETS if s in study["means"]]
    lines = ["## Mean over seeds", "", "Exact match, the mean over seeds (the lowest and the highest seed).", "",
             "| mode | seeds | " + " | ".join(SETS[s] for s in sets) + " |", "|---|---|" + "---|" * len(sets)]
    for mode in study["modes"]:
        cells = [study["means"][s].get(mode) for s in sets]
        n_seeds = max((len(c["seeds"]) for c in cells if c), default=0)
        lines.append(f"| {mode} | {n_seeds} | " + " | ".join(mean_cell(c, n_seeds) for c in cells) + " |")
    return lines + [""]


def mean_cell(c, n_seeds):
    """
    One cell of the means table: the mean, the lowest and highest seed, and how many seeds when fewer
    than the mode's others; a dash where none.
    Example: mean_cell({"mean": 0.5, "min": 0.25, "max": 0.75, "seeds": [1337, 2]}, 3) == "50.0% (25.0-75.0%, 2 seeds)"
    """
    if not c:
        return "—"
    k = len(c["seeds"])
    fewer = "" if k == n_seeds else f", {k} seed{'s' * (k != 1)}"
    return f"{pct(c['mean'])} ({pct(c['min'])[:-1]}-{pct(c['max'])}{fewer})"


def runs_tables(study):
    """Every run's exact match on each set, with its interval and the evaluation it was read from.
    Example: runs_tables(study)[5] == "| runs/study/answer-s1337 | answer | 1337 | 12/500 | 2.4% | 1.4-4.2% | eval-test-calc |" """
    order = lambda r: (MODES.index(r["mode"]) if r["mode"] in MODES else len(MODES), study["seeds"].index(r["seed"]))
    lines = ["## Every run", ""]
    for s, name in SETS.items():
        rows = [r for r in sorted(study["runs"], key=order) if s in r["scores"]]
        if not rows:
            continue
        lines += [f"### {name}", "", "| run | mode | seed | right | exact match | 95% interval | evaluation |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            sc = r["scores"][s]
            lo, hi = sc["ci95"]
            lines.append(f"| {r['run']} | {r['mode']} | {r['seed']} | {sc['correct']}/{sc['n']} | {pct(sc['exact_match'])} | "
                         f"{pct(lo)[:-1]}-{pct(hi)} | {sc['eval']}{'' if sc['paired'] else ' (no predictions.jsonl)'} |")
        lines.append("")
    return lines


def paired_tables(study):
    """Every paired test, one table per set: the four counts of McNemar's table and its exact p.
    Example: paired_tables(study)[4] == "| 1337 | cot | answer | 20 | 3 | 10 | 2 | 5 | 65.0% | 25.0% | 0.03857 |" """
    lines = ["## Paired tests", ""] if study["paired"] else []
    for s, name in SETS.items():
        rows = [t for t in study["paired"] if t["set"] == s]
        if not rows:
            continue
        lines += [f"### {name}", "", "| seed | a | b | paired | both right | only a | only b | both wrong | a | b | p (exact) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {t['seed']} | {t['a']} | {t['b']} | {t['n']} | {t['both_right']} | {t['only_a']} | {t['only_b']} | {t['both_wrong']} | "
                  f"{pct(t['a_exact_match'])} | {pct(t['b_exact_match'])} | {fmt_p(t['p_exact'])} |" for t in rows]
        lines.append("")
    return lines


# -----------------------------------------------------------------------------
# The command line


def parse_seeds(text):
    """--seeds: a comma list of distinct integers. Example: parse_seeds("1337,2,3") == [1337, 2, 3]"""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of integers (e.g. 1337,2,3)") from None
    if len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"{text}: each seed once")
    return seeds


def check_step_args(parser, args):
    """
    Read --train-args and --eval-args as train.py and evaluate.py will, before any step runs:
    a bad value is a usage error now, not a failed step after an hour of training.
    Example: check_step_args(parser, parser.parse_args(["--eval-args", "--batch-size 0"]))  # exits 2
    """
    checks = {"--train-args": (args.train_args, lambda extra: resolve_config(["--mode", args.modes[0], "--preset", args.preset, *extra])),
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


def parse_args(argv=None):
    """
    The study's flags, checked before any step runs: modes, seeds, and --train-args / --eval-args
    as train.py and evaluate.py will read them.
    Example: parse_args(["--seeds", "1337,2,3", "--controls"]).modes == ["cot", "answer", "filler", "shuffled"]
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flag = parser.add_argument
    flag("--preset", choices=list(PRESETS), default="default", help="train.py's preset for every run (default: the recipe; smoke: tiny, seconds)")
    flag("--out", default="", help="the study folder RUN_ROOT: runs, report.md, study.json (default runs/study; runs/study-<preset> for another preset)")
    flag("--seeds", type=parse_seeds, default=[1337], help="comma list of seeds, one run per mode and seed (default 1337; the paper-style study: 1337,2,3)")
    flag("--controls", action="store_true", help="also train the controls filler and shuffled, tested against answer and against cot")
    flag("--modes", default="", help="comma list of modes to train instead (default cot,answer; with --controls also filler,shuffled)")
    flag("--jobs", type=arg_number(int, at_least=1), default=1, help="runs trained side by side, each with cores/jobs CPU threads and its "
         "output in RUN_ROOT/<mode>-s<seed>.log (2 on the 2-core VM)")
    flag("--report-only", action="store_true", help="train nothing: write the report from existing run folders (--runs, else those in --out)")
    flag("--runs", nargs="+", default=[], help="--report-only: run folders or globs; modes and seeds are read from their config.json")
    flag("--traces", default="", help="teacher traces JSONL for every run (default: GSM8K reference solutions)")
    flag("--train-args", default="", help="extra train.py flags for every run, e.g. '--time-budget-min 20'")
    flag("--eval-args", default="", help="extra evaluate.py flags for the evaluations the study makes again, e.g. '--batch-size 32'")
    flag("--compare", action="store_true", help="also evaluate.py --compare of the first seed's test evaluations into RUN_ROOT/compare "
         "(cost table, failure categories, charts, traces side by side)")
    flag("--teacher", default="", help="--compare with a teacher's `teacher.py --eval` file, its traces beside the students'")
    flag("--teachers", default="", help="--compare with every recorded teacher output in this folder (e.g. ../shared/data/teachers), scored into RUN_ROOT/teachers/")
    args = parser.parse_args(argv)
    if args.runs and not args.report_only:
        parser.error("--runs names the runs of --report-only")
    modes = args.modes.split(",") if args.modes else list(STUDENTS)
    modes += [m for m in CONTROLS if args.controls and m not in modes]
    for mode in modes:
        if mode not in MODES:
            parser.error(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
    if len(set(modes)) < len(modes):
        parser.error(f"--modes {args.modes}: each mode once")
    args.modes, args.out = modes, args.out or ("runs/study" if args.preset == "default" else f"runs/study-{args.preset}")
    check_step_args(parser, args)
    return args


def report_runs(args, out):
    """
    The run folders --report-only reports: --runs (globs expanded here, sorted, so they may be quoted),
    else every folder in out with a config.json. A glob that matches nothing exits.
    Example: report_runs(parse_args(["--report-only", "--runs", "runs/recipe/*-16k-s2"]), Path("runs/study"))
    """
    dirs = []
    for pattern in args.runs:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            sys.exit(f"error: --runs {pattern} matches nothing")
        dirs += [Path(m) for m in matches if Path(m).is_dir() or not glob.has_magic(pattern)]
    dirs = dirs or sorted(p.parent for p in out.glob("*/config.json"))
    if not dirs:
        sys.exit(f"error: no run folders to report: name them with --runs, or train them with study.py --out {out}")
    return list(dict.fromkeys(dirs))


def train_study(args, out):
    """
    The training half of the study: plan every run (refusing folders trained otherwise), train
    those not trained yet, jobs at a time; exits after a failure or a Ctrl-C. Returns (run folders, StepLog, jobs).
    Example: run_dirs, steps, jobs = train_study(parse_args(["--preset", "smoke"]), Path("runs/study-smoke"))
    """
    runs = [(out / run_name(mode, seed), mode, seed) for seed in args.seeds for mode in args.modes]  # a seed's pair first
    plans = {run_dir.name: plan_run(args, sys.executable, run_dir, mode, seed) for run_dir, mode, seed in runs}
    steps = StepLog(out / "study.json", {"preset": args.preset, "modes": args.modes, "seeds": args.seeds,
                                          "trace_source": shown(args.traces) if args.traces else "GSM8K reference solutions",
                                          "train_args": shown_cmd(shlex.split(args.train_args))})
    to_train = {name: cmd for name, cmd in plans.items() if cmd}
    jobs = max(1, min(args.jobs, len(to_train)))
    failures = train_runs(to_train, steps, out, jobs) if to_train else []
    if INTERRUPTED.is_set():
        stop_interrupted()
    if failures:  # the runs still training when one failed were let finish, and are kept
        sys.exit("\n".join(f"error: {e}" for e in failures))
    return [run_dir for run_dir, _, _ in runs], steps, jobs


def stop_interrupted():
    """Leave after a Ctrl-C or SIGTERM, once every running step has stopped: what is kept, and the exact command that resumes."""
    print(f"interrupted: finished runs and evaluations are kept, a half-trained run goes on from its last.pt; resume with\n"
          f"  {shlex.join(['python', *sys.argv])}", file=sys.stderr)
    sys.exit(128 + (STOPPED_BY or [signal.SIGINT])[0])


def main(argv=None):
    """The study: train (unless --report-only), read every run's evaluations, write report.md and study.json."""
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0, jobs = time.time(), 1
    if args.report_only:
        run_dirs = report_runs(args, out)
        steps = StepLog(out / "study.json", {"report_only": True, "run_folders": [shown(d) for d in run_dirs]})
    else:
        run_dirs, steps, jobs = train_study(args, out)
    try:
        runs = collect_runs(run_dirs, steps, shlex.split(args.eval_args))
        study = analyse(runs)
        if args.compare or args.teacher or args.teachers:
            compare_step(args, runs, out, steps)
    except StepFailed as e:
        sys.exit(f"error: {e}")
    except Interrupted:
        stop_interrupted()
    write_atomic(out / "report.md", "\n".join(report_lines(study)).rstrip("\n") + "\n")
    steps.set(**study, jobs=jobs, wall_seconds_this_call=round(time.time() - t0, 1))
    for v in study["verdicts"]:
        if v["set"] == "test":
            print(v["text"])
    print(f"study done in {(time.time() - t0) / 60:.1f} min ({steps.summary['seconds'] / 60:.1f} min of steps in all): "
          f"{out / 'report.md'} and {out / 'study.json'}")


if __name__ == "__main__":
    main()
