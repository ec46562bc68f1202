"""
The run folder of train.py (--out): one process, one run, one set of inputs. It holds the lock
that keeps a second train.py out, the record of what a run reads and is (input_files,
config_record), the resume (resume: refusals of other settings, data or tokenizer, the random
generators' states, the log cut back), what to say when the loop stops early (finished,
resume_command), and Ctrl-C as a request to stop after the current step (Interrupt). Serves
train.py; none of it changes what a run computes.

Example:
    lock = lock_run_folder(Path("runs/cot"), resume=False, overwrite=False)  # keep it referenced
    print(resume_command(["--mode", "cot"]))  # python train.py --mode cot --resume
"""
import fcntl
import json
import os
import random
import shlex
import shutil
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import torch

import data

from download import file_record
from extra_problems import extra_record
from files import portable_path, write_atomic
from checkpoint import read_checkpoint
from variant_problems import held_out_count

# What train.py writes into a run folder (evaluate.py adds eval-* folders): what --overwrite deletes
RUN_FILES = ("config.json", "log.jsonl", "best.pt", "last.pt", "metrics.json")

# Settings that do not change what is trained: a run may be resumed (or reused by study.py) with others.
# "compile" is the --compile flag of older runs (removed: it bought nothing on CPU), so that they resume.
MAY_DIFFER_ON_RESUME = {"out", "stop_after_steps", "log_interval", "device", "compile", "data_dir", "tokenizer_dir",
                        "test_limit", "eval_batch", "overwrite"}


def config_record(cfg, process, tok, source, n_problems, examples, files, state, model, argv):
    """What config.json keeps: the settings and everything else a run's numbers depend on, and the command that resumes it."""
    where = {k: portable_path(getattr(cfg, k)) for k in ("out", "data_dir", "tokenizer_dir") if getattr(cfg, k)}  # no machine's folders
    return {**asdict(cfg), **where, **extra_record(files), "trace_source": source, "tokenizer": portable_path(tok.path), "tokenizer_sha256": tok.sha256,
            "seen_stories_held_out": held_out_count(cfg), "train_problems": n_problems, "train_stories": n_problems, "train_examples": {task: len(ex) for task, ex in examples.items()}, "data_files": files,
            "world_size": process.world, "device": str(process.device), "total_steps": state.total_steps, "model": asdict(model.config),
            "resume_command": resume_command(argv)}


def metrics_record(cfg, model, tok, state, ckpt, source, n_test, examples, train_stories):
    """What metrics.json keeps beside the test scores: the student, its training, and the files it learned from."""
    metrics = {"mode": cfg.mode, "preset": cfg.preset, "trace_source": source, "n_test": n_test,
               "params": model.num_params(), "params_no_embeddings": model.num_params(exclude_embeddings=True),
               "train_time_s": round(state.train_time, 1), "tokens_seen": state.tokens_seen, "steps": state.step,
               "best_step": ckpt["step"], "val_em": ckpt.get("val_em"), "device": str(next(model.parameters()).device),
               "variants": cfg.variants, "train_stories": train_stories,
               "train_examples": {task: len(ex) for task, ex in examples.items()},
               "mask_results": cfg.mask_results, "calculator": cfg.mask_results, "tokenizer_sha256": tok.sha256,
               "data_files": input_files(cfg, data.resolve_data_dir(cfg.data_dir or None))}
    return {**metrics, **extra_record(metrics["data_files"])}


def lock_run_folder(out, resume, overwrite):
    """
    Make out this process's run folder, or exit with one line. An exclusive lock on out/.lock,
    held while the process lives (the system drops it at exit, even on kill -9): a second
    train.py with the same --out stops at once instead of mixing its log and checkpoints into
    the first's. A folder that already holds anything is refused unless resumed (--resume) or
    started over (--overwrite deletes the run's files and eval folders, nothing else).
    Example: lock = lock_run_folder(Path("runs/cot"), resume=False, overwrite=False)  # keep it referenced
    """
    if resume and not (out / "last.pt").exists():
        started = out.is_dir() and any(p.name != ".lock" for p in out.iterdir())
        advice = "the run stopped before its first checkpoint: start it again with --overwrite" if started else "start without --resume"
        sys.exit(f"error: --resume: {out / 'last.pt'} not found; {advice}")
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"error: {out} is in use by another train.py (it holds {out / '.lock'}); wait for it to end or use another --out")
    held = sorted(p.name for p in out.iterdir() if p.name != ".lock")
    if held and not resume:
        if not overwrite:
            sys.exit(f"error: {out} is not empty ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}): continue its run "
                     f"with --resume, start over with --overwrite (deletes {', '.join(RUN_FILES)} and eval-*), or use another --out")
        for p in out.iterdir():
            if p.name in RUN_FILES:
                p.unlink()
            elif p.name.startswith("eval-") and p.is_dir():  # scores of the weights about to be replaced
                shutil.rmtree(p)
    return lock


def input_files(cfg, data_dir):
    """
    What a run reads, by content (file_record: name, path, rows, sha256, official): the
    GSM8K files and the traces file. config.json and metrics.json keep it, so a resume or an
    evaluation on other data is caught, and every score says what it was measured on.
    Example: input_files(cfg, Path("data/gsm8k"))["train"]["rows"] == 7473
    """
    files = {"train": data_dir / "train.jsonl", "test": data_dir / "test.jsonl", **({"traces": cfg.traces} if cfg.traces else {}),
             **({"extra_problems": cfg.extra_problems} if cfg.extra_problems else {})}
    return {role: file_record(path) for role, path in files.items()}


def check_same_inputs(out, ckpt, tok, files):
    """
    Exit with one line when a resume would go on with other data or another tokenizer than the
    run began with (compared by sha256; the settings are compared by resume_checkpoint): the model
    would continue silently on other problems, or read its token ids as other pieces.
    Example: check_same_inputs(Path("runs/cot"), ckpt, tok, input_files(cfg, data_dir))
    """
    config = out / "config.json"
    try:
        was = json.loads(config.read_text(encoding="utf-8")).get("data_files", {}) if config.exists() else {}
    except ValueError:
        sys.exit(f"error: --resume: {config} is not valid JSON (cut short?); restore it, or remove it to resume "
                 f"without checking the data files against it (it is written anew)")
    for role, now in files.items():
        if role in was and was[role]["sha256"] != now["sha256"]:
            sys.exit(f"error: --resume: {out} was trained on {was[role]['path']} ({was[role]['rows']} rows, sha256 "
                     f"{was[role]['sha256'][:12]}...), not {now['path']} ({now['rows']} rows, sha256 {now['sha256'][:12]}...); "
                     f"resume with the same data or start a new --out")
    trained = (ckpt.get("tokenizer") or {}).get("sha256")
    if trained and trained != tok.sha256:
        sys.exit(f"error: --resume: {out / 'last.pt'} was trained with another tokenizer than {tok.path} (sha256 {trained[:12]}..., "
                 f"not {tok.sha256[:12]}...); resume with the --tokenizer-dir and data it began with, or start a new --out")


def resume_checkpoint(out, cfg, tok, files, device):
    """
    out/last.pt, read for a resume, or exit with one line when it is missing, unreadable, or was
    trained with other settings (but those in MAY_DIFFER_ON_RESUME), other data or another tokenizer.
    Example: ckpt = resume_checkpoint(Path("runs/cot"), cfg, tok, files, torch.device("cpu"))
    """
    if not (out / "last.pt").exists():
        sys.exit(f"error: --resume: {out / 'last.pt'} not found; start without --resume")
    try:
        ckpt = read_checkpoint(out / "last.pt", map_location=device)  # into model: one parameter line per run
    except ValueError as e:
        sys.exit(f"error: --resume: {e}")
    for key, was in ckpt["train_config"].items():
        now = getattr(cfg, key, None)
        if key not in MAY_DIFFER_ON_RESUME and now != was:
            sys.exit(f"error: --resume: {out / 'last.pt'} was trained with --{key.replace('_', '-')} {was!r}, "
                     f"not {now!r}; resume with the same settings or start a new --out")
    check_same_inputs(out, ckpt, tok, files)
    return ckpt


def resume(out, cfg, model, optimizer, tok, files, process):
    """
    Load out/last.pt into model and optimizer and restore the random generators (refused with one
    line by resume_checkpoint); log rows written after it are dropped. Returns the checkpoint.
    Example: ckpt = resume(Path("runs/cot"), cfg, model, optimizer, tok, files, process); ckpt["step"]
    """
    ckpt = resume_checkpoint(out, cfg, tok, files, process.device)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"], process.device)
    process.log(f"resumed {out / 'last.pt'} at step {ckpt['step']}")
    if process.master:
        keep_log_until(out, ckpt["step"])
    return ckpt


def log_step(line):
    """The step of a log.jsonl line, or None for a line that is not a whole row (cut short by a full disk or a kill)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def keep_log_until(out, step):
    """
    Drop the rows of out/log.jsonl written after step: on a resume, the steps that made them run
    again. A line that is not a whole row (cut short) is dropped too, with a warning naming it.
    Example: keep_log_until(Path("runs/cot"), 300)
    """
    if (out / "log.jsonl").exists():
        lines = [r for r in (out / "log.jsonl").read_text(encoding="utf-8", errors="replace").splitlines() if r.strip()]
        cut = [i for i, r in enumerate(lines, 1) if log_step(r) is None]
        if cut:
            print(f"warning: {out / 'log.jsonl'}: dropped {len(cut)} line(s) that are not whole rows (line {cut[0]}; "
                  f"cut short?); the steps after step {step} run again", file=sys.stderr)
        rows = [r for r in lines if log_step(r) is not None and log_step(r) <= step]
        write_atomic(out / "log.jsonl", "".join(r + "\n" for r in rows))


def rng_state():
    """The random generators' states, which a checkpoint keeps so that a resumed run draws what an uninterrupted one would."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state, device):
    """Restore what rng_state saved (the CUDA generator only on a CUDA device)."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"])


def finished(ended, step, total_steps, out, argv, log):
    """
    True when the loop finished the run (the test score comes next); else say how to go on:
    interrupted (Ctrl-C) exits 130 with the resume command, stopped as asked (--stop-after-steps) logs it.
    Example: if finished(train_loop(setup, state), state.step, state.total_steps, out, None, print): ...
    """
    if ended == "interrupted":
        print(f"interrupted after step {step}; {out / 'last.pt'} is saved, resume with:\n  {resume_command(argv)}", file=sys.stderr)
        sys.exit(130)
    if ended == "stopped" and step < total_steps:
        log(f"stopped after step {step} as asked; continue with:\n  {resume_command(argv)}")
        return False
    return True


def resume_command(argv=None):
    """
    The command line that continues this run: the one that started it, with --resume, without
    --overwrite (which would delete the run) and --stop-after-steps (which would stop it again).
    Example: resume_command(["--mode", "answer", "--overwrite"]) == "python train.py --mode answer --resume"
    """
    args, flags = list(sys.argv[1:] if argv is None else argv), []
    while args:
        arg = args.pop(0)
        if arg == "--stop-after-steps":
            args = args[1:]
        elif arg not in ("--overwrite", "--resume") and not arg.startswith("--stop-after-steps="):
            flags.append(arg)
    launcher = ["torchrun", f"--nproc_per_node={os.environ['WORLD_SIZE']}"] if "RANK" in os.environ else ["python"]
    script = Path(__file__).with_name("train.py")
    script = "train.py" if script.parent == Path.cwd() else str(script)
    return shlex.join([*launcher, script, *flags, "--resume"])


class Interrupt:
    """
    Ctrl-C (SIGINT) as a request to stop: the first sets .asked, and train_loop ends after its
    current optimizer step with last.pt saved; a second aborts at once (exit 130), losing only the
    steps since the last checkpoint.
    Example: signal.signal(signal.SIGINT, Interrupt())
    """

    def __init__(self):
        self.asked = False

    def __call__(self, signum, frame):
        if self.asked:
            print("\nCtrl-C again: stopped at once, without saving; what the last checkpoint holds, if any, is kept", file=sys.stderr, flush=True)
            raise SystemExit(130)
        self.asked = True
        print("\nCtrl-C: finishing this step, then saving last.pt (Ctrl-C again stops at once)", file=sys.stderr, flush=True)


def score_or_say_how(score, out, argv):
    """score() (the test decoding), where Ctrl-C stops it at once and says how to score the saved run."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        score()
    except KeyboardInterrupt:
        print(f"\ninterrupted during the test decoding; training is saved ({out / 'best.pt'}, {out / 'last.pt'}), "
              f"and this scores it:\n  {resume_command(argv)}", file=sys.stderr)
        sys.exit(130)
