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
    """The compiled search (core/_lambda0_fused.search, one call) against the numpy path's Python
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
