"""The lambda0 fit's evaluation of eq. (21)'s stable form compiled by numba (optional): per lambda the
spectrum of S~ in closed form, and per LANES (lambda, record) pairs, one per SIMD lane (core/_simd.py;
the pairs of all lambdas of a call in one sequence, so that short record batches fill the lanes too),
the Cholesky of G = diag(d/M) + P0e, the solve and ||X_reg - X||^2, with no array of the whole batch.
Same formulas as lambda0_fit.RegularizedObjective (its numpy path stays the reference,
tests/core/test_lambda0_fused.py); stability is checked by a Cholesky of the P0 block on the unstable
eigenspace shifted by the tolerance, which succeeds exactly when its smallest eigenvalue exceeds it.
The exponentials of lane groups of one lambda are computed on vectors (`_decay`, to 2 ulps). `search`
is lambda0_fit._search on these evaluations, both branches in one call; `fit` is `setup` (the shared
factorizations) and `search` in one call."""

# mypy: ignore-errors

import math

import numpy as np
from numba import njit

from ._simd import (
    LANES,
    add,
    div,
    floor,
    fma,
    fnma,
    lane,
    load,
    load_at,
    mul,
    pow2,
    splat,
    sqrt,
    store,
    store_at,
    sub,
    where_gt,
    zeros,
    zeros_lanes,
)

# 1/j!: Taylor coefficients of e^r (|r| <= ln2/2, to r^13: < 1e-17 relative) and of expm1(x)/x
# (|x| <= 1/2, to x^15/16!: < 1e-17 relative)
_INV_FACT = np.array([1.0 / math.factorial(j) for j in range(17)])
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # ln 2 = hi + lo, hi k exact


@njit(cache=True, error_model="numpy", nogil=True)
def _decay(z):
    """c = e^{-z} and 1 - c^2 per lane for z >= 0, to a few ulps, on vectors (libm's exp and expm1
    are scalar calls): where z <= 1/2, c = 1 + e and 1 - c^2 = -e (2 + e) with e = expm1(-z) from its
    Taylor series (no cancellation); beyond, c = 2^-k e^r with k = round(z / ln 2), r = k ln 2 - z,
    and 1 - c^2 directly; c = 0 beyond z = 708 (below the smallest normal double)."""
    one = splat(1.0)
    x = sub(zeros(), z)
    p = splat(_INV_FACT[16])
    for j in range(15, 0, -1):
        p = fma(p, x, splat(_INV_FACT[j]))
    e = mul(x, p)  # expm1(x) = x sum_j x^j / (j + 1)!
    cap = splat(708.0)
    zc = where_gt(z, cap, cap, z)
    kf = floor(fma(zc, splat(1.0 / _LN2_HI), splat(0.5)))
    r = fma(kf, splat(_LN2_LO), fma(kf, splat(_LN2_HI), sub(zeros(), zc)))
    p = splat(_INV_FACT[13])
    for j in range(12, -1, -1):
        p = fma(p, r, splat(_INV_FACT[j]))
    big = where_gt(z, cap, zeros(), mul(p, pow2(sub(zeros(), kf))))
    half = splat(0.5)
    c = where_gt(z, half, big, add(one, e))
    return c, where_gt(z, half, fnma(big, big, one), mul(sub(zeros(), e), add(splat(2.0), e)))


@njit(cache=True, nogil=True)
def setup(Y, U0, V0, X):
    """lambda0_fit.RegularizedObjective's factorizations in one call: Y = Phi diag(sigma) Psi^T (Psi
    full), P0b = R0 R0^T with R0 = [Phi^T U0; Psi^T V0] (P0 in the basis B), its largest eigenvalue
    and those of its two diagonal blocks (||U0||_2^2, ||V0||_2^2), and X (T, m, n) in the basis B,
    (m, n, T): the same LAPACK and BLAS calls as the numpy path, without its per-call overhead."""
    m, n = Y.shape
    T = X.shape[0]
    Phi, sigma, PsiT = np.linalg.svd(Y)
    R0 = np.empty((m + n, U0.shape[1]))
    R0[:m] = Phi.T @ U0
    R0[m:] = PsiT @ V0
    P0b = R0 @ R0.T
    p0_max = max(np.linalg.eigvalsh(P0b)[-1], 1e-300)
    u2 = np.linalg.eigvalsh(np.ascontiguousarray(P0b[:m, :m]))[-1]
    v2 = np.linalg.eigvalsh(np.ascontiguousarray(P0b[m:, m:]))[-1]
    XPsi = np.dot(PsiT, np.ascontiguousarray(X.transpose(2, 0, 1)).reshape(n, T * m)).reshape(n, T, m)
    Xb = np.dot(np.ascontiguousarray(Phi.T), np.ascontiguousarray(XPsi.transpose(2, 0, 1)).reshape(m, n * T))
    return sigma, Phi, PsiT, P0b, p0_max, u2, v2, Xb.reshape(m, n, T)


@njit(cache=True, error_model="numpy", nogil=True)
def _spectrum(lam, sigma, P0b, n, a, cs, sn, P0e, pos):
    """S~(lam) in the basis B (lambda0_fit.RegularizedObjective._spectrum for one lambda): a, cs, sn,
    P0e = E^T P0b E (E a rotation in each (i, m + i) plane), pos = the unstable directions."""
    m = sigma.shape[0]
    N = m + n
    big = 0.0
    for i in range(m):
        s = sigma[i]
        r = np.sqrt(s * s + lam * lam / 4.0)
        if lam >= 0:  # no cancellation either way
            c2 = (2 * r + lam) / (4 * r)
            s2 = s * s / (r * (2 * r + lam))
        else:
            c2 = s * s / (r * (2 * r - lam))
            s2 = (2 * r - lam) / (4 * r)
        cs[i] = np.sqrt(c2)
        sn[i] = np.sqrt(s2)
        a[i] = r
        a[m + i] = -r
        big = max(big, abs(r))
    for j in range(2 * m, N):
        a[j] = -lam / 2.0
        big = max(big, abs(lam / 2.0))
    for k in range(N):
        pos[k] = a[k] > 1e-12 * max(big, 1e-300)
    for i in range(N):  # P0b E (columns), then E^T (rows)
        for j in range(N):
            P0e[i, j] = P0b[i, j]
    for i in range(m):
        c, s = cs[i], sn[i]
        for k in range(N):
            u, v = P0e[k, i], P0e[k, m + i]
            P0e[k, i] = c * u + s * v
            P0e[k, m + i] = c * v - s * u
    for i in range(m):
        c, s = cs[i], sn[i]
        for k in range(N):
            u, v = P0e[i, k], P0e[m + i, k]
            P0e[i, k] = c * u + s * v
            P0e[m + i, k] = c * v - s * u


@njit(cache=True, error_model="numpy", nogil=True)
def _positive_on(P0e, pos, tol, work):
    """P0e restricted to the directions pos has its smallest eigenvalue above tol (a Cholesky of the
    block minus tol I succeeds)."""
    N = P0e.shape[0]
    sel = np.empty(N, np.int64)
    p = 0
    for k in range(N):
        if pos[k]:
            sel[p] = k
            p += 1
    for i in range(p):
        for j in range(i + 1):
            work[i, j] = P0e[sel[i], sel[j]]
        work[i, i] -= tol
    for j in range(p):
        d = work[j, j]
        for k in range(j):
            d -= work[j, k] * work[j, k]
        if not d > 0.0:
            return False
        d = np.sqrt(d)
        work[j, j] = d
        for i in range(j + 1, p):
            v = work[i, j]
            for k in range(j):
                v -= work[i, k] * work[j, k]
            work[i, j] = v / d
    return True


@njit(cache=True, error_model="numpy", nogil=True, fastmath={"contract"})
def records(lams, sigma, P0b, tol, t, idx, Xb, per, X, want_X, stable):
    """||X_reg(t; lambda) - X(t)||^2 per (lambda, record idx[j]) into per (L, T'), X_reg in the basis B
    into X (m, n, L, T') when want_X, and whether each lambda is stable (P0 > tol on the unstable
    eigenspace, every value finite). t (T,) ascending, Xb (m, n, T). The (lambda, record) pairs at
    t > 0, lambda-major, LANES at a time: one pair per lane of every vector operation."""
    m = sigma.shape[0]
    n = Xb.shape[1]
    N = m + n
    L = lams.shape[0]
    Tp = idx.shape[0]
    # per lambda: the spectrum of S~ (eigenvalues a, rotations cs, sn, P0e, P* = 2 max(a, 0))
    A = np.empty((L, N))
    CS = np.empty((L, m))
    SN = np.empty((L, m))
    P0E = np.empty((L, N, N))
    POS = np.empty((L, N), np.bool_)
    PSTAR = np.empty((L, N))
    BASE = np.empty((L, m))
    work = np.empty((N, N))
    for li in range(L):
        _spectrum(lams[li], sigma, P0b, n, A[li], CS[li], SN[li], P0E[li], POS[li])
        stable[li] = _positive_on(P0E[li], POS[li], tol, work)
        for k in range(N):
            PSTAR[li, k] = 2.0 * A[li, k] if POS[li, k] else 0.0
        for i in range(m):  # Er P* Ec^T, diagonal
            BASE[li, i] = CS[li, i] * SN[li, i] * (PSTAR[li, i] - PSTAR[li, m + i])
    nz = 0  # t = 0 (the first records): X_reg = P0 exactly, for every lambda
    while nz < Tp and t[idx[nz]] <= 0.0:
        nz += 1
    for li in range(L):
        for j0 in range(nz):
            s = 0.0
            for i in range(m):
                for j in range(n):
                    d = P0b[i, m + j] - Xb[i, j, idx[j0]]
                    s += d * d
                    if want_X:
                        X[i, j, li, j0] = P0b[i, m + j]
            per[li, j0] = s
    # D0 = P0e - diag(P*) times the rotations: Z = (Er c D0)^T = U c_r - V c_{m+r}, per lambda
    U = np.empty((L, N, m))
    V = np.empty((L, N, m))
    for li in range(L):
        for k in range(N):
            for r in range(m):
                U[li, k, r] = (P0E[li, k, r] - (PSTAR[li, k] if k == r else 0.0)) * CS[li, r]
                V[li, k, r] = (P0E[li, k, m + r] - (PSTAR[li, k] if k == m + r else 0.0)) * SN[li, r]
    G = zeros_lanes(N, N)  # the Cholesky factor
    P0L = zeros_lanes(N, N)  # P0e of the lanes' lambdas (kept while consecutive groups share one)
    GD = zeros_lanes(N, 1)  # g
    Z = zeros_lanes(N, m)
    C = zeros_lanes(N, 1)  # c = e^{-t|a|}
    Q = zeros_lanes(N, 1)  # q = c/M
    INV = zeros_lanes(N, 1)  # 1/sqrt of the Cholesky pivots
    UQ = zeros_lanes(m, 2)  # sin_j q_j, cos_j q_{m+j}
    BS = zeros_lanes(m, 1)  # Er P* Ec^T, diagonal
    XL = zeros_lanes(m, n)  # X(t) of the lanes' records
    TL = zeros_lanes(1, 1)  # t of the lanes' records
    lam_of = np.empty(LANES, np.int64)
    col = np.empty(LANES, np.int64)
    rec = np.empty(LANES, np.int64)
    T1 = Tp - nz
    P = L * T1
    # the pairs in groups of one lambda (LANES records each), then the remaining records of every
    # lambda, lambda-major: few groups mix lambdas (they take the slower per-lane path below)
    full = T1 // LANES * LANES
    order_l = np.empty(P, np.int64)
    order_c = np.empty(P, np.int64)
    p = 0
    for rest in range(2):
        for li in range(L):
            for j in range(full, T1) if rest else range(full):
                order_l[p] = li
                order_c[p] = nz + j
                p += 1
    one = splat(1.0)
    tiny = splat(1e-12)
    Xf = X.reshape(-1) if want_X else np.empty(0)  # X C-contiguous (m, n, L, T')
    Xbf = Xb.reshape(-1)  # Xb C-contiguous
    T = Xb.shape[2]
    p0l = -1  # the lambda whose P0e fills P0L (-1: lanes of several)
    for p0 in range(0, P, LANES):
        nv = min(LANES, P - p0)
        for q in range(LANES):  # idle lanes repeat the last pair
            pp = p0 + min(q, nv - 1)
            lam_of[q] = order_l[pp]
            col[q] = order_c[pp]
        # c = e^{-t|a|}, M = (1 - e^{-2t|a|})/(2|a|) (t (1 - t|a|) as t|a| -> 0), g = d/M (d = c^2 where
        # a > 0, else 1), q = c/M; |a| is r_i on both directions of a plane, lambda/2 on the rest.
        # One lambda: on vectors (`_decay`); lanes of several lambdas: per lane, through libm
        one_lambda = lam_of[0] == lam_of[LANES - 1]
        for q in range(LANES):
            TL[0, 0, q] = t[idx[col[q]]]
        if one_lambda:
            li = lam_of[0]
            tv = load(TL, 0, 0)
            tmin = TL[0, 0, 0]
            for q in range(1, LANES):
                tmin = min(tmin, TL[0, 0, q])
            for k in range(m + 1 if n > m else m):
                absa = abs(A[li, k] if k < m else A[li, 2 * m])
                z = mul(splat(absa), tv)
                ck, num = _decay(z)
                # 1/M = 2|a| / (1 - c^2), or 1/(t (1 - z)) as z -> 0: one division where no lane is near 0
                gn = div(splat(2.0 * absa), num)
                if not absa * tmin > 1e-12:
                    gn = where_gt(z, tiny, gn, div(one, mul(tv, sub(one, z))))
                qk = mul(ck, gn)  # q = c/M, g = c^2/M or 1/M
                gp = mul(ck, qk)
                k0, k1, dk = (k, m + k + 1, m) if k < m else (2 * m, N, 1)  # a plane's two, or the rest
                for kk in range(k0, k1, dk):
                    store(C, kk, 0, ck)
                    store(Q, kk, 0, qk)
                    store(GD, kk, 0, gp if POS[li, kk] else gn)
            for j in range(m):
                store(UQ, j, 0, mul(splat(SN[li, j]), load(Q, j, 0)))
                store(UQ, j, 1, mul(splat(CS[li, j]), load(Q, m + j, 0)))
                store(BS, j, 0, splat(BASE[li, j]))
        else:
            for q in range(LANES):
                li = lam_of[q]
                tq = TL[0, 0, q]
                for k in range(m + 1 if n > m else m):
                    absa = abs(A[li, k] if k < m else A[li, 2 * m])
                    z = absa * tq
                    if z > 0.5:
                        ck = np.exp(-z)
                        num = 1.0 - ck * ck
                    else:
                        e = np.expm1(-z)
                        ck = 1.0 + e
                        num = -e * (2.0 + e)
                    gn = 2.0 * absa / num if z > 1e-12 else 1.0 / (tq * (1.0 - z))
                    qk = ck * gn
                    gp = ck * qk
                    k0, k1, dk = (k, m + k + 1, m) if k < m else (2 * m, N, 1)
                    for kk in range(k0, k1, dk):
                        C[kk, 0, q] = ck
                        Q[kk, 0, q] = qk
                        GD[kk, 0, q] = gp if POS[li, kk] else gn
                for j in range(m):
                    UQ[j, 0, q] = SN[li, j] * Q[j, 0, q]
                    UQ[j, 1, q] = CS[li, j] * Q[m + j, 0, q]
                    BS[j, 0, q] = BASE[li, j]
        for q in range(LANES):
            rec[q] = idx[col[q]]
        consecutive = one_lambda and rec[LANES - 1] - rec[0] == LANES - 1  # X(t) read as vectors
        if not consecutive:
            for i in range(m):
                for j in range(n):
                    for q in range(LANES):
                        XL[i, j, q] = Xb[i, j, rec[q]]
        # P0e (lower part), Z = (Er c D0)^T
        if one_lambda:
            li = lam_of[0]
            if li != p0l:
                for i in range(N):
                    for j in range(i + 1):
                        store(P0L, i, j, splat(P0E[li, i, j]))
                p0l = li
            for k in range(N):
                for r in range(m):
                    store(Z, k, r, fnma(splat(V[li, k, r]), load(C, m + r, 0), mul(splat(U[li, k, r]), load(C, r, 0))))
        else:
            p0l = -1
            for q in range(LANES):
                li = lam_of[q]
                for i in range(N):
                    for j in range(i + 1):
                        P0L[i, j, q] = P0E[li, i, j]
                for k in range(N):
                    for r in range(m):
                        Z[k, r, q] = U[li, k, r] * C[r, 0, q] - V[li, k, r] * C[m + r, 0, q]
        # Cholesky, then Z <- G^{-1} Z by forward and back substitution, each entry one chain of
        # FMAs in a register (the right-looking updates' operations in their order: same rounding),
        # up to six rows (five right-hand sides) at a time sharing the loads of the other factor:
        # independent chains hide the FMAs' latency
        for j in range(N):
            acc = add(load(P0L, j, j), load(GD, j, 0))  # G = diag(g) + P0e
            for p in range(j):
                v = load(G, j, p)
                acc = fnma(v, v, acc)
            iv = div(one, sqrt(acc))
            store(INV, j, 0, iv)
            i = j + 1
            while i + 6 <= N:
                a0 = load(P0L, i, j)
                a1 = load(P0L, i + 1, j)
                a2 = load(P0L, i + 2, j)
                a3 = load(P0L, i + 3, j)
                a4 = load(P0L, i + 4, j)
                a5 = load(P0L, i + 5, j)
                for p in range(j):
                    v = load(G, j, p)
                    a0 = fnma(load(G, i, p), v, a0)
                    a1 = fnma(load(G, i + 1, p), v, a1)
                    a2 = fnma(load(G, i + 2, p), v, a2)
                    a3 = fnma(load(G, i + 3, p), v, a3)
                    a4 = fnma(load(G, i + 4, p), v, a4)
                    a5 = fnma(load(G, i + 5, p), v, a5)
                store(G, i, j, mul(a0, iv))
                store(G, i + 1, j, mul(a1, iv))
                store(G, i + 2, j, mul(a2, iv))
                store(G, i + 3, j, mul(a3, iv))
                store(G, i + 4, j, mul(a4, iv))
                store(G, i + 5, j, mul(a5, iv))
                i += 6
            while i + 3 <= N:
                a0 = load(P0L, i, j)
                a1 = load(P0L, i + 1, j)
                a2 = load(P0L, i + 2, j)
                for p in range(j):
                    v = load(G, j, p)
                    a0 = fnma(load(G, i, p), v, a0)
                    a1 = fnma(load(G, i + 1, p), v, a1)
                    a2 = fnma(load(G, i + 2, p), v, a2)
                store(G, i, j, mul(a0, iv))
                store(G, i + 1, j, mul(a1, iv))
                store(G, i + 2, j, mul(a2, iv))
                i += 3
            if i + 2 <= N:
                a0 = load(P0L, i, j)
                a1 = load(P0L, i + 1, j)
                for p in range(j):
                    v = load(G, j, p)
                    a0 = fnma(load(G, i, p), v, a0)
                    a1 = fnma(load(G, i + 1, p), v, a1)
                store(G, i, j, mul(a0, iv))
                store(G, i + 1, j, mul(a1, iv))
                i += 2
            if i < N:
                a0 = load(P0L, i, j)
                for p in range(j):
                    a0 = fnma(load(G, i, p), load(G, j, p), a0)
                store(G, i, j, mul(a0, iv))
        for i in range(N):
            iv = load(INV, i, 0)
            r = 0
            while r + 5 <= m:
                a0 = load(Z, i, r)
                a1 = load(Z, i, r + 1)
                a2 = load(Z, i, r + 2)
                a3 = load(Z, i, r + 3)
                a4 = load(Z, i, r + 4)
                for j in range(i):
                    v = load(G, i, j)
                    a0 = fnma(v, load(Z, j, r), a0)
                    a1 = fnma(v, load(Z, j, r + 1), a1)
                    a2 = fnma(v, load(Z, j, r + 2), a2)
                    a3 = fnma(v, load(Z, j, r + 3), a3)
                    a4 = fnma(v, load(Z, j, r + 4), a4)
                store(Z, i, r, mul(a0, iv))
                store(Z, i, r + 1, mul(a1, iv))
                store(Z, i, r + 2, mul(a2, iv))
                store(Z, i, r + 3, mul(a3, iv))
                store(Z, i, r + 4, mul(a4, iv))
                r += 5
            while r + 3 <= m:
                a0 = load(Z, i, r)
                a1 = load(Z, i, r + 1)
                a2 = load(Z, i, r + 2)
                for j in range(i):
                    v = load(G, i, j)
                    a0 = fnma(v, load(Z, j, r), a0)
                    a1 = fnma(v, load(Z, j, r + 1), a1)
                    a2 = fnma(v, load(Z, j, r + 2), a2)
                store(Z, i, r, mul(a0, iv))
                store(Z, i, r + 1, mul(a1, iv))
                store(Z, i, r + 2, mul(a2, iv))
                r += 3
            if r + 2 <= m:
                a0 = load(Z, i, r)
                a1 = load(Z, i, r + 1)
                for j in range(i):
                    v = load(G, i, j)
                    a0 = fnma(v, load(Z, j, r), a0)
                    a1 = fnma(v, load(Z, j, r + 1), a1)
                store(Z, i, r, mul(a0, iv))
                store(Z, i, r + 1, mul(a1, iv))
                r += 2
            if r < m:
                a0 = load(Z, i, r)
                for j in range(i):
                    a0 = fnma(load(G, i, j), load(Z, j, r), a0)
                store(Z, i, r, mul(a0, iv))
        for i in range(N - 1, -1, -1):
            iv = load(INV, i, 0)
            r = 0
            while r + 5 <= m:
                a0 = load(Z, i, r)
                a1 = load(Z, i, r + 1)
                a2 = load(Z, i, r + 2)
                a3 = load(Z, i, r + 3)
                a4 = load(Z, i, r + 4)
                for j in range(N - 1, i, -1):
                    v = load(G, j, i)
                    a0 = fnma(v, load(Z, j, r), a0)
                    a1 = fnma(v, load(Z, j, r + 1), a1)
                    a2 = fnma(v, load(Z, j, r + 2), a2)
                    a3 = fnma(v, load(Z, j, r + 3), a3)
                    a4 = fnma(v, load(Z, j, r + 4), a4)
                store(Z, i, r, mul(a0, iv))
                store(Z, i, r + 1, mul(a1, iv))
                store(Z, i, r + 2, mul(a2, iv))
                store(Z, i, r + 3, mul(a3, iv))
                store(Z, i, r + 4, mul(a4, iv))
                r += 5
            while r + 3 <= m:
                a0 = load(Z, i, r)
                a1 = load(Z, i, r + 1)
                a2 = load(Z, i, r + 2)
                for j in range(N - 1, i, -1):
                    v = load(G, j, i)
                    a0 = fnma(v, load(Z, j, r), a0)
                    a1 = fnma(v, load(Z, j, r + 1), a1)
                    a2 = fnma(v, load(Z, j, r + 2), a2)
                store(Z, i, r, mul(a0, iv))
                store(Z, i, r + 1, mul(a1, iv))
                store(Z, i, r + 2, mul(a2, iv))
                r += 3
            if r + 2 <= m:
                a0 = load(Z, i, r)
                a1 = load(Z, i, r + 1)
                for j in range(N - 1, i, -1):
                    v = load(G, j, i)
                    a0 = fnma(v, load(Z, j, r), a0)
                    a1 = fnma(v, load(Z, j, r + 1), a1)
                store(Z, i, r, mul(a0, iv))
                store(Z, i, r + 1, mul(a1, iv))
                r += 2
            if r < m:
                a0 = load(Z, i, r)
                for j in range(N - 1, i, -1):
                    a0 = fnma(load(G, j, i), load(Z, j, r), a0)
                store(Z, i, r, mul(a0, iv))
        # X = Er P* Ec^T + (Er c D0) G^{-1} (M^{-1} c Ec^T), and its misfit
        run = want_X and nv == LANES and one_lambda and col[LANES - 1] - col[0] == LANES - 1
        res = zeros()
        for i in range(m):
            for j in range(n):
                if j < m:
                    x = fma(load(UQ, j, 0), load(Z, j, i), load(BS, i, 0) if i == j else zeros())
                    x = fma(load(UQ, j, 1), load(Z, m + j, i), x)
                else:
                    x = mul(load(Q, m + j, 0), load(Z, m + j, i))
                d = sub(x, load_at(Xbf, (i * n + j) * T + rec[0]) if consecutive else load(XL, i, j))
                res = fma(d, d, res)
                if want_X:
                    if run:  # the group's records are consecutive: one vector store
                        store_at(Xf, ((i * n + j) * L + lam_of[0]) * Tp + col[0], x)
                    else:
                        for q in range(nv):
                            X[i, j, lam_of[q], col[q]] = lane(x, q)
        for q in range(nv):
            v = lane(res, q)
            per[lam_of[q], col[q]] = v
            if not np.isfinite(v):
                stable[lam_of[q]] = False


@njit(cache=True, error_model="numpy", nogil=True)
def misfit_to_y(X, sigma, out):
    """||X(t) - Y||_F^2 per record into out (T,), X (m, n, T) and Y = diag(sigma) in the basis B."""
    out[:] = 0.0
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            y = sigma[i] if i == j else 0.0
            for r in range(X.shape[2]):
                d = X[i, j, r] - y
                out[r] += d * d


@njit(cache=True, error_model="numpy", nogil=True)
def _newton_step(st, x, d1, rtol):
    """lambda0_fit._newton_step on a branch's state st = [lo, hi, x, curvature, done, end]."""
    if d1 > 0:
        st[1] = min(st[1], x)
    elif d1 < 0:
        st[0] = max(st[0], x)
    kappa = st[3]
    xn = x - d1 / kappa if kappa > 0 else np.nan
    if not st[0] < xn < st[1]:
        towards_zero = (d1 > 0) == (x > 0)
        if towards_zero and (st[0] == 0.0 or st[1] == 0.0):
            if x == st[5]:
                st[2] = x
                st[4] = 1.0
                return
            xn = st[5]
        elif np.isfinite(st[0]) and np.isfinite(st[1]):
            lo, hi = st[0], st[1]
            if lo > 0 and np.isfinite(hi):
                xn = np.sqrt(lo * hi)
            elif hi < 0 and np.isfinite(lo):
                xn = -np.sqrt(lo * hi)
            else:
                xn = 0.5 * (lo + hi)
        else:
            xn = x * 0.5 if towards_zero else x * 2.0
    st[2] = xn
    if (abs(xn - x) <= rtol * abs(x) and kappa > 0) or st[1] - st[0] <= rtol * max(abs(x), 1e-12):
        st[4] = 1.0


@njit(cache=True, error_model="numpy", nogil=True)
def _stencil3(x, rel, floor, out, k):
    h = rel * max(abs(x), floor)
    out[k] = x - h
    out[k + 1] = x
    out[k + 2] = x + h


@njit(cache=True, error_model="numpy", nogil=True)
def search(sigma, P0b, tol, t, Xb, grid, sub, w_sub, mid, w_mid, mid_is_full, consts, st, f_out, X_out, e2_out, counts):
    """lambda0_fit._search, both branches, in one call (the same steps; see its docstring): the
    coarse grid on the records sub (weights w_sub), stencil Newton on the coarse records once and on
    mid (weights w_mid; skipped when mid_is_full), then on the full grid. consts = [STENCIL,
    SUB_RTOL, FULL_STENCIL, MAX_ITER, END, the coarse grid's smallest |lambda| > 0]; st (2, 7) per
    branch (+, -): [lo, hi, x, curvature, done, end, stable]; out: f_out (2,), X_out (2, m, n, T)
    (X_reg at x in the basis B), e2_out (2, T) (`misfit_to_y` of X_out), counts [evaluations,
    (lambda, record) pairs]."""
    STENCIL, SUB_RTOL, FULL_STENCIL = consts[0], consts[1], consts[2]
    MAX_ITER = int(consts[3])
    END = consts[4]
    m = sigma.shape[0]
    n = Xb.shape[1]
    T = t.shape[0]
    allrec = np.arange(T)
    G = grid.shape[0]
    floor = consts[5]  # 1e-4 L: the stencils' scale near lambda = 0
    signs = (1.0, -1.0)
    for b in range(2):
        st[b, 0], st[b, 1], st[b, 2], st[b, 3] = -np.inf, np.inf, 0.0, np.nan
        st[b, 4] = 0.0
        st[b, 5] = signs[b] * END * floor
        st[b, 6] = 1.0
        f_out[b] = np.inf
    has_X = np.zeros(2, np.bool_)
    # coarse log grid on the coarse records; lambda = 0 belongs to both branches' grids
    lams = np.empty(2 * G - 1)
    lams[:G] = grid
    lams[G:] = -grid[1:]
    Ts = sub.shape[0]
    per = np.empty((2 * G - 1, Ts))
    stable = np.empty(2 * G - 1, np.bool_)
    dummy = np.empty((0, 0, 0, 0))
    records(lams, sigma, P0b, tol, t, sub, Xb, per, dummy, False, stable)
    counts[0] += 2 * G - 1
    counts[1] += (2 * G - 1) * Ts
    vals = np.zeros(2 * G - 1)
    for q in range(2 * G - 1):
        for j in range(Ts):
            vals[q] += per[q, j] * w_sub[j]
    g = np.empty(G)
    v = np.empty(G)
    for b in range(2):
        s = signs[b]
        ok = True
        for q in range(G):
            sel = q if (b == 0 or q == 0) else G + q - 1
            g[q] = s * grid[q]
            v[q] = vals[sel]
            ok = ok and stable[sel]
        st[b, 6] = 1.0 if ok else 0.0
        i = int(np.argmin(v))
        e1, e2 = g[max(i - 1, 0)], g[min(i + 1, G - 1)]
        lo, hi = min(e1, e2), max(e1, e2)
        st[b, 0], st[b, 1] = lo, hi
        # the parabola through the best cell, in log|lambda|, away from lambda = 0
        j = min(max(i, 2), G - 2)
        x0, x1, x2 = np.log(abs(g[j - 1])), np.log(abs(g[j])), np.log(abs(g[j + 1]))
        y0, y1, y2 = v[j - 1], v[j], v[j + 1]
        s01 = (y1 - y0) / (x1 - x0)
        p2 = ((y2 - y1) / (x2 - x1) - s01) / (x2 - x0)
        p1 = s01 - p2 * (x0 + x1)
        xv = s * np.exp(-p1 / (2 * p2)) if p2 > 0 else g[i]
        if lo < xv < hi:
            st[b, 2] = xv
        else:
            st[b, 2] = g[i] if g[i] != 0.0 else 0.5 * (lo + hi)
    # Newton with three-point stencils, both branches in each evaluation: once on the coarse records,
    # then on mid until the step is small
    cells = st[:, :2].copy()
    xs = np.empty(6)
    live = np.empty(2, np.int64)
    for it in range(MAX_ITER):
        nl = 0
        for b in range(2):
            if st[b, 6] > 0 and st[b, 4] == 0:
                _stencil3(st[b, 2], STENCIL, floor, xs, 3 * nl)
                live[nl] = b
                nl += 1
        if nl == 0:
            break
        if it > 0 and mid_is_full:  # a short grid: straight to the full grid below
            break
        rec = sub if it == 0 else mid
        w = w_sub if it == 0 else w_mid
        rtol = 0.0 if it == 0 else SUB_RTOL
        nr = rec.shape[0]
        per = np.empty((3 * nl, nr))
        stable = np.empty(3 * nl, np.bool_)
        records(xs[: 3 * nl].copy(), sigma, P0b, tol, t, rec, Xb, per, dummy, False, stable)
        counts[0] += 3 * nl
        counts[1] += 3 * nl * nr
        for k in range(nl):
            b = live[k]
            if not (stable[3 * k] and stable[3 * k + 1] and stable[3 * k + 2]):
                st[b, 6] = 0.0
                continue
            f3 = np.zeros(3)
            for q in range(3):
                for j in range(nr):
                    f3[q] += per[3 * k + q, j] * w[j]
            fm, f0, fp = f3[0], f3[1], f3[2]
            x = xs[3 * k + 1]
            h = xs[3 * k + 2] - x
            d2 = (fp - 2.0 * f0 + fm) / (h * h)
            st[b, 3] = d2 if d2 > 0 else np.nan
            _newton_step(st[b], x, (fp - fm) / (2.0 * h), rtol)
            if it == 0:  # the coarse records' slope says little about the other records' bracket
                st[b, 0], st[b, 1] = cells[b, 0], cells[b, 1]
                if not st[b, 0] < st[b, 2] < st[b, 1]:
                    st[b, 2] = x
    # the full grid: Newton with three-point stencils from the subsample's minimum; a step within the
    # stencil is the last (X_reg there: the quadratic interpolation of the stencil's three)
    if not mid_is_full:
        for b in range(2):
            st[b, 4] = 0.0
            st[b, 0], st[b, 1] = (0.0, np.inf) if b == 0 else (-np.inf, 0.0)
    per = np.empty((6, T))
    Xr = np.empty((m, n, 6, T))
    stable = np.empty(6, np.bool_)
    for _ in range(MAX_ITER):
        nl = 0
        for b in range(2):
            if st[b, 6] > 0 and st[b, 4] == 0:
                _stencil3(st[b, 2], FULL_STENCIL, floor, xs, 3 * nl)
                live[nl] = b
                nl += 1
        if nl == 0:
            break
        pv = per[: 3 * nl]
        Xv = Xr if nl == 2 else np.empty((m, n, 3, T))  # C-contiguous: the kernel stores vectors
        sv = stable[: 3 * nl]
        records(xs[: 3 * nl].copy(), sigma, P0b, tol, t, allrec, Xb, pv, Xv, True, sv)
        counts[0] += 3 * nl
        counts[1] += 3 * nl * T
        for k in range(nl):
            b = live[k]
            if not (sv[3 * k] and sv[3 * k + 1] and sv[3 * k + 2]):
                st[b, 6] = 0.0
                continue
            fm, f0, fp = pv[3 * k].sum(), pv[3 * k + 1].sum(), pv[3 * k + 2].sum()
            x = xs[3 * k + 1]
            h = xs[3 * k + 2] - x
            d1, d2 = (fp - fm) / (2.0 * h), (fp - 2.0 * f0 + fm) / (h * h)
            st[b, 3] = d2 if d2 > 0 else np.nan
            _newton_step(st[b], x, d1, 0.0)
            u = (st[b, 2] - x) / h
            if d2 > 0 and abs(u) <= 1.0:  # Lagrange weights of x - h, x, x + h at the new x
                c0, c1, c2 = 0.5 * u * (u - 1.0), 1.0 - u * u, 0.5 * u * (u + 1.0)
                f = 0.0
                for i in range(m):
                    for j in range(n):
                        for r in range(T):
                            y = c0 * Xv[i, j, 3 * k, r] + c1 * Xv[i, j, 3 * k + 1, r] + c2 * Xv[i, j, 3 * k + 2, r]
                            X_out[b, i, j, r] = y
                            d = y - Xb[i, j, r]
                            f += d * d
                f_out[b] = f
                misfit_to_y(X_out[b], sigma, e2_out[b])
                has_X[b] = True
                st[b, 4] = 1.0
    for b in range(2):  # not converged within MAX_ITER (or a collapsed bracket): evaluate x
        if st[b, 6] > 0 and not has_X[b]:
            xs[0] = st[b, 2]
            X1 = np.empty((m, n, 1, T))
            records(xs[:1].copy(), sigma, P0b, tol, t, allrec, Xb, per[:1], X1, True, stable[:1])
            counts[0] += 1
            counts[1] += T
            st[b, 6] = 1.0 if stable[0] else 0.0
            f = 0.0
            for i in range(m):
                for j in range(n):
                    for r in range(T):
                        y = X1[i, j, 0, r]
                        X_out[b, i, j, r] = y
                        d = y - Xb[i, j, r]
                        f += d * d
            f_out[b] = f
            misfit_to_y(X_out[b], sigma, e2_out[b])


@njit(cache=True, nogil=True)
def coarse_grid(L, nc):
    """lambda0_fit._coarse_grid: 0, then L 10^(4 (i - nc + 1)/(nc - 1)) (libm's pow, the same numbers)."""
    e = nc - 1
    grid = np.empty(nc + 1)
    grid[0] = 0.0
    for i in range(nc):
        grid[i + 1] = L * 10.0 ** (4.0 * (i - e) / e)
    return grid


@njit(cache=True, nogil=True)
def fit(Y, U0, V0, t, X, sub, w_sub, mid, w_mid, mid_is_full, consts):
    """`setup` and `search` in one call (lambda0_fit._fit_compiled): consts = [STENCIL, SUB_RTOL,
    FULL_STENCIL, MAX_ITER, END, N_COARSE]; the search bound L = 4 (||U0||^2 + ||V0||^2 + sigma_max) + 1
    (lambda0_fit._bound) sets the coarse grid and the stencils' floor 1e-4 L. Returns sigma, Phi,
    Psi^T, L and `search`'s outputs st, f_out, X_out, e2_out, counts."""
    m, n = Y.shape
    T = t.shape[0]
    sigma, Phi, PsiT, P0b, p0_max, u2, v2, Xb = setup(Y, U0, V0, X)
    L = 4.0 * (u2 + v2 + sigma[0]) + 1.0
    grid = coarse_grid(L, int(consts[5]))
    c = consts.copy()
    c[5] = 1e-4 * L
    st = np.empty((2, 7))
    f = np.empty(2)
    X_out = np.empty((2, m, n, T))
    e2 = np.empty((2, T))
    counts = np.zeros(2, np.int64)
    search(sigma, P0b, 1e-7 * p0_max, t, Xb, grid, sub, w_sub, mid, w_mid, mid_is_full, c, st, f, X_out, e2, counts)
    return sigma, Phi, PsiT, L, st, f, X_out, e2, counts
