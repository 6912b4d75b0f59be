"""core.cost: the a-priori estimates the service's budget relies on, against what run_points uses."""

from __future__ import annotations

import tracemalloc

import numpy as np
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


@pytest.mark.parametrize(
    "shape",
    [
        dict(m=5, n=10, k=50, init_scale=0.01),  # Fig. 1's three scales
        dict(m=5, n=10, k=50, init_scale=0.1),
        dict(m=5, n=10, k=50, init_scale=1.0),
        dict(m=5, n=10, k=50, init_scale=1.0, steps=400),
        dict(m=2, n=4, k=20, init_scale=3.0),
        dict(m=20, n=30, k=100, init_scale=0.01, init="spectral"),
    ],
    ids=lambda d: "-".join(f"{v}" for v in d.values()),
)
def test_compiled_flow_term_counts_the_right_hand_sides(monkeypatch, shape):
    """The compiled flow's term prices cost.flow_right_hand_sides evaluations: no fewer than the
    compiled DOP853 really evaluates on the point (counted, not timed: every seed of the shape),
    and not wildly more; the term is their price."""
    pytest.importorskip("numba")
    from flowsweep.core import compiled, cost
    from flowsweep.core.dynamics import flow, record_grid
    from flowsweep.core.run import _stacked_problem

    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    base = dict(model="asymmetric", eta=1e-3, steps=4000, record_every=20, integrator="flow")
    configs = [PointConfig(**{**base, **shape, "seed": s}) for s in range(4)]
    c = configs[0]
    t_eval = record_grid(c.eta, c.steps, c.record_every) * c.eta
    sol = flow._solve_compiled(_stacked_problem(configs), t_eval, np.full(len(configs), 0.01))
    counted = sol.counts[:, 2]
    assert np.all(sol.status == 0)
    est = cost.flow_right_hand_sides(c)
    assert counted.max() <= est <= 4.0 * counted.mean(), (counted, est)
    # the term: the flow's estimate over gd's on the same point is the evaluations' price over gd's steps
    r = min(c.k, c.m + c.n)
    flops = 6.0 * c.m * c.n * r / cost.FLOPS_PER_SECOND
    gd = PointConfig(**{**c.to_dict(), "integrator": "gd"})
    want = est * (cost.COMPILED_FLOW_RHS_OVERHEAD_SECONDS + flops) - c.steps * (cost.STEP_OVERHEAD_SECONDS + flops)
    assert point_cost(c).cpu_seconds - point_cost(gd).cpu_seconds == pytest.approx(want, rel=1e-9)


def test_flow_without_numba_keeps_the_stacked_solvers_price(monkeypatch):
    """FLOWSWEEP_NUMBA=0 (or no numba, or a model the compiled flow does not run): scipy's stacked
    DOP853, 12 right-hand sides per step at RHS_OVERHEAD_SECONDS each, over 0.5·L·t + 50 steps."""
    from flowsweep.core import compiled, cost

    c = PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=4000, record_every=20, integrator="flow")
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    compiled_price = point_cost(c).cpu_seconds
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    scipy_price = point_cost(c).cpu_seconds
    gd = point_cost(PointConfig(**{**c.to_dict(), "integrator": "gd"})).cpu_seconds
    flops = 6.0 * 5 * 10 * 15 / cost.FLOPS_PER_SECOND
    stiffness = 2.0 * (5**0.5 + 10**0.5 + 2.0 * 0.1**2 * (10**0.5 + 50**0.5) ** 2)
    steps = 0.5 * stiffness * 4.0 + 50.0
    want = steps * 12 * (cost.RHS_OVERHEAD_SECONDS + flops) - 4000 * (cost.STEP_OVERHEAD_SECONDS + flops)
    assert scipy_price - gd == pytest.approx(want, rel=1e-9)
    compiled_work = cost.flow_right_hand_sides(c) * (cost.COMPILED_FLOW_RHS_OVERHEAD_SECONDS + flops)
    assert scipy_price - compiled_price == pytest.approx(
        want + 4000 * (cost.STEP_OVERHEAD_SECONDS + flops) - compiled_work
    )
    assert scipy_price - compiled_price > compiled_work  # the Python loop's overhead per evaluation
    monkeypatch.setattr(compiled, "USE_COMPILED", True)  # the symmetric model: always scipy's
    sym = PointConfig(**{**c.to_dict(), "model": "symmetric", "n": 5})
    sym_steps = 0.5 * 2.0 * (2 * 5**0.5 + 2.0 * 0.1**2 * (5**0.5 + 50**0.5) ** 2) * 4.0 + 50.0
    assert point_cost(sym).cpu_seconds > sym_steps * 12 * cost.RHS_OVERHEAD_SECONDS
