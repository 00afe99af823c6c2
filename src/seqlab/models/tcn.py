"""Temporal convolutional network language model (Bai, Kolter & Koltun 2018, "An Empirical
Evaluation of Generic Convolutional and Recurrent Networks for Sequence Modeling").

Dimension legend: B batch, T time, E embedding size, C channels, V vocabulary, k kernel size,
d dilation, h = (k − 1)·d the left context ("history") one causal convolution needs.

    tokens (B, T) -> embedding (B, T, E) -> dropout -> TemporalConvNet (B, C, T)
                  -> dropout -> linear (B, T, V) logits

TemporalConvNet = L TemporalBlocks; block i has dilation 2^i and computes

    y = ReLU(x + res(x)),   res = Dropout∘ReLU∘WN-Conv(d) ∘ Dropout∘ReLU∘WN-Conv(d)

with weight-normalised (Salimans & Kingma 2016) dilated causal convolutions, and a 1x1
convolution on the skip path when the channel counts differ. Each convolution only looks
left: its input is padded with h columns on the left and none on the right.

Receptive field (the calculator, `receptive_field`): each convolution widens it by (k − 1)·d,
and there are two per block, so

    R = 1 + 2·(k − 1)·(1 + 2 + … + 2^(L−1)) = 1 + 2·(k − 1)·(2^L − 1).

State: per-layer input histories. For every causal convolution, in network order, the last
h = (k − 1)·d columns of that convolution's input, a tensor (B, C_in, h). The left padding
of a convolution IS its history: zeros at the start of a stream (init_state, which is exactly
the zero padding of the paper's implementation), and the tail of the previous chunk's input
afterwards. So one form serves
  * truncated BPTT: `forward(chunk, state)` continues the previous chunk exactly; the carried
    activations are detached by the trainer like an RNN's hidden state;
  * fast generation (the queues of Paine et al. 2016, "Fast Wavenet Generation Algorithm"):
    `step` is `forward` on one column; each convolution then computes a single output from
    its k taps, O(L·C²·k) per token instead of a recompute of the receptive field.

Two things make `step` cheap without autograd (under torch.no_grad or inference_mode, as
in generation); with autograd on it computes exactly as `forward` does:
  * its new histories are windows onto buffers with spare columns (`append_column`): the next
    step writes its column in place after the window instead of copying the h columns, so a
    step costs O(C·k) per convolution, not O(C·h). The state keeps its form — plain
    (B, C_in, h) tensors with the same values — so `forward`, `select_state` and TBPTT take it
    as before. A state shares memory with the states stepped from it: treat states as
    read-only, as every caller here does;
  * the weight-normalised kernels are computed once and reused while their g and v are
    unchanged (`CausalConv1d.matrix`), instead of on every call.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from seqlab.config import ModelConfig
from seqlab.models.base import State, check_range
from seqlab.registry import register


def receptive_field(kernel_size: int, num_layers: int) -> int:
    """Inputs that one output of an L-block TCN sees: 1 + 2·(k − 1)·(2^L − 1)."""
    return 1 + 2 * (kernel_size - 1) * (2 ** num_layers - 1)


SPARE_COLUMNS = 64          # the least room a step buffer keeps after its window


def append_column(history: Tensor, x: Tensor, every: int = 1) -> tuple[Tensor, Tensor]:
    """history (B, C, h), x (B, C) -> (taps, new history): every `every`-th column of
    [history, x] counting back from x — for a causal convolution (h = (k − 1)·d, every = d) its
    k taps (B, C, k) — and the last h columns of [history, x] (B, C, h).

    With autograd on, a concatenation. Without it the new history is a window onto a buffer
    (B, C, h + spare), and the next call writes its column in place just after that window
    when nothing has been written there yet, i.e. when the window is the newest one onto its
    buffer; otherwise (a state that did not come from a step, a full buffer, or a second
    continuation of one state, as in branching) it copies the h columns into a fresh buffer,
    as the concatenation would. Columns a window covers are never written again, so every
    state handed out stays valid. (Two threads must not step one state at the same time.)
    """
    B, C, h = history.shape
    if torch.is_grad_enabled() or h == 0 or x.shape != (B, C) or x.dtype != history.dtype:
        full = torch.cat([history, x.unsqueeze(2)], dim=2)                   # (B, C, h + 1)
        return full[:, :, h % every:: every], full[:, :, 1:]
    buffer = getattr(history, "_seqlab_buffer", None)
    end = -1                                                                # the column to write
    if (buffer is not None and buffer.dtype == history.dtype and buffer.shape[:2] == history.shape[:2]
            and history.stride() == buffer.stride()
            and (torch.is_inference_mode_enabled() or not buffer.is_inference())):
        start = (history.data_ptr() - buffer.data_ptr()) // buffer.element_size()   # its first column
        if start + h == buffer._seqlab_end < buffer.size(2):
            end = start + h
    if end < 0:
        buffer = history.new_empty(B, C, h + max(h, SPARE_COLUMNS))
        buffer[:, :, :h] = history
        end = h
    buffer.select(2, end).copy_(x)
    buffer._seqlab_end = end + 1                                            # written up to here
    new = buffer[:, :, end + 1 - h: end + 1]                                # (B, C, h)
    new._seqlab_buffer = buffer
    return buffer[:, :, end - h + h % every: end + 1: every], new


def pointwise(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A 1x1 convolution: x (B, C_in, T) -> (B, C_out, T), or one column (B, C_in) -> (B, C_out)
    as a plain matrix product, a fraction of Conv1d's fixed cost per call on CPU."""
    if x.dim() == 2:
        return F.linear(x, conv.weight.squeeze(2), conv.bias)
    if x.size(2) == 1:
        return F.linear(x.squeeze(2), conv.weight.squeeze(2), conv.bias).unsqueeze(2)
    return conv(x)


class CausalConv1d(nn.Module):
    """A dilated Conv1d that only looks left; its left padding is an explicit history.

    forward(x (B, C_in, T), history (B, C_in, h) or None = zeros)
        -> (y (B, C_out, T), new history (B, C_in, h): the last h columns of [history, x])
    forward(x_t (B, C_in), history) -> (y_t (B, C_out), new history): one column, as in generation
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1,
                 normalise: bool = False):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv = weight_norm(conv) if normalise else conv
        self.in_channels = in_channels
        self.dilation = dilation
        self.history = (kernel_size - 1) * dilation
        self._matrix: Optional[tuple[Tensor, list, list[Tensor]]] = None    # see `matrix`

    def forward(self, x: Tensor, history: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        if history is None:
            history = x.new_zeros(x.size(0), self.in_channels, self.history)
        if x.dim() == 2:
            # One column: its k taps as one matrix product. Much cheaper than Conv1d on CPU,
            # whose dilated kernel has a large fixed cost per call.
            taps, history = append_column(history, x, self.dilation)         # (B, C_in, k)
            return F.linear(taps.flatten(1), self.matrix(), self.conv.bias), history   # (B, C_out)
        if x.size(2) == 1:
            y, history = self.forward(x.squeeze(2), history)
            return y.unsqueeze(2), history
        full = torch.cat([history, x], dim=2)                                 # (B, C_in, h + T)
        return self.conv(full), full[:, :, full.size(2) - self.history:]      # (B, C_out, T), (B, C_in, h)

    def matrix(self) -> Tensor:
        """The kernel as one matrix (C_out, C_in·k), the layout of the flattened taps.

        PyTorch recomputes a parametrised (weight-normalised) kernel from g and v on every
        access. Without autograd it is computed here once and reused for as long as every
        tensor it is computed from is unchanged: the same memory and layout (not swapped by
        `.data =`, `.to()`, `.double()`, `load_state_dict(assign=True)`) at the same version
        (every in-place change bumps it: optimizer steps, `load_state_dict`, `p.mul_()`). So it
        is never stale, except after writes that bypass PyTorch (through a NumPy view of a
        parameter), which autograd cannot see either.
        """
        parametrizations = getattr(self.conv, "parametrizations", None)
        if torch.is_grad_enabled() or parametrizations is None or "weight" not in parametrizations:
            return self.conv.weight.flatten(1)                                # a view: never stale
        parametrization = parametrizations.weight
        if any(m._parameters or m._buffers or m._modules for m in parametrization):
            return self.conv.weight.flatten(1)        # not a function of the originals alone
        sources = list(parametrization._parameters.values())                 # weight norm: g, v
        key = [(p._version, p.data_ptr(), p.stride(), p.dtype) for p in sources]
        if self._matrix is None or self._matrix[1] != key:
            # the aliases hold on to the sources' memory: no other tensor can take its address
            self._matrix = (self.conv.weight.flatten(1), key, [p.detach() for p in sources])
        return self._matrix[0]


class TemporalBlock(nn.Module):
    """Two weight-normalised dilated causal convolutions with ReLU and dropout, plus a residual.

    forward(x (B, C_in, T) or one column (B, C_in), state (h1 (B, C_in, h), h2 (B, C_out, h)) or None)
        -> (y (B, C_out, T) or (B, C_out), new state)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 dropout: float = 0.0):
        super().__init__()
        self.conv1 = CausalConv1d(in_channels, out_channels, kernel_size, dilation, normalise=True)
        self.conv2 = CausalConv1d(out_channels, out_channels, kernel_size, dilation, normalise=True)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, state: Optional[Sequence[Tensor]] = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h1, h2 = state if state is not None else (None, None)
        out, h1 = self.conv1(x, h1)
        out = self.dropout(torch.relu(out))
        out, h2 = self.conv2(out, h2)
        out = self.dropout(torch.relu(out))
        res = x if self.downsample is None else pointwise(self.downsample, x)
        return torch.relu(out + res), (h1, h2)


class TemporalConvNet(nn.Module):
    """Blocks with dilations 1, 2, 4, …; channels[i] output channels for block i.

    forward(x (B, C_in, T), state: 2·L histories, flat, or None = zeros) -> (y (B, C_L, T), state)
    forward(x_t (B, C_in), state) -> (y_t (B, C_L), state): one column
    """

    def __init__(self, num_inputs: int, num_channels: Sequence[int], kernel_size: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        sizes = [num_inputs, *num_channels]
        self.blocks = nn.ModuleList(
            TemporalBlock(sizes[i], sizes[i + 1], kernel_size, 2 ** i, dropout) for i in range(len(num_channels)))
        self.receptive_field = receptive_field(kernel_size, len(num_channels))

    def convs(self) -> list[CausalConv1d]:
        """The causal convolutions in state order."""
        return [c for b in self.blocks for c in (b.conv1, b.conv2)]

    def init_state(self, batch_size: int, dtype=None, device=None) -> tuple[Tensor, ...]:
        return tuple(torch.zeros(batch_size, c.in_channels, c.history, dtype=dtype, device=device)
                     for c in self.convs())

    def forward(self, x: Tensor, state: Optional[Sequence[Tensor]] = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        new: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, hist = block(x, None if state is None else state[2 * i: 2 * i + 2])
            new.extend(hist)
        return x, tuple(new)


class TCNLM(nn.Module):
    """A token-level language model over a TCN: num_layers blocks of hidden_size channels.

    init_state(B)        -> tuple of 2·num_layers zero tensors (B, C_in, (k − 1)·2^i), batch first
    forward(x (B, T), s) -> (logits (B, T, V), s)
    step(x_t (B,), s)    -> (logits (B, V), s)
    `receptive_field` (attribute): tokens one prediction sees.
    """
    check = staticmethod(lambda cfg: check_range(cfg, "kernel_size", 1))

    @staticmethod
    def options(cfg: ModelConfig) -> tuple[str, ...]:
        """The model.* options this family honours."""
        return ("embedding_size", "hidden_size", "num_layers", "dropout", "kernel_size", "tie_weights")

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        if cfg.kernel_size < 1:
            raise ValueError(f"model.kernel_size must be 1 or more, got {cfg.kernel_size}")
        self.cfg = cfg
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.tcn = TemporalConvNet(cfg.embedding_size, [cfg.hidden_size] * cfg.num_layers,
                                   cfg.kernel_size, cfg.dropout)
        self.receptive_field = self.tcn.receptive_field
        self.head = nn.Linear(cfg.hidden_size, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight

    def init_state(self, batch_size: int) -> State:
        w = self.head.weight
        return self.tcn.init_state(batch_size, w.dtype, w.device)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        # x: (B, T) ids; state: per-convolution input histories (B, C_in, h), batch first
        emb = self.dropout(self.embedding(x)).transpose(1, 2)                  # (B, E, T)
        out, state = self.tcn(emb, state)                                      # (B, H, T)
        logits = self.head(self.dropout(out.transpose(1, 2)))                  # (B, T, V)
        return logits, state

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        # x_t: (B,) -> logits (B, V): forward on one column; each convolution computes its
        # output from its k taps
        emb = self.dropout(self.embedding(x_t))                                # (B, E)
        out, state = self.tcn(emb, state)                                      # (B, H)
        return self.head(self.dropout(out)), state                             # (B, V)


register("model", "tcn")(TCNLM)
