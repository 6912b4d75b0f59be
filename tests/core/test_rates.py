"""Predicted rates (rate_pred, rate_lin), the gd stability limit, conservation drift and the
edge cases of eq. (15), against independent references (closed forms, ODE solves, matrix
exponentials of the linearised dynamics, observed runs)."""

import numpy as np
import pytest
from reference import ode_reference
from scipy.linalg import expm

from flowsweep.core import PointConfig, initial_state, run_points, simulate
from flowsweep.core.closed_forms import asymmetric_spectral, regularized_flow
from flowsweep.core.fits import rate_fit, rate_lin, regularized_rate


@pytest.mark.parametrize("m,n,lam", [(3, 6, 1.5), (3, 6, -2.0), (3, 6, 0.0), (4, 4, 1.0), (2, 5, 1.0)])
def test_regularized_rate_is_the_rate_of_the_closed_form(m, n, lam, rng):
    """Gaussian R0 (every mode excited): the fitted decay of ||Y - X_reg(t)|| under eq. (21).
    At lambda0 = 0 the n - m directions of Psi have eigenvalue 0 and the coupling decays as
    e^{-r t} / t: the fit is of t ||Y - X_reg(t)||."""
    Y = rng.standard_normal((m, n))
    U0, V0 = 0.3 * rng.standard_normal((m, 12)), 0.3 * rng.standard_normal((n, 12))
    rate = regularized_rate(Y, lam)
    t = np.linspace(0, 25.0 / rate, 401)[1:]
    X = regularized_flow(Y, U0, V0, lam, t).X
    e = np.linalg.norm(Y - X, axis=(1, 2)) * (t if lam == 0 and m < n else 1.0)
    fitted = rate_fit(t, e, noise_floor=1e-9).rate
    assert fitted == pytest.approx(rate, rel=0.03)
    if m < n:  # neither Prop. 5's |lambda| nor 2 r_min
        sig = np.linalg.svd(Y, compute_uv=False).min()
        assert abs(fitted / np.sqrt(4 * sig**2 + lam**2) - 1) > 0.05
        assert abs(fitted - abs(lam)) > 0.05 * fitted


@pytest.mark.parametrize("lam,integrator", [(0.0, "flow"), (2.0, "flow"), (-3.0, "flow"), (2.0, "gd")])
def test_rate_lin_equals_eq16_on_spectral_points(lam, integrator):
    c0 = PointConfig(
        model="asymmetric", m=3, n=5, k=6, init="spectral", lambda0=lam, init_scale=0.5, seed=2, eta=0.1, steps=1
    )
    sig = np.linalg.svd(initial_state(c0)["Y"], compute_uv=False)
    eq16 = np.sqrt(4 * sig**2 + lam**2).min()
    horizon = 30 / eq16
    eta = horizon / 400 if integrator == "flow" else 0.02 / eq16
    steps = int(horizon / eta)
    c = PointConfig(
        **{**c0.to_dict(), "eta": eta, "steps": steps, "integrator": integrator, "record_every": max(1, steps // 200)}
    )
    (r,) = run_points([c])
    assert r.metrics["rate_lin"] == pytest.approx(eq16, rel=1e-3 if integrator == "flow" else 2e-2)
    assert r.metrics["rate_pred"] == pytest.approx(eq16, rel=1e-12)


def test_rate_lin_is_the_rate_of_the_frozen_linear_dynamics(rng):
    """dE/dt = -(A E + E B) with A, B frozen, solved by the matrix exponential of its Kronecker form:
    the decay of a random E excites every mode, a rank-one E along given eigenvectors only one."""
    U, V = rng.standard_normal((3, 7)), rng.standard_normal((5, 7))
    A, B = U @ U.T, V @ V.T
    Lk = np.kron(A, np.eye(5)) + np.kron(np.eye(3), B.T)  # row-major vec(E)
    E0 = rng.standard_normal((3, 5))
    t = np.linspace(0, 8.0, 200)
    e = np.array([np.linalg.norm(expm(-Lk * s) @ E0.ravel()) for s in t])
    assert rate_lin(U, V, E0) == pytest.approx(rate_fit(t, e, noise_floor=1e-14).rate, rel=1e-3)
    a, Av = np.linalg.eigh(A)
    b, Bv = np.linalg.eigh(B)
    E1 = np.outer(Av[:, 2], Bv[:, 4])  # a single mode: alpha_3 + beta_5
    assert rate_lin(U, V, E1) == pytest.approx(a[2] + b[4], rel=1e-10)


def test_rate_pred_is_null_where_nothing_predicts_it():
    cs = [
        PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=400, record_every=20, init_scale=s, seed=0)
        for s in (0.01, 1.0)
    ]
    cs.append(
        PointConfig(
            model="asymmetric",
            m=5,
            n=10,
            k=3,
            eta=1e-2,
            steps=400,
            record_every=20,
            init_scale=0.3,
            seed=0,
            init="balanced",
        )
    )  # k < m: rank kept
    cs.append(PointConfig(model="sigmoid", m=3, n=3, k=6, eta=1e-2, steps=50, n_samples=50, seed=0))
    for r in run_points(cs):
        assert r.status == "done", r.error
        assert r.metrics["rate_pred"] is None
    fit = run_points([PointConfig(**{**cs[0].to_dict(), "fit_lambda0": True})])[0]
    Y = initial_state(cs[0])["Y"]
    assert fit.metrics["rate_pred"] == pytest.approx(regularized_rate(Y, fit.metrics["lambda0_fit"]))


def test_eq15_lambda0_zero_and_nonpositive_x0():
    """lambda0 = 0, x0 <= 0: the flow dx/dt = 2 (sigma - x)|x| stays at or below 0."""
    t = np.linspace(0, 3, 31)
    for x0 in (-0.5, -2.0, 0.0):
        ref = ode_reference(lambda _, x: 2 * (1.3 - x) * np.abs(x), np.array([x0]), t)[:, 0]
        x = asymmetric_spectral(np.array([1.3]), np.array([x0]), 0.0, t)[:, 0]
        assert np.all(np.isfinite(x))
        assert np.max(np.abs(x - ref)) < 1e-12


def test_gd_stability_limit_against_observed_runs():
    """Below the predicted limit gd converges; above 1/sigma_max(Y) (the flattest minimum's limit)
    it never reaches tol."""
    bases = [
        dict(init_scale=0.05, init="gaussian"),
        dict(init_scale=0.3, init="balanced"),
        dict(init_scale=0.3, init="spectral", lambda0=3.0),
    ]
    for b in bases:
        c0 = PointConfig(model="asymmetric", m=3, n=5, k=8, eta=1e-3, steps=1, seed=1, **b)
        (r0,) = run_points([c0])
        limit = r0.metrics["eta_stability_limit"]
        smax = np.linalg.norm(initial_state(c0)["Y"], 2)
        assert limit <= 1 / smax + 1e-15
        runs = []
        for eta in (0.8 * limit, 1.25 / smax):
            steps = int(60 / eta)
            runs.append(
                PointConfig(
                    **{**c0.to_dict(), "eta": eta, "steps": steps, "record_every": max(1, steps // 100), "tol": 1e-6}
                )
            )
        below, above = run_points(runs)
        assert below.status == "done" and below.metrics["time_to_tol"] is not None, b
        assert above.status == "diverged" or above.metrics["time_to_tol"] is None, b


def test_conservation_drift_is_relative_to_the_factors():
    c = PointConfig(model="asymmetric", m=3, n=5, k=8, eta=0.01, steps=500, record_every=10, init_scale=0.5, seed=3)
    (r,) = run_points([c])
    s = initial_state(c)
    tr = simulate(c)
    scale = np.sum(s["U0"] ** 2) + np.sum(s["V0"] ** 2)
    assert r.metrics["conservation_drift"] == pytest.approx(np.max(tr.q_drift[0]) / scale, rel=1e-12)
    # the balanced exact flow conserves Q = 0 to rounding, relative to the factors' size
    cb = PointConfig(**{**c.to_dict(), "init": "balanced", "integrator": "flow"})
    (rb,) = run_points([cb])
    assert rb.metrics["conservation_drift"] < 1e-12
