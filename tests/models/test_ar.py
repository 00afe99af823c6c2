"""Linear AR(p): least-squares recovery of a simulated AR(2), the normal equations,
forward = step = predict_next, closed-loop forecasts, and parity with statsmodels' AutoReg
when statsmodels happens to be installed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from seqlab import SeqlabError
from seqlab.models.ar import ARModel


def simulate(coef, n: int, rng: np.random.Generator, intercept: float = 0.0, burn: int = 500) -> np.ndarray:
    p = len(coef)
    e = rng.standard_normal(n + burn)
    x = np.zeros(n + burn)
    for t in range(p, n + burn):
        x[t] = intercept + np.dot(coef, x[t - p:t][::-1]) + e[t]
    return x[burn:]


@pytest.mark.parametrize("intercept", [0.0, 0.7])
def test_recovers_a_simulated_ar2_process(intercept):
    x = simulate([0.6, -0.3], 20000, np.random.default_rng(0), intercept)
    model = ARModel(2, fit_intercept=True).fit(x)
    np.testing.assert_allclose(model.coef.numpy(), [0.6, -0.3], atol=0.02)
    assert model.intercept.item() == pytest.approx(intercept, abs=0.05)
    assert model.residual_variance == pytest.approx(1.0, abs=0.05)
    assert model.n_obs == 19998 and not list(model.parameters())


def test_fit_equals_the_normal_equations():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(40).cumsum()
    for fit_intercept in (True, False):
        model = ARModel(3, fit_intercept).fit(x)
        rows = [([1.0] if fit_intercept else []) + [x[t - 1], x[t - 2], x[t - 3]] for t in range(3, 40)]
        X, y = np.array(rows), x[3:]
        beta = np.linalg.solve(X.T @ X, X.T @ y)
        got = np.r_[model.intercept.item(), model.coef.numpy()] if fit_intercept else model.coef.numpy()
        np.testing.assert_allclose(got, beta, rtol=1e-9)
        if not fit_intercept:
            assert model.intercept.item() == 0.0
        residuals = y - X @ beta
        assert model.residual_variance == pytest.approx(residuals @ residuals / y.size, rel=1e-9)


def test_forward_equals_step_and_predict_next():
    rng = np.random.default_rng(2)
    model = ARModel(3).fit(simulate([0.5, 0.2, -0.1], 500, rng, 0.3))
    x = torch.from_numpy(rng.standard_normal((4, 12)))
    pred, state = model(x)
    assert pred.shape == (4, 12) and state.shape == (4, 3) and pred.dtype == torch.float64
    torch.testing.assert_close(state, x[:, -3:])
    s, outs = model.init_state(4), []
    for t in range(12):
        out, s = model.step(x[:, t], s)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), pred, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(s, state)
    # pred[b, t] predicts x[b, t+1] from the values up to t (zeros before the start)
    for t in range(12):
        assert pred[1, t].item() == pytest.approx(model.predict_next(x[1, :t + 1].numpy()), rel=1e-12)
    first, mid = model(x[:, :5])
    second, _ = model(x[:, 5:], mid)
    torch.testing.assert_close(torch.cat([first, second], 1), pred, rtol=1e-13, atol=1e-13)
    pred32, state32 = model(x.float())
    assert pred32.dtype == state32.dtype == torch.float32
    torch.testing.assert_close(pred32, pred.float())


def test_closed_loop_forecast_of_a_noiseless_ar1():
    x0 = 2.5
    series = x0 * 0.9 ** np.arange(60)
    model = ARModel(1, fit_intercept=False).fit(series)
    assert model.coef.item() == pytest.approx(0.9, rel=1e-12)
    assert model.residual_variance == pytest.approx(0.0, abs=1e-20)
    horizon = np.arange(1, 31)
    np.testing.assert_allclose(model.forecast([x0], 30), x0 * 0.9 ** horizon, rtol=1e-10)
    # with an intercept column the exact fit is the same (c = 0, φ = 0.9)
    model = ARModel(1).fit(series)
    assert model.intercept.item() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(model.forecast(series[:1], 30), x0 * 0.9 ** horizon, rtol=1e-9)
    # the forecast continues from the end of a longer history
    np.testing.assert_allclose(model.forecast(series[:10], 5), series[10:15], rtol=1e-9)
    assert model.forecast(series, 0).shape == (0,)


def test_parity_with_statsmodels_autoreg():
    ar_model = pytest.importorskip("statsmodels.tsa.ar_model")
    x = simulate([0.4, 0.25, -0.2], 3000, np.random.default_rng(3), 1.2)
    theirs = ar_model.AutoReg(x, lags=3, trend="c").fit()
    ours = ARModel(3).fit(x)
    np.testing.assert_allclose(np.r_[ours.intercept.item(), ours.coef.numpy()], theirs.params, rtol=1e-8)
    assert ours.residual_variance == pytest.approx(theirs.sigma2, rel=1e-8)


def test_invalid_arguments_are_one_line_errors():
    with pytest.raises(SeqlabError, match="order"):
        ARModel(0)
    with pytest.raises(SeqlabError, match="at least"):
        ARModel(3).fit(np.arange(5.0))
    with pytest.raises(SeqlabError, match="NaN"):
        ARModel(1).fit(np.array([1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(SeqlabError, match="1-D"):
        ARModel(1).fit(np.ones((3, 3)))
