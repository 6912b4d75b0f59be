"""Per-point metrics and curves (SPEC §4) from a batch trajectory. Never NaN/inf: None instead."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from flowsweep.jsonsafe import finite_or_none as clean  # float/int or None; NaN and inf become None
from flowsweep.status import PointStatus

from .closed_forms import asymmetric_spectral, regularized_flow, riccati_symmetric_factor
from .data import spectral_factors
from .dynamics import Trajectory
from .fits import eta_stability_limit, rate_fit, rate_lin, rate_pred
from .lambda0_fit import lambda0_fit
from .types import METRIC_FIELDS, Curves, FloatArray, PointConfig

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
            err_reg_fit = np.linalg.norm(Y - fit.X_reg, axis=(1, 2)) / ynorm
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
