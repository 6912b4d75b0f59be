"""The deep model (core/deep.py) against independent computations: the asymmetric model at L = 2,
Arora et al.'s end-to-end ODE for balanced starts, Saxe et al.'s mode dynamics by quadrature, the
conserved W_{j+1}ᵀW_{j+1} − W_jW_jᵀ, the one-layer closed form at L = 1, and the reduction."""

from dataclasses import replace

import numpy as np
import pytest
from reference import ode_reference, rel_max
from scipy.integrate import quad

from flowsweep.core import PointConfig, deep, initial_state, run_point, run_points, simulate


def cfg(**kw):
    base = dict(model="deep", m=3, n=5, k=8, eta=0.01, steps=300, record_every=10, init_scale=0.5, depth=3, seed=1)
    base.update(kw)
    return PointConfig(**base)


@pytest.mark.parametrize("init", ["gaussian", "balanced", "spectral"])
def test_depth2_draws_the_asymmetric_start(init):
    c = cfg(init=init, depth=2, k=12, lambda0=0.7 if init == "spectral" else 0.0)
    d = initial_state(c)
    a = initial_state(replace(c, model="asymmetric", depth=None))
    scale = np.linalg.norm(a["U0"]) + np.linalg.norm(a["V0"])
    assert np.array_equal(d["Y"], a["Y"])
    assert np.abs(d["U0"] - a["U0"]).max() <= 1e-14 * scale
    assert np.abs(d["V0"] - a["V0"]).max() <= 1e-14 * scale
    assert np.array_equal(d["W2"], d["U0"]) and np.array_equal(d["W1"], d["V0"].T)


@pytest.mark.parametrize("integrator", ["gd", "flow"])
@pytest.mark.parametrize("init", ["gaussian", "balanced", "spectral"])
def test_depth2_trajectories_equal_asymmetric(init, integrator):
    # k = 12 > m + n: the gaussian start is reduced (a QR basis in both); flow over t = 3
    cs = [
        cfg(
            init=init,
            integrator=integrator,
            depth=2,
            k=12,
            seed=s,
            lambda0=0.5 if init == "spectral" else 0.0,
            steps=300 if integrator == "gd" else 60,
            eta=0.01 if integrator == "gd" else 0.05,
        )
        for s in range(3)
    ]
    td = simulate(cs)
    ta = simulate([replace(c, model="asymmetric", depth=None) for c in cs])
    ynorm = np.linalg.norm(initial_state(cs[0])["Y"])
    assert rel_max(td.X, ta.X, ynorm) <= 1e-12
    assert np.nanmax(np.abs(td.error - ta.error)) <= 1e-12
    np.testing.assert_allclose(td.time_to_tol, ta.time_to_tol, rtol=1e-9, equal_nan=True)
    # the metrics too (conservation_drift is normalised per pair in the deep model)
    rd, ra = run_points(cs), run_points([replace(c, model="asymmetric", depth=None) for c in cs])
    for x, y in zip(rd, ra):
        for k in (
            "final_error",
            "q0_norm",
            "time_to_tol",
            "speedup",
            "rate_pred",
            "closed_form_error",
            "regularized_error",
        ):
            u, v = x.metrics[k], y.metrics[k]
            assert (u is None) == (v is None), k
            if u is not None:
                assert abs(u - v) <= 1e-9 * max(1.0, abs(v)) or abs(u - v) <= 1e-12, (k, u, v)


def _psd_power(S, V, p):
    """(V S² Vᵀ)^p for p > 0 from a thin SVD factor: the null space contributes 0 exactly."""
    return (V * S ** (2 * p)) @ V.T


def arora_end_to_end(Y, X0, L, t):
    """Arora, Cohen, Hazan 2018 Thm. 1: Ẋ = −Σ_j (XXᵀ)^{(j−1)/L} ∇ℓ(X) (XᵀX)^{(L−j)/L}, ∇ℓ = X − Y."""
    m, n = Y.shape

    def f(_, x):
        X = x.reshape(m, n)
        G = Y - X
        U, S, Vt = np.linalg.svd(X, full_matrices=False)
        out = np.zeros_like(X)
        for j in range(1, L + 1):
            left = np.eye(m) if j == 1 else _psd_power(S, U, (j - 1) / L)
            right = np.eye(n) if j == L else _psd_power(S, Vt.T, (L - j) / L)
            out += left @ G @ right
        return out.ravel()

    return ode_reference(f, X0.ravel(), t).reshape(len(t), m, n)


@pytest.mark.parametrize("L", [3, 4])
def test_balanced_follows_the_end_to_end_ode(L):
    c = cfg(init="balanced", integrator="flow", depth=L, k=9, init_scale=0.4, eta=0.05, steps=120, record_every=6)
    st = initial_state(c)
    Ws = [st[f"W{j}"] for j in range(1, L + 1)]
    for j in range(L - 1):  # the start is balanced
        C = Ws[j + 1].T @ Ws[j + 1] - Ws[j] @ Ws[j].T
        assert np.linalg.norm(C) <= 1e-13 * np.linalg.norm(Ws[j]) ** 2
    X0 = np.linalg.multi_dot(Ws[::-1])
    tr = simulate(c)
    ref = arora_end_to_end(st["Y"], X0, L, tr.t)
    ynorm = np.linalg.norm(st["Y"])
    err = rel_max(tr.X[0], ref, ynorm)
    assert err <= 1e-10, err  # measured 1e-12 .. 3e-12
    assert tr.error[0, -1] < 0.5 * tr.error[0, 0]  # it moved: the comparison is not of two constants


def mode_time(x, x0, sigma, L):
    """t(x) = ∫_{x0}^{x} dξ / (L ξ^{2−2/L} (σ − ξ)) (Saxe et al. 2014), by adaptive quadrature."""
    val, _ = quad(lambda s: 1.0 / (L * s ** (2.0 - 2.0 / L) * (sigma - s)), x0, x, epsabs=0, epsrel=1e-12, limit=200)
    return val


@pytest.mark.parametrize("L", [3, 5])
def test_balanced_spectral_modes_follow_the_quadrature(L):
    c = cfg(init="spectral", integrator="flow", depth=L, k=6, init_scale=0.3, eta=0.1, steps=100, record_every=4)
    st = initial_state(c)
    sig = np.linalg.svd(st["Y"], compute_uv=False)
    x0 = c.init_scale**2  # every mode starts at s² at every depth
    tr = simulate(c)
    x = np.linalg.svd(tr.X[0], compute_uv=False)  # (T, m), descending like sig
    checked = 0
    worst = 0.0
    for ti, t in enumerate(tr.t[1:], start=1):
        for i in range(len(sig)):
            if x[ti, i] < sig[i] * (1 - 1e-3):  # away from the end, where t(x) is flat
                worst = max(worst, abs(mode_time(x[ti, i], x0, sig[i], L) - t) / max(t, 1.0))
                checked += 1
    assert checked >= 20
    assert worst <= 1e-10, worst  # measured 5e-12 (L = 3), 1e-11 (L = 5)
    # and the core's own mode solution (its closed_form_error) agrees with the flow
    r = run_point(c)
    assert r.metrics["closed_form_error"] <= 1e-8


@pytest.mark.parametrize("init,lambda0", [("gaussian", 0.0), ("spectral", 0.8), ("spectral", -0.6), ("balanced", 0.0)])
def test_every_pair_is_conserved_under_flow(init, lambda0):
    L = 4
    c = cfg(
        init=init, integrator="flow", depth=L, k=6, init_scale=0.6, lambda0=lambda0, eta=0.05, steps=100, record_every=5
    )
    tr = simulate(c)
    st = initial_state(c)
    Ws = [st[f"W{j}"] for j in range(1, L + 1)]
    scale = np.array([np.linalg.norm(Ws[j]) ** 2 + np.linalg.norm(Ws[j + 1]) ** 2 for j in range(L - 1)])
    assert tr.pair_drift.shape == (1, L - 1, len(tr.t))
    assert np.max(tr.pair_drift[0] / scale[:, None]) <= 1e-8
    r = run_point(c)
    assert r.metrics["conservation_drift"] <= 1e-8
    # gd conserves them only to O(eta²) per step: the drift metric sees it
    g = run_point(replace(c, integrator="gd", eta=0.01, steps=500))
    assert g.status == "done"
    assert g.metrics["conservation_drift"] > 1e-6
    if init == "spectral":  # C_j(0) = λ₀ on the m modes, 0 elsewhere
        for j in range(L - 1):
            w = np.linalg.eigvalsh(Ws[j + 1].T @ Ws[j + 1] - Ws[j] @ Ws[j].T)
            nz = w[np.abs(w) > 1e-9]
            np.testing.assert_allclose(nz, lambda0, rtol=1e-10)
            assert len(nz) == c.m
        X0 = np.linalg.multi_dot(Ws[::-1])
        assert np.allclose(np.linalg.svd(X0, compute_uv=False), c.init_scale**2, rtol=1e-12)


def test_depth2_gd_to_machine_precision_stops_like_the_asymmetric_model():
    """Points that converge to machine precision leave the gd batch (dynamics.FREEZE_*) in both."""
    # all three reach machine precision within the horizon (the deep loop checks every step, the
    # asymmetric one every 64: they leave at different steps, repeating states equal to rounding)
    cs = [
        cfg(init="spectral", depth=2, k=6, init_scale=s, lambda0=2.0, eta=0.05, steps=3000, record_every=50, seed=i)
        for i, s in enumerate((1.0, 0.7, 0.01))
    ]
    td = simulate(cs)
    ta = simulate([replace(c, model="asymmetric", depth=None) for c in cs])
    assert (td.iterations < 3000).all() and (ta.iterations < 3000).all()
    assert rel_max(td.X, ta.X, np.linalg.norm(initial_state(cs[0])["Y"])) <= 1e-12
    assert np.max(td.final_error) <= 1e-14 and np.max(ta.final_error) <= 1e-14
    np.testing.assert_allclose(td.time_to_tol, ta.time_to_tol, rtol=1e-12)


def test_depth1_is_the_one_layer_model():
    c = cfg(depth=1, integrator="flow", eta=0.05, steps=80, record_every=4)
    st = initial_state(c)
    a = initial_state(replace(c, model="asymmetric", depth=None))
    X0 = a["U0"] @ a["V0"].T  # the two-layer model's start
    assert np.array_equal(st["W1"], X0)
    tr = simulate(c)
    Y = st["Y"]
    ref = Y + (X0 - Y) * np.exp(-tr.t)[:, None, None]  # eq. (4)
    assert rel_max(tr.X[0], ref, np.linalg.norm(Y)) <= 1e-11
    r = run_point(c)
    assert r.metrics["closed_form_error"] <= 1e-11 and r.metrics["q0_norm"] is None
    assert abs(r.metrics["final_error"] - r.metrics["final_error_linear"]) <= 1e-11
    g = simulate(replace(c, integrator="gd", eta=0.01, steps=50, record_every=10))
    i = np.rint(g.t / 0.01)
    np.testing.assert_allclose(g.error[0], g.error[0, 0] * (1 - 0.01) ** i, rtol=1e-12)


def test_reduced_coordinates_do_not_grow_with_k():
    """Balanced and spectral layers live in rank-m hidden spaces whatever k; the reduced run equals a
    run of the full k-wide layers."""
    for init in ("balanced", "spectral"):
        c = cfg(init=init, depth=4, k=300, init_scale=0.06 if init == "balanced" else 0.8, steps=200, record_every=10)
        s = deep.make_deep_state(c)
        assert all(max(W.shape) <= max(c.m, c.n) for W in s.layers)
        full = [W[None] for W in s.full_layers()]
        assert full[1].shape == (1, 300, 300)
        tr_full = deep.run_deep_gd(s.Y[None], full, c.eta, c.steps, c.record_every, c.tol)
        tr = simulate(c)
        assert rel_max(tr.X[0], tr_full.X[0], np.linalg.norm(s.Y)) <= 1e-12
        assert tr.error[0, -1] < 0.9 * tr.error[0, 0]


def test_rate_pred_of_spectral_starts():
    Y = initial_state(cfg(init="spectral"))["Y"]
    sig = np.linalg.svd(Y, compute_uv=False)
    for L in (1, 3, 5):
        assert deep.rate_pred_deep(cfg(init="spectral", depth=L), Y) == pytest.approx(
            L * sig.min() ** (2 - 2 / L), rel=1e-12
        )
    lam = 1.3  # eq. (16) at L = 2, from the general formula
    sc2 = deep.layer_squares(sig.min(), lam, 2)
    assert sig.min() ** 2 * np.sum(1 / sc2) == pytest.approx(np.sqrt(4 * sig.min() ** 2 + lam**2), rel=1e-12)
    # and the fitted tail rate of an imbalanced L = 3 flow agrees with it
    c = cfg(init="spectral", integrator="flow", depth=3, lambda0=1.0, eta=0.1, steps=150, record_every=3)
    r = run_point(c)
    assert r.metrics["rate_fit"] == pytest.approx(r.metrics["rate_pred"], rel=0.05)


def test_batches_equal_single_runs_and_divergence_stays_local():
    cs = [cfg(init="gaussian", seed=s, depth=3, init_scale=0.5) for s in range(3)]
    cs.append(cfg(init="gaussian", seed=9, depth=3, init_scale=4.0))  # diverges at eta = 0.01
    batch = run_points(cs)
    assert batch[-1].status == "diverged" and batch[-1].metrics["diverged_at"] > 0
    for c, r in zip(cs[:3], batch[:3]):
        one = run_point(c)
        assert r.status == "done"
        assert one.metrics["final_error"] == pytest.approx(r.metrics["final_error"], rel=1e-12)
        np.testing.assert_allclose(one.curves.error, r.curves.error, rtol=1e-12)


def test_depth_is_validated():
    bad = run_points(
        [
            cfg(depth=None),
            cfg(depth=0),
            PointConfig(model="asymmetric", m=3, n=5, k=8, eta=0.01, steps=10, depth=3),
            cfg(m=6, n=5),
        ]
    )
    assert [r.status for r in bad] == ["failed"] * 4
    assert bad[0].error.startswith("depth:") and bad[1].error.startswith("depth:")
    assert bad[2].error.startswith("depth:") and bad[3].error.startswith("n:")
