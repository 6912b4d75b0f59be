"""Gradient descent of the sigmoid model, with its one-layer baseline W simulated by the same steps."""

from __future__ import annotations

import numpy as np

from ..types import FloatArray
from .base import (
    DIVERGENCE_ERROR,
    Problem,
    Trajectory,
    gram_diff,
    record_grid,
    residual_and_grads,
    sigmoid_grad,
)


def run_gd_sigmoid(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
    """The sigmoid model through `residual_and_grads`, with its one-layer baseline W (started at
    U0 V0^T) simulated by the same steps. Once every point has diverged the loop stops
    (`iterations`); the records it would have added are written directly."""
    Bn = p.batch
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    if p.V0 is None:
        raise ValueError("V0: the sigmoid model has two factors, got None")
    U = p.U0.copy()
    V = p.V0.copy()
    W = U @ V.transpose(0, 2, 1)
    ynorm = p.y_norm
    X_rec = np.zeros((Bn, T, U.shape[1], V.shape[1]))
    err_rec = np.full((Bn, T), np.nan)
    errL_rec = np.full((Bn, T), np.nan)
    drift_rec = np.zeros((Bn, T))
    Q0 = gram_diff(U, V)
    ttt = np.full(Bn, np.nan)
    tttL = np.full(Bn, np.nan)
    div = np.full(Bn, -1, dtype=np.int64)
    alive = np.ones(Bn, dtype=bool)
    iterations = np.full(Bn, steps, dtype=np.int64)
    rec = 0
    with np.errstate(all="ignore"):
        for i in range(steps + 1):
            X, r2, dU, dV = residual_and_grads(p, U, V)
            assert dV is not None  # two factors: dV is an array
            e = np.sqrt(r2) / ynorm
            GW, rW2 = sigmoid_grad(p, W)
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
                D = gram_diff(U, V) - Q0
                drift_rec[:, rec] = np.sqrt(np.einsum("bij,bij->b", D, D))
                rec += 1
            if i == steps:
                break
            if not alive.any():  # every point diverged: what is left is fixed
                # (factors zero: X = 0, errors NaN, Q - Q0 = -Q0 as the loop would record)
                drift_rec[:, rec:] = np.sqrt(np.einsum("bij,bij->b", Q0, Q0))[:, None]
                iterations[:] = i
                break
            # simultaneous update: both factors use the old values
            U = U + eta * dU
            V = V + eta * dV
            W = W + eta * GW
    return Trajectory(
        t=(idx * eta).astype(np.float64, copy=False),
        X=X_rec,
        error=err_rec,
        q_drift=drift_rec,
        time_to_tol=ttt,
        final_error=np.where(alive, e, np.nan),
        diverged_at=div,
        error_linear=errL_rec,
        time_to_tol_linear=tttL,
        final_error_linear=np.where(alive, eW, np.nan),
        iterations=iterations,
    )
