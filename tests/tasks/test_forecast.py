"""Forecasting: metrics on hand-computed examples, the scaler and the series transform, windows,
the forecasters' protocol (forward = step, causality), one-step and closed-loop forecasts
(the AR closed loop equals ARModel.forecast), training a forecaster on a noisy sine, the
plot, and a smoke run of the benchmark's per-series protocol."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.data.timeseries import (Scaler, SeriesTransform, difference, integrate, split_fraction, split_horizon,
                                    windows)
from seqlab.models.ar import ARModel
from seqlab.models.forecasters import RNNForecaster, WindowForecaster, closed_loop_forecast, one_step_forecast
from seqlab.config import load_config
from seqlab.tasks.forecast import build_forecaster
from seqlab.tasks.forecast_eval import plot_forecast, validation_loss
from seqlab.tasks.forecast_fit import forecasts
from seqlab.training.checkpoint import RunDir
from seqlab.training.engine import fit
from seqlab.tasks.metrics import mae, mase, rmse, seasonal_naive


def noisy_sine(n: int, period: int = 16, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * np.arange(n) / period) + noise * rng.standard_normal(n)


# -- metrics -------------------------------------------------------------------------------

def test_metrics_on_hand_computed_examples():
    y, p = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]
    assert mae(y, p) == pytest.approx(1.0)                                 # (1 + 0 + 2) / 3
    assert rmse(y, p) == pytest.approx(np.sqrt(5 / 3))                     # sqrt((1 + 0 + 4) / 3)
    assert mase(y, p, [1.0, 3.0, 2.0, 5.0]) == pytest.approx(0.5)          # scale mean(2, 1, 3) = 2
    # period 2: scale = mean(|2 − 1|, |5 − 3|) = 1.5
    assert mase(y, p, [1.0, 3.0, 2.0, 5.0], period=2) == pytest.approx(1 / 1.5)
    np.testing.assert_array_equal(seasonal_naive([1, 2, 3, 4, 5], 5, period=2), [4, 5, 4, 5, 4])
    np.testing.assert_array_equal(seasonal_naive([1, 2, 3], 2), [3, 3])
    assert seasonal_naive([1, 2, 3], 0).shape == (0,)


def test_seasonal_naive_on_its_own_training_data_has_mase_one():
    x = noisy_sine(100, period=12) + np.arange(100) * 0.05
    # the in-sample one-step seasonal naive forecast ŷ_t = x_{t−12}, scored on x itself
    assert mase(x[12:], x[:-12], x, period=12) == pytest.approx(1.0, rel=1e-12)
    assert mase(x[1:], x[:-1], x) == pytest.approx(1.0, rel=1e-12)


def test_metric_errors_are_one_line():
    with pytest.raises(SeqlabError, match="differ in size"):
        mae([1.0, 2.0], [1.0])
    with pytest.raises(SeqlabError, match="undefined"):
        mase([1.0], [2.0], [1.0, 2.0, 1.0, 2.0], period=2)
    with pytest.raises(SeqlabError, match="more than 12"):
        mase([1.0], [2.0], np.arange(12.0), period=12)
    with pytest.raises(SeqlabError, match="full season"):
        seasonal_naive([1.0, 2.0], 3, period=4)


# -- data ----------------------------------------------------------------------------------

def test_chronological_splits():
    x = np.arange(100.0)
    s = split_horizon(x, test=24, valid=12)
    np.testing.assert_array_equal(s.train, x[:64])
    np.testing.assert_array_equal(s.valid, x[64:76])
    np.testing.assert_array_equal(s.test, x[76:])
    np.testing.assert_array_equal(s.history, x[:76])
    f = split_fraction(x, valid=0.1, test=0.2)
    assert (f.train.size, f.valid.size, f.test.size) == (70, 10, 20) and f.test[0] == 80
    with pytest.raises(SeqlabError, match="leaves"):
        split_horizon(x, test=60, valid=40)


@pytest.mark.parametrize("log", [False, True])
def test_scaler_round_trip_and_train_only_statistics(log):
    rng = np.random.default_rng(0)
    train, later = rng.uniform(1, 10, 50), rng.uniform(1, 100, 20)
    scaler = Scaler(log=log).fit(train)
    z = scaler.transform(train)
    assert z.mean() == pytest.approx(0.0, abs=1e-12) and z.std() == pytest.approx(1.0)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(later)), later, rtol=1e-12)
    t = torch.from_numpy(later)
    torch.testing.assert_close(scaler.inverse(scaler.transform(t)), t)
    again = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(again.transform(later), scaler.transform(later))
    if log:
        with pytest.raises(SeqlabError, match="positive"):
            scaler.transform(np.array([1.0, 0.0]))
    with pytest.raises(SeqlabError, match="unknown scaler keys"):
        Scaler.from_dict({"log": True, "scale": 2})


def test_difference_and_integrate_are_inverses():
    x = noisy_sine(60, period=12) + np.linspace(0, 3, 60)
    for lag in (1, 12):
        d = difference(x, lag)
        assert d.shape == (60 - lag,) and d[0] == pytest.approx(x[lag] - x[0])
        np.testing.assert_allclose(integrate(d[30 - lag:], x[:30], lag), x[30:], rtol=1e-12)


@pytest.mark.parametrize("log,lags", [(False, ()), (True, (1,)), (True, (1, 12)), (False, (12,))])
def test_series_transform_inverts_one_step_and_closed_loop_forecasts(log, lags):
    x = np.exp(0.3 * noisy_sine(120, period=12) + np.linspace(4, 5, 120))
    tf = SeriesTransform(log, lags).fit(x[:80])
    u = tf.apply(x)
    assert u.shape == (120 - tf.offset,)
    assert tf.apply(x[:80])[tf.offset:].std() == pytest.approx(1.0, rel=0.1)   # standardised on train
    # the true u, as a "forecast", maps back to the true values, one-step and closed-loop
    np.testing.assert_allclose(tf.one_step_levels(u[100 - tf.offset:], x, 100), x[100:], rtol=1e-10)
    np.testing.assert_allclose(tf.closed_loop_levels(u[100 - tf.offset:], x[:100]), x[100:], rtol=1e-10)
    # an error of e in û_t is an error of e·std_d in ẑ_t, one step ahead
    shift = np.zeros(20)
    shift[3] = 1.0
    z_err = tf.level.transform(tf.one_step_levels(u[100 - tf.offset:] + shift, x, 100)) - tf.level.transform(x[100:])
    np.testing.assert_allclose(z_err, shift * tf.change.std, atol=1e-9)
    again = SeriesTransform.from_dict(json.loads(json.dumps(tf.to_dict())))
    np.testing.assert_array_equal(again.apply(x), u)


def test_windows_shapes_and_contents():
    x = np.arange(10.0)
    inputs, targets = windows(x, 4)
    assert inputs.shape == (6, 4) and targets.shape == (6, 1) and inputs.dtype == torch.float32
    assert inputs[2].tolist() == [2, 3, 4, 5] and targets[2].tolist() == [6]
    inputs, targets = windows(x, 3, horizon=2)
    assert inputs.shape == (6, 3) and targets.shape == (6, 2) and targets[-1].tolist() == [8, 9]
    with pytest.raises(SeqlabError, match="no window"):
        windows(x, 8, horizon=3)


# -- models and forecasts ------------------------------------------------------------------

def models():
    torch.manual_seed(0)
    ar = ARModel(3).fit(noisy_sine(200))
    return [RNNForecaster("lstm", 8, 2), RNNForecaster("gru", 8), RNNForecaster("rnn", 8),
            WindowForecaster(5, 8, 2), ar]


@pytest.mark.parametrize("model", models(), ids=lambda m: type(m).__name__ + getattr(m, "cell", ""))
def test_forward_equals_step_and_carried_chunks(model):
    x = torch.randn(3, 10, dtype=torch.float64 if isinstance(model, ARModel) else torch.float32)
    model.eval()
    pred, state = model(x, model.init_state(3))
    assert pred.shape == (3, 10)
    first, mid = model(x[:, :4], model.init_state(3))
    second, _ = model(x[:, 4:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), pred)
    s, outs = model.init_state(3), []
    for t in range(10):
        out, s = model.step(x[:, t], s)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), pred)


@pytest.mark.parametrize("model", models(), ids=lambda m: type(m).__name__ + getattr(m, "cell", ""))
def test_one_step_forecast_never_uses_the_future(model):
    x = noisy_sine(40)
    pred = one_step_forecast(model, x, 10)
    assert pred.shape == (30,)
    changed = x.copy()
    changed[25:] += 5.0                               # the future from index 25 on
    other = one_step_forecast(model, changed, 10)
    # entry i predicts x[10 + i] from x[:10 + i]: entries up to index 25 − 10 see no change
    np.testing.assert_array_equal(other[:16], pred[:16])
    assert not np.allclose(other[16:], pred[16:])
    # and the closed loop equals feeding the predictions back by hand
    closed = closed_loop_forecast(model, x[:20], 3)
    manual = list(x[:20])
    for _ in range(3):
        manual.append(one_step_forecast(model, np.array(manual + [0.0]), len(manual))[0])
    np.testing.assert_allclose(closed, manual[20:], rtol=1e-5, atol=1e-6)


def test_closed_loop_of_the_ar_model_equals_its_forecast():
    x = noisy_sine(300, noise=0.3)
    model = ARModel(5).fit(x[:250])
    np.testing.assert_allclose(closed_loop_forecast(model, x[:250], 30), model.forecast(x[:250], 30), rtol=1e-12)
    np.testing.assert_allclose(one_step_forecast(model, x, 250),
                               [model.predict_next(x[:t]) for t in range(250, 300)], rtol=1e-12)


def test_covariates_are_fed_beside_the_predictions():
    torch.manual_seed(0)
    model = RNNForecaster("gru", 8, num_features=2).eval()
    x, cov = noisy_sine(20), np.random.default_rng(1).standard_normal((24, 2))
    closed = closed_loop_forecast(model, x, 4, covariates=cov)
    with torch.no_grad():
        inputs = torch.cat([torch.tensor(x, dtype=torch.float32)[:, None], torch.tensor(cov[:20], dtype=torch.float32)], 1)
        pred, state = model(inputs[None])                                  # (1, 20)
        manual = [pred[0, -1]]
        for h in range(1, 4):
            step_in = torch.cat([manual[-1].reshape(1), torch.tensor(cov[19 + h], dtype=torch.float32)])[None]
            out, state = model.step(step_in, state)
            manual.append(out[0])
    np.testing.assert_allclose(closed, torch.stack(manual).numpy(), rtol=1e-6)
    with pytest.raises(SeqlabError, match="covariates"):
        closed_loop_forecast(model, x, 10, covariates=cov)


def test_invalid_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(SeqlabError, match="unknown forecaster cell"):
        RNNForecaster("transformer")
    with pytest.raises(SeqlabError, match="input must be"):
        RNNForecaster()(torch.zeros(2, 3, 4))
    with pytest.raises(SeqlabError, match="start"):
        one_step_forecast(WindowForecaster(3), np.zeros(5), 0)
    with pytest.raises(SeqlabError, match="too few"):
        train_series(tmp_path / "short", np.zeros(10), 1, ["train.max_steps=10"])


# -- training ------------------------------------------------------------------------------

def train_series(out, values, period, options, horizon=40):
    """A forecast-task run on `values` through the engine; (model with the best weights, metrics rows)."""
    out.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.csv").write_text("".join(f"{float(v)!r}\n" for v in values))
    cfg = load_config(None, ["task=forecast", f"data.path={out.parent / out.name}.csv", "task.transform=none", f"task.horizon={horizon}", f"task.period={period}",
                             "train.progress=false", "train.threads=1", "train.device=cpu", "train.max_epochs=0",
                             "train.schedule=constant", *options])
    fit(cfg, out, log=lambda m: None)
    model = build_forecaster(cfg)
    RunDir(out).load_weights(model)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return model.eval(), rows


def test_rnn_forecaster_learns_a_noisy_sine(tmp_path):
    x = noisy_sine(360, period=16, noise=0.1)
    train, valid, test = x[:280], x[280:320], x[320:]
    model, rows = train_series(tmp_path / "run", x, 16, ["model=lstm", "model.hidden_size=16", "model.num_layers=1",
                                                         "model.dropout=0", "train.lr=1e-2", "train.batch_size=16",
                                                         "train.max_steps=300", "train.eval_every=25",
                                                         "train.log_every=25", "train.early_stop=4"])
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses[-1] < 0.2 * losses[0]                                             # the loss falls
    # the best weights are kept: the model's validation loss is the best one seen
    best = min(r["loss"] for r in rows if r["split"] == "valid")
    tf = SeriesTransform.from_dict(json.loads((tmp_path / "run" / "task.json").read_text())["transform"])
    assert validation_loss(model, tf.apply(train), tf.apply(valid)) == pytest.approx(best, rel=1e-6)
    past = x[:320]
    one, closed = forecasts([model], tf, x, 320, 16)          # in the series' units, through its transform
    assert mase(test, one, past, period=16) < 1.0
    assert mase(test[:16], closed, past, period=16) < 1.0
    assert mase(test, one, past, period=1) < 0.6


def test_training_is_deterministic(tmp_path):
    x = noisy_sine(120)
    options = ["model=window", "model.hidden_size=8", "train.max_steps=30", "train.eval_every=10", "train.seed=5"]
    runs = [train_series(tmp_path / f"run{i}", x, 16, options, horizon=10) for i in range(2)]
    drop = ("values_per_s", "elapsed", "seconds")
    clean = [[{k: v for k, v in r.items() if k not in drop} for r in rows] for _, rows in runs]
    assert clean[0] == clean[1]
    torch.testing.assert_close(runs[0][0].head.weight, runs[1][0].head.weight, rtol=0, atol=0)


def test_plot_forecast_writes_a_png(tmp_path):
    x = noisy_sine(60)
    path = tmp_path / "plots" / "forecast.png"
    plot_forecast(path, x[:48], x[48:], one_step={"a": x[48:] + 0.1, "b": x[48:] - 0.1},
                  closed_loop=x[48:] * 0.5, title="sine", show_last=24)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["forecast.png"]          # no temporary file left
    with pytest.raises(SeqlabError, match="has 3 values"):
        plot_forecast(path, x[:48], x[48:], closed_loop=x[:3])


def test_the_benchmark_protocol_runs_on_a_small_series(tmp_path):
    from seqlab.bench.forecast import Settings, run_series

    t = np.arange(96)
    x = 50 + 0.5 * t + 8 * np.sin(2 * np.pi * t / 4) + np.random.default_rng(0).standard_normal(96)
    report = run_series("toy", x, 4, Settings(seeds=1, steps=20, eval_every=10, length=8, hidden_size=4,
                                              ar_max_order=4), str(tmp_path / "toy.png"), log=lambda m: None)
    assert (report["train"], report["valid"], report["test"]) == (78, 9, 9)
    assert set(report["results"]) == {"AR", "window MLP", "LSTM", "seasonal naive"}
    assert len(report["selection"]) == 3 * 2 * 3                          # 3 models × log or not × 3 lags
    for result in report["results"].values():
        assert np.isfinite(result["one_step_mase"]) and len(result["closed_loop_abs_error"]) == 9
    assert (tmp_path / "toy.png").is_file()
