"""Per-point metrics and curves (SPEC §4) from a batch trajectory. Never NaN/inf: None instead."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from flowsweep.jsonsafe import finite_or_none as clean  # float/int or None; NaN and inf become None
from flowsweep.status import PointStatus

from .closed_forms import asymmetric_spectral, regularized_flow, riccati_symmetric_factor
from .data import spectral_factors
from .dynamics import Trajectory
from .fits import EXCITED_MODE, MIN_TAIL_POINTS, eta_stability_limit, rate_fit, rate_lin, rate_pred
from .lambda0_fit import lambda0_fit
from .linalg import stacked_eigh, stacked_eigvalsh
from .types import METRIC_FIELDS, CurveBlock, Curves, FloatArray, PointConfig

NOISE_FLOOR = {"gd": 1e-11, "flow": 1e-8}


def linear_error_curve(config: PointConfig, e0: float, t: np.ndarray) -> np.ndarray:
    """e(t) of the one-layer linear baseline from its closed form: gd e0 (1 - eta)^i, flow e0 e^{-t} (eq. (4))."""
    if config.integrator == "gd":
        i = np.rint(t / config.eta)
        gd: np.ndarray = e0 * np.exp(i * np.log1p(-config.eta))
        return gd
    flow: np.ndarray = e0 * np.exp(-t)
    return flow


def linear_time_to_tol(config: PointConfig, e0: float) -> float | None:
    """Exact first time the linear baseline reaches tol (exists past the horizon)."""
    tol, eta = config.tol, config.eta
    if e0 <= tol:
        return 0.0
    if config.integrator == "flow":
        return math.log(e0 / tol)
    q = math.log1p(-eta)  # log(1 - eta) < 0
    i = max(0, math.ceil(math.log(tol / e0) / q))
    while i > 0 and e0 * math.exp((i - 1) * q) <= tol:  # guard the rounding of the log ratio
        i -= 1
    while e0 * math.exp(i * q) > tol:
        i += 1
    return i * eta


def linear_times_to_tol(configs: Sequence[PointConfig], e0: FloatArray) -> FloatArray:
    """`linear_time_to_tol` of every point of a batch (one integrator and eta), on arrays: the
    candidate step from the log ratio, confirmed as the first with e0 (1 - eta)^i <= tol; points
    where a comparison lies within rounding of tol (np.exp and math.exp may differ in the last
    bit), or e0 is not finite, go through `linear_time_to_tol` itself."""
    c0 = configs[0]
    tol = np.array([c.tol for c in configs], dtype=float)
    with np.errstate(all="ignore"):
        done = e0 <= tol
        if c0.integrator == "flow":
            out = np.log(e0 / tol)
            redo = ~np.isfinite(e0)
        else:
            q = math.log1p(-c0.eta)
            i = np.maximum(0.0, np.ceil(np.log(tol / e0) / q))
            at, before = e0 * np.exp(i * q) / tol, e0 * np.exp((i - 1.0) * q) / tol
            first = (at <= 1.0) & ((i == 0.0) | (before > 1.0))
            near = (np.abs(at - 1.0) < 1e-12) | (np.abs(before - 1.0) < 1e-12)
            out = i * c0.eta
            redo = ~np.isfinite(e0) | (~done & (~first | near))
    out = np.where(done, 0.0, out)
    for b in np.flatnonzero(redo).tolist():
        value = linear_time_to_tol(configs[b], float(e0[b]))
        out[b] = np.nan if value is None else value
    return out


def psd_projection(Y: np.ndarray) -> np.ndarray:
    w, E = np.linalg.eigh(Y)
    out: np.ndarray = (E * np.maximum(w, 0.0)) @ E.T
    return out


def closed_form_trajectory(
    config: PointConfig,
    Y: FloatArray,
    U0: FloatArray,
    V0: FloatArray | None,
    t: FloatArray,
    X_reg: np.ndarray | None = None,
) -> np.ndarray | None:
    """X_cf(t) where one applies: symmetric (eq. (41)), asymmetric spectral (eq. (15)),
    asymmetric balanced with lambda0 = 0 (eq. (21), Q0 = 0 = lambda0 I). `X_reg`: X_reg(t; lambda0)
    of the config when the caller already has it (it is that closed form)."""
    if config.model == "symmetric":
        return riccati_symmetric_factor(Y, U0, t)
    if config.model != "asymmetric":
        return None
    if config.init == "spectral":
        Phi, sig, PsiT = np.linalg.svd(Y, full_matrices=False)
        u, v = spectral_factors(config.init_scale, config.lambda0)
        x = asymmetric_spectral(sig, np.full_like(sig, u * v), config.lambda0, t)  # (T, m)
        X_cf: np.ndarray = np.einsum("im,tm,mj->tij", Phi, x, PsiT)
        return X_cf
    if config.init == "balanced" and config.lambda0 == 0:
        if V0 is None:
            raise ValueError("closed_form_trajectory: the asymmetric model needs V0, got None")
        return regularized_flow(Y, U0, V0, 0.0, t).X if X_reg is None else X_reg
    return None


def point_metrics(
    config: PointConfig,
    Y: FloatArray,
    U0: FloatArray,
    V0: FloatArray | None,
    tr: Trajectory,
    b: int,
    singular_values: FloatArray,
    X_reg: np.ndarray | None = None,
) -> tuple[PointStatus, dict[str, Any], Curves]:
    """(status, metrics, curves) of point b of a batch trajectory. U0, V0 may be reduced factors.
    `X_reg`: X_reg(t; lambda0) of an asymmetric point when the caller computed it for its batch."""
    met: dict[str, Any] = {k: None for k in METRIC_FIELDS}
    t = tr.t
    ynorm = float(np.linalg.norm(Y))
    model = config.model
    sym = model == "symmetric"
    if V0 is None and not sym:
        raise ValueError(f"point_metrics: model {model} needs V0, got None")
    V: FloatArray = U0 if V0 is None else V0  # symmetric: X = U U^T
    X0 = U0 @ V.T
    if not sym:
        Q0 = U0.T @ U0 - V.T @ V
        met["q0_norm"] = float(np.linalg.norm(Q0))
    if config.integrator == "gd":
        met["eta_stability_limit"] = clean(eta_stability_limit(model, config.init, Y, U0, V0, config.lambda0))
    # one-layer baseline
    if model == "sigmoid":
        if tr.error_linear is None or tr.time_to_tol_linear is None or tr.final_error_linear is None:
            raise ValueError("point_metrics: a sigmoid trajectory needs its simulated linear baseline, got None")
        err_lin = tr.error_linear[b]
        met["time_to_tol_linear"] = clean(tr.time_to_tol_linear[b])
        met["final_error_linear"] = clean(tr.final_error_linear[b])
    else:
        e0 = float(np.linalg.norm(Y - X0)) / ynorm
        err_lin = linear_error_curve(config, e0, t)
        met["time_to_tol_linear"] = clean(linear_time_to_tol(config, e0))
        met["final_error_linear"] = clean(linear_error_curve(config, e0, np.array([config.eta * config.steps]))[0])
    div = int(tr.diverged_at[b])
    if div >= 0:  # a result, not a crash: keep what is known
        met["diverged_at"] = div
        met["time_to_tol"] = clean(tr.time_to_tol[b])
        keep = np.rint(t / config.eta) < div
        curves = Curves(
            t=t[keep], error=tr.error[b][keep], error_linear=err_lin[keep], singular_values=singular_values[keep]
        )
        return PointStatus.DIVERGED, met, curves

    X = tr.X[b]
    err = tr.error[b]
    met["final_error"] = clean(tr.final_error[b])
    met["time_to_tol"] = clean(tr.time_to_tol[b])
    if met["time_to_tol"] and met["time_to_tol_linear"] is not None:
        met["speedup"] = clean(met["time_to_tol_linear"] / met["time_to_tol"])
    # rate: the symmetric flow tends to the PSD projection of Y (Prop. 2), the others to Y
    floor = NOISE_FLOOR[config.integrator]
    if sym:
        resid = np.linalg.norm(X - psd_projection(Y), axis=(1, 2)) / ynorm
    else:
        resid = err
    met["rate_fit"] = clean(rate_fit(t, resid, floor).rate)
    if tr.q_drift is not None:  # relative to the size of the factors, not of Q0
        scale = float(np.sum(U0 * U0) + np.sum(V * V))
        met["conservation_drift"] = clean(np.max(tr.q_drift[b]) / max(scale, 1e-300))
    err_reg_fit = Xr = None
    lam_pred = None  # the lambda of a result that predicts the rate
    if model == "asymmetric":
        lam_pred = config.lambda0 if config.init == "spectral" else (0.0 if config.init == "balanced" else None)
        Xr = regularized_flow(Y, U0, V, config.lambda0, t).X if X_reg is None else X_reg
        D = Xr - X
        met["regularized_error"] = clean(np.sqrt(np.mean(np.einsum("tij,tij->t", D, D))) / ynorm)
        if config.fit_lambda0 and len(t) >= 2:  # X(0) alone fits every lambda0
            fit = lambda0_fit(Y, U0, V, t, X)
            met["lambda0_fit"] = clean(fit.lambda0)
            met["lambda0_fit_error"] = clean(fit.error)
            met["lambda0_fit_pos"], met["lambda0_fit_pos_error"] = clean(fit.pos.lambda0), clean(fit.pos.error)
            met["lambda0_fit_neg"], met["lambda0_fit_neg_error"] = clean(fit.neg.lambda0), clean(fit.neg.error)
            err_reg_fit = fit.error_curve
            if config.init == "gaussian":
                lam_pred = fit.lambda0
        if tr.U_final is not None and tr.V_final is not None:
            # the error's modes: judged on the last record still well above rounding
            above = np.nonzero(err > 1e-8)[0]
            j = int(above[-1]) if len(above) else len(t) - 1
            met["rate_lin"] = clean(rate_lin(tr.U_final[b], tr.V_final[b], Y - X[j]))
    met["rate_pred"] = clean(rate_pred(model, config.init, Y, lam_pred if model == "asymmetric" else 0.0, config.k))
    Xcf = closed_form_trajectory(config, Y, U0, V0, t, X_reg=Xr)
    if Xcf is not None:
        met["closed_form_error"] = clean(np.max(np.linalg.norm(Xcf - X, axis=(1, 2))) / ynorm)
    curves = Curves(
        t=t, error=err, error_linear=err_lin, singular_values=singular_values, error_regularized_fit=err_reg_fit
    )
    return PointStatus.DONE, met, curves


# ------------------------------------------------------------- a whole batch at once -----
# `point_metrics` above is the definition (and the reference of tests/core/test_batch_metrics.py);
# `batch_metrics` computes the same numbers for every point of a batch with stacked numpy calls
# (per-point Python costs more than a cheap point's simulation). Each stacked call does, matrix
# by matrix, what the per-point call does (same LAPACK/BLAS routine on the same operands, dot
# products through the same ddot): the values are the same, bit for bit where tested.


def _col(values: np.ndarray) -> list[float | None]:
    """A column of float metrics: NaN and +-inf become None (`clean` on every entry)."""
    if np.isfinite(values).all():  # the usual case: no per-entry check
        out: list[float | None] = values.tolist()
        return out
    return [v if math.isfinite(v) else None for v in values.tolist()]


def _norms(A: np.ndarray) -> np.ndarray:
    """||A[b]||_F of each matrix of a stack, as np.linalg.norm does it (sqrt of one ddot)."""
    flat = A.reshape(A.shape[0], -1)
    out: np.ndarray = np.sqrt(np.vecdot(flat, flat))
    return out


def _rate_fits(t: np.ndarray, r: np.ndarray, noise_floor: float) -> np.ndarray:
    """`fits.rate_fit(t, r[b], noise_floor).rate` of every row (NaN for None): rows with the same
    usable prefix share the tail, fitted in one stacked least-squares line."""
    B, T = r.shape
    out = np.full(B, np.nan)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(r) & (r > noise_floor)
    stop = np.where(good.all(axis=1), T, np.argmin(good, axis=1))
    for s in np.unique(stop[stop >= 2]).tolist():
        rows = np.flatnonzero(stop == s)
        t_mid = 0.5 * (t[0] + t[s - 1])
        sel = np.arange(s)[t[:s] >= t_mid]
        if len(sel) < MIN_TAIL_POINTS:
            continue
        ts = t[sel] - t[sel].mean()
        # contiguous rows: ddot's result depends on the stride, and rate_fit's rows are contiguous
        ys = np.log(np.ascontiguousarray(r[rows][:, sel]))
        out[rows] = -(np.vecdot(ys - ys.mean(axis=1, keepdims=True), ts) / float(ts @ ts))
    return out


def _rate_lins(U: np.ndarray, V: np.ndarray, E: np.ndarray) -> np.ndarray:
    """`fits.rate_lin(U[b], V[b], E[b])` of every point (NaN for None)."""
    alpha, A = stacked_eigh(U @ np.swapaxes(U, 1, 2), repeated_by_lapack=True)
    beta, Bm = stacked_eigh(V @ np.swapaxes(V, 1, 2), repeated_by_lapack=True)
    C = np.swapaxes(A, 1, 2) @ E @ Bm
    norm = _norms(E)
    ok = np.isfinite(norm) & (norm != 0.0)
    excited = np.abs(C) > EXCITED_MODE * norm[:, None, None]
    rates = np.where(excited, alpha[:, :, None] + beta[:, None, :], np.inf).min(axis=(1, 2))
    out: np.ndarray = np.where(ok & np.isfinite(rates), rates, np.nan)
    return out


def batch_metrics(
    configs: Sequence[PointConfig],
    Y: FloatArray,
    U0: FloatArray,
    V0: FloatArray | None,
    tr: Trajectory,
    singular_values: FloatArray,
    X_reg: FloatArray | None = None,
) -> tuple[list[PointStatus], dict[str, list[Any]], CurveBlock]:
    """`point_metrics` of every point of a batch (configs sharing one shape key, stacked Y and
    reduced U0, V0 as simulated, `singular_values` (B, T, r)): (statuses, metric columns with
    every METRIC_FIELDS name, the curves as one CurveBlock). `X_reg`: X_reg(t; lambda0) (B, T, m, n)
    of an asymmetric batch (rows of diverged points unused); None computes it point by point."""
    c0 = configs[0]
    B, model, t = len(configs), c0.model, tr.t
    T = len(t)
    sym = model == "symmetric"
    if V0 is None and not sym:
        raise ValueError(f"batch_metrics: model {model} needs V0, got None")
    V: FloatArray = U0 if V0 is None else V0  # symmetric: X = U U^T
    col: dict[str, list[Any]] = {k: [None] * B for k in METRIC_FIELDS}
    ynorm = _norms(Y)
    X0 = U0 @ np.swapaxes(V, 1, 2)
    if not sym:
        col["q0_norm"] = _col(_norms(np.swapaxes(U0, 1, 2) @ U0 - np.swapaxes(V, 1, 2) @ V))
    sig_Y = None  # singular values of Y, when every point's rate_pred needs them
    if model == "asymmetric" and c0.k >= c0.m and c0.init != "gaussian":
        sig_Y = np.linalg.svd(Y, compute_uv=False)
    if c0.integrator == "gd" and model == "asymmetric":  # fits.eta_stability_limit: the top eigenvalues
        top = [stacked_eigvalsh(A @ np.swapaxes(A, 1, 2))[:, -1] for A in (U0, V, Y)]  # ||Y||_2^2 last
        col["eta_stability_limit"] = _col(2.0 / np.maximum(top[0] + top[1], 2.0 * np.sqrt(top[2])))
    # one-layer baseline
    if model == "sigmoid":
        if tr.error_linear is None or tr.time_to_tol_linear is None or tr.final_error_linear is None:
            raise ValueError("batch_metrics: a sigmoid trajectory needs its simulated linear baseline, got None")
        err_lin, ttt_lin = tr.error_linear, tr.time_to_tol_linear
        col["time_to_tol_linear"] = _col(ttt_lin)
        col["final_error_linear"] = _col(tr.final_error_linear)
    else:
        e0 = _norms(Y - X0) / ynorm
        err_lin = linear_error_curve(c0, e0[:, None], t)
        ttt_lin = linear_times_to_tol(configs, e0)
        col["time_to_tol_linear"] = _col(ttt_lin)
        col["final_error_linear"] = _col(linear_error_curve(c0, e0[:, None], np.array([c0.eta * c0.steps]))[:, 0])
    div = tr.diverged_at
    n_records = np.full(B, T, dtype=np.int64)
    statuses = [PointStatus.DONE] * B
    ttt = _col(tr.time_to_tol)
    col["time_to_tol"] = ttt
    for b in np.flatnonzero(div >= 0).tolist():  # a result, not a crash: keep what is known
        col["diverged_at"][b] = int(div[b])
        n_records[b] = int(np.count_nonzero(np.rint(t / c0.eta) < div[b]))
        statuses[b] = PointStatus.DIVERGED
    live = np.flatnonzero(div < 0)
    everyone = len(live) == B
    L = slice(None) if everyone else live  # rows of the points that did not diverge
    idx = live.tolist()
    final = _col(tr.final_error[L])
    rows_fit: list[int] = []
    err_reg_fit = np.zeros((B, T)) if model == "asymmetric" and any(configs[b].fit_lambda0 for b in idx) else None
    if len(idx):
        X, err, YL, yn, U0L, VL = tr.X[L], tr.error[L], Y[L], ynorm[L], U0[L], V[L]
        _scatter(col["final_error"], idx, final)
        own = tr.time_to_tol[L]
        lin = ttt_lin[L]
        with np.errstate(all="ignore"):  # a speedup where both times are known and the own one > 0
            speedup = np.where(np.isfinite(own) & (own != 0.0) & np.isfinite(lin), lin / own, np.nan)
        _scatter(col["speedup"], idx, _col(speedup))
        # rate: the symmetric flow tends to the PSD projection of Y (Prop. 2), the others to Y
        if sym:
            w, E = np.linalg.eigh(YL)
            P = (E * np.maximum(w, 0.0)[:, None, :]) @ np.swapaxes(E, 1, 2)  # psd_projection
            resid = np.linalg.norm(X - P[:, None], axis=(2, 3)) / yn[:, None]
        else:
            resid = err
        _scatter(col["rate_fit"], idx, _col(_rate_fits(t, resid, NOISE_FLOOR[c0.integrator])))
        if tr.q_drift is not None:  # relative to the size of the factors, not of Q0
            scale = np.sum(U0L * U0L, axis=(1, 2)) + np.sum(VL * VL, axis=(1, 2))
            _scatter(col["conservation_drift"], idx, _col(tr.q_drift[L].max(axis=1) / np.maximum(scale, 1e-300)))
        lam_pred: list[float | None] = [0.0] * len(idx)  # the lambda of a result that predicts the rate
        D = None
        if model == "asymmetric":
            lam_pred = [
                configs[b].lambda0 if c0.init == "spectral" else (0.0 if c0.init == "balanced" else None) for b in idx
            ]
            if X_reg is None:
                Xr = np.stack([regularized_flow(Y[b], U0[b], V[b], configs[b].lambda0, t).X for b in idx])
            else:
                Xr = X_reg[L]
            D = Xr - X
            reg = np.sqrt(np.mean(np.einsum("btij,btij->bt", D, D), axis=1)) / yn
            _scatter(col["regularized_error"], idx, _col(reg))
            for j, b in enumerate(idx):
                c = configs[b]
                if not (c.fit_lambda0 and T >= 2):  # X(0) alone fits every lambda0
                    continue
                fit = lambda0_fit(Y[b], U0[b], V[b], t, X[j])
                col["lambda0_fit"][b] = clean(fit.lambda0)
                col["lambda0_fit_error"][b] = clean(fit.error)
                col["lambda0_fit_pos"][b], col["lambda0_fit_pos_error"][b] = (
                    clean(fit.pos.lambda0),
                    clean(fit.pos.error),
                )
                col["lambda0_fit_neg"][b], col["lambda0_fit_neg_error"][b] = (
                    clean(fit.neg.lambda0),
                    clean(fit.neg.error),
                )
                if err_reg_fit is not None:
                    err_reg_fit[b] = fit.error_curve
                    rows_fit.append(b)
                if c.init == "gaussian":
                    lam_pred[j] = fit.lambda0
            if tr.U_final is not None and tr.V_final is not None:
                # the error's modes: judged on the last record still well above rounding
                above = err > 1e-8
                last = np.where(above.any(axis=1), T - 1 - np.argmax(above[:, ::-1], axis=1), T - 1)
                E_j = YL - X[np.arange(len(idx)), last]
                _scatter(col["rate_lin"], idx, _col(_rate_lins(tr.U_final[L], tr.V_final[L], E_j)))
        _scatter(col["rate_pred"], idx, _rate_preds(c0, YL, sig_Y if sig_Y is None else sig_Y[L], lam_pred))
        # closed forms: the balanced start's is X_reg itself (eq. (21) at lambda0 = 0)
        has_closed_form = sym or (model == "asymmetric" and c0.init in ("spectral", "balanced"))
        for j, b in enumerate(idx if has_closed_form else []):
            c = configs[b]
            if model == "asymmetric" and c.init == "balanced" and c.lambda0 == 0 and D is not None:
                dist = np.linalg.norm(D[j], axis=(1, 2))
            else:
                Xcf = closed_form_trajectory(c, Y[b], U0[b], V0 if V0 is None else V0[b], t)
                if Xcf is None:
                    continue
                dist = np.linalg.norm(Xcf - X[j], axis=(1, 2))
            col["closed_form_error"][b] = clean(np.max(dist) / ynorm[b])
    has_fit = None
    if err_reg_fit is not None:
        has_fit = np.zeros(B, dtype=bool)
        has_fit[rows_fit] = True
    block = CurveBlock(
        t=t,
        error=tr.error,
        error_linear=err_lin,
        singular_values=singular_values,
        n_records=n_records,
        error_regularized_fit=err_reg_fit,
        has_fit=has_fit,
    )
    return statuses, col, block


def _scatter(column: list[Any], rows: list[int], values: list[Any]) -> None:
    if len(rows) == len(column):  # every point, in order (rows are ascending)
        column[:] = values
        return
    for b, v in zip(rows, values):
        column[b] = v


def _rate_preds(
    c0: PointConfig, Y: np.ndarray, sig_Y: np.ndarray | None, lam_pred: list[float | None]
) -> list[float | None]:
    """`fits.rate_pred` of each point (Y stacked, lam_pred its lambda, None: no prediction)."""
    B, m = Y.shape[0], Y.shape[1]
    if c0.k < m or c0.model not in ("symmetric", "asymmetric"):
        return [None] * B
    if c0.model == "symmetric":  # Prop. 2
        return _col(4.0 * np.min(np.abs(np.linalg.eigvalsh(Y)), axis=1))
    rows = [j for j, lam in enumerate(lam_pred) if lam is not None]
    out: list[float | None] = [None] * B
    if not rows:
        return out
    sig = np.linalg.svd(Y[rows], compute_uv=False) if sig_Y is None else sig_Y[rows]
    lam = np.array([lam_pred[j] for j in rows], dtype=float)
    if c0.init == "spectral":  # eq. (16)
        pred = np.min(np.sqrt(4.0 * sig**2 + lam[:, None] ** 2), axis=1)
    else:  # fits.regularized_rate
        r_min = np.sqrt(sig.min(axis=1) ** 2 + lam**2 / 4.0)
        pred = 2.0 * r_min if Y.shape[1] == Y.shape[2] else r_min + np.abs(lam) / 2.0
    _scatter(out, rows, _col(pred))
    return out
