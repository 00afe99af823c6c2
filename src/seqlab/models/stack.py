"""Layers and stacks of seqlab's own cells (models/cells.py): the path for every variant
that PyTorch's fused nn.RNN / nn.LSTM / nn.GRU do not offer.

    x (B, T, I) ─► layer 1 ─► dropout ─► layer 2 ─► ... ─► (B, T, D*H)      D = 2 if bidirectional

A layer projects the whole input sequence in one matrix product, then runs the recurrence
step by step. A bidirectional layer runs one cell forward in time and one backward and
concatenates their outputs (Schuster & Paliwal 1997). Dropout acts between layers only,
never on the recurrent path (Zaremba et al. 2014). Residual connections add a layer's
input to its output when the sizes agree (Wu et al. 2016).

State, batch first like everything in seqlab: (B, L*D, H) — or a pair of those for the
LSTM — ordered layer by layer, forward direction before backward, as PyTorch orders h_n.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from seqlab.models.cells import Cell, LSTMCell


class RecurrentLayer(nn.Module):
    """One cell run over time, forward or (reverse=True) backward."""

    def __init__(self, cell: Cell, reverse: bool = False):
        super().__init__()
        self.cell, self.reverse = cell, reverse

    def forward(self, x: Tensor, state) -> tuple[Tensor, object]:
        # x: (B, T, I); state: the cell's state for this layer (B, H) or ((B, H), (B, H))
        projected = self.cell.project(x)                                  # (B, T, G*H)
        steps = range(x.size(1) - 1, -1, -1) if self.reverse else range(x.size(1))
        outputs = []
        for t in steps:
            out, state = self.cell.step(projected[:, t], state)           # (B, H)
            outputs.append(out)
        if self.reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=1), state                         # (B, T, H)


class RecurrentStack(nn.Module):
    def __init__(self, make_cell: Callable[[int, int], Cell], input_size: int, hidden_size: int,
                 num_layers: int = 1, dropout: float = 0.0, bidirectional: bool = False,
                 residual: bool = False):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.directions = 2 if bidirectional else 1
        self.residual = residual
        self.layers = nn.ModuleList()
        for k in range(num_layers):
            size_in = input_size if k == 0 else hidden_size * self.directions
            for d in range(self.directions):
                self.layers.append(RecurrentLayer(make_cell(size_in, hidden_size), reverse=d == 1))
        self.dropout = nn.Dropout(dropout)
        self.is_lstm = isinstance(self.layers[0].cell, LSTMCell)

    def init_state(self, batch_size: int, like: Tensor):
        zeros = like.new_zeros(batch_size, self.num_layers * self.directions, self.hidden_size)
        return (zeros, zeros.clone()) if self.is_lstm else zeros          # (B, L*D, H)

    def forward(self, x: Tensor, state=None) -> tuple[Tensor, object]:
        # x: (B, T, I) -> out (B, T, D*H), state (B, L*D, H) [pair for the LSTM]
        if state is None:
            state = self.init_state(x.size(0), x)
        finals = []
        for k in range(self.num_layers):
            if k:
                x_in = self.dropout(x)
            else:
                x_in = x
            outs = []
            for d in range(self.directions):
                j = k * self.directions + d
                layer_state = tuple(s[:, j] for s in state) if self.is_lstm else state[:, j]
                out, final = self.layers[j](x_in, layer_state)
                outs.append(out)
                finals.append(final)
            out = outs[0] if self.directions == 1 else torch.cat(outs, dim=-1)   # (B, T, D*H)
            x = out + x if self.residual and k and out.shape == x.shape else out
        if self.is_lstm:
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
