"""Judging a forecaster: the validation loss the forecast task trains against (mean squared
error of the one-step, or closed-loop, forecasts of the validation part after the training
part), and the forecast-versus-truth plot.

The validation series must be the continuation of the training series: it is forecast with
the training part as its past.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
from torch import nn

from seqlab import SeqlabError
from seqlab.models.forecasters import closed_loop_forecast, one_step_forecast
from seqlab.training.plots import pyplot, save_figure


def validation_loss(model: nn.Module, train_series: np.ndarray, valid_series: np.ndarray,
                    how: str = "one_step", covariates=None) -> float:
    """Mean squared error on the validation part, forecast after the training part."""
    if how == "one_step":
        series = np.concatenate([train_series, valid_series])
        pred = one_step_forecast(model, series, train_series.size, covariates)
    elif how == "closed_loop":
        pred = closed_loop_forecast(model, train_series, valid_series.size, covariates)
    else:
        raise SeqlabError(f"unknown validation loss {how!r}; valid: one_step, closed_loop")
    return float(np.mean((pred - valid_series) ** 2))


def plot_forecast(path, history, truth, one_step=None, closed_loop=None, title: str = "",
                  show_last: Optional[int] = None) -> None:
    """PNG: the history and the truth after it, with one-step forecasts (top panel) and
    closed-loop forecasts (bottom panel) of the truth's span. `one_step` / `closed_loop`: one
    array or a {label: array} mapping; `show_last`: how much history to draw (all by default).
    `truth` None draws forecasts of the unknown future (their length sets the span).
    Written atomically (seqlab.io.atomic_path)."""
    plt = pyplot()

    past = np.asarray(history, np.float64).reshape(-1)
    future = next((np.asarray(c if not isinstance(c, Mapping) else next(iter(c.values()))).size
                   for c in (one_step, closed_loop) if c is not None), 0)
    real = np.asarray(truth, np.float64).reshape(-1) if truth is not None else np.full(future, np.nan)
    shown = past[past.size - min(show_last or past.size, past.size):]
    t_past = np.arange(past.size - shown.size, past.size)
    t_future = np.arange(past.size, past.size + real.size)

    def labelled(curves) -> Mapping[str, np.ndarray]:
        if curves is None:
            return {}
        return dict(curves) if isinstance(curves, Mapping) else {"forecast": curves}

    panels = [(name, labelled(c)) for name, c in (("one-step (teacher-forced)", one_step),
                                                  ("closed loop (predictions fed back)", closed_loop)) if c is not None]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(8, 3.2 * max(len(panels), 1)), dpi=100,
                             sharex=True, squeeze=False)
    for ax, (name, curves) in zip(axes[:, 0], panels or [("", {})]):
        ax.plot(t_past, shown, color="0.55", lw=1.2, label="history")
        if truth is not None:
            ax.plot(t_future, real, color="black", lw=1.6, label="truth")
        for label, values in curves.items():
            values = np.asarray(values, np.float64).reshape(-1)
            if values.size != real.size:
                raise SeqlabError(f"forecast {label!r} has {values.size} values for {real.size} true ones")
            ax.plot(t_future, values, lw=1.2, label=label)
        ax.axvline(past.size - 0.5, color="0.7", ls=":", lw=1)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("time step")
    save_figure(fig, path, title)
