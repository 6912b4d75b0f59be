"""The lambda0 fit's evaluation of eq. (21)'s stable form compiled by numba (optional): per lambda the
spectrum of S~ in closed form, and per batch of record times (the batch axis last, where the compiler vectorizes) the
Cholesky of G = diag(d/M) + P0e, the solve and ||X_reg - X||^2, with no array of the whole batch.
Same formulas as lambda0_fit.RegularizedObjective (its numpy path stays the reference,
tests/core/test_lambda0_fused.py); stability is checked by a Cholesky of the P0 block on the unstable
eigenspace shifted by the tolerance, which succeeds exactly when its smallest eigenvalue exceeds it."""

# mypy: ignore-errors

import numpy as np
from numba import njit

LANES = 64  # records per batch of factorizations (the inner, vectorized loops)
VECTOR = 8  # batches are padded to a multiple of this (the compiled loops' vector step)


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
    eigenspace, every value finite). t (T,) ascending, Xb (m, n, T). The records of one lambda are
    solved up to LANES at a time, the record the innermost (vectorized) axis of every loop."""
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
    G = np.empty((N, N, LANES))
    Z = np.empty((N, m, LANES))
    c = np.empty((N, LANES))
    q = np.empty((N, LANES))
    g = np.empty((N, LANES))
    inv = np.empty((N, LANES))
    tl = np.empty(LANES)
    res = np.empty(LANES)
    rec = np.empty(LANES, np.int64)
    Xl = np.empty((m, n, LANES))  # X(t) of the lanes' records
    Xm = np.empty((m, n, LANES))  # X_reg
    n_chunks = (Tp - nz + LANES - 1) // LANES
    B = (Tp - nz + n_chunks - 1) // n_chunks if n_chunks else 1  # balanced chunks of one lambda
    for li, j0 in [(li, j0) for li in range(L) for j0 in range(nz, Tp, B)]:
        nv = min(B, Tp - j0)  # records of this batch; nl >= nv lanes, a multiple of VECTOR
        nl = (nv + VECTOR - 1) // VECTOR * VECTOR
        for l in range(nl):  # idle lanes repeat the last record (no scalar remainder loops)
            rec[l] = idx[j0 + min(l, nv - 1)]
            tl[l] = t[rec[l]]
        for i in range(m):
            for j in range(n):
                for l in range(nl):
                    Xl[i, j, l] = Xb[i, j, rec[l]]
        # c = e^{-t|a|}, M = (1 - e^{-2t|a|})/(2|a|) (t (1 - t|a|) as t|a| -> 0), g = d/M (d = c^2 where
        # a > 0, else 1), q = c/M; |a| is r_i on both directions of a plane, lambda/2 on the rest
        for k in range(N):
            if k < m or k == 2 * m:
                ab = abs(A[li, k])
                for l in range(nl):
                    z = ab * tl[l]
                    ck = np.exp(-z)
                    if z > 0.5:  # 1 - c^2 has no cancellation
                        Mk = tl[l] * ((1.0 - ck * ck) / (2.0 * z))
                    elif z > 1e-12:
                        Mk = tl[l] * (-np.expm1(-2.0 * z) / (2.0 * z))
                    else:
                        Mk = tl[l] * (1.0 - z)
                    c[k, l] = ck
                    g[k, l] = Mk  # M, until g is formed below
            else:
                src = k - m if k < 2 * m else 2 * m
                for l in range(nl):
                    c[k, l] = c[src, l]
                    g[k, l] = g[src, l]
        for k in range(N):
            for l in range(nl):
                q[k, l] = c[k, l] / g[k, l]
            if POS[li, k]:
                for l in range(nl):
                    g[k, l] = c[k, l] * q[k, l]
            else:
                for l in range(nl):
                    g[k, l] = 1.0 / g[k, l]
        # G = diag(g) + P0e (lower part), Z = (Er c D0)^T
        for i in range(N):
            for j in range(i + 1):
                v = P0E[li, i, j]
                for l in range(nl):
                    G[i, j, l] = v
            for l in range(nl):
                G[i, i, l] += g[i, l]
        for k in range(N):
            for r in range(m):
                u, v = U[li, k, r], V[li, k, r]
                for l in range(nl):
                    Z[k, r, l] = u * c[r, l] - v * c[m + r, l]
        # Cholesky (right-looking), then Z <- G^{-1} Z by forward and back substitution
        for j in range(N):
            for l in range(nl):
                inv[j, l] = 1.0 / np.sqrt(G[j, j, l])
            for i in range(j + 1, N):
                for l in range(nl):
                    G[i, j, l] *= inv[j, l]
            for i in range(j + 1, N):
                for k in range(j + 1, i + 1):
                    for l in range(nl):
                        G[i, k, l] -= G[i, j, l] * G[k, j, l]
        for j in range(N):
            for r in range(m):
                for l in range(nl):
                    Z[j, r, l] *= inv[j, l]
            for i in range(j + 1, N):
                for r in range(m):
                    for l in range(nl):
                        Z[i, r, l] -= G[i, j, l] * Z[j, r, l]
        for j in range(N - 1, -1, -1):
            for r in range(m):
                for l in range(nl):
                    Z[j, r, l] *= inv[j, l]
            for i in range(j):
                for r in range(m):
                    for l in range(nl):
                        Z[i, r, l] -= G[j, i, l] * Z[j, r, l]
        # X = Er P* Ec^T + (Er c D0) G^{-1} (M^{-1} c Ec^T), and its misfit
        for l in range(nl):
            res[l] = 0.0
        for i in range(m):
            for j in range(n):
                if j < m:
                    u, v = SN[li, j], CS[li, j]
                    base = BASE[li, i] if i == j else 0.0
                    for l in range(nl):
                        Xm[i, j, l] = base + u * q[j, l] * Z[j, i, l] + v * q[m + j, l] * Z[m + j, i, l]
                else:
                    for l in range(nl):
                        Xm[i, j, l] = q[m + j, l] * Z[m + j, i, l]
                for l in range(nl):
                    d = Xm[i, j, l] - Xl[i, j, l]
                    res[l] += d * d
        for l in range(nv):
            per[li, j0 + l] = res[l]
            if not np.isfinite(res[l]):
                stable[li] = False
        if want_X:
            for i in range(m):
                for j in range(n):
                    for l in range(nv):
                        X[i, j, li, j0 + l] = Xm[i, j, l]
