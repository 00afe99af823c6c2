"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio") as a
token-level language model, with fast generation by per-layer queues (Paine et al. 2016,
"Fast Wavenet Generation Algorithm") and μ-law companding for real-valued signals.

Dimension legend: B batch, T time, E embedding size, C residual channels (hidden_size),
S skip channels, V vocabulary (quantisation levels for audio), k kernel size, d dilation,
h = (k − 1)·d the left context one causal convolution needs, L layers.

    tokens (B, T) -> embedding (B, E, T) -> dropout -> causal conv (k, d = 1) -> x_0 (B, C, T)
    layer l (dilation d_l):   a = W_f *_d x_l + V_f c,    b = W_g *_d x_l + V_g c
                              z = tanh(a) ⊙ σ(b)
                              x_{l+1} = x_l + 1x1_res(z),  skip_l = 1x1_skip(z)   (B, S, T)
    Σ_l skip_l -> ReLU -> 1x1 (S -> C) -> ReLU -> dropout -> linear (C -> V) logits

Dilations 1, 2, …, 2^(cycle−1), repeated until num_layers layers. c is the global condition
(a class id): an embedding of it is added to the filter and gate pre-activations of every
layer (V_f c and V_g c of the paper, with c one-hot). The last layer has no residual 1x1
(its x_{l+1} would not be used).

Receptive field (the calculator): R = 1 + (k − 1)·(1 + Σ_l d_l), the 1 inside for the input
convolution.

State: per-layer input histories, as for the TCN (models/tcn.py): for the input convolution
and then for each dilated convolution, the last h columns of its input, (B, C_in, h), batch
first; zeros at the start of a stream. `forward(chunk, state)` continues the previous chunk
exactly, and `step` is `forward` on one column (each convolution computes one output from
its k taps, and each 1x1 is a plain matrix product: O(L) per token; without autograd the
histories grow in place, see models/tcn.py). The condition is not part of the state: pass
the same `cond` to every forward/step call of a stream.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from seqlab.config import ModelConfig
from seqlab.models.base import State, check_range
from seqlab.models.tcn import CausalConv1d, pointwise
from seqlab.registry import register


def dilations(num_layers: int, dilation_cycle: int) -> list[int]:
    """1, 2, …, 2^(cycle−1), 1, 2, … for num_layers layers."""
    return [2 ** (i % dilation_cycle) for i in range(num_layers)]


def receptive_field(kernel_size: int, num_layers: int, dilation_cycle: int) -> int:
    """Inputs one output sees: 1 + (k − 1)·(1 + Σ dilations) (input conv + dilated stack)."""
    return 1 + (kernel_size - 1) * (1 + sum(dilations(num_layers, dilation_cycle)))


def mu_law_encode(x: Tensor, channels: int = 256) -> Tensor:
    """Real values in [−1, 1] -> integer ids 0 … channels−1 (long), by μ-law companding
    f(x) = sign(x)·ln(1 + μ|x|) / ln(1 + μ), μ = channels − 1, then uniform quantisation of
    f(x) ∈ [−1, 1] into `channels` levels (step 2/μ, rounded to the nearest level)."""
    x = torch.as_tensor(x)
    x = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32).clamp(-1.0, 1.0)
    mu = channels - 1
    f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return torch.floor((f + 1) / 2 * mu + 0.5).long().clamp_(0, mu)


def mu_law_decode(ids: Tensor, channels: int = 256, dtype: torch.dtype = torch.float32) -> Tensor:
    """Ids 0 … channels−1 -> real values in [−1, 1]: the inverse f⁻¹(y) = sign(y)·((1 + μ)^|y| − 1)/μ
    of the companding at the level's centre y = 2·id/μ − 1."""
    mu = channels - 1
    y = torch.as_tensor(ids).to(dtype) * (2.0 / mu) - 1.0
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


class WaveNetLayer(nn.Module):
    """Gated dilated causal convolution with residual and skip 1x1s.

    forward(x (B, C, T), history (B, C, h) or None, cond (B,) long or None)
        -> (x_next (B, C, T), skip (B, S, T), history)
    forward(x_t (B, C), history, cond) -> (x_next (B, C), skip (B, S), history): one column
    """

    def __init__(self, channels: int, skip_channels: int, kernel_size: int, dilation: int,
                 num_classes: int = 0, residual: bool = True):
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation)   # filter and gate
        self.cond = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        self.res = nn.Conv1d(channels, channels, 1) if residual else None
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, x: Tensor, history: Optional[Tensor] = None,
                cond: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        pre, history = self.conv(x, history)                                  # (B, 2C, T)
        if cond is not None:
            if self.cond is None:
                raise ValueError("this WaveNet was built with num_classes=0: it takes no condition")
            bias = self.cond(cond)                                            # (B, 2C)
            pre = pre + (bias if pre.dim() == 2 else bias.unsqueeze(2))       # the same at every time
        f, g = pre.chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)                                  # (B, C, T) or (B, C)
        out = x if self.res is None else x + pointwise(self.res, z)
        return out, pointwise(self.skip, z), history


class WaveNetLM(nn.Module):
    """A token-level WaveNet: num_layers gated layers of hidden_size residual channels.

    WaveNetLM(cfg, vocab_size, num_classes=0)
    init_state(B)                    -> tuple of 1 + num_layers zero tensors (B, C_in, h), batch first
    forward(x (B, T), s, cond=None)  -> (logits (B, T, V), s);  cond: (B,) class ids
    step(x_t (B,), s, cond=None)     -> (logits (B, V), s)
    `receptive_field` (attribute): tokens one prediction sees.
    """

    @staticmethod
    def options(cfg: ModelConfig) -> tuple[str, ...]:
        """The model.* options this family honours."""
        # the dilations restart every dilation_cycle layers: a cycle as long as the stack changes nothing
        return ("embedding_size", "hidden_size", "num_layers", "dropout", "kernel_size", "skip_channels", "tie_weights") \
            + (("dilation_cycle",) if cfg.num_layers > min(cfg.dilation_cycle, ModelConfig.dilation_cycle) else ())

    @staticmethod
    def check(cfg: ModelConfig) -> None:
        check_range(cfg, "kernel_size", 1)
        check_range(cfg, "dilation_cycle", 1, 30)      # 30: a dilation of 2^29
        check_range(cfg, "skip_channels", 0)

    def __init__(self, cfg: ModelConfig, vocab_size: int, num_classes: int = 0):
        super().__init__()
        if cfg.kernel_size < 1 or cfg.dilation_cycle < 1:
            raise ValueError(f"model.kernel_size and model.dilation_cycle must be 1 or more, "
                             f"got {cfg.kernel_size} and {cfg.dilation_cycle}")
        self.cfg = cfg
        self.num_classes = num_classes
        C, S, k = cfg.hidden_size, cfg.skip_channels or cfg.hidden_size, cfg.kernel_size
        self.dilations = dilations(cfg.num_layers, cfg.dilation_cycle)
        self.receptive_field = receptive_field(k, cfg.num_layers, cfg.dilation_cycle)
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.input_conv = CausalConv1d(cfg.embedding_size, C, k, 1)
        last = len(self.dilations) - 1
        self.layers = nn.ModuleList(
            WaveNetLayer(C, S, k, d, num_classes, residual=i < last) for i, d in enumerate(self.dilations))
        self.post = nn.Conv1d(S, C, 1)
        self.head = nn.Linear(C, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight

    def convs(self) -> list[CausalConv1d]:
        """The causal convolutions in state order."""
        return [self.input_conv, *(layer.conv for layer in self.layers)]

    def init_state(self, batch_size: int) -> State:
        w = self.head.weight
        return tuple(torch.zeros(batch_size, c.in_channels, c.history, dtype=w.dtype, device=w.device)
                     for c in self.convs())

    def forward(self, x: Tensor, state: State = None, cond: Optional[Tensor] = None) -> tuple[Tensor, State]:
        # x: (B, T) ids; state: per-convolution input histories; cond: (B,) class ids or None
        emb = self.dropout(self.embedding(x)).transpose(1, 2)                  # (B, E, T)
        out, state = self._stack(emb, state, cond)                             # (B, C, T)
        logits = self.head(self.dropout(out.transpose(1, 2)))                  # (B, T, V)
        return logits, state

    def step(self, x_t: Tensor, state: State, cond: Optional[Tensor] = None) -> tuple[Tensor, State]:
        # x_t: (B,) -> logits (B, V): forward on one column; each convolution computes its
        # output from its k taps
        emb = self.dropout(self.embedding(x_t))                                # (B, E)
        out, state = self._stack(emb, state, cond)                             # (B, C)
        return self.head(self.dropout(out)), state                             # (B, V)

    def _stack(self, emb: Tensor, state: State, cond: Optional[Tensor]) -> tuple[Tensor, State]:
        # emb (B, E, T) or one column (B, E) -> the post-processed skip sum (B, C, T) or (B, C)
        hist: Sequence[Optional[Tensor]] = state if state is not None else [None] * (1 + len(self.layers))
        h, first = self.input_conv(emb, hist[0])                               # (B, C, T) or (B, C)
        new = [first]
        skips: Optional[Tensor] = None
        for layer, past in zip(self.layers, hist[1:]):
            h, skip, past = layer(h, past, cond)
            skips = skip if skips is None else skips + skip                   # (B, S, T)
            new.append(past)
        return torch.relu(pointwise(self.post, torch.relu(skips))), tuple(new)


register("model", "wavenet")(WaveNetLM)
