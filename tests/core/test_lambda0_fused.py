"""The lambda0 fit's compiled evaluation (numba, core/_lambda0_fused.py) against its numpy path
(lambda0_fit.RegularizedObjective with FLOWSWEEP_NUMBA=0): the same per-record misfits, X_reg and
stability, and the same minima on both branches."""

import numpy as np
import pytest

from flowsweep.core import PointConfig, compiled, initial_state, simulate
from flowsweep.core.lambda0_fit import RegularizedObjective, _subsample, lambda0_fit

pytest.importorskip("numba")


def _point(m, n, k, s, eta, init="gaussian", steps=1000, seed=1):
    c = PointConfig(
        model="asymmetric", m=m, n=n, k=k, eta=eta, steps=steps, record_every=20, init_scale=s, seed=seed, init=init
    )
    st, tr = initial_state(c), simulate(c)
    return st["Y"], st["U0"], st["V0"], tr.t, tr.X[0]


POINTS = {
    "fig2 m<n": lambda: _point(5, 10, 200, 1.0, 1e-5, steps=4000),
    "m=n": lambda: _point(5, 5, 50, 0.3, 1e-4),
    "3x8": lambda: _point(3, 8, 50, 0.3, 1e-4),
    "balanced (unstable for lambda < 0)": lambda: _point(5, 5, 50, 0.5, 1e-3, init="balanced"),
    "k < m + n": lambda: _point(5, 10, 12, 0.3, 1e-4),
}


def _both(monkeypatch, args):
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    fast = RegularizedObjective(*args)
    assert fast.fused is not None
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    slow = RegularizedObjective(*args)
    assert slow.fused is None
    return fast, slow


@pytest.mark.parametrize("case", list(POINTS))
def test_compiled_evaluation_equals_numpy(case, monkeypatch):
    """Both signs, lambda = 0, tiny and large |lambda|, the full grid (t = 0 first) and a subsample
    (batches of one lambda and odd sizes)."""
    args = POINTS[case]()
    fast, slow = _both(monkeypatch, args)
    lams = np.array([0.0, 3.0, -3.0, 1e-3, -1e-3, 470.0, -505.0, 2e4])
    for idx in (None, _subsample(len(args[3]), 12, 6), np.array([0, 1, 2, 3, 40])):
        pf, Xf, sf = fast._evaluate(lams, idx, True)
        ps, Xs, ss = slow._evaluate(lams, idx, True)
        np.testing.assert_array_equal(sf, ss)
        assert Xf is not None and Xs is not None
        ok = np.flatnonzero(ss)
        assert len(ok) >= 4
        scale = np.max(np.abs(Xs[:, :, ok]))
        assert np.max(np.abs(Xf[:, :, ok] - Xs[:, :, ok])) <= 1e-12 * scale
        np.testing.assert_allclose(pf[ok], ps[ok], rtol=1e-11, atol=1e-13 * np.max(ps[ok]))
        # the misfits alone (no X_reg written) are the same numbers
        np.testing.assert_array_equal(fast._evaluate(lams, idx, False)[0][ok], pf[ok])
    if case.startswith("balanced"):
        assert not ss.all()  # the factored form's branch is seen by both


@pytest.mark.parametrize("case", list(POINTS))
def test_same_minima_compiled_and_numpy(case, monkeypatch):
    """The compiled fit (core/_lambda0_fused.fit, one call) against the numpy path's Python
    search: the same steps (the same evaluations and (lambda, record) pairs) and the same minima."""
    args = POINTS[case]()
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    fast = lambda0_fit(*args)
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    slow = lambda0_fit(*args)
    assert (fast.n_evaluations, fast.n_records) == (slow.n_evaluations, slow.n_records)
    for a, b in ((fast.pos, slow.pos), (fast.neg, slow.neg)):
        assert a.lambda0 == pytest.approx(b.lambda0, rel=1e-9, abs=1e-300)
        assert a.loss == pytest.approx(b.loss, rel=1e-9)
    np.testing.assert_allclose(fast.X_reg, slow.X_reg, rtol=0, atol=1e-10 * np.max(np.abs(slow.X_reg)))


@pytest.mark.parametrize("case", list(POINTS))
def test_compiled_setup_equals_numpy(case, monkeypatch):
    """core/_lambda0_fused.setup (SVD of Y, P0 and X in the basis B, the norms of the search bound)
    against the numpy path's factorizations: the same basis up to the signs of singular vectors (and
    any basis of Y's null space), so compared where the basis does not matter."""
    args = POINTS[case]()
    fast, slow = _both(monkeypatch, args)
    assert fast.search_bound() == pytest.approx(slow.search_bound(), rel=1e-13)
    assert fast.p0_max == pytest.approx(slow.p0_max, rel=1e-13)
    np.testing.assert_allclose(fast.sigma, slow.sigma, rtol=1e-14)
    R0 = np.vstack([args[1], args[2]])
    for o in (fast, slow):  # P0 and X(t) back in the original basis
        B = np.block([[o.Phi, np.zeros((o.m, o.n))], [np.zeros((o.n, o.m)), o.PsiT.T]])
        np.testing.assert_allclose(B @ o.P0b @ B.T, R0 @ R0.T, rtol=0, atol=1e-13 * o.p0_max)
        np.testing.assert_allclose(o.original_basis(o.Xb), args[4], rtol=0, atol=1e-14 * np.max(np.abs(args[4])))


def test_vector_exponentials_against_libm():
    """`_decay` (c = e^{-z} and 1 - c^2 on vectors) against numpy's exp and expm1 to a few ulps, from
    z = 0 past the underflow of e^{-z}, on both sides of the switch at z = 1/2."""
    from numba import njit

    from flowsweep.core._lambda0_fused import _decay
    from flowsweep.core._simd import LANES, load, store, zeros_lanes

    @njit
    def run(z, c, num):
        Z, C, M = zeros_lanes(1, 1), zeros_lanes(1, 1), zeros_lanes(1, 1)
        for p in range(0, z.shape[0], LANES):
            Z[0, 0, :] = z[p : p + LANES]
            a, b = _decay(load(Z, 0, 0))
            store(C, 0, 0, a)
            store(M, 0, 0, b)
            c[p : p + LANES], num[p : p + LANES] = C[0, 0, :], M[0, 0, :]

    rng = np.random.default_rng(0)
    edges = [0.0, 5e-324, 1e-300, 1e-12, 0.5, np.nextafter(0.5, 1.0), 0.6931471805599453, 700.0, 708.0, 745.0, 1e300]
    z = np.concatenate([rng.random(800), 3 * rng.random(800), 10 ** rng.uniform(-20, 2.85, 800), edges, [1.0] * 5])
    c, num = np.empty_like(z), np.empty_like(z)
    run(z, c, num)
    want_c, want_num = np.exp(-z), -np.expm1(-2.0 * z)
    normal = want_c > 2.3e-308
    np.testing.assert_allclose(c[normal], want_c[normal], rtol=4e-16, atol=0)
    assert np.all(c[~normal] == 0.0) and np.all(z[~normal] > 708.0)  # below the normals: 0
    np.testing.assert_allclose(num, want_num, rtol=6e-16, atol=0)
    assert c[z == 0.0].tolist() == [1.0] and num[z == 0.0].tolist() == [0.0]


@pytest.mark.parametrize("use_compiled", [True, False])
@pytest.mark.parametrize("case", list(POINTS))
def test_error_curve_is_that_of_the_regularized_flow(case, use_compiled, monkeypatch):
    """Lambda0Fit.error_curve (computed in the basis B, or from the factored form) is
    ||Y - X_reg(t; lambda0)||_F / ||Y|| of the closed form at the lambda0 found, and X_reg (formed when
    asked for) is that closed form's X_reg."""
    from flowsweep.core.closed_forms import regularized_flow

    Y, U0, V0, t, X = POINTS[case]()
    monkeypatch.setattr(compiled, "USE_COMPILED", use_compiled)
    fit = lambda0_fit(Y, U0, V0, t, X)
    Xr = regularized_flow(Y, U0, V0, fit.lambda0, t).X
    want = np.linalg.norm(Y - Xr, axis=(1, 2)) / np.linalg.norm(Y)
    np.testing.assert_allclose(fit.error_curve, want, rtol=1e-9, atol=1e-12)  # relative to ||Y||
    np.testing.assert_allclose(fit.X_reg, Xr, rtol=0, atol=1e-10 * np.max(np.abs(Xr)))
