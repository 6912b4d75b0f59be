"""Eigen-decompositions of stacks of small symmetric matrices (..., N, N), as numpy.linalg's
eigvalsh / eigh. With numba (core/_linalg_fused.py: Householder, then implicit QL) they cost
2-3x less than LAPACK's per-matrix calls at N <= 15 (~2 us instead of ~6 us for a 5 x 5 eigh),
which dominate a cheap point's metrics; the values agree to rounding (~eps ||A||). Without numba
(FLOWSWEEP_NUMBA=0), numpy's. A trajectory's singular values have a kernel of their own
(compiled_singular_values)."""

from __future__ import annotations

import numpy as np

from .compiled import compiled_module
from .types import FloatArray

_FUSED = "flowsweep.core._linalg_fused"
_FUSED_MAX_N = 16  # beyond, LAPACK's blocked code catches up


def _stack(A: np.ndarray) -> np.ndarray:
    N = A.shape[-1]
    return np.ascontiguousarray(A, dtype=np.float64).reshape(-1, N, N)


def stacked_eigvalsh(A: np.ndarray) -> FloatArray:
    """The eigenvalues of every matrix of A, ascending."""
    fused = compiled_module(_FUSED)
    if fused is None or A.shape[-1] > _FUSED_MAX_N:
        out: FloatArray = np.linalg.eigvalsh(A)
        return out
    flat = _stack(A)
    w = np.empty(flat.shape[:2])
    fused.eigvalsh(flat, w)
    return w.reshape(A.shape[:-1])


def stacked_eigh(A: np.ndarray, repeated_by_lapack: bool = False) -> tuple[FloatArray, FloatArray]:
    """(eigenvalues ascending, orthonormal eigenvectors as columns) of every matrix of A (B, N, N),
    each vector up to its sign; a repeated eigenvalue's vectors are some basis of its eigenspace.
    `repeated_by_lapack`: matrices with eigenvalues closer than REPEATED (relative to the largest)
    are decomposed by LAPACK, for results that depend on that choice of basis (the excited modes
    of fits.rate_lin) to stay LAPACK's."""
    fused = compiled_module(_FUSED)
    if fused is None or A.shape[-1] > _FUSED_MAX_N:
        w_np, E_np = np.linalg.eigh(A)
        return w_np, E_np
    flat = _stack(A)
    w = np.empty(flat.shape[:2])
    E = np.empty(flat.shape)
    fused.eigh(flat, w, E)
    if not repeated_by_lapack:
        return w.reshape(A.shape[:-1]), E.reshape(A.shape)
    with np.errstate(invalid="ignore"):
        top = np.abs(w).max(axis=1, keepdims=True)
        close = ~(np.diff(w, axis=1) > REPEATED * top).all(axis=1)  # NaN counts as close
    if close.any():
        w[close], E[close] = np.linalg.eigh(flat[close])
    return w.reshape(A.shape[:-1]), E.reshape(A.shape)


# Eigenvalues this close (relative) count as repeated; apart, each vector is determined to about
# eps / REPEATED, far from deciding whether a mode is excited (fits.EXCITED_MODE).
REPEATED = 1e-6


def compiled_singular_values(X: np.ndarray, first: np.ndarray) -> FloatArray | None:
    """Singular values (descending) of every record of X (B, T, m, n) by the compiled kernel, from
    each record's smaller Gram matrix; the records after first[b] repeat record first[b] (copied,
    not computed). None without numba or beyond _FUSED_MAX_N: the caller's numpy path runs."""
    fused = compiled_module(_FUSED)
    r = min(X.shape[-2:])
    if fused is None or r > _FUSED_MAX_N:
        return None
    sv = np.empty(X.shape[:2] + (r,))
    fused.trajectory_singular_values(np.ascontiguousarray(X, dtype=np.float64), first.astype(np.int64), sv)
    return sv
