"""train.grad_accum: one update's gradient computed over parts of its batch, one after another,
the same gradient as one pass over the whole batch with a part of the activation memory."""
from __future__ import annotations

import contextlib

from seqlab.models.base import hook
from seqlab.training.task import Task


def accumulate(task: Task, trainable, model, batch, step: int, carry, parts: int, world, autocast):
    """train.grad_accum: the batch's parts forward and backward one after another, each loss
    weighed by its items, then the summed gradient divided by the batch's items (all ranks'):
    the gradient of the whole batch's mean loss, as one pass would give it. DDP averages the
    gradients once, at the last part. Returns (the batch's mean loss, its items, the joined carry)."""
    pieces = task.split_batch(batch, carry, parts)
    total, weighted, carries = 0, 0.0, []
    for k, (part, part_carry) in enumerate(pieces):
        last = k == len(pieces) - 1
        quiet = trainable.no_sync() if world.parallel and not last and hasattr(trainable, "no_sync") \
            else contextlib.nullcontext()
        with quiet:
            with autocast:
                loss, n, next_carry = task.train_loss(trainable, part, step, part_carry)
            ((loss + hook(model, "aux_loss", 0.0)) * n).backward()
        total, weighted = total + n, weighted + loss.detach() * n
        carries.append(next_carry)
    everyone = world.sum([total])[0] if world.parallel else total
    scale = (world.size if world.parallel else 1) / max(everyone, 1)
    for p in model.parameters():
        if p.grad is not None:
            p.grad.mul_(scale)
    return weighted / max(total, 1), total, task.join_carry(carries)
