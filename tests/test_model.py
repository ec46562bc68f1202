"""Tests for model.py: shapes, masking, cached greedy decoding, calculator forcing
and a tiny overfit run (checkpoints: test_checkpoint.py). CPU only, a few seconds in total."""

import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import (  # noqa: E402
    EncoderDecoder,
    Linear,
    ModelConfig,
    RotaryEmbedding,
    apply_rotary,
)
from cross_entropy import SoftmaxCrossEntropy  # noqa: E402

from conftest import overfit  # noqa: E402

PAD, BOS, EOS = 0, 2, 3


def tiny_config(**overrides):
    cfg = dict(vocab_size=50, d_model=32, n_heads=4, n_enc_layers=2, n_dec_layers=2, d_ff=64,
               dropout=0.0, max_src_len=64, max_tgt_len=64)
    cfg.update(overrides)
    return ModelConfig(**cfg)


def tiny_model(seed=0, scale=1.0, **overrides):
    """A random tiny model in eval mode. scale > 1 sharpens the random logits so that greedy
    decoding produces varied tokens instead of one token repeated."""
    torch.manual_seed(seed)
    model = EncoderDecoder(tiny_config(**overrides))
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(scale)
    return model.eval()


def varied_model():
    """Random weights whose greedy output varies from token to token (an untied head and
    sharp logits avoid the "repeat the input token" fixed point of a tied random model)."""
    return tiny_model(scale=8.0, tie_embeddings=False)


def random_ids(*shape, low=4, high=50):
    return torch.randint(low, high, shape)


def padded_sources(lengths, vocab=50):
    """Right-padded batch of random sources with the given lengths."""
    src = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        src[i, :n] = random_ids(n, high=vocab)
    return src


# ---------------------------------------------------------------------------- forward


def test_forward_shapes():
    model = tiny_model()
    src, tgt_in = random_ids(3, 7), random_ids(3, 5)
    logits, loss = model(src, tgt_in)
    assert logits.shape == (3, 5, 50) and loss is None
    targets = random_ids(3, 5)
    targets[1, 3:] = PAD
    logits, loss = model(src, tgt_in, targets)
    assert logits.shape == (13, 50)  # only the non-pad target rows
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_linear_is_nn_linear_transposed():
    torch.manual_seed(0)
    layer, x = Linear(5, 3), torch.randn(2, 4, 5)
    nn.init.normal_(layer.weight)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight.t()))  # weight is (in, out)
    assert layer.weight.shape == (5, 3)


def test_loss_is_mean_ce_over_non_pad_targets():
    model = tiny_model()
    src, tgt_in, targets = random_ids(2, 6), random_ids(2, 5), random_ids(2, 5)
    targets[0, 2:] = PAD
    full_logits, _ = model(src, tgt_in)
    keep = targets != PAD
    manual = F.cross_entropy(full_logits[keep], targets[keep])
    logits, loss = model(src, tgt_in, targets)
    torch.testing.assert_close(loss, manual)
    torch.testing.assert_close(logits, full_logits[keep])
    # Changing what sits at padded target positions must not matter.
    other = targets.clone()
    other[0, 2:] = 7
    assert not torch.allclose(model(src, tgt_in, other)[1], loss)
    other[0, 2:] = PAD
    torch.testing.assert_close(model(src, tgt_in, other)[1], loss)


def test_softmax_cross_entropy_matches_f_cross_entropy():
    logits = torch.randn(9, 13, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 13, (9,))
    ref_logits = logits.detach().clone().requires_grad_()
    loss, ref = SoftmaxCrossEntropy.apply(logits, targets), F.cross_entropy(ref_logits, targets)
    (2.5 * loss).backward(retain_graph=True)  # an upstream factor, as train.py's loss weights
    (2.5 * ref).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(logits.grad, ref_logits.grad)
    # Its backward reuses the saved buffer; a second pass must fail loudly, not return garbage.
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # Under bf16 autocast (train.py on a GPU) it works in fp32, as F.cross_entropy does there.
    low = torch.randn(9, 13).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(SoftmaxCrossEntropy.apply(low, targets), F.cross_entropy(low, targets))


def test_every_parameter_gets_a_gradient():
    model = tiny_model().train()
    src, tgt_in, targets = random_ids(2, 6), random_ids(2, 5), random_ids(2, 5)
    model(src, tgt_in, targets)[1].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_decoder_is_causal():
    model = tiny_model()
    src, tgt_in = random_ids(2, 6), random_ids(2, 8)
    before, _ = model(src, tgt_in)
    changed = tgt_in.clone()
    changed[:, 5] = (changed[:, 5] + 1 - 4) % 46 + 4
    after, _ = model(src, changed)
    torch.testing.assert_close(after[:, :5], before[:, :5])
    assert not torch.allclose(after[:, 5:], before[:, 5:])


def test_source_padding_is_invisible():
    model = tiny_model()
    src, tgt_in = random_ids(1, 6), random_ids(1, 5)
    ref, _ = model(src, tgt_in)
    padded = torch.cat([src, torch.full((1, 4), PAD)], dim=1)
    out, _ = model(padded, tgt_in)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.encode(padded)[:, :6], model.encode(src), atol=1e-5, rtol=1e-5)
    # Sanity: a real token in place of the pads does change the output.
    assert not torch.allclose(model(torch.cat([src, random_ids(1, 4)], 1), tgt_in)[0], ref, atol=1e-4)


def test_rotary_scores_depend_only_on_distance():
    rotary = RotaryEmbedding(16, max_len=4)  # deliberately short: tables must grow on demand
    q, k = torch.randn(16), torch.randn(16)
    cos, sin = rotary(0, 40)

    def score(i, j):
        return apply_rotary(q, cos[i], sin[i]) @ apply_rotary(k, cos[j], sin[j])

    torch.testing.assert_close(score(3, 1), score(30, 28))
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_sources_longer_than_max_src_len():
    short = tiny_model(max_src_len=8, max_tgt_len=8)
    long = tiny_model(max_src_len=64, max_tgt_len=64)  # same seed, same weights
    src, tgt_in = random_ids(2, 20), random_ids(2, 12)
    torch.testing.assert_close(short(src, tgt_in)[0], long(src, tgt_in)[0])


# ---------------------------------------------------------------------------- generation


def test_training_after_generate_grew_the_rotary_tables():
    model = tiny_model(max_src_len=8, max_tgt_len=8).train()
    model.generate(random_ids(1, 20), max_new_tokens=30)  # tables grow inside inference_mode
    src, tgt_in, targets = random_ids(2, 20), random_ids(2, 12), random_ids(2, 12)
    model(src, tgt_in, targets)[1].backward()  # would fail on inference-mode tables
    assert model.tok_emb.weight.grad is not None


def test_cached_and_uncached_greedy_agree():
    model = varied_model()
    src = padded_sources([9, 4, 13])
    cached = model.generate(src, max_new_tokens=25, use_cache=True)
    uncached = model.generate(src, max_new_tokens=25, use_cache=False)
    assert cached == uncached
    assert len({tok for row in cached for tok in row}) > 3, "degenerate output makes this test vacuous"


def test_batched_generation_equals_one_by_one():
    model = varied_model()
    src = padded_sources([9, 4, 13])
    batched = model.generate(src, max_new_tokens=20)
    for i, n in enumerate([9, 4, 13]):
        assert model.generate(src[i : i + 1, :n], max_new_tokens=20) == [batched[i]]


def test_forced_prefix_is_fed_then_greedy_continues():
    model = varied_model()
    src = padded_sources([9, 4, 13])
    free = model.generate(src, max_new_tokens=12)
    prefix = [free[1][0], 7, 5]  # a prefix unlike any row's own greedy start
    assert all(row[:3] != prefix for row in free), "the prefix must change something"
    forced = model.generate(src, max_new_tokens=12, prefix=prefix)
    model.eval()
    for b, row in enumerate(forced):  # oracle: greedy by hand, with the whole decoder input each step
        tokens = [model.config.bos_id] + prefix
        while len(tokens) < 16 and tokens[-1] != model.config.eos_id:
            logits, _ = model(src[b : b + 1, : [9, 4, 13][b]], torch.tensor([tokens]))
            tokens.append(int(logits[0, -1].argmax()))
        expected = tokens[1 + len(prefix):]
        assert row == (expected[: expected.index(model.config.eos_id)] if model.config.eos_id in expected else expected)
    assert forced == model.generate(src, max_new_tokens=12, prefix=prefix, use_cache=False)


def test_each_row_stops_at_its_own_eos():
    model = varied_model()
    src = padded_sources([9, 4, 13])
    free = model.generate(src, max_new_tokens=20)  # greedy choices do not depend on eos_id
    stop = free[0][3]
    model.config.eos_id = stop
    stopped = model.generate(src, max_new_tokens=20)
    expected = [row[: row.index(stop)] if stop in row else row for row in free]
    assert stopped == expected
    assert stopped[0] == free[0][: free[0].index(stop)] and len(stopped[0]) <= 3

    # Once every row has stopped, decoding stops too (no wasted steps).
    steps = []
    decode = model.decode
    model.decode = lambda *args, **kwargs: steps.append(1) or decode(*args, **kwargs)
    assert model.generate(src[:1], max_new_tokens=20) == [stopped[0]]
    assert len(steps) == len(stopped[0]) + 1


def test_generate_restores_training_mode():
    model = tiny_model().train()
    model.generate(random_ids(1, 5), max_new_tokens=3)
    assert model.training


class FakeCalculator:
    """Stands in for traces.py's calculator: after a trigger token it forces fixed ids."""

    def __init__(self, trigger, forced):
        self.trigger_ids = {trigger}
        self.forced = forced
        self.calls = []

    def __call__(self, tokens):
        self.calls.append(list(tokens))
        return list(self.forced)


@pytest.mark.parametrize("use_cache", [True, False])
def test_calculator_forces_tokens_after_triggers(use_cache):
    model = varied_model()
    src = padded_sources([9, 4, 13])
    free = model.generate(src, max_new_tokens=30)
    trigger = free[0][2]
    forced = [t for t in range(4, 50) if t != trigger][:2]
    calc = FakeCalculator(trigger, forced)
    out = model.generate(src, max_new_tokens=30, use_cache=use_cache, calculator=calc)

    first = free[0].index(trigger)
    assert out[0][: first + 1] == free[0][: first + 1]  # identical up to the first trigger
    assert out[0][first + 1 : first + 3] == forced
    assert out != free
    # Every trigger the model chose was reported with the tokens so far and followed by
    # the forced ids; every call corresponds to such a trigger.
    expected_calls = []
    for row in out:
        i = 0
        while i < len(row):
            if row[i] == trigger:
                expected_calls.append(row[: i + 1])
                assert row[i + 1 : i + 3] == forced[: len(row) - i - 1]
                i += 3  # forced tokens never trigger again
            else:
                i += 1
    assert sorted(calc.calls) == sorted(expected_calls)
    # The cache stays consistent with forced inputs.
    again = model.generate(src, max_new_tokens=30, use_cache=not use_cache,
                           calculator=FakeCalculator(trigger, forced))
    assert again == out


# ---------------------------------------------------------------------------- learning


def test_tiny_model_overfits_a_few_sequences():
    """Learn to reverse 4 short sequences; then greedy decoding must reproduce them."""
    torch.manual_seed(0)
    model = EncoderDecoder(tiny_config(d_model=64, d_ff=128))
    lengths = [5, 7, 6, 8]
    src = padded_sources(lengths, vocab=20)
    targets = torch.full((4, 9), PAD)
    for i, n in enumerate(lengths):
        targets[i, :n] = src[i, :n].flip(0)
        targets[i, n] = EOS
    tgt_in = torch.cat([torch.full((4, 1), BOS), targets[:, :-1]], dim=1)
    tgt_in[tgt_in == EOS] = PAD  # eos is never an input; keeps pads to the right

    assert overfit(model, src, tgt_in, targets, 150) < 0.05
    expected = [src[i, :n].flip(0).tolist() for i, n in enumerate(lengths)]
    assert model.generate(src, max_new_tokens=12) == expected


def test_compiled_model_trains_on_batches_of_varying_lengths():
    """torch.compile of the model (bench_compile.py times it) on CPU: batches of other sizes and lengths (dynamic shapes) once crashed inductor's
    backward (a stride assertion on the attention's q/k/v views); the losses match the eager model's."""
    torch.manual_seed(0)
    model = EncoderDecoder(tiny_config(n_enc_layers=1, n_dec_layers=1)).train()
    compiled = torch.compile(model)
    for b, s, t in ((4, 9, 7), (3, 13, 11), (5, 6, 12)):  # the second shape makes the compiled graph dynamic
        src = torch.randint(4, model.config.vocab_size, (b, s))
        tgt = torch.randint(4, model.config.vocab_size, (b, t + 1))
        _, eager_loss = model(src, tgt[:, :-1], tgt[:, 1:])
        _, loss = compiled(src, tgt[:, :-1], tgt[:, 1:])
        loss.backward()
        assert loss.item() == pytest.approx(eager_loss.item(), rel=1e-4)
