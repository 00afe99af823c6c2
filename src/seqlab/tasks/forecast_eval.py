"""Training a forecaster on one series, and the forecast-versus-truth plot.

`train_forecaster` fits any gradient-trained model of the sequence-model protocol
(RNNForecaster, WindowForecaster) to predict x_{t+1} from x_0 … x_t with the squared error:

1. each update draws `batch_size` chunks of `warmup + length + 1` consecutive training values
   (a fixed-seed generator, so a run is reproducible);
2. the model reads a chunk's first `warmup + length` values from a fresh state; the loss is
   the mean squared error of its last `length` predictions: the first `warmup` only fill
   the state (a window model's zero padding, an RNN's zero state), like a burn-in;
3. gradients are clipped to `clip_norm`, which stops a rare exploding step from undoing
   the fit (Pascanu, Mikolov & Bengio 2013);
4. every `eval_every` updates the validation loss is measured — the mean squared error of
   the one-step forecasts of the validation part after the whole training part (or, with
   valid_loss="closed_loop", of the recursive forecast of the whole validation part) —
   and training stops when it has not improved for `patience` evaluations; the weights of
   the best evaluation are restored (early stopping, Prechelt 1998).

The validation series must be the continuation of the training series: it is forecast with
the training part as its past.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Mapping, Optional

import numpy as np
import torch
from torch import nn

from seqlab import SeqlabError
from seqlab.models.forecasters import closed_loop_forecast, model_dtype, one_step_forecast


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


def train_forecaster(model: nn.Module, train_series, valid_series, *, steps: int = 1000, lr: float = 1e-2,
                     length: int = 24, warmup: Optional[int] = None, batch_size: int = 16, seed: int = 0,
                     clip_norm: float = 1.0, weight_decay: float = 0.0, eval_every: int = 25,
                     patience: int = 10, valid_loss: str = "one_step", covariates=None,
                     log: Optional[Callable[[str], None]] = None) -> dict:
    """Fit `model` in place; return {"best_valid_loss", "best_step", "steps_run", "history"}.

    length: predictions scored per chunk (the truncated-BPTT length for an RNN); warmup:
    values read before them (default: the model's `receptive_field` − 1, else 0);
    covariates: (len(train) + len(valid), C) known features aligned with the series, for a
    model that takes them; history: [{"step", "train_loss", "valid_loss"}] per evaluation.
    """
    train = np.asarray(train_series, np.float64).reshape(-1)
    valid = np.asarray(valid_series, np.float64).reshape(-1)
    if warmup is None:
        warmup = getattr(model, "receptive_field", 1) - 1
    chunk = warmup + length + 1
    if length < 1 or warmup < 0 or batch_size < 1 or steps < 1 or eval_every < 1 or patience < 1:
        raise SeqlabError("length, batch_size, steps, eval_every and patience must be ≥ 1 and warmup ≥ 0")
    if train.size < chunk:
        raise SeqlabError(f"the training series has {train.size} values; one chunk needs {chunk} "
                          f"(warmup {warmup} + length {length} + 1)")
    if valid.size == 0:
        raise SeqlabError("early stopping needs a non-empty validation series")
    if covariates is not None and len(covariates) < train.size + valid.size:
        raise SeqlabError(f"covariates need {train.size + valid.size} rows (train + valid), got {len(covariates)}")

    torch.manual_seed(seed)                       # dropout masks
    rng = np.random.default_rng(seed)             # chunk positions
    dtype, device = model_dtype(model), next(model.parameters()).device
    series = torch.as_tensor(train, dtype=dtype, device=device)                       # (N,)
    frames = series.unfold(0, chunk, 1)                                               # (N−chunk+1, chunk)
    extra = None
    if covariates is not None:
        c = torch.as_tensor(np.asarray(covariates)[:train.size], dtype=dtype, device=device)   # (N, C)
        extra = c.unfold(0, chunk, 1).transpose(1, 2)                                 # (N−chunk+1, chunk, C)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    best = {"loss": math.inf, "step": 0, "weights": copy.deepcopy(model.state_dict())}
    history, since_best, running, step = [], 0, [], 0
    model.train()
    for step in range(1, steps + 1):
        rows = torch.as_tensor(rng.integers(0, frames.size(0), batch_size), device=device)
        batch = frames[rows]                                                          # (B, chunk)
        inputs, targets = batch[:, :-1], batch[:, 1:]                                 # (B, chunk−1) each
        if extra is not None:
            inputs = torch.cat([inputs.unsqueeze(-1), extra[rows, :-1]], -1)          # (B, chunk−1, 1+C)
        pred, _ = model(inputs, model.init_state(batch_size))                         # (B, chunk−1)
        loss = (pred[:, warmup:] - targets[:, warmup:]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        running.append(loss.item())

        if step % eval_every == 0 or step == steps:
            v = validation_loss(model, train, valid, valid_loss, covariates)
            history.append({"step": step, "train_loss": float(np.mean(running)), "valid_loss": v})
            running = []
            if v < best["loss"]:
                best, since_best = {"loss": v, "step": step, "weights": copy.deepcopy(model.state_dict())}, 0
            else:
                since_best += 1
            if log:
                log(f"step {step:5d}  train {history[-1]['train_loss']:.5f}  valid {v:.5f}"
                    + ("  *" if since_best == 0 else ""))
            if since_best >= patience:
                break
    model.load_state_dict(best["weights"])
    model.eval()
    return {"best_valid_loss": best["loss"], "best_step": best["step"], "steps_run": step, "history": history}


def plot_forecast(path, history, truth, one_step=None, closed_loop=None, title: str = "",
                  show_last: Optional[int] = None) -> None:
    """PNG: the history and the truth after it, with one-step forecasts (top panel) and
    closed-loop forecasts (bottom panel) of the truth's span. `one_step` / `closed_loop`: one
    array or a {label: array} mapping; `show_last`: how much history to draw (all by default).
    `truth` None draws forecasts of the unknown future (their length sets the span).
    Written atomically (seqlab.io.atomic_path)."""
    from seqlab.train.plots import pyplot, save_figure
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
