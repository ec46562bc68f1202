"""
Train the student on GSM8K, in each supervision mode the study compares.

    python train.py --mode cot                  # the recipe: question -> reasoning trace + answer
    python train.py --mode answer               # the same recipe, question -> answer (the baseline)
    python train.py --mode cot --preset smoke   # end to end in under a minute on a CPU
    torchrun --nproc_per_node=2 train.py --mode cot   # data-parallel (gloo on CPU, nccl on GPU)

The defaults are the CPU recipe (RESULTS.md): 16 re-instantiations of each train problem
(--variants), the calculator-aware loss (--mask-results), d128 3+3 ff 512, lr 1e-3, 16,000 steps of
2,048-token batches; modes answer, mixed, filler and shuffled take the same recipe, so every
comparison is paired. Without --traces the student learns from GSM8K's reference solutions (the
stand-in teacher); with --traces, from an LLM teacher's traces (teacher.py). The run folder (--out,
default runs/<mode>) ends up holding config.json, log.jsonl, best.pt, last.pt, metrics.json and
last.pt's scores on seen stories with new numbers, val and test (eval-*/, evaluate.py's folders).
"""
import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, fields
from datetime import timedelta
from pathlib import Path

import torch

import config_cli
import data
from files import write_json
from tokenizer import DEFAULT_VOCAB, Tokenizer
import distributed
import run_folder
from config_cli import PRESETS, setting
from evaluate import decode_and_score, final_scores
from examples import FILLER_TOKENS, by_task, make_examples
from extra_problems import add_extra_problems
from checkpoint import read_checkpoint, save_checkpoint
from model import EncoderDecoder, ModelConfig
from sound_traces import keep_sound_traces
from train_inputs import read_inputs
from ablations import ways_to_ask
from traces import Calculator, TRACE_FORMATS, equations_only, reference_to_trace
from variant_problems import SEEN_STORIES, add_variants

MODES = ("answer", "cot", "mixed", "filler", "shuffled")


@dataclass
class TrainConfig:
    mode: str = setting("cot", "answer | cot | mixed | filler | shuffled (see make_examples)")
    preset: str = setting("default", "named sizes: smoke, default (CPU), gpu")
    out: str = setting("", "run folder; empty -> runs/<mode>")
    data_dir: str = setting("", "GSM8K folder; empty -> $GSM8K_DIR or data/gsm8k")
    traces: str = setting("", "teacher traces JSONL; empty -> GSM8K reference solutions")
    trace_format: str = setting("equations", "equations: the equation lines only | steps: the solution's sentences and equations")
    vocab_size: int = setting(DEFAULT_VOCAB, "tokenizer pieces")
    tokenizer_dir: str = setting("", "where tokenizers are cached; empty -> data/tokenizer")
    limit: int = setting(0, "train on the first N problems only (0 = all)")
    extra_problems: str = setting("", "JSONL of new problems (teacher.py --write-problems): all added to train, whatever --limit")
    stories: int = setting(0, "train on N stories chosen by a hash of the question, each smaller set inside every larger one (0 = all)")
    variants: int = setting(16, "verified re-instantiations per train problem, the original included (1 = GSM8K as it is; reinstantiate.py)")
    seen_stories: str = setting(SEEN_STORIES, "evaluation set of train stories with new numbers: its questions are never trained on")
    mask_results: bool = setting(True, "calculator-aware loss: the result after each '=' that the calculator writes at decoding is not trained")
    # model
    d_model: int = setting(128, "width")
    n_heads: int = setting(4, "attention heads")
    n_enc_layers: int = setting(3, "encoder depth")
    n_dec_layers: int = setting(3, "decoder depth")
    d_ff: int = setting(512, "feed-forward width")
    dropout: float = setting(0.1, "dropout everywhere")
    max_src: int = setting(384, "longer questions are left out (counted), never truncated")
    max_tgt: int = setting(512, "longer targets are left out (counted), never truncated")
    # optimization
    epochs: float = setting(6.0, "passes over the training examples")
    steps: int = setting(16000, "train exactly this many optimizer steps, whatever the epochs (0 = epochs decide); for equal-step comparisons")
    time_budget_min: float = setting(0.0, "also stop after this many minutes of training (0 = no limit)")
    batch_tokens: int = setting(2048, "padded tokens (src + tgt) per micro-batch and rank")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    lr: float = setting(1e-3, "peak learning rate")
    min_lr_ratio: float = setting(0.1, "cosine decays to lr * this")
    warmup_steps: int = setting(200, "linear warmup (capped at 10% of the run)")
    weight_decay: float = setting(0.1, "on matrices only, not on norms, biases, embeddings")
    grad_clip: float = setting(1.0, "max global gradient norm")
    answer_weight: float = setting(1.0, "mixed mode: weight of the answer task's loss")
    # evaluation and bookkeeping
    log_interval: int = setting(20, "steps between progress lines")
    eval_interval: int = setting(2000, "steps between validation + checkpoint")
    eval_problems: int = setting(100, "val problems decoded for validation exact match")
    test_limit: int = setting(0, "decode only the first N test problems at the end (0 = all)")
    max_new_tokens: int = setting(512, "decoding budget for reasoning modes (as long as the longest target)")
    eval_batch: int = setting(64, "sequences decoded together")
    seed: int = setting(1337, "everything random derives from it")
    device: str = setting("", "cuda | mps | cpu; empty -> best available")
    stop_after_steps: int = setting(0, "stop (as if interrupted) after this many steps; 0 = never")
    overwrite: bool = setting(False, "start over in an --out that holds a run: its files are deleted first")


def resolve_config(argv=None):
    """Defaults, then the preset, then the flags given: (TrainConfig, resume); each field is a flag (config_cli.py).
    Example: cfg, resume = resolve_config(["--mode", "answer", "--preset", "smoke"])
    """
    choices = {"mode": MODES, "preset": sorted(PRESETS), "trace_format": TRACE_FORMATS}
    return config_cli.resolve_config(TrainConfig, PRESETS, choices, __doc__, argv)


# -----------------------------------------------------------------------------
# The examples: the traces to learn from, in tokens


def choose_traces(cfg, train, val, traces, log):
    """
    The traces to train on (the teacher's that pass its checks, else GSM8K's reference solutions)
    and the val problems' reference traces, both in cfg.trace_format: (traces, ref, source).
    Example: traces, ref, source = choose_traces(cfg, train, val, None, print)
    """
    if cfg.traces:  # the distillation: an LLM teacher's traces (teacher.py), those that pass its checks
        traces, source = keep_sound_traces(traces, train, cfg.traces, log), f"teacher traces from {cfg.traces}"
    else:  # the stand-in teacher
        traces = {p.id: [reference_to_trace(p.solution)] for p in train}
        source = "GSM8K reference solutions"
    ref = {p.id: [reference_to_trace(p.solution)] for p in val}
    if cfg.trace_format == "equations":
        traces, ref = ({k: [equations_only(t) for t in ts] for k, ts in d.items()} for d in (traces, ref))
    return traces, ref, source


def train_examples(cfg, tok, train, traces, log):
    """
    {task: Examples} to train on: the train problems (and --variants) as the mode teaches them,
    those longer than max_src/max_tgt left out and counted.
    Example: examples = train_examples(cfg, tok, train, traces, print)  # {"cot": [...]}
    """
    train, traces = add_variants(cfg, train, traces, log)  # new numbers for the same stories
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


# -----------------------------------------------------------------------------
# The loop


@dataclass
class TrainSetup:
    """What stays fixed while a run trains, handed to the loop's parts as one argument."""
    cfg: TrainConfig
    process: distributed.Parallel  # this process's rank, the world size, the device
    out: Path                # the run folder
    tok: Tokenizer
    examples: dict           # task -> training Examples
    val: list                # val problems; the first cfg.eval_problems are decoded for exact match
    val_examples: dict       # task -> val Examples, for the validation loss
    mean_tokens: float       # target tokens in an average batch (loss_weight)
    model: torch.nn.Module   # what trains: raw_model, wrapped for torchrun
    raw_model: EncoderDecoder  # the model itself: validated and saved
    optimizer: torch.optim.Optimizer
    autocast: object         # bf16 autocast on a GPU, a no-op on a CPU
    interrupt: run_folder.Interrupt  # set by Ctrl-C: the loop saves last.pt after its current step and returns
    train_stories: int       # train problems learned from, before --variants (metrics.json)


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


def optimizer_step(setup, micro_batches, lr, state):
    """One optimizer step over grad_accum micro-batches (gradients all-reduced once, on the last);
    counts their target tokens into state and returns the mean loss."""
    cfg, model, pad_id = setup.cfg, setup.model, setup.tok.pad_id
    for group in setup.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = 0.0
    for micro, (task, idx) in enumerate(micro_batches):
        src, tgt_in, targets = (t.to(setup.process.device) for t in data.collate([setup.examples[task][i] for i in idx]))
        weight = loss_weight(task, targets, cfg, pad_id, setup.mean_tokens)
        sync = micro == cfg.grad_accum - 1  # all-reduce gradients once, on the last micro-step
        with setup.process.no_sync(model, sync), setup.autocast:
            _, loss = model(src, tgt_in, targets)
            (loss * weight / cfg.grad_accum).backward()
        loss_sum += loss.item() / cfg.grad_accum
        state.tokens_seen += int((targets != pad_id).sum()) * setup.process.world  # ranks see batches of about the same size
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    setup.optimizer.step()
    setup.optimizer.zero_grad(set_to_none=True)
    return loss_sum


def log_step(setup, state, loss, lr, tokens_per_s, logf):
    """The progress line, and its row in log.jsonl (logf: the master's open file, else None)."""
    cfg = setup.cfg
    eta = (state.total_steps - state.step) * state.train_time / state.step
    if cfg.time_budget_min:
        eta = min(eta, max(0.0, 60 * cfg.time_budget_min - state.train_time))
    setup.process.log(f"step {state.step}/{state.total_steps} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} target tok/s | "
                f"elapsed {timedelta(seconds=int(state.train_time))} | eta {timedelta(seconds=int(eta))}")
    if logf:
        logf.write(json.dumps({"step": state.step, "epoch": state.epoch, "loss": loss, "lr": lr, "tokens": state.tokens_seen,
                               "time": state.train_time}) + "\n")
        logf.flush()


def validate(setup):
    """
    The validation loss (teacher-forced, every task) and the exact match of greedy decoding on
    the first eval_problems val problems, asked the mode's first way: (loss, exact match, outputs).
    Example: val_loss, val_em, texts = validate(setup)
    """
    cfg, model = setup.cfg, setup.raw_model
    model.eval()
    losses = []
    with torch.no_grad(), setup.autocast:
        for task, ex in setup.val_examples.items():
            for b in data.token_batches(ex, cfg.batch_tokens, shuffle=False):
                src, tgt_in, targets = (t.to(setup.process.device) for t in data.collate([ex[i] for i in b]))
                losses.append(model(src, tgt_in, targets)[1].item())
    calc = Calculator(setup.tok) if cfg.mask_results else None  # a model that never learned results needs its calculator
    problems = setup.val[: cfg.eval_problems]
    _, texts, correct, _ = decode_and_score(model, setup.tok, [p.question for p in problems], [p.answer for p in problems],
                                            cfg.mode, ways_to_ask(cfg.mode)[0], cfg.max_new_tokens, cfg.eval_batch, calc,
                                            label="validation decoding")
    model.train()
    return sum(losses) / max(1, len(losses)), sum(correct) / max(1, len(correct)), texts


def checkpoint(setup, state, name, **more):
    """Save the model with everything a resume needs (TrainState, optimizer, random generators) as out/name."""
    save_checkpoint(setup.out / name, setup.raw_model, tokenizer={"path": setup.tok.path, "sha256": setup.tok.sha256},
                    train_config=asdict(setup.cfg), **asdict(state), optimizer=setup.optimizer.state_dict(), rng=run_folder.rng_state(), **more)


def validate_and_save(setup, state, logf):
    """On the master: validate, log, keep best.pt (best val exact match so far) and last.pt; the other ranks wait."""
    if setup.process.master:
        val_loss, val_em, texts = validate(setup)
        setup.process.log(f"eval step {state.step} | val loss {val_loss:.4f} | val exact match {val_em:.3f} on "
                    f"{min(len(setup.val), setup.cfg.eval_problems)} problems")
        for p, text in list(zip(setup.val, texts))[:2]:
            setup.process.log(f"  sample {p.id} (gold {p.answer}): {text[:300]!r}")
        logf.write(json.dumps({"step": state.step, "val_loss": val_loss, "val_em": val_em}) + "\n")
        logf.flush()
        if val_em > state.best_em:
            state.best_em = val_em
            checkpoint(setup, state, "best.pt", val_em=val_em, val_loss=val_loss)
        checkpoint(setup, state, "last.pt")
    setup.process.barrier()


def train_loop(setup, state):
    """
    Train until state.total_steps: an epoch is a shuffled list of batches, grad_accum per optimizer
    step; a line every log_interval steps, validation and checkpoints every eval_interval and at the
    end. Returns "finished", "stopped" (--stop-after-steps) or "interrupted" (Ctrl-C, last.pt saved).
    Example: ended = train_loop(setup, TrainState(total_steps=678))
    """
    cfg = setup.cfg
    logf = open(setup.out / "log.jsonl", "a") if setup.process.master else None
    setup.model.train()
    t_last, tokens_last, printed = time.time(), state.tokens_seen, False
    while state.step < state.total_steps:  # a finished run that is resumed just finishes
        batches = epoch_batches(setup.examples, cfg, state.epoch, setup.process.rank, setup.process.world)
        while state.position + cfg.grad_accum <= len(batches):
            elapsed = distributed.agreed_clock(state.train_time + time.time() - t_last, cfg.time_budget_min, setup.process)
            lr = lr_at(state.step, state.total_steps, cfg, elapsed)
            loss = optimizer_step(setup, batches[state.position:state.position + cfg.grad_accum], lr, state)
            state.position += cfg.grad_accum
            state.step += 1
            on_schedule = state.step % cfg.log_interval == 0 or state.step == state.total_steps
            if on_schedule or time.time() - t_last >= (30 if printed else 15):  # by time too: steps can be long
                now = time.time()
                state.train_time += now - t_last
                tokens_per_s = (state.tokens_seen - tokens_last) / max(now - t_last, 1e-9)
                t_last, tokens_last = now, state.tokens_seen
                log_step(setup, state, loss, lr, tokens_per_s, logf if on_schedule else None)  # log.jsonl rows stay on schedule
                printed = True
            stop = cfg.stop_after_steps and state.step >= cfg.stop_after_steps
            if cfg.time_budget_min and elapsed > 60 * cfg.time_budget_min:
                setup.process.log(f"time budget of {cfg.time_budget_min} min spent at step {state.step}/{state.total_steps}")
                state.total_steps = state.step  # the run ends here, as if planned: final eval, then the test score
            if state.step % cfg.eval_interval == 0 or state.step == state.total_steps or stop:
                validate_and_save(setup, state, logf)
                t_last = time.time()  # validation time is not training time
            elif setup.interrupt.asked:  # last.pt alone: validating here would make best.pt differ from an uninterrupted run's
                state.train_time += time.time() - t_last
                checkpoint(setup, state, "last.pt")
            if setup.interrupt.asked:
                return "interrupted"
            if stop or state.step >= state.total_steps:
                return "stopped" if stop else "finished"
        state.epoch, state.position = state.epoch + 1, 0
    return "finished"


# -----------------------------------------------------------------------------
# The whole run


def main(argv=None):
    """The whole run, phase by phase: set-up, examples, model and optimizer, resume, the loop, finish."""
    cfg, resume = resolve_config(argv)
    process = distributed.start(cfg.device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    lock = run_folder.lock_run_folder(out, resume, cfg.overwrite) if process.master else None  # held until the process ends

    tok, all_train, val, traces, files = read_inputs(cfg, process)  # GSM8K and the tokenizer made on first use
    train = data.nested_stories(all_train[: cfg.limit or None], cfg.stories)  # the stories learned from: --limit, --stories
    traces, ref, source = choose_traces(cfg, train, val, traces, process.log)
    train, traces = add_extra_problems(cfg, train, traces, process.log)  # new stories a teacher wrote (problems.py)
    examples = train_examples(cfg, tok, train, traces, process.log)
    val_examples = by_task(make_examples(val[: cfg.eval_problems], ref, cfg.mode, tok, cfg.seed, FILLER_TOKENS[cfg.trace_format]))
    steps_per_epoch, total_steps, mean_tokens = plan_steps(examples, cfg, process.world, process.log)

    raw_model, optimizer = build_model(cfg, tok, process.device)
    state = TrainState(total_steps=total_steps)
    if resume:  # from last.pt: weights, optimizer, random generators and the TrainState saved with them
        ckpt = run_folder.resume(out, cfg, raw_model, optimizer, tok, files, process)
        state = TrainState(**{f.name: ckpt[f.name] for f in fields(TrainState)})
    model = process.wrap(raw_model)  # what trains; raw_model is saved
    if process.master:
        write_json(out / "config.json", run_folder.config_record(cfg, process, tok, source, len(train), examples, files, state, raw_model, argv))
    process.log(f"mode {cfg.mode}, preset {cfg.preset}, trained on {source}, {state.total_steps} steps ({steps_per_epoch} per epoch "
                f"x {state.total_steps / max(1, steps_per_epoch):g} epochs), device {process.device}, world {process.world}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if process.device.type == "cuda" else torch.autocast("cpu", enabled=False)
    setup = TrainSetup(cfg, process, out, tok, examples, val, val_examples, mean_tokens, model, raw_model, optimizer, autocast,
                       run_folder.Interrupt(), len(train))

    if not process.ddp:  # under torchrun, Ctrl-C goes to torchrun, which stops every rank: resume from the last checkpoint
        signal.signal(signal.SIGINT, setup.interrupt)
    ended = train_loop(setup, state)
    if process.ddp:
        distributed.check_ranks_agree(raw_model, process)
    if run_folder.finished(ended, state.step, state.total_steps, out, argv, process.log) and process.master:
        run_folder.score_or_say_how(lambda: finish(setup, state, source), out, argv)  # Ctrl-C here: how to score it later
    distributed.stop(process)


def finish(setup, state, source):
    """
    Score last.pt, the model as training left it, on seen stories with new numbers, val and test (each
    in full, or its first test_limit problems), with the calculator where the loss is calculator-aware,
    into the run's eval-* folders; then write metrics.json with the three scores.
    """
    cfg, out = setup.cfg, setup.out
    best = read_checkpoint(out / "best.pt", map_location="cpu")  # metrics.json keeps its step and val exact match
    seen = Path(cfg.seen_stories) if Path(cfg.seen_stories).exists() else data.ROOT / cfg.seen_stories
    sets = {"seen": ("test", str(seen)), "val": ("val", None), "test": ("test", None)}
    if not seen.is_file():
        print(f"warning: seen stories {cfg.seen_stories} not found: not scored")
        del sets["seen"]
    scores = final_scores(out / "last.pt", sets, cfg.mask_results, cfg.test_limit, str(setup.process.device), cfg.data_dir or None)
    metrics = run_folder.metrics_record(cfg, setup.raw_model, setup.tok, state, best, source, scores["test"]["n"], setup.examples,
                                        setup.train_stories)
    metrics.update({"scored_checkpoint": "last.pt", "scores": scores, "test_em": scores["test"]["exact_match"],
                    "test_em_ci95": scores["test"]["ci95"]})
    metrics.update({f"test_em_{task}": em for task, em in scores["test"]["by_task"].items() if task != "cot"})  # mixed: its answer task
    write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'metrics.json'}")


if __name__ == "__main__":
    main()
