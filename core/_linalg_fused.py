"""Eigenvalues (and vectors) of stacks of small symmetric matrices, compiled by numba (optional):
Householder reduction to tridiagonal form, then implicit QL (Numerical Recipes' tred2 and tqli).
LAPACK's dsyevd spends ~3 us on each 5 x 5 matrix of a stack (a cheap point has eleven, its
singular values' Gram matrices, and a few more in its metrics), about as much as the point's whole
gd run; this costs a fraction of that. Both are backward stable (eigenvalues to ~eps ||A||), so
the values agree with numpy.linalg's to rounding; numpy stays the reference
(tests/core/test_linalg_fused.py) and the FLOWSWEEP_NUMBA=0 path (core/linalg.py dispatches).
"""

# mypy: ignore-errors

import math

import numpy as np
from numba import njit

_EPS = 2.220446049250313e-16
_MAX_QL_ITERATIONS = 60  # per eigenvalue; 2-3 are usual


@njit(cache=True, error_model="numpy", nogil=True)
def _tridiagonalize(a, d, e, vectors):
    """Householder reduction of the symmetric `a` (its lower triangle) to the tridiagonal matrix
    diag(d) + subdiagonal e[1:]; with `vectors`, `a` ends as the orthogonal Q of A = Q T Q^T."""
    n = a.shape[0]
    for i in range(n - 1, 0, -1):
        el = i - 1
        h = 0.0
        if el > 0:
            scale = 0.0
            for k in range(el + 1):
                scale += abs(a[i, k])
            if scale == 0.0:
                e[i] = a[i, el]
            else:
                for k in range(el + 1):
                    a[i, k] /= scale
                    h += a[i, k] * a[i, k]
                f = a[i, el]
                g = -np.sqrt(h) if f >= 0.0 else np.sqrt(h)
                e[i] = scale * g
                h -= f * g
                a[i, el] = f - g
                f = 0.0
                for j in range(el + 1):
                    if vectors:
                        a[j, i] = a[i, j] / h
                    g = 0.0
                    for k in range(j + 1):
                        g += a[j, k] * a[i, k]
                    for k in range(j + 1, el + 1):
                        g += a[k, j] * a[i, k]
                    e[j] = g / h
                    f += e[j] * a[i, j]
                hh = f / (h + h)
                for j in range(el + 1):
                    f = a[i, j]
                    g = e[j] - hh * f
                    e[j] = g
                    for k in range(j + 1):
                        a[j, k] -= f * e[k] + g * a[i, k]
        else:
            e[i] = a[i, el]
        d[i] = h
    e[0] = 0.0
    if not vectors:
        for i in range(n):
            d[i] = a[i, i]
        return
    d[0] = 0.0
    for i in range(n):  # accumulate the transformations
        if d[i] != 0.0:
            for j in range(i):
                g = 0.0
                for k in range(i):
                    g += a[i, k] * a[k, j]
                for k in range(i):
                    a[k, j] -= g * a[k, i]
        d[i] = a[i, i]
        a[i, i] = 1.0
        for j in range(i):
            a[j, i] = 0.0
            a[i, j] = 0.0


@njit(cache=True, error_model="numpy", nogil=True)
def _tridiagonal_eigen(d, e, z, vectors):
    """The eigenvalues (into d, unsorted) of the symmetric tridiagonal matrix diag(d) + subdiagonal
    e[1:], by the implicit QL method with Wilkinson's shift; with `vectors`, the rotations are
    applied to the columns of z (Q of _tridiagonalize in, the eigenvectors out)."""
    n = d.shape[0]
    for i in range(1, n):
        e[i - 1] = e[i]
    e[n - 1] = 0.0
    for el in range(n):
        for _ in range(_MAX_QL_ITERATIONS):
            m = el
            while m < n - 1:
                dd = abs(d[m]) + abs(d[m + 1])
                if abs(e[m]) <= _EPS * dd:
                    break
                m += 1
            if m == el:
                break
            # the squares stay finite: the callers scale the matrix to about 1 (np.hypot costs more)
            g = (d[el + 1] - d[el]) / (2.0 * e[el])
            r = np.sqrt(g * g + 1.0)
            g = d[m] - d[el] + e[el] / (g + (r if g >= 0.0 else -r))
            s = 1.0
            c = 1.0
            p = 0.0
            underflow = False
            for i in range(m - 1, el - 1, -1):
                f = s * e[i]
                b = c * e[i]
                r = np.sqrt(f * f + g * g)
                e[i + 1] = r
                if r == 0.0:  # recover from underflow: deflate and start over
                    d[i + 1] -= p
                    e[m] = 0.0
                    underflow = True
                    break
                s = f / r
                c = g / r
                g = d[i + 1] - p
                r = (d[i] - g) * s + 2.0 * c * b
                p = s * r
                d[i + 1] = g + p
                g = c * r - b
                if vectors:
                    for k in range(n):
                        f = z[k, i + 1]
                        z[k, i + 1] = s * z[k, i] + c * f
                        z[k, i] = c * z[k, i] - s * f
            if underflow:
                continue
            d[el] -= p
            e[el] = g
            e[m] = 0.0


@njit(cache=True, error_model="numpy", nogil=True)
def _scaled_lower(A, W):
    """W's lower triangle = A's times a power of two (exact) that brings its largest entry to about
    1, so that no square below under- or overflows; returns that factor."""
    N = A.shape[0]
    big = 0.0
    for i in range(N):
        for j in range(i + 1):
            big = max(big, abs(A[i, j]))
    scale = math.ldexp(1.0, -math.frexp(big)[1]) if 0.0 < big < math.inf else 1.0
    for i in range(N):
        for j in range(i + 1):
            W[i, j] = A[i, j] * scale
    return scale


@njit(cache=True, error_model="numpy", nogil=True)
def _ascending(d, order):
    """order = the indices that sort d ascending (insertion sort: numba's sort costs more per call
    on a few values)."""
    for i in range(d.shape[0]):
        j = i
        while j > 0 and d[order[j - 1]] > d[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@njit(cache=True, error_model="numpy", nogil=True)
def _decompose(A, w, E, vectors):
    """w[b] = the eigenvalues of the symmetric A[b] (K, N, N), ascending; with `vectors`, E[b] its
    orthonormal eigenvectors (columns), each up to its sign."""
    K, N, _ = A.shape
    W = np.empty((N, N))
    e = np.empty(N)
    d = np.empty(N)
    order = np.empty(N, dtype=np.int64)
    for b in range(K):
        scale = _scaled_lower(A[b], W)
        _tridiagonalize(W, d, e, vectors)
        _tridiagonal_eigen(d, e, W, vectors)
        _ascending(d, order)
        for i in range(N):
            w[b, i] = d[order[i]] / scale
            if vectors:
                for r in range(N):
                    E[b, r, i] = W[r, order[i]]


@njit(cache=True, error_model="numpy", nogil=True)
def eigvalsh(A, out):
    """out[b] = the eigenvalues of the symmetric A[b] (K, N, N), ascending (np.linalg.eigvalsh's
    values to rounding)."""
    _decompose(A, out, np.empty((0, 0, 0)), False)


@njit(cache=True, error_model="numpy", nogil=True)
def eigh(A, w, E):
    """w[b], E[b] = the eigenvalues (ascending) and orthonormal eigenvectors (columns) of the
    symmetric A[b] (K, N, N), as np.linalg.eigh's to rounding (each vector up to its sign)."""
    _decompose(A, w, E, True)
