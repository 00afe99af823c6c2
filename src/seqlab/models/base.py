"""The one model interface. The trainer, the decoders and the analysis only use this.

    init_state(batch_size)  -> State                        None for stateless models
    forward(x, state)       -> (out, state)   x: (B, T) ids or (B, T, F) features; out: (B, T, ...)
    step(x_t, state)        -> (out_t, state) x_t: (B,) or (B, F); out_t: (B, ...) — one time step,
                                              for decoding and streaming, O(1) in the prefix length

State is None, a tensor, or a tuple of tensors, each with the batch as its FIRST dimension,
so that generic code can detach it, pick beams out of it or move it between devices
without asking which family produced it.

Optional hooks, declared here (OptionalHooks) and read with `hook(model, name)`: a family
that has one defines it, every caller has a meaning for its absence.

    aux_loss                       a regulariser from the last training forward (the norm
                                   stabiliser); the engine adds it to the task's loss (else 0)
    target_log_probs(x, y, state)  the targets' log-probabilities without the (B, T, V) table
                                   (the n-gram); evaluation uses it when present
    receptive_field                tokens a convolutional model sees; logged, and the window
                                   a forecaster's warm-up needs
    fit(tokens), state_arrays()    fitted by counting (is_count_model)
    options(cfg) (on the class)    the model.* options the family honours (models.family_options)
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol, Union, runtime_checkable

import torch
from torch import Tensor

State = Optional[Union[Tensor, tuple[Tensor, ...]]]


@runtime_checkable
class SequenceModel(Protocol):
    def init_state(self, batch_size: int) -> State: ...
    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]: ...
    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]: ...


class OptionalHooks(Protocol):
    """What a family may add to SequenceModel; see the module docstring for who reads each."""
    aux_loss: Tensor | float
    receptive_field: int

    def target_log_probs(self, x: Tensor, targets: Tensor, state: State) -> tuple[Tensor, State]: ...


HOOKS = ("aux_loss", "target_log_probs", "receptive_field")


def hook(model, name: str, default=None):
    """The optional hook `name` of `model` (one of HOOKS), or `default` when its family has none."""
    assert name in HOOKS, f"{name} is not a declared model hook (models/base.py HOOKS)"
    return getattr(model, name, default)


def map_state(fn: Callable[[Tensor], Tensor], state: State) -> State:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    return tuple(map_state(fn, s) for s in state)


def detach_state(state: State) -> State:
    """Cut the graph at a chunk boundary (truncated BPTT) while keeping the values."""
    return map_state(Tensor.detach, state)


def reset_rows(state: State, initial: State, rows: Tensor) -> State:
    """`state` with the rows where `rows` (B,) is True replaced by those of `initial` (a state of
    the same structure, e.g. model.init_state(B)): some streams start afresh, the others go on."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        mask = rows.to(state.device).view(-1, *([1] * (state.dim() - 1)))
        return torch.where(mask, initial.to(state.device, state.dtype), state)
    return tuple(reset_rows(s, i, rows) for s, i in zip(state, initial))


def select_state(state: State, index: Tensor) -> State:
    """Rows `index` of every state tensor: beam reordering, batch subsets."""
    return map_state(lambda s: s.index_select(0, index), state)


def model_device(model) -> torch.device:
    """Where a model lives: its first parameter or buffer (count-based models have only buffers)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def is_count_model(model) -> bool:
    """Fitted by counting (`fit(tokens)`, saved with `state_arrays`), not by gradients:
    the n-gram and the HMM. The one question the trainer and the loaders ask of a family."""
    return hasattr(model, "fit") and not any(p.requires_grad for p in model.parameters())


def check_range(cfg, key: str, low: int, high: int | None = None) -> None:
    """A family's `check` of one integer option: model.KEY in [low, high], else a one-line refusal."""
    value = getattr(cfg, key)
    if value < low or (high is not None and value > high):
        from seqlab import SeqlabError
        raise SeqlabError(f"model.{key} must be " + (f"{low}-{high}" if high is not None else f"{low} or more")
                          + f", got {value}")
