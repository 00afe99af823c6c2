"""Linear autoregression AR(p) for real-valued series, fitted by least squares.

    x_t = c + Σ_{j=1..p} φ_j x_{t-j} + e_t,        e_t ~ (0, σ²)

Buffers (float64, no gradients): `coef` (p,) with coef[j-1] = φ_j, the weight of lag j
(the order of statsmodels' AutoReg params after its constant), and `intercept` () = c
(0 and not fitted when fit_intercept=False).

`fit(series)` regresses x_t on (1, x_{t-1}, ..., x_{t-p}) for t = p..N-1 (conditional least
squares: the first p values are only regressors) with np.linalg.lstsq, and sets
`residual_variance` = RSS / (N - p), the maximum-likelihood σ² of those N - p equations
(statsmodels' AutoReg `sigma2`); the unbiased estimate is RSS / (N - p - k), with
k = p + fit_intercept coefficients.

Sequence-model shapes, like the token models but for values (output t predicts x_{t+1}):
    init_state(B)     -> (B, p) zeros: the last p values, oldest first (state[:, -1] is the
                         most recent). A fresh stream therefore starts from a zero history.
    forward(x, state) -> (pred (B, T), state (B, p)); pred[b, t] = c + Σ_j φ_j x[b, t+1-j],
                         the one-step prediction of x[b, t+1] from the last p values up to t
                         (values before the series come from the state).
    step(x_t, state)  -> (pred (B,), state)
Outputs and state have x's floating dtype (float64 for integer input); the arithmetic is in
that dtype. `predict_next(history)` / `forecast(history, steps)` are the numpy forms
(float64); a history shorter than p is zero-padded on the left, the same convention as
`init_state`, so predict_next(x[:t+1]) = forward(x)[t].
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from seqlab import SeqlabError


class ARModel(nn.Module):
    def __init__(self, order: int, fit_intercept: bool = True):
        super().__init__()
        if int(order) != order or order < 1:
            raise SeqlabError(f"AR order must be an integer ≥ 1, got {order}")
        self.order, self.fit_intercept = int(order), bool(fit_intercept)
        self.register_buffer("coef", torch.zeros(self.order, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros((), dtype=torch.float64))
        self.residual_variance = float("nan")
        self.n_obs = 0
        self.fitted = False

    def extra_repr(self) -> str:
        return f"order={self.order}, fit_intercept={self.fit_intercept}"

    # -- fitting -------------------------------------------------------------------------

    def design(self, series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(X (N-p, k), y (N-p,)): rows (1, x_{t-1}, ..., x_{t-p}) and targets x_t, t = p..N-1
        (no column of ones without an intercept)."""
        x = np.asarray(series, np.float64)
        p = self.order
        lags = np.lib.stride_tricks.sliding_window_view(x, p)[:-1, ::-1]               # (N-p, p)
        if self.fit_intercept:
            lags = np.hstack([np.ones((lags.shape[0], 1)), lags])
        return lags, x[p:]

    def fit(self, series: np.ndarray) -> "ARModel":
        x = np.asarray(series.cpu() if isinstance(series, Tensor) else series)
        if x.ndim != 1 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise SeqlabError(f"fit expects a 1-D real series, got shape {x.shape} {x.dtype}")
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise SeqlabError("the series contains NaN or infinite values")
        k = self.order + self.fit_intercept
        if x.size - self.order < k:
            raise SeqlabError(f"AR({self.order}) needs at least {self.order + k} values to fit, got {x.size}")
        X, y = self.design(x)
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        residuals = y - X @ beta
        intercept, coef = (beta[0], beta[1:]) if self.fit_intercept else (0.0, beta)
        self.coef.copy_(torch.from_numpy(np.ascontiguousarray(coef)))
        self.intercept.fill_(float(intercept))
        self.n_obs = int(y.size)
        self.residual_variance = float(residuals @ residuals / y.size)
        self.fitted = True
        return self

    # -- numpy prediction ----------------------------------------------------------------

    def _last_values(self, history) -> np.ndarray:
        h = np.asarray(history.cpu() if isinstance(history, Tensor) else history, np.float64).reshape(-1)
        h = h[-self.order:]
        return np.concatenate([np.zeros(self.order - h.size), h])                       # (p,) oldest first

    def predict_next(self, history) -> float:
        """The one-step prediction after a 1-D history (its last p values)."""
        recent = self._last_values(history)
        return float(self.intercept.item() + self.coef.cpu().numpy() @ recent[::-1])

    def forecast(self, history, steps: int) -> np.ndarray:
        """(steps,) closed-loop predictions: each prediction is fed back as the next value."""
        if steps < 0:
            raise SeqlabError(f"cannot forecast {steps} steps")
        window = list(self._last_values(history))
        coef, c = self.coef.cpu().numpy(), self.intercept.item()
        out = np.empty(steps)
        for h in range(steps):
            out[h] = c + coef @ np.asarray(window[::-1])
            window = window[1:] + [out[h]]
        return out

    # -- the sequence-model interface ---------------------------------------------------

    def init_state(self, batch_size: int) -> Tensor:
        return torch.zeros(batch_size, self.order, dtype=torch.float64, device=self.coef.device)

    def forward(self, x: Tensor, state: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 2:
            raise SeqlabError(f"forward expects a (B, T) series, got shape {tuple(x.shape)}")
        dtype = x.dtype if x.is_floating_point() else torch.float64
        if state is None:
            state = self.init_state(x.size(0))
        full = torch.cat([state.to(x.device, dtype), x.to(dtype)], 1)                  # (B, p+T)
        windows = full.unfold(1, self.order, 1)[:, 1:]                                  # (B, T, p) oldest first
        weights = self.coef.flip(0).to(x.device, dtype)                                 # (p,) lag p .. lag 1
        pred = windows @ weights + self.intercept.to(x.device, dtype)                   # (B, T)
        return pred, full[:, full.size(1) - self.order:].clone()

    def step(self, x_t: Tensor, state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        pred, state = self.forward(x_t[:, None], state)
        return pred[:, 0], state
