"""
Checkpoints of the student: save_checkpoint writes the weights of the uncompiled model with its
config (atomically, through files.write_atomic), read_checkpoint and load_checkpoint read them
back with weights_only=True and refuse a missing, truncated or foreign file with one line naming
it. Serves train.py and evaluate.py; built on model.py.
"""
import glob
import io
import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from files import write_atomic
from model import EncoderDecoder, ModelConfig

CHECKPOINT_FORMAT = "cot-distill-student-v2"  # v2: Linear weights stored (in, out) (see Linear); files of other formats are refused


def _unwrap(model):
    """Strip torch.compile (._orig_mod) and DDP (.module) wrappers, in any order."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            return model


def save_checkpoint(path, model, **extra):
    """Write {"format", "config", "model", **extra} to path atomically: a temporary file in
    the same directory is renamed over path, so a crash never leaves half a checkpoint. A
    failed save removes its temporary file; one killed outright (kill -9) cannot, so each save
    first removes what earlier saves of the same path left.
    extra values should be plain Python / tensors so the file loads with weights_only=True.

    Example: save_checkpoint("out/ckpt.pt", model, step=1000, optimizer=opt.state_dict())
    """
    model = _unwrap(model)
    clash = {"format", "config", "model"} & extra.keys()
    if clash:
        raise ValueError(f"save_checkpoint: extra keys {sorted(clash)} are reserved")
    ckpt = {"format": CHECKPOINT_FORMAT, "config": asdict(model.config), "model": model.state_dict(), **extra}
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # one process saves a given checkpoint (train.py: rank 0), so an earlier temporary file of it is a leftover
    for leftover in Path(directory).glob(f".{glob.escape(name)}.*.tmp"):
        leftover.unlink(missing_ok=True)
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    write_atomic(path, buffer.getvalue(), fsync=True)


def read_checkpoint(path, map_location="cpu"):
    """The dict a save_checkpoint file holds, without building its model (load_state_dict it into
    one of the same config). Missing, truncated or foreign files raise one clear error naming the path.

    Example: ckpt = read_checkpoint("out/ckpt.pt"); model.load_state_dict(ckpt["model"])
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path}: check the path (or train first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        # torch's text is zip/pickle internals, or advice to retry with weights_only=False,
        # which would run any code the file holds: only its kind is passed on
        advice = ("a run cannot resume from it: copy it again, or start the run over (train.py --overwrite)"
                  if os.path.basename(path) == "last.pt" else "copy it again, or evaluate its run's last.pt")
        raise ValueError(f"cannot read checkpoint {path} ({type(e).__name__}): truncated, corrupt or not written "
                         f"by save_checkpoint; {advice}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (found format={found!r}); "
                         f"use a file written by save_checkpoint")
    return ckpt


def load_checkpoint(path, map_location="cpu"):
    """Rebuild the model from a save_checkpoint file -> (model in eval mode, checkpoint dict).
    Missing, truncated or foreign files raise one clear error naming the path.

    Example: model, ckpt = load_checkpoint("out/ckpt.pt"); step = ckpt["step"]
    """
    ckpt = read_checkpoint(path, map_location)
    try:
        model = EncoderDecoder(ModelConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"checkpoint {path} does not match this model.py: {reason}") from None
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval(), ckpt
