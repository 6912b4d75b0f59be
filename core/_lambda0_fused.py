"""The lambda0 fit's evaluation of eq. (21)'s stable form compiled by numba (optional): per lambda the
spectrum of S~ in closed form, and per LANES (lambda, record) pairs, one per SIMD lane (core/_simd.py;
the pairs of all lambdas of a call in one sequence, so that short record batches fill the lanes too),
the Cholesky of G = diag(d/M) + P0e, the solve and ||X_reg - X||^2, with no array of the whole batch.
Same formulas as lambda0_fit.RegularizedObjective (its numpy path stays the reference,
tests/core/test_lambda0_fused.py); stability is checked by a Cholesky of the P0 block on the unstable
eigenspace shifted by the tolerance, which succeeds exactly when its smallest eigenvalue exceeds it."""

# mypy: ignore-errors

import numpy as np
from numba import njit

from ._simd import LANES, add, div, fma, fnma, lane, load, mul, splat, sqrt, store, sub, zeros, zeros_lanes


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
    G = zeros_lanes(N, N)
    Z = zeros_lanes(N, m)
    C = zeros_lanes(N, 1)  # c = e^{-t|a|}
    Q = zeros_lanes(N, 1)  # q = c/M
    INV = zeros_lanes(N, 1)  # 1/sqrt of the Cholesky pivots
    UQ = zeros_lanes(m, 2)  # sin_j q_j, cos_j q_{m+j}
    BS = zeros_lanes(m, 1)  # Er P* Ec^T, diagonal
    XL = zeros_lanes(m, n)  # X(t) of the lanes' records
    MQ = np.empty(N)  # M of one lane
    lam_of = np.empty(LANES, np.int64)
    col = np.empty(LANES, np.int64)
    T1 = Tp - nz
    P = L * T1
    one = splat(1.0)
    for p0 in range(0, P, LANES):
        nv = min(LANES, P - p0)
        for q in range(LANES):  # idle lanes repeat the last pair
            pp = p0 + min(q, nv - 1)
            lam_of[q] = pp // T1
            col[q] = nz + pp % T1
        one_lambda = lam_of[0] == lam_of[LANES - 1]
        # c = e^{-t|a|}, M = (1 - e^{-2t|a|})/(2|a|) (t (1 - t|a|) as t|a| -> 0), g = d/M (d = c^2 where
        # a > 0, else 1), q = c/M; |a| is r_i on both directions of a plane, lambda/2 on the rest
        for q in range(LANES):
            li = lam_of[q]
            tq = t[idx[col[q]]]
            for k in range(N):
                if k < m or k == 2 * m:
                    z = abs(A[li, k]) * tq
                    ck = np.exp(-z)
                    if z > 0.5:  # 1 - c^2 has no cancellation
                        Mk = tq * ((1.0 - ck * ck) / (2.0 * z))
                    elif z > 1e-12:
                        Mk = tq * (-np.expm1(-2.0 * z) / (2.0 * z))
                    else:
                        Mk = tq * (1.0 - z)
                else:  # the plane's first direction, or the first of the rest
                    src = k - m if k < 2 * m else 2 * m
                    ck = C[src, 0, q]
                    Mk = MQ[src]
                C[k, 0, q] = ck
                MQ[k] = Mk
            for k in range(N):
                qk = C[k, 0, q] / MQ[k]
                Q[k, 0, q] = qk
                G[k, k, q] = C[k, 0, q] * qk if POS[li, k] else 1.0 / MQ[k]
            for j in range(m):
                UQ[j, 0, q] = SN[li, j] * Q[j, 0, q]
                UQ[j, 1, q] = CS[li, j] * Q[m + j, 0, q]
                BS[j, 0, q] = BASE[li, j]
            r_ = idx[col[q]]
            for i in range(m):
                for j in range(n):
                    XL[i, j, q] = Xb[i, j, r_]
        # G = diag(g) + P0e (lower part), Z = (Er c D0)^T
        if one_lambda:
            li = lam_of[0]
            for i in range(N):
                for j in range(i):
                    store(G, i, j, splat(P0E[li, i, j]))
                store(G, i, i, add(splat(P0E[li, i, i]), load(G, i, i)))
            for k in range(N):
                for r in range(m):
                    store(Z, k, r, fnma(splat(V[li, k, r]), load(C, m + r, 0), mul(splat(U[li, k, r]), load(C, r, 0))))
        else:
            for q in range(LANES):
                li = lam_of[q]
                for i in range(N):
                    for j in range(i):
                        G[i, j, q] = P0E[li, i, j]
                    G[i, i, q] = P0E[li, i, i] + G[i, i, q]
                for k in range(N):
                    for r in range(m):
                        Z[k, r, q] = U[li, k, r] * C[r, 0, q] - V[li, k, r] * C[m + r, 0, q]
        # Cholesky (right-looking), then Z <- G^{-1} Z by forward and back substitution
        for j in range(N):
            iv = div(one, sqrt(load(G, j, j)))
            store(INV, j, 0, iv)
            for i in range(j + 1, N):
                store(G, i, j, mul(load(G, i, j), iv))
            for i in range(j + 1, N):
                gij = load(G, i, j)
                for k in range(j + 1, i + 1):
                    store(G, i, k, fnma(gij, load(G, k, j), load(G, i, k)))
        for j in range(N):
            iv = load(INV, j, 0)
            for r in range(m):
                store(Z, j, r, mul(load(Z, j, r), iv))
            for i in range(j + 1, N):
                gij = load(G, i, j)
                for r in range(m):
                    store(Z, i, r, fnma(gij, load(Z, j, r), load(Z, i, r)))
        for j in range(N - 1, -1, -1):
            iv = load(INV, j, 0)
            for r in range(m):
                store(Z, j, r, mul(load(Z, j, r), iv))
            for i in range(j):
                gji = load(G, j, i)
                for r in range(m):
                    store(Z, i, r, fnma(gji, load(Z, j, r), load(Z, i, r)))
        # X = Er P* Ec^T + (Er c D0) G^{-1} (M^{-1} c Ec^T), and its misfit
        res = zeros()
        for i in range(m):
            for j in range(n):
                if j < m:
                    x = fma(load(UQ, j, 0), load(Z, j, i), load(BS, i, 0) if i == j else zeros())
                    x = fma(load(UQ, j, 1), load(Z, m + j, i), x)
                else:
                    x = mul(load(Q, m + j, 0), load(Z, m + j, i))
                d = sub(x, load(XL, i, j))
                res = fma(d, d, res)
                if want_X:
                    for q in range(nv):
                        X[i, j, lam_of[q], col[q]] = lane(x, q)
        for q in range(nv):
            v = lane(res, q)
            per[lam_of[q], col[q]] = v
            if not np.isfinite(v):
                stable[lam_of[q]] = False
