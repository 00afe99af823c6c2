"""Fitting forecasters the way the forecast task and `seqlab bench forecast` both do: the
candidate transforms, AR(p) by AIC, averaged neural forecasters, their forecasts in original
units and their scores (the protocol is told in bench/forecast.py's docstring)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from seqlab.data.timeseries import SeriesTransform
from seqlab.models.ar import ARModel
from seqlab.models.forecasters import closed_loop_forecast, one_step_forecast
from seqlab.tasks.metrics import mae, mase, rmse


@dataclass
class Settings:
    seeds: int = 5                # networks averaged per neural forecaster
    steps: int = 1500             # most updates per network (early stopping ends most runs sooner)
    lr: float = 3e-3
    batch_size: int = 16
    hidden_size: int = 32
    length: int = 24              # predictions scored per chunk (the BPTT length)
    eval_every: int = 25
    patience: int = 12            # evaluations without improvement before stopping
    ar_max_order: int = 26


def transforms(values: np.ndarray, period: int) -> list[tuple[bool, tuple[int, ...]]]:
    lags = [(), (1,)] if period == 1 else [(1,), (period,), (1, period)]
    logs = (False, True) if np.all(values > 0) else (False,)
    return [(log, lag) for log in logs for lag in lags]


def fit_ar(u_train: np.ndarray, max_order: int) -> tuple[ARModel, list[float]]:
    """AR(p) with p by AIC over a common sample of N − max_order equations."""
    max_order = min(max_order, (u_train.size - 2) // 2)
    n = u_train.size - max_order
    aics = []
    for p in range(1, max_order + 1):
        model = ARModel(p).fit(u_train[max_order - p:])
        aics.append(n * np.log(model.residual_variance) + 2 * (p + 1))
    return ARModel(int(np.argmin(aics)) + 1).fit(u_train), aics


def forecasts(members: list, tf: SeriesTransform, series: np.ndarray, start: int, horizon: int):
    """(one-step (N − start,), closed-loop (horizon,)) in original units, averaged over members."""
    u_all = tf.apply(series)
    u_hist = tf.apply(series[:start])
    one = [tf.one_step_levels(one_step_forecast(m, u_all, start - tf.offset), series, start) for m in members]
    closed = [tf.closed_loop_levels(closed_loop_forecast(m, u_hist, horizon), series[:start]) for m in members]
    return np.mean(one, 0), np.mean(closed, 0)


def scores(truth: np.ndarray, one: np.ndarray, closed: np.ndarray, in_sample: np.ndarray, period: int) -> dict:
    return {f"{name}_{metric}": float(fn(truth, pred) if metric != "mase" else mase(truth, pred, in_sample, period))
            for name, pred in (("one_step", one), ("closed_loop", closed))
            for metric, fn in (("mae", mae), ("rmse", rmse), ("mase", None))}
