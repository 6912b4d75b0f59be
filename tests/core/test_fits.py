"""rate_fit vs rate_pred on spectral points, lambda0_fit recovery and global search, rate_pred."""

import numpy as np
import pytest

from flowsweep.core import PointConfig, initial_state, run_points
from flowsweep.core.closed_forms import asymmetric_spectral, regularized_flow
from flowsweep.core.fits import (
    component_rates,
    lambda0_fit,
    lambda0_search_bound,
    rate_fit,
    rate_pred,
    regularized_loss,
)


def _spectral_point(model, n, lam, integrator, seed):
    c = PointConfig(
        model=model, m=3, n=n, k=6, init="spectral", lambda0=lam, init_scale=0.5, seed=seed, eta=0.1, steps=1
    )
    Y = initial_state(c)["Y"]
    if model == "symmetric":
        ev = 4 * np.abs(np.linalg.eigvalsh(Y))
    else:
        ev = np.sqrt(4 * np.linalg.svd(Y, compute_uv=False) ** 2 + lam**2)
    horizon = 30 / ev.min()  # long enough to leave the transient
    if integrator == "gd":
        eta = 0.04 / ev.max()  # discrete rate = rate (1 + O(eta rate))
        steps = int(horizon / eta)
    else:
        steps = 400
        eta = horizon / steps
    return PointConfig(
        **{**c.to_dict(), "eta": eta, "steps": steps, "integrator": integrator, "record_every": max(1, steps // 200)}
    )


def test_rate_fit_matches_rate_pred_on_spectral_points():
    configs = [
        _spectral_point("asymmetric", 4, lam, integ, seed)
        for lam, seed in ((0.0, 2), (2.0, 3), (-3.0, 4))
        for integ in ("flow", "gd")
    ]
    configs.append(_spectral_point("symmetric", 3, 0.0, "flow", 2))
    for c, r in zip(configs, run_points(configs)):
        assert r.status == "done", r.error
        fit, pred = r.metrics["rate_fit"], r.metrics["rate_pred"]
        assert fit is not None and pred > 0
        assert abs(fit / pred - 1) < 0.05, (c.model, c.lambda0, c.integrator, fit, pred)


def test_component_rates_eq16():
    sigma = np.array([2.0, 1.1, 0.4])
    lam = 1.5
    t = np.linspace(0, 12, 300)
    sv = asymmetric_spectral(sigma, np.full(3, 0.05), lam, t)
    rates = component_rates(t, sv, sigma)
    assert np.allclose(rates, np.sqrt(4 * sigma**2 + lam**2), rtol=0.02)


def test_rate_fit_short_tail_is_none():
    t = np.linspace(0, 1, 6)
    assert rate_fit(t, np.exp(-3 * t)).rate is None  # tail of 3 points
    t = np.linspace(0, 1, 50)
    assert rate_fit(t, 5 * np.exp(-3 * t)).rate == pytest.approx(3, rel=1e-10)
    r = np.exp(-40 * t)  # hits the noise floor early
    assert rate_fit(t, r, noise_floor=1e-11).rate == pytest.approx(40, rel=1e-10)


@pytest.mark.parametrize("lam", [7.0, -4.0, 0.0, 55.0])
def test_lambda0_fit_recovers_lambda0(lam):
    s = initial_state(PointConfig(model="asymmetric", m=3, n=5, k=12, eta=0.01, steps=10, init_scale=0.8, seed=3))
    t = np.linspace(0, 2, 41)
    X = regularized_flow(s["Y"], s["U0"], s["V0"], lam, t).X
    fit = lambda0_fit(s["Y"], s["U0"], s["V0"], t, X)
    assert fit.lambda0 == pytest.approx(lam, abs=1e-6 * max(1, abs(lam)))
    assert fit.error < 1e-8


def test_lambda0_fit_is_global_on_a_fig2_point():
    """A real two-layer trajectory (k = 200, s = 1: fast early transient, minima on both signs):
    no point of a dense grid over both signs does better than the fit. (Scoring the Brent
    refinements on a subsample of the record grid instead lands on the wrong sign here.)"""
    c = PointConfig(
        model="asymmetric",
        m=5,
        n=10,
        k=200,
        eta=1e-3,
        steps=800,
        record_every=10,
        init_scale=1.0,
        seed=0,
        fit_lambda0=True,
    )
    (r,) = run_points([c])
    s = initial_state(c)
    Y, U0, V0 = s["Y"], s["U0"], s["V0"]
    from flowsweep.core import simulate

    tr = simulate(c)
    t, X = tr.t, tr.X[0]
    best = r.metrics["lambda0_fit"]
    f_best = regularized_loss(Y, U0, V0, t, X, best)
    assert r.metrics["lambda0_fit_error"] == pytest.approx(np.sqrt(f_best / len(t)) / np.linalg.norm(Y), rel=1e-6)
    L = lambda0_search_bound(Y, U0, V0)
    assert 3 * abs(best) < L
    dense = np.concatenate([-np.geomspace(1e-2, L, 150), [0.0], np.geomspace(1e-2, L, 150)])
    vals = np.array([regularized_loss(Y, U0, V0, t, X, g) for g in dense])
    assert f_best <= vals.min() * (1 + 1e-9)
    # the regularized comparison fits far better than lambda0 = 0
    assert f_best < 0.2 * regularized_loss(Y, U0, V0, t, X, 0.0)
    curve = r.curves.error_regularized_fit
    assert curve is not None and curve.shape == r.curves.error.shape


def test_rate_pred_formulas():
    Y = np.diag([3.0, -0.5, 1.0])
    assert rate_pred("symmetric", "gaussian", Y, 0.0, k=3) == pytest.approx(2.0)
    assert rate_pred("symmetric", "gaussian", Y, 0.0, k=2) is None  # k < m keeps rank
    Ya = np.array([[3.0, 0, 0, 0], [0, 0.5, 0, 0]])
    assert rate_pred("asymmetric", "spectral", Ya, 2.0, k=4) == pytest.approx(np.sqrt(1 + 4))
    # m < n, fitted lambda: r_min + |lambda|/2 with r_min = sqrt(0.25 + 2.5^2/4)
    assert rate_pred("asymmetric", "gaussian", Ya, -2.5, k=4) == pytest.approx(np.sqrt(0.25 + 1.5625) + 1.25)
    assert rate_pred("asymmetric", "gaussian", Ya, None, k=4) is None  # no fit, no theorem
    Ys = np.diag([3.0, 0.5])
    assert rate_pred("asymmetric", "balanced", Ys, 2.0, k=2) == pytest.approx(np.sqrt(1 + 4))
    assert rate_pred("sigmoid", "gaussian", Ys, 0.0, k=4) is None


def test_lambda0_fit_long_grid():
    s = initial_state(PointConfig(model="asymmetric", m=3, n=4, k=9, eta=0.01, steps=10, init_scale=0.6, seed=8))
    t = np.linspace(0, 3, 1201)
    X = regularized_flow(s["Y"], s["U0"], s["V0"], -6.5, t).X
    fit = lambda0_fit(s["Y"], s["U0"], s["V0"], t, X)
    assert fit.lambda0 == pytest.approx(-6.5, rel=1e-6)
    assert fit.neg.lambda0 == fit.lambda0 and fit.pos.lambda0 > 0
    assert fit.error < 1e-8
