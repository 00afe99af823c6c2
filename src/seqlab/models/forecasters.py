"""Neural forecasters for real-valued series, and one-step / closed-loop forecasting with any
model that follows the sequence-model protocol (models/base.py).

Dimension legend: B batch, T time, F input features (the value first, then covariates),
H hidden size, L layers, W window length.

RNNForecaster — a latent autoregressive model: the recurrent state h_t summarises the whole
past, and the prediction of the next value is read off it (the RNN forecasters of Connor,
Martin & Atlas 1994, "Recurrent neural networks and robust time series prediction"; the
"latent autoregressive model" of Zhang et al., "Dive into Deep Learning", §9.1):

    x (B, T) or (B, T, F) -> nn.LSTM / nn.GRU / nn.RNN, L layers (B, T, H) -> dropout
                          -> linear (B, T)          pred[:, t] estimates x_{t+1}

WindowForecaster — the fixed-window MLP (a nonlinear AR(W), the time-delay network of Lapedes
& Farber 1987 and Weigend, Huberman & Rumelhart 1990): x_{t+1} ≈ f(x_{t−W+1}, …, x_t).

    window (B, T, W) -> num_layers × [linear -> tanh] (B, T, H) -> dropout -> linear (B, T)

Its state is the last W − 1 values, zeros at the start of a stream, exactly like ARModel
(models/ar.py), so a chunk boundary loses nothing and `step` costs O(W).

Forecasting (Hyndman & Athanasopoulos, FPP3 §5.8, §13.8: one-step versus multi-step):
    one_step_forecast     teacher-forced: the prediction of x_t uses the true x_0 … x_{t−1}
    closed_loop_forecast  recursive (iterated) multi-step: each prediction is fed back as the
                          next input, so errors compound with the horizon
Both work with RNNForecaster, WindowForecaster and ARModel through forward / step alone.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError
from seqlab.config import ModelConfig
from seqlab.models.base import State, model_device
from seqlab.models.body import RECURRENT_NAMES, build_recurrent, init_recurrent_weights, run_recurrent, zero_state


class RNNForecaster(nn.Module):
    """init_state(B) -> (B, L, H) zeros, a pair of them for the LSTM (batch first, as everywhere
    in seqlab); forward(x (B, T) or (B, T, F), s) -> (pred (B, T), s); step(x_t (B,) or (B, F), s)
    -> (pred (B,), s). Input feature 0 is the value; `num_features` more are covariates."""

    def __init__(self, cell: str = "lstm", hidden_size: int = 32, num_layers: int = 1,
                 dropout: float = 0.0, num_features: int = 0, options: ModelConfig | None = None):
        """`options`: the cell's options (model.*, models/body.py); by default the plain cell."""
        super().__init__()
        if cell not in RECURRENT_NAMES:
            raise SeqlabError(f"unknown forecaster cell {cell!r}; valid: {', '.join(RECURRENT_NAMES)}")
        if hidden_size < 1 or num_layers < 1 or num_features < 0 or not 0 <= dropout < 1:
            raise SeqlabError(f"need hidden_size ≥ 1, num_layers ≥ 1, num_features ≥ 0 and dropout in [0, 1); "
                              f"got {hidden_size}, {num_layers}, {num_features}, {dropout}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.input_size = 1 + num_features
        # dropout between layers only: the recurrent path is never dropped (Zaremba et al. 2014)
        body = dataclasses.replace(options or ModelConfig(forget_bias=0.0), name=cell, hidden_size=hidden_size,
                                   num_layers=num_layers, dropout=dropout)
        self.body = body
        self.rnn = build_recurrent(body, self.input_size)                                # models/body.py
        init_recurrent_weights(self.rnn, body)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def extra_repr(self) -> str:
        return f"cell={self.cell!r}, input_size={self.input_size}"

    def init_state(self, batch_size: int) -> State:
        return zero_state(self.body, batch_size, self.num_layers, self.head.weight)    # (B, L, H)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        if x.dim() == 2:
            x = x.unsqueeze(-1)                                                      # (B, T, 1)
        if x.dim() != 3 or x.size(-1) != self.input_size:
            raise SeqlabError(f"forecaster input must be (B, T) or (B, T, {self.input_size}), got {tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.size(0))
        out, new = run_recurrent(self.rnn, x.to(self.head.weight.dtype), state)         # (B, T, H)
        pred = self.head(self.dropout(out)).squeeze(-1)                               # (B, T)
        return pred, new

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        # x_t: (B,) or (B, F) -> pred (B,): the estimate of the next value
        pred, state = self.forward(x_t.unsqueeze(1), state)
        return pred[:, 0], state


class WindowForecaster(nn.Module):
    """init_state(B) -> (B, W−1) zeros; forward(x (B, T), s) -> (pred (B, T), s), pred[:, t] from
    x[:, t−W+1 … t] (earlier values from the state); step(x_t (B,), s) -> (pred (B,), s).
    `receptive_field` = W."""

    def __init__(self, window: int, hidden_size: int = 32, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if window < 1 or hidden_size < 1 or num_layers < 0 or not 0 <= dropout < 1:
            raise SeqlabError(f"need window ≥ 1, hidden_size ≥ 1, num_layers ≥ 0 and dropout in [0, 1); "
                              f"got {window}, {hidden_size}, {num_layers}, {dropout}")
        self.window = self.receptive_field = int(window)
        sizes = [self.window] + [hidden_size] * num_layers
        self.hidden = nn.ModuleList(nn.Linear(sizes[i], sizes[i + 1]) for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(sizes[-1], 1)

    def extra_repr(self) -> str:
        return f"window={self.window}"

    def init_state(self, batch_size: int) -> Tensor:
        w = self.head.weight
        return torch.zeros(batch_size, self.window - 1, dtype=w.dtype, device=w.device)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, Tensor]:
        if x.dim() == 3 and x.size(-1) == 1:
            x = x.squeeze(-1)
        if x.dim() != 2:
            raise SeqlabError(f"the window forecaster takes a (B, T) series, got shape {tuple(x.shape)}")
        if state is None:
            state = self.init_state(x.size(0))
        full = torch.cat([state.to(self.head.weight), x.to(self.head.weight)], 1)   # (B, W−1+T)
        h = full.unfold(1, self.window, 1)                                           # (B, T, W) oldest first
        for layer in self.hidden:
            h = torch.tanh(layer(h))                                                 # (B, T, H)
        pred = self.head(self.dropout(h)).squeeze(-1)                                # (B, T)
        return pred, full[:, full.size(1) - (self.window - 1):]

    def step(self, x_t: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        pred, state = self.forward(x_t.unsqueeze(1), state)
        return pred[:, 0], state


# -- forecasting through the protocol -------------------------------------------------------

def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype a model computes in: its first floating parameter or buffer."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _inputs(model: nn.Module, series: np.ndarray, covariates) -> Tensor:
    # (1, N) values, or (1, N, 1 + C) with the covariates' first N rows beside them
    x = torch.as_tensor(series, dtype=model_dtype(model), device=model_device(model))[None]   # (1, N)
    if covariates is None:
        return x
    c = torch.as_tensor(np.asarray(covariates)[:series.size], dtype=x.dtype, device=x.device)[None]
    return torch.cat([x.unsqueeze(-1), c], -1)                                                # (1, N, 1+C)


def _check(series, covariates, needed: int) -> np.ndarray:
    x = np.asarray(series.detach().cpu() if isinstance(series, Tensor) else series, np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise SeqlabError(f"forecasting needs a 1-D finite series, got shape {x.shape}")
    if covariates is not None and (np.ndim(covariates) != 2 or len(covariates) < needed):
        raise SeqlabError(f"covariates must be a 2-D array with at least {needed} rows, got shape {np.shape(covariates)}")
    return x


@torch.no_grad()
def one_step_forecast(model: nn.Module, series, start: int, covariates=None) -> np.ndarray:
    """(N − start,) teacher-forced one-step forecasts of series[start:]: entry i predicts
    series[start + i] from the true series[:start + i] only (the model is causal, so the
    values from start + i on never reach it). `covariates`: (N, C) known features, if the
    model takes them."""
    x = _check(series, covariates, np.size(series))
    if int(start) != start or not 1 <= start <= x.size:
        raise SeqlabError(f"start must be in [1, {x.size}] (one value of history at least), got {start}")
    was_training = model.training
    model.eval()
    try:
        pred, _ = model(_inputs(model, x, covariates), model.init_state(1))        # (1, N)
    finally:
        model.train(was_training)
    return pred[0, start - 1:x.size - 1].double().cpu().numpy()


@torch.no_grad()
def closed_loop_forecast(model: nn.Module, history, horizon: int, covariates=None) -> np.ndarray:
    """(horizon,) recursive multi-step forecast after `history`: the model reads the true
    history, then each prediction becomes its next input. `covariates`: (len(history) +
    horizon, C) known features (e.g. the calendar), if the model takes them."""
    x = _check(history, covariates, np.size(history) + horizon)
    if int(horizon) != horizon or horizon < 0:
        raise SeqlabError(f"horizon must be a whole number ≥ 0, got {horizon}")
    if x.size == 0:
        raise SeqlabError("closed-loop forecasting needs at least one value of history")
    was_training = model.training
    model.eval()
    try:
        pred, state = model(_inputs(model, x, covariates), model.init_state(1))    # (1, N)
        out = [pred[:, -1]]                                                         # (1,) estimates x_N
        for h in range(1, int(horizon)):
            x_t = out[-1]                                                           # (1,) fed back
            if covariates is not None:
                row = torch.as_tensor(np.asarray(covariates)[x.size + h - 1], dtype=x_t.dtype, device=x_t.device)
                x_t = torch.cat([x_t, row])[None]                                   # (1, 1+C)
            nxt, state = model.step(x_t, state)                                     # (1,)
            out.append(nxt)
    finally:
        model.train(was_training)
    return torch.cat(out)[:int(horizon)].double().cpu().numpy()
