"""What a checkpoint holds, and putting it back: exact resume, for every task.

A resumed run must take the very updates an uninterrupted one would have taken (CPU, same
seed: bit-identical weights). That needs more than weights and optimizer moments:

    progress      update count, epoch, batch within the epoch (the data position), the
                  running sums of the next training-loss record, the NaN-rollback learning-rate
                  scale
    optimizer     Adam's moments / SGD's momentum, and each group's current learning rate
    plateau       the best validation loss so far and the evaluations since (schedule state)
    rng_cpu       every rank's CPU random state: dropout masks continue where they were
    rng_cuda      likewise on GPUs
    carry         the hidden state carried into the next batch, all B rows (the language
                  model's TBPTT windows continue each other; None for the other tasks)

Everything is tensors and plain values, so torch.load(weights_only=True) reads it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from seqlab import SeqlabError
from seqlab.models.base import State
from seqlab.training.distributed import World
from seqlab.training.optim import PlateauDecay


@dataclass
class Progress:
    """Where training stands; plain values, saved in state.pt."""
    step: int = 0
    epoch: int = 0
    position: int = 0            # next batch (TBPTT window) within the epoch
    items: int = 0               # loss items (tokens, labels, values) trained on so far, all ranks
    elapsed: float = 0.0         # training seconds so far (across resumes)
    loss_sum: float = 0.0        # since the last training-loss record
    loss_count: int = 0
    norm_sum: float = 0.0
    norm_count: int = 0
    best_step: int = 0
    lr_scale: float = 1.0        # product of the NaN-rollback learning-rate cuts
    nan_rollbacks: int = 0       # non-finite losses rolled back so far


def capture(progress: Progress, optimizer, plateau: PlateauDecay, carry: State, world: World,
            device: torch.device) -> dict[str, Any]:
    """The training state to save beside the weights. Collective: every rank must call it."""
    carry = world.gather_rows(carry)                                            # (B, ...) each
    flat = [] if carry is None else list(carry) if isinstance(carry, tuple) else [carry]
    return {
        "progress": asdict(progress),
        "optimizer": optimizer.state_dict(),
        "plateau": plateau.state_dict(),
        "rng_cpu": world.gather_rng(),
        "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "carry": [s.detach().cpu() for s in flat],
        "carry_is_tuple": isinstance(carry, tuple),
        "world_size": world.size,
    }


def restore(state: dict[str, Any], optimizer, plateau: PlateauDecay, world: World, device: torch.device,
            batch_size: int, seed: int, where: str, log: Callable[[str], None]) -> tuple[Progress, State]:
    """Put a saved training state back (the weights are already loaded); returns (progress, carry)."""
    try:
        progress = Progress(**_renamed(state["progress"]))
        optimizer.load_state_dict(state["optimizer"])
        plateau.load_state_dict(state["plateau"])
        rng = state["rng_cpu"]
        rng = [rng] if isinstance(rng, torch.Tensor) else list(rng)    # one tensor: saved before rank lists
        if len(rng) == world.size:
            torch.set_rng_state(rng[world.rank])
        else:
            # Dropout masks are drawn per rank; with another number of ranks they cannot
            # continue, so they restart from a seed that still depends on where we are.
            if world.is_main:
                log(f"note: saved by {len(rng)} process(es), resumed by {world.size}: "
                    f"dropout random numbers restart (the weights and data position carry over)")
            torch.manual_seed(seed + 100_003 * progress.step + world.rank)
        if device.type == "cuda" and state["rng_cuda"] and len(rng) == world.size:
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        carry = [s.to(device) for s in state["carry"]]
        is_tuple = state["carry_is_tuple"]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise SeqlabError(f"{where} is not a seqlab training state ({e})") from None
    if not carry:
        return progress, None
    if carry[0].size(0) != batch_size:
        raise SeqlabError(f"{where} carries {carry[0].size(0)} streams, not train.batch_size={batch_size}")
    full = tuple(carry) if is_tuple else carry[0]
    return progress, world.own_rows(full, batch_size)


def _renamed(saved: dict[str, Any]) -> dict[str, Any]:
    """A progress record of seqlab 0.x, whose trainers named the position and the count per task."""
    old = {"window": "position", "batch": "position", "tokens": "items"}
    return {old.get(k, k): v for k, v in saved.items()}
