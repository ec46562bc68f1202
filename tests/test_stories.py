"""train.py --stories (data.nested_stories: nested, hash-chosen train stories) and target_loss.py
(the reference target's teacher-forced cross-entropy in eval.json), against exact oracles and on real runs."""
import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import torch

import data
import evaluate
import target_loss
from conftest import ROOT
from model import EncoderDecoder, ModelConfig


def problems(n):
    return [data.Problem(f"train-{i:05d}", f"Question {i}: Ann has {i} apples and buys 3. How many?", "", str(i + 3)) for i in range(n)]


def test_nested_stories_are_the_lowest_question_hashes_in_file_order():
    ps = problems(60)
    by_hash = sorted(ps, key=lambda p: hashlib.sha256(p.question.encode()).hexdigest())
    for n in (1, 7, 30, 59):
        chosen = data.nested_stories(ps, n)
        assert {p.id for p in chosen} == {p.id for p in by_hash[:n]}
        assert chosen == [p for p in ps if p in chosen]  # the file's order kept
    assert {p.id for p in data.nested_stories(ps, 7)} < {p.id for p in data.nested_stories(ps, 30)}
    assert data.nested_stories(ps, 0) == ps and data.nested_stories(ps, 60) == ps and data.nested_stories(ps, 99) == ps
    assert data.nested_stories(ps[::-1], 30) == data.nested_stories(ps, 30)[::-1]  # a set of stories, not of positions


def test_target_nll_is_the_models_own_loss_per_example(gsm8k_dir, tokenizer):
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_heads=2, n_enc_layers=1, n_dec_layers=1,
                                       d_ff=64, dropout=0.0)).eval()
    val = evaluate.load_problems("val", None, gsm8k_dir)[:6]
    cfg = {"trace_format": "equations", "seed": 1337}
    for mask in (False, True):
        pairs = target_loss.reference_examples(tokenizer, val, "cot", cfg, mask)
        nll = target_loss.target_nll(model, tokenizer, pairs, batch_tokens=300)  # several batches
        assert len(nll) == len(val)
        for task, ex in pairs:
            with torch.no_grad():
                _, trained_loss = model(*data.collate([ex]))  # the model's own loss skips ex.no_loss
                _, every_loss = model(*data.collate([replace(ex, no_loss=[])]))
            (nats, tokens), (all_nats, all_tokens) = nll[(ex.id, task)]
            assert tokens == len(ex.tgt) + 1 - len(ex.no_loss) and all_tokens == len(ex.tgt) + 1
            assert math.isclose(nats / tokens, trained_loss.item(), rel_tol=1e-4)
            assert math.isclose(all_nats / all_tokens, every_loss.item(), rel_tol=1e-4)
    masked = target_loss.reference_examples(tokenizer, val, "cot", cfg, True)
    assert sum(len(ex.no_loss) for _, ex in masked) > 0  # the mask does leave the calculator's results out


def test_smoke_run_records_its_stories_and_evaluation_its_target_loss(tmp_path, gsm8k_dir, tokenizer_dir):
    out = tmp_path / "cot"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "train.py", "--mode", "cot", "--preset", "smoke", "--stories", "40", "--mask-results",
                           "--epochs", "1", "--test-limit", "4", "--max-new-tokens", "16", "--data-dir", str(gsm8k_dir),
                           "--tokenizer-dir", str(tokenizer_dir), "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["train_stories"] == 40
    assert json.loads((out / "metrics.json").read_text())["train_stories"] == 40
    assert json.loads((out / "config.json").read_text())["train_examples"]["cot"] <= 40
    done = subprocess.run([sys.executable, "evaluate.py", str(out), "--split", "val", "--limit", "6", "--calculator",
                           "--latency-samples", "0", "--max-new-tokens", "16", "--out", str(tmp_path / "ev")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads((tmp_path / "ev" / "eval.json").read_text())["results"][0]
    rows = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert m["target_problems"] == 6 and m["target_tokens"] == sum(r["target_tokens"] for r in rows)
    assert math.isclose(m["target_loss"], sum(r["target_nats"] for r in rows) / m["target_tokens"])
    assert sum(r["target_tokens_all"] for r in rows) > m["target_tokens"]  # masked: the results are not the student's to write
    assert 0 < m["target_loss"] < math.log(4000) * 2
