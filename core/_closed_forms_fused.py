"""The last stage of closed_forms_stacked's stable form compiled by numba (optional): per point and
time, K = diag(d) + diag(M) P0e and one small solve, instead of numpy's stacked arrays of every K
and LAPACK call per 15 x 15 system. Same formulas; the LU needs no pivoting here (see
stable_form); the numpy path stays the reference (tests/core/test_closed_forms_stacked.py)."""

# mypy: ignore-errors

from numba import njit

from ._simd import LANES, add, div, fma, fnma, lane, load, mul, splat, store, zeros, zeros_lanes


@njit(cache=True, error_model="numpy", nogil=True)
def stable_form(P0e, D0, c, em, t, absa, pos, Er, Ec, base, out):
    """X(t) = base + Er c D0 (diag(d) + diag(M) P0e)^-1 diag(c) Ec^T for every point and time, solved
    from the side with fewer columns (as closed_forms_stacked._stacked). P0e, D0 (B, N, N); c = e^{-t|a|}
    and em = expm1(-2 t |a|) (B, T, N), from numpy's vectorized exp and expm1; t (T,); |a|, pos
    (B, N); Er (B, m, N); Ec (B, n, N); base (B, m, n); out (B, T, m, n). d and M are formed here
    lane by lane, as closed_forms_stacked._stacked's numpy path forms them (the same numbers).

    LANES times of a point side by side, one per SIMD lane (core/_simd.py). K = diag(d) + diag(M) P0e
    is diag(M) times the symmetric positive definite P0e + diag(d / M) (M > 0 at t > 0; K = I at
    t = 0), so its LU needs no pivoting (the factors of S diag(M) or diag(M) S are those of S,
    scaled): the same solution as the pivoted LU of the numpy path, rounded differently."""
    B, T, N = c.shape
    m = Er.shape[1]
    n = Ec.shape[1]
    L = LANES
    left = m < n
    cl = zeros_lanes(N, 1)
    dl = zeros_lanes(N, 1)
    Ml = zeros_lanes(N, 1)
    K = zeros_lanes(N, N)
    F = zeros_lanes(m, N)  # Er c D0
    W = zeros_lanes(N, m if left else n)  # right-hand sides, then the solution
    one = splat(1.0)
    for b in range(B):
        for t0 in range(0, T, L):
            for k in range(N):
                for q in range(L):
                    tq = min(t0 + q, T - 1)  # the last group repeats the last time in its spare lanes
                    ck = c[b, tq, k]
                    cl[k, 0, q] = ck
                    dl[k, 0, q] = ck * ck if pos[b, k] else 1.0
                    z = 2.0 * (t[tq] * absa[b, k])  # M = t h(z), h = (1 - e^{-z}) / z
                    Ml[k, 0, q] = (1.0 - z / 2.0 if z <= 1e-12 else -(em[b, tq, k] / z)) * t[tq]
            # F = Er c D0 (m x N), summed over k in order
            for i in range(m):
                for j in range(N):
                    store(F, i, j, zeros())
                for k in range(N):
                    e = mul(splat(Er[b, i, k]), load(cl, k, 0))
                    for j in range(N):
                        store(F, i, j, fma(e, splat(D0[b, k, j]), load(F, i, j)))
            # K (left: its transpose), and the right-hand sides
            for k in range(N):
                Mk = load(Ml, k, 0)
                for j in range(N):
                    v = mul(Mk, splat(P0e[b, k, j]))
                    if left:
                        store(K, j, k, v)
                    else:
                        store(K, k, j, v)
            for k in range(N):
                store(K, k, k, add(load(K, k, k), load(dl, k, 0)))
            if left:  # W = K^-T (Er c D0)^T, X = base + W^T diag(c) Ec^T
                for k in range(N):
                    for i in range(m):
                        store(W, k, i, load(F, i, k))
            else:  # W = K^-1 diag(c) Ec^T, X = base + Er c D0 W
                for k in range(N):
                    ck = load(cl, k, 0)
                    for j in range(n):
                        store(W, k, j, mul(ck, splat(Ec[b, j, k])))
            p = W.shape[1]
            # LU without pivoting, and the two triangular solves
            for k in range(N):
                inv = div(one, load(K, k, k))
                for i in range(k + 1, N):
                    f = mul(load(K, i, k), inv)
                    store(K, i, k, f)
                    for j in range(k + 1, N):
                        store(K, i, j, fnma(f, load(K, k, j), load(K, i, j)))
            for k in range(N):
                for i in range(k + 1, N):
                    f = load(K, i, k)
                    for j in range(p):
                        store(W, i, j, fnma(f, load(W, k, j), load(W, i, j)))
            for k in range(N - 1, -1, -1):
                inv = div(one, load(K, k, k))
                for j in range(p):
                    store(W, k, j, mul(load(W, k, j), inv))
                for i in range(k):
                    f = load(K, i, k)
                    for j in range(p):
                        store(W, i, j, fnma(f, load(W, k, j), load(W, i, j)))
            valid = min(L, T - t0)
            for i in range(m):
                for j in range(n):
                    acc = zeros()
                    if left:
                        for k in range(N):
                            acc = fma(mul(load(W, k, i), load(cl, k, 0)), splat(Ec[b, j, k]), acc)
                    else:
                        for k in range(N):
                            acc = fma(load(F, i, k), load(W, k, j), acc)
                    acc = add(splat(base[b, i, j]), acc)
                    for q in range(valid):
                        out[b, t0 + q, i, j] = lane(acc, q)
