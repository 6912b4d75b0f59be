"""core.linalg's eigen-decompositions of small symmetric matrices on both paths (compiled:
core/_linalg_fused.py, numba; numpy) against numpy.linalg's LAPACK calls."""

import numpy as np
import pytest

from flowsweep.core.linalg import REPEATED, stacked_eigh, stacked_eigvalsh


def symmetric_stacks(N, rng):
    """Random, PSD (Gram), rank-deficient, repeated, diagonal, tridiagonal, graded and zero
    symmetric N x N matrices, as one stack."""
    G = rng.standard_normal((64, N, N))
    X = rng.standard_normal((64, N, N + 3))
    thin = rng.standard_normal((16, N, max(1, N // 2)))
    Q = np.linalg.qr(rng.standard_normal((16, N, N)))[0]
    repeated = (Q * np.repeat([1.0, 2.0], [N // 2, N - N // 2])[None, None, :]) @ np.swapaxes(Q, 1, 2)
    graded = (Q * np.logspace(0, -12, N)[None, None, :]) @ np.swapaxes(Q, 1, 2)
    tri = np.zeros((4, N, N))
    for b in range(4):
        tri[b] += np.diag(rng.standard_normal(N)) + np.diag(rng.standard_normal(N - 1), 1) * 1e-9 ** (b % 2)
    tri = tri + np.swapaxes(np.triu(tri, 1), 1, 2)
    return np.concatenate(
        [
            G + np.swapaxes(G, 1, 2),
            X @ np.swapaxes(X, 1, 2),
            thin @ np.swapaxes(thin, 1, 2),
            repeated,
            graded,
            np.stack([np.diag(rng.standard_normal(N)) for _ in range(4)]),
            tri,
            np.zeros((2, N, N)),
            1e-200 * (G[:2] + np.swapaxes(G[:2], 1, 2)),
        ]
    )


@pytest.mark.parametrize("N", [1, 2, 3, 5, 10, 15])
def test_eigenvalues_match_lapack(N, path):
    rng = np.random.default_rng(N)
    A = symmetric_stacks(N, rng)
    got = stacked_eigvalsh(A)
    ref = np.linalg.eigvalsh(A)
    assert got.shape == ref.shape
    scale = N * np.abs(A).max(axis=(1, 2))  # backward stable: errors ~ eps ||A||
    assert (np.abs(got - ref) <= 1e-14 * scale[:, None]).all()
    assert (np.diff(got, axis=1) >= 0).all()  # ascending, as eigvalsh


@pytest.mark.parametrize("N", [1, 2, 3, 5, 10, 15])
def test_eigenvectors_match_lapack(N, path):
    rng = np.random.default_rng(N + 100)
    A = symmetric_stacks(N, rng)
    w, E = stacked_eigh(A, repeated_by_lapack=True)
    w_ref, E_ref = np.linalg.eigh(A)
    scale = N * np.abs(A).max(axis=(1, 2))
    assert (np.abs(w - w_ref) <= 1e-14 * scale[:, None]).all()
    assert (np.diff(w, axis=1) >= 0).all()
    eye = np.eye(N)
    assert np.abs(np.swapaxes(E, 1, 2) @ E - eye).max() < 1e-14 * N  # orthonormal
    assert (np.abs((E * w[:, None, :]) @ np.swapaxes(E, 1, 2) - A).max(axis=(1, 2)) <= 1e-14 * scale).all()
    # an eigenvalue apart from the others (gap >> rounding) has one vector, up to its sign
    gap = np.full(w_ref.shape, np.inf)
    if N > 1:
        d = np.diff(w_ref, axis=1)
        gap[:, :-1] = d
        gap[:, 1:] = np.minimum(gap[:, 1:], d)
    simple = gap > 1e-6 * np.maximum(scale[:, None], 1e-300)
    overlap = np.abs(np.einsum("bri,bri->bi", E, E_ref))
    assert simple.sum() >= len(A)  # the check below checks something
    assert np.allclose(overlap[simple], 1.0, rtol=0, atol=1e-9)
    # without repeated_by_lapack, any orthonormal eigenbasis (checked above for the simple ones)
    w_any, E_any = stacked_eigh(A)
    assert np.abs(np.swapaxes(E_any, 1, 2) @ E_any - eye).max() < 1e-14 * N
    assert (np.abs((E_any * w_any[:, None, :]) @ np.swapaxes(E_any, 1, 2) - A).max(axis=(1, 2)) <= 1e-14 * scale).all()
    # a matrix with a repeated eigenvalue: LAPACK's vectors themselves (they are a choice)
    repeated = (np.diff(w_ref, axis=1) <= REPEATED * np.abs(w_ref).max(axis=1, keepdims=True)).any(axis=1)
    assert N < 3 or repeated.sum() >= 16  # rank-deficient and repeated-by-construction stacks
    assert np.array_equal(E[repeated], E_ref[repeated]) and np.array_equal(w[repeated], w_ref[repeated])


def test_the_compiled_kernel_is_used_and_differs_only_by_rounding(monkeypatch):
    pytest.importorskip("numba")
    from flowsweep.core import _linalg_fused, compiled

    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    A = symmetric_stacks(5, np.random.default_rng(0))
    direct = np.empty(A.shape[:2])
    _linalg_fused.eigvalsh(np.ascontiguousarray(A), direct)
    assert np.array_equal(stacked_eigvalsh(A), direct)
    # leading dimensions of any shape: (B, T, N, N) as the singular values' Gram matrices come
    four = A[:60].reshape(6, 10, 5, 5)
    assert np.array_equal(stacked_eigvalsh(four), direct[:60].reshape(6, 10, 5))


@pytest.mark.parametrize("N", [1, 2, 5, 10, 15])
def test_a_matrix_decomposes_alike_alone_and_among_others(N):
    """The compiled kernel runs the QL iterations of a few matrices interleaved: each matrix's
    eigenvalues and vectors are the same bits whatever its neighbours (and however many)."""
    pytest.importorskip("numba")
    from flowsweep.core import _linalg_fused

    A = np.ascontiguousarray(symmetric_stacks(N, np.random.default_rng(N)))
    w_all, w2_all, E_all = np.empty(A.shape[:2]), np.empty(A.shape[:2]), np.empty(A.shape)
    _linalg_fused.eigvalsh(A, w_all)
    _linalg_fused.eigh(A, w2_all, E_all)
    for b in list(range(0, len(A), 7)) + [len(A) - 1]:
        w, w2, E = np.empty((1, N)), np.empty((1, N)), np.empty((1, N, N))
        _linalg_fused.eigvalsh(A[b : b + 1], w)
        _linalg_fused.eigh(A[b : b + 1], w2, E)
        assert np.array_equal(w[0], w_all[b]) and np.array_equal(w2[0], w2_all[b]) and np.array_equal(E[0], E_all[b])
    # in another order, other matrices share each one's turns
    rev = np.ascontiguousarray(A[::-1])
    w_rev, w2_rev, E_rev = np.empty(A.shape[:2]), np.empty(A.shape[:2]), np.empty(A.shape)
    _linalg_fused.eigvalsh(rev, w_rev)
    _linalg_fused.eigh(rev, w2_rev, E_rev)
    assert np.array_equal(w_rev[::-1], w_all) and np.array_equal(w2_rev[::-1], w2_all)
    assert np.array_equal(E_rev[::-1], E_all)


def test_singular_values_of_a_trajectory_match_svd(path):
    from flowsweep.core.run import singular_values

    rng = np.random.default_rng(3)
    X = rng.standard_normal((7, 11, 5, 10)) * np.logspace(0, -3, 11)[None, :, None, None]
    ref = np.linalg.svd(X, compute_uv=False)
    got = singular_values(X)
    # the Gram matrix's eigenvalues: absolute accuracy ~ eps sigma_max^2 / sigma
    assert np.allclose(got, ref, rtol=1e-13, atol=0)
    wide = np.swapaxes(X, -1, -2)  # the smaller Gram side of a tall matrix
    assert np.allclose(singular_values(wide), ref, rtol=1e-13, atol=0)
