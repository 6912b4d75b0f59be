"""The batch path (make_initial_states, batch_metrics, run_points_columns) gives the numbers of the
per-point path it replaced: data drawn per point from `data_rng` / `weight_rng`, metrics and
curves from `point_metrics` point by point (kept as the reference), across models, gd and flow,
diverged points, points stopped at machine precision and record_every > 1."""

import math

import numpy as np
import pytest

from flowsweep.core import METRIC_FIELDS, PointConfig, PointResult, run_points
from flowsweep.core.closed_forms_stacked import regularized_flow_stacked
from flowsweep.core.data import make_initial_state
from flowsweep.core.dynamics import Problem, integrate, record_grid, reduce_factors
from flowsweep.core.metrics import batch_metrics, point_metrics
from flowsweep.core.run import _stacked_problem, run_points_columns, simulate, trajectory_singular_values
from flowsweep.status import PointStatus

RTOL = 1e-12


def reference_group(configs):
    """run_points' batch as it was computed point by point: each point's state from its own
    Generators, one stacked simulation, then point_metrics per point."""
    c0 = configs[0]
    states = [make_initial_state(c) for c in configs]
    sym = c0.model == "symmetric"
    U0, V0 = reduce_factors(np.stack([s.U0 for s in states]), None if sym else np.stack([s.V0 for s in states]))
    prob = Problem(
        model=c0.model,
        Y=np.stack([s.Y for s in states]),
        U0=U0,
        V0=V0,
        A=None if c0.model != "sigmoid" else np.stack([s.A for s in states]),
    )
    tr = integrate(prob, c0.integrator, c0.eta, c0.steps, c0.record_every, np.array([c.tol for c in configs]))
    sv = trajectory_singular_values(tr, record_grid(c0.eta, c0.steps, c0.record_every))
    live = np.flatnonzero(tr.diverged_at < 0)
    X_reg = [None] * len(configs)
    if c0.model == "asymmetric" and len(live):
        X = regularized_flow_stacked(prob.Y[live], U0[live], V0[live], [configs[b].lambda0 for b in live], tr.t)
        for j, b in enumerate(live):
            X_reg[b] = X[j]
    out = []
    for b, c in enumerate(configs):
        status, met, curves = point_metrics(
            c, states[b].Y, U0[b], None if V0 is None else V0[b], tr, b, sv[b], X_reg=X_reg[b]
        )
        out.append(PointResult(config=c, status=status, metrics=met, curves=curves))
    return out


def assert_same(got, ref):
    assert got.status == ref.status and got.error == ref.error
    assert set(got.metrics) == set(METRIC_FIELDS)
    for k in METRIC_FIELDS:
        x, y = got.metrics[k], ref.metrics[k]
        if x is None or y is None:
            assert x is None and y is None, (k, x, y)
        else:
            assert type(x) is type(y), (k, x, y)
            assert math.isfinite(x)
            assert x == pytest.approx(y, rel=RTOL, abs=0.0), k
    if ref.curves is None:
        assert got.curves is None
        return
    for name in ("t", "error", "error_linear", "singular_values", "error_regularized_fit"):
        a, b = getattr(got.curves, name), getattr(ref.curves, name)
        if b is None:
            assert a is None, name
        else:
            assert a.shape == b.shape, name
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=0.0, err_msg=name)


def group(count, **kw):
    """n same-shape points whose per-point parameters (seed, init_scale, tol, lambda0) differ."""
    scales, tols, lams = (0.1, 1.0, 0.3, 0.01), (0.5, 0.2, 0.9, 0.05), (0.0, 2.0, -1.0, 0.0)
    out = []
    for i in range(count):
        c = dict(seed=i, init_scale=scales[i % 4], tol=tols[i % 4])
        if kw.get("model", "asymmetric") == "asymmetric":
            c["lambda0"] = lams[i % 4]
        c.update(kw)
        out.append(PointConfig(**c))
    return out


TINY = dict(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=10)
GROUPS = {
    "tiny points (issue 9)": group(8, **TINY),
    "asymmetric gd, record_every 30": group(
        8, model="asymmetric", m=4, n=6, k=10, eta=2e-3, steps=300, record_every=30
    ),
    "asymmetric balanced": group(
        6, model="asymmetric", init="balanced", m=3, n=5, k=8, eta=1e-2, steps=200, record_every=7
    ),
    "asymmetric spectral, fit_lambda0": [
        PointConfig(**{**c.to_dict(), "fit_lambda0": i % 2 == 0})
        for i, c in enumerate(
            group(4, model="asymmetric", init="spectral", m=3, n=4, k=6, eta=1e-2, steps=120, record_every=10)
        )
    ],
    "asymmetric gaussian, fit_lambda0": group(
        3, model="asymmetric", m=3, n=4, k=9, eta=1e-2, steps=150, record_every=15, fit_lambda0=True
    ),
    "asymmetric, y_singular_values and data_seed": group(
        4, model="asymmetric", m=3, n=5, k=7, eta=1e-2, steps=50, y_singular_values=(1.0, 0.5, 0.1), data_seed=3
    ),
    "asymmetric k < m": group(4, model="asymmetric", m=4, n=5, k=2, eta=1e-2, steps=60, record_every=5),
    "asymmetric flow": group(
        4, model="asymmetric", m=3, n=5, k=7, eta=2e-2, steps=40, record_every=4, integrator="flow"
    ),
    "symmetric gd": group(6, model="symmetric", m=4, n=4, k=9, eta=2e-3, steps=300, record_every=30),
    "symmetric spectral": group(
        4, model="symmetric", init="spectral", m=3, n=3, k=5, eta=5e-3, steps=100, record_every=10
    ),
    "symmetric flow": group(3, model="symmetric", m=3, n=3, k=5, eta=2e-2, steps=30, record_every=3, integrator="flow"),
    "sigmoid gd": group(4, model="sigmoid", m=3, n=3, k=6, eta=1e-3, steps=100, record_every=10, n_samples=30),
    "sigmoid balanced flow": group(
        3,
        model="sigmoid",
        init="balanced",
        m=2,
        n=2,
        k=4,
        eta=1e-2,
        steps=20,
        record_every=5,
        n_samples=20,
        integrator="flow",
    ),
    # eta * ||Q0|| >> 2 at init_scale 4: those points blow up, the others finish
    "asymmetric diverged": [
        PointConfig(model="asymmetric", m=3, n=4, k=8, eta=0.05, steps=200, record_every=10, init_scale=s, seed=i)
        for i, s in enumerate((0.3, 4.0, 0.3, 5.0))
    ],
    "symmetric diverged": [
        PointConfig(model="symmetric", m=3, n=3, k=8, eta=0.05, steps=200, record_every=10, init_scale=s, seed=i)
        for i, s in enumerate((4.0, 0.3, 6.0))
    ],
    # init_scale 1 converges to machine precision within the horizon: gd stops those points
    "asymmetric stopped": group(6, model="asymmetric", m=5, n=10, k=50, eta=1e-2, steps=3000, record_every=20),
}


@pytest.mark.parametrize("name", list(GROUPS))
def test_batch_equals_per_point_reference(name):
    configs = GROUPS[name]
    assert len({c.shape_key() for c in configs}) == 1, name
    got, ref = run_points(configs), reference_group(configs)
    for g, r in zip(got, ref):
        assert_same(g, r)
    if "diverged" in name:
        assert {r.status for r in ref} == {PointStatus.DONE, PointStatus.DIVERGED}
    if name == "asymmetric stopped":  # some point left gd's batch early
        assert (simulate(configs).iterations < configs[0].steps).any()


def test_sigmoid_diverged_points(monkeypatch):
    import flowsweep.core.dynamics.gd_sigmoid as gd_sigmoid

    configs = GROUPS["sigmoid gd"]
    e0 = simulate(configs).error[:, 0]
    # a divergence threshold between the smallest initial error and the others: those diverge at once
    monkeypatch.setattr(gd_sigmoid, "DIVERGENCE_ERROR", 0.5 * (e0.min() + np.sort(e0)[1]))
    got, ref = run_points(configs), reference_group(configs)
    assert {r.status for r in ref} == {PointStatus.DONE, PointStatus.DIVERGED}
    for g, r in zip(got, ref):
        assert_same(g, r)


def test_batch_metrics_directly():
    """batch_metrics on a stacked problem equals point_metrics on its rows, also without X_reg."""
    configs = GROUPS["asymmetric gd, record_every 30"]
    prob = _stacked_problem(configs)
    c0 = configs[0]
    tr = integrate(prob, "gd", c0.eta, c0.steps, c0.record_every, np.array([c.tol for c in configs]))
    sv = trajectory_singular_values(tr, record_grid(c0.eta, c0.steps, c0.record_every))
    statuses, cols, block = batch_metrics(configs, prob.Y, prob.U0, prob.V0, tr, sv)  # X_reg per point
    assert len(block) == len(configs)
    for b, c in enumerate(configs):
        status, met, curves = point_metrics(c, prob.Y[b], prob.U0[b], prob.V0[b], tr, b, sv[b])
        got = PointResult(
            config=c, status=statuses[b], metrics={k: cols[k][b] for k in METRIC_FIELDS}, curves=block.curves(b)
        )
        assert_same(got, PointResult(config=c, status=status, metrics=met, curves=curves))


def test_columns_are_the_results():
    """run_points_columns: one row per point in input order, curves in blocks covering every point
    that ran exactly once (failed points none), the same values as run_points."""
    configs = (
        GROUPS["asymmetric diverged"]
        + [PointConfig(model="asymmetric", m=3, n=2, k=4, eta=1e-2, steps=5)]  # n < m: failed
        + GROUPS["symmetric gd"][:2]
        + [PointConfig(model="deep", m=2, n=3, k=4, eta=1e-2, steps=20, record_every=5, depth=3, seed=1)]
    )
    cols = run_points_columns(configs)
    assert len(cols) == len(configs) and cols.configs == configs
    assert set(cols.metrics) == set(METRIC_FIELDS)
    covered = np.concatenate(cols.block_points)
    assert sorted(covered.tolist()) == [i for i, s in enumerate(cols.status) if s != PointStatus.FAILED]
    assert cols.status[4] == PointStatus.FAILED and cols.error[4].startswith("n:")
    for i, (r, ref) in enumerate(zip(cols.results(), run_points(configs))):
        assert r.config == configs[i]
        assert_same(r, ref)
        assert r.wall_seconds >= 0.0
        for k in METRIC_FIELDS:
            assert cols.metrics[k][i] is r.metrics[k] or cols.metrics[k][i] == r.metrics[k]
    for block, pts in zip(cols.blocks, cols.block_points):
        for j, i in enumerate(pts.tolist()):
            c = block.curves(j)
            assert int(block.n_records[j]) == len(c.t) <= len(block.t)
            if cols.status[i] == PointStatus.DIVERGED:  # cut where it diverged
                assert np.all(c.t < cols.metrics["diverged_at"][i] * configs[i].eta)


def test_interleaved_shapes_land_in_their_rows():
    """Two shapes interleaved (their points not consecutive) and one shape in one run: each
    point's row holds the numbers of that point run alone."""
    a, b = GROUPS["asymmetric gd, record_every 30"][:3], GROUPS["symmetric gd"][:3]
    configs = [c for pair in zip(a, b) for c in pair]
    cols = run_points_columns(configs)
    for r, c in zip(cols.results(), configs):
        assert_same(r, run_points_columns([c]).results()[0])
    assert [r.config for r in cols.results()] == configs


@pytest.mark.parametrize("integrator", ["gd", "flow"])
def test_linear_times_to_tol_is_the_scalar_one(integrator):
    """linear_times_to_tol (arrays) against linear_time_to_tol point by point, bit for bit: random
    errors, errors already below tol, and errors exactly on the grid e0 (1 - eta)^i = tol, where
    the first step reaching tol is decided by the last bit."""
    from flowsweep.core.metrics import linear_time_to_tol, linear_times_to_tol

    rng = np.random.default_rng(7)
    eta = 1e-3 if integrator == "gd" else 0.05
    tols = rng.choice([0.01, 0.2, 0.5], size=600)
    configs = [
        PointConfig(model="asymmetric", m=2, n=3, k=4, eta=eta, steps=10, tol=float(t), integrator=integrator)
        for t in tols
    ]
    e0 = np.exp(rng.uniform(-6, 3, size=600))
    e0[:50] = tols[:50] * rng.uniform(0.1, 1.0, size=50)  # at or below tol from the start
    e0[50] = tols[50]
    steps = rng.integers(1, 5000, size=100)  # on the grid: tol = e0 (1 - eta)^i to rounding
    e0[100:200] = tols[100:200] / np.exp(steps * np.log1p(-eta))
    got = linear_times_to_tol(configs, e0)
    ref = np.array([linear_time_to_tol(c, float(e)) for c, e in zip(configs, e0)])
    assert np.array_equal(got, ref)
    assert (got[:51] == 0.0).all() and (got[100:200] > 0).all()


def test_linear_times_to_tol_raises_as_the_scalar_one_on_a_non_finite_error():
    """e0 = NaN (Y = 0) raises as linear_time_to_tol does, so the batch falls back point by point."""
    from flowsweep.core.metrics import linear_time_to_tol, linear_times_to_tol

    c = PointConfig(model="asymmetric", m=2, n=3, k=4, eta=0.01, steps=10)
    with pytest.raises(ValueError) as scalar:
        linear_time_to_tol(c, float("nan"))
    with pytest.raises(ValueError) as batch:
        linear_times_to_tol([c, c], np.array([0.5, np.nan]))
    assert str(batch.value) == str(scalar.value)
