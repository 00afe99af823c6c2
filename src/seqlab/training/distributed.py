"""Data-parallel training under torchrun: one process per CPU group or GPU, one model copy each.

    torchrun --standalone --nproc-per-node 4 -m seqlab.cli train ...        # one machine
    torchrun --nnodes 2 --node-rank R --nproc-per-node 8 \\
             --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m seqlab.cli train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs as one process and
nothing here does anything. With them:

- the process group uses gloo on CPU and NCCL on CUDA (each rank on GPU LOCAL_RANK);
- the global batch of B streams is cut into W blocks of B/W rows, rank r taking rows
  [r B/W, (r+1) B/W) of the batchified stream (see data/text.py), so together the ranks see
  exactly the rows one process would;
- DistributedDataParallel averages the gradients (Li et al. 2020, "PyTorch Distributed"); every
  rank computes the mean loss over an equal number of targets, so the average of the ranks'
  gradients is the gradient of the global mean loss, and every rank takes the same step;
- only rank 0 writes files, logs and shows progress; checkpoints hold the global state (the
  carried hidden state of all B rows, every rank's random state), so a run resumes under any
  number of processes that divides B.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.models.base import State, map_state


def under_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


@dataclass
class World:
    """This process's place among the training processes (rank 0 of 1 when alone)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    started: bool = False        # did we init the process group (and must destroy it)?

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    # -- setup ----------------------------------------------------------------------------

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: GPU LOCAL_RANK when training on CUDA in parallel."""
        if device.type == "cuda" and self.parallel and device.index is None:
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return device

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of the (B, N) batchified stream."""
        if batch_size % self.size:
            raise SeqlabError(f"train.batch_size={batch_size} cannot be split evenly over {self.size} processes; "
                              f"use a multiple of {self.size}")
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module the training step calls: DDP around `model` when parallel, else `model`."""
        if not self.parallel:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        if self.started and dist.is_initialized():
            dist.destroy_process_group()
        self.started = False

    # -- collectives (no-ops when alone) -----------------------------------------------------

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the ranks, in float64 (token counts stay exact)."""
        if not self.parallel:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def from_main(self, value: float) -> float:
        """Rank 0's `value` on every rank (an evaluation result, a success flag)."""
        if not self.parallel:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        dist.broadcast(t, src=0)
        return float(t.item())

    def gather_rows(self, state: State) -> State:
        """Every rank's rows of a batch-first state, concatenated in rank order: (B, ...)."""
        if not self.parallel or state is None:
            return state

        def gather(tensor: Tensor) -> Tensor:
            parts = [torch.empty_like(tensor) for _ in range(self.size)]
            dist.all_gather(parts, tensor.contiguous())
            return torch.cat(parts, dim=0)                                    # (B, ...)
        return map_state(gather, state)

    def own_rows(self, state: State, batch_size: int) -> State:
        """This rank's rows of a global (B, ...) state."""
        if not self.parallel or state is None:
            return state
        rows = self.rows(batch_size)
        return map_state(lambda s: s[rows].clone(), state)                    # (B/W, ...)

    def gather_rng(self) -> list[Tensor]:
        """Every rank's CPU random state (dropout draws differ per rank), rank order."""
        mine = torch.get_rng_state()                                          # (S,) uint8
        if not self.parallel:
            return [mine]
        parts = [torch.empty_like(mine) for _ in range(self.size)]
        if dist.get_backend() == "nccl":   # NCCL moves CUDA tensors only
            moved = [p.cuda() for p in parts]
            dist.all_gather(moved, mine.cuda())
            return [m.cpu() for m in moved]
        dist.all_gather(parts, mine)
        return parts

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def setup(device: torch.device) -> World:
    """Join the torchrun process group when launched by torchrun; else one process alone."""
    if not under_torchrun():
        return World()
    try:
        rank, size, local_rank = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except ValueError:
        raise SeqlabError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    world = World(rank, size, local_rank)
    if size == 1:
        return world
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        # 30 min: rank 0 alone evaluates and writes checkpoints while the others wait
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        world.started = True
    return world
