"""reduce_factors (the Cholesky factor of [U0; V0]'s Gram matrix, QR's R where that is singular)
against the reduction it replaced, U0 Q and V0 Q with Q from numpy.linalg.qr of [U0; V0]^T, and
against no reduction at all: the trajectories agree to rounding."""

import numpy as np
import pytest

from flowsweep.core.dynamics import Problem, integrate, reduce_factors

RTOL = 1e-12


def qr_reduction(U0, V0):
    """The reference: coordinates in the orthonormal basis Q of [U0; V0]'s row space."""
    R0 = U0 if V0 is None else np.concatenate([U0, V0], axis=1)
    Q, _ = np.linalg.qr(np.swapaxes(R0, 1, 2))
    return U0 @ Q, (None if V0 is None else V0 @ Q)


def starts(rng, kind, B, m, n, k, s=0.3):
    Y = rng.standard_normal((B, m, n))
    U0 = s * rng.standard_normal((B, m, k))
    if kind == "symmetric":
        return (Y[:, :, :m] + np.swapaxes(Y[:, :, :m], 1, 2)) / 2, U0, None
    if kind == "gaussian":
        return Y, U0, s * rng.standard_normal((B, n, k))
    W = np.linalg.qr(rng.standard_normal((B, n, m)))[0]  # balanced: V0 = W U0, rank m
    return Y, U0, W @ U0


def trajectory(model, Y, U0, V0, method):
    p = Problem(model=model, Y=Y, U0=U0, V0=V0)
    eta = 0.05 if method == "gd" else 0.1
    return integrate(p, method, eta, 40, 4, 1e-6)


@pytest.mark.parametrize("kind", ["gaussian", "balanced", "symmetric"])
@pytest.mark.parametrize("shape", [(5, 10, 50), (3, 4, 8), (4, 6, 11)])
@pytest.mark.parametrize("method", ["gd", "flow"])
def test_trajectory_as_with_qr_and_unreduced(rng, path, kind, shape, method):
    m, n, k = shape
    Y, U0, V0 = starts(rng, kind, 6, m, n, k)
    model = "symmetric" if kind == "symmetric" else "asymmetric"
    U, V = reduce_factors(U0, V0)
    r = m if V0 is None else m + n
    assert U.shape == (6, m, r) and (V is None or V.shape == (6, n, r))
    Uq, Vq = qr_reduction(U0, V0)
    got = trajectory(model, Y, U, V, method)
    for ref in (trajectory(model, Y, Uq, Vq, method), trajectory(model, Y, U0, V0, method)):
        scale = np.abs(ref.X).max()
        np.testing.assert_allclose(got.X, ref.X, rtol=0, atol=RTOL * scale)
        # e(t) to rounding of ||Y - X|| (it falls to ~1e-6 of e(0) here: no relative bound there)
        assert (np.abs(got.error - ref.error) <= RTOL * ref.error[:, :1]).all()
        if ref.q_drift is not None:
            np.testing.assert_allclose(got.q_drift, ref.q_drift, rtol=0, atol=RTOL * np.sum(U0 * U0))


@pytest.mark.parametrize("kind", ["gaussian", "balanced", "symmetric", "mixed"])
def test_gram_matrix_kept(rng, path, kind):
    """What the dynamics sees of the factors, their Gram matrix, is that of the full factors; the
    stacked array given as `stacked` gives the same coordinates as the separate factors. "mixed":
    a stack where one point's Gram matrix is exactly singular (V0 = 0: Cholesky meets a zero
    pivot), the others not."""
    Y, U0, V0 = starts(rng, "gaussian" if kind == "mixed" else kind, 8, 4, 7, 30, s=2.0)
    if kind == "mixed":
        V0[3] = 0.0
    U, V = reduce_factors(U0, V0)
    full = U0 if V0 is None else np.concatenate([U0, V0], axis=1)
    red = U if V is None else np.concatenate([U, V], axis=1)
    G, G_red = full @ np.swapaxes(full, 1, 2), red @ np.swapaxes(red, 1, 2)
    np.testing.assert_allclose(G_red, G, rtol=0, atol=1e-14 * np.abs(G).max())
    U2, V2 = reduce_factors(U0, V0, stacked=np.ascontiguousarray(full))
    np.testing.assert_array_equal(U2, U)
    if V is not None:
        np.testing.assert_array_equal(V2, V)


@pytest.mark.parametrize("kind", ["gaussian", "balanced", "symmetric"])
def test_compiled_equals_numpy(rng, kind, monkeypatch):
    """The compiled reduction (Gram matrix and Cholesky in one pass) gives numpy's coordinates to
    rounding (both the Cholesky factor, unique; QR's R^T where numpy's Cholesky refuses the stack)."""
    pytest.importorskip("numba")
    from flowsweep.core import compiled

    _, U0, V0 = starts(rng, kind, 16, 5, 10, 50)
    got = reduce_factors(U0, V0)
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    want = reduce_factors(U0, V0)
    for a, b in zip(got, want):
        if b is not None:
            if kind == "gaussian":  # the Cholesky factor is unique: equal entry by entry
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-14 * np.abs(b).max())
            G, H = a @ np.swapaxes(a, 1, 2), b @ np.swapaxes(b, 1, 2)
            np.testing.assert_allclose(G, H, rtol=0, atol=1e-14 * np.abs(H).max())


def test_narrow_factors_are_kept(rng):
    """k <= m + n: nothing to reduce, the factors themselves."""
    _, U0, V0 = starts(rng, "gaussian", 3, 4, 6, 10)
    U, V = reduce_factors(U0, V0)
    assert U is U0 and V is V0
