"""
Train the student on GSM8K, for each supervision mode the study compares.

    python train.py --mode cot                  # question -> reasoning trace + answer
    python train.py --mode answer               # question -> answer (the baseline)
    python train.py --mode mixed                # both tasks, told apart by a prefix
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
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist

import data
from traces import variants as verified_variants
from model import EncoderDecoder, ModelConfig, generate_many, load_checkpoint, save_checkpoint

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
    vocab_size: int = setting(data.DEFAULT_VOCAB, "tokenizer pieces")
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
_n = data.arg_number
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    choices = {"mode": MODES, "preset": sorted(PRESETS), "trace_format": data.TRACE_FORMATS}
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


def shuffled_trace(trace, seed):
    """The same steps in a random order, the answer line kept last: the tokens without the structure."""
    *steps, last = trace.split("\n")
    random.Random(seed).shuffle(steps)
    return "\n".join(steps + [last])


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
            rhs, lhs = data.EQ_RHS.match(line, m.end()), data.arithmetic_before(line[:m.start()])
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
    (task, Example) pairs for a mode. answer: q -> '#### a'. cot: q -> trace. mixed: both,
    each target behind its task prefix. filler: filler_tokens '.' tokens, then '#### a'. shuffled: the trace
    with its steps in random order. mask_results: the loss skips what the calculator would write.
    """
    filler_id = tok.encode(".")[-1]
    out = []

    def reasoning(p, trace, prefix=""):
        ids = tok.encode(trace)
        skip = calculator_positions(tok, trace, ids) if mask_results else []
        head = tok.encode(prefix) if prefix else []
        return data.Example(p.id, tok.encode(p.question), head + ids, [len(head) + i for i in skip])

    for p in problems:
        answer_ids = tok.encode(f"#### {p.answer}")
        for k, trace in enumerate(traces.get(p.id, [])):
            if mode == "cot":
                out.append(("cot", reasoning(p, trace)))
            elif mode == "shuffled":
                out.append(("cot", reasoning(p, shuffled_trace(trace, f"{seed}-{p.id}-{k}"))))
            elif mode == "filler":
                out.append(("cot", data.Example(p.id, tok.encode(p.question), [filler_id] * filler_tokens + answer_ids)))
            elif mode == "mixed":
                out.append(("cot", reasoning(p, trace, data.task_prefix("cot"))))
        if mode == "answer":
            out.append(("answer", data.Example(p.id, tok.encode(p.question), answer_ids)))
        elif mode == "mixed" and p.id in traces:
            out.append(("answer", data.Example(p.id, tok.encode(p.question), tok.encode(data.task_prefix("answer")) + answer_ids)))
    return out


def score(model, tok, problems, mode, task, cfg, calculator=None):
    """Greedy-decode problems and score exact match of the final answer. Returns (correct, outputs)."""
    sources = [tok.encode(p.question) for p in problems]
    prefix = tok.encode(data.task_prefix(task))
    max_new = data.decode_budget(mode, task, cfg.max_new_tokens)
    outs = generate_many(model, sources, max_new, batch_size=cfg.eval_batch, calculator=calculator, prefix=prefix)
    texts = [tok.decode(o) for o in outs]
    correct = [data.extract_answer(t) == p.answer for t, p in zip(texts, problems)]
    return correct, texts


def keep_sound_traces(traces, problems, path, log):
    """
    The traces of problems that pass the teacher's own checks (data.trace_verdict: '#### <the
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
            reason = data.trace_verdict(trace, gold[pid])
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
    What a run reads, by content (data.file_record: name, path, rows, sha256, official): the
    GSM8K files and the traces file. config.json and metrics.json keep it, so a resume or an
    evaluation on other data is caught, and every score says what it was measured on.
    Example: input_files(cfg, Path("data/gsm8k"))["train"]["rows"] == 7473
    """
    files = {"train": data_dir / "train.jsonl", "test": data_dir / "test.jsonl", **({"traces": cfg.traces} if cfg.traces else {})}
    return {role: data.file_record(path) for role, path in files.items()}


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
# The loop


def lr_at(step, total, cfg, train_time=0.0):
    """Linear warmup, then cosine decay to lr * min_lr_ratio, by steps or by the time budget, whichever is further along."""
    warmup = min(cfg.warmup_steps, max(1, total // 10))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if cfg.time_budget_min:
        progress = max(progress, min(1.0, train_time / (60 * cfg.time_budget_min)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model, cfg, device):
    """AdamW; weight decay on weight matrices only (not norms, biases or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), fused=device.type == "cuda")


def epoch_batches(examples, cfg, epoch, rank, world):
    """This rank's (task, indices) batches for an epoch: the same list on every machine for a seed."""
    batches = []
    for task, ex in examples.items():
        batches += [(task, b) for b in data.token_batches(ex, cfg.batch_tokens, seed=cfg.seed + epoch)]
    random.Random(cfg.seed + epoch).shuffle(batches)
    per_rank = len(batches) // world
    return batches[rank * per_rank:(rank + 1) * per_rank]


def rng_state():
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def main(argv=None):
    cfg, resume = resolve_config(argv)
    ddp = "RANK" in os.environ
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = data.pick_device(cfg.device)
    if ddp:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        # the other ranks wait at a barrier while rank 0 evaluates: give them time
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    master = rank == 0
    log = print if master else (lambda *a, **k: None)
    out = Path(cfg.out)
    run_lock = lock_run_folder(out, resume, cfg.overwrite) if master else None  # held until the process ends
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    # data: fetch GSM8K and train the tokenizer on first use
    data_dir = data.resolve_data_dir(cfg.data_dir or None)
    tok_dir = cfg.tokenizer_dir or data.TOKENIZER_DIR
    try:
        if master and not ((data_dir / "train.jsonl").exists() and (data_dir / "test.jsonl").exists()):
            data.download(data_dir)
        if ddp:
            dist.barrier()
        tok = data.get_tokenizer(cfg.vocab_size, data_dir, tok_dir) if master else None
        if ddp:
            dist.barrier()
            tok = tok or data.get_tokenizer(cfg.vocab_size, data_dir, tok_dir)
        train = data.load_gsm8k("train", data_dir)[: cfg.limit or None]
        val = data.load_gsm8k("val", data_dir)
        traces = data.read_traces(cfg.traces) if cfg.traces else None
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    files = input_files(cfg, data_dir)
    if cfg.traces:
        traces = keep_sound_traces(traces, train, cfg.traces, log)
        source = f"teacher traces from {cfg.traces}"
        missing = sum(p.id not in traces for p in train)
        if missing:
            log(f"warning: {cfg.traces} has no trace for {missing} of {len(train)} train problems; training on the other {len(train) - missing}")
    else:
        traces = {p.id: [data.reference_to_trace(p.solution)] for p in train}
        source = "GSM8K reference solutions"
    ref = {p.id: [data.reference_to_trace(p.solution)] for p in val}
    if cfg.trace_format == "equations":
        traces, ref = ({k: [data.equations_only(t) for t in ts] for k, ts in d.items()} for d in (traces, ref))
    n_problems = len(train)
    if cfg.variants > 1:
        t0 = time.time()
        train, traces = with_variants(train, traces, cfg.variants, cfg.seed, seen_story_questions(cfg.seen_stories))
        log(f"variants: {len(train)} problems from {n_problems} (up to {cfg.variants} each, original included) in {time.time() - t0:.0f} s")
    examples = {}
    for task, ex in make_examples(train, traces, cfg.mode, tok, cfg.seed, FILLER_TOKENS[cfg.trace_format], cfg.mask_results):
        examples.setdefault(task, []).append(ex)
    for task in examples:
        examples[task], dropped = data.drop_long(examples[task], cfg.max_src, cfg.max_tgt)
        log(f"{task} examples: {len(examples[task])} (left out as longer than {cfg.max_src}/{cfg.max_tgt} tokens: {dropped})")
    val_examples = {}
    for task, ex in make_examples(val[: cfg.eval_problems], ref, cfg.mode, tok, cfg.seed, FILLER_TOKENS[cfg.trace_format]):
        val_examples.setdefault(task, []).append(ex)
    all_batches = len(epoch_batches(examples, cfg, 0, 0, 1))
    steps_per_epoch = all_batches // world // cfg.grad_accum
    if all_batches % (world * cfg.grad_accum):
        log(f"{all_batches % (world * cfg.grad_accum)} of {all_batches} batches per epoch are skipped so that "
            f"{world} rank(s) x {cfg.grad_accum} micro-batches divide them evenly")
    total_steps = cfg.steps or max(1, int(cfg.epochs * steps_per_epoch))
    # Each micro-batch's loss is a mean over its own target tokens; scaling it by its share of
    # an average batch makes every target token weigh the same, whichever batch it is in (the
    # short '#### 72' batches of mode mixed would otherwise count as much as long trace batches).
    mean_batch_tokens = sum(len(e.tgt) + 1 for ex in examples.values() for e in ex) / all_batches

    mcfg = ModelConfig(vocab_size=tok.vocab_size, d_model=cfg.d_model, n_heads=cfg.n_heads, n_enc_layers=cfg.n_enc_layers,
                       n_dec_layers=cfg.n_dec_layers, d_ff=cfg.d_ff, dropout=cfg.dropout, max_src_len=cfg.max_src,
                       max_tgt_len=cfg.max_tgt + 1, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    model = EncoderDecoder(mcfg).to(device)
    optimizer = make_optimizer(model, cfg, device)
    step, epoch, position, best_em, tokens_seen, train_time = 0, 0, 0, -1.0, 0, 0.0
    if resume:
        if not (out / "last.pt").exists():
            sys.exit(f"error: --resume: {out / 'last.pt'} not found; start without --resume")
        try:
            loaded, ckpt = load_checkpoint(out / "last.pt", map_location=device)
        except ValueError as e:
            sys.exit(f"error: --resume: {e}")
        if ckpt.get("upgraded_from"):
            sys.exit(f"error: --resume: {out / 'last.pt'} was written by an older model.py (format "
                     f"{ckpt['upgraded_from']}); it can be evaluated, not resumed: start a new --out")
        for key, was in ckpt["train_config"].items():
            now = getattr(cfg, key, None)
            if key not in MAY_DIFFER_ON_RESUME and now != was:
                sys.exit(f"error: --resume: {out / 'last.pt'} was trained with --{key.replace('_', '-')} {was!r}, "
                         f"not {now!r}; resume with the same settings or start a new --out")
        check_same_inputs(out, ckpt, tok, files)
        model.load_state_dict(loaded.state_dict())
        optimizer.load_state_dict(ckpt["optimizer"])
        step, epoch, position, total_steps = ckpt["step"], ckpt["epoch"], ckpt["position"], ckpt["total_steps"]
        best_em, tokens_seen, train_time = ckpt["best_em"], ckpt["tokens_seen"], ckpt["train_time"]
        random.setstate(ckpt["rng"]["python"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if "cuda" in ckpt["rng"] and device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        log(f"resumed {out / 'last.pt'} at step {step}")
        if master and (out / "log.jsonl").exists():  # rows logged after that checkpoint happen again
            rows = [r for r in (out / "log.jsonl").read_text().splitlines() if r.strip() and json.loads(r)["step"] <= step]
            data.write_atomic(out / "log.jsonl", "".join(r + "\n" for r in rows))
    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if master:
        out.mkdir(parents=True, exist_ok=True)
        meta = {**asdict(cfg), "trace_source": source, "tokenizer": tok.path, "tokenizer_sha256": tok.sha256,
                "train_problems": n_problems, "train_examples": {task: len(ex) for task, ex in examples.items()},
                "data_files": files, "world_size": world, "device": str(device), "total_steps": total_steps, "model": asdict(mcfg)}
        write_json(out / "config.json", meta)
    log(f"mode {cfg.mode}, preset {cfg.preset}, trained on {source}, {total_steps} steps "
        f"({steps_per_epoch} per epoch x {total_steps / max(1, steps_per_epoch):g} epochs), device {device}, world {world}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    def checkpoint(name, **more):
        save_checkpoint(out / name, raw_model, tokenizer={"path": tok.path, "sha256": tok.sha256},
                        train_config=asdict(cfg), step=step, epoch=epoch, position=position, best_em=best_em, total_steps=total_steps,
                        tokens_seen=tokens_seen, train_time=train_time, optimizer=optimizer.state_dict(), rng=rng_state(), **more)

    def evaluate():
        raw_model.eval()
        losses = []
        with torch.no_grad(), autocast:
            for task, ex in val_examples.items():
                for b in data.token_batches(ex, cfg.batch_tokens, shuffle=False):
                    src, tgt_in, targets = (t.to(device) for t in data.collate([ex[i] for i in b]))
                    losses.append(raw_model(src, tgt_in, targets)[1].item())
        calc = data.Calculator(tok) if cfg.mask_results else None  # a model that never learned results needs its calculator
        correct, texts = score(raw_model, tok, val[: cfg.eval_problems], cfg.mode, data.ways_to_ask(cfg.mode)[0], cfg, calc)
        raw_model.train()
        return sum(losses) / max(1, len(losses)), sum(correct) / max(1, len(correct)), texts

    logf = open(out / "log.jsonl", "a") if master else None
    model.train()
    t_last, tokens_last = time.time(), tokens_seen
    done, stop = step >= total_steps, False  # a finished run that is resumed just finishes
    while not done:
        batches = epoch_batches(examples, cfg, epoch, rank, world)
        while position + cfg.grad_accum <= len(batches):
            elapsed = train_time + time.time() - t_last
            if ddp and cfg.time_budget_min:  # every rank must agree on the clock, or lr and the last step differ
                clock = torch.tensor([elapsed], dtype=torch.double, device=device)
                dist.broadcast(clock, 0)
                elapsed = clock.item()
            lr = lr_at(step, total_steps, cfg, elapsed)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                task, idx = batches[position + micro]
                src, tgt_in, targets = (t.to(device) for t in data.collate([examples[task][i] for i in idx]))
                weight = cfg.answer_weight if (cfg.mode == "mixed" and task == "answer") else 1.0
                weight *= int((targets != tok.pad_id).sum()) / mean_batch_tokens
                sync = micro == cfg.grad_accum - 1  # all-reduce gradients once, on the last micro-step
                with (model.no_sync() if ddp and not sync else torch.enable_grad()), autocast:
                    _, loss = model(src, tgt_in, targets)
                    (loss * weight / cfg.grad_accum).backward()
                loss_sum += loss.item() / cfg.grad_accum
                tokens_seen += int((targets != tok.pad_id).sum()) * world  # ranks see batches of about the same size
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            position += cfg.grad_accum
            step += 1
            if step % cfg.log_interval == 0 or step == total_steps:
                now = time.time()
                train_time += now - t_last
                tps = (tokens_seen - tokens_last) / max(now - t_last, 1e-9)
                t_last, tokens_last = now, tokens_seen
                eta = (total_steps - step) * train_time / step
                if cfg.time_budget_min:
                    eta = min(eta, max(0.0, 60 * cfg.time_budget_min - train_time))
                log(f"step {step}/{total_steps} | loss {loss_sum:.4f} | lr {lr:.2e} | {tps:,.0f} target tok/s | "
                    f"elapsed {fmt_time(train_time)} | eta {fmt_time(eta)}")
                if master:
                    logf.write(json.dumps({"step": step, "epoch": epoch, "loss": loss_sum, "lr": lr, "tokens": tokens_seen, "time": train_time}) + "\n")
                    logf.flush()
            stop = cfg.stop_after_steps and step >= cfg.stop_after_steps
            out_of_time = cfg.time_budget_min and elapsed > 60 * cfg.time_budget_min
            if out_of_time:
                log(f"time budget of {cfg.time_budget_min} min spent at step {step}/{total_steps}")
                total_steps = step  # the run ends here, as if planned: final eval, then the test score
            if step % cfg.eval_interval == 0 or step == total_steps or stop:
                if master:
                    val_loss, val_em, texts = evaluate()
                    log(f"eval step {step} | val loss {val_loss:.4f} | val exact match {val_em:.3f} on {min(len(val), cfg.eval_problems)} problems")
                    for p, text in list(zip(val, texts))[:2]:
                        log(f"  sample {p.id} (gold {p.answer}): {text[:300]!r}")
                    logf.write(json.dumps({"step": step, "val_loss": val_loss, "val_em": val_em}) + "\n")
                    logf.flush()
                    if val_em > best_em:
                        best_em = val_em
                        checkpoint("best.pt", val_em=val_em, val_loss=val_loss)
                    checkpoint("last.pt")
                    t_last = time.time()  # evaluation time is not training time
                if ddp:
                    dist.barrier()
            if step >= total_steps or stop:
                done = True
                break
        if not done:
            epoch, position = epoch + 1, 0
    if ddp:  # data parallelism is only right if every rank ends with the same weights
        flat = torch.cat([p.detach().double().flatten() for p in raw_model.parameters()])
        mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.double, device=flat.device)).sum()]).cpu()
        every = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather_object(every, mine)
        if any(not torch.equal(e, every[0]) for e in every):
            raise RuntimeError(f"ranks disagree on the weights: {[e.tolist() for e in every]}")
        log(f"weights identical on {world} ranks")
    if stop and step < total_steps:
        log(f"stopped after step {step} as asked; continue with --resume")
    elif master:
        finish(cfg, out, tok, device, source, tokens_seen, train_time, step, {task: len(ex) for task, ex in examples.items()})
    if ddp:
        dist.barrier()
        dist.destroy_process_group()


def finish(cfg, out, tok, device, source, tokens_seen, train_time, steps, n_examples):
    """Evaluate the best checkpoint once on test and write metrics.json."""
    model, ckpt = load_checkpoint(out / "best.pt", map_location=device)
    model.eval()
    test = data.load_gsm8k("test", cfg.data_dir or None)[: cfg.test_limit or None]
    metrics = {"mode": cfg.mode, "preset": cfg.preset, "trace_source": source, "n_test": len(test),
               "params": model.num_params(), "params_no_embeddings": model.num_params(exclude_embeddings=True),
               "train_time_s": round(train_time, 1), "tokens_seen": tokens_seen, "steps": steps, "best_step": ckpt["step"],
               "val_em": ckpt.get("val_em"), "device": str(device), "variants": cfg.variants, "train_examples": n_examples,
               "mask_results": cfg.mask_results, "calculator": cfg.mask_results, "tokenizer_sha256": tok.sha256,
               "data_files": input_files(cfg, data.resolve_data_dir(cfg.data_dir or None))}
    for task in data.ways_to_ask(cfg.mode):
        correct, _ = score(model, tok, test, cfg.mode, task, cfg, data.Calculator(tok) if cfg.mask_results else None)
        k = sum(correct)
        key = "test_em" if task is None or task == "cot" else f"test_em_{task}"
        metrics[key] = k / len(test)
        metrics[key + "_ci95"] = data.wilson_interval(k, len(test))
        print(f"test exact match{'' if task is None else f' ({task})'}: {k}/{len(test)} = {k / len(test):.3f} "
              f"(95% CI {metrics[key + '_ci95'][0]:.3f}-{metrics[key + '_ci95'][1]:.3f})")
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'metrics.json'}")


def seen_story_questions(path):
    """The questions of the seen-stories evaluation set (relative paths are the repository's), or none if it is absent."""
    path = Path(path) if Path(path).is_absolute() or Path(path).exists() else data.ROOT / path
    return {r["question"] for r in data.read_jsonl(path)} if path and path.is_file() else set()


def write_json(path, obj):
    data.write_atomic(path, json.dumps(obj, indent=2) + "\n")


def fmt_time(s):
    return f"{int(s // 3600)}:{int(s % 3600 // 60):02d}:{int(s % 60):02d}"


if __name__ == "__main__":
    main()
