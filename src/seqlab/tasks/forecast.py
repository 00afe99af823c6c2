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

The networks train through the one engine (training/engine.py), resumable like any run: each
update draws train.batch_size chunks of `warmup + 24 + 1` consecutive training values from
(train.seed, epoch, update), reads the first `warmup + 24` from a fresh state (warmup: the
season, or the window's W - 1, only fills the state) and scores the last 24 predictions by
squared error; an epoch is 150 updates (chunks are drawn with replacement); validation is the
squared error of the one-step forecasts of the validation part. With task.transform=auto
every candidate transform is its own run in RUN/candidates/ and the one with the best
validation MASE is kept. AR(p) is fitted by least squares in one pass.
The run holds config.json, model.safetensors (weights or AR coefficients), task.json (the
series, its transform and the scores) and forecast.png.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from seqlab import SeqlabError
from seqlab.config import Config
from seqlab.data.datasets import dataset
from seqlab.data.sources import read_path
from seqlab.data.timeseries import SeriesTransform, split_horizon
from seqlab.io import atomic_write_text
from seqlab.models.ar import ARModel
from seqlab.models.body import body_options
from seqlab.models.forecasters import RNNForecaster, WindowForecaster, closed_loop_forecast
from seqlab.registry import register
from seqlab.tasks.forecast_eval import plot_forecast, validation_loss
from seqlab.tasks.forecast_fit import fit_ar, forecasts, scores, transforms
from seqlab.tasks.metrics import seasonal_naive
from seqlab.training.checkpoint import RunDir
from seqlab.training.select import unfinished_selection
from seqlab.training.task import Opened, Task

SERIES = ("airline", "co2", "sunspots", "nile", "msft")
DEFAULT_HORIZON = {"airline": 24, "co2": 36, "sunspots": 30, "nile": 10, "msft": 250}


@register("task", "forecast")
class ForecastTask(Task):
    name = "forecast"
    offers = ("forecast",)

    @classmethod
    def open_run(cls, path, device_name: str, checkpoint: str | None = None) -> Opened:
        if checkpoint is not None:
            raise SeqlabError(f"{path} is a forecast run: it keeps the model chosen on validation, not checkpoints")
        cfg, meta, model = load_forecaster(path)        # small models: always on the CPU
        return Opened(cfg, model, torch.device("cpu"), meta=meta)

    @classmethod
    def evaluate_run(cls, path, opened: Opened, split: str, log, streams: int | None = None) -> dict[str, Any]:
        """The test horizon's scores, as training computed them (the model is refitted per series)."""
        meta = opened.meta
        if split != "test":
            raise SeqlabError("a forecast run is scored on its test horizon only; use --split test "
                              "(split='test' in Python)")
        return {"horizon": meta["horizon"], **meta["test"],
                **{f"seasonal_naive_{k}": v for k, v in meta["seasonal_naive_test"].items()}}
    models = ("lstm", "gru", "rnn", "window", "ar")
    model_options = {"ar": (), "window": ("context", "hidden_size", "num_layers", "dropout"),
                     "*": lambda c: tuple(dict.fromkeys(body_options(c.model) + ("dropout",)))}  # + output dropout
    datasets = SERIES
    task_options = {"ar": ("horizon", "transform", "period", "ar_order"), "*": ("horizon", "transform", "period")}
    unit, rate = "values", "values_per_s"
    select_metric = "valid_mase"     # of the candidate transforms, the best validation MASE is kept
    length = 24                      # predictions scored per chunk (the truncated-BPTT length)
    updates_per_epoch = 150

    def chunks_of(self, length: int) -> "ForecastTask":
        """Score `length` predictions per chunk instead of 24 (the benchmark's setting)."""
        self.length = length
        return self

    def adopt(self, other: Task) -> "ForecastTask":
        return self.chunks_of(getattr(other, "length", 24))

    @classmethod
    def validate(cls, cfg: Config) -> None:
        super().validate(cfg)
        if cfg.task.horizon < 0 or cfg.task.ar_order < 0:
            raise SeqlabError("task.horizon and task.ar_order must be 0 or more")
        if cfg.task.ar_order and cfg.model.name != "ar":
            raise SeqlabError(f"task.ar_order is the p of model.name=ar; model.name={cfg.model.name} does not use it: "
                              f"remove it")
        parse_transform(cfg.task.transform)

    # -- data -----------------------------------------------------------------------------------

    def prepare(self, log: Callable[[str], None] = print) -> None:
        name, values, period = load_series(self.cfg)
        horizon = self.cfg.task.horizon or DEFAULT_HORIZON.get(name, max(1, values.size // 10))
        if values.size < 3 * horizon + 2 * period + 4:
            raise SeqlabError(f"{name}: {values.size} values are too few for a test and a validation horizon of "
                              f"{horizon} each; set a smaller task.horizon")
        self.source, self.values, self.period, self.horizon = name, values, period, horizon
        self.parts = split_horizon(values, horizon, horizon)
        fixed = parse_transform(self.cfg.task.transform)
        use_log, lags = fixed if fixed else (False, ())      # auto: each candidate is a run of its own
        self.tf = SeriesTransform(use_log, lags).fit(self.parts.train)
        self.u_train = self.tf.apply(self.parts.train)
        self.u_valid = self.tf.apply(self.parts.history)[self.parts.train.size - self.tf.offset:]

    def candidates(self) -> list[tuple[str, Config]]:
        """With task.transform=auto, one config per candidate transform, each trained as a run of its own."""
        if parse_transform(self.cfg.task.transform) is not None:
            return []
        name, values, period = load_series(self.cfg)
        return [(spelled(log, lags).replace(",", "-"),
                 dataclasses.replace(self.cfg, task=dataclasses.replace(self.cfg.task, transform=spelled(log, lags))))
                for log, lags in transforms(values, period)]

    def describe(self) -> str:
        return (f"{self.source}: {self.values.size} values, period {self.period}, transform {describe(self.tf)} | "
                f"train {self.parts.train.size} / valid {self.horizon} / test {self.horizon}")

    def meta(self) -> dict[str, Any]:
        return {"series": self.source, "values": self.values.tolist(), "period": self.period,
                "horizon": self.horizon, "transform": self.tf.to_dict()}

    # -- model ----------------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        return build_forecaster(self.cfg, max(self.cfg.task.ar_order, 1))

    def fit_counts(self, model: nn.Module, run, log: Callable[[str], None]) -> dict[str, float]:
        order = self.cfg.task.ar_order
        model = fit_ar(self.u_train, 2 * self.period + 2)[0] if not order else model.fit(self.u_train)
        run.save_weights(model, "model.safetensors", {"step": 0})
        return self.finish(run, model, torch.device("cpu"), log, 0)

    # -- what the engine drives -----------------------------------------------------------------

    def setup_training(self, world, device: torch.device) -> None:
        super().setup_training(world, device)
        self.warmup = max(self.period, 4) if self.cfg.model.name != "window" else self.cfg.model.context - 1
        chunk = self.warmup + self.length + 1
        if self.u_train.size < chunk:
            raise SeqlabError(f"{self.source}: the training part has {self.u_train.size} values after the transform; "
                              f"one chunk needs {chunk} (warm-up {self.warmup} + {self.length} + 1)")
        series = torch.as_tensor(self.u_train, dtype=torch.float32, device=device)        # (N,)
        self.frames = series.unfold(0, chunk, 1)                                           # (N-chunk+1, chunk)

    def epoch_length(self, epoch: int) -> int:
        return self.updates_per_epoch

    def train_batch(self, epoch: int, index: int, device: torch.device) -> torch.Tensor:
        rng = np.random.default_rng([self.cfg.train.seed, epoch, index])
        rows = rng.integers(0, self.frames.size(0), self.cfg.train.batch_size)[self.world.rank::self.world.size]
        return self.frames[torch.as_tensor(rows, device=self.frames.device)]             # (B/W, chunk)

    def train_loss(self, model: nn.Module, batch: torch.Tensor, step: int, carry: Any):
        inputs, targets = batch[:, :-1], batch[:, 1:]                                      # (B, chunk-1) each
        pred, _ = model(inputs)                                                            # a fresh state
        w = self.warmup
        return (pred[:, w:] - targets[:, w:]).pow(2).mean(), targets[:, w:].numel(), None

    def validation(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return {"loss": validation_loss(model, self.u_train, self.u_valid)}

    def finish(self, run, model: nn.Module, device: torch.device, log: Callable[[str], None],
               best_step: Any) -> dict[str, float]:
        """Score the validation part and the test horizon, draw forecast.png, and keep it all in task.json."""
        model = model.cpu().eval()
        p, period, horizon, values = self.parts, self.period, self.horizon, self.values
        one, closed = forecasts([model], self.tf, p.history, p.train.size, horizon)
        valid = scores(p.valid, one, closed, p.train, period)
        one, closed = forecasts([model], self.tf, values, p.history.size, horizon)
        test = scores(p.test, one, closed, p.history, period)
        naive = scores(p.test, values[p.history.size - period:values.size - period],
                       seasonal_naive(p.history, horizon, period), p.history, period)
        valid["mase"] = (valid["one_step_mase"] + valid["closed_loop_mase"]) / 2     # what picks the transform
        meta = {**self.meta(), "order": int(getattr(model, "order", 0)), "valid": valid, "test": test,
                "seasonal_naive_test": naive}
        atomic_write_text(run.file("task.json"), json.dumps(meta) + "\n")
        with open(run.file("metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": best_step, "split": "test", **test}) + "\n")
        name = self.cfg.model.name
        plot_forecast(run.file("forecast.png"), p.history, p.test, {name: one}, {name: closed}, show_last=4 * horizon,
                      title=f"{self.source}: {name}, last {horizon} values held out")
        log(f"transform {describe(self.tf)}: valid MASE one-step {valid['one_step_mase']:.3f}, closed-loop "
            f"{valid['closed_loop_mase']:.3f}; test horizon ({horizon}): one-step MASE {test['one_step_mase']:.3f}, "
            f"closed-loop MASE {test['closed_loop_mase']:.3f} (seasonal naive: {naive['one_step_mase']:.3f} / "
            f"{naive['closed_loop_mase']:.3f}) | plot {run.file('forecast.png')}")
        return {**test, "valid_mase": valid["mase"]}


def spelled(use_log: bool, lags: tuple[int, ...]) -> str:
    """The task.transform value of a transform: 'log,1,12', 'none'."""
    return ",".join((["log"] if use_log else []) + [str(lag) for lag in lags]) or "none"


def build_forecaster(cfg: Config, order: int = 1) -> nn.Module:
    m = cfg.model
    if m.name == "ar":
        return ARModel(order)
    if m.name == "window":
        return WindowForecaster(m.context, m.hidden_size, m.num_layers, m.dropout)
    return RNNForecaster(m.name, m.hidden_size, m.num_layers, m.dropout, options=m)

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
    series = dataset("series").load()[d.corpus]
    return d.corpus, series.values, cfg.task.period or series.period



def describe(tf: SeriesTransform) -> str:
    parts = (["log"] if tf.level.log else []) + [f"∇{lag}" for lag in tf.lags]
    return " ".join(parts) or "levels"


def load_forecaster(run_path: str | Path) -> tuple[Config, dict, nn.Module]:
    run = RunDir(Path(run_path)).require()
    cause = unfinished_selection(run.path)
    if cause:
        raise SeqlabError(cause)
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
    _, meta, model = load_forecaster(run_path)
    values = np.asarray(meta["values"])
    tf = SeriesTransform.from_dict(meta["transform"])
    with torch.no_grad():
        u = closed_loop_forecast(model, tf.apply(values), steps)
    return meta, tf.closed_loop_levels(u, values)
