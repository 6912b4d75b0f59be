"""Gradient descent of the linear models (asymmetric U V^T, symmetric U U^T) in reduced coordinates.

The hot loop: explicit Euler on the stacked batch, with divergence, time to tol and the stop at
machine precision decided on a window of squared residuals."""

from __future__ import annotations

import numpy as np

from ..compiled import compiled_module, required_module
from ..types import BoolArray, FloatArray, IntArray
from .base import DIVERGENCE_ERROR, Problem, Trajectory, record_grid

# Steps between divergence/tolerance checks of the squared residuals kept in a small window.
_WINDOW = 64
# A gd point whose relative error has stayed below FREEZE_ERROR for FREEZE_STEPS iterations after
# it reached its tol has converged to machine precision (X = Y up to rounding): it stops being
# iterated and its later records repeat that state. The exact iterates would move X by about that
# error at most (they converge to Y), no more than the rounding noise further steps would add;
# the batch shrinks, so points that converge early stop costing (1/3 of Fig. 1's points at s = 1).
FREEZE_ERROR = 1e-14
FREEZE_STEPS = 64

_GD_FUSED = "flowsweep.core.dynamics._gd_fused"


def compiled_available() -> bool:
    """Whether the compiled gd loop runs (compiled.USE_COMPILED and numba importable)."""
    return compiled_module(_GD_FUSED) is not None


class _GdBuffers:
    """Work arrays of the gd loop for the points still being iterated (rows of W = [Uc | Vc])."""

    def __init__(self, W: FloatArray, sY: FloatArray, m: int, sym: bool) -> None:
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
        self.X = np.empty((Bn, m, n))  # s X
        self.R = np.empty((Bn, m, n))  # s R = s (Y - X)
        self.Rt = np.empty((Bn, n, m))
        self.R_flat = self.R.reshape(Bn, m * n)

    def residual(self, r2_out: FloatArray) -> None:
        np.matmul(self.UcT, self.Vc, out=self.X)
        np.subtract(self.sY, self.X, out=self.R)
        np.vecdot(self.R_flat, self.R_flat, out=r2_out)

    def update(self) -> None:
        if self.sym:  # U += 2 eta R U <=> Uc += Uc (sR), R = R^T
            np.matmul(self.Vc, self.R, out=self.dUc)
            self.W += self.dW
            np.copyto(self.Vc, self.W)
        else:  # both factors use the old values
            np.copyto(self.Rt, self.R.transpose(0, 2, 1))
            np.matmul(self.Vc, self.Rt, out=self.dUc)
            np.matmul(self.Uc, self.R, out=self.dVc)
            self.W += self.dW

    def zero(self, rows: BoolArray) -> None:
        """A diverged point: factors and end-to-end map set to zero (recorded as such)."""
        self.W[rows] = 0.0
        if self.sym:
            self.Vc[rows] = 0.0
        self.X[rows] = 0.0
        self.R[rows] = 0.0

    def subset(self, keep: BoolArray) -> _GdBuffers:
        """The buffers of the rows `keep`, mid-step: X and R of this step come along."""
        out = _GdBuffers(self.W[keep], self.sY[keep], self.m, self.sym)
        out.X[...] = self.X[keep]
        out.R[...] = self.R[keep]
        return out


def run_gd_linear(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
    """gd of the linear models: the compiled loop (`_gd_fused`, numba) for the asymmetric model
    when numba is installed and USE_COMPILED, else the numpy loop (`run_gd_linear_numpy`); both
    give the same trajectory up to rounding (tests/core/test_gd_fused.py)."""
    if p.model == "asymmetric" and compiled_available():
        return _run_gd_fused(p, eta, steps, record_every, tol)
    return run_gd_linear_numpy(p, eta, steps, record_every, tol)


def run_gd_linear_numpy(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
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
    tol2 = (tol * ynorm * s) ** 2  # thresholds on ||sR||^2, per row of the batch
    thr2 = (DIVERGENCE_ERROR * ynorm * s) ** 2
    frz2 = (FREEZE_ERROR * ynorm * s) ** 2
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    m, r = p.U0.shape[1], p.U0.shape[2]
    V0 = None if sym else p.V0
    if not sym and V0 is None:
        raise ValueError(f"V0: the {p.model} model has two factors, got None")
    n = m if V0 is None else V0.shape[1]
    W = np.empty((Bn, r, m if sym else m + n))
    np.multiply(p.U0.transpose(0, 2, 1), np.sqrt(s), out=W[:, :, :m])
    if V0 is not None:
        np.multiply(V0.transpose(0, 2, 1), np.sqrt(s), out=W[:, :, m:])
    buf = _GdBuffers(W, s * p.Y, m, sym)
    drift = None if sym else _QDrift(W, m)
    # records are written time-major (one block per record) and transposed at the end
    X_rec = np.empty((T, Bn, m, n))
    r2_rec = np.empty((T, Bn))
    drift2_rec = np.empty((T, Bn))  # left unwritten for symmetric (no Q)
    r2_final = np.empty(Bn)
    ttt = np.full(Bn, np.nan)
    div = np.full(Bn, -1, dtype=np.int64)
    act = np.arange(Bn)  # the point of each row of the batch
    below = np.zeros(Bn, dtype=np.int64)  # steps in a row with e <= FREEZE_ERROR
    iterations = np.full(Bn, steps, dtype=np.int64)
    W_final = np.zeros_like(W)
    win = np.empty((_WINDOW, Bn))
    w = 0
    rec = 0
    with np.errstate(all="ignore"):
        for i in range(steps + 1):
            buf.residual(win[w, : len(act)])
            w += 1
            is_rec = rec < T and idx[rec] == i
            if not (w == _WINDOW or is_rec or i == steps):
                buf.update()
                continue
            r2 = win[:w, : len(act)]
            it0 = i - w + 1
            bad = ~(r2 <= thr2)  # catches nan and inf too
            # numpy's stubs type any(axis=) as "scalar or array"; of a 2-D array it is an array
            gone: BoolArray = bad.any(axis=0)  # type: ignore[assignment]
            if gone.any():
                div[act[gone]] = it0 + np.argmax(bad, axis=0)[gone]
                buf.zero(gone)
            hit = r2 <= tol2
            if hit.any():
                first_hit = np.argmax(hit, axis=0)
                take = np.isnan(ttt[act]) & hit.any(axis=0) & ((div[act] < 0) | (it0 + first_hit < div[act]))
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
            if gone.any():  # leave the batch; later records repeat the state
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
    W_out = W_final.transpose(0, 2, 1)  # back from the transposed factors
    return _trajectory(
        idx,
        eta,
        s,
        ynorm,
        X_rec.transpose(1, 0, 2, 3),
        r2_rec.T,
        None if sym else drift2_rec.T,
        r2_final,
        ttt,
        div,
        iterations,
        W_out[:, :m],
        None if sym else W_out[:, m:],
    )


def _trajectory(
    idx: IntArray,
    eta: float,
    s: float,
    ynorm: FloatArray,
    sX_rec: FloatArray,
    r2_rec: FloatArray,
    drift2_rec: FloatArray | None,
    r2_final: FloatArray,
    ttt: FloatArray,
    div: IntArray,
    iterations: IntArray,
    sU_final: FloatArray,
    sV_final: FloatArray | None,
) -> Trajectory:
    """The Trajectory from what a gd loop recorded in its scaled coordinates (s X, ||s R||^2,
    ||s (Q - Q0)||^2, sqrt(s)-scaled factors), point-major: (B, T, ...). sX_rec is the caller's
    and is overwritten (by X)."""
    # a point is recorded as NaN from the iteration where it diverged on
    cut = (div[:, None] >= 0) & (idx[None, :] >= div[:, None])
    err_rec = np.where(cut, np.nan, np.sqrt(r2_rec) / (s * ynorm[:, None]))
    final = np.where(div >= 0, np.nan, np.sqrt(r2_final) / (s * ynorm))
    # X = sX / s in place where the records are already point-major (the compiled loop's): a
    # second array of their size costs its page faults again (~1 ms at Fig. 1's 96 points)
    X_out = sX_rec if sX_rec.flags.c_contiguous else np.empty(sX_rec.shape)
    np.divide(sX_rec, s, out=X_out)
    root = np.sqrt(s)
    return Trajectory(
        t=(idx * eta).astype(np.float64, copy=False),
        X=X_out,
        error=err_rec,
        time_to_tol=ttt,
        final_error=final,
        diverged_at=div,
        q_drift=None if drift2_rec is None else np.sqrt(drift2_rec) / s,
        iterations=iterations,
        U_final=sU_final / root,
        V_final=None if sV_final is None else sV_final / root,
    )


def _run_gd_fused(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
    """The asymmetric model's gd loop compiled (numba, `_gd_fused.gd_fused`): the same scaled
    coordinates, thresholds and records as the numpy loop, every step fused into one pass over
    LANES points at a time (the batch in the SIMD lanes)."""
    if p.V0 is None:
        raise ValueError(f"V0: the {p.model} model has two factors, got None")
    Bn = p.batch
    s = eta
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    ynorm = p.y_norm
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    m, r = p.U0.shape[1], p.U0.shape[2]
    n = p.V0.shape[1]
    root = np.sqrt(s)
    X_rec = np.empty((Bn, T, m, n))
    r2_rec = np.empty((Bn, T))
    drift2_rec = np.empty((Bn, T))
    r2_final = np.empty(Bn)
    U_final = np.empty((Bn, m, r))
    V_final = np.empty((Bn, n, r))
    ttt = np.full(Bn, np.nan)
    div = np.full(Bn, -1, dtype=np.int64)
    iterations = np.full(Bn, steps, dtype=np.int64)
    kernel = required_module(_GD_FUSED, "the compiled gd loop")
    with np.errstate(all="ignore"):
        kernel.gd_fused(
            np.ascontiguousarray(p.U0 * root),
            np.ascontiguousarray(p.V0 * root),
            np.ascontiguousarray(s * p.Y),
            np.ascontiguousarray((tol * ynorm * s) ** 2),
            np.ascontiguousarray((DIVERGENCE_ERROR * ynorm * s) ** 2),
            np.ascontiguousarray((FREEZE_ERROR * ynorm * s) ** 2),
            float(eta),
            int(steps),
            int(record_every),
            _WINDOW,
            FREEZE_STEPS,
            min(record_every, _WINDOW),
            _queue_order(p.U0, p.V0, ynorm),
            X_rec,
            r2_rec,
            drift2_rec,
            r2_final,
            U_final,
            V_final,
            ttt,
            div,
            iterations,
        )
    return _trajectory(idx, eta, s, ynorm, X_rec, r2_rec, drift2_rec, r2_final, ttt, div, iterations, U_final, V_final)


def _queue_order(U0: FloatArray, V0: FloatArray, y_norm: FloatArray) -> IntArray:
    """The order in which the compiled loop's lanes take the points: the longest runs first, so
    that the last ones to start (the lanes' tail, where some lanes idle) are short. A guess: a
    point stops early (FREEZE_ERROR) when it reaches Y fast, and gd escapes the small start
    (X = 0 is a saddle) in a time that grows as log(||Y|| / size of the start); so points queue
    by that size relative to ||Y||, smallest first. Only the lanes' use depends on the order,
    not what any point computes."""
    start = np.sqrt(np.einsum("bij,bij->b", U0, U0) + np.einsum("bij,bij->b", V0, V0))
    return np.argsort(start / np.maximum(y_norm, 1e-300), kind="stable").astype(np.int64)


class _QDrift:
    """||Q - Q0||_F of Q = U^T U - V^T V from W = [Uc | Vc] (Q = W J W^T, J = diag(I_m, -I_n)),
    into preallocated buffers (fresh temporaries of this size cost more than the product)."""

    def __init__(self, W: FloatArray, m: int, Q0: FloatArray | None = None) -> None:
        Bn, r, mn = W.shape
        self.m = m
        self.J = np.where(np.arange(mn) < m, 1.0, -1.0)
        self.WJ = np.empty_like(W)
        self.Wt = np.empty((Bn, mn, r))
        self.Q = np.empty((Bn, r, r))
        self.Q_flat = self.Q.reshape(Bn, r * r)
        self.Q0 = self.gram(W).copy() if Q0 is None else Q0

    def gram(self, W: FloatArray) -> FloatArray:
        np.multiply(W, self.J, out=self.WJ)
        np.copyto(self.Wt, W.transpose(0, 2, 1))
        np.matmul(self.WJ, self.Wt, out=self.Q)
        return self.Q

    def squared_norm(self, W: FloatArray, out: FloatArray | None = None) -> FloatArray:
        Q = self.gram(W)
        Q -= self.Q0
        return np.vecdot(self.Q_flat, self.Q_flat, out=out)

    def subset(self, keep: BoolArray, W: FloatArray) -> _QDrift:
        """For the rows `keep`, whose factors are now W (their Q0 stays the one they started from)."""
        return _QDrift(W, self.m, Q0=self.Q0[keep])
