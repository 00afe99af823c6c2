"""Layers and stacks of seqlab's own cells (models/cells.py): the path for every variant
that PyTorch's fused nn.RNN / nn.LSTM / nn.GRU do not offer.

    x (B, T, I) ─► layer 1 ─► dropout ─► layer 2 ─► ... ─► (B, T, D*H)      D = 2 if bidirectional

A layer projects the whole input sequence in one matrix product, then runs the recurrence
step by step. A bidirectional layer runs one cell forward in time and one backward and
concatenates their outputs (Schuster & Paliwal 1997). Residual connections add a layer's
input to its output when the sizes agree (Wu et al. 2016).

Regularisation, all off in eval mode except zoneout's expectation:
- dropout between layers, never on the recurrent path (Zaremba et al. 2014), a fresh
  mask per time step — or, with `variational`, one mask per sequence (Gal & Ghahramani 2016);
- `recurrent_dropout`: one mask per sequence on h_{t-1} where it enters the recurrent
  products (Gal & Ghahramani 2016); the carried state itself is not dropped;
- `zoneout`: each state unit keeps its previous value with probability p at each step
  (Krueger et al. 2017); at evaluation the state is the expected mix p·old + (1-p)·new.

Variable-length batches: `lengths` (B,) stops each sequence's recurrence at its own end,
so padding never changes an output or a final state, in either direction.

State, batch first like everything in seqlab: (B, L*D, H) — or a pair of those for the
LSTM — ordered layer by layer, forward direction before backward, as PyTorch orders h_n.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from seqlab.models.kernels import native
from seqlab.models.cells import Cell, LSTMCell
from seqlab.models.kernels.fast import run_layer, supports


def sequence_mask(like: Tensor, p: float, shape: tuple[int, ...]) -> Tensor:
    """A dropout mask drawn once and reused for a whole sequence, scaled by 1 / (1 - p)."""
    return like.new_empty(shape).bernoulli_(1.0 - p) / (1.0 - p)


def _mix(keep, old, new):
    # per unit: keep the old value where keep is 1 (or with weight keep, at evaluation)
    if isinstance(new, tuple):
        return tuple(_mix(keep, o, n) for o, n in zip(old, new))
    return keep * old + (1.0 - keep) * new


def _where(valid, new, old):
    if isinstance(new, tuple):
        return tuple(_where(valid, n, o) for n, o in zip(new, old))
    return torch.where(valid, new, old)


class RecurrentLayer(nn.Module):
    """One cell run over time, forward or (reverse=True) backward.

    fast=True runs the sequence through models/kernels/fast.py (hand-written sequence-level
    backward) whenever the cell supports it and neither zoneout nor `lengths` is in play;
    otherwise, or with fast=False, the plain per-step autograd loop below runs.
    """

    def __init__(self, cell: Cell, reverse: bool = False, zoneout: float = 0.0, fast: bool = True):
        super().__init__()
        self.cell, self.reverse, self.zoneout = cell, reverse, zoneout
        self.fast = fast and supports(cell)
        if self.fast and isinstance(cell, LSTMCell) and not zoneout:
            # build (or load) the fused C++ LSTM now, while the model is made, rather than in
            # the first training step: its ~20 s would land in train.max_time and the progress bar
            native.available()

    def forward(self, x: Tensor, state, lengths: Tensor | None = None,
                recurrent_mask: Tensor | None = None) -> tuple[Tensor, object]:
        # x: (B, T, I); state: (B, H) or ((B, H), (B, H)); lengths: (B,) valid steps per row
        if self.fast and not self.zoneout and lengths is None:
            return run_layer(self.cell, x, state, self.reverse, recurrent_mask)
        projected = self.cell.project(x)
        steps = range(x.size(1) - 1, -1, -1) if self.reverse else range(x.size(1))
        outputs = []
        for t in steps:
            _, new = self.cell.step(projected[:, t], state, recurrent_mask)
            if self.zoneout:
                keep = (x.new_empty(x.size(0), self.cell.hidden_size).bernoulli_(self.zoneout)
                        if self.training else self.zoneout)               # (B, H) or a number
                new = _mix(keep, state, new)
            if lengths is not None:                                       # past its end a row stands still
                new = _where((t < lengths)[:, None], new, state)
            state = new
            outputs.append(state[0] if isinstance(state, tuple) else state)   # h_t (or y_t): (B, H)
        if self.reverse:
            outputs.reverse()
        out = torch.stack(outputs, dim=1)                                 # (B, T, H)
        if lengths is not None:
            out = out * (torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None])[..., None]
        return out, state


class RecurrentStack(nn.Module):
    def __init__(self, make_cell: Callable[[int, int], Cell], input_size: int, hidden_size: int,
                 num_layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
                 residual: bool = False, variational: bool = False, recurrent_dropout: float = 0.0,
                 zoneout: float = 0.0, fast: bool = True):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.residual, self.variational = residual, variational
        self.dropout_p, self.recurrent_dropout = dropout, recurrent_dropout
        self.layers = nn.ModuleList()
        for k in range(num_layers):
            size_in = input_size if k == 0 else hidden_size * self.directions
            for d in range(self.directions):
                self.layers.append(RecurrentLayer(make_cell(size_in, hidden_size), reverse=d == 1,
                                                  zoneout=zoneout, fast=fast))
        self.dropout = nn.Dropout(dropout)
        self.has_cell = isinstance(self.layers[0].cell, LSTMCell)

    def init_state(self, batch_size: int, like: Tensor):
        zeros = like.new_zeros(batch_size, self.num_layers * self.directions, self.hidden_size)
        return (zeros, zeros.clone()) if self.has_cell else zeros          # (B, L*D, H)

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None) -> tuple[Tensor, object]:
        # x: (B, T, I) -> out (B, T, D*H), state (B, L*D, H) [pair for the LSTM]; lengths (B,)
        if state is None:
            state = self.init_state(x.size(0), x)
        B, training = x.size(0), self.training
        finals = []
        for k in range(self.num_layers):
            x_in = x
            if k and training and self.dropout_p:
                x_in = x * sequence_mask(x, self.dropout_p, (B, 1, x.size(-1))) if self.variational \
                    else self.dropout(x)
            outs = []
            for d in range(self.directions):
                j = k * self.directions + d
                layer_state = tuple(s[:, j] for s in state) if self.has_cell else state[:, j]
                mask = None
                if training and self.recurrent_dropout:
                    mask = sequence_mask(x, self.recurrent_dropout, (B, self.hidden_size))   # (B, H)
                out, final = self.layers[j](x_in, layer_state, lengths, mask)
                outs.append(out)
                finals.append(final)
            out = outs[0] if self.directions == 1 else torch.cat(outs, dim=-1)   # (B, T, D*H)
            x = out + x if self.residual and k and out.shape == x.shape else out
        if self.has_cell:
            return x, (torch.stack([f[0] for f in finals], 1), torch.stack([f[1] for f in finals], 1))
        return x, torch.stack(finals, 1)

    @torch.no_grad()
    def copy_from_fused(self, module: nn.RNNBase) -> None:
        """Take the weights of an nn.RNN / nn.LSTM / nn.GRU of the same shape."""
        for k in range(self.num_layers):
            for d in range(self.directions):
                suffix = f"_l{k}" + ("_reverse" if d else "")
                cell = self.layers[k * self.directions + d].cell
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(module, name + suffix))
