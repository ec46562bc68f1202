"""bench.py --quick end to end: every figure is produced and is a positive finite number.
No timing is asserted: the suite runs on shared, busy machines."""
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = ["matmul_peak_gflop_s", "peak_memory_mb",
            "decode.batch1_cached_ms_per_sample", "decode.batch1_uncached_ms_per_sample", "decode.cache_speedup_ratio",
            "decode.ms_per_token_growth_ratio"]
for preset in ("smoke", "default", "gpu"):
    EXPECTED += [f"train.{preset}.{k}" for k in (
        "ours_tok_s", "nn_transformer_tok_s", "ratio_vs_nn_transformer", "ours_fraction_of_peak",
        "nn_transformer_fraction_of_peak", "ours_gflop_s", "flops_per_step")]
for b in (8, 32, 128):
    EXPECTED += [f"decode.samples_per_s.batch{b}", f"decode.peak_memory_mb.batch{b}"]
for p in (16, 64, 128, 256):
    EXPECTED += [f"decode.ms_per_token.pos{p}", f"decode.uncached_ms_per_token.pos{p}"]
for axis in ("train_step_s.src", "train_step_s.tgt", "decode_s.src", "decode_s.new_tokens"):
    EXPECTED.append(f"scaling.{axis}_growth_ratio")


def test_quick_run_produces_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    # One thread: on a busy machine two threads that wait on each other can make it 10x slower.
    r = subprocess.run([sys.executable, str(ROOT / "bench.py"), "--quick", "--threads", "1", "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    figures = report["figures"]
    missing = [k for k in EXPECTED if k not in figures]
    assert not missing, f"missing figures: {missing}"
    bad = {k: v for k, v in figures.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)}
    assert not bad, f"figures that are not positive finite numbers: {bad}"
    # each scaling axis has a time for every length, and the table names every part
    assert sum(k.startswith("scaling.train_step_s.src") for k in figures) == len(report["sizes"]["lengths"]) + 1
    for heading in ("Training", "matmul peak", "Greedy decoding", "Scaling", "ratio"):
        assert heading in r.stdout
    assert report["machine"]["torch_threads"] >= 1
    if "train.default.t5_tok_s" not in figures:  # transformers is optional and never required
        assert "HF T5: skipped" in r.stdout
    assert not list(tmp_path.glob(".tmp-*")), "the JSON is written atomically, no temporary file left"


def test_presets_are_the_models_train_py_trains():
    import bench
    import train
    assert list(bench.PRESETS) == list(train.PRESETS)
    cfg = train.TrainConfig()
    assert bench.PRESETS["default"] == (cfg.d_model, cfg.n_heads, cfg.n_enc_layers, cfg.n_dec_layers, cfg.d_ff) == (128, 4, 3, 3, 512)
    assert bench.PRESETS["first-study"] == (256, 4, 3, 3, 1024)
    assert bench.PRESETS["gpu"] == (512, 8, 6, 6, 2048) and bench.PRESETS["smoke"] == (64, 2, 1, 1, 128)
    assert bench.QUICK_PRESETS == {"smoke": (32, 2, 1, 1, 64), "default": (32, 4, 3, 3, 128), "first-study": (64, 4, 3, 3, 256),
                                   "gpu": (128, 8, 6, 6, 512)}


def test_train_flops_is_what_torch_counts():
    """train_flops against torch's own count of a forward + backward pass of our model, at odd sizes so that no
    term can stand in for another (the math attention kernel, whose matmuls the counter sees)."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    import bench
    from model import EncoderDecoder, ModelConfig
    d, h, n_enc, n_dec, d_ff, vocab, batch, src, tgt = 32, 2, 2, 3, 48, 50, 3, 7, 5
    model = EncoderDecoder(ModelConfig(vocab_size=vocab, d_model=d, n_heads=h, n_enc_layers=n_enc, n_dec_layers=n_dec,
                                       d_ff=d_ff, dropout=0.0))
    ids = lambda *shape: torch.randint(4, vocab, shape)  # no pad: the lm head runs on every target position
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(ids(batch, src), ids(batch, tgt), ids(batch, tgt))
        loss.backward()
    assert counter.get_total_flops() == bench.train_flops(d, n_enc, n_dec, d_ff, vocab, batch, src, tgt)


def test_compile_bench_quick_run_gives_ratios_of_its_own_rounds(tmp_path):
    """bench_compile.py --quick: every figure is there, and each is what its timed rounds say (no timing asserted)."""
    out = tmp_path / "compile.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench_compile.py"), "--quick", "--threads", "1", "--reps", "3",
                        "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    f, rounds = report["figures"], report["rounds"]
    eager, compiled = rounds["compile.eager_s"], rounds["compile.compiled_s"]
    assert len(eager) == len(compiled) == 3 and min(eager + compiled) > 0 and f["compile.warmup_s"] > 0
    assert f["compile.speedup_ratio"] == sorted(e / c for e, c in zip(eager, compiled))[1]
    tokens = sum(b * (s + t) for b, s, t in report["shapes"])
    assert math.isclose(f["compile.eager_tok_s"] * sorted(eager)[1], tokens)
    assert math.isclose(f["compile.compiled_tok_s"] * sorted(compiled)[1], tokens)
    assert "speed-up" in r.stdout and "x per step" in r.stdout
