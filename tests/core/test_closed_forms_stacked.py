"""The regularized flow of a stack of points equals the closed form of each point (eq. (21))."""

import numpy as np
import pytest

from flowsweep.core import PointConfig, run_points
from flowsweep.core.closed_forms import regularized_flow
from flowsweep.core.closed_forms_stacked import regularized_flow_stacked
from flowsweep.core.compiled import compiled_module
from flowsweep.core.run import _stacked_problem


@pytest.mark.parametrize(
    "shape",
    [
        dict(m=5, n=10, k=50),  # m < n, stable form
        dict(m=6, n=4, k=8),  # m > n, the other solve side
        dict(m=5, n=10, k=3),
    ],
)  # rank(P0) < 5: factored form
def test_stacked_equals_per_point(shape, path):
    lams = [0.0, 1.5, -2.0, 0.3]
    configs = [
        PointConfig(
            model="asymmetric",
            eta=1e-3,
            steps=10,
            init_scale=(0.01, 0.1, 1.0)[i % 3],
            seed=i,
            lambda0=lams[i % 4],
            **shape,
        )
        for i in range(12)
    ]
    prob = _stacked_problem(configs)
    t = np.linspace(0.0, 3.0, 17)
    got = regularized_flow_stacked(prob.Y, prob.U0, prob.V0, [c.lambda0 for c in configs], t)
    for b, c in enumerate(configs):
        ref = regularized_flow(prob.Y[b], prob.U0[b], prob.V0[b], c.lambda0, t).X
        scale = np.linalg.norm(prob.Y[b])
        assert np.max(np.linalg.norm(got[b] - ref, axis=(1, 2))) <= 1e-12 * scale


def test_stacked_in_chunks_equals_one_call(monkeypatch, path):
    import flowsweep.core.closed_forms_stacked as cfs

    configs = [PointConfig(model="asymmetric", m=3, n=4, k=9, eta=1e-3, steps=10, seed=i) for i in range(7)]
    prob = _stacked_problem(configs)
    t = np.linspace(0.0, 2.0, 5)
    whole = cfs.regularized_flow_stacked(prob.Y, prob.U0, prob.V0, 0.0, t)
    monkeypatch.setattr(cfs, "_SYSTEMS_PER_CALL", 10)  # 2 points per call
    np.testing.assert_array_equal(cfs.regularized_flow_stacked(prob.Y, prob.U0, prob.V0, 0.0, t), whole)


def test_run_points_regularized_error_matches_its_definition():
    # run_points takes X_reg from the stacked call; the metric is still RMS_t ||X_reg - X|| / ||Y||
    from flowsweep.core import initial_state, simulate
    from flowsweep.core.dynamics import reduce_factors

    configs = [
        PointConfig(
            model="asymmetric",
            m=3,
            n=5,
            k=10,
            eta=0.01,
            steps=300,
            record_every=30,
            init_scale=0.4,
            seed=s,
            lambda0=lam,
        )
        for s, lam in ((0, 0.0), (1, 1.0))
    ]
    for c, r in zip(configs, run_points(configs)):
        st = initial_state(c)
        tr = simulate(c)
        U, V = reduce_factors(st["U0"], st["V0"])
        D = regularized_flow(st["Y"], U, V, c.lambda0, tr.t).X - tr.X[0]
        want = np.sqrt(np.mean(np.einsum("tij,tij->t", D, D))) / np.linalg.norm(st["Y"])
        assert r.metrics["regularized_error"] == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("shape", [dict(m=5, n=10, k=50), dict(m=6, n=4, k=8)])
def test_compiled_stable_form_equals_numpy(shape, monkeypatch):
    """Fig. 1's shape and the other solve side, long horizon, both signs of lambda0."""
    pytest.importorskip("numba")
    from flowsweep.core import compiled

    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    configs = [
        PointConfig(model="asymmetric", eta=1e-3, steps=10, init_scale=(0.01, 0.1, 1.0)[i % 3], seed=i, **shape)
        for i in range(9)
    ]
    prob = _stacked_problem(configs)
    t = np.linspace(0.0, 6.0, 31)
    lam = np.array([0.0, 2.0, -3.0] * 3)
    got = regularized_flow_stacked(prob.Y, prob.U0, prob.V0, lam, t)
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    want = regularized_flow_stacked(prob.Y, prob.U0, prob.V0, lam, t)
    scale = np.linalg.norm(prob.Y, axis=(1, 2))[:, None]
    gap = np.linalg.norm(got - want, axis=(2, 3)) / scale
    assert 0.0 < gap.max() <= 1e-12, gap.max()  # different rounding, the same numbers


def test_stable_form_decision_is_the_one_of_the_top_eigenvalue():
    """_positive_on_unstable decides mu > 1e-7 top from bounds of top where they suffice: the same
    decisions as from top itself (np.linalg.eigvalsh here), on blocks far from, near and at the
    threshold, and on NaN."""
    from flowsweep.core.closed_forms_stacked import _positive_on_unstable

    rng = np.random.default_rng(3)
    N, p = 8, 3
    mats, n_pos = [], []
    for i in range(400):
        Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
        w = rng.uniform(0.5, 2.0, N) * 10.0 ** rng.integers(-3, 3)
        # the last p eigen-directions: mu from far above to far below 1e-7 top, and at it
        w[-p:] = np.max(w) * 1e-7 * 10.0 ** rng.uniform(-3, 3) if i % 4 else 0.0
        P = Q @ np.diag(w) @ Q.T
        mats.append(P)
        n_pos.append(p if i % 7 else 0)
    for _ in range(40):  # mu within 1% of 1e-7 top: only top itself decides
        Q, _ = np.linalg.qr(rng.standard_normal((N - p, N - p)))
        w = rng.uniform(0.5, 2.0, N - p)
        P = np.zeros((N, N))
        P[:-p, :-p] = Q @ np.diag(w) @ Q.T
        P[-p:, -p:] = np.eye(p) * np.max(w) * 1e-7 * (1.0 + 0.01 * rng.uniform(-1.0, 1.0))
        mats.append(P)
        n_pos.append(p)
    P0e = np.array(mats)
    nan_row = compiled_module("flowsweep.core._linalg_fused") is not None  # LAPACK raises on NaN instead
    if nan_row:
        P0e[5, 2, 1] = np.nan
    n_pos_arr = np.array(n_pos)
    got = _positive_on_unstable(P0e, n_pos_arr)
    with np.errstate(invalid="ignore"):
        top = np.linalg.eigvalsh(np.where(np.isnan(P0e), 0.0, P0e))[:, -1]
        mu = np.linalg.eigvalsh(P0e[:, -p:, -p:])[:, 0]
        want = np.where(n_pos_arr > 0, mu > 1e-7 * np.maximum(top, 1e-300), True)
    if nan_row:
        want[5] = not n_pos[5]  # NaN in P0e: top is NaN, mu > NaN is False
    assert np.array_equal(got, want)
    assert 0 < got.sum() < len(got)  # both answers occur


@pytest.mark.parametrize("which", ["fig1", "tiny"])
def test_stacked_on_fig1_and_tiny_points_equals_per_point(which, path):
    """The paper's Fig. 1 points on their record grid (t up to 4) and tiny points (t up to 0.01),
    as run_points stacks them, against closed_forms.regularized_flow point by point."""
    from paper_points import fig1_configs, tiny_configs

    from flowsweep.core.dynamics import record_grid

    configs = fig1_configs(seeds=2) if which == "fig1" else tiny_configs(11)
    c0 = configs[0]
    prob = _stacked_problem(configs)
    t = c0.eta * record_grid(c0.eta, c0.steps, c0.record_every)
    got = regularized_flow_stacked(prob.Y, prob.U0, prob.V0, 0.0, t)
    for b in range(len(configs)):
        ref = regularized_flow(prob.Y[b], prob.U0[b], prob.V0[b], 0.0, t).X
        assert np.max(np.linalg.norm(got[b] - ref, axis=(1, 2))) <= 1e-12 * np.linalg.norm(prob.Y[b])
