"""The lambda0 search (stencil Newton on a subsample, then on the full grid; core/lambda0_fit.py)
against core 2's search kept as a reference (tests/core/reference_lambda0.py, one sign at a time)
and a grid of the reference closed form, across a spread of cases: k, init scale, m < n and m = n,
near-balanced starts, the factored form's branches, and branches whose minimum is lambda0 = 0."""

import numpy as np
import pytest
from reference_lambda0 import lambda0_fit_reference

from flowsweep.core import PointConfig, initial_state, simulate
from flowsweep.core.closed_forms import regularized_flow
from flowsweep.core.lambda0_fit import lambda0_fit, lambda0_search_bound, regularized_loss


def _point(m, n, k, s, eta, init="gaussian", steps=4000, seed=1, record_every=20, **kw):
    c = PointConfig(
        model="asymmetric",
        m=m,
        n=n,
        k=k,
        eta=eta,
        steps=steps,
        record_every=record_every,
        init_scale=s,
        seed=seed,
        init=init,
        **kw,
    )
    st, tr = initial_state(c), simulate(c)
    return st["Y"], st["U0"], st["V0"], tr.t, tr.X[0]


def _regularized_target(lam, k, noise=1e-3):
    """X = X_reg(t; lam) plus a little noise: the other branch's minimum is at lambda0 = 0."""
    Y, U0, V0, t, _ = _point(5, 10, k, 1.0, 1e-5, seed=3)
    X = regularized_flow(Y, U0, V0, lam, t).X
    X = X + noise * np.linalg.norm(Y) * np.random.default_rng(0).standard_normal(X.shape)
    return Y, U0, V0, t, X


CASES = {
    "m<n k=200 s=0.3": lambda: _point(5, 10, 200, 0.3, 1e-4),
    "m<n k=50 s=0.3 (3x8)": lambda: _point(3, 8, 50, 0.3, 1e-4),
    "m=n k=50 s=1": lambda: _point(5, 5, 50, 1.0, 1e-5),
    "m=n k=200 s=0.3": lambda: _point(5, 5, 200, 0.3, 1e-4),
    "near-balanced m<n k=200 s=0.05": lambda: _point(5, 10, 200, 0.05, 1e-4),
    "near-balanced m=n k=20 s=0.05": lambda: _point(5, 5, 20, 0.05, 1e-4),
    "balanced m=n (factored form)": lambda: _point(5, 5, 50, 0.5, 1e-3, init="balanced", steps=1000),
    "k < m + n (factored form, lambda0 = 0)": lambda: _point(5, 10, 20, 0.3, 1e-4),
    # 21 records, a flat objective (the coarse grid must score the whole sum, not a quadrature of it)
    "short grid m=2 n=4 k=6": lambda: _point(
        2, 4, 6, 0.1, 0.02, steps=200, record_every=10, y_singular_values=(2.0, 0.5), data_scale=3.0
    ),
    "neg branch at lambda0 = 0": lambda: _regularized_target(30.0, 50),
    "pos branch at lambda0 = 0": lambda: _regularized_target(-5.0, 20),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_minima_as_the_reference_on_both_branches(case):
    Y, U0, V0, t, X = CASES[case]()
    fit = lambda0_fit(Y, U0, V0, t, X)
    L = lambda0_search_bound(Y, U0, V0)
    grid = np.geomspace(1e-4 * L, L, 40)
    for branch, sign in ((fit.pos, 1.0), (fit.neg, -1.0)):
        ref = lambda0_fit_reference(Y, U0, V0, t, X, sign=sign)
        # 1e-6 relative, plus twice the reference's own tolerance (xatol 1e-8 max(1, |lambda|))
        assert abs(branch.lambda0 - ref.lambda0) <= 1e-6 * abs(ref.lambda0) + 2e-8 * max(1.0, abs(ref.lambda0))
        assert branch.error == pytest.approx(ref.error, rel=1e-6)
        assert sign * branch.lambda0 >= 0
        # the loss reported is the loss at the lambda0 reported, through the reference closed form
        assert branch.loss == pytest.approx(regularized_loss(Y, U0, V0, t, X, branch.lambda0), rel=1e-10)
        # and no point of a grid over the branch does better
        assert branch.loss <= min(regularized_loss(Y, U0, V0, t, X, sign * g) for g in grid) * (1 + 1e-10)
    best = min((fit.pos, fit.neg), key=lambda b: b.loss)
    assert (fit.lambda0, fit.error, fit.loss) == (best.lambda0, best.error, best.loss)


@pytest.mark.parametrize("case", ["neg branch at lambda0 = 0", "pos branch at lambda0 = 0"])
def test_a_minimum_at_the_branch_end_is_lambda0_zero(case):
    """f' points out of the branch at lambda0 = 0: the search stops at the branch's end, a hair
    inside 0 so that lambda0_fit_pos > 0 > lambda0_fit_neg holds (the reference's grid point 0 wins its
    Brent search there), and the other branch finds the target."""
    Y, U0, V0, t, X = CASES[case]()
    fit = lambda0_fit(Y, U0, V0, t, X)
    at_zero, other = (fit.neg, fit.pos) if case.startswith("neg") else (fit.pos, fit.neg)
    sign = -1.0 if case.startswith("neg") else 1.0
    assert 0 < sign * at_zero.lambda0 <= 1e-12 * lambda0_search_bound(Y, U0, V0)  # its end, sign kept
    assert other.lambda0 == pytest.approx(30.0 if case.startswith("neg") else -5.0, rel=1e-2)
    assert fit.lambda0 == other.lambda0
