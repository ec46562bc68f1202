"""
Data parallelism for train.py: under torchrun each rank is one process with its own share of every
epoch's batches, gradients are all-reduced, and rank 0 (the master) logs, validates and saves while
the others wait. Plain `python train.py` is rank 0 of 1, and every call here is then a no-op or
plain torch: a one-process reader of train.py can skip this file.

Example:
    process = start(cfg)            # torchrun sets RANK, WORLD_SIZE and LOCAL_RANK
    process.barrier(); process.log("printed once however many ranks")
"""
import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from device import pick_device


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

    def barrier(self):
        """Wait until every rank is here (nothing to wait for in one process)."""
        if self.ddp:
            dist.barrier()

    def no_sync(self, model, sync):
        """Where a micro-batch's backward runs: without the gradient all-reduce unless sync (the last micro-batch)."""
        return model.no_sync() if self.ddp and not sync else contextlib.nullcontext()

    def wrap(self, model):
        """model, wrapped for data parallelism under torchrun."""
        if self.ddp:
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return model


def start(device_name):
    """The device and, under torchrun, the process group: this process's Parallel."""
    ddp = "RANK" in os.environ
    rank, world = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])) if ddp else (0, 1)
    device = pick_device(device_name)
    if ddp:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        # the other ranks wait at a barrier while rank 0 evaluates: give them time
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    return Parallel(ddp, rank, world, device)


def agreed_clock(elapsed, time_budget_min, process):
    """Rank 0's training seconds on every rank when a time budget is set: lr and the last step depend on them."""
    if process.ddp and time_budget_min:
        clock = torch.tensor([elapsed], dtype=torch.double, device=process.device)
        dist.broadcast(clock, 0)
        return clock.item()
    return elapsed


def check_ranks_agree(model, process):
    """Data parallelism is only right if every rank ends with the same weights: compare checksums, or raise."""
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.double, device=flat.device)).sum()]).cpu()
    every = [torch.zeros_like(mine) for _ in range(process.world)]
    dist.all_gather_object(every, mine)
    if any(not torch.equal(e, every[0]) for e in every):
        raise RuntimeError(f"ranks disagree on the weights: {[e.tolist() for e in every]}")
    process.log(f"weights identical on {process.world} ranks")


def stop(process):
    """After the run: wait for every rank, then leave the process group."""
    if process.ddp:
        dist.barrier()
        dist.destroy_process_group()
