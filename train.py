"""
Train the student on GSM8K, for each supervision mode the study compares.

    python train.py --mode cot                  # question -> reasoning trace + answer
    python train.py --mode answer               # question -> answer (the baseline)
    python train.py --mode mixed                # one model, both tasks: [cot] or [answer] starts the output (forced at decoding)
    python train.py --mode cot --preset smoke   # end to end in under a minute on a CPU
    torchrun --nproc_per_node=2 train.py --mode cot   # data-parallel (gloo on CPU, nccl on GPU)

The run folder (--out, default runs/<mode>) ends up holding config.json, log.jsonl,
best.pt, last.pt and metrics.json: every number can be recomputed from it.
"""
import argparse
import datetime
import fcntl
import json
import math
import os
import random
import re
import shlex
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

import cli_checks
import data
import download
import intervals
import tokenizer
from ablations import FILLER, training_targets, ways_to_ask
from traces import Calculator, EQ_RHS, TRACE_FORMATS, arithmetic_before, equations_only, reference_to_trace, trace_verdict
from reinstantiate import variants as verified_variants
from evaluate import decode_and_score
from checkpoint import read_checkpoint, save_checkpoint
from device import pick_device
from files import write_atomic
from model import EncoderDecoder, ModelConfig

MODES = ("answer", "cot", "mixed", "filler", "shuffled")


def setting(default, help):
    """A TrainConfig field with its --help text declared beside it (resolve_config turns fields into flags).

    Example: lr: float = setting(1e-3, "peak learning rate")
    """
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    mode: str = setting("cot", "answer | cot | mixed | filler | shuffled (see make_examples)")
    preset: str = setting("default", "named sizes: smoke, default (CPU), gpu")
    out: str = setting("", "run folder; empty -> runs/<mode>")
    data_dir: str = setting("", "GSM8K folder; empty -> $GSM8K_DIR or data/gsm8k")
    traces: str = setting("", "teacher traces JSONL; empty -> GSM8K reference solutions")
    trace_format: str = setting("equations", "equations: the equation lines only | steps: the solution's sentences and equations")
    vocab_size: int = setting(tokenizer.DEFAULT_VOCAB, "tokenizer pieces")
    tokenizer_dir: str = setting("", "where tokenizers are cached; empty -> data/tokenizer")
    limit: int = setting(0, "train on the first N problems only (0 = all)")
    variants: int = setting(1, "verified re-instantiations per train problem, the original included (1 = GSM8K as it is; traces.py)")
    seen_stories: str = setting("results/seen-stories/seen-stories.jsonl", "evaluation set of train stories with new numbers: its questions are never trained on")
    mask_results: bool = setting(False, "calculator-aware loss: the result after each '=' that the calculator writes at decoding is not trained")
    # model
    d_model: int = setting(256, "width")
    n_heads: int = setting(4, "attention heads")
    n_enc_layers: int = setting(3, "encoder depth")
    n_dec_layers: int = setting(3, "decoder depth")
    d_ff: int = setting(1024, "feed-forward width")
    dropout: float = setting(0.1, "dropout everywhere")
    max_src: int = setting(384, "longer questions are left out (counted), never truncated")
    max_tgt: int = setting(512, "longer targets are left out (counted), never truncated")
    # optimization
    epochs: float = setting(6.0, "passes over the training examples")
    steps: int = setting(0, "train exactly this many optimizer steps, whatever the epochs (0 = epochs decide); for equal-step comparisons")
    time_budget_min: float = setting(0.0, "also stop after this many minutes of training (0 = no limit)")
    batch_tokens: int = setting(8192, "padded tokens (src + tgt) per micro-batch and rank")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    lr: float = setting(1e-3, "peak learning rate")
    min_lr_ratio: float = setting(0.1, "cosine decays to lr * this")
    warmup_steps: int = setting(100, "linear warmup (capped at 10% of the run)")
    weight_decay: float = setting(0.1, "on matrices only, not on norms, biases, embeddings")
    grad_clip: float = setting(1.0, "max global gradient norm")
    answer_weight: float = setting(1.0, "mixed mode: weight of the answer task's loss")
    # evaluation and bookkeeping
    log_interval: int = setting(20, "steps between progress lines")
    eval_interval: int = setting(500, "steps between validation + checkpoint")
    eval_problems: int = setting(100, "val problems decoded for validation exact match")
    test_limit: int = setting(0, "decode only the first N test problems at the end (0 = all)")
    max_new_tokens: int = setting(512, "decoding budget for reasoning modes (as long as the longest target)")
    eval_batch: int = setting(64, "sequences decoded together")
    seed: int = setting(1337, "everything random derives from it")
    device: str = setting("", "cuda | mps | cpu; empty -> best available")
    compile: bool = setting(False, "torch.compile the model")
    stop_after_steps: int = setting(0, "stop (as if interrupted) after this many steps; 0 = never")
    overwrite: bool = setting(False, "start over in an --out that holds a run: its files are deleted first")


PRESETS = {
    # tiny and quick: the whole pipeline in under a minute on 2 CPU cores
    "smoke": dict(d_model=64, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=128, limit=64, epochs=4,
                  batch_tokens=2048, warmup_steps=5, log_interval=5, eval_interval=20, eval_problems=8,
                  test_limit=32, max_new_tokens=64, lr=3e-3),
    # the README's CPU results: equation-only traces and 6 epochs won the ablations (README);
    # cot trains in about 21 minutes on one core of 2
    "default": dict(),
    # one GPU: wider and deeper, more epochs, the full sentences of the solutions
    "gpu": dict(d_model=512, n_heads=8, n_enc_layers=6, n_dec_layers=6, d_ff=2048, epochs=20, trace_format="steps",
                batch_tokens=16384, lr=5e-4, warmup_steps=200, eval_interval=250, eval_problems=300, eval_batch=512),
}


# Settings that do not change what is trained: a run may be resumed (or reused by study.py) with others.
MAY_DIFFER_ON_RESUME = {"out", "stop_after_steps", "log_interval", "device", "compile", "data_dir", "tokenizer_dir",
                        "test_limit", "eval_batch", "overwrite"}


# What each numeric setting may be, checked as the flags are read: a bad value is a one-line usage
# error, not a traceback mid-run (--grad-accum 0), a crash after training (--eval-batch 0) or a
# silent run on something else (--limit -5 trained on all but 5 problems).
_n = cli_checks.arg_number
FLAG_TYPES = {
    **{k: _n(int, at_least=1) for k in ("vocab_size", "d_model", "n_heads", "n_enc_layers", "n_dec_layers", "d_ff", "max_src",
                                        "max_tgt", "batch_tokens", "grad_accum", "log_interval", "eval_interval",
                                        "eval_problems", "max_new_tokens", "eval_batch", "variants")},
    **{k: _n(int, at_least=0) for k in ("limit", "steps", "warmup_steps", "test_limit", "stop_after_steps")},  # 0: all, none or never
    **{k: _n(float, above=0) for k in ("epochs", "lr", "grad_clip")},
    **{k: _n(float, at_least=0) for k in ("time_budget_min", "weight_decay", "answer_weight")},
    "dropout": _n(float, at_least=0, below=1), "min_lr_ratio": _n(float, at_least=0, at_most=1), "seed": _n(int),
}


def check_config(parser, cfg, resume):
    """
    Usage errors that involve more than one flag, or the file system: exit 2 with one line, before any work.
    Example: check_config(parser, TrainConfig(d_model=6, n_heads=2), resume=False)  # exits 2: 6 is not a multiple of 4
    """
    if cfg.d_model % (2 * cfg.n_heads):
        parser.error(f"--d-model {cfg.d_model} must be a multiple of 2 x --n-heads {cfg.n_heads} (rotary positions pair up each head's channels)")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        parser.error(f"--out {cfg.out} is a file, not a run folder: name a folder")
    if resume and cfg.overwrite:
        parser.error("--resume continues the run in --out, --overwrite deletes it: choose one")


def resolve_config(argv=None):
    """
    Defaults, then the preset, then flags given explicitly on the command line: (TrainConfig, resume).
    Every TrainConfig field is a flag, its help the text declared beside the field.
    Example: cfg, resume = resolve_config(["--mode", "answer", "--preset", "smoke"])
    """
    # no abbreviated flags: resume_command must recognise --overwrite and --stop-after-steps as written
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    choices = {"mode": MODES, "preset": sorted(PRESETS), "trace_format": TRACE_FORMATS}
    for f in fields(TrainConfig):
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"].replace("%", "%%")  # argparse formats help
        if f.type is bool or f.type == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=text)
        elif f.name in choices:
            parser.add_argument(flag, choices=choices[f.name], default=None, help=text)
        else:
            parser.add_argument(flag, type=FLAG_TYPES.get(f.name, type(f.default)), default=None, help=f"{text} (default {f.default!r})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k != "resume"}
    cfg = TrainConfig(**{**PRESETS[given.get("preset", "default")], **given})
    cfg.out = cfg.out or f"runs/{cfg.mode}"
    check_config(parser, cfg, args.resume)
    return cfg, args.resume


# -----------------------------------------------------------------------------
# What the student is taught


# The filler ablation's count of '.' tokens, per trace format: one fixed number, so that the
# student can learn where the filler ends (matching each trace's own length left it unable to
# stop), close to the mean reference trace at vocabulary 4000 (104 tokens as steps, 44 as
# equations), so about as much extra decoding as cot.
FILLER_TOKENS = {"steps": 100, "equations": 40}


def with_variants(problems, traces, k, seed, never):
    """
    The problems and their traces with up to k - 1 verified variants of each beside it (new
    numbers, the trace recomputed exactly: traces.variants), drawn reproducibly from seed; a
    variant whose question is in never (the seen-stories evaluation set) is left out.
    Example: problems, traces = with_variants(train, traces, 16, 1337, set())
    """
    if k <= 1:
        return problems, traces
    out_problems, out_traces = [], {}
    for p in problems:
        out_problems.append(p)
        out_traces[p.id] = traces.get(p.id, [])
        if not out_traces[p.id]:
            continue
        rng = random.Random(f"{seed}-{p.id}")  # one stream per problem: the same variants whatever else is trained
        for i, (question, trace) in enumerate(verified_variants(p.question, out_traces[p.id][0], k, rng)[1:], 1):
            if question not in never:
                out_problems.append(data.Problem(f"{p.id}~{i}", question, trace, data.extract_answer(trace)))
                out_traces[f"{p.id}~{i}"] = [trace]
    return out_problems, out_traces


def calculator_positions(tok, text, ids):
    """
    Positions in ids (tok.encode(text)) of every result the calculator would write at decoding:
    the number right after an '=' that follows readable arithmetic. A calculator-aware loss skips
    them, as tool outputs are masked in tool-use fine-tuning: the student spends its capacity on
    choosing operands and operations, and the calculator does the arithmetic.
    Example: calculator_positions(tok, "3 * 4 = 12\n#### 12", tok.encode("3 * 4 = 12\n#### 12"))  # the ids of ' 12'
    """
    out = []
    offset = 0
    for line in text.split("\n"):
        for m in re.finditer("=", line):  # the checker's own reading of an equation
            rhs, lhs = EQ_RHS.match(line, m.end()), arithmetic_before(line[:m.start()])
            if rhs is None or lhs is None or lhs[1] is None:
                continue
            before = tok.encode(text[:offset + m.start() + 1])
            through = tok.encode(text[:offset + rhs.end(1)])
            if ids[:len(through)] == through and through[:len(before)] == before:  # the pieces split at '='
                out += range(len(before), len(through))
        offset += len(line) + 1
    return out


def make_examples(problems, traces, mode, tok, seed, filler_tokens, mask_results=False):
    """
    (task, Example) pairs for a mode: each problem's training targets (traces.training_targets:
    answer: q -> '#### a'; cot: q -> trace; mixed: both, each behind its task prefix; filler:
    filler_tokens '.' tokens, then '#### a'; shuffled: the trace with its steps in random order)
    in tokens. mask_results: the loss skips what the calculator would write.
    Example: make_examples(train, {p.id: [reference_to_trace(p.solution)] for p in train}, "cot", tok, 1337, 40)
    """
    filler_id = tok.encode(FILLER)[-1]
    return [(task, target_example(p, target, tok, filler_id, mask_results))
            for p in problems
            for task, target in training_targets(mode, p.answer, traces.get(p.id), f"{seed}-{p.id}", filler_tokens)]


def target_example(p, target, tok, filler_id, mask_results):
    """
    The Example of problem p with a target's pieces tokenized one by one and joined (a FILLER piece
    is the one filler_id); if mask_results, the loss skips the calculator's results in its last piece.
    Example: target_example(p, ["[cot]", "2 * 3 = 6\n#### 6"], tok, tok.encode(".")[-1], True).no_loss
    """
    head = [i for piece in target[:-1] for i in ([filler_id] if piece == FILLER else tok.encode(piece))]
    body = tok.encode(target[-1])
    skip = calculator_positions(tok, target[-1], body) if mask_results else []
    return data.Example(p.id, tok.encode(p.question), head + body, [len(head) + i for i in skip])


def keep_sound_traces(traces, problems, path, log):
    """
    The traces of problems that pass the teacher's own checks (trace_verdict: '#### <the
    GSM8K label>' last, every equation true, at least one), as read_traces gives them. The
    rejected are counted by reason and printed; a file where most are rejected, or none is left,
    stops the run: it is not traces of these problems, and training on it would teach falsehoods.
    Example: traces = keep_sound_traces(data.read_traces(f), train, f, print)
    """
    gold = {p.id: p.answer for p in problems}
    kept, rejected, checked = {}, Counter(), 0
    for pid, ts in traces.items():
        for trace in ts if pid in gold else []:  # traces of other problems are not used: nothing to check
            checked += 1
            reason = trace_verdict(trace, gold[pid])
            if reason:
                rejected[reason] += 1
            else:
                kept.setdefault(pid, []).append(trace)
    n_bad = sum(rejected.values())
    reasons = ", ".join(f"{reason} {k}" for reason, k in rejected.most_common())
    if n_bad * 2 > checked or not kept:
        sys.exit(f"error: {path}: {n_bad} of {checked} traces of the {len(problems)} train problems fail the teacher's checks "
                 f"({reasons or 'no trace at all'}); check the file, or make it with teacher.py")
    if n_bad:
        log(f"warning: {path}: left out {n_bad} of {checked} traces that fail the teacher's checks ({reasons})")
    return kept


# -----------------------------------------------------------------------------
# The run folder: one process, one run, one set of inputs


# What train.py writes into a run folder (evaluate.py adds eval-* folders): what --overwrite deletes
RUN_FILES = ("config.json", "log.jsonl", "best.pt", "last.pt", "metrics.json")


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
    What a run reads, by content (download.file_record: name, path, rows, sha256, official): the
    GSM8K files and the traces file. config.json and metrics.json keep it, so a resume or an
    evaluation on other data is caught, and every score says what it was measured on.
    Example: input_files(cfg, Path("data/gsm8k"))["train"]["rows"] == 7473
    """
    files = {"train": data_dir / "train.jsonl", "test": data_dir / "test.jsonl", **({"traces": cfg.traces} if cfg.traces else {})}
    return {role: download.file_record(path) for role, path in files.items()}


def check_same_inputs(out, ckpt, tok, files):
    """
    Exit with one line when a resume would go on with other data or another tokenizer than the
    run began with (compared by sha256; the settings are compared by the caller): the model
    would continue silently on other problems, or read its token ids as other pieces.
    Example: check_same_inputs(Path("runs/cot"), ckpt, tok, input_files(cfg, data_dir))
    """
    config = out / "config.json"
    was = json.loads(config.read_text()).get("data_files", {}) if config.exists() else {}
    for role, now in files.items():
        if role in was and was[role]["sha256"] != now["sha256"]:
            sys.exit(f"error: --resume: {out} was trained on {was[role]['path']} ({was[role]['rows']} rows, sha256 "
                     f"{was[role]['sha256'][:12]}...), not {now['path']} ({now['rows']} rows, sha256 {now['sha256'][:12]}...); "
                     f"resume with the same data or start a new --out")
    trained = (ckpt.get("tokenizer") or {}).get("sha256")
    if trained and trained != tok.sha256:
        sys.exit(f"error: --resume: {out / 'last.pt'} was trained with another tokenizer than {tok.path} (sha256 {trained[:12]}..., "
                 f"not {tok.sha256[:12]}...); resume with the --tokenizer-dir and data it began with, or start a new --out")


# -----------------------------------------------------------------------------
# Set-up: this process, the inputs, the examples


@dataclass
class Parallel:
    """This process's place in the run. torchrun starts one process per rank (it sets RANK,
    WORLD_SIZE and LOCAL_RANK); plain `python train.py` is rank 0 of 1.

    Example: Parallel(ddp=False, rank=0, world=1, device=torch.device("cpu")).master is True
    """
    ddp: bool             # started by torchrun: gradients are all-reduced between ranks
    rank: int             # this process; rank 0, the master, logs, validates and saves
    world: int            # processes in the run
    device: torch.device  # where this process computes

    @property
    def master(self):
        return self.rank == 0

    def log(self, *args, **kwargs):
        """print, on the master only: a run prints each line once however many ranks it has."""
        if self.master:
            print(*args, **kwargs)


def set_up(cfg):
    """The device and, under torchrun, the process group; then the seeds. Returns this process's Parallel."""
    ddp = "RANK" in os.environ
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = pick_device(cfg.device)
    if ddp:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        # the other ranks wait at a barrier while rank 0 evaluates: give them time
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    return Parallel(ddp, rank, world, device)


def read_inputs(cfg, par):
    """
    GSM8K (fetched on first use), the tokenizer (trained on first use, by rank 0 while the others
    wait), the train and val problems and the traces file as it is: (tok, train, val, traces or
    None, input_files). A missing or malformed input exits with one line.
    Example: tok, train, val, traces, files = read_inputs(cfg, par)
    """
    data_dir = data.resolve_data_dir(cfg.data_dir or None)
    tok_dir = cfg.tokenizer_dir or tokenizer.TOKENIZER_DIR
    try:
        if par.master and not ((data_dir / "train.jsonl").exists() and (data_dir / "test.jsonl").exists()):
            download.download(data_dir)
        if par.ddp:
            dist.barrier()
        tok = tokenizer.get_tokenizer(cfg.vocab_size, data_dir, tok_dir) if par.master else None
        if par.ddp:
            dist.barrier()
            tok = tok or tokenizer.get_tokenizer(cfg.vocab_size, data_dir, tok_dir)
        train = data.load_gsm8k("train", data_dir)[: cfg.limit or None]
        val = data.load_gsm8k("val", data_dir)
        traces = data.read_traces(cfg.traces) if cfg.traces else None
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    return tok, train, val, traces, input_files(cfg, data_dir)


def choose_traces(cfg, train, val, traces, log):
    """
    The traces to train on (the teacher's that pass its checks, else GSM8K's reference solutions)
    and the val problems' reference traces, both in cfg.trace_format: (traces, ref, source).
    Example: traces, ref, source = choose_traces(cfg, train, val, None, print)
    """
    if cfg.traces:
        traces = keep_sound_traces(traces, train, cfg.traces, log)
        source = f"teacher traces from {cfg.traces}"
        missing = sum(p.id not in traces for p in train)
        if missing:
            log(f"warning: {cfg.traces} has no trace for {missing} of {len(train)} train problems; training on the other {len(train) - missing}")
    else:
        traces = {p.id: [reference_to_trace(p.solution)] for p in train}
        source = "GSM8K reference solutions"
    ref = {p.id: [reference_to_trace(p.solution)] for p in val}
    if cfg.trace_format == "equations":
        traces, ref = ({k: [equations_only(t) for t in ts] for k, ts in d.items()} for d in (traces, ref))
    return traces, ref, source


def by_task(pairs):
    """make_examples' (task, Example) pairs grouped as {task: [Example, ...]}."""
    out = {}
    for task, ex in pairs:
        out.setdefault(task, []).append(ex)
    return out


def train_examples(cfg, tok, train, traces, log):
    """
    {task: Examples} to train on: the train problems (with their variants, --variants) as the
    mode teaches them, the ones longer than max_src/max_tgt left out and counted.
    Example: examples = train_examples(cfg, tok, train, traces, print)  # {"cot": [...]}
    """
    if cfg.variants > 1:
        t0, n_problems = time.time(), len(train)
        train, traces = with_variants(train, traces, cfg.variants, cfg.seed, seen_story_questions(cfg.seen_stories))
        log(f"variants: {len(train)} problems from {n_problems} (up to {cfg.variants} each, original included) in {time.time() - t0:.0f} s")
    examples = by_task(make_examples(train, traces, cfg.mode, tok, cfg.seed, FILLER_TOKENS[cfg.trace_format], cfg.mask_results))
    for task in examples:
        examples[task], dropped = data.drop_long(examples[task], cfg.max_src, cfg.max_tgt)
        log(f"{task} examples: {len(examples[task])} (left out as longer than {cfg.max_src}/{cfg.max_tgt} tokens: {dropped})")
    return examples


def plan_steps(examples, cfg, world, log):
    """
    (steps per epoch, total steps, mean target tokens per batch) of a run: each rank takes an
    equal share of every epoch's batches, grad_accum of them per step; --steps overrides the epochs.
    Example: steps_per_epoch, total_steps, mean_tokens = plan_steps(examples, cfg, 1, print)
    """
    all_batches = len(epoch_batches(examples, cfg, 0, 0, 1))
    steps_per_epoch = all_batches // world // cfg.grad_accum
    if all_batches % (world * cfg.grad_accum):
        log(f"{all_batches % (world * cfg.grad_accum)} of {all_batches} batches per epoch are skipped so that "
            f"{world} rank(s) x {cfg.grad_accum} micro-batches divide them evenly")
    total_steps = cfg.steps or max(1, int(cfg.epochs * steps_per_epoch))
    return steps_per_epoch, total_steps, mean_batch_tokens(examples, all_batches)


# -----------------------------------------------------------------------------
# The model, its optimizer, and the progress a checkpoint keeps


@dataclass
class TrainState:
    """Where a run stands: everything a resume needs besides the weights, the optimizer and the
    random generators. Checkpoints keep it whole (as top-level keys: ckpt["step"])."""
    step: int = 0              # optimizer steps taken
    epoch: int = 0             # the pass over the examples the run is in
    position: int = 0          # micro-batches of this epoch already trained on (this rank's list)
    total_steps: int = 0       # the run's length; cut to step when the time budget runs out
    best_em: float = -1.0      # best validation exact match so far (best.pt's)
    tokens_seen: int = 0       # target tokens trained on, all ranks together
    train_time: float = 0.0    # seconds of training, validation excluded


def build_model(cfg, tok, device):
    """A fresh student sized by cfg for tok's vocabulary, and its optimizer: (model, optimizer)."""
    mcfg = ModelConfig(vocab_size=tok.vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads, n_enc_layers=cfg.n_enc_layers,
                       n_dec_layers=cfg.n_dec_layers, d_ff=cfg.d_ff, dropout=cfg.dropout, max_src_len=cfg.max_src,
                       max_tgt_len=cfg.max_tgt + 1, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    model = EncoderDecoder(mcfg).to(device)
    return model, make_optimizer(model, cfg, device)


def make_optimizer(model, cfg, device):
    """AdamW; weight decay on weight matrices only (not norms, biases or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=device.type == "cuda")


def rng_state():
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def resume_state(out, cfg, model, optimizer, tok, files, par):
    """
    Load out/last.pt into model and optimizer, restore the random generators, and return its
    TrainState; a checkpoint of other settings, data or tokenizer exits with one line. Log rows
    written after that checkpoint are dropped: the steps that made them run again.
    Example: state = resume_state(Path("runs/cot"), cfg, model, optimizer, tok, files, par)
    """
    if not (out / "last.pt").exists():
        sys.exit(f"error: --resume: {out / 'last.pt'} not found; start without --resume")
    try:
        ckpt = read_checkpoint(out / "last.pt", map_location=par.device)  # into model: one parameter line per run
    except ValueError as e:
        sys.exit(f"error: --resume: {e}")
    for key, was in ckpt["train_config"].items():
        now = getattr(cfg, key, None)
        if key not in MAY_DIFFER_ON_RESUME and now != was:
            sys.exit(f"error: --resume: {out / 'last.pt'} was trained with --{key.replace('_', '-')} {was!r}, "
                     f"not {now!r}; resume with the same settings or start a new --out")
    check_same_inputs(out, ckpt, tok, files)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    random.setstate(ckpt["rng"]["python"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and par.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    state = TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState)})
    par.log(f"resumed {out / 'last.pt'} at step {state.step}")
    if par.master and (out / "log.jsonl").exists():
        rows = [r for r in (out / "log.jsonl").read_text().splitlines() if r.strip() and json.loads(r)["step"] <= state.step]
        write_atomic(out / "log.jsonl", "".join(r + "\n" for r in rows))
    return state


def wrap_model(model, cfg, par):
    """What trains: the model, compiled (--compile) and wrapped for data parallelism (torchrun).
    Checkpoints and validation use the model itself."""
    if cfg.compile:
        model = torch.compile(model)
    if par.ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[par.device.index] if par.device.type == "cuda" else None)
    return model


# -----------------------------------------------------------------------------
# The loop


@dataclass
class Run:
    """What stays fixed while a run trains, handed to the loop's parts as one argument."""
    cfg: TrainConfig
    par: Parallel
    out: Path                # the run folder
    tok: tokenizer.Tokenizer
    examples: dict           # task -> training Examples
    val: list                # val problems; the first cfg.eval_problems are decoded for exact match
    val_examples: dict       # task -> val Examples, for the validation loss
    mean_tokens: float       # target tokens in an average batch (loss_weight)
    model: torch.nn.Module   # what trains (wrap_model)
    raw_model: EncoderDecoder  # the model itself: validated and saved
    optimizer: torch.optim.Optimizer
    autocast: object         # bf16 autocast on a GPU, a no-op on a CPU
    interrupt: "Interrupt"   # set by Ctrl-C: the loop saves last.pt after its current step and returns


def lr_at(step, total, cfg, train_time=0.0):
    """Linear warmup, then cosine decay to lr * min_lr_ratio, by steps or by the time budget, whichever is further along."""
    warmup = min(cfg.warmup_steps, max(1, total // 10))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if cfg.time_budget_min:
        progress = max(progress, min(1.0, train_time / (60 * cfg.time_budget_min)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def epoch_batches(examples, cfg, epoch, rank, world):
    """This rank's (task, indices) batches for an epoch: the same list on every machine for a seed."""
    batches = []
    for task, ex in examples.items():
        batches += [(task, b) for b in data.token_batches(ex, cfg.batch_tokens, seed=cfg.seed + epoch)]
    random.Random(cfg.seed + epoch).shuffle(batches)
    per_rank = len(batches) // world
    return batches[rank * per_rank:(rank + 1) * per_rank]


def mean_batch_tokens(examples, n_batches):
    """Target tokens (eos included) of an average batch among n_batches over all examples."""
    return sum(len(e.tgt) + 1 for ex in examples.values() for e in ex) / n_batches


def loss_weight(task, targets, cfg, pad_id, mean_tokens):
    """
    What a micro-batch's loss is multiplied by. Its loss is a mean over its own target tokens;
    scaling it by its share of an average batch makes every target token weigh the same, whichever
    batch it is in (the short '#### 72' batches of mode mixed would otherwise count as much as long
    trace batches). Mode mixed's answer task is weighted by answer_weight on top.
    Example: loss_weight("cot", targets, cfg, 0, 120.0) == 0.5  # targets hold 60 tokens that are not pad_id
    """
    weight = cfg.answer_weight if (cfg.mode == "mixed" and task == "answer") else 1.0
    weight *= int((targets != pad_id).sum()) / mean_tokens
    return weight


def agreed_clock(elapsed, cfg, par):
    """Rank 0's training seconds on every rank when a time budget is set: lr and the last step depend on them."""
    if par.ddp and cfg.time_budget_min:
        clock = torch.tensor([elapsed], dtype=torch.double, device=par.device)
        dist.broadcast(clock, 0)
        return clock.item()
    return elapsed


def optimizer_step(run, micro_batches, lr, state):
    """One optimizer step over grad_accum micro-batches (gradients all-reduced once, on the last);
    counts their target tokens into state and returns the mean loss."""
    cfg, model, pad_id = run.cfg, run.model, run.tok.pad_id
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = 0.0
    for micro, (task, idx) in enumerate(micro_batches):
        src, tgt_in, targets = (t.to(run.par.device) for t in data.collate([run.examples[task][i] for i in idx]))
        weight = loss_weight(task, targets, cfg, pad_id, run.mean_tokens)
        sync = micro == cfg.grad_accum - 1  # all-reduce gradients once, on the last micro-step
        with (model.no_sync() if run.par.ddp and not sync else torch.enable_grad()), run.autocast:
            _, loss = model(src, tgt_in, targets)
            (loss * weight / cfg.grad_accum).backward()
        loss_sum += loss.item() / cfg.grad_accum
        state.tokens_seen += int((targets != pad_id).sum()) * run.par.world  # ranks see batches of about the same size
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum


def log_step(run, state, loss, lr, tokens_per_s, logf):
    """The progress line, and its row in log.jsonl (logf: the master's open file, else None)."""
    cfg = run.cfg
    eta = (state.total_steps - state.step) * state.train_time / state.step
    if cfg.time_budget_min:
        eta = min(eta, max(0.0, 60 * cfg.time_budget_min - state.train_time))
    run.par.log(f"step {state.step}/{state.total_steps} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} target tok/s | "
                f"elapsed {fmt_time(state.train_time)} | eta {fmt_time(eta)}")
    if logf:
        logf.write(json.dumps({"step": state.step, "epoch": state.epoch, "loss": loss, "lr": lr, "tokens": state.tokens_seen,
                               "time": state.train_time}) + "\n")
        logf.flush()


def validate(run):
    """
    The validation loss (teacher-forced, every task) and the exact match of greedy decoding on
    the first eval_problems val problems, asked the mode's first way: (loss, exact match, outputs).
    Example: val_loss, val_em, texts = validate(run)
    """
    cfg, model = run.cfg, run.raw_model
    model.eval()
    losses = []
    with torch.no_grad(), run.autocast:
        for task, ex in run.val_examples.items():
            for b in data.token_batches(ex, cfg.batch_tokens, shuffle=False):
                src, tgt_in, targets = (t.to(run.par.device) for t in data.collate([ex[i] for i in b]))
                losses.append(model(src, tgt_in, targets)[1].item())
    calc = Calculator(run.tok) if cfg.mask_results else None  # a model that never learned results needs its calculator
    problems = run.val[: cfg.eval_problems]
    _, texts, correct, _ = decode_and_score(model, run.tok, [p.question for p in problems], [p.answer for p in problems],
                                            cfg.mode, ways_to_ask(cfg.mode)[0], cfg.max_new_tokens, cfg.eval_batch, calc,
                                            label="validation decoding")
    model.train()
    return sum(losses) / max(1, len(losses)), sum(correct) / max(1, len(correct)), texts


def checkpoint(run, state, name, **more):
    """Save the model with everything a resume needs (TrainState, optimizer, random generators) as out/name."""
    save_checkpoint(run.out / name, run.raw_model, tokenizer={"path": run.tok.path, "sha256": run.tok.sha256},
                    train_config=asdict(run.cfg), **asdict(state), optimizer=run.optimizer.state_dict(), rng=rng_state(), **more)


def validate_and_save(run, state, logf):
    """On the master: validate, log, keep best.pt (best val exact match so far) and last.pt; the other ranks wait."""
    if run.par.master:
        val_loss, val_em, texts = validate(run)
        run.par.log(f"eval step {state.step} | val loss {val_loss:.4f} | val exact match {val_em:.3f} on "
                    f"{min(len(run.val), run.cfg.eval_problems)} problems")
        for p, text in list(zip(run.val, texts))[:2]:
            run.par.log(f"  sample {p.id} (gold {p.answer}): {text[:300]!r}")
        logf.write(json.dumps({"step": state.step, "val_loss": val_loss, "val_em": val_em}) + "\n")
        logf.flush()
        if val_em > state.best_em:
            state.best_em = val_em
            checkpoint(run, state, "best.pt", val_em=val_em, val_loss=val_loss)
        checkpoint(run, state, "last.pt")
    if run.par.ddp:
        dist.barrier()


def train_loop(run, state):
    """
    Train until state.total_steps: an epoch is a shuffled list of batches, grad_accum of them per
    optimizer step; a line every log_interval steps, validation and checkpoints every eval_interval
    and at the end; Ctrl-C (run.interrupt) ends it after the current step, with last.pt saved.
    Returns how it ended: "finished", "stopped" (--stop-after-steps) or "interrupted".
    Example: ended = train_loop(run, TrainState(total_steps=678))
    """
    cfg = run.cfg
    logf = open(run.out / "log.jsonl", "a") if run.par.master else None
    run.model.train()
    t_last, tokens_last = time.time(), state.tokens_seen
    while state.step < state.total_steps:  # a finished run that is resumed just finishes
        batches = epoch_batches(run.examples, cfg, state.epoch, run.par.rank, run.par.world)
        while state.position + cfg.grad_accum <= len(batches):
            elapsed = agreed_clock(state.train_time + time.time() - t_last, cfg, run.par)
            lr = lr_at(state.step, state.total_steps, cfg, elapsed)
            loss = optimizer_step(run, batches[state.position:state.position + cfg.grad_accum], lr, state)
            state.position += cfg.grad_accum
            state.step += 1
            if state.step % cfg.log_interval == 0 or state.step == state.total_steps:
                now = time.time()
                state.train_time += now - t_last
                tokens_per_s = (state.tokens_seen - tokens_last) / max(now - t_last, 1e-9)
                t_last, tokens_last = now, state.tokens_seen
                log_step(run, state, loss, lr, tokens_per_s, logf)
            stop = cfg.stop_after_steps and state.step >= cfg.stop_after_steps
            if cfg.time_budget_min and elapsed > 60 * cfg.time_budget_min:
                run.par.log(f"time budget of {cfg.time_budget_min} min spent at step {state.step}/{state.total_steps}")
                state.total_steps = state.step  # the run ends here, as if planned: final eval, then the test score
            if state.step % cfg.eval_interval == 0 or state.step == state.total_steps or stop:
                validate_and_save(run, state, logf)
                t_last = time.time()  # validation time is not training time
            elif run.interrupt.asked:  # last.pt alone: validating here would make best.pt differ from an uninterrupted run's
                state.train_time += time.time() - t_last
                checkpoint(run, state, "last.pt")
            if run.interrupt.asked:
                return "interrupted"
            if stop or state.step >= state.total_steps:
                return "stopped" if stop else "finished"
        state.epoch, state.position = state.epoch + 1, 0
    return "finished"


def check_ranks_agree(model, par):
    """Data parallelism is only right if every rank ends with the same weights: compare checksums, or raise."""
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.double, device=flat.device)).sum()]).cpu()
    every = [torch.zeros_like(mine) for _ in range(par.world)]
    dist.all_gather_object(every, mine)
    if any(not torch.equal(e, every[0]) for e in every):
        raise RuntimeError(f"ranks disagree on the weights: {[e.tolist() for e in every]}")
    par.log(f"weights identical on {par.world} ranks")


# -----------------------------------------------------------------------------
# The whole run


def main(argv=None):
    """The whole run, phase by phase: set-up, examples, model and optimizer, resume, the loop, finish."""
    cfg, resume = resolve_config(argv)
    par = set_up(cfg)
    out = Path(cfg.out)
    run_lock = lock_run_folder(out, resume, cfg.overwrite) if par.master else None  # held until the process ends

    tok, train, val, traces, files = read_inputs(cfg, par)
    traces, ref, source = choose_traces(cfg, train, val, traces, par.log)
    examples = train_examples(cfg, tok, train, traces, par.log)
    val_examples = by_task(make_examples(val[: cfg.eval_problems], ref, cfg.mode, tok, cfg.seed, FILLER_TOKENS[cfg.trace_format]))
    steps_per_epoch, total_steps, mean_tokens = plan_steps(examples, cfg, par.world, par.log)

    raw_model, optimizer = build_model(cfg, tok, par.device)
    state = resume_state(out, cfg, raw_model, optimizer, tok, files, par) if resume else TrainState(total_steps=total_steps)
    model = wrap_model(raw_model, cfg, par)
    if par.master:
        write_json(out / "config.json", run_record(cfg, par, tok, source, len(train), examples, files, state, raw_model, argv))
    par.log(f"mode {cfg.mode}, preset {cfg.preset}, trained on {source}, {state.total_steps} steps ({steps_per_epoch} per epoch "
            f"x {state.total_steps / max(1, steps_per_epoch):g} epochs), device {par.device}, world {par.world}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if par.device.type == "cuda" else torch.autocast("cpu", enabled=False)
    run = Run(cfg, par, out, tok, examples, val, val_examples, mean_tokens, model, raw_model, optimizer, autocast, Interrupt())

    if not par.ddp:  # under torchrun, Ctrl-C goes to torchrun, which stops every rank: resume from the last checkpoint
        signal.signal(signal.SIGINT, run.interrupt)
    ended = train_loop(run, state)
    end_run(run, state, ended, source, argv)


def run_record(cfg, par, tok, source, n_problems, examples, files, state, model, argv):
    """What config.json keeps: the settings and everything else a run's numbers depend on, and the command that resumes it."""
    return {**asdict(cfg), "trace_source": source, "tokenizer": tok.path, "tokenizer_sha256": tok.sha256,
            "train_problems": n_problems, "train_examples": {task: len(ex) for task, ex in examples.items()}, "data_files": files,
            "world_size": par.world, "device": str(par.device), "total_steps": state.total_steps, "model": asdict(model.config),
            "resume_command": resume_command(argv)}


def end_run(run, state, ended, source, argv):
    """
    After the loop: check that the ranks agree; then, as the loop ended, say how to resume
    (interrupted: exit 130; stopped as asked) or score the best checkpoint on test (finished).
    Example: end_run(run, state, train_loop(run, state), "GSM8K reference solutions", None)
    """
    par = run.par
    if par.ddp:
        check_ranks_agree(run.raw_model, par)
    if ended == "interrupted":
        print(f"interrupted after step {state.step}; {run.out / 'last.pt'} is saved, resume with:\n  {resume_command(argv)}", file=sys.stderr)
        sys.exit(130)
    if ended == "stopped" and state.step < state.total_steps:
        par.log(f"stopped after step {state.step} as asked; continue with:\n  {resume_command(argv)}")
    elif par.master:
        finish_or_say_how(run, state, source, argv)
    if par.ddp:
        dist.barrier()
        dist.destroy_process_group()


# -----------------------------------------------------------------------------
# Ctrl-C, and the command that goes on


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
    script = "train.py" if Path(__file__).parent == Path.cwd() else __file__
    return shlex.join([*launcher, script, *flags, "--resume"])


def finish_or_say_how(run, state, source, argv):
    """finish, where Ctrl-C stops the test decoding at once and says how to score the saved run."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        finish(run, state, source)
    except KeyboardInterrupt:
        print(f"\ninterrupted during the test decoding; training is saved ({run.out / 'best.pt'}, {run.out / 'last.pt'}), "
              f"and this scores it:\n  {resume_command(argv)}", file=sys.stderr)
        sys.exit(130)


def finish(run, state, source):
    """Score the best checkpoint once on test (every way the mode is asked) and write metrics.json."""
    cfg, out, tok, device = run.cfg, run.out, run.tok, run.par.device
    ckpt = read_checkpoint(out / "best.pt", map_location=device)
    model = run.raw_model
    model.load_state_dict(ckpt["model"])
    model.eval()
    test = data.load_gsm8k("test", cfg.data_dir or None)[: cfg.test_limit or None]
    metrics = {"mode": cfg.mode, "preset": cfg.preset, "trace_source": source, "n_test": len(test),
               "params": model.num_params(), "params_no_embeddings": model.num_params(exclude_embeddings=True),
               "train_time_s": round(state.train_time, 1), "tokens_seen": state.tokens_seen, "steps": state.step,
               "best_step": ckpt["step"], "val_em": ckpt.get("val_em"), "device": str(device), "variants": cfg.variants,
               "train_examples": {task: len(ex) for task, ex in run.examples.items()},
               "mask_results": cfg.mask_results, "calculator": cfg.mask_results, "tokenizer_sha256": tok.sha256,
               "data_files": input_files(cfg, data.resolve_data_dir(cfg.data_dir or None))}
    for task in ways_to_ask(cfg.mode):
        _, _, correct, _ = decode_and_score(model, tok, [p.question for p in test], [p.answer for p in test], cfg.mode, task,
                                            cfg.max_new_tokens, cfg.eval_batch, Calculator(tok) if cfg.mask_results else None,
                                            label="test decoding" + (f" ({task})" if task else ""))
        k = sum(correct)
        key = "test_em" if task is None or task == "cot" else f"test_em_{task}"
        metrics[key] = k / len(test)
        metrics[key + "_ci95"] = intervals.wilson_interval(k, len(test))
        print(f"test exact match{'' if task is None else f' ({task})'}: {k}/{len(test)} = {k / len(test):.3f} "
              f"(95% CI {metrics[key + '_ci95'][0]:.3f}-{metrics[key + '_ci95'][1]:.3f})")
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'metrics.json'}")


def seen_story_questions(path):
    """The questions of the seen-stories evaluation set (relative paths are the repository's), or none if it is absent."""
    path = Path(path) if Path(path).is_absolute() or Path(path).exists() else data.ROOT / path
    return {r["question"] for r in data.read_jsonl(path)} if path and path.is_file() else set()


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def fmt_time(s):
    return f"{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}"


if __name__ == "__main__":
    main()
