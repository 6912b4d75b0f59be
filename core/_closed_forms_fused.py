"""The last stage of closed_forms_stacked's stable form compiled by numba (optional): per point and
time, K = diag(d) + diag(M) P0e and one small solve, instead of numpy's stacked arrays of every K
and LAPACK call per 15 x 15 system. Same formulas, solved through the symmetric positive definite
matrix K is similar to (see stable_form): a Cholesky factor, half an LU's work; the numpy path
stays the reference (tests/core/test_closed_forms_stacked.py)."""

# mypy: ignore-errors

import numpy as np
from numba import njit

from ._simd import LANES, div, fma, fnma, load, mul, splat, sqrt, store, where_gt, zeros, zeros_lanes


@njit(cache=True, error_model="numpy", nogil=True)
def stable_form(P0e, pstar, c, em, t, absa, pos, E, out):
    """X(t) = base + Er c D0 (diag(d) + diag(M) P0e)^-1 diag(c) Ec^T for every point and time, solved
    from the side with fewer columns (as closed_forms_stacked._stacked), with D0 = P0e - diag(p*),
    base = Er diag(p*) Ec^T, Er = E[:m], Ec = E[m:]. P0e, E (B, N, N); p*, |a|, pos (B, N);
    c = e^{-t|a|} and em = expm1(-2 t |a|) (B, T, N), from numpy's vectorized exp and expm1; t (T,);
    out (B, T, m, n). D0, base, d and M are formed here as closed_forms_stacked._stacked's numpy path
    forms them.

    LANES times of a point side by side, one per SIMD lane (core/_simd.py). With s = sqrt(M) (M > 0
    at t > 0), K = diag(s) S diag(s)^-1 where S = diag(s) P0e diag(s) + diag(d) is symmetric positive
    definite (P0e > 0 on the unstable eigenspace, where d may vanish; d > 0 elsewhere), so
    K^-1 = diag(s) S^-1 diag(s)^-1, solved by S's Cholesky factor. At t = 0, K = S = I and the
    scalings u (= s at t > 0) are 1. The same solution as the numpy path's LU, rounded differently.
    Every sum of products runs in a register, five independent ones side by side (a single chain
    waits on each FMA's latency; a product stored per step waits on the stores)."""
    B, T, N = c.shape
    m, n = out.shape[2], out.shape[3]
    Er = E[:, :m]
    Ec = E[:, m:]
    D0 = np.empty((N, N))
    base = np.empty((m, n))
    L = LANES
    left = m < n
    cl = zeros_lanes(N, 1)
    dl = zeros_lanes(N, 1)
    sl = zeros_lanes(N, 1)  # s = sqrt(M)
    ul = zeros_lanes(N, 1)  # s, or 1 at t = 0
    inv = zeros_lanes(N, 1)  # 1 / the Cholesky factor's diagonal
    S = zeros_lanes(N, N)  # lower triangle: S, then its Cholesky factor
    Erc = zeros_lanes(m, N)  # Er c
    F = zeros_lanes(m, N)  # Er c D0
    O = zeros_lanes(m, n)  # X - base
    W = zeros_lanes(N, m if left else n)  # right-hand sides, then the solution
    one = splat(1.0)
    zero = zeros()
    for b in range(B):
        for k in range(N):
            for j in range(N):
                D0[k, j] = P0e[b, k, j]
            D0[k, k] -= pstar[b, k]
        for i in range(m):
            for j in range(n):
                acc = 0.0
                for k in range(N):
                    acc += Er[b, i, k] * pstar[b, k] * Ec[b, j, k]
                base[i, j] = acc
        for t0 in range(0, T, L):
            for k in range(N):
                for q in range(L):
                    tq = min(t0 + q, T - 1)  # the last group repeats the last time in its spare lanes
                    ck = c[b, tq, k]
                    cl[k, 0, q] = ck
                    dl[k, 0, q] = ck * ck if pos[b, k] else 1.0
                    z = 2.0 * (t[tq] * absa[b, k])  # M = t h(z), h = (1 - e^{-z}) / z
                    sl[k, 0, q] = (1.0 - z / 2.0 if z <= 1e-12 else -(em[b, tq, k] / z)) * t[tq]
                sk = sqrt(load(sl, k, 0))
                store(sl, k, 0, sk)
                store(ul, k, 0, where_gt(sk, zero, sk, one))
            # F = Er c D0 (m x N), summed over k in order in a register (no store per product)
            for i in range(m):
                for k in range(N):
                    store(Erc, i, k, mul(splat(Er[b, i, k]), load(cl, k, 0)))
            for i in range(m):
                for j0 in range(0, N, 5):  # five independent sums at a time (their latencies overlap)
                    j1, j2, j3, j4 = min(j0 + 1, N - 1), min(j0 + 2, N - 1), min(j0 + 3, N - 1), min(j0 + 4, N - 1)
                    a0 = a1 = a2 = a3 = a4 = zero
                    for k in range(N):
                        e = load(Erc, i, k)
                        a0 = fma(e, splat(D0[k, j0]), a0)
                        a1 = fma(e, splat(D0[k, j1]), a1)
                        a2 = fma(e, splat(D0[k, j2]), a2)
                        a3 = fma(e, splat(D0[k, j3]), a3)
                        a4 = fma(e, splat(D0[k, j4]), a4)
                    _store5(F, i, j0, N, a0, a1, a2, a3, a4)
            for k in range(N):
                sk = load(sl, k, 0)
                for j in range(k):
                    store(S, k, j, mul(mul(sk, load(sl, j, 0)), splat(P0e[b, k, j])))
                store(S, k, k, fma(mul(sk, sk), splat(P0e[b, k, k]), load(dl, k, 0)))
            # the right-hand sides: left, W = diag(u) (Er c D0)^T, X = base + W'^T diag(c / u) Ec^T with
            # W' = S^-1 W; right, W = diag(c / u) Ec^T, X = base + Er c D0 diag(u) S^-1 W
            if left:
                for k in range(N):
                    uk = load(ul, k, 0)
                    for i in range(m):
                        store(W, k, i, mul(uk, load(F, i, k)))
            else:
                for k in range(N):
                    cu = div(load(cl, k, 0), load(ul, k, 0))
                    for j in range(n):
                        store(W, k, j, mul(cu, splat(Ec[b, j, k])))
            # S = L L^T (lower triangle in place), then L y = W and L^T x = y; each entry's sum in a
            # register (the dot-product forms: one store per entry, not per product)
            for j in range(N):
                acc = load(S, j, j)
                for k in range(j):
                    ljk = load(S, j, k)
                    acc = fnma(ljk, ljk, acc)
                piv = sqrt(acc)
                store(S, j, j, piv)
                r = div(one, piv)
                store(inv, j, 0, r)
                for i0 in range(j + 1, N, 5):  # five rows at a time
                    i1, i2, i3, i4 = min(i0 + 1, N - 1), min(i0 + 2, N - 1), min(i0 + 3, N - 1), min(i0 + 4, N - 1)
                    a0, a1, a2, a3, a4 = load(S, i0, j), load(S, i1, j), load(S, i2, j), load(S, i3, j), load(S, i4, j)
                    for k in range(j):
                        ljk = load(S, j, k)
                        a0 = fnma(load(S, i0, k), ljk, a0)
                        a1 = fnma(load(S, i1, k), ljk, a1)
                        a2 = fnma(load(S, i2, k), ljk, a2)
                        a3 = fnma(load(S, i3, k), ljk, a3)
                        a4 = fnma(load(S, i4, k), ljk, a4)
                    _store5_rows(S, i0, j, N, mul(a0, r), mul(a1, r), mul(a2, r), mul(a3, r), mul(a4, r))
            for i in range(N):  # L y = W
                _substitute_row(S, inv, W, i, 0, i, True)
            for i in range(N - 1, -1, -1):  # L^T x = y
                _substitute_row(S, inv, W, i, i + 1, N, False)
            if left:  # W' diag(c / u), once per k
                for k in range(N):
                    cu = div(load(cl, k, 0), load(ul, k, 0))
                    for i in range(m):
                        store(W, k, i, mul(load(W, k, i), cu))
            else:  # Er c D0 diag(u)
                for k in range(N):
                    uk = load(ul, k, 0)
                    for i in range(m):
                        store(F, i, k, mul(load(F, i, k), uk))
            for i in range(m):  # X - base, five entries at a time, each summed over k in order
                for j0 in range(0, n, 5):
                    j1, j2, j3, j4 = min(j0 + 1, n - 1), min(j0 + 2, n - 1), min(j0 + 3, n - 1), min(j0 + 4, n - 1)
                    a0 = a1 = a2 = a3 = a4 = zero
                    if left:
                        for k in range(N):
                            w = load(W, k, i)
                            a0 = fma(w, splat(Ec[b, j0, k]), a0)
                            a1 = fma(w, splat(Ec[b, j1, k]), a1)
                            a2 = fma(w, splat(Ec[b, j2, k]), a2)
                            a3 = fma(w, splat(Ec[b, j3, k]), a3)
                            a4 = fma(w, splat(Ec[b, j4, k]), a4)
                    else:
                        for k in range(N):
                            f = load(F, i, k)
                            a0 = fma(f, load(W, k, j0), a0)
                            a1 = fma(f, load(W, k, j1), a1)
                            a2 = fma(f, load(W, k, j2), a2)
                            a3 = fma(f, load(W, k, j3), a3)
                            a4 = fma(f, load(W, k, j4), a4)
                    _store5(O, i, j0, n, a0, a1, a2, a3, a4)
            for q in range(min(L, T - t0)):
                Xq = out[b, t0 + q]
                for i in range(m):
                    for j in range(n):
                        Xq[i, j] = base[i, j] + O[i, j, q]


@njit(cache=True, error_model="numpy", nogil=True)
def _substitute_row(S, inv, W, i, lo, hi, lower):
    """Row i of a triangular solve with the Cholesky factor L (lower triangle of S, 1 / its
    diagonal in inv), in place in W, five columns at a time: W[i] = (W[i] - sum_{lo <= k < hi}
    l_k W[k]) / L[i, i] with l_k = L[i, k] (`lower`: L y = W) or L[k, i] (L^T x = y)."""
    r = load(inv, i, 0)
    p = W.shape[1]
    for j0 in range(0, p, 5):
        j1, j2, j3, j4 = min(j0 + 1, p - 1), min(j0 + 2, p - 1), min(j0 + 3, p - 1), min(j0 + 4, p - 1)
        a0, a1, a2, a3, a4 = load(W, i, j0), load(W, i, j1), load(W, i, j2), load(W, i, j3), load(W, i, j4)
        for k in range(lo, hi):
            lk = load(S, i, k) if lower else load(S, k, i)
            a0 = fnma(lk, load(W, k, j0), a0)
            a1 = fnma(lk, load(W, k, j1), a1)
            a2 = fnma(lk, load(W, k, j2), a2)
            a3 = fnma(lk, load(W, k, j3), a3)
            a4 = fnma(lk, load(W, k, j4), a4)
        _store5(W, i, j0, p, mul(a0, r), mul(a1, r), mul(a2, r), mul(a3, r), mul(a4, r))


@njit(cache=True, error_model="numpy", nogil=True)
def _store5(A, i, j0, J, a0, a1, a2, a3, a4):
    """A[i, j0 + u] = a_u for the u with j0 + u < J."""
    store(A, i, j0, a0)
    if j0 + 1 < J:
        store(A, i, j0 + 1, a1)
    if j0 + 2 < J:
        store(A, i, j0 + 2, a2)
    if j0 + 3 < J:
        store(A, i, j0 + 3, a3)
    if j0 + 4 < J:
        store(A, i, j0 + 4, a4)


@njit(cache=True, error_model="numpy", nogil=True)
def _store5_rows(A, i0, j, I, a0, a1, a2, a3, a4):
    """A[i0 + u, j] = a_u for the u with i0 + u < I."""
    store(A, i0, j, a0)
    if i0 + 1 < I:
        store(A, i0 + 1, j, a1)
    if i0 + 2 < I:
        store(A, i0 + 2, j, a2)
    if i0 + 3 < I:
        store(A, i0 + 3, j, a3)
    if i0 + 4 < I:
        store(A, i0 + 4, j, a4)


@njit(cache=True, error_model="numpy", nogil=True)
def rotated_gram(E, U0, V0, P0e):
    """P0e[b] = E[b]^T R0 R0^T E[b] with R0 = [U0[b]; V0[b]], as Z Z^T with Z = E[b]^T R0 (N x r):
    closed_forms_stacked._stacked's P0e without its stacked matrix products (exactly symmetric)."""
    B, N, _ = E.shape
    m, r = U0.shape[1], U0.shape[2]
    Z = np.empty((N, r))
    for b in range(B):
        for k in range(N):
            for q in range(r):
                acc = 0.0
                for i in range(m):
                    acc += E[b, i, k] * U0[b, i, q]
                for i in range(N - m):
                    acc += E[b, m + i, k] * V0[b, i, q]
                Z[k, q] = acc
        for k in range(N):
            for j in range(k + 1):
                acc = 0.0
                for q in range(r):
                    acc += Z[k, q] * Z[j, q]
                P0e[b, k, j] = acc
                P0e[b, j, k] = acc
