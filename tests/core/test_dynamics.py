"""gd vs flow, conservation laws, invariance of spectral initialisations, the symmetric limit."""

import numpy as np
import pytest
from reference import regularized_reference
from scipy.linalg import solve_continuous_are

from flowsweep.core import PointConfig, initial_state, run_points, simulate
from flowsweep.core.metrics import psd_projection


def _cfg(**kw):
    base = dict(model="asymmetric", m=3, n=4, k=8, init_scale=0.5, seed=11)
    base.update(kw)
    return PointConfig(**base)


@pytest.mark.parametrize("model,n", [("asymmetric", 4), ("symmetric", 3), ("sigmoid", 3)])
def test_gd_converges_to_flow_at_first_order(model, n):
    horizon = 1.0 if model != "sigmoid" else 0.05
    extra = dict(n_samples=30) if model == "sigmoid" else {}
    flow = simulate(_cfg(model=model, n=n, integrator="flow", eta=horizon / 400, steps=400, record_every=40, **extra))
    gaps = []
    for steps in (100, 200, 400):
        gd = simulate(
            _cfg(model=model, n=n, integrator="gd", eta=horizon / steps, steps=steps, record_every=steps // 10, **extra)
        )
        assert np.allclose(gd.t, flow.t)
        gaps.append(np.max(np.linalg.norm(gd.X[0] - flow.X[0], axis=(1, 2))))
    r1, r2 = gaps[0] / gaps[1], gaps[1] / gaps[2]
    assert 1.7 < r1 < 2.3 and 1.7 < r2 < 2.3, gaps  # halving eta halves the gap


def test_conservation_law_flow_and_gd():
    base = dict(m=3, n=5, k=10, init_scale=0.7, seed=4)
    flow, gd1, gd2 = run_points(
        [
            _cfg(integrator="flow", eta=0.01, steps=300, record_every=10, **base),
            _cfg(integrator="gd", eta=0.01, steps=300, record_every=10, **base),
            _cfg(integrator="gd", eta=0.005, steps=600, record_every=20, **base),
        ]
    )
    assert flow.metrics["q0_norm"] > 0.5
    assert flow.metrics["conservation_drift"] <= 1e-8  # eq. (11) under the flow
    d1, d2 = gd1.metrics["conservation_drift"], gd2.metrics["conservation_drift"]
    assert 1e-8 < d2 < d1 < 0.1  # O(eta) under gd
    assert 1.7 < d1 / d2 < 2.3


def test_sigmoid_conserves_Q_under_flow():
    (r,) = run_points(
        [
            PointConfig(
                model="sigmoid",
                m=3,
                n=3,
                k=6,
                n_samples=40,
                eta=1e-3,
                steps=200,
                record_every=20,
                integrator="flow",
                init_scale=0.5,
            )
        ]
    )
    assert r.status == "done" and r.metrics["conservation_drift"] <= 1e-8


def test_regularized_flow_keeps_Q_only_from_lambda0_identity(rng):
    m, n, k, lam = 4, 5, 3, 1.7
    Y = rng.standard_normal((m, n))
    V0 = 0.5 * rng.standard_normal((n, k))
    L = np.linalg.cholesky(lam * np.eye(k) + V0.T @ V0)
    U0 = np.vstack([L.T, np.zeros((m - k, k))])  # U0^T U0 - V0^T V0 = lam I
    t = np.linspace(0, 3, 7)
    _, Q = regularized_reference(Y, U0, V0, lam, t)
    assert np.max(np.abs(Q - lam * np.eye(k))) < 1e-9  # Proposition 4
    U1 = U0 + 0.3 * rng.standard_normal((m, k))  # Q0 != lam I
    _, Q1 = regularized_reference(Y, U1, V0, lam, t)
    assert np.linalg.norm(Q1[-1] - Q1[0]) > 1e-2


@pytest.mark.parametrize(
    "model,n,lam", [("asymmetric", 5, 0.0), ("asymmetric", 5, 2.0), ("asymmetric", 3, -1.0), ("symmetric", 3, 0.0)]
)
def test_spectral_initialisation_stays_spectral(model, n, lam):
    c = _cfg(
        model=model,
        m=3,
        n=n,
        k=7,
        init="spectral",
        lambda0=lam,
        integrator="flow",
        eta=0.02,
        steps=200,
        record_every=20,
        init_scale=0.3,
    )
    s = initial_state(c)
    Y = s["Y"]
    if model == "symmetric":
        _, Phi = np.linalg.eigh(Y)
        Psi = Phi
    else:
        Phi, _, PsiT = np.linalg.svd(Y)
        Psi = PsiT.T
    tr = simulate(c)
    for X in tr.X[0]:
        D = Phi.T @ X @ Psi
        off = D * (1 - np.eye(*D.shape))
        assert np.linalg.norm(off) <= 1e-10 * np.linalg.norm(Y)
    assert np.linalg.norm(tr.X[0][-1] - tr.X[0][0]) > 0.1  # it did move


def test_symmetric_flow_tends_to_psd_projection():
    c = PointConfig(model="symmetric", m=4, n=4, k=6, init_scale=0.5, seed=3, eta=1.0, steps=1, integrator="flow")
    Y = initial_state(c)["Y"]
    # long enough for every component: 4 t min|sigma| >= 60
    horizon = 15.0 / np.min(np.abs(np.linalg.eigvalsh(Y)))
    c = PointConfig(**{**c.to_dict(), "eta": horizon / 10, "steps": 10})
    tr = simulate(c)
    X_inf = tr.X[0][-1]
    # stabilising solution of 2YX + 2XY - 4X^2 = 0 (CARE with A = 2Y, B = I, R = I/4, Q = 0)
    X_are = solve_continuous_are(2 * Y, np.eye(4), np.zeros((4, 4)), np.eye(4) / 4)
    assert np.allclose(X_are, psd_projection(Y), atol=1e-9)
    assert np.linalg.norm(X_inf - X_are) <= 1e-7 * np.linalg.norm(Y)
    assert np.min(np.linalg.eigvalsh(Y)) < 0  # the projection is not Y


def test_flow_time_to_tol_is_the_crossing_of_the_closed_form():
    from scipy.optimize import brentq

    from flowsweep.core.closed_forms import asymmetric_spectral

    c = PointConfig(
        model="asymmetric",
        m=3,
        n=4,
        k=6,
        init="spectral",
        lambda0=1.0,
        init_scale=0.3,
        seed=2,
        eta=0.05,
        steps=100,
        record_every=10,
        integrator="flow",
        tol=0.05,
    )
    Y = initial_state(c)["Y"]
    sig = np.linalg.svd(Y, compute_uv=False)
    ny = np.linalg.norm(Y)

    def e(t):  # e(t) from eq. (15): X shares Y's singular vectors
        x = asymmetric_spectral(sig, np.full(3, 0.09), 1.0, [t])[0]
        return np.linalg.norm(sig - x) / ny

    t_star = brentq(lambda t: e(t) - 0.05, 0.0, 5.0, xtol=1e-14)
    (r,) = run_points([c])
    assert r.metrics["time_to_tol"] == pytest.approx(t_star, abs=1e-8)
    # and gd's is the first iteration at or below tol
    g = run_points(
        [PointConfig(**{**c.to_dict(), "integrator": "gd", "eta": 2e-3, "steps": 2000, "record_every": 50})]
    )[0]
    tr = simulate(PointConfig(**{**c.to_dict(), "integrator": "gd", "eta": 2e-3, "steps": 2000, "record_every": 1}))
    i = int(np.argmax(tr.error[0] <= 0.05))
    assert tr.error[0][i - 1] > 0.05 and g.metrics["time_to_tol"] == pytest.approx(i * 2e-3)
    assert abs(g.metrics["time_to_tol"] - t_star) < 0.05 * t_star  # O(eta) from the flow
