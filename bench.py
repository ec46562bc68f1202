"""
What the student costs and how that cost grows, against references measured in the same process.

    python bench.py                        # everything: a few minutes on 2 CPU cores
    python bench.py --json bench.json      # also write every figure to a JSON file
    python bench.py --quick                # tiny sizes, under a minute (what the tests run)
    python bench.py --presets gpu --reps 5 --threads 2

Four parts, all on random token ids and random weights (speed does not depend on the data):
- training: tokens/s of forward + backward + AdamW step for our model and torch.nn.Transformer of
  the same width, depth, heads, feed-forward width, vocabulary and batch (and Hugging Face T5 when
  `transformers` happens to be installed; it is never a dependency), timed in alternating rounds
  so that a busy or throttled machine slows both alike; the ratio is the figure;
- FLOP/s: an exact count of the matmul FLOPs of a step (see train_flops) over the step time, as
  a fraction of the machine's fp32 matmul peak, which is measured in every round as well;
- greedy decoding: latency at batch 1 with and without the KV cache, samples/s at larger batches,
  the time of single decoding steps deep into the output, and peak memory;
- scaling: training step time and decoding time as the source or the target grows.
"""
import argparse
import contextlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from cli_checks import arg_number
from files import write_atomic
from tokenizer import Tokenizer
import train
from model import EncoderDecoder, ModelConfig

START = time.perf_counter()  # log's clock
RUN_PEAK_MB = 0.0  # the whole run's peak memory, kept across reset_peak_memory
# random token ids start above the tokenizer's special ids (pad, unk, bos, eos), so nothing is masked
FIRST_PLAIN_ID = max(Tokenizer.pad_id, Tokenizer.unk_id, Tokenizer.bos_id, Tokenizer.eos_id) + 1


def preset_dims(overrides):
    """(d_model, n_heads, n_enc_layers, n_dec_layers, d_ff) of the model train.py trains with a preset's settings."""
    cfg = train.TrainConfig(**overrides)
    return cfg.d_model, cfg.n_heads, cfg.n_enc_layers, cfg.n_dec_layers, cfg.d_ff


def quick_dims(dims):
    """The same depth and heads at a quarter of the width (32 at least), feed-forward scaled alike: what --quick times."""
    d, h, n_enc, n_dec, d_ff = dims
    small = max(32, d // 4)
    return small, h, n_enc, n_dec, d_ff * small // d


# name: dims of train.py's preset of that name, so that a figure is the cost of a model train.py trains
PRESETS = {name: preset_dims(overrides) for name, overrides in train.PRESETS.items()}
QUICK_PRESETS = {name: quick_dims(dims) for name, dims in PRESETS.items()}  # --quick also shrinks the data
FULL = dict(vocab=8000, batch=16, src=160, tgt=192, new_tokens=128, batches=(8, 32, 128), peak_n=2048,
            lengths=(64, 128, 256, 512), new_lengths=(32, 64, 128, 256))
QUICK = dict(vocab=1000, batch=4, src=32, tgt=48, new_tokens=32, batches=(8, 32, 128), peak_n=512,
             lengths=(16, 32, 64), new_lengths=(16, 32, 64))
POSITIONS = (16, 64, 128, 256)  # output positions whose single decoding step is timed


def log(msg):
    """Progress goes to stderr, so that stdout holds the table alone."""
    print(f"[{time.perf_counter() - START:6.1f}s] {msg}", file=sys.stderr, flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def matmul_peak(n, device, tries=3):
    """Best fp32 FLOP/s of an n x n x n torch.mm (2 n^3 FLOPs) over a few tries.

    Example: peak = matmul_peak(2048, torch.device("cpu"))
    """
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)  # the first call pays for thread-pool start-up and workspace allocation
    return 2 * n**3 / min(timed(lambda: torch.mm(a, b), device) for _ in range(tries))


def train_flops(d, n_enc, n_dec, d_ff, vocab, batch, src, tgt):
    """Matmul FLOPs of one training step, counted exactly from the shapes (2 per multiply-add).

    Forward, per sequence: each encoder layer runs qkv + output projections (4 d^2) and the
    feed-forward (2 d d_ff) on src tokens, plus scores and weighted sum (2 x 2 src^2 d); each
    decoder layer runs self qkv + out, cross q + out (6 d^2) and the feed-forward on tgt tokens,
    cross keys/values (2 d^2) on src tokens, self-attention (2 x 2 tgt^2 d, counted in full
    although half of it is masked) and cross-attention (2 x 2 tgt src d); the lm head is
    tgt d vocab. The backward pass does two matmuls for each forward one: 3x the forward.
    Not counted: biases, norms, softmax, GELU, dropout, embeddings lookup, optimizer.
    Both models run exactly these matmuls, so the same count serves for both.

    Example: train_flops(256, 3, 3, 1024, 8000, 16, 160, 192)  # 1.45e11 (the default preset)
    """
    enc = n_enc * (2 * src * (4 * d * d + 2 * d * d_ff) + 4 * src * src * d)
    dec = n_dec * (2 * tgt * (6 * d * d + 2 * d * d_ff) + 2 * src * 2 * d * d + 4 * tgt * tgt * d + 4 * tgt * src * d)
    return 3 * batch * (enc + dec + 2 * tgt * d * vocab)


class TorchTransformer(nn.Module):
    """The reference: torch.nn.Transformer with our dimensions, pre-norm, GELU, dropout 0.1 (which
    nn.Transformer also applies to attention weights and the feed-forward hidden layer), learned
    absolute positions, a tied output layer and full-vocabulary cross-entropy.

    Example: loss = TorchTransformer(8000, 256, 4, 4, 4, 1024)(src, tgt_in, targets)
    """

    def __init__(self, vocab, d, n_heads, n_enc, n_dec, d_ff, dropout=0.1, max_len=1024):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.drop = nn.Dropout(dropout)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first": inference only
            warnings.simplefilter("ignore")
            self.transformer = nn.Transformer(d, n_heads, n_enc, n_dec, d_ff, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def forward(self, src, tgt_in, targets):
        S, T = src.size(1), tgt_in.size(1)
        x = self.drop(self.tok_emb(src) + self.pos_emb.weight[:S])
        y = self.drop(self.tok_emb(tgt_in) + self.pos_emb.weight[:T])
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device)
        h = self.transformer(x, y, tgt_mask=causal, tgt_is_causal=True)
        return F.cross_entropy(self.lm_head(h).flatten(0, 1), targets.flatten())


def hf_t5(vocab, d, n_heads, n_enc, n_dec, d_ff):
    """A randomly initialised Hugging Face T5 of our dimensions, or None without `transformers`."""
    try:
        from transformers import T5Config, T5ForConditionalGeneration
    except ImportError:
        return None
    cfg = T5Config(vocab_size=vocab, d_model=d, d_kv=d // n_heads, d_ff=d_ff, num_layers=n_enc, num_decoder_layers=n_dec,
                   num_heads=n_heads, dropout_rate=0.1, feed_forward_proj="gelu", tie_word_embeddings=True,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # T5's own ids, not our tokenizer's
    return T5ForConditionalGeneration(cfg)


def student(vocab, d, n_heads, n_enc, n_dec, d_ff, device):
    # Random weights would stop at eos whenever an argmax happens to hit it; an id that no argmax
    # can produce makes every greedy sample exactly max_new_tokens long.
    cfg = ModelConfig(vocab_size=vocab, d_model=d, n_heads=n_heads, n_enc_layers=n_enc, n_dec_layers=n_dec, d_ff=d_ff, dropout=0.1,
                      pad_id=Tokenizer.pad_id, bos_id=Tokenizer.bos_id, eos_id=vocab)
    with contextlib.redirect_stdout(sys.stderr):  # its parameter count is progress, not a result
        return EncoderDecoder(cfg).to(device)


def random_ids(vocab, *shape, device):
    """Token ids drawn uniformly from the plain pieces of a vocabulary (no special id: nothing is masked)."""
    return torch.randint(FIRST_PLAIN_ID, vocab, shape, device=device)


def train_step(model, loss_fn):
    """A function doing one forward + backward + AdamW step (train.py's betas, no clipping)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))

    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def reset_peak_memory(device):
    global RUN_PEAK_MB
    RUN_PEAK_MB = max(RUN_PEAK_MB, peak_memory_mb(device))  # the whole run's peak survives resets
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: "5" resets the resident-set high-water mark
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_memory_mb(device):
    """Peak since reset_peak_memory: allocated bytes on CUDA, resident set size on CPU, which
    also counts Python, torch's own code and memory the allocator keeps for reuse."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # whole-run peak, as a fallback
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def bench_training(name, dims, size, args, device, figures, rounds):
    """Interleaved rounds of (matmul peak, our steps, reference steps); medians over rounds."""
    d, h, n_enc, n_dec, d_ff = dims
    V, B, S, T = size["vocab"], size["batch"], size["src"], size["tgt"]
    src, tgt = random_ids(V, B, S, device=device), random_ids(V, B, T + 1, device=device)
    tgt_in, targets = tgt[:, :-1].contiguous(), tgt[:, 1:].contiguous()  # as a data loader hands them over
    ours = student(V, *dims, device).train()
    ref = TorchTransformer(V, *dims).to(device).train()
    steps = {"ours": train_step(ours, lambda: ours(src, tgt_in, targets)[1]),
             "nn_transformer": train_step(ref, lambda: ref(src, tgt_in, targets))}
    t5 = hf_t5(V, *dims)
    if t5 is not None:
        t5.to(device).train()
        steps["t5"] = train_step(t5, lambda: t5(input_ids=src, labels=targets).loss)
    for step in steps.values():  # warm-up: first-touch allocations, lazy initialisation
        step()
    times, round_peaks = {k: [] for k in steps}, []
    for r in range(args.reps):
        log(f"training {name} d{d}/{n_enc}+{n_dec}: round {r + 1}/{args.reps}")
        round_peaks.append(matmul_peak(size["peak_n"], device))
        for k in (list(steps) if r % 2 == 0 else list(reversed(steps))):  # alternate who goes first
            times[k].append(timed(lambda: [steps[k]() for _ in range(args.steps)], device) / args.steps)
    rounds[f"train.{name}.matmul_peak_gflop_s"] = [p / 1e9 for p in round_peaks]
    rounds.update({f"train.{name}.{k}_step_s": ts for k, ts in times.items()})
    flops = train_flops(d, n_enc, n_dec, d_ff, V, B, S, T)
    fig = {"flops_per_step": flops}
    for k, ts in times.items():
        fig[f"{k}_tok_s"] = B * (S + T) / statistics.median(ts)
        fig[f"{k}_fraction_of_peak"] = statistics.median(flops / t / p for t, p in zip(ts, round_peaks))
        if k != "ours":  # ratio within each round, then the median: drifts in load cancel
            fig[f"ratio_vs_{k}"] = statistics.median(a / b for a, b in zip(ts, times["ours"]))
    fig["ours_gflop_s"] = flops / statistics.median(times["ours"]) / 1e9
    figures.update({f"train.{name}.{k}": v for k, v in fig.items()})


def step_times(model, src, n, use_cache, device):
    """Seconds of each of the first n greedy steps of model.generate itself: every call of
    model.decode marks the start of a step, so step i runs from call i to call i + 1."""
    stamps = []

    def decode(*a, **kw):
        sync(device)
        stamps.append(time.perf_counter())
        return EncoderDecoder.decode(model, *a, **kw)

    model.decode = decode  # an instance attribute shadows the method for this call only
    try:
        model.generate(src, n + 1, use_cache=use_cache)
    finally:
        del model.decode
    return [b - a for a, b in zip(stamps, stamps[1:])]


def per_position(runs, positions):
    """Median step time (ms) over the 8 steps ending at each output position, over all runs."""
    return {p: 1e3 * statistics.median(t for run in runs for t in run[p - 8 : p]) for p in positions}


def bench_decoding(dims, size, args, device, figures, rounds):
    V, S, N = size["vocab"], size["src"], size["new_tokens"]
    model = student(V, *dims, device).eval()
    t5 = hf_t5(V, *dims)
    t5 = t5.to(device).eval() if t5 is not None else None
    src1 = random_ids(V, 1, S, device=device)

    def ours(src, n, cache=True):
        return lambda: model.generate(src, n, use_cache=cache)

    def theirs(src, n, cache=True):
        kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1, use_cache=cache)
        return lambda: t5.generate(input_ids=src, attention_mask=torch.ones_like(src), **kw)

    runs = {"ours_cached": ours(src1, N), "ours_uncached": ours(src1, N, cache=False)}
    if t5 is not None:
        runs.update(t5_cached=theirs(src1, N), t5_uncached=theirs(src1, N, cache=False))
    for fn in runs.values():
        fn()
    times = {k: [] for k in runs}
    for r in range(args.reps):
        log(f"decoding batch 1, {N} new tokens: round {r + 1}/{args.reps}")
        for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            times[k].append(timed(runs[k], device))
    ms = {k: 1e3 * statistics.median(ts) for k, ts in times.items()}
    rounds.update({f"decode.batch1_{k}_s": ts for k, ts in times.items()})
    figures["decode.batch1_cached_ms_per_sample"] = ms["ours_cached"]
    figures["decode.batch1_uncached_ms_per_sample"] = ms["ours_uncached"]
    figures["decode.cache_speedup_ratio"] = statistics.median(u / c for u, c in zip(times["ours_uncached"], times["ours_cached"]))
    if t5 is not None:
        figures["decode.t5_batch1_cached_ms_per_sample"] = ms["t5_cached"]
        figures["decode.t5_batch1_uncached_ms_per_sample"] = ms["t5_uncached"]
        figures["decode.ratio_vs_t5_batch1_cached"] = statistics.median(t / o for t, o in zip(times["t5_cached"], times["ours_cached"]))

    for b in size["batches"]:
        log(f"decoding batch {b}")
        src = random_ids(V, b, S, device=device)
        reset_peak_memory(device)
        t = min(timed(ours(src, N), device) for _ in range(2))
        figures[f"decode.samples_per_s.batch{b}"] = b / t
        figures[f"decode.peak_memory_mb.batch{b}"] = peak_memory_mb(device)
        if t5 is not None and b == 32:
            figures["decode.t5_samples_per_s.batch32"] = b / min(timed(theirs(src, N), device) for _ in range(2))

    log(f"decoding: single steps up to position {max(POSITIONS)}")
    cached = [step_times(model, src1, max(POSITIONS), True, device) for _ in range(args.reps)]
    uncached = [step_times(model, src1, max(POSITIONS), False, device)]
    for p, v in per_position(cached, POSITIONS).items():
        figures[f"decode.ms_per_token.pos{p}"] = v
    for p, v in per_position(uncached, POSITIONS).items():
        figures[f"decode.uncached_ms_per_token.pos{p}"] = v
    first, last = min(POSITIONS), max(POSITIONS)
    figures["decode.ms_per_token_growth_ratio"] = figures[f"decode.ms_per_token.pos{last}"] / figures[f"decode.ms_per_token.pos{first}"]


def bench_scaling(dims, size, args, device, figures):
    """Step and decoding time at each length, the other length held at the usual size."""
    V, B = size["vocab"], size["batch"]
    model = student(V, *dims, device).train()

    def train_time(S, T):
        src, tgt = random_ids(V, B, S, device=device), random_ids(V, B, T + 1, device=device)
        step = train_step(model, lambda: model(src, tgt[:, :-1], tgt[:, 1:])[1])
        step()  # warm-up at this shape
        return statistics.median(timed(step, device) for _ in range(args.steps))

    def decode_time(S, n):
        src = random_ids(V, 1, S, device=device)
        model.generate(src, 4)
        return statistics.median(timed(lambda: model.generate(src, n), device) for _ in range(args.steps))

    lengths = size["lengths"]
    for axis, fn, grid in (("train_step_s.src", lambda L: train_time(L, size["tgt"]), lengths),
                           ("train_step_s.tgt", lambda L: train_time(size["src"], L), lengths),
                           ("decode_s.src", lambda L: decode_time(L, size["new_tokens"]), lengths),
                           ("decode_s.new_tokens", lambda L: decode_time(size["src"], L), size["new_lengths"])):
        log(f"scaling: {axis} at {', '.join(map(str, grid))}")
        for L in grid:
            figures[f"scaling.{axis}{L}"] = fn(L)
        figures[f"scaling.{axis}_growth_ratio"] = figures[f"scaling.{axis}{grid[-1]}"] / figures[f"scaling.{axis}{grid[0]}"]


def machine(device):
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "python": platform.python_version(),
            "device": str(device), "load_average": os.getloadavg()[0]}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(figures, size, args, info):
    f = figures
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['cpu_capability']}), "
          f"{info['torch_threads']} threads, device {info['device']}" + (f" ({info['gpu']})" if "gpu" in info else "")
          + f"; load average {info['load_average']:.1f} at start, {info['load_average_end']:.1f} at end")
    print(f"\nTraining: tokens/s (src + tgt tokens, forward + backward + AdamW), batch {size['batch']}, "
          f"src {size['src']} + tgt {size['tgt']}, vocab {size['vocab']}, median of {args.reps} rounds")
    print(f"matmul peak: {f['matmul_peak_gflop_s']:.1f} GFLOP/s ({size['peak_n']}^3 fp32 torch.mm, median of rounds)")
    t5 = any(k.endswith("t5_tok_s") for k in f)
    head = f"{'preset':8} {'dims':20} {'ours':>8} {'nn.Tr':>8} {'ratio':>6} {'ours/pk':>8} {'nn.Tr/pk':>8}"
    print(head + (f" {'T5':>8} {'ratio':>6}" if t5 else "") + f" {'GFLOP/step':>11}")
    for name in args.presets:
        d, h, ne, nd, ff = (QUICK_PRESETS if args.quick else PRESETS)[name]
        p = f"train.{name}."
        row = (f"{name:8} {f'd{d}/{h}h/{ne}+{nd}/ff{ff}':20} {f[p + 'ours_tok_s']:8.0f} {f[p + 'nn_transformer_tok_s']:8.0f} "
               f"{f[p + 'ratio_vs_nn_transformer']:5.2f}x {f[p + 'ours_fraction_of_peak']:8.0%} {f[p + 'nn_transformer_fraction_of_peak']:8.0%}")
        if t5:
            row += f" {f[p + 't5_tok_s']:8.0f} {f[p + 'ratio_vs_t5']:5.2f}x"
        print(row + f" {f[p + 'flops_per_step'] / 1e9:11.1f}")
    if not t5:
        print("HF T5: skipped (`transformers` is not installed)")
    print(f"\nGreedy decoding ('default' model, prompt {size['src']}, {size['new_tokens']} new tokens, random weights; "
          f"peak memory: {'allocated' if 'gpu' in info else 'resident set of the whole process'})")
    print(f"batch 1, KV cache:     {f['decode.batch1_cached_ms_per_sample']:8.1f} ms/sample")
    print(f"batch 1, no cache:     {f['decode.batch1_uncached_ms_per_sample']:8.1f} ms/sample   "
          f"(cache speed-up {f['decode.cache_speedup_ratio']:.2f}x)")
    if "decode.t5_batch1_cached_ms_per_sample" in f:
        print(f"HF T5 batch 1, cache:  {f['decode.t5_batch1_cached_ms_per_sample']:8.1f} ms/sample   "
              f"(ours {f['decode.ratio_vs_t5_batch1_cached']:.2f}x faster); no cache {f['decode.t5_batch1_uncached_ms_per_sample']:.1f}; "
              f"batch 32: {f['decode.t5_samples_per_s.batch32']:.1f} samples/s")
    for b in size["batches"]:
        print(f"batch {b:3}:             {f[f'decode.samples_per_s.batch{b}']:8.1f} samples/s  "
              f"peak memory {f[f'decode.peak_memory_mb.batch{b}']:.0f} MB")
    print("ms per token at output position (batch 1): " + ", ".join(
        f"{p}: {f[f'decode.ms_per_token.pos{p}']:.2f} (no cache {f[f'decode.uncached_ms_per_token.pos{p}']:.1f})" for p in POSITIONS))
    print(f"\nScaling ('default' model, batch {size['batch']} for training, batch 1 for decoding)")
    for axis, grid in (("train_step_s.src", size["lengths"]), ("train_step_s.tgt", size["lengths"]),
                       ("decode_s.src", size["lengths"]), ("decode_s.new_tokens", size["new_lengths"])):
        times = [f[f"scaling.{axis}{L}"] for L in grid]
        slope = math.log(times[-1] / times[0]) / math.log(grid[-1] / grid[0])  # time ~ length^slope
        print(f"{axis:20} " + "  ".join(f"{L}: {t:.3f}s" for L, t in zip(grid, times))
              + f"   x{grid[-1] // grid[0]} length -> x{times[-1] / times[0]:.2f} time (~length^{slope:.2f})")
    print(f"\npeak memory of the whole run: {f['peak_memory_mb']:.0f} MB")


def setup_device(parser, args):
    """The device of --device, with --threads and --seed applied; no CUDA device for --device cuda is a usage error."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return device


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds: checks that every figure is produced")
    parser.add_argument("--json", metavar="FILE", help="also write every figure (and the machine) to this JSON file")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=list(PRESETS), help="training comparisons to run")
    parser.add_argument("--reps", type=arg_number(int, at_least=1), default=None, help="timed rounds per measurement, medians taken (default 3, quick 2)")
    parser.add_argument("--steps", type=arg_number(int, at_least=1), default=None, help="training steps per timed round (default 2, quick 1)")
    parser.add_argument("--threads", type=arg_number(int, at_least=0), default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=arg_number(int), default=0, help="seed for weights and token ids")
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 3)
    args.steps = args.steps or (1 if args.quick else 2)
    device = setup_device(parser, args)
    size, dims = (QUICK, QUICK_PRESETS) if args.quick else (FULL, PRESETS)
    if device.type == "cuda":
        size = dict(size, peak_n=8192)  # 2048^3 is over too soon on a GPU to reach its peak
    info = machine(device)

    # Decoding first: on CPU peak memory is the resident set, and memory the allocator keeps
    # after the big training runs would inflate every later reading.
    figures, rounds = {}, {}  # rounds: every single timing, for judging the noise
    bench_decoding(dims["default"], size, args, device, figures, rounds)
    for name in args.presets:
        bench_training(name, dims[name], size, args, device, figures, rounds)
    figures["matmul_peak_gflop_s"] = statistics.median(p for k, ps in rounds.items() if "matmul_peak" in k for p in ps)
    bench_scaling(dims["default"], size, args, device, figures)
    figures["peak_memory_mb"] = max(RUN_PEAK_MB, peak_memory_mb(device))

    info["load_average_end"] = os.getloadavg()[0]  # other processes make every timing noisier
    print_table(figures, size, args, info)
    if args.json:
        payload = {"machine": info, "sizes": size, "presets": {n: dims[n] for n in args.presets},
                   "reps": args.reps, "steps": args.steps, "figures": figures, "rounds": rounds}
        write_atomic(args.json, json.dumps(payload, indent=1, sort_keys=True))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
