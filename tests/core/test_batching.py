"""Batched and one-at-a-time runs agree; divergence in one point leaves the others intact."""

import math

import numpy as np
import pytest

from flowsweep.core import METRIC_FIELDS, PointConfig, run_point, run_points


def _same(a, b, rtol):
    assert a.status == b.status
    for k in METRIC_FIELDS:
        x, y = a.metrics[k], b.metrics[k]
        if x is None or y is None:
            assert x is None and y is None, k
        else:
            assert x == pytest.approx(y, rel=rtol, abs=rtol * 1e-3), k
    for name in ("t", "error", "error_linear", "singular_values"):
        np.testing.assert_allclose(getattr(a.curves, name), getattr(b.curves, name), rtol=rtol, atol=1e-14)


@pytest.mark.parametrize(
    "model,n,integrator,rtol",
    [
        ("asymmetric", 6, "gd", 1e-12),
        ("symmetric", 4, "gd", 1e-12),
        ("sigmoid", 4, "gd", 1e-12),
        ("asymmetric", 6, "flow", 1e-7),
    ],
)
def test_batched_equals_one_at_a_time(model, n, integrator, rtol):
    configs = [
        PointConfig(
            model=model,
            m=4,
            n=n,
            k=10,
            eta=2e-3 if model != "sigmoid" else 1e-4,
            steps=300,
            record_every=30,
            init_scale=s,
            seed=seed,
            tol=tol,
            lambda0=lam if model == "asymmetric" else 0.0,
            n_samples=40,
            fit_lambda0=(model == "asymmetric" and seed == 1),
        )
        for s, seed, tol, lam in ((0.3, 0, 0.5, 0.0), (1.0, 1, 0.2, 2.0), (0.1, 2, 0.9, -1.0))
    ]
    assert len({c.shape_key() for c in configs}) == 1
    batched = run_points(configs)
    for c, b in zip(configs, batched):
        _same(b, run_point(c), rtol)


def test_divergence_is_isolated():
    base = dict(model="asymmetric", m=3, n=4, k=8, eta=0.05, steps=200, record_every=10)
    good = [PointConfig(init_scale=0.3, seed=s, **base) for s in (0, 1)]
    bad = PointConfig(init_scale=4.0, seed=5, **base)  # eta * ||Q0|| >> 2: gd blows up
    res = run_points([good[0], bad, good[1]])
    assert [r.status for r in res] == ["done", "diverged", "done"]
    r = res[1]
    assert isinstance(r.metrics["diverged_at"], int) and 0 < r.metrics["diverged_at"] <= 200
    assert set(r.metrics) == set(METRIC_FIELDS)
    for v in r.metrics.values():
        assert v is None or math.isfinite(v)
    assert r.metrics["final_error"] is None and r.metrics["q0_norm"] > 0
    assert np.all(np.isfinite(r.curves.error))
    assert np.all(r.curves.t < r.metrics["diverged_at"] * base["eta"])
    for c, b in zip(good, (res[0], res[2])):
        _same(b, run_point(c), 1e-12)
        assert b.metrics["diverged_at"] is None


def test_flow_failure_is_isolated(monkeypatch):
    """A stacked flow solve that fails is re-run point by point: only the bad point is lost."""
    import flowsweep.core.dynamics.flow as dyn_flow

    base = dict(model="asymmetric", m=3, n=4, k=8, eta=0.01, steps=50, record_every=10, integrator="flow")
    good = [PointConfig(init_scale=0.3, seed=s, **base) for s in (0, 1)]
    bad = PointConfig(init_scale=3.0, seed=2, **base)
    clean = run_points(good)
    # treat a relative error above 5 as divergence: only the large-init point ever exceeds it
    monkeypatch.setattr(dyn_flow, "DIVERGENCE_ERROR", 5.0)
    res = run_points([good[0], bad, good[1]])
    assert [r.status for r in res] == ["done", "diverged", "done"]
    assert res[1].metrics["diverged_at"] == 0
    for a, b in zip(clean, (res[0], res[2])):
        _same(a, b, 1e-7)


def test_groups_larger_than_a_chunk(monkeypatch):
    import flowsweep.core.run as run

    configs = [
        PointConfig(
            model="asymmetric", m=3, n=4, k=8, eta=0.01, steps=60, record_every=10, init_scale=0.2 + 0.1 * s, seed=s
        )
        for s in range(5)
    ]
    whole = run_points(configs)
    monkeypatch.setattr(run, "_MAX_BATCH", 2)
    chunked = run_points(configs)
    assert [r.config for r in chunked] == configs
    for a, b in zip(whole, chunked):
        _same(a, b, 1e-12)
