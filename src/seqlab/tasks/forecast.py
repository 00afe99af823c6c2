"""`seqlab train task=forecast`: one real-valued series, one forecaster, a run directory.

    seqlab data fetch series
    seqlab train task=forecast data=airline model=lstm --out runs/airline
    seqlab forecast runs/airline --steps 36 --plot airline.png

Models: `lstm`, `gru`, `rnn` (RNNForecaster: the value at t in, x_{t+1} out, latent
autoregressive), `window` (the MLP over the last model.context values) and `ar` (AR(p) by
least squares; p = task.ar_order, or chosen by AIC when 0).

The protocol is the forecasting benchmark's (bench/forecast.py): the last task.horizon
values are the test horizon, the task.horizon before them the validation part; the series
transform (log, differencing, standardising) is task.transform or, with `auto`, the
candidate with the best validation MASE; early stopping on the validation loss. The test
horizon is forecast once, one-step and closed-loop, and scored with MAE, RMSE and MASE
beside the seasonal naive forecast.

A forecaster trains in seconds, so a run is not resumable: train it again instead.
The run holds config.json, model.safetensors (weights or AR coefficients), task.json (the
series, its transform and the scores) and forecast.png.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.timeseries import SeriesTransform, split_horizon
from seqlab.data.vocab import Vocab
from seqlab.io import atomic_write_text
from seqlab.models.forecasters import RNNForecaster, WindowForecaster
from seqlab.registry import register
from seqlab.tasks.base import Task

SERIES = ("airline", "co2", "sunspots", "nile", "msft")
DEFAULT_HORIZON = {"airline": 24, "co2": 36, "sunspots": 30, "nile": 10, "msft": 250}


@register("task", "forecast")
class ForecastTask(Task):
    name = "forecast"
    models = ("lstm", "gru", "rnn", "window", "ar")
    model_options = {"ar": (), "window": ("context", "hidden_size", "num_layers", "dropout"),
                     "*": ("hidden_size", "num_layers", "dropout")}       # plain nn.LSTM / GRU / RNN
    datasets = SERIES

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.task.horizon < 0 or cfg.task.ar_order < 0:
            raise SeqlabError("task.horizon and task.ar_order must be 0 or more")
        parse_transform(cfg.task.transform)


def parse_transform(text: str) -> tuple[bool, tuple[int, ...]] | None:
    """'auto' -> None; 'none' -> (False, ()); 'log,1,12' -> (True, (1, 12))."""
    text = text.strip().lower()
    if text == "auto":
        return None
    parts = [p.strip() for p in text.split(",") if p.strip() and p.strip() != "none"]
    use_log = "log" in parts
    try:
        lags = tuple(int(p) for p in parts if p != "log")
    except ValueError:
        raise SeqlabError(f"task.transform must be 'auto', 'none' or like 'log,1,12' (log, then difference "
                          f"lags); got {text!r}") from None
    if any(lag < 1 for lag in lags):
        raise SeqlabError(f"task.transform: difference lags must be 1 or more, got {lags}")
    return use_log, lags


def load_series(cfg: Config) -> tuple[str, np.ndarray, int]:
    """(name, values, seasonal period) from data.corpus or a file of numbers (data.path)."""
    d = cfg.data
    if d.path:
        from seqlab.data.sources import read_path
        values = []
        for n, line in enumerate(read_path(d.path).splitlines(), 1):
            cell = line.replace(";", ",").split(",")[-1].strip()
            if not cell:
                continue
            try:
                values.append(float(cell))
            except ValueError:
                if values:       # a header is allowed on the first line only
                    raise SeqlabError(f"{d.path}:{n}: not a number: {cell!r} (one value per line, "
                                      f"or CSV with the value in the last column)") from None
        return Path(d.path).stem, np.asarray(values, dtype=np.float64), max(cfg.task.period, 1)
    from seqlab.data.datasets import dataset
    series = dataset("series").load()[d.corpus]
    return d.corpus, series.values, cfg.task.period or series.period


def build_forecaster(cfg: Config, order: int = 1) -> nn.Module:
    m = cfg.model
    if m.name == "ar":
        from seqlab.models.ar import ARModel
        return ARModel(order)
    if m.name == "window":
        return WindowForecaster(m.context, m.hidden_size, m.num_layers, m.dropout)
    return RNNForecaster(m.name, m.hidden_size, m.num_layers, m.dropout)


def fit_forecast(cfg: Config | None, out: str | Path, *, resume: bool = False, overrides: Config | None = None,
                 overwrite: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    from seqlab.train.runfolder import writing_run
    if resume:
        raise SeqlabError("a forecaster trains in seconds and is not resumable; train it again instead")
    with writing_run(Path(out), fresh=True, overwrite=overwrite):          # one writer at a time
        return _fit_forecast(cfg, out, overwrite, log)


def _fit_forecast(cfg: Config | None, out: str | Path, overwrite: bool, log: Callable[[str], None]) -> dict[str, float]:
    from seqlab.tasks.forecast_fit import Settings, fit_ar, forecasts, scores, transforms
    from seqlab.tasks.forecast_train import plot_forecast, train_forecaster
    from seqlab.tasks.metrics import seasonal_naive
    from seqlab.train.checkpoint import BEST, RunDir
    from seqlab.train.fit import prepare_out
    from seqlab.train.threads import ThreadPolicy

    assert cfg is not None
    t, task = cfg.train, cfg.task
    ThreadPolicy(t.threads).settle()         # a forecaster trains in seconds: one reading will do
    name, values, period = load_series(cfg)
    horizon = task.horizon or DEFAULT_HORIZON.get(name, max(1, values.size // 10))
    if values.size < 3 * horizon + 2 * period + 4:
        raise SeqlabError(f"{name}: {values.size} values are too few for a test and a validation horizon of "
                          f"{horizon} each; set a smaller task.horizon")
    splits = split_horizon(values, horizon, horizon)
    train, history = splits.train, splits.history
    fixed = parse_transform(task.transform)
    candidates = [fixed] if fixed else transforms(values, period)
    run = RunDir(Path(out))
    prepare_out(run.path, overwrite)
    run.save_meta(cfg, Vocab([], "word"), name)
    log(f"forecast {name}: {values.size} values, period {period} | train {train.size} / valid {horizon} / "
        f"test {horizon} | {cfg.model.name} | run {run.path}")
    started = time.perf_counter()
    best: tuple[float, Any, Any, dict] | None = None
    for use_log, lags in candidates:
        tf = SeriesTransform(use_log, lags).fit(train)
        u_train, u_hist = tf.apply(train), tf.apply(history)
        u_valid = u_hist[train.size - tf.offset:]
        torch.manual_seed(t.seed)
        if cfg.model.name == "ar":
            model = fit_ar(u_train, task.ar_order or 2 * period + 2)[0] if not task.ar_order else \
                build_forecaster(cfg, task.ar_order).fit(u_train)
        else:
            model = build_forecaster(cfg)
            train_forecaster(model, u_train, u_valid, steps=t.max_steps or Settings.steps, lr=t.lr,
                             batch_size=t.batch_size, seed=t.seed, clip_norm=t.clip_norm,
                             weight_decay=t.weight_decay, eval_every=t.eval_every, patience=t.early_stop or 10**9,
                             warmup=max(period, 4) if cfg.model.name != "window" else None)
        one, closed = forecasts([model], tf, history, train.size, horizon)
        v = scores(splits.valid, one, closed, train, period)
        score = (v["one_step_mase"] + v["closed_loop_mase"]) / 2
        log(f"  transform {describe(tf)}: valid MASE one-step {v['one_step_mase']:.3f}, "
            f"closed-loop {v['closed_loop_mase']:.3f}")
        if best is None or score < best[0]:
            best = (score, tf, model, v)
    assert best is not None
    _, tf, model, valid_scores = best
    one, closed = forecasts([model], tf, values, history.size, horizon)
    test_scores = scores(splits.test, one, closed, history, period)
    naive = scores(splits.test, values[history.size - period:values.size - period],
                   seasonal_naive(history, horizon, period), history, period)
    meta = {"series": name, "values": values.tolist(), "period": period, "horizon": horizon,
            "transform": tf.to_dict(), "order": int(getattr(model, "order", 0)),
            "valid": valid_scores, "test": test_scores, "seasonal_naive_test": naive}
    atomic_write_text(run.file("task.json"), json.dumps(meta) + "\n")
    run.save_weights(model, BEST, {"step": 0})
    plot_forecast(run.file("forecast.png"), history, splits.test, {cfg.model.name: one}, {cfg.model.name: closed},
                  show_last=4 * horizon, title=f"{name}: {cfg.model.name}, last {horizon} values held out")
    with open(run.file("metrics.jsonl"), "w", encoding="utf-8") as f:
        f.write(json.dumps({"step": 0, "split": "valid", **valid_scores}) + "\n")
        f.write(json.dumps({"step": 0, "split": "test", **test_scores, "seconds": time.perf_counter() - started}) + "\n")
    log(f"kept transform {describe(tf)}; test horizon ({horizon}): one-step MASE {test_scores['one_step_mase']:.3f}, "
        f"closed-loop MASE {test_scores['closed_loop_mase']:.3f} (seasonal naive: {naive['one_step_mase']:.3f} / "
        f"{naive['closed_loop_mase']:.3f}) | plot {run.file('forecast.png')}")
    return test_scores


def describe(tf: SeriesTransform) -> str:
    parts = (["log"] if tf.level.log else []) + [f"∇{lag}" for lag in tf.lags]
    return " ".join(parts) or "levels"


def load_forecaster(run_path: str | Path) -> tuple[Config, dict, nn.Module]:
    from seqlab.train.checkpoint import RunDir
    run = RunDir(Path(run_path)).require()
    cfg = run.config()
    try:
        meta = json.loads(run.file("task.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SeqlabError(f"{run.file('task.json')} is missing or corrupted ({e})") from None
    model = build_forecaster(cfg, max(meta.get("order", 1), 1))
    run.load_weights(model, finite=True)
    return cfg, meta, model.eval()


def forecast_future(run_path: str | Path, steps: int) -> tuple[dict, np.ndarray]:
    """The closed-loop forecast of `steps` values after the end of the run's series."""
    from seqlab.models.forecasters import closed_loop_forecast
    _, meta, model = load_forecaster(run_path)
    values = np.asarray(meta["values"])
    tf = SeriesTransform.from_dict(meta["transform"])
    with torch.no_grad():
        u = closed_loop_forecast(model, tf.apply(values), steps)
    return meta, tf.closed_loop_levels(u, values)
