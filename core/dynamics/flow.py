"""The exact gradient flow by DOP853: the asymmetric model compiled (numba, `_flow_dop853`: every
point with its own step sizes), else scipy's DOP853 on the batch stacked in one state vector."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.integrate import DOP853
from scipy.optimize import brentq

from ..compiled import compiled_module, required_module
from ..types import FloatArray, IntArray
from .base import (
    DIVERGENCE_ERROR,
    FlowDiverged,
    Problem,
    Trajectory,
    gram_diff,
    record_grid,
    residual_and_grads,
    sigmoid_grad,
)

# rtol near solve_ivp's floor (100 eps): over long horizons DOP853's global error at 1e-13 reached
# 3e-8 of ||Y|| (symmetric model, t = 100, a batch of 40; the closed form agrees with Radau to
# 2e-14 there); at 3e-14 it is 3e-9, measured at no extra cost on these and on Table 2's flows.
FLOW_RTOL = 3e-14
FLOW_ATOL = 1e-15


class _FlowSystem:
    """The stacked ODE of a batch: state = [U~, V~ (, W for the sigmoid baseline)] flattened."""

    def __init__(self, p: Problem):
        self.p = p
        self.shapes: list[tuple[int, ...]] = [p.U0.shape]
        if p.V0 is not None:
            self.shapes.append(p.V0.shape)
        self.sig = p.model == "sigmoid"
        if self.sig:
            Bn, d = p.U0.shape[0], p.U0.shape[1]
            self.shapes.append((Bn, d, d))
        self.sizes = [int(np.prod(s)) for s in self.shapes]

    def pack(self, arrays: list[FloatArray]) -> FloatArray:
        return np.concatenate([a.ravel() for a in arrays])

    def unpack(self, y: FloatArray) -> list[FloatArray]:
        out: list[FloatArray] = []
        o = 0
        for s, n in zip(self.shapes, self.sizes):
            out.append(y[o : o + n].reshape(s))
            o += n
        return out

    def initial(self) -> FloatArray:
        V0 = self.p.V0
        arrs = [self.p.U0] + ([V0] if V0 is not None else [])
        if self.sig and V0 is not None:  # (the sigmoid model always has V0)
            arrs.append(self.p.U0 @ V0.transpose(0, 2, 1))
        return self.pack(arrs)

    def factors(self, y: FloatArray) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
        parts = self.unpack(y)
        U = parts[0]
        V = parts[1] if self.p.V0 is not None else None
        W = parts[2] if self.sig else None
        return U, V, W

    def rhs(self, t: float, y: FloatArray) -> FloatArray:
        U, V, W = self.factors(y)
        _, _, dU, dV = residual_and_grads(self.p, U, V)
        out = [dU] + ([dV] if dV is not None else [])
        if W is not None:  # sigmoid: the baseline's W
            out.append(sigmoid_grad(self.p, W)[0])
        return self.pack(out)

    def evaluate(
        self, y: FloatArray
    ) -> tuple[FloatArray, FloatArray | None, FloatArray, FloatArray, FloatArray | None]:
        """(U, V, X, e, e_linear) at state y; e_linear None unless sigmoid."""
        U, V, W = self.factors(y)
        X, r2, _, _ = residual_and_grads(self.p, U, V)
        e: FloatArray = np.sqrt(r2) / self.p.y_norm
        eW: FloatArray | None = None if W is None else np.sqrt(sigmoid_grad(self.p, W)[1]) / self.p.y_norm
        return U, V, X, e, eW

    def crossings(self, y: FloatArray, tol: FloatArray) -> FloatArray:
        """e - tol (and e_linear - tol for sigmoid) of every point at state y, (S, B)."""
        _, _, _, e, eW = self.evaluate(y)
        return np.stack([e - tol] if eW is None else [e - tol, eW - tol])


# brentq's tolerances in solve_ivp's event location (scipy.integrate._ivp.ivp.solve_event_equation)
_EVENT_XTOL = 4 * np.finfo(float).eps


def _solve(
    sysm: _FlowSystem, y0: FloatArray, t_end: float, t_eval: FloatArray, tol: FloatArray
) -> tuple[int, FloatArray, FloatArray, FloatArray]:
    """DOP853 stepped as solve_ivp(method="DOP853", t_eval=t_eval, events=...) steps it, with the
    events "e_b(t) = tol_b, falling" of all points checked at once at each step end (one
    evaluation of the batch instead of one call per point) and the first crossing of each located
    on the step's dense output by brentq, as solve_ivp does. Returns (status, t samples, states
    (state, T'), first crossing per point (S, B), NaN where none)."""
    solver = DOP853(sysm.rhs, 0.0, y0, t_end, rtol=FLOW_RTOL, atol=FLOW_ATOL)
    g = sysm.crossings(y0, tol)
    first = np.full(g.shape, np.nan)
    ts: list[FloatArray] = []
    ys: list[FloatArray] = []
    t_eval_i = 0
    status: int | None = None
    while status is None:
        solver.step()
        if solver.status == "finished":
            status = 0
        elif solver.status == "failed":
            status = -1
            break
        t_old, t, y = solver.t_old, solver.t, solver.y
        sol = None
        g_new = sysm.crossings(y, tol)
        down = (g >= 0) & (g_new <= 0) & np.isnan(first)
        if down.any():
            sol = solver.dense_output()
            for k, b in zip(*np.nonzero(down)):
                first[k, b] = brentq(
                    lambda tt, k=k, b=b, sol=sol: sysm.crossings(sol(tt), tol)[k, b],
                    t_old,
                    t,
                    xtol=_EVENT_XTOL,
                    rtol=_EVENT_XTOL,
                )
        g = g_new
        t_eval_i_new = np.searchsorted(t_eval, t, side="right")
        if t_eval_i_new > t_eval_i:
            if sol is None:
                sol = solver.dense_output()
            ts.append(t_eval[t_eval_i:t_eval_i_new])
            ys.append(sol(t_eval[t_eval_i:t_eval_i_new]))
            t_eval_i = t_eval_i_new
    assert status is not None  # the loop ends only once it is set
    if not ts:
        return status, np.empty(0), np.empty((len(y0), 0)), first
    return status, np.hstack(ts), np.hstack(ys), first


_FLOW_KERNEL = "flowsweep.core.dynamics._flow_dop853"


def compiled_available() -> bool:
    """Whether the asymmetric flow runs compiled (compiled.USE_COMPILED and numba importable)."""
    return compiled_module(_FLOW_KERNEL) is not None


def run_flow(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
    """The exact gradient flow on [0, eta*steps] (DOP853, rtol FLOW_RTOL). time_to_tol is an event
    per point (the first crossing e(t) = tol, located on the dense output). The asymmetric model
    runs compiled where numba is (`_run_flow_compiled`, each point alone); otherwise the batch is
    stacked in one state vector and, if that solve fails, points are re-run one by one to isolate
    the bad ones, which are reported as diverged."""
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (p.batch,))
    if p.model == "asymmetric" and steps > 0 and compiled_available():
        return _run_flow_compiled(p, eta, steps, record_every, tol)
    try:
        return _run_flow_stacked(p, eta, steps, record_every, tol)
    except FlowDiverged:
        pass
    parts: list[Trajectory] = []
    for b in range(p.batch):
        sub = Problem(
            model=p.model,
            Y=p.Y[b : b + 1],
            U0=p.U0[b : b + 1],
            V0=None if p.V0 is None else p.V0[b : b + 1],
            A=None if p.A is None else p.A[b : b + 1],
            y_norm=p.y_norm[b : b + 1],
        )
        try:
            parts.append(_run_flow_stacked(sub, eta, steps, record_every, tol[b : b + 1]))
        except FlowDiverged as exc:
            parts.append(_diverged_trajectory(sub, eta, steps, record_every, exc.iteration))
    return _concat(parts)


def _run_flow_stacked(p: Problem, eta: float, steps: int, record_every: int, tol: float | FloatArray) -> Trajectory:
    sysm = _FlowSystem(p)
    Bn = p.batch
    idx = record_grid(eta, steps, record_every)
    t_rec = (idx * eta).astype(np.float64, copy=False)
    t_end = eta * steps
    t_eval = t_rec if idx[-1] == steps else np.append(t_rec, t_end)
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    y0 = sysm.initial()
    with np.errstate(all="ignore"):
        status, sol_t, sol_y, first = _solve(sysm, y0, t_end, t_eval, tol)
    ok = status == 0 and np.all(np.isfinite(sol_y))
    ys = sol_y.T  # (T', state)
    # per sampled time: X, e, e_linear (sigmoid only) and Q = U^T U - V^T V (two factors only)
    Xs: list[FloatArray] = []
    es: list[FloatArray] = []
    eWs: list[FloatArray] = []
    grams: list[FloatArray] = []
    with np.errstate(all="ignore"):
        for j in range(ys.shape[0]):
            U, V, X, e, eW = sysm.evaluate(ys[j])
            Xs.append(X)
            es.append(e)
            if eW is not None:
                eWs.append(eW)
            if V is not None:
                grams.append(gram_diff(U, V))
    bad = [
        j
        for j in range(len(es))
        if not (np.all(es[j] < DIVERGENCE_ERROR) and (not sysm.sig or np.all(eWs[j] < DIVERGENCE_ERROR)))
    ]
    if bad or not ok:
        # the first sampled time with a bad value, else where the solver stopped
        t_fail = sol_t[bad[0]] if bad else (sol_t[-1] if len(sol_t) else 0.0)
        raise FlowDiverged(int(np.floor(t_fail / eta + 1e-9)), float(t_fail))
    T = len(idx)
    X_rec = np.stack(Xs[:T], axis=1)
    err_rec = np.stack(es[:T], axis=1)
    drift: FloatArray | None = None
    if p.V0 is not None:
        Q0 = gram_diff(p.U0, p.V0)
        D = np.stack(grams[:T], axis=1) - Q0[:, None]
        drift = np.sqrt(np.einsum("btij,btij->bt", D, D))

    def first_event(k: int, e0: FloatArray) -> FloatArray:
        ttt_k: FloatArray = np.where(e0 <= tol, 0.0, first[k])
        return ttt_k

    ttt = first_event(0, es[0])
    U_T, V_T, _ = sysm.factors(ys[-1])
    tr = Trajectory(
        t=t_rec,
        X=X_rec,
        error=err_rec,
        q_drift=drift,
        time_to_tol=ttt,
        final_error=es[-1],
        diverged_at=np.full(Bn, -1, dtype=np.int64),
        U_final=U_T.copy(),
        V_final=None if V_T is None else V_T.copy(),
    )
    if sysm.sig:
        tr.error_linear = np.stack(eWs[:T], axis=1)
        tr.time_to_tol_linear = first_event(1, eWs[0])
        tr.final_error_linear = eWs[-1]
    return tr


class _CompiledSolve(NamedTuple):
    """What `_flow_dop853.flow_dop853` returns per point (see there)."""

    rec: FloatArray  # (B, T', state) states sampled on t_eval
    n_rec: IntArray  # (B,) samples taken
    status: IntArray  # (B,) 0 reached the horizon, -1 step size too small
    cross: FloatArray  # (B, 2) (t_old, t) of the step of the first crossing, NaN if none
    cross_y: FloatArray  # (B, state) y_old of that step
    cross_F: FloatArray  # (B, 7, state) its dense output
    counts: IntArray  # (B, 3) accepted steps, rejected steps, right-hand side evaluations


def _solve_compiled(p: Problem, t_eval: FloatArray, tol: FloatArray) -> _CompiledSolve:
    """Every point of the asymmetric batch by the compiled DOP853 to t_eval[-1], alone."""
    V0 = p.V0
    if V0 is None:
        raise ValueError(f"V0: the {p.model} model has two factors, got None")
    kernel = required_module(_FLOW_KERNEL, "the compiled flow")
    Bn, m, r = p.U0.shape
    y0 = np.ascontiguousarray(np.concatenate([p.U0.reshape(Bn, -1), V0.reshape(Bn, -1)], axis=1))
    S = y0.shape[1]
    out = _CompiledSolve(
        rec=np.empty((Bn, len(t_eval), S)),
        n_rec=np.zeros(Bn, dtype=np.int64),
        status=np.full(Bn, -1, dtype=np.int64),
        cross=np.full((Bn, 2), np.nan),
        cross_y=np.empty((Bn, S)),
        cross_F=np.empty((Bn, 7, S)),
        counts=np.zeros((Bn, 3), dtype=np.int64),
    )
    with np.errstate(all="ignore"):
        kernel.flow_dop853(
            y0,
            np.ascontiguousarray(p.Y),
            np.array(tol, dtype=float),
            np.array(p.y_norm, dtype=float),
            np.ascontiguousarray(t_eval, dtype=float),
            float(t_eval[-1]),
            FLOW_RTOL,
            FLOW_ATOL,
            m,
            V0.shape[1],
            r,
            *out,
        )
    for b in np.nonzero(out.n_rec < len(t_eval))[0]:  # failed: samples never taken
        out.rec[b, out.n_rec[b] :] = np.nan
    return out


def _run_flow_compiled(p: Problem, eta: float, steps: int, record_every: int, tol: FloatArray) -> Trajectory:
    """The asymmetric flow compiled (`_solve_compiled`): scipy's DOP853 with each point's own step
    sizes, the same records, events and divergence rule as the stacked solve, a failed or
    diverged point reported alone (no re-run)."""
    kernel = required_module(_FLOW_KERNEL, "the compiled flow")
    assert p.V0 is not None
    Bn, m, r = p.U0.shape
    n = p.V0.shape[1]
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    t_rec = (idx * eta).astype(np.float64, copy=False)
    t_eval = t_rec if idx[-1] == steps else np.append(t_rec, eta * steps)
    tol = np.array(tol, dtype=float)  # (one signature of the kernels: writable, contiguous)
    Y, y_norm = np.ascontiguousarray(p.Y), np.array(p.y_norm, dtype=float)
    sol = _solve_compiled(p, t_eval, tol)
    X_all = np.empty((Bn, len(t_eval), m, n))
    r2 = np.empty((Bn, len(t_eval)))
    drift2 = np.empty((Bn, len(t_eval)))
    with np.errstate(all="ignore"):
        kernel.record_values(sol.rec, Y, gram_diff(p.U0, p.V0), m, n, r, X_all, r2, drift2)
        crossing = np.empty(Bn)
        kernel.first_crossings(
            sol.cross, sol.cross_y, sol.cross_F, Y, y_norm, tol, m, n, r, _EVENT_XTOL, _EVENT_XTOL, crossing
        )
    e_all = np.sqrt(r2) / p.y_norm[:, None]
    ttt = np.where(e_all[:, 0] <= tol, 0.0, crossing)
    tr = Trajectory(
        t=t_rec,
        X=X_all[:, :T],
        error=e_all[:, :T],
        q_drift=np.sqrt(drift2[:, :T]),
        time_to_tol=ttt,
        final_error=e_all[:, -1],
        diverged_at=np.full(Bn, -1, dtype=np.int64),
        U_final=sol.rec[:, -1, : m * r].reshape(Bn, m, r).copy(),
        V_final=sol.rec[:, -1, m * r :].reshape(Bn, n, r).copy(),
    )
    for i in range(Bn):
        # the divergence rule of _run_flow_stacked, point by point
        bad = np.nonzero(~(e_all[i] < DIVERGENCE_ERROR))[0]
        if len(bad) or sol.status[i] != 0 or not np.all(np.isfinite(sol.rec[i])):
            t_fail = t_eval[bad[0]] if len(bad) else (t_eval[sol.n_rec[i] - 1] if sol.n_rec[i] else 0.0)
            _mark_diverged(tr, i, int(np.floor(t_fail / eta + 1e-9)))
    return tr


def _mark_diverged(tr: Trajectory, b: int, at: int) -> None:
    """Point b of tr diverged at iteration `at`: its records are lost (NaN), its factors zero."""
    tr.X[b] = 0.0
    tr.error[b] = np.nan
    if tr.q_drift is not None:
        tr.q_drift[b] = np.nan
    tr.time_to_tol[b] = np.nan
    tr.final_error[b] = np.nan
    tr.diverged_at[b] = max(at, 0)
    for name in ("U_final", "V_final"):
        f = getattr(tr, name)
        if f is not None:
            f[b] = 0.0
    for name in ("error_linear", "time_to_tol_linear", "final_error_linear"):
        f = getattr(tr, name)
        if f is not None:
            f[b] = np.nan


def _diverged_trajectory(p: Problem, eta: float, steps: int, record_every: int, at: int) -> Trajectory:
    idx = record_grid(eta, steps, record_every)
    Bn, T = p.batch, len(idx)
    m = p.U0.shape[1]
    n = m if p.V0 is None else p.V0.shape[1]
    tr = Trajectory(
        t=(idx * eta).astype(np.float64, copy=False),
        X=np.zeros((Bn, T, m, n)),
        error=np.full((Bn, T), np.nan),
        q_drift=None if p.V0 is None else np.full((Bn, T), np.nan),
        time_to_tol=np.full(Bn, np.nan),
        final_error=np.full(Bn, np.nan),
        diverged_at=np.full(Bn, max(at, 0), dtype=np.int64),
        U_final=np.zeros_like(p.U0),
        V_final=None if p.V0 is None else np.zeros_like(p.V0),
    )
    if p.model == "sigmoid":
        tr.error_linear = np.full((Bn, T), np.nan)
        tr.time_to_tol_linear = np.full(Bn, np.nan)
        tr.final_error_linear = np.full(Bn, np.nan)
    return tr


def _concat(parts: list[Trajectory]) -> Trajectory:
    def cat(name: str) -> FloatArray | None:
        vals = [getattr(t, name) for t in parts]
        return None if vals[0] is None else np.concatenate(vals, axis=0)

    def cat_all(name: str) -> FloatArray:  # a field every trajectory has
        return np.concatenate([getattr(t, name) for t in parts], axis=0)

    return Trajectory(
        t=parts[0].t,
        X=cat_all("X"),
        error=cat_all("error"),
        q_drift=cat("q_drift"),
        time_to_tol=cat_all("time_to_tol"),
        final_error=cat_all("final_error"),
        diverged_at=np.concatenate([t.diverged_at for t in parts], axis=0),
        error_linear=cat("error_linear"),
        time_to_tol_linear=cat("time_to_tol_linear"),
        final_error_linear=cat("final_error_linear"),
        U_final=None if any(t.U_final is None for t in parts) else cat("U_final"),
        V_final=None if any(t.V_final is None for t in parts) else cat("V_final"),
    )
