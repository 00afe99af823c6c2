"""Evaluation metrics: small functions, numpy in, a float out.

Forecast errors, for y (the truth) and ŷ (the forecast) over n test points:

    MAE  = mean |y − ŷ|
    RMSE = sqrt(mean (y − ŷ)²)
    MASE = MAE / mean_{t=m+1..N} |x_t − x_{t−m}|          over the training series x_1..x_N

MASE (Hyndman & Koehler 2006, "Another look at measures of forecast accuracy", IJF 22(4))
divides by the in-sample MAE of the one-step seasonal naive forecast x̂_t = x_{t−m} on the
training data (m = 1: the naive random walk). It is unit-free and defined whenever the
training series is not exactly m-periodic; MASE < 1 means the forecast's errors are smaller
than those the seasonal naive method makes, on average, one step ahead in sample.
"""
from __future__ import annotations

import numpy as np

from seqlab import SeqlabError


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, np.float64).reshape(-1)
    p = np.asarray(y_pred, np.float64).reshape(-1)
    if y.shape != p.shape:
        raise SeqlabError(f"truth and prediction differ in size: {y.size} and {p.size}")
    if y.size == 0:
        raise SeqlabError("cannot score an empty forecast")
    return y, p


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    y, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y - p)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    y, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((y - p) ** 2)))


def seasonal_naive_scale(y_train, period: int = 1) -> float:
    """The MASE denominator: mean |x_t − x_{t−m}| over the training series."""
    x = np.asarray(y_train, np.float64).reshape(-1)
    if int(period) != period or period < 1:
        raise SeqlabError(f"period must be a whole number ≥ 1, got {period}")
    if x.size <= period:
        raise SeqlabError(f"MASE needs more than {period} training values for period {period}, got {x.size}")
    scale = float(np.mean(np.abs(x[period:] - x[:-period])))
    if scale == 0.0:
        raise SeqlabError(f"MASE is undefined: the training series repeats exactly with period {period}")
    return scale


def mase(y_true, y_pred, y_train, period: int = 1) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006), scaled by the in-sample
    seasonal naive MAE on `y_train` with season length `period`."""
    return mae(y_true, y_pred) / seasonal_naive_scale(y_train, period)


def seasonal_naive(history, horizon: int, period: int = 1) -> np.ndarray:
    """(horizon,) the seasonal naive forecast: ŷ_{T+h} = x_{T+h−m·k}, k = ⌈h/m⌉, i.e. the
    last full season of the history repeated (period 1: the last value, the naive forecast)."""
    x = np.asarray(history, np.float64).reshape(-1)
    if int(period) != period or period < 1:
        raise SeqlabError(f"period must be a whole number ≥ 1, got {period}")
    if int(horizon) != horizon or horizon < 0:
        raise SeqlabError(f"horizon must be a whole number ≥ 0, got {horizon}")
    if x.size < period:
        raise SeqlabError(f"the seasonal naive forecast needs a full season of {period} values, got {x.size}")
    season = x[x.size - period:]                                                    # (m,)
    return season[np.arange(int(horizon)) % period].copy()
