"""The exact flow of the asymmetric model compiled by numba: scipy's DOP853 step by step (its
coefficients, error norm, step-size control, initial step and dense output, as
scipy.integrate.DOP853 with solve_ivp's t_eval), every point with its own step sizes.

LANES points run side by side, one per SIMD lane (the lane axis last), each lane with its own
t, step size and accept/reject; a lane whose point reaches the horizon (or fails) takes the next
point of the batch, so no point waits for a stiffer one. The state of a point is [U~; V~]
flattened (rows a*r + k, then m*r + c*r + k), as flow._FlowSystem packs one point: the stepper
reads it as (m + n, r, LANES), U~'s rows then V~'s, for the right-hand side, which runs gd's
register-tiled products (_gd_fused). Each sum of stages (a stage's argument, y_new with the
error estimate, the dense output) is one pass over the rows that keeps its sums in registers and
reads each stage it needs once, summed in the order of scipy's coefficients.
"""

# mypy: ignore-errors

import numpy as np
from numba import njit
from scipy.integrate._ivp import dop853_coefficients as dop853

from .._simd import LANES, absolute, add, div, fma, lane, load, maximum, mul, splat, store, sub, zeros, zeros_lanes
from ._gd_fused import _grads, _gram, _residual

# scipy.integrate._ivp.rk: RungeKutta's step-size control and DOP853's tableau
_A = np.ascontiguousarray(dop853.A)  # (16, 16): 12 stages, then 3 for the dense output
_B = np.ascontiguousarray(dop853.B)
_E3 = np.ascontiguousarray(dop853.E3)
_E5 = np.ascontiguousarray(dop853.E5)
_D = np.ascontiguousarray(dop853.D)
_N_STAGES = dop853.N_STAGES
_N_EXTENDED = dop853.N_STAGES_EXTENDED
_N_F = dop853.INTERPOLATOR_POWER  # rows of the dense output
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0
_ERROR_EXPONENT = -1.0 / 8.0  # -1 / (error_estimator_order + 1), order 7


def _nonzero(rows):
    """Each row's nonzero entries: (indices, coefficients) padded to the longest, and counts."""
    cnt = np.array([np.count_nonzero(row) for row in rows], dtype=np.int64)
    idx = np.zeros((len(rows), max(int(cnt.max()), 1)), dtype=np.int64)
    coef = np.zeros(idx.shape)
    for s, row in enumerate(rows):
        nz = np.nonzero(row)[0]
        idx[s, : len(nz)] = nz
        coef[s, : len(nz)] = row[nz]
    return idx, coef, cnt


# stage s sums A[s, j] K[j] over j < s; A's row _N_STAGES is B (y_new's sum)
assert np.array_equal(_A[_N_STAGES, :_N_STAGES], _B)
_STAGE_IDX, _STAGE_COEF, _STAGE_CNT = _nonzero([_A[s, :s] for s in range(_N_EXTENDED)])
_STAGE_WIDTH = _STAGE_IDX.shape[1]
# the error estimates use B's stages only (E5, E3 vanish elsewhere): summed in y_new's pass
_Y_NEW_IDX = np.ascontiguousarray(_STAGE_IDX[_N_STAGES, : _STAGE_CNT[_N_STAGES]])
assert all(np.array_equal(np.nonzero(e)[0], _Y_NEW_IDX) for e in (_E5, _E3))
_E5_NZ = np.ascontiguousarray(_E5[_Y_NEW_IDX])
_E3_NZ = np.ascontiguousarray(_E3[_Y_NEW_IDX])
# the dense output's rows 3.. (four: _dense_output's sums) share one pattern of stages
assert len(_D) == _N_F - 3 == 4
_D_IDX = np.nonzero(_D[0])[0]
assert all(np.array_equal(np.nonzero(d)[0], _D_IDX) for d in _D)
_D_NZ = np.ascontiguousarray(_D[:, _D_IDX])

_JIT = dict(cache=True, fastmath={"contract"}, error_model="numpy", nogil=True)


@njit(**_JIT)
def _rhs(z, Yl, X, R, r2, out, m, n, r):
    """The flow (eq. (2)) at z (S, LANES): U' = R V, V' = R^T U into out; r2 = ||R||^2 per lane."""
    Z = z.reshape((m + n, r, LANES))
    dZ = out.reshape((m + n, r, LANES))
    _residual(Z[:m], Z[m:], Yl, X, R, r2)
    _grads(Z[:m], Z[m:], R, dZ[:m], dZ[m:])


@njit(**_JIT)
def _stage(W, K, H, s):
    """W[2] = y + sum_j (h A[s, j]) K[j] over the nonzero A[s, j] (rk_step's stage s; H[s] holds
    the h A[s, j] of every lane), y = W[0]: four rows at a time (four chains of FMAs in flight)."""
    cnt = _STAGE_CNT[s]
    S = W.shape[1]
    S4 = S - S % 4
    for i in range(0, S4, 4):
        a0 = load(W, 0, i)
        a1 = load(W, 0, i + 1)
        a2 = load(W, 0, i + 2)
        a3 = load(W, 0, i + 3)
        for q in range(cnt):
            j = _STAGE_IDX[s, q]
            c = load(H, s, q)
            a0 = fma(c, load(K, j, i), a0)
            a1 = fma(c, load(K, j, i + 1), a1)
            a2 = fma(c, load(K, j, i + 2), a2)
            a3 = fma(c, load(K, j, i + 3), a3)
        store(W, 2, i, a0)
        store(W, 2, i + 1, a1)
        store(W, 2, i + 2, a2)
        store(W, 2, i + 3, a3)
    for i in range(S4, S):
        acc = load(W, 0, i)
        for q in range(cnt):
            acc = fma(load(H, s, q), load(K, _STAGE_IDX[s, q], i), acc)
        store(W, 2, i, acc)


@njit(**_JIT)
def _y_new_and_error(W, K, H, atol, rtol, err2):
    """W[1] = y_new = y + sum_j (h B[j]) K[j] and DOP853._estimate_error_norm's sums of
    (e / scale)^2 for E5 and E3 (scale = atol + max(|y|, |y_new|) rtol) into err2[0], err2[1]."""
    at = splat(atol)
    rt = splat(rtol)
    s5 = zeros()
    s3 = zeros()
    for i in range(W.shape[1]):
        y = load(W, 0, i)
        yn = y
        e5 = zeros()
        e3 = zeros()
        for q in range(len(_Y_NEW_IDX)):
            k = load(K, _Y_NEW_IDX[q], i)
            yn = fma(load(H, _N_STAGES, q), k, yn)
            e5 = fma(splat(_E5_NZ[q]), k, e5)
            e3 = fma(splat(_E3_NZ[q]), k, e3)
        store(W, 1, i, yn)
        scale = fma(maximum(absolute(y), absolute(yn)), rt, at)
        w5 = div(e5, scale)
        w3 = div(e3, scale)
        s5 = fma(w5, w5, s5)
        s3 = fma(w3, w3, s3)
    for ln in range(LANES):
        err2[0, ln] = lane(s5, ln)
        err2[1, ln] = lane(s3, ln)


@njit(**_JIT)
def _dense_output(W, K, HD, hv, F):
    """DOP853._dense_output_impl's F (7, S, LANES) from y = W[0], y_new = W[1] and the 16 stages
    (HD[q] holds h D[q, j] of every lane, hv[0, 0] h)."""
    h = load(hv, 0, 0)
    for i in range(W.shape[1]):
        dy = sub(load(W, 1, i), load(W, 0, i))
        f_old = load(K, 0, i)
        store(F, 0, i, dy)
        store(F, 1, i, sub(mul(h, f_old), dy))
        store(F, 2, i, sub(add(dy, dy), mul(h, add(f_old, load(K, _N_STAGES, i)))))
        a0 = zeros()
        a1 = zeros()
        a2 = zeros()
        a3 = zeros()
        for q in range(len(_D_IDX)):
            k = load(K, _D_IDX[q], i)
            a0 = fma(load(HD, 0, q), k, a0)
            a1 = fma(load(HD, 1, q), k, a1)
            a2 = fma(load(HD, 2, q), k, a2)
            a3 = fma(load(HD, 3, q), k, a3)
        store(F, 3, i, a0)
        store(F, 4, i, a1)
        store(F, 5, i, a2)
        store(F, 6, i, a3)


@njit(**_JIT)
def _dense_lanes(F, W, xv, out):
    """out[0] = _dense at x = xv[0, 0] of every lane (its own x), y_old = W[0]."""
    x = load(xv, 0, 0)
    one_minus_x = sub(splat(1.0), x)
    for i in range(W.shape[1]):
        v = zeros()
        for q in range(_N_F):
            v = add(v, load(F, _N_F - 1 - q, i))
            v = mul(v, x if q % 2 == 0 else one_minus_x)
        store(out, 0, i, add(v, load(W, 0, i)))


@njit(**_JIT)
def _rms(v, scale, ln):
    S = v.shape[0]
    s = 0.0
    for i in range(S):
        w = v[i, ln] / scale[i, ln]
        s += w * w
    return np.sqrt(s / S)


@njit(**_JIT)
def _dense(F, y_old, x, ln, out):
    """scipy's Dop853DenseOutput at x = (t - t_old) / h for lane ln."""
    S = y_old.shape[0]
    for i in range(S):
        v = 0.0
        for q in range(_N_F):
            v += F[_N_F - 1 - q, i, ln]
            if q % 2 == 0:
                v *= x
            else:
                v *= 1.0 - x
        out[i] = v + y_old[i, ln]


@njit(**_JIT)
def flow_dop853(
    y0, Y, tol, ynorm, t_eval, t_end, rtol, atol, m, n, r, rec, n_rec, status, cross, cross_y, cross_F, counts
):
    """Integrate every point b of y0 (B, S) to t_end, sampling rec[b, j] = y(t_eval[j]) on the dense
    output of the step that reaches t_eval[j]. status[b] = 0 (reached t_end) or -1 (step size
    too small, scipy's failure); n_rec[b] samples taken. The first
    step at whose end e(t) - tol[b] changed sign downwards (flow._solve's event) is kept:
    cross[b] = (t_old, t) (NaN where none), cross_y[b] its y_old, cross_F[b] its dense output;
    counts[b] = (accepted steps, rejected steps, right-hand side evaluations)."""
    Bn, S = y0.shape
    Tp = t_eval.shape[0]
    L = LANES
    W = zeros_lanes(3, S)  # y, y_new, a stage's argument
    y, yn, tmp = W[0], W[1], W[2]
    K = zeros_lanes(_N_EXTENDED, S)
    F = zeros_lanes(_N_F, S)
    H = zeros_lanes(_N_EXTENDED, _STAGE_WIDTH)  # h A[s, j] per lane
    HD = zeros_lanes(_N_F - 3, len(_D_IDX))  # h D[q, j] per lane
    hv = zeros_lanes(1, 1)
    err2 = np.zeros((2, L))
    scale = np.zeros((S, L))
    Yl = zeros_lanes(m, n)
    X = zeros_lanes(m, n)
    R = zeros_lanes(m, n)
    r2 = np.zeros(L)
    h = np.zeros(L)
    t = np.zeros(L)
    t_new = np.zeros(L)
    h_abs = np.zeros(L)
    g = np.zeros(L)
    pid = np.full(L, -1)
    ri = np.zeros(L, dtype=np.int64)
    rejected = np.zeros(L, dtype=np.bool_)
    crossed = np.zeros(L, dtype=np.bool_)
    accept = np.zeros(L, dtype=np.bool_)
    fresh = np.zeros(L, dtype=np.bool_)
    cross_now = np.zeros(L, dtype=np.bool_)
    wants_dense = np.zeros(L, dtype=np.bool_)
    take = np.zeros(L, dtype=np.bool_)
    xv = zeros_lanes(1, 1)  # each lane's x of its next sample
    smp = zeros_lanes(1, S)
    nxt = 0
    active = 0
    while True:
        # load the next points into free lanes, then scipy's select_initial_step for them
        any_fresh = False
        for l in range(L):
            fresh[l] = False
            if pid[l] < 0 and nxt < Bn:
                b = nxt
                nxt += 1
                pid[l] = b
                fresh[l] = True
                any_fresh = True
                active += 1
                for i in range(S):
                    y[i, l] = y0[b, i]
                for a in range(m):
                    for c in range(n):
                        Yl[a, c, l] = Y[b, a, c]
                t[l] = 0.0
                ri[l] = 0
                rejected[l] = False
                crossed[l] = False
        if any_fresh:
            _rhs(y, Yl, X, R, r2, K[1], m, n, r)  # f0 (all lanes; kept for the fresh ones)
            for l in range(L):
                if fresh[l]:
                    b = pid[l]
                    counts[b, 2] += 2
                    for i in range(S):
                        K[0, i, l] = K[1, i, l]
                        scale[i, l] = atol + np.abs(y[i, l]) * rtol
                    g[l] = np.sqrt(r2[l]) / ynorm[b] - tol[b]
                    d0 = _rms(y, scale, l)
                    d1 = _rms(K[0], scale, l)
                    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
                    h0 = min(h0, t_end)
                    h_abs[l] = h0
                    for i in range(S):
                        tmp[i, l] = y[i, l] + h0 * K[0, i, l]
                else:
                    for i in range(S):
                        tmp[i, l] = y[i, l]
            _rhs(tmp, Yl, X, R, r2, K[2], m, n, r)  # f1
            for l in range(L):
                if fresh[l]:
                    h0 = h_abs[l]
                    for i in range(S):
                        K[2, i, l] -= K[0, i, l]
                    d1 = _rms(K[0], scale, l)
                    d2 = _rms(K[2], scale, l) / h0
                    if d1 <= 1e-15 and d2 <= 1e-15:
                        h1 = max(1e-6, h0 * 1e-3)
                    else:
                        h1 = (0.01 / max(d1, d2)) ** (1.0 / 8.0)
                    h_abs[l] = min(100 * h0, h1, t_end)
        if active == 0:
            break
        # step sizes (RungeKutta._step_impl); a lane whose step became too small fails
        for l in range(L):
            h[l] = 0.0
            if pid[l] < 0:
                continue
            min_step = 10.0 * np.abs(np.nextafter(t[l], np.inf) - t[l])
            if not rejected[l] and h_abs[l] < min_step:
                h_abs[l] = min_step
            if not (h_abs[l] >= min_step):
                b = pid[l]
                status[b] = -1
                n_rec[b] = ri[l]
                pid[l] = -1
                active -= 1
                continue
            tn = t[l] + h_abs[l]
            if tn > t_end:
                tn = t_end
            t_new[l] = tn
            h[l] = tn - t[l]
            h_abs[l] = np.abs(h[l])
        if active == 0:
            continue  # refill or finish
        for s in range(1, _N_EXTENDED):
            for q in range(_STAGE_CNT[s]):
                for l in range(L):
                    H[s, q, l] = h[l] * _STAGE_COEF[s, q]
        # rk_step: stages 1..11, y_new with the error sums (DOP853._estimate_error_norm), f_new (FSAL)
        for s in range(1, _N_STAGES):
            _stage(W, K, H, s)
            _rhs(tmp, Yl, X, R, r2, K[s], m, n, r)
        _y_new_and_error(W, K, H, atol, rtol, err2)
        _rhs(yn, Yl, X, R, r2, K[_N_STAGES], m, n, r)
        need_dense = False
        for l in range(L):
            accept[l] = False
            cross_now[l] = False
            wants_dense[l] = False
            b = pid[l]
            if b < 0:
                continue
            counts[b, 2] += _N_STAGES
            s5 = err2[0, l]
            s3 = err2[1, l]
            if s5 == 0.0 and s3 == 0.0:
                err = 0.0
            else:
                err = np.abs(h[l]) * s5 / np.sqrt((s5 + 0.01 * s3) * S)
            if err < 1.0:
                if err == 0.0:
                    factor = _MAX_FACTOR
                else:
                    factor = min(_MAX_FACTOR, _SAFETY * err**_ERROR_EXPONENT)
                if rejected[l]:
                    factor = min(1.0, factor)
                h_abs[l] *= factor
                accept[l] = True
                counts[b, 0] += 1
                g_new = np.sqrt(r2[l]) / ynorm[b] - tol[b]
                if g[l] >= 0.0 and g_new <= 0.0 and not crossed[l]:
                    crossed[l] = True
                    cross_now[l] = True
                g[l] = g_new
                wants_dense[l] = cross_now[l] or (ri[l] < Tp and t_eval[ri[l]] <= t_new[l])
                need_dense |= wants_dense[l]
            else:
                factor = _SAFETY * err**_ERROR_EXPONENT
                if not (factor > _MIN_FACTOR):  # max(MIN_FACTOR, nan) is MIN_FACTOR in scipy
                    factor = _MIN_FACTOR
                h_abs[l] *= factor
                rejected[l] = True
                counts[b, 1] += 1
        if need_dense:
            # DOP853._dense_output_impl: 3 more stages, then F
            for s in range(_N_STAGES + 1, _N_EXTENDED):
                _stage(W, K, H, s)
                _rhs(tmp, Yl, X, R, r2, K[s], m, n, r)
            for l in range(L):
                hv[0, 0, l] = h[l]
                for p in range(_N_F - 3):
                    for q in range(len(_D_IDX)):
                        HD[p, q, l] = h[l] * _D_NZ[p, q]
            _dense_output(W, K, HD, hv, F)
            for l in range(L):
                if wants_dense[l]:
                    counts[pid[l], 2] += _N_EXTENDED - _N_STAGES - 1
                if cross_now[l]:
                    b = pid[l]
                    cross[b, 0] = t[l]
                    cross[b, 1] = t_new[l]
                    for i in range(S):
                        cross_y[b, i] = y[i, l]
                        for q in range(_N_F):
                            cross_F[b, q, i] = F[q, i, l]
            # the records in these steps: one sample of every lane at a time
            while True:
                sampling = False
                for l in range(L):
                    take[l] = wants_dense[l] and ri[l] < Tp and t_eval[ri[l]] <= t_new[l]
                    xv[0, 0, l] = (t_eval[ri[l]] - t[l]) / h[l] if take[l] else 0.0
                    sampling |= take[l]
                if not sampling:
                    break
                _dense_lanes(F, W, xv, smp)
                for l in range(L):
                    if take[l]:
                        b = pid[l]
                        for i in range(S):
                            rec[b, ri[l], i] = smp[0, i, l]
                        ri[l] += 1
        # the accepted lanes move on (f = f_new): whole rows when no active lane was rejected
        moving = 0
        for l in range(L):
            if accept[l] or pid[l] < 0:
                moving += 1
        if moving == L:
            y[:] = yn
            K[0] = K[_N_STAGES]
        else:
            for l in range(L):
                if accept[l]:
                    for i in range(S):
                        y[i, l] = yn[i, l]
                        K[0, i, l] = K[_N_STAGES, i, l]
        for l in range(L):
            if accept[l]:
                t[l] = t_new[l]
                rejected[l] = False
                if t[l] >= t_end:
                    b = pid[l]
                    status[b] = 0
                    n_rec[b] = ri[l]
                    pid[l] = -1
                    active -= 1


@njit(**_JIT)
def record_values(rec, Y, Q0, m, n, r, X_out, r2_out, drift2_out):
    """X = U V^T, ||Y - X||^2 and ||Q - Q0||_F^2 (Q = U^T U - V^T V, eq. (11)) of every sampled
    state rec[b, j], LANES samples of a point at a time (gd's products, _gd_fused)."""
    Bn, Tp = rec.shape[0], rec.shape[1]
    L = LANES
    Z = zeros_lanes(m + n, r)
    Yl = zeros_lanes(m, n)
    X = zeros_lanes(m, n)
    R = zeros_lanes(m, n)
    Q = zeros_lanes(r, r)
    r2 = np.zeros(L)
    for b in range(Bn):
        for a in range(m):
            for c in range(n):
                for l in range(L):
                    Yl[a, c, l] = Y[b, a, c]
        for j0 in range(0, Tp, L):
            cnt = min(L, Tp - j0)
            for l in range(L):
                jj = j0 + min(l, cnt - 1)
                for p in range(m + n):
                    for k in range(r):
                        Z[p, k, l] = rec[b, jj, p * r + k]
            _residual(Z[:m], Z[m:], Yl, X, R, r2)
            _gram(Z[:m], Z[m:], Q)
            s = zeros()
            for p in range(r):
                for q in range(r):
                    d = sub(load(Q, p, q), splat(Q0[b, p, q]))
                    s = fma(d, d, s)
            for l in range(cnt):
                r2_out[b, j0 + l] = r2[l]
                drift2_out[b, j0 + l] = lane(s, l)
                for a in range(m):
                    for c in range(n):
                        X_out[b, j0 + l, a, c] = X[a, c, l]


@njit(**_JIT)
def _error_on_dense(F, y_old, t_old, t_new, tt, Yb, ynorm, tol, m, n, r, z):
    """e(tt) - tol on one step's dense output (F (7, S, 1), y_old (S, 1)), e = ||Y - U V^T|| / ||Y||."""
    _dense(F, y_old, (tt - t_old) / (t_new - t_old), 0, z)
    nu = m * r
    s = 0.0
    for a in range(m):
        for c in range(n):
            x = 0.0
            for k in range(r):
                x += z[a * r + k] * z[nu + c * r + k]
            d = Yb[a, c] - x
            s += d * d
    return np.sqrt(s) / ynorm - tol


@njit(**_JIT)
def first_crossings(cross, cross_y, cross_F, Y, ynorm, tol, m, n, r, xtol, rtol, out):
    """out[b] = the t of e_b(t) = tol[b] in the step cross[b] = (t_old, t) where it was first crossed,
    on that step's dense output, by scipy's brentq (scipy/optimize/Zeros/brentq.c, the same
    iterations and tolerances as flow._solve's); NaN where no step crossed."""
    Bn, S = cross_y.shape
    z = np.zeros(S)
    for b in range(Bn):
        out[b] = np.nan
        if not np.isfinite(cross[b, 0]):
            continue
        F = cross_F[b].reshape((_N_F, S, 1))
        y_old = cross_y[b].reshape((S, 1))
        t_old, t_new = cross[b, 0], cross[b, 1]
        xpre, xcur = t_old, t_new
        fpre = _error_on_dense(F, y_old, t_old, t_new, xpre, Y[b], ynorm[b], tol[b], m, n, r, z)
        fcur = _error_on_dense(F, y_old, t_old, t_new, xcur, Y[b], ynorm[b], tol[b], m, n, r, z)
        if fpre == 0.0:
            out[b] = xpre
            continue
        if fcur == 0.0:
            out[b] = xcur
            continue
        xblk = fblk = spre = scur = 0.0
        for _ in range(100):  # brentq's maxiter
            if fpre != 0.0 and fcur != 0.0 and (np.signbit(fpre) != np.signbit(fcur)):
                xblk = xpre
                fblk = fpre
                spre = scur = xcur - xpre
            if abs(fblk) < abs(fcur):
                xpre, xcur, xblk = xcur, xblk, xcur
                fpre, fcur, fblk = fcur, fblk, fcur
            delta = (xtol + rtol * abs(xcur)) / 2
            sbis = (xblk - xcur) / 2
            if fcur == 0.0 or abs(sbis) < delta:
                break
            if abs(spre) > delta and abs(fcur) < abs(fpre):
                if xpre == xblk:  # interpolate
                    stry = -fcur * (xcur - xpre) / (fcur - fpre)
                else:  # extrapolate
                    dpre = (fpre - fcur) / (xpre - xcur)
                    dblk = (fblk - fcur) / (xblk - xcur)
                    stry = -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
                if 2 * abs(stry) < min(abs(spre), 3 * abs(sbis) - delta):  # good short step
                    spre = scur
                    scur = stry
                else:
                    spre = scur = sbis
            else:
                spre = scur = sbis
            xpre = xcur
            fpre = fcur
            xcur += scur if abs(scur) > delta else (delta if sbis > 0 else -delta)
            fcur = _error_on_dense(F, y_old, t_old, t_new, xcur, Y[b], ynorm[b], tol[b], m, n, r, z)
        out[b] = xcur
