"""Singular values of a batch trajectory (run.trajectory_singular_values: compiled kernel
core/_linalg_fused.trajectory_singular_values, or numpy's Gram eigenvalues) against
numpy.linalg.svd, on the paper's Fig. 1 points, tiny points and awkward matrices."""

from types import SimpleNamespace

import numpy as np
import pytest
from paper_points import fig1_configs, tiny_configs

from flowsweep.core.dynamics import record_grid
from flowsweep.core.run import _integrate, _stacked_problem, singular_values, trajectory_singular_values

EPS = np.finfo(float).eps


def assert_svd_accuracy(got, X):
    """The Gram matrix's eigenvalues: absolute accuracy ~ eps sigma_max^2 / sigma."""
    ref = np.linalg.svd(X, compute_uv=False)
    bound = 16 * EPS * ref[..., :1] ** 2 / np.maximum(ref, 1e-300)
    assert np.all(np.abs(got - ref) <= bound), np.max(np.abs(got - ref) / bound)


@pytest.mark.parametrize("which", ["fig1", "tiny"])
def test_trajectory_singular_values_match_svd(which, path):
    configs = fig1_configs(seeds=2) if which == "fig1" else tiny_configs(11)
    c0 = configs[0]
    tr = _integrate(configs, _stacked_problem(configs))
    if which == "fig1":  # some points stop early: their later records repeat one state
        assert (tr.iterations < c0.steps).any() and (tr.iterations == c0.steps).any()
    sv = trajectory_singular_values(tr, record_grid(c0.eta, c0.steps, c0.record_every))
    assert sv.shape == tr.X.shape[:2] + (5,)
    assert_svd_accuracy(sv, tr.X)


def test_compiled_kernel_is_used_and_agrees_with_numpy(monkeypatch):
    pytest.importorskip("numba")
    from flowsweep.core import _linalg_fused, compiled

    configs = fig1_configs(seeds=1)
    c0 = configs[0]
    tr = _integrate(configs, _stacked_problem(configs))
    grid = record_grid(c0.eta, c0.steps, c0.record_every)
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    got = trajectory_singular_values(tr, grid)
    calls = []
    kernel = _linalg_fused.trajectory_singular_values
    monkeypatch.setattr(_linalg_fused, "trajectory_singular_values", lambda *a: calls.append(1) or kernel(*a))
    trajectory_singular_values(tr, grid)
    assert calls
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    want = trajectory_singular_values(tr, grid)
    bound = 32 * EPS * want[..., :1] ** 2 / want
    assert np.all(np.abs(got - want) <= bound)


def awkward_stack(rng, m, n):
    """(7, 11, m, n): graded records, rank-deficient, zero and tiny matrices, repeated values."""
    X = rng.standard_normal((7, 11, m, n)) * np.logspace(0, -3, 11)[None, :, None, None]
    X[1, 2] = np.outer(rng.standard_normal(m), rng.standard_normal(n))  # rank one
    X[2, 3] = 0.0
    X[3] *= 1e-150  # squares far below 1: the Gram matrix is scaled (exactly) before the rotations
    X[4, :, :, :] = X[4, :1]  # the same matrix at every record
    Q = np.linalg.qr(rng.standard_normal((max(m, n), max(m, n))))[0]
    X[5, 0] = 3.0 * Q[:m, :n]  # repeated singular values
    return X


@pytest.mark.parametrize("m, n", [(5, 10), (10, 5), (3, 3), (1, 4), (20, 17)])  # (20, 17): beyond the kernel
def test_awkward_matrices_and_repeated_records(m, n, path):
    rng = np.random.default_rng(m * 10 + n)
    X = awkward_stack(rng, m, n)
    T = X.shape[1]
    iterations = np.array([10, 3, 0, 10, 7, 1, 10])  # record i at iteration i; < 10: left the batch
    tr = SimpleNamespace(X=X, iterations=iterations)
    sv = trajectory_singular_values(tr, np.arange(T))  # type: ignore[arg-type]
    first = np.minimum(iterations, T - 1)
    for b in range(len(X)):  # the records after a point left repeat the one where it left
        assert np.array_equal(sv[b, first[b] :], np.broadcast_to(sv[b, first[b]], sv[b, first[b] :].shape))
        assert_svd_accuracy(sv[b, : first[b] + 1], X[b, : first[b] + 1])
    assert_svd_accuracy(singular_values(X), X)


def test_non_finite_records_do_not_stop_the_others(path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3, 9, 5, 10))
    X[1, 4:] = np.nan  # a diverged point: its curve is cut, the others' values stand
    X[1, 6, 0, 0] = np.inf  # (an inf beside NaN: the Gram matrix is not finite either way)
    tr = SimpleNamespace(X=X, iterations=None)
    sv = trajectory_singular_values(tr, np.arange(9))  # type: ignore[arg-type]
    assert_svd_accuracy(sv[0], X[0])
    assert_svd_accuracy(sv[1, :4], X[1, :4])
    assert_svd_accuracy(sv[2], X[2])


def test_a_record_gets_the_same_values_alone_and_among_others():
    """Each lane of the compiled kernel rotates until its own matrix has converged: a record's
    values do not depend on the records it is batched with (and singular_values, on the same
    kernel, gives trajectory_singular_values' numbers)."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(7)
    X = awkward_stack(rng, 5, 10)
    together = singular_values(X)
    for b, t in [(0, 0), (1, 2), (3, 5), (5, 0), (6, 10)]:
        assert np.array_equal(singular_values(X[b, t]), together[b, t])
    tr = SimpleNamespace(X=X, iterations=np.array([10, 3, 0, 10, 7, 1, 10]))
    sv = trajectory_singular_values(tr, np.arange(X.shape[1]))  # type: ignore[arg-type]
    own = np.arange(X.shape[1])[None, :] <= tr.iterations[:, None]
    assert np.array_equal(sv[own], together[own])
