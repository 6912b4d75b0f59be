"""core.cost: the a-priori estimates the service's budget relies on, against what run_points uses."""

from __future__ import annotations

import tracemalloc

import pytest

from flowsweep.core import PointConfig, run_points
from flowsweep.core.cost import point_cost

SHAPES = [
    dict(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=2000, record_every=10, init_scale=1.0, fit_lambda0=True),
    dict(model="asymmetric", m=40, n=80, k=1500, eta=1e-3, steps=300, record_every=3, init_scale=0.1),
    dict(model="asymmetric", m=2, n=4, k=20000, eta=1e-2, steps=100, record_every=1),
    dict(model="sigmoid", m=8, n=8, k=40, eta=1e-3, steps=200, record_every=2, n_samples=5000),
    dict(model="symmetric", m=30, n=30, k=60, eta=1e-2, steps=300, record_every=1, integrator="flow"),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda d: f"{d['model']}-{d['m']}x{d['n']}-k{d['k']}")
def test_peak_memory_estimate_bounds_the_measured_peak(shape):
    """The budget is stated in bytes per point: the estimate must not be below the real peak
    (tracemalloc counts numpy's buffers), and not absurdly above it either."""
    c = PointConfig(**shape)
    run_points([c])  # numba's kernels loaded first: a process pays that once, not per point
    tracemalloc.start()
    try:
        (r,) = run_points([c])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status in ("done", "diverged"), r.error
    est = point_cost(c).peak_bytes
    assert peak <= est <= 50 * peak + 5e6, (peak, est)


def test_cost_grows_with_each_axis_of_work():
    base = PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=4000, record_every=20)
    c0 = point_cost(base)
    bigger = [
        dict(steps=40_000, record_every=200),
        dict(m=50, n=100),
        dict(fit_lambda0=True),
        dict(integrator="flow", eta=1.0),
    ]
    for change in bigger:
        c1 = point_cost(PointConfig(**{**base.to_dict(), **change}))
        assert c1.cpu_seconds > c0.cpu_seconds, change
    # flow: the cost follows the horizon eta·steps (the eta = 1e300 point)
    f1 = point_cost(PointConfig(**{**base.to_dict(), "integrator": "flow", "eta": 1.0}))
    f2 = point_cost(PointConfig(**{**base.to_dict(), "integrator": "flow", "eta": 1e300}))
    assert f2.cpu_seconds > 1e290 and f2.cpu_field == "eta" and f1.cpu_seconds < 1e3
    # memory follows k (the state) and the records
    assert point_cost(PointConfig(**{**base.to_dict(), "k": 20000})).memory_field == "axes.k"
    assert point_cost(PointConfig(**{**base.to_dict(), "record_every": 1})).memory_field == "record_every"


@pytest.mark.parametrize("k,seed", [(50, 0), (200, 1), (100, 2)])
def test_lambda0_fit_term_counts_the_pairs_the_fit_solves(k, seed):
    """The λ₀ term prices LAMBDA0_FIT_RECORD_GRIDS record grids of (λ, record) solves: no fewer than
    the fit really solves on Fig. 2 points (counted, not timed), and not wildly more."""
    from flowsweep.core import cost
    from flowsweep.core.lambda0_fit import lambda0_fit
    from flowsweep.core.run import _integrate, _stacked_problem

    c = PointConfig(
        model="asymmetric", m=5, n=10, k=k, eta=1e-5, steps=4000, record_every=20, init_scale=1.0, seed=seed
    )
    prob = _stacked_problem([c])
    tr = _integrate([c], prob)
    fit = lambda0_fit(prob.Y[0], prob.U0[0], prob.V0[0], tr.t, tr.X[0])
    grids = fit.n_records / len(tr.t)
    assert grids <= cost.LAMBDA0_FIT_RECORD_GRIDS <= 2.0 * grids, grids
    # and the term is the pairs' price: the fit's estimate over the point without it
    with_fit = point_cost(PointConfig(**{**c.to_dict(), "fit_lambda0": True})).cpu_seconds
    pair = (15**3 / 3.0 + 2.0 * 15**2 * 5) / cost.FLOPS_PER_SECOND + cost.LAMBDA0_PAIR_OVERHEAD_SECONDS
    want = cost.LAMBDA0_FIT_SECONDS + cost.LAMBDA0_FIT_RECORD_GRIDS * len(tr.t) * pair
    assert with_fit - point_cost(c).cpu_seconds == pytest.approx(want, rel=1e-9)
