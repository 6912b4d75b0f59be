"""core.dynamics: one entry point over its methods, and a diverged flow as a named error."""

import numpy as np
import pytest

import flowsweep.core.dynamics.flow as flow
from flowsweep.core import PointConfig, simulate
from flowsweep.core.dynamics import FlowDiverged, integrate
from flowsweep.core.run import _stacked_problem

BASE = dict(model="asymmetric", m=3, n=4, k=8, eta=0.01, steps=50, record_every=10, integrator="flow")


def test_integrate_dispatches_on_the_method_and_names_a_bad_one():
    configs = [PointConfig(init_scale=0.3, seed=s, **{**BASE, "integrator": "gd"}) for s in (0, 1)]
    prob = _stacked_problem(configs)
    tr = integrate(prob, "gd", 0.01, 50, 10, 0.01)
    np.testing.assert_array_equal(tr.X, simulate(configs).X)
    assert tr.iterations is not None  # the gd loop ran, not the flow
    with pytest.raises(ValueError, match="method"):
        integrate(prob, "rk4", 0.01, 50, 10, 0.01)


def test_a_diverged_flow_raises_flow_diverged_with_its_iteration(monkeypatch):
    c = PointConfig(init_scale=3.0, seed=2, **BASE)
    prob = _stacked_problem([c])
    monkeypatch.setattr(flow, "DIVERGENCE_ERROR", 5.0)  # this point's error exceeds 5 at t = 0
    with pytest.raises(FlowDiverged) as info:
        flow._run_flow_stacked(prob, c.eta, c.steps, c.record_every, c.tol)
    assert isinstance(info.value, FloatingPointError)
    assert info.value.iteration == 0 and info.value.t == 0.0


def test_point_by_point_isolation_keeps_each_points_tol(monkeypatch):
    good = [PointConfig(init_scale=0.3, seed=0, tol=0.8, **BASE), PointConfig(init_scale=0.3, seed=1, tol=0.9, **BASE)]
    alone = [simulate(c) for c in good]
    bad = PointConfig(init_scale=3.0, seed=2, tol=0.5, **BASE)
    monkeypatch.setattr(flow, "DIVERGENCE_ERROR", 5.0)
    tr = simulate([good[0], bad, good[1]])  # the stacked solve fails, then one by one
    assert tr.diverged_at.tolist() == [-1, 0, -1]
    for b, a in zip((0, 2), alone):
        assert tr.time_to_tol[b] == a.time_to_tol[0]
        np.testing.assert_array_equal(tr.X[b], a.X[0])
    assert tr.time_to_tol[0] != tr.time_to_tol[2]  # the two tols gave two crossings


@pytest.mark.parametrize("model", ["asymmetric", "sigmoid"])
def test_flow_crossings_equal_solve_ivp_events(model, monkeypatch):
    """The stacked path's batch-wide event check locates the same first crossings as solve_ivp with
    one event per point (e_b(t) = tol_b, falling), and samples the same states on the record grid.
    (The compiled path, each point alone: test_dynamics_flow_compiled.py.)"""
    from scipy.integrate import solve_ivp

    from flowsweep.core import compiled

    monkeypatch.setattr(compiled, "USE_COMPILED", False)

    extra = dict(n_samples=40, m=3, n=3, k=6) if model == "sigmoid" else dict(m=5, n=10, k=50)
    configs = [
        PointConfig(
            model=model, eta=0.02, steps=150, record_every=10, init_scale=s, seed=i, tol=tol, integrator="flow", **extra
        )
        for i, (s, tol) in enumerate([(0.1, 0.3), (1.0, 0.05), (0.5, 0.2), (1.0, 1e-30)])
    ]
    prob = _stacked_problem(configs)
    tr = simulate(configs)
    sysm = flow._FlowSystem(prob)
    tol = np.array([c.tol for c in configs])

    def event(b, k):
        def f(t, y):
            return sysm.evaluate(y)[3 + k][b] - tol[b]

        f.direction = -1
        return f

    sets = 2 if model == "sigmoid" else 1
    events = [event(b, k) for k in range(sets) for b in range(len(configs))]
    t_eval = tr.t
    sol = solve_ivp(
        sysm.rhs,
        (0.0, t_eval[-1]),
        sysm.initial(),
        method="DOP853",
        t_eval=t_eval,
        rtol=flow.FLOW_RTOL,
        atol=flow.FLOW_ATOL,
        events=events,
    )
    for k, got in enumerate([tr.time_to_tol, tr.time_to_tol_linear][:sets]):
        want = [
            sol.t_events[k * len(configs) + b][0] if len(sol.t_events[k * len(configs) + b]) else np.nan
            for b in range(len(configs))
        ]
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert np.isfinite(got).sum() >= 2 and np.isnan(got[3])  # crossings, and one never
    X = np.stack([sysm.evaluate(y)[2] for y in sol.y.T], axis=1)
    np.testing.assert_allclose(tr.X, X, rtol=0, atol=1e-12 * np.abs(X).max())
