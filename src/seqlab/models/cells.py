"""Recurrent cell equations, one class each, for seqlab's own (non-fused) path.

Dimension legend: B batch, T time, I input size, H hidden size, G gates per cell.

Every cell splits its work in two, so that a layer can do the expensive, parallel part
once for the whole sequence before the time loop:

    project(x)          (B, T, I) -> (B, T, G*H)   all input projections in one matrix product
    step(x_proj_t, s)   (B, G*H), state -> (out (B, H), state)   the recurrence, one step

Weights use PyTorch's names and layouts (weight_ih (G*H, I), weight_hh (G*H, H), bias_ih,
bias_hh; LSTM gates stacked i, f, g, o; GRU r, z, n), so weights copy to and from
nn.RNN / nn.LSTM / nn.GRU, and the numpy reference in models/reference.py.

References: Elman (1990); Jordan (1986); Hochreiter & Schmidhuber (1997), Gers et al. (2000)
forget gates, Gers & Schmidhuber (2000) peepholes, Greff et al. (2017) coupled gates;
Cho et al. (2014) GRU; Ba et al. (2016) layer normalisation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Cell(nn.Module):
    """Shared parameters and the input projection; subclasses define `gates` and `step`."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, layer_norm: bool = False):
        super().__init__()
        self.input_size, self.hidden_size, self.layer_norm = input_size, hidden_size, layer_norm
        gh = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gh, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gh, hidden_size))
        if layer_norm:
            # Ba et al. (2016): normalise the input and recurrent projections separately;
            # the norms' learned biases take the place of the projection biases
            self.norm_ih = nn.LayerNorm(gh)
            self.norm_hh = nn.LayerNorm(gh)
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        else:
            self.bias_ih = nn.Parameter(torch.empty(gh))
            self.bias_hh = nn.Parameter(torch.empty(gh))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)          # PyTorch's default for RNN modules
        for name, p in self.named_parameters():
            if not name.startswith("norm_"):
                nn.init.uniform_(p, -bound, bound)

    def project(self, x: Tensor) -> Tensor:
        # x: (B, T, I) -> (B, T, G*H), the input half of every gate pre-activation
        if self.layer_norm:
            return self.norm_ih(x @ self.weight_ih.t())
        return F.linear(x, self.weight_ih, self.bias_ih)

    def recur(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        # h: (B, H) -> (B, G*H), the recurrent half of every gate pre-activation;
        # mask: (B, H) recurrent dropout, the same at every step of a sequence (Gal & Ghahramani 2016)
        if mask is not None:
            h = h * mask
        if self.layer_norm:
            return self.norm_hh(h @ self.weight_hh.t())
        return F.linear(h, self.weight_hh, self.bias_hh)

    def init_state(self, batch_size: int, like: Tensor):
        return like.new_zeros(batch_size, self.hidden_size)


class ElmanCell(Cell):
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) — nn.RNN's equation."""

    def __init__(self, input_size, hidden_size, nonlinearity: str = "tanh", layer_norm: bool = False):
        self.act = {"tanh": torch.tanh, "relu": torch.relu}[nonlinearity]
        super().__init__(input_size, hidden_size, layer_norm)

    def step(self, xp: Tensor, h: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.act(xp + self.recur(h, mask))                         # (B, H)
        return h, h


class JordanCell(Cell):
    """The previous OUTPUT is fed back (Jordan 1986):
        h_t = tanh(W_ih x_t + b_ih + W_hh y_{t-1} + b_hh),   y_t = tanh(W_ho h_t + b_o)."""

    def __init__(self, input_size, hidden_size, layer_norm: bool = False):
        super().__init__(input_size, hidden_size, layer_norm)
        self.weight_ho = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_o = nn.Parameter(torch.empty(hidden_size))
        bound = 1.0 / math.sqrt(hidden_size)
        nn.init.uniform_(self.weight_ho, -bound, bound)
        nn.init.uniform_(self.bias_o, -bound, bound)

    def step(self, xp: Tensor, y: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = torch.tanh(xp + self.recur(y, mask))                       # (B, H)
        y = torch.tanh(F.linear(h, self.weight_ho, self.bias_o))       # (B, H)
        return y, y


class LSTMCell(Cell):
    """c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t), gates from [x_t, h_{t-1}].

    peephole: the gates also see the cell (i, f: c_{t-1}; o: c_t), diagonal weights.
    coupled:  no forget gate, f = 1 - i (three gate blocks: i, g, o).
    layer_norm: normalised projections and tanh(LN(c_t)) (Ba et al. 2016).
    """

    def __init__(self, input_size, hidden_size, peephole: bool = False, coupled: bool = False,
                 layer_norm: bool = False, forget_bias: float = 1.0):
        self.gates = 3 if coupled else 4
        self.peephole, self.coupled = peephole, coupled
        super().__init__(input_size, hidden_size, layer_norm)
        if peephole:
            bound = 1.0 / math.sqrt(hidden_size)
            self.weight_ci = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
            if not coupled:
                self.weight_cf = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
            self.weight_co = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
        if layer_norm:
            self.norm_c = nn.LayerNorm(hidden_size)
        if not coupled:
            self.set_forget_bias(forget_bias)

    def set_forget_bias(self, value: float) -> None:
        h = self.hidden_size
        with torch.no_grad():
            if self.layer_norm:                  # the projection biases are unused: use the norm's
                self.norm_ih.bias[h:2 * h].fill_(value)
            else:                                # both biases feed the gate: split the value
                self.bias_ih[h:2 * h].fill_(value / 2)
                self.bias_hh[h:2 * h].fill_(value / 2)

    def init_state(self, batch_size: int, like: Tensor):
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros.clone()

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor],
             mask: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = state                                                   # (B, H) each
        z = xp + self.recur(h, mask)                                   # (B, G*H)
        if self.coupled:
            zi, zg, zo = z.chunk(3, dim=1)
        else:
            zi, zf, zg, zo = z.chunk(4, dim=1)
        if self.peephole:
            zi = zi + self.weight_ci * c
            if not self.coupled:
                zf = zf + self.weight_cf * c
        i = torch.sigmoid(zi)
        f = 1.0 - i if self.coupled else torch.sigmoid(zf)
        c = f * c + i * torch.tanh(zg)                                 # (B, H)
        if self.peephole:
            zo = zo + self.weight_co * c
        h = torch.sigmoid(zo) * torch.tanh(self.norm_c(c) if self.layer_norm else c)
        return h, (h, c)


class GRUCell(Cell):
    """r, u = σ(...), h_t = (1 - u) ⊙ n + u ⊙ h_{t-1}, with the candidate n as

        form="pytorch":  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))     (nn.GRU, cuDNN)
        form="cho":      n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)     (Cho et al. 2014, the lectures)

    The two differ only in where the reset gate acts; the 'pytorch' form lets all three
    recurrent products run as one matrix product before r is known, which is why cuDNN uses it.
    """

    gates = 3

    def __init__(self, input_size, hidden_size, form: str = "pytorch", layer_norm: bool = False):
        if form not in ("pytorch", "cho"):
            raise ValueError(f"GRU form must be 'pytorch' or 'cho', got {form!r}")
        if layer_norm and form == "cho":
            # normalising W_hn (r ⊙ h) together with W_hr h would make r depend on itself
            raise ValueError("the layer-normalised GRU uses form='pytorch'")
        self.form = form
        super().__init__(input_size, hidden_size, layer_norm)

    def step(self, xp: Tensor, h: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        xr, xu, xn = xp.chunk(3, dim=1)                                # (B, H) each
        if self.form == "pytorch":
            hr, hu, hn = self.recur(h, mask).chunk(3, dim=1)
            r, u = torch.sigmoid(xr + hr), torch.sigmoid(xu + hu)
            n = torch.tanh(xn + r * hn)
        else:
            # r and u need W_h h; the candidate needs W_hn (r ⊙ h), which waits for r
            w_ru, w_n = self.weight_hh[: 2 * H], self.weight_hh[2 * H:]
            b_r, b_u, b_n = self.bias_hh.chunk(3)
            seen = h if mask is None else h * mask                     # what the products see
            ru = seen @ w_ru.t()                                       # (B, 2H)
            hr, hu = ru[:, :H] + b_r, ru[:, H:] + b_u
            r = torch.sigmoid(xr + hr)
            hn = (r * seen) @ w_n.t() + b_n                            # (B, H)
            u = torch.sigmoid(xu + hu)
            n = torch.tanh(xn + hn)
        h = (1.0 - u) * n + u * h                                      # (B, H)
        return h, h
