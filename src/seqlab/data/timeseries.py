"""Real-valued series for forecasting: chronological splits, scaling, differencing, windows.

Dimension legend: N values in a series, L window length, H horizon (targets per window).

Everything here is chronological: a split never shuffles time, the scaler's statistics come
from the training part only, and a window's targets always lie after its inputs, so no
value from the validation or test part leaks into what a model is fitted on
(Hyndman & Athanasopoulos, "Forecasting: Principles and Practice", 3rd ed., §5.8).

    split_fraction(x, valid=0.1, test=0.1)   train | valid | test by fractions of N
    split_horizon(x, test=24, valid=12)      the last `test` values, the `valid` before them
    Scaler(log=...).fit(train)               z = (f(x) − mean) / std,  f = log or identity
    difference(z, lag) / integrate(d, z, lag)  d_t = z_t − z_{t−lag}, and its inverse
    windows(x, L, H)                         inputs (N−L−H+1, L), targets (N−L−H+1, H)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqlab import SeqlabError


def as_series(values, name: str = "series") -> np.ndarray:
    """A 1-D finite float64 copy of `values` (list, numpy array or tensor)."""
    x = values.detach().cpu().numpy() if isinstance(values, Tensor) else values
    x = np.array(x, dtype=np.float64)
    if x.ndim != 1:
        raise SeqlabError(f"{name} must be 1-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise SeqlabError(f"{name} contains NaN or infinite values")
    return x


# -- chronological splits ------------------------------------------------------------------

@dataclass(frozen=True)
class Splits:
    """Consecutive parts of one series: train, then valid, then test (each 1-D float64)."""
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def history(self) -> np.ndarray:
        """Everything before the test part (train + valid): the forecast origin's past."""
        return np.concatenate([self.train, self.valid])


def split_horizon(values, test: int, valid: int = 0) -> Splits:
    """Hold out the final `test` values, and the `valid` values just before them."""
    x = as_series(values)
    if int(test) != test or int(valid) != valid or test < 0 or valid < 0:
        raise SeqlabError(f"test and valid must be whole numbers ≥ 0, got {test} and {valid}")
    train_end = x.size - test - valid
    if train_end < 2:
        raise SeqlabError(f"a series of {x.size} values leaves {train_end} for training after "
                          f"{valid} validation and {test} test values")
    return Splits(x[:train_end], x[train_end:x.size - test], x[x.size - test:])


def split_fraction(values, valid: float = 0.1, test: float = 0.1) -> Splits:
    """Chronological split by fractions: the last `test`·N values, the `valid`·N before them
    (each rounded to the nearest whole value)."""
    x = as_series(values)
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise SeqlabError(f"valid and test fractions must be in [0, 1) with a sum below 1, got {valid} and {test}")
    return split_horizon(x, int(round(test * x.size)), int(round(valid * x.size)))


# -- scaling -------------------------------------------------------------------------------

class Scaler:
    """Standardise with training-only statistics, optionally after a log transform.

        forward:  z = (f(x) − mean) / std        f = log if `log` else the identity
        inverse:  x = f⁻¹(z · std + mean)

    `log=True` is for multiplicative series, whose seasonal swing grows with the level (the
    airline passengers of Box & Jenkins 1976, ch. 9): on the log scale the swing becomes
    additive and its variance stable. It needs strictly positive values. A constant training
    series gets std 1, so the transform stays invertible. Works on numpy arrays and tensors;
    `to_dict` / `from_dict` give a plain dict for JSON.
    """

    def __init__(self, log: bool = False, mean: float = 0.0, std: float = 1.0):
        self.log, self.mean, self.std = bool(log), float(mean), float(std)

    def fit(self, train) -> "Scaler":
        f = self._f(as_series(train, "the training series"))
        if f.size == 0:
            raise SeqlabError("cannot fit a scaler on an empty series")
        self.mean = float(f.mean())
        std = float(f.std())
        self.std = std if std > 0 else 1.0
        return self

    def _f(self, x):
        if not self.log:
            return x
        if (x <= 0).any():
            raise SeqlabError("log scaling needs strictly positive values")
        return torch.log(x) if isinstance(x, Tensor) else np.log(x)

    def transform(self, x):
        """numpy array or tensor -> the same type, scaled."""
        if not isinstance(x, Tensor):
            x = np.asarray(x, np.float64)
        return (self._f(x) - self.mean) / self.std

    def inverse(self, z):
        """The inverse of `transform`: scaled values back to the original units."""
        if not isinstance(z, Tensor):
            z = np.asarray(z, np.float64)
        y = z * self.std + self.mean
        if not self.log:
            return y
        return torch.exp(y) if isinstance(y, Tensor) else np.exp(y)

    def to_dict(self) -> dict:
        return {"log": self.log, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        unknown = set(d) - {"log", "mean", "std"}
        if unknown:
            raise SeqlabError(f"unknown scaler keys {sorted(unknown)}; valid: log, mean, std")
        if not (math.isfinite(d.get("mean", 0.0)) and math.isfinite(d.get("std", 1.0)) and d.get("std", 1.0) > 0):
            raise SeqlabError(f"scaler mean and std must be finite with std > 0, got {d}")
        return cls(**d)

    def __repr__(self) -> str:
        return f"Scaler(log={self.log}, mean={self.mean:.6g}, std={self.std:.6g})"


# -- differencing --------------------------------------------------------------------------

def difference(x, lag: int = 1) -> np.ndarray:
    """(N − lag,) d_t = x_t − x_{t−lag}: lag 1 removes a trend, lag = the period removes a
    stable seasonal pattern (Box & Jenkins 1976, §9.1: ∇ and ∇_s)."""
    x = as_series(x)
    if int(lag) != lag or lag < 1 or lag >= x.size:
        raise SeqlabError(f"difference lag must be a whole number in [1, {x.size - 1}], got {lag}")
    return x[lag:] - x[:-lag]


def integrate(diffs, history, lag: int = 1) -> np.ndarray:
    """Undo `difference` going forward: the values after `history` whose lag-differences are
    `diffs`, x_{T+h} = x_{T+h−lag} + d_{T+h}, where x_{T+h−lag} is itself an integrated value
    once h > lag. Feeding predicted differences gives the closed-loop level forecast."""
    d = as_series(diffs, "diffs")
    past = as_series(history, "history")
    if past.size < lag:
        raise SeqlabError(f"integrating lag-{lag} differences needs at least {lag} past values, got {past.size}")
    out = np.concatenate([past[past.size - lag:], np.empty(d.size)])               # (lag + H,)
    for h in range(d.size):
        out[lag + h] = out[h] + d[h]
    return out[lag:]


# -- windows -------------------------------------------------------------------------------

def windows(series, length: int, horizon: int = 1, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Sliding windows for the window MLP (many-to-one):

        inputs[i]  = x[i : i+L]            (N−L−H+1, L)
        targets[i] = x[i+L : i+L+H]        (N−L−H+1, H)   the next H values
    """
    x = torch.as_tensor(as_series(series), dtype=dtype)                             # (N,)
    if int(length) != length or int(horizon) != horizon or length < 1 or horizon < 1:
        raise SeqlabError(f"window length and horizon must be whole numbers ≥ 1, got {length} and {horizon}")
    if x.numel() < length + horizon:
        raise SeqlabError(f"a series of {x.numel()} values has no window of {length} inputs and {horizon} targets")
    frames = x.unfold(0, length + horizon, 1)                                      # (N−L−H+1, L+H)
    return frames[:, :length].contiguous(), frames[:, length:].contiguous()


# -- the whole transform: scale, difference, standardise ------------------------------------

class SeriesTransform:
    """What a forecaster sees, and how its forecasts come back to the original units:

        z = Scaler(log).transform(x)          log (optional) and standardise the levels
        d = ∇_{lags} z                        e.g. lags (1, 12): ∇∇₁₂, the differencing of
                                              Box & Jenkins' airline model (1976, §9.2)
        u = (d − mean_d) / std_d              standardise the differences

    Every statistic comes from the training part (`fit`). A model fitted on u predicts
    û_t; since each ∇ is z_t minus earlier values, û_t − u_t maps to ẑ_t − z_t exactly, so a
    one-step forecast in u becomes a one-step forecast of x (`one_step_levels`), and a
    closed-loop forecast in u integrates into one of x (`closed_loop_levels`). `offset` =
    Σ lags values are lost at the start: u[i] belongs to x[i + offset].
    """

    def __init__(self, log: bool = False, lags: tuple[int, ...] = (), level: Scaler | None = None,
                 change: Scaler | None = None):
        if any(int(lag) != lag or lag < 1 for lag in lags):
            raise SeqlabError(f"difference lags must be whole numbers ≥ 1, got {tuple(lags)}")
        self.lags = tuple(int(lag) for lag in lags)
        self.level = level or Scaler(log=log)
        self.change = change or Scaler()
        self.offset = sum(self.lags)

    def _diff(self, z: np.ndarray) -> np.ndarray:
        for lag in self.lags:
            z = difference(z, lag)
        return z

    def fit(self, train) -> "SeriesTransform":
        x = as_series(train, "the training series")
        if x.size <= self.offset + 1:
            raise SeqlabError(f"differencing with lags {self.lags} needs more than {self.offset + 1} training values")
        self.level.fit(x)
        self.change.fit(self._diff(self.level.transform(x)))
        return self

    def apply(self, x) -> np.ndarray:
        """(N − offset,) the model's series u."""
        return self.change.transform(self._diff(self.level.transform(as_series(x))))

    def one_step_levels(self, u_pred, series, start: int) -> np.ndarray:
        """(N − start,) one-step forecasts of series[start:] in original units, from û =
        one_step_forecast(model, apply(series), start − offset)."""
        z = self.level.transform(as_series(series))
        d = self._diff(z)
        d_pred = self.change.inverse(as_series(u_pred, "u_pred"))
        if d_pred.size != z.size - start or start < self.offset + 1:
            raise SeqlabError(f"expected {z.size - start} one-step forecasts from start {start} ≥ {self.offset + 1}, "
                              f"got {d_pred.size}")
        # z_t − d_t depends on z before t only; adding the predicted difference gives ẑ_t
        return self.level.inverse(z[start:] - d[start - self.offset:] + d_pred)

    def closed_loop_levels(self, u_pred, history) -> np.ndarray:
        """(H,) the closed-loop forecast after `history` in original units, from û =
        closed_loop_forecast(model, apply(history), H)."""
        pasts = [self.level.transform(as_series(history))]                      # z, ∇z, ∇∇z, ...
        for lag in self.lags[:-1]:
            pasts.append(difference(pasts[-1], lag))
        pred = self.change.inverse(as_series(u_pred, "u_pred"))
        for lag, past in zip(reversed(self.lags), reversed(pasts)):
            pred = integrate(pred, past, lag)
        return self.level.inverse(pred)

    def to_dict(self) -> dict:
        return {"lags": list(self.lags), "level": self.level.to_dict(), "change": self.change.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "SeriesTransform":
        return cls(lags=tuple(d["lags"]), level=Scaler.from_dict(d["level"]), change=Scaler.from_dict(d["change"]))

    def __repr__(self) -> str:
        return f"SeriesTransform(log={self.level.log}, lags={self.lags})"
