"""Every closed form against a flow solve (<= 1e-8 relative), random sizes and seeds, large t."""

import numpy as np
import pytest
from reference import ode_reference, regularized_reference, rel_max

from flowsweep.core import PointConfig, initial_state, run_points
from flowsweep.core.closed_forms import (
    asymmetric_spectral,
    asymmetric_spectral_paper,
    linear_flow,
    paper_constant_C,
    regularized_flow,
    riccati,
    riccati_symmetric,
    symmetric_spectral,
)

TOL = 1e-8


def _flow_configs(rng):
    """Random flow points for which a closed form applies; horizons with t * |eig| >= 1e3."""
    out = []
    for i in range(3):
        m = int(rng.integers(2, 6))
        out.append(
            PointConfig(
                model="symmetric",
                m=m,
                n=m,
                k=int(rng.integers(m, 3 * m)),
                init=("gaussian", "spectral")[i % 2],
                integrator="flow",
                init_scale=float(rng.uniform(0.05, 1.0)),
                eta=1.0,
                steps=200,
                record_every=10,
                seed=int(rng.integers(1000)),
            )
        )
    for lam in (0.0, float(rng.uniform(0.5, 5)), -float(rng.uniform(0.5, 5))):
        m = int(rng.integers(2, 5))
        n = int(rng.integers(m, 7))
        out.append(
            PointConfig(
                model="asymmetric",
                m=m,
                n=n,
                k=int(rng.integers(m, m + n + 4)),
                init="spectral",
                integrator="flow",
                lambda0=lam,
                init_scale=float(rng.uniform(0.05, 1.0)),
                eta=1.0,
                steps=200,
                record_every=10,
                seed=int(rng.integers(1000)),
            )
        )
    m = int(rng.integers(2, 5))
    out.append(
        PointConfig(
            model="asymmetric",
            m=m,
            n=m + int(rng.integers(0, 3)),
            k=3 * m,
            init="balanced",
            integrator="flow",
            init_scale=0.5,
            eta=0.5,
            steps=200,
            record_every=10,
            seed=int(rng.integers(1000)),
        )
    )
    return out


def test_closed_forms_match_core_flow(rng):
    configs = _flow_configs(rng)
    for c, r in zip(configs, run_points(configs)):
        assert r.status == "done", (c, r.error)
        cf = r.metrics["closed_form_error"]
        assert cf is not None and cf <= TOL, (c, cf)


def test_riccati_symmetric_stable_and_literal_forms(rng):
    for _ in range(3):
        m = int(rng.integers(2, 6))
        k = int(rng.integers(1, 2 * m))  # k < m: rank-deficient X0 included
        G = rng.standard_normal((m, m))
        Y = (G + G.T) / 2
        U0 = 0.5 * rng.standard_normal((m, k))
        t = np.concatenate([np.linspace(0, 2, 9), [40.0, 400.0]])  # 4 t |eig| up to ~1e4

        def f(_, u, m=m, k=k, Y=Y):
            U = u.reshape(m, k)
            return (2 * (Y - U @ U.T) @ U).ravel()

        Us = ode_reference(f, U0.ravel(), t).reshape(len(t), m, k)
        Xref = Us @ Us.transpose(0, 2, 1)
        ny = np.linalg.norm(Y)
        X41 = riccati_symmetric(Y, U0 @ U0.T, t)  # eq. (41)
        assert np.all(np.isfinite(X41))
        assert rel_max(X41, Xref, ny) <= TOL
        with np.errstate(all="ignore"):
            X32 = riccati_symmetric(Y, U0 @ U0.T, t, form="literal")  # eq. (6)/(32)
        # where the printed form is usable (moderate t) both agree; for large t it loses all
        # accuracy or overflows, which is why eq. (41) is used
        assert np.all(np.isfinite(X32[:9]))
        assert rel_max(X32[:9], X41[:9], ny) <= TOL


def test_symmetric_spectral_eq7(rng):
    for _ in range(3):
        m = int(rng.integers(2, 6))
        G = rng.standard_normal((m, m))
        Y = (G + G.T) / 2
        w, Phi = np.linalg.eigh(Y)
        s = float(rng.uniform(0.05, 1))
        t = np.array([0.0, 0.1, 0.7, 3.0, 30.0, 300.0])
        x = symmetric_spectral(w, np.full(m, s * s), t)
        assert np.all(np.isfinite(x))
        X7 = np.einsum("im,tm,jm->tij", Phi, x, Phi)
        Xr = riccati_symmetric(Y, s * s * np.eye(m), t)
        assert rel_max(X7, Xr, np.linalg.norm(Y)) <= TOL
        assert np.allclose(x[-1], np.maximum(w, 0), atol=1e-12)
    # sigma = 0: sigma0 / (1 + 4 t sigma0)
    assert symmetric_spectral(np.array([0.0]), np.array([0.5]), [2.0])[0, 0] == pytest.approx(0.5 / 5)


@pytest.mark.parametrize(
    "sigma,x0,lam",
    [
        (1.3, 0.01, 0.0),  # balanced limit: logistic
        (1.3, 0.01, 2.5),
        (0.7, 2.0, -3.0),
        (0.4, 0.2, 40.0),
        (2.0, 2.0, 1.0),  # x0 = sigma stays
        (1.0, 0.3, 1e-9),  # near-balanced: the printed C of eq. (51) is 0/0 here
    ],
)
def test_asymmetric_spectral_eq15(sigma, x0, lam):
    t = np.array([0.0, 0.05, 0.5, 1.0, 3.0, 10.0, 500.0])
    ref = ode_reference(lambda _, x: 2 * (sigma - x) * np.sqrt(x * x + lam * lam / 4), np.array([x0]), t)[:, 0]
    x = asymmetric_spectral(np.array([sigma]), np.array([x0]), lam, t)[:, 0]
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x - ref)) <= TOL * sigma
    if lam == 0:
        logistic = sigma / (1 + (sigma / x0 - 1) * np.exp(-2 * sigma * t))
        assert np.allclose(x, logistic, rtol=1e-13, atol=0)
    if abs(lam) > 1e-3 and x0 != sigma:
        # eq. (15) as printed, with C of eq. (51), where its exponentials do not overflow
        ok = t * np.sqrt(4 * sigma**2 + lam**2) < 300
        with np.errstate(all="ignore"):
            xp = asymmetric_spectral_paper(np.array([sigma]), x0, lam, t[ok])[:, 0]
        assert np.max(np.abs(xp - ref[ok])) <= TOL * sigma
        assert paper_constant_C(sigma, x0, lam) != 0


def test_regularized_flow_eq21_any_R0(rng):
    for trial in range(3):
        m = int(rng.integers(2, 5))
        n = int(rng.integers(m, 7))
        k = int(rng.integers(1, m + n + 3))
        Y = rng.standard_normal((m, n))
        U0 = rng.standard_normal((m, k)) * rng.uniform(0.1, 1)
        V0 = rng.standard_normal((n, k)) * rng.uniform(0.1, 1)
        if trial == 0:  # balanced, rank-deficient R0
            W, _ = np.linalg.qr(rng.standard_normal((n, m)))
            k = U0.shape[1]
            V0 = W @ U0
        ny = np.linalg.norm(Y)
        # The reference integrates a factor with exactly rank(R0) columns: with spare columns,
        # rounding seeds components along unstable directions that the exact flow never has
        # (rank(R R^T) = rank(R0) for all t) and the reference drifts to another solution.
        Uf, sf, _ = np.linalg.svd(np.vstack([U0, V0]), full_matrices=False)
        r = int(np.sum(sf > 1e-12 * sf[0]))
        Fr = Uf[:, :r] * sf[:r]
        for lam in (0.0, float(rng.uniform(1, 20)), -float(rng.uniform(1, 20))):
            t = np.concatenate([np.linspace(0, 1, 6), [5.0, 10.0, 60.0]])  # t |eig| up to ~700
            Xref, _ = regularized_reference(Y, Fr[:m], Fr[m:], lam, t)
            Xr = regularized_flow(Y, U0, V0, lam, t).X
            assert np.all(np.isfinite(Xr))
            assert rel_max(Xr, Xref, ny) <= TOL, (m, n, k, lam, trial)
            with np.errstate(all="ignore"):
                Xl = regularized_flow(Y, U0, V0, lam, t[:6], form="literal").X
            assert rel_max(Xl, Xref[:6], ny) <= TOL


def test_riccati_limit_is_stabilising_solution(rng):
    # P -> 2 max(A, 0) for a full-rank start, at t |a| ~ 1e4 without overflow
    N = 6
    G = rng.standard_normal((N, N))
    A = (G + G.T) / 2
    F = rng.standard_normal((N, N + 2))
    P = riccati(A, F @ F.T, [1e4 / np.abs(np.linalg.eigvalsh(A)).min()])[0]
    a, E = np.linalg.eigh(A)
    assert np.allclose(P, (E * (2 * np.maximum(a, 0))) @ E.T, atol=1e-10)


def test_linear_eq4():
    Y = np.array([[1.0, 2.0], [3.0, 4.0]])
    X0 = np.zeros((2, 2))
    X = linear_flow(Y, X0, [0.0, 1.0, 800.0])
    assert np.allclose(X[1], Y * (1 - np.exp(-1)))
    assert np.allclose(X[2], Y) and np.all(np.isfinite(X))


def test_closed_form_uses_the_points_own_state():
    c = PointConfig(
        model="asymmetric",
        m=3,
        n=4,
        k=9,
        init="spectral",
        integrator="flow",
        lambda0=1.5,
        init_scale=0.4,
        eta=0.05,
        steps=100,
        record_every=5,
        seed=7,
    )
    s = initial_state(c)
    # Definition 3: X0 = Phi diag(s^2) Psi^T restricted to the m components
    Phi, sig, PsiT = np.linalg.svd(s["Y"], full_matrices=False)
    assert np.allclose(s["U0"] @ s["V0"].T, 0.16 * Phi @ PsiT, atol=1e-13)


def test_long_horizon_flow_batch_agrees_with_the_symmetric_closed_form():
    # 40 points solved as one stacked system to t = 100: the slow components (an eigenvalue of Y
    # near 0) accumulate the integrator's error; the closed form is the reference here
    configs = [
        PointConfig(
            model="symmetric",
            init="spectral",
            integrator="flow",
            m=5,
            n=5,
            k=10,
            eta=1e-2,
            steps=10_000,
            record_every=10,
            init_scale=1.0,
            seed=seed,
        )
        for seed in range(40)
    ]
    res = run_points(configs)
    worst = max(r.metrics["closed_form_error"] for r in res)
    assert worst <= 1e-8, worst
