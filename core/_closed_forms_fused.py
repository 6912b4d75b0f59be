"""The last stage of closed_forms_stacked's stable form compiled by numba (optional): per point and
time, K = diag(d) + diag(M) P0e and one small solve, instead of numpy's stacked arrays of every K
and LAPACK call per 15 x 15 system. Same formulas, solved through the symmetric positive definite
matrix K is similar to (see stable_form): a Cholesky factor, half an LU's work; the numpy path
stays the reference (tests/core/test_closed_forms_stacked.py)."""

# mypy: ignore-errors

from numba import njit

from ._simd import LANES, add, div, fma, fnma, lane, load, mul, splat, sqrt, store, where_gt, zeros, zeros_lanes


@njit(cache=True, error_model="numpy", nogil=True)
def stable_form(P0e, D0, c, em, t, absa, pos, Er, Ec, base, out):
    """X(t) = base + Er c D0 (diag(d) + diag(M) P0e)^-1 diag(c) Ec^T for every point and time, solved
    from the side with fewer columns (as closed_forms_stacked._stacked). P0e, D0 (B, N, N); c = e^{-t|a|}
    and em = expm1(-2 t |a|) (B, T, N), from numpy's vectorized exp and expm1; t (T,); |a|, pos
    (B, N); Er (B, m, N); Ec (B, n, N); base (B, m, n); out (B, T, m, n). d and M are formed here
    lane by lane, as closed_forms_stacked._stacked's numpy path forms them (the same numbers).

    LANES times of a point side by side, one per SIMD lane (core/_simd.py). With s = sqrt(M) (M > 0
    at t > 0), K = diag(s) S diag(s)^-1 where S = diag(s) P0e diag(s) + diag(d) is symmetric positive
    definite (P0e > 0 on the unstable eigenspace, where d may vanish; d > 0 elsewhere), so
    K^-1 = diag(s) S^-1 diag(s)^-1, solved by S's Cholesky factor. At t = 0, K = S = I and the
    scalings u (= s at t > 0) are 1. The same solution as the numpy path's LU, rounded differently."""
    B, T, N = c.shape
    m = Er.shape[1]
    n = Ec.shape[1]
    L = LANES
    left = m < n
    cl = zeros_lanes(N, 1)
    dl = zeros_lanes(N, 1)
    sl = zeros_lanes(N, 1)  # s = sqrt(M)
    ul = zeros_lanes(N, 1)  # s, or 1 at t = 0
    inv = zeros_lanes(N, 1)  # 1 / the Cholesky factor's diagonal
    S = zeros_lanes(N, N)  # lower triangle: S, then its Cholesky factor
    F = zeros_lanes(m, N)  # Er c D0
    W = zeros_lanes(N, m if left else n)  # right-hand sides, then the solution
    one = splat(1.0)
    zero = zeros()
    for b in range(B):
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
            # F = Er c D0 (m x N), summed over k in order
            for i in range(m):
                for j in range(N):
                    store(F, i, j, zero)
                for k in range(N):
                    e = mul(splat(Er[b, i, k]), load(cl, k, 0))
                    for j in range(N):
                        store(F, i, j, fma(e, splat(D0[b, k, j]), load(F, i, j)))
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
            p = W.shape[1]
            # S = L L^T (lower triangle in place), then L y = W and L^T x = y
            for k in range(N):
                piv = sqrt(load(S, k, k))
                r = div(one, piv)
                store(inv, k, 0, r)
                for i in range(k + 1, N):
                    store(S, i, k, mul(load(S, i, k), r))
                for j in range(k + 1, N):
                    ljk = load(S, j, k)
                    for i in range(j, N):
                        store(S, i, j, fnma(load(S, i, k), ljk, load(S, i, j)))
            for k in range(N):
                r = load(inv, k, 0)
                for j in range(p):
                    store(W, k, j, mul(load(W, k, j), r))
                for i in range(k + 1, N):
                    f = load(S, i, k)
                    for j in range(p):
                        store(W, i, j, fnma(f, load(W, k, j), load(W, i, j)))
            for k in range(N - 1, -1, -1):
                r = load(inv, k, 0)
                for j in range(p):
                    store(W, k, j, mul(load(W, k, j), r))
                for i in range(k):
                    f = load(S, k, i)
                    for j in range(p):
                        store(W, i, j, fnma(f, load(W, k, j), load(W, i, j)))
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
            valid = min(L, T - t0)
            for i in range(m):
                for j in range(n):
                    acc = zeros()
                    if left:
                        for k in range(N):
                            acc = fma(load(W, k, i), splat(Ec[b, j, k]), acc)
                    else:
                        for k in range(N):
                            acc = fma(load(F, i, k), load(W, k, j), acc)
                    acc = add(splat(base[b, i, j]), acc)
                    for q in range(valid):
                        out[b, t0 + q, i, j] = lane(acc, q)
