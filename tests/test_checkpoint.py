"""checkpoint.py on real files: round trips, one-line refusals of bad files, and no half-written checkpoint."""
import os
import re

import pytest
import torch
import torch.nn as nn

from checkpoint import load_checkpoint, save_checkpoint
from test_model import random_ids, tiny_model


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # emitted by torch.compile's imports
def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(scale=2.0)
    src, tgt_in = random_ids(2, 6), random_ids(2, 5)
    path = tmp_path / "ckpt.pt"
    tokenizer = {"path": "tok.model", "sha256": "ab" * 32}
    rng = torch.get_rng_state()
    save_checkpoint(str(path), torch.compile(model), step=7, tokenizer=tokenizer, rng=rng)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "cot-distill-student-v2"
    assert not any(k.startswith("_orig_mod") for k in raw["model"])

    loaded, ckpt = load_checkpoint(str(path))
    assert loaded.config == model.config
    assert ckpt["step"] == 7 and ckpt["tokenizer"] == tokenizer
    assert torch.equal(ckpt["rng"], rng)
    torch.testing.assert_close(loaded(src, tgt_in)[0], model(src, tgt_in)[0])
    assert loaded.generate(src, 10) == model.generate(src, 10)
    assert loaded.lm_head.weight is loaded.tok_emb.weight  # tying survives loading


def test_a_v1_checkpoint_is_refused_in_one_line(tmp_path):
    """v1 files stored nn.Linear's (out, in) weights: read as v2 they would be a garbled model, so they are refused."""
    path = tmp_path / "v1.pt"
    save_checkpoint(str(path), tiny_model())
    torch.save(dict(torch.load(path, weights_only=True), format="cot-distill-student-v1"), path)
    with pytest.raises(ValueError, match="not a cot-distill-student-v2 checkpoint .found format='cot-distill-student-v1'"):
        load_checkpoint(str(path))


def test_checkpoint_unwraps_ddp_style_module(tmp_path):
    class Wrapper(nn.Module):  # same shape as DistributedDataParallel: the model is .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), Wrapper(tiny_model()))
    assert not any(k.startswith("module.") for k in torch.load(path, weights_only=True)["model"])


def test_bad_checkpoints_fail_clearly(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(str(good), tiny_model())
    data = good.read_bytes()

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(2000))
    mismatched = tmp_path / "mismatched.pt"
    ckpt = torch.load(good, weights_only=True)
    ckpt["config"]["d_model"] = 64
    torch.save(ckpt, mismatched)

    for path in (truncated, foreign, garbage, mismatched):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            load_checkpoint(str(path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.pt"))):
        load_checkpoint(str(tmp_path / "missing.pt"))
    # a broken last.pt is what --resume reads: the advice is never to resume from it
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="a run cannot resume from it: copy it again, or start the run over") as e:
        load_checkpoint(str(tmp_path / "last.pt"))
    assert "--resume" not in str(e.value)


def test_a_save_removes_what_a_killed_save_left_and_cleans_up_its_own_failure(tmp_path):
    # kill -9 in the middle of a save runs no cleanup: its temporary file stays (issue 16)
    (tmp_path / ".ckpt.pt.k2j4h6.tmp").write_bytes(b"")  # an earlier save of ckpt.pt
    (tmp_path / ".other.pt.x7y8z9.tmp").write_bytes(b"")  # another checkpoint's: left to its own next save
    save_checkpoint(str(tmp_path / "ckpt.pt"), tiny_model())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x7y8z9.tmp", "ckpt.pt"]
    with pytest.raises(Exception):  # a lambda cannot be pickled: the save fails midway
        save_checkpoint(str(tmp_path / "ckpt.pt"), tiny_model(), hook=lambda: 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x7y8z9.tmp", "ckpt.pt"]
    load_checkpoint(str(tmp_path / "ckpt.pt"))  # the earlier checkpoint is whole


def test_an_unreadable_checkpoint_gets_our_message_not_torch_advice(tmp_path):
    import pickle

    import numpy as np
    path = tmp_path / "bad.pt"
    torch.save({"weights": np.zeros(3)}, path)  # not loadable with weights_only=True
    contents = [path.read_bytes(), pickle.dumps({"a": 1}), os.urandom(2000), b""]
    for content in contents:
        path.write_bytes(content)
        with pytest.raises(ValueError) as e:
            load_checkpoint(str(path))
        message = str(e.value)
        # torch's own text says to retry with weights_only=False, which would run any code the file holds
        assert str(path) in message and "weights_only" not in message and "\n" not in message, message
