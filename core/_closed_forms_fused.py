"""The last stage of closed_forms_stacked's stable form compiled by numba (optional): per point and
time, K = diag(d) + diag(M) P0e and one small solve, instead of numpy's stacked arrays of every K
and LAPACK call per 15 x 15 system. Same formulas and the same LU with partial pivoting; the
numpy path stays the reference (tests/core/test_closed_forms_stacked.py)."""

# mypy: ignore-errors

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy", nogil=True)
def _lu(A, piv):
    """In place LU with partial pivoting (the largest entry of each column, as LAPACK's getrf)."""
    N = A.shape[0]
    for k in range(N):
        p = k
        big = abs(A[k, k])
        for i in range(k + 1, N):
            v = abs(A[i, k])
            if v > big:
                big = v
                p = i
        piv[k] = p
        if p != k:
            for j in range(N):
                tmp = A[k, j]
                A[k, j] = A[p, j]
                A[p, j] = tmp
        inv = 1.0 / A[k, k]
        for i in range(k + 1, N):
            A[i, k] *= inv
        for i in range(k + 1, N):
            f = A[i, k]
            if f != 0.0:
                for j in range(k + 1, N):
                    A[i, j] -= f * A[k, j]


@njit(cache=True, error_model="numpy", nogil=True)
def _lu_solve(A, piv, Bm):
    """Bm <- A^-1 Bm from _lu's factors (Bm: N x columns)."""
    N, C = Bm.shape
    for k in range(N):
        p = piv[k]
        if p != k:
            for j in range(C):
                tmp = Bm[k, j]
                Bm[k, j] = Bm[p, j]
                Bm[p, j] = tmp
    for k in range(N):
        for i in range(k + 1, N):
            f = A[i, k]
            if f != 0.0:
                for j in range(C):
                    Bm[i, j] -= f * Bm[k, j]
    for k in range(N - 1, -1, -1):
        inv = 1.0 / A[k, k]
        for j in range(C):
            Bm[k, j] *= inv
        for i in range(k):
            f = A[i, k]
            if f != 0.0:
                for j in range(C):
                    Bm[i, j] -= f * Bm[k, j]


@njit(cache=True, error_model="numpy", nogil=True)
def stable_form(P0e, D0, c, d, M, Er, Ec, base, out):
    """X(t) = base + Er c D0 (diag(d) + diag(M) P0e)^-1 diag(c) Ec^T for every point and time, solved
    from the side with fewer columns (as closed_forms_stacked._stacked). P0e, D0 (B, N, N); c, d, M
    (B, T, N); Er (B, m, N); Ec (B, n, N); base (B, m, n); out (B, T, m, n)."""
    B, T, N = c.shape
    m = Er.shape[1]
    n = Ec.shape[1]
    K = np.empty((N, N))
    piv = np.empty(N, dtype=np.int64)
    ErcD0 = np.empty((m, N))
    left = m < n
    Wt = np.empty((N, m)) if left else np.empty((N, n))
    for b in range(B):
        for ti in range(T):
            # Er c D0 (m x N)
            for i in range(m):
                for j in range(N):
                    ErcD0[i, j] = 0.0
                for k in range(N):
                    e = Er[b, i, k] * c[b, ti, k]
                    for j in range(N):
                        ErcD0[i, j] += e * D0[b, k, j]
            if left:  # W = K^-T (Er c D0)^T, X = base + W^T diag(c) Ec^T
                for k in range(N):
                    for j in range(N):
                        K[j, k] = M[b, ti, k] * P0e[b, k, j]
                    K[k, k] += d[b, ti, k]
                for k in range(N):
                    for i in range(m):
                        Wt[k, i] = ErcD0[i, k]
                _lu(K, piv)
                _lu_solve(K, piv, Wt)
                for i in range(m):
                    for j in range(n):
                        acc = 0.0
                        for k in range(N):
                            acc += Wt[k, i] * c[b, ti, k] * Ec[b, j, k]
                        out[b, ti, i, j] = base[b, i, j] + acc
            else:  # G = K^-1 diag(c) Ec^T, X = base + Er c D0 G
                for k in range(N):
                    for j in range(N):
                        K[k, j] = M[b, ti, k] * P0e[b, k, j]
                    K[k, k] += d[b, ti, k]
                for k in range(N):
                    for j in range(n):
                        Wt[k, j] = c[b, ti, k] * Ec[b, j, k]
                _lu(K, piv)
                _lu_solve(K, piv, Wt)
                for i in range(m):
                    for j in range(n):
                        acc = 0.0
                        for k in range(N):
                            acc += ErcD0[i, k] * Wt[k, j]
                        out[b, ti, i, j] = base[b, i, j] + acc
