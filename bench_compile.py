"""
What `train.py --compile` buys per training step on this machine, against the same model run
eagerly in the same process. Serves train.py (its --compile flag) and extends bench.py, whose
helpers it uses.

    python bench_compile.py                  # the CPU recipe's model: a few minutes on 2 cores
    python bench_compile.py --quick          # a tiny model: checks that every figure is produced
    python bench_compile.py --json compile.json

train.py's batches hold about --batch-tokens padded tokens each, so their batch size and lengths
change from one step to the next, and torch.compile's graph becomes dynamic. The benchmark cycles
through a few such shapes. The eager model and its compiled copy start from the same weights; the
compiled copy first compiles (warm-up, timed on its own), then both train on the same batches in
alternating rounds, and the figure is the median of the per-round ratios, so that a busy machine
slows both alike.

Example:
    figures = bench_compile(QUICK_DIMS, QUICK_VOCAB, QUICK_SHAPES, reps=2, device=torch.device("cpu"))
    figures["compile.speedup_ratio"]   # eager time / compiled time: above 1, compiling pays
"""
import argparse
import copy
import json
import os
import statistics
import time

import torch

from bench import log, machine, random_ids, setup_device, student, timed, train_step
from cli_checks import arg_number
from files import write_atomic

# The CPU recipe of RESULTS.md: --d-model 128 --n-heads 4 --d-ff 512, 3+3 layers, --batch-tokens 2048
RECIPE_DIMS, RECIPE_VOCAB = (128, 4, 3, 3, 512), 4000
# (batch, src, tgt), about 2,048 padded tokens each, as train.py's batches of GSM8K come
RECIPE_SHAPES = ((16, 56, 72), (10, 88, 112), (6, 136, 200))
QUICK_DIMS, QUICK_VOCAB = (32, 4, 2, 2, 64), 500
QUICK_SHAPES = ((4, 12, 16), (3, 20, 24))


def shape_batches(vocab, shapes, device):
    """One (src, tgt_in, targets) batch of random plain token ids per (batch, src, tgt) shape."""
    batches = []
    for b, s, t in shapes:
        src, tgt = random_ids(vocab, b, s, device=device), random_ids(vocab, b, t + 1, device=device)
        batches.append((src, tgt[:, :-1].contiguous(), tgt[:, 1:].contiguous()))
    return batches


def steps_over(model, batches):
    """A function doing one training step on each batch in turn, with one AdamW for all, as train.py has."""
    feed = iter(())

    def loss():
        return model(*next(feed))[1]
    step = train_step(model, loss)

    def run():
        nonlocal feed
        feed = iter(batches)
        for _ in batches:
            step()
    return run


def bench_compile(dims, vocab, shapes, reps, device):
    """Eager against torch.compile on batches of several shapes: a dict of "compile.*" figures and the rounds."""
    eager = student(vocab, *dims, device).train()
    compiled = torch.compile(copy.deepcopy(eager))  # same weights, its own optimizer
    batches = shape_batches(vocab, shapes, device)
    runs = {"eager": steps_over(eager, batches), "compiled": steps_over(compiled, batches)}
    runs["eager"]()  # first-touch allocations
    log(f"compile: compiling for {len(shapes)} shapes")
    t0 = time.perf_counter()
    for _ in range(3):  # the first shape compiles a static graph, the next a dynamic one; some parts recompile once more
        runs["compiled"]()
    warmup_s = time.perf_counter() - t0
    times = {"eager": [], "compiled": []}
    for r in range(reps):
        log(f"compile: round {r + 1}/{reps}")
        for k in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):  # alternate who goes first
            times[k].append(timed(runs[k], device))
    tokens = sum(b * (s + t) for b, s, t in shapes)
    targets = sum(b * t for b, s, t in shapes)
    figures = {"compile.warmup_s": warmup_s,
               "compile.speedup_ratio": statistics.median(e / c for e, c in zip(times["eager"], times["compiled"]))}
    for k, ts in times.items():
        figures[f"compile.{k}_tok_s"] = tokens / statistics.median(ts)
        figures[f"compile.{k}_target_tok_s"] = targets / statistics.median(ts)
    return figures, {f"compile.{k}_s": ts for k, ts in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny model and few rounds: checks that every figure is produced")
    parser.add_argument("--json", metavar="FILE", help="also write every figure (and the machine) to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--reps", type=arg_number(int, at_least=1), default=None, help="timed rounds, medians taken (default 5, quick 2)")
    parser.add_argument("--threads", type=arg_number(int, at_least=0), default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=arg_number(int), default=0, help="seed for weights and token ids")
    args = parser.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    device = setup_device(parser, args)
    dims, vocab, shapes = (QUICK_DIMS, QUICK_VOCAB, QUICK_SHAPES) if args.quick else (RECIPE_DIMS, RECIPE_VOCAB, RECIPE_SHAPES)
    info = machine(device)
    figures, rounds = bench_compile(dims, vocab, shapes, reps, device)
    info["load_average_end"] = os.getloadavg()[0]  # other processes make every timing noisier
    d, h, ne, nd, ff = dims
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['torch_threads']} threads, "
          f"device {info['device']}; load average {info['load_average']:.1f} at start, {info['load_average_end']:.1f} at end")
    print(f"model d{d}/{h}h/{ne}+{nd}/ff{ff}, vocab {vocab}; one training step on each of {len(shapes)} batch shapes "
          f"(batch x src x tgt: {', '.join('x'.join(map(str, s)) for s in shapes)}), median of {reps} rounds")
    print(f"eager:    {figures['compile.eager_tok_s']:8.0f} tok/s  ({figures['compile.eager_target_tok_s']:.0f} target tok/s)")
    print(f"compiled: {figures['compile.compiled_tok_s']:8.0f} tok/s  ({figures['compile.compiled_target_tok_s']:.0f} target tok/s)")
    print(f"speed-up: {figures['compile.speedup_ratio']:.2f}x per step, after {figures['compile.warmup_s']:.0f} s of compiling")
    if args.json:
        write_atomic(args.json, json.dumps({"machine": info, "dims": dims, "vocab": vocab, "shapes": shapes, "reps": reps,
                                            "figures": figures, "rounds": rounds}, indent=1, sort_keys=True))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
