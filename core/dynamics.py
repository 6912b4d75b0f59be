"""Batched integrators of the two-layer models and the sigmoid one-layer baseline.

All arrays carry the batch as their leading dimension. Factors are simulated in reduced
coordinates (U~ = U B, V~ = V B with B an orthonormal basis of the row space of [U0; V0]): the rows
of U(t), V(t) never leave that space under gd or the flow, so U V^T, ||Q(t) - Q0|| and the singular
values are unchanged while the cost no longer depends on k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from .data import sigmoid

# A relative error above this is treated as divergence (it only ever grows to inf from there).
DIVERGENCE_ERROR = 1e20


@dataclass
class Problem:
    """A batch of points of one shape: model, data and reduced initial factors."""

    model: str                      # "asymmetric" | "symmetric" | "sigmoid"
    Y: np.ndarray                   # (B, m, n) or (B, N, d) for sigmoid
    U0: np.ndarray                  # (B, m, r)
    V0: np.ndarray | None           # (B, n, r); None for symmetric
    A: np.ndarray | None = None     # (B, N, d) sigmoid inputs
    y_norm: np.ndarray | None = None  # (B,) ||Y||

    def __post_init__(self):
        if self.y_norm is None:
            self.y_norm = np.sqrt(np.einsum("bij,bij->b", self.Y, self.Y))

    @property
    def batch(self) -> int:
        return self.Y.shape[0]


@dataclass
class Trajectory:
    """What an integrator recorded on the grid t = eta * i, i = 0, record_every, ... <= steps."""

    t: np.ndarray                   # (T,)
    X: np.ndarray                   # (B, T, m, n) end-to-end map (U V^T, U U^T, or U V^T for sigmoid)
    error: np.ndarray               # (B, T) relative error e(t)
    q_drift: np.ndarray | None      # (B, T) ||Q(t) - Q0||_F (None for symmetric)
    time_to_tol: np.ndarray         # (B,) first t with e <= tol, nan if not reached
    final_error: np.ndarray         # (B,) e at t = eta * steps
    diverged_at: np.ndarray         # (B,) iteration of divergence, -1 if none
    error_linear: np.ndarray | None = None        # (B, T) simulated baseline (sigmoid only)
    time_to_tol_linear: np.ndarray | None = None  # (B,) simulated baseline (sigmoid only)
    final_error_linear: np.ndarray | None = None  # (B,)
    iterations: np.ndarray | None = None          # (B,) gd steps computed (fewer once frozen)
    # factors (reduced coordinates) at the last state computed, for rate_lin and the gd stability
    # limit; None where an integrator does not keep them (sigmoid), zeros for diverged points
    U_final: np.ndarray | None = None             # (B, m, r)
    V_final: np.ndarray | None = None             # (B, n, r); None for symmetric


def reduce_factors(U0: np.ndarray, V0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates of U0 (and V0) in an orthonormal basis of the row space of [U0; V0]."""
    R0 = U0 if V0 is None else np.vstack([U0, V0])
    if R0.shape[1] <= R0.shape[0]:          # nothing to gain: k <= m (+ n)
        return U0, V0
    B, _ = np.linalg.qr(R0.T)               # (k, m+n), orthonormal columns spanning R0's rows
    return U0 @ B, (None if V0 is None else V0 @ B)


def record_grid(eta: float, steps: int, record_every: int) -> np.ndarray:
    return np.arange(0, steps + 1, record_every)


# ---------------------------------------------------------------- gradients (batched) -----

def _residual_and_grads(p: Problem, U, V):
    """Return (end-to-end X, squared residual norm, dU, dV) with dU = -dL/dU (descent direction)."""
    if p.model == "asymmetric":
        X = U @ V.transpose(0, 2, 1)
        R = p.Y - X
        return X, np.einsum("bij,bij->b", R, R), R @ V, R.transpose(0, 2, 1) @ U
    if p.model == "symmetric":
        X = U @ U.transpose(0, 2, 1)
        R = p.Y - X
        return X, np.einsum("bij,bij->b", R, R), 2.0 * (R @ U), None
    X = U @ V.transpose(0, 2, 1)                  # sigmoid: loss 1/2 ||Y - phi(A X)||^2
    G, r2 = _sigmoid_grad(p, X)
    return X, r2, G @ V, G.transpose(0, 2, 1) @ U


def _sigmoid_grad(p: Problem, X):
    """-dL/dX = A^T [(Y - phi) * phi * (1 - phi)] for L = 1/2 ||Y - phi(A X)||^2."""
    P = sigmoid(p.A @ X)
    Rr = p.Y - P
    G = p.A.transpose(0, 2, 1) @ (Rr * P * (1.0 - P))
    return G, np.einsum("bij,bij->b", Rr, Rr)


def _gram_diff(U, V):
    return U.transpose(0, 2, 1) @ U - V.transpose(0, 2, 1) @ V


# ---------------------------------------------------------------- gradient descent --------

def run_gd(p: Problem, eta: float, steps: int, record_every: int, tol) -> Trajectory:
    """Explicit Euler (the paper's gradient descent), all points of the batch at once.

    A point whose error becomes non-finite (or absurdly large) is frozen at zero and keeps the
    iteration where it happened; the others continue untouched. A linear-model point that has
    converged to machine precision (FREEZE_ERROR) stops being iterated; `iterations` says how
    many steps each point computed.
    """
    if p.model == "sigmoid":
        return _run_gd_sigmoid(p, eta, steps, record_every, tol)
    return _run_gd_linear(p, eta, steps, record_every, tol)


# Steps between divergence/tolerance checks of the squared residuals kept in a small window.
_WINDOW = 64
# A gd point whose relative error has stayed below FREEZE_ERROR for FREEZE_STEPS iterations after
# it reached its tol has converged to machine precision (X = Y up to rounding): it stops being
# iterated and its later records repeat that state. The exact iterates would move X by about that
# error at most (they converge to Y), no more than the rounding noise further steps would add;
# the batch shrinks, so points that converge early stop costing (1/3 of Fig. 1's points at s = 1).
FREEZE_ERROR = 1e-14
FREEZE_STEPS = 64


class _GdBuffers:
    """Work arrays of the gd loop for the points still being iterated (rows of W = [Uc | Vc])."""

    def __init__(self, W: np.ndarray, sY: np.ndarray, m: int, sym: bool):
        Bn = W.shape[0]
        n = sY.shape[2]
        self.W, self.sY, self.m, self.sym = W, sY, m, sym
        self.Uc = W[:, :, :m]
        self.UcT = self.Uc.transpose(0, 2, 1)
        # symmetric: Vc is a second copy of Uc, numpy's A^T A path (syrk) is slower than a product
        self.Vc = W.copy() if sym else W[:, :, m:]
        self.dW = np.empty_like(W)
        self.dUc = self.dW[:, :, :m]
        self.dVc = None if sym else self.dW[:, :, m:]
        self.X = np.empty((Bn, m, n))                   # s X
        self.R = np.empty((Bn, m, n))                   # s R = s (Y - X)
        self.Rt = np.empty((Bn, n, m))
        self.R_flat = self.R.reshape(Bn, m * n)

    def residual(self, r2_out: np.ndarray) -> None:
        np.matmul(self.UcT, self.Vc, out=self.X)
        np.subtract(self.sY, self.X, out=self.R)
        np.vecdot(self.R_flat, self.R_flat, out=r2_out)

    def update(self) -> None:
        if self.sym:                                    # U += 2 eta R U <=> Uc += Uc (sR), R = R^T
            np.matmul(self.Vc, self.R, out=self.dUc)
            self.W += self.dW
            np.copyto(self.Vc, self.W)
        else:                                           # both factors use the old values
            np.copyto(self.Rt, self.R.transpose(0, 2, 1))
            np.matmul(self.Vc, self.Rt, out=self.dUc)
            np.matmul(self.Uc, self.R, out=self.dVc)
            self.W += self.dW

    def zero(self, rows: np.ndarray) -> None:
        """A diverged point: factors and end-to-end map set to zero (recorded as such)."""
        self.W[rows] = 0.0
        if self.sym:
            self.Vc[rows] = 0.0
        self.X[rows] = 0.0
        self.R[rows] = 0.0

    def subset(self, keep: np.ndarray) -> "_GdBuffers":
        """The buffers of the rows `keep`, mid-step: X and R of this step come along."""
        out = _GdBuffers(self.W[keep], self.sY[keep], self.m, self.sym)
        out.X[...] = self.X[keep]
        out.R[...] = self.R[keep]
        return out


def _run_gd_linear(p: Problem, eta: float, steps: int, record_every: int, tol) -> Trajectory:
    """The hot loop for the linear models, bound by numpy's per-matrix cost of small stacked
    matmuls, so every step is three matmuls and four cheap calls into preallocated buffers:

    - factors are stored transposed (Uc = U^T, r x m) so that each matmul's second operand is
      contiguous: numpy hands those to BLAS, a transposed second operand falls back to a loop
      ~3x slower;
    - factors are scaled by sqrt(s) (s = eta, 2 eta symmetric), so the step
      U += s R V, V += s R^T U becomes Uc += Vc (sR)^T, Vc += Uc (sR) with sR = sY - Uc^T Vc:
      no separate scaling of R, one transposed copy of it (its smallest array);
    - ||R||^2 is free every step; it is kept in a window and scanned every few steps for the
      first iteration with e <= tol (time_to_tol, exact per step), for divergence (exact first
      bad iteration) and for convergence to machine precision (FREEZE_ERROR);
    - diverged and converged points leave the batch (`act` maps its rows to the points)."""
    Bn = p.batch
    sym = p.model == "symmetric"
    s = 2.0 * eta if sym else eta
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    ynorm = p.y_norm
    tol2 = (tol * ynorm * s) ** 2                   # thresholds on ||sR||^2, per row of the batch
    thr2 = (DIVERGENCE_ERROR * ynorm * s) ** 2
    frz2 = (FREEZE_ERROR * ynorm * s) ** 2
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    m, r = p.U0.shape[1], p.U0.shape[2]
    n = m if sym else p.V0.shape[1]
    W = np.empty((Bn, r, m if sym else m + n))
    np.multiply(p.U0.transpose(0, 2, 1), np.sqrt(s), out=W[:, :, :m])
    if not sym:
        np.multiply(p.V0.transpose(0, 2, 1), np.sqrt(s), out=W[:, :, m:])
    buf = _GdBuffers(W, s * p.Y, m, sym)
    drift = None if sym else _QDrift(W, m)
    # records are written time-major (one block per record) and transposed at the end
    X_rec = np.empty((T, Bn, m, n))
    r2_rec = np.empty((T, Bn))
    drift2_rec = None if sym else np.empty((T, Bn))
    r2_final = np.empty(Bn)
    ttt = np.full(Bn, np.nan)
    div = np.full(Bn, -1, dtype=np.int64)
    act = np.arange(Bn)                             # the point of each row of the batch
    below = np.zeros(Bn, dtype=np.int64)            # steps in a row with e <= FREEZE_ERROR
    iterations = np.full(Bn, steps, dtype=np.int64)
    W_final = np.zeros_like(W)
    win = np.empty((_WINDOW, Bn))
    w = 0
    rec = 0
    with np.errstate(all="ignore"):
        for i in range(steps + 1):
            buf.residual(win[w, :len(act)])
            w += 1
            is_rec = rec < T and idx[rec] == i
            if not (w == _WINDOW or is_rec or i == steps):
                buf.update()
                continue
            r2 = win[:w, :len(act)]
            it0 = i - w + 1
            bad = ~(r2 <= thr2)                     # catches nan and inf too
            gone = bad.any(axis=0)
            if gone.any():
                div[act[gone]] = it0 + np.argmax(bad, axis=0)[gone]
                buf.zero(gone)
            hit = r2 <= tol2
            if hit.any():
                first_hit = np.argmax(hit, axis=0)
                take = np.isnan(ttt[act]) & hit.any(axis=0) & \
                    ((div[act] < 0) | (it0 + first_hit < div[act]))
                ttt[act[take]] = (it0 + first_hit[take]) * eta
            if (r2[-1] <= frz2).any():
                below = np.where((r2 <= frz2).all(axis=0), below + w, 0)
                gone |= (below >= FREEZE_STEPS) & ~np.isnan(ttt[act])
            else:
                below[:] = 0
            full = len(act) == Bn
            if is_rec:
                if full:
                    np.copyto(X_rec[rec], buf.X)
                    np.copyto(r2_rec[rec], r2[-1])
                else:
                    X_rec[rec, act] = buf.X
                    r2_rec[rec, act] = r2[-1]
                if drift is not None:
                    d2 = drift.squared_norm(buf.W, out=drift2_rec[rec] if full else None)
                    if not full:
                        drift2_rec[rec, act] = d2
                rec += 1
            if i == steps:
                r2_final[act] = r2[-1]
                W_final[act] = buf.W
                break
            w = 0
            if gone.any():                          # leave the batch; later records repeat the state
                pts = act[gone]
                iterations[pts] = i
                X_rec[rec:, pts] = buf.X[gone]
                r2_rec[rec:, pts] = r2[-1][gone]
                r2_final[pts] = r2[-1][gone]
                W_final[pts] = buf.W[gone]
                if drift is not None:
                    drift2_rec[rec:, pts] = drift.squared_norm(buf.W)[gone]
                keep = ~gone
                act, below, tol2, thr2, frz2 = act[keep], below[keep], tol2[keep], thr2[keep], frz2[keep]
                buf = buf.subset(keep)
                if drift is not None:
                    drift = drift.subset(keep, buf.W)
                if not len(act):
                    break
            buf.update()
    # a point is recorded as NaN from the iteration where it diverged on
    cut = (div[:, None] >= 0) & (idx[None, :] >= div[:, None])
    err_rec = np.where(cut, np.nan, np.sqrt(r2_rec.T) / (s * ynorm[:, None]))
    final = np.where(div >= 0, np.nan, np.sqrt(r2_final) / (s * ynorm))
    X_out = np.empty((Bn, T, m, n))
    np.divide(X_rec.transpose(1, 0, 2, 3), s, out=X_out)
    W_final = W_final.transpose(0, 2, 1) / np.sqrt(s)
    return Trajectory(t=idx * eta, X=X_out, error=err_rec, time_to_tol=ttt, final_error=final,
                      diverged_at=div, q_drift=None if sym else np.sqrt(drift2_rec.T) / s,
                      iterations=iterations, U_final=W_final[:, :m],
                      V_final=None if sym else W_final[:, m:])


class _QDrift:
    """||Q - Q0||_F of Q = U^T U - V^T V from W = [Uc | Vc] (Q = W J W^T, J = diag(I_m, -I_n)),
    into preallocated buffers (fresh temporaries of this size cost more than the product)."""

    def __init__(self, W: np.ndarray, m: int, Q0: np.ndarray | None = None):
        Bn, r, mn = W.shape
        self.m = m
        self.J = np.where(np.arange(mn) < m, 1.0, -1.0)
        self.WJ = np.empty_like(W)
        self.Wt = np.empty((Bn, mn, r))
        self.Q = np.empty((Bn, r, r))
        self.Q_flat = self.Q.reshape(Bn, r * r)
        self.Q0 = self.gram(W).copy() if Q0 is None else Q0

    def gram(self, W: np.ndarray) -> np.ndarray:
        np.multiply(W, self.J, out=self.WJ)
        np.copyto(self.Wt, W.transpose(0, 2, 1))
        np.matmul(self.WJ, self.Wt, out=self.Q)
        return self.Q

    def squared_norm(self, W: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        Q = self.gram(W)
        Q -= self.Q0
        return np.vecdot(self.Q_flat, self.Q_flat, out=out)

    def subset(self, keep: np.ndarray, W: np.ndarray) -> "_QDrift":
        """For the rows `keep`, whose factors are now W (their Q0 stays the one they started from)."""
        return _QDrift(W, self.m, Q0=self.Q0[keep])


def _run_gd_sigmoid(p: Problem, eta: float, steps: int, record_every: int, tol) -> Trajectory:
    """The sigmoid model through `_residual_and_grads`, with its one-layer baseline W (started at
    U0 V0^T) simulated by the same steps."""
    Bn = p.batch
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    U = p.U0.copy()
    V = p.V0.copy()
    W = U @ V.transpose(0, 2, 1)
    ynorm = p.y_norm
    X_rec = np.zeros((Bn, T, U.shape[1], V.shape[1]))
    err_rec = np.full((Bn, T), np.nan)
    errL_rec = np.full((Bn, T), np.nan)
    drift_rec = np.zeros((Bn, T))
    Q0 = _gram_diff(U, V)
    ttt = np.full(Bn, np.nan)
    tttL = np.full(Bn, np.nan)
    div = np.full(Bn, -1, dtype=np.int64)
    alive = np.ones(Bn, dtype=bool)
    rec = 0
    with np.errstate(all="ignore"):
        for i in range(steps + 1):
            X, r2, dU, dV = _residual_and_grads(p, U, V)
            e = np.sqrt(r2) / ynorm
            GW, rW2 = _sigmoid_grad(p, W)
            eW = np.sqrt(rW2) / ynorm
            bad = ~((e < DIVERGENCE_ERROR) & (eW < DIVERGENCE_ERROR)) & alive
            if bad.any():
                div[bad] = i
                alive &= ~bad
                U[bad] = 0.0
                V[bad] = 0.0
                W[bad] = 0.0
                dU[bad] = 0.0
                dV[bad] = 0.0
            hit = alive & np.isnan(ttt) & (e <= tol)
            ttt[hit] = i * eta
            hitL = alive & np.isnan(tttL) & (eW <= tol)
            tttL[hitL] = i * eta
            if rec < T and idx[rec] == i:
                X_rec[:, rec] = X
                err_rec[:, rec] = np.where(alive, e, np.nan)
                errL_rec[:, rec] = np.where(alive, eW, np.nan)
                D = _gram_diff(U, V) - Q0
                drift_rec[:, rec] = np.sqrt(np.einsum("bij,bij->b", D, D))
                rec += 1
            if i == steps:
                break
            # simultaneous update: both factors use the old values
            U = U + eta * dU
            V = V + eta * dV
            W = W + eta * GW
    return Trajectory(t=idx * eta, X=X_rec, error=err_rec, q_drift=drift_rec, time_to_tol=ttt,
                      final_error=np.where(alive, e, np.nan), diverged_at=div,
                      error_linear=errL_rec, time_to_tol_linear=tttL,
                      final_error_linear=np.where(alive, eW, np.nan))


# ---------------------------------------------------------------- exact gradient flow -----

# rtol near solve_ivp's floor (100 eps): over long horizons DOP853's global error at 1e-13 reached
# 3e-8 of ||Y|| (symmetric model, t = 100, a batch of 40; the closed form agrees with Radau to
# 2e-14 there); at 3e-14 it is 3e-9, measured at no extra cost on these and on Table 2's flows.
FLOW_RTOL = 3e-14
FLOW_ATOL = 1e-15


class _FlowSystem:
    """The stacked ODE of a batch: state = [U~, V~ (, W for the sigmoid baseline)] flattened."""

    def __init__(self, p: Problem):
        self.p = p
        self.shapes = [p.U0.shape]
        if p.V0 is not None:
            self.shapes.append(p.V0.shape)
        self.sig = p.model == "sigmoid"
        if self.sig:
            Bn, d = p.U0.shape[0], p.U0.shape[1]
            self.shapes.append((Bn, d, d))
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self._cache_key = None
        self._cache_val = None

    def pack(self, arrays) -> np.ndarray:
        return np.concatenate([a.ravel() for a in arrays])

    def unpack(self, y: np.ndarray):
        out, o = [], 0
        for s, n in zip(self.shapes, self.sizes):
            out.append(y[o:o + n].reshape(s))
            o += n
        return out

    def initial(self) -> np.ndarray:
        arrs = [self.p.U0] + ([self.p.V0] if self.p.V0 is not None else [])
        if self.sig:
            arrs.append(self.p.U0 @ self.p.V0.transpose(0, 2, 1))
        return self.pack(arrs)

    def factors(self, y):
        parts = self.unpack(y)
        U = parts[0]
        V = parts[1] if self.p.V0 is not None else None
        W = parts[2] if self.sig else None
        return U, V, W

    def rhs(self, t, y):
        U, V, W = self.factors(y)
        _, _, dU, dV = _residual_and_grads(self.p, U, V)
        out = [dU] + ([dV] if dV is not None else [])
        if self.sig:
            out.append(_sigmoid_grad(self.p, W)[0])
        return self.pack(out)

    def evaluate(self, y):
        """(U, V, X, e, e_linear) at state y; e_linear None unless sigmoid."""
        U, V, W = self.factors(y)
        X, r2, _, _ = _residual_and_grads(self.p, U, V)
        e = np.sqrt(r2) / self.p.y_norm
        eW = np.sqrt(_sigmoid_grad(self.p, W)[1]) / self.p.y_norm if self.sig else None
        return U, V, X, e, eW

    def errors(self, t, y):
        """(e, e_linear) of every point; cached because solve_ivp calls each event separately."""
        key = (t, y.ctypes.data, y[0], y[-1])
        if key != self._cache_key:
            self._cache_key, self._cache_val = key, self.evaluate(y)[3:]
        return self._cache_val


def _tol_event(system: _FlowSystem, b: int, tol: float, linear: bool):
    def event(t, y):
        e, eW = system.errors(t, y)
        return (eW if linear else e)[b] - tol
    event.direction = -1
    return event


def run_flow(p: Problem, eta: float, steps: int, record_every: int, tol: float) -> Trajectory:
    """The exact gradient flow on [0, eta*steps] (DOP853, rtol FLOW_RTOL), the batch stacked in one
    state vector. time_to_tol is a solver event per point (the crossing e(t) = tol, located on
    the dense output). If the stacked solve fails, points are re-run one by one to isolate the
    bad ones, which are reported as diverged."""
    try:
        return _run_flow_stacked(p, eta, steps, record_every, tol)
    except FloatingPointError:
        pass
    parts = []
    for b in range(p.batch):
        sub = Problem(model=p.model, Y=p.Y[b:b + 1], U0=p.U0[b:b + 1],
                      V0=None if p.V0 is None else p.V0[b:b + 1],
                      A=None if p.A is None else p.A[b:b + 1], y_norm=p.y_norm[b:b + 1])
        try:
            parts.append(_run_flow_stacked(sub, eta, steps, record_every, tol))
        except FloatingPointError as exc:
            parts.append(_diverged_trajectory(sub, eta, steps, record_every, int(exc.args[1])))
    return _concat(parts)


def _run_flow_stacked(p: Problem, eta, steps, record_every, tol) -> Trajectory:
    sysm = _FlowSystem(p)
    Bn = p.batch
    idx = record_grid(eta, steps, record_every)
    t_rec = idx * eta
    t_end = eta * steps
    t_eval = t_rec if idx[-1] == steps else np.append(t_rec, t_end)
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    events = [_tol_event(sysm, b, tol[b], False) for b in range(Bn)]
    if sysm.sig:
        events += [_tol_event(sysm, b, tol[b], True) for b in range(Bn)]
    y0 = sysm.initial()
    with np.errstate(all="ignore"):
        sol = solve_ivp(sysm.rhs, (0.0, t_end), y0, method="DOP853", t_eval=t_eval,
                        rtol=FLOW_RTOL, atol=FLOW_ATOL, events=events)
    ok = sol.status == 0 and np.all(np.isfinite(sol.y))
    ys = sol.y.T                                          # (T', state)
    errs = []
    with np.errstate(all="ignore"):
        for j in range(ys.shape[0]):
            U, V, X, e, eW = sysm.evaluate(ys[j])
            errs.append((X, e, eW, None if V is None else _gram_diff(U, V)))
    bad = [j for j, x in enumerate(errs)
           if not (np.all(x[1] < DIVERGENCE_ERROR)
                   and (not sysm.sig or np.all(x[2] < DIVERGENCE_ERROR)))]
    if bad or not ok:
        # the first sampled time with a bad value, else where the solver stopped
        t_fail = sol.t[bad[0]] if bad else (sol.t[-1] if len(sol.t) else 0.0)
        raise FloatingPointError("flow failed", int(np.floor(t_fail / eta + 1e-9)))
    T = len(idx)
    X_rec = np.stack([x[0] for x in errs[:T]], axis=1)
    err_rec = np.stack([x[1] for x in errs[:T]], axis=1)
    drift = None
    if p.V0 is not None:
        Q0 = _gram_diff(p.U0, p.V0)
        D = np.stack([x[3] for x in errs[:T]], axis=1) - Q0[:, None]
        drift = np.sqrt(np.einsum("btij,btij->bt", D, D))

    def first_event(j0, e0):
        out = np.full(Bn, np.nan)
        for b in range(Bn):
            if e0[b] <= tol[b]:
                out[b] = 0.0
            elif len(sol.t_events[j0 + b]):
                out[b] = float(sol.t_events[j0 + b][0])
        return out

    ttt = first_event(0, errs[0][1])
    U_T, V_T, _ = sysm.factors(ys[-1])
    tr = Trajectory(t=t_rec, X=X_rec, error=err_rec, q_drift=drift, time_to_tol=ttt,
                    final_error=errs[-1][1], diverged_at=np.full(Bn, -1, dtype=np.int64),
                    U_final=U_T.copy(), V_final=None if V_T is None else V_T.copy())
    if sysm.sig:
        tr.error_linear = np.stack([x[2] for x in errs[:T]], axis=1)
        tr.time_to_tol_linear = first_event(Bn, errs[0][2])
        tr.final_error_linear = errs[-1][2]
    return tr


def _diverged_trajectory(p: Problem, eta, steps, record_every, at: int) -> Trajectory:
    idx = record_grid(eta, steps, record_every)
    Bn, T = p.batch, len(idx)
    m = p.U0.shape[1]
    n = m if p.V0 is None else p.V0.shape[1]
    tr = Trajectory(t=idx * eta, X=np.zeros((Bn, T, m, n)), error=np.full((Bn, T), np.nan),
                    q_drift=None if p.V0 is None else np.full((Bn, T), np.nan),
                    time_to_tol=np.full(Bn, np.nan), final_error=np.full(Bn, np.nan),
                    diverged_at=np.full(Bn, max(at, 0), dtype=np.int64),
                    U_final=np.zeros_like(p.U0), V_final=None if p.V0 is None else np.zeros_like(p.V0))
    if p.model == "sigmoid":
        tr.error_linear = np.full((Bn, T), np.nan)
        tr.time_to_tol_linear = np.full(Bn, np.nan)
        tr.final_error_linear = np.full(Bn, np.nan)
    return tr


def _concat(parts: list[Trajectory]) -> Trajectory:
    def cat(name):
        vals = [getattr(t, name) for t in parts]
        return None if vals[0] is None else np.concatenate(vals, axis=0)
    return Trajectory(t=parts[0].t, X=cat("X"), error=cat("error"), q_drift=cat("q_drift"),
                      time_to_tol=cat("time_to_tol"), final_error=cat("final_error"),
                      diverged_at=cat("diverged_at"), error_linear=cat("error_linear"),
                      time_to_tol_linear=cat("time_to_tol_linear"),
                      final_error_linear=cat("final_error_linear"),
                      U_final=None if any(t.U_final is None for t in parts) else cat("U_final"),
                      V_final=None if any(t.V_final is None for t in parts) else cat("V_final"))
