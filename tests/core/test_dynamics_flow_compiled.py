"""The compiled flow (numba, core/dynamics/_flow_dop853.py) against independent references: scipy's
DOP853 on each point alone (the same method and step control, so the same steps up to rounding),
a finer solve, the closed forms, and today's stacked scipy path (FLOWSWEEP_NUMBA=0)."""

import numpy as np
import pytest
from reference import rel_max
from scipy.integrate import solve_ivp

import flowsweep.core.dynamics.flow as flow
from flowsweep.core import PointConfig, run_points, simulate
from flowsweep.core import compiled as core_compiled
from flowsweep.core.dynamics import Problem
from flowsweep.core.run import _stacked_problem

pytest.importorskip("numba")


def _fig1(scale, seed, **kw):
    base = dict(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=4000, record_every=20, tol=0.01)
    return PointConfig(**{**base, "init_scale": scale, "seed": seed, "integrator": "flow", **kw})


def _point(prob, b):
    return Problem(model=prob.model, Y=prob.Y[b : b + 1], U0=prob.U0[b : b + 1], V0=prob.V0[b : b + 1])


def _alone(prob, b, t, tol, **opts):
    """scipy's DOP853 on point b alone (solve_ivp, one event e(t) = tol falling):
    (X(t), U(T), V(T), crossing, right-hand side evaluations)."""
    sysm = flow._FlowSystem(_point(prob, b))

    def event(_, y):
        return sysm.evaluate(y)[3][0] - tol

    event.direction = -1
    sol = solve_ivp(
        sysm.rhs,
        (0.0, t[-1]),
        sysm.initial(),
        method="DOP853",
        t_eval=t,
        rtol=flow.FLOW_RTOL,
        atol=flow.FLOW_ATOL,
        events=[event],
        **opts,
    )
    assert sol.status == 0
    X = np.stack([sysm.evaluate(y)[2][0] for y in sol.y.T])
    U, V, _ = sysm.factors(sol.y[:, -1])
    crossing = sol.t_events[0][0] if len(sol.t_events[0]) else np.nan
    return X, U[0], V[0], crossing, sol.nfev


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setattr(core_compiled, "USE_COMPILED", True)
    assert flow.compiled_available()


def test_each_point_takes_scipys_steps_alone(compiled):
    """Each point takes the steps scipy's DOP853 takes on that point alone (the same number of
    right-hand side evaluations: same step control, dense output and event steps); records, final
    factors and time to tol agree to 1e-11 of ||Y|| (rounding, amplified by up to ~1e3 on the
    points of scale 1, whose step sequence also changes with the rounding: scipy's own changes by
    a step and a few rejections when y0 moves by 1e-16; the slow points to 1e-13).
    9 points: the 8 lanes are refilled."""
    configs = [_fig1((0.01, 0.1, 1.0)[i % 3], i // 3, tol=(0.01, 0.3, 1e-30)[i % 3]) for i in range(9)]
    configs[4] = _fig1(0.1, 2, tol=0.995)  # e(0) = 0.9937 <= tol: crossed at t = 0
    prob = _stacked_problem(configs)
    tr = simulate(configs)
    t_eval = tr.t
    nfev = flow._solve_compiled(prob, t_eval, np.array([c.tol for c in configs])).counts[:, 2]
    for b, c in enumerate(configs):
        X, U, V, crossing, nfev_alone = _alone(prob, b, t_eval, c.tol)
        ny = prob.y_norm[b]
        close = 1e-13 if c.init_scale < 1 else 1e-11
        assert rel_max(tr.X[b], X, ny) <= close, b
        assert np.max(np.abs(tr.U_final[b] - U)) <= close * ny and np.max(np.abs(tr.V_final[b] - V)) <= close * ny
        want = 0.0 if c.tol == 0.995 else crossing
        np.testing.assert_allclose(tr.time_to_tol[b], want, rtol=close, atol=0)
        if c.init_scale < 1:
            assert nfev[b] == nfev_alone, (b, nfev[b], nfev_alone)
        else:
            assert abs(nfev[b] - nfev_alone) <= 0.05 * nfev_alone, (b, nfev[b], nfev_alone)
    assert np.isnan(tr.time_to_tol[2]) and tr.time_to_tol[4] == 0.0 and np.all(tr.time_to_tol[[1, 7]] > 0)
    e = np.linalg.norm(prob.Y[:, None] - tr.X, axis=(2, 3)) / prob.y_norm[:, None]
    np.testing.assert_allclose(tr.error, e, rtol=1e-13, atol=0)
    np.testing.assert_allclose(tr.final_error, e[:, -1], rtol=1e-13, atol=0)
    Q = lambda U, V: U.transpose(0, 2, 1) @ U - V.transpose(0, 2, 1) @ V  # noqa: E731
    assert np.all(tr.q_drift < 1e-11)
    D = Q(tr.U_final, tr.V_final) - Q(prob.U0, prob.V0)
    np.testing.assert_allclose(tr.q_drift[:, -1], np.linalg.norm(D, axis=(1, 2)), rtol=0, atol=5e-14)


def test_many_records_in_one_step_and_rejected_lanes(compiled):
    """Records every gd step (t_eval 1e-3 apart; the steps of the points of scale < 1 are ~20x
    longer): lanes sample several records per step, all lanes at once, against scipy's dense output
    on each point alone; points of scale 3 have rejected steps while the other lanes accept (the
    accepted lanes move on alone); the slow points take scipy's steps."""
    configs = [_fig1((0.01, 0.1, 3.0)[i % 3], i, steps=300, record_every=1) for i in range(10)]
    prob = _stacked_problem(configs)
    tr = simulate(configs)
    counts = flow._solve_compiled(prob, tr.t, np.full(len(configs), 0.01)).counts
    slow = np.array([c.init_scale < 1 for c in configs])
    assert np.all(len(tr.t) > 5 * counts[slow, 0]) and counts[~slow, 1].sum() > 0 and np.all(counts[slow, 1] == 0)
    for b, c in enumerate(configs):
        X, U, V, _, nfev_alone = _alone(prob, b, tr.t, c.tol)
        ny = prob.y_norm[b]
        close = 1e-13 if c.init_scale < 1 else 1e-10  # scale 3: rounding amplified (4e-11, as before)
        assert rel_max(tr.X[b], X, ny) <= close, b
        assert np.max(np.abs(tr.U_final[b] - U)) <= close * ny
        if c.init_scale < 1:
            assert counts[b, 2] == nfev_alone, (b, counts[b], nfev_alone)


def test_record_values_on_random_states(compiled):
    """X = U V^T, ||Y - X||^2 and ||Q - Q0||_F^2 of sampled states (any number of samples per
    point, a partial last group of lanes) against numpy."""
    from flowsweep.core.dynamics import _flow_dop853

    rng = np.random.default_rng(5)
    B, T, m, n, r = 3, 11, 4, 6, 10
    U = rng.standard_normal((B, T, m, r))
    V = rng.standard_normal((B, T, n, r))
    rec = np.concatenate([U.reshape(B, T, -1), V.reshape(B, T, -1)], axis=2)
    Y = rng.standard_normal((B, m, n))
    Q0 = rng.standard_normal((B, r, r))
    Q0 = Q0 + Q0.transpose(0, 2, 1)
    X, r2, d2 = np.empty((B, T, m, n)), np.empty((B, T)), np.empty((B, T))
    _flow_dop853.record_values(rec, Y, Q0, m, n, r, X, r2, d2)
    Xw = U @ V.transpose(0, 1, 3, 2)
    Dw = U.transpose(0, 1, 3, 2) @ U - V.transpose(0, 1, 3, 2) @ V - Q0[:, None]
    np.testing.assert_allclose(X, Xw, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(r2, ((Y[:, None] - Xw) ** 2).sum(axis=(2, 3)), rtol=1e-13)
    np.testing.assert_allclose(d2, (Dw**2).sum(axis=(2, 3)), rtol=1e-13)


def test_more_accurate_than_the_stacked_solve(compiled, monkeypatch):
    """Against a solve with 5x smaller steps: the compiled path is within 1e-11 of ||Y|| on every
    point; the stacked scipy path (one error norm for the batch, RMS over its points) is not on
    the fast points of scale 1, and agrees with the compiled one to 1e-12 on the slow ones."""
    configs = [_fig1((0.01, 1.0)[i % 2], i // 2) for i in range(6)]
    prob = _stacked_problem(configs)
    fast = simulate(configs)
    monkeypatch.setattr(core_compiled, "USE_COMPILED", False)
    stacked = simulate(configs)
    worst_stacked = 0.0
    for b, c in enumerate(configs):
        fine = _alone(prob, b, fast.t, c.tol, max_step=0.004)[0]
        ny = prob.y_norm[b]
        assert rel_max(fast.X[b], fine, ny) <= 1e-11, b
        if c.init_scale == 0.01:
            assert rel_max(fast.X[b], stacked.X[b], ny) <= 1e-12, b
        worst_stacked = max(worst_stacked, rel_max(stacked.X[b], fine, ny))
    assert worst_stacked > 1e-10  # the reason for per-point step sizes


@pytest.mark.parametrize(
    "init,lambda0,k", [("spectral", 0.0, 50), ("spectral", 2.0, 50), ("spectral", -1.5, 12), ("balanced", 0.0, 15)]
)
def test_closed_forms_to_rounding(compiled, init, lambda0, k):
    """Where a closed form applies (eqs. (7)-(9), (21)): agreement at the rounding level of the
    closed form itself (rtol 3e-14 per step), the same as the stacked scipy path reaches."""
    configs = [_fig1(s, 3, init=init, lambda0=lambda0, k=k) for s in (0.01, 0.1, 1.0)]
    for r in run_points(configs):
        assert r.status == "done"
        assert r.metrics["closed_form_error"] <= 1e-12, (init, lambda0, r.metrics["closed_form_error"])


def test_a_point_is_the_same_alone_or_in_any_lane(compiled):
    configs = [_fig1((0.01, 0.1, 1.0)[i % 3], i, steps=600) for i in range(10)]
    together = simulate(configs)
    for b in (0, 7, 9):
        alone = simulate(configs[b])
        np.testing.assert_array_equal(together.X[b], alone.X[0])
        np.testing.assert_array_equal(together.time_to_tol[b], alone.time_to_tol[0])


@pytest.mark.parametrize("use_compiled", [True, False])
def test_a_non_finite_point_diverges_alone(monkeypatch, use_compiled):
    """A point whose flow overflows fails (step size too small) on both paths: reported
    diverged at 0, its neighbours untouched."""
    monkeypatch.setattr(core_compiled, "USE_COMPILED", use_compiled)
    configs = [_fig1(0.1, s, steps=200, record_every=10) for s in range(3)]
    prob = _stacked_problem(configs)
    clean = flow.run_flow(prob, 1e-3, 200, 10, 0.01)
    prob.U0[1, 0, 0] = 1e200  # R V overflows at once
    tr = flow.run_flow(prob, 1e-3, 200, 10, 0.01)
    assert tr.diverged_at.tolist() == [-1, 0, -1]
    assert np.all(np.isnan(tr.error[1])) and np.all(tr.X[1] == 0)
    for b in (0, 2):  # the stacked path re-runs them alone: not the same steps
        assert rel_max(tr.X[b], clean.X[b], prob.y_norm[b]) <= (0.0 if use_compiled else 1e-12)


def test_without_numba_the_stacked_scipy_path_runs(monkeypatch):
    monkeypatch.setattr(core_compiled, "USE_COMPILED", False)
    assert not flow.compiled_available()
    calls = []
    monkeypatch.setattr(flow, "_solve", lambda *a: calls.append(1) or _real_solve(*a))
    simulate([_fig1(0.1, 0, steps=100)])
    assert calls


_real_solve = flow._solve
