"""Fits: the exponential rate of a decaying curve, the paper's lambda0 fit (Fig. 2), predicted rates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from .closed_forms import regularized_flow

MIN_TAIL_POINTS = 5


@dataclass
class RateFit:
    rate: float | None       # fitted exponential rate (None when the tail is too short)
    t_start: float | None    # the tail that was fitted
    t_stop: float | None
    n_points: int


def rate_fit(t: np.ndarray, r: np.ndarray, noise_floor: float = 1e-11) -> RateFit:
    """Rate c of r(t) ~ C e^{-c t}: least squares on log r over the tail above numerical noise.

    The usable part is the prefix of the curve that stays finite and above `noise_floor`; the tail
    is its second half in time. None when that tail has fewer than 5 points."""
    t = np.asarray(t, float)
    r = np.asarray(r, float)
    good = np.isfinite(r) & (r > noise_floor)
    stop = len(r) if good.all() else int(np.argmin(good))
    if stop < 2:
        return RateFit(None, None, None, 0)
    t_mid = 0.5 * (t[0] + t[stop - 1])
    sel = np.arange(stop)[t[:stop] >= t_mid]
    if len(sel) < MIN_TAIL_POINTS:
        return RateFit(None, None, None, len(sel))
    ts, ys = t[sel] - t[sel].mean(), np.log(r[sel])
    slope = float(ts @ (ys - ys.mean())) / float(ts @ ts)            # least-squares line
    return RateFit(float(-slope), float(t[sel[0]]), float(t[sel[-1]]), len(sel))


def component_rates(t: np.ndarray, singular_values: np.ndarray, target: np.ndarray,
                    noise_floor: float = 1e-11) -> list[float | None]:
    """Fitted rate of |sigma_i(t) - target_i| for every singular component i (cf. eq. (16))."""
    sv = np.asarray(singular_values, float)
    return [rate_fit(t, np.abs(sv[:, i] - target[i]), noise_floor).rate for i in range(sv.shape[1])]


@dataclass
class Lambda0Fit:
    lambda0: float
    error: float             # sqrt(mean_t ||X_reg(t; lambda0) - X(t)||^2) / ||Y||
    loss: float              # sum_t ||X_reg(t; lambda0) - X(t)||^2
    n_evaluations: int


def regularized_loss(Y, U0, V0, t, X, lambda0: float) -> float:
    Xr = regularized_flow(Y, U0, V0, lambda0, t).X
    D = Xr - X
    v = float(np.einsum("tij,tij->", D, D))
    return v if np.isfinite(v) else np.inf


def lambda0_search_bound(Y, U0, V0) -> float:
    """Well above the spectrum of Q0 and of S_Y: 4 (||U0^T U0||_2 + ||V0^T V0||_2 + sigma_max(Y))."""
    return 4.0 * (np.linalg.norm(U0, 2) ** 2 + np.linalg.norm(V0, 2) ** 2 + np.linalg.norm(Y, 2)) + 1.0


def lambda0_fit(Y: np.ndarray, U0: np.ndarray, V0: np.ndarray, t: np.ndarray, X: np.ndarray,
                n_grid: int = 30, n_refine: int = 3, coarse_points: int = 40,
                search_points: int = 400) -> Lambda0Fit:
    """argmin over lambda0 in R of sum_t ||X_reg(t; lambda0) - X(t)||^2 (the paper's Fig. 2).

    A coarse grid over both signs (0 and +-logspace up to `lambda0_search_bound`, scored on at
    most `coarse_points` grid times), then bounded Brent on the full grid between the neighbours
    of the best few local minima (those within 4x of the best); the best of all is returned. Each
    evaluation is one closed-form solve (eq. (21)) of size m+n, independent of k. Long record
    grids (more than `search_points` times) are searched on an even subsample and the result is
    polished on the full grid, which also defines the returned loss and error."""
    t = np.asarray(t, float)
    X = np.asarray(X, float)
    T_full = len(t)
    if T_full > search_points:
        keep = np.unique(np.linspace(0, T_full - 1, search_points).round().astype(int))
        sub_fit = lambda0_fit(Y, U0, V0, t[keep], X[keep], n_grid, n_refine, coarse_points,
                              search_points)
        f_full = lambda lam: regularized_loss(Y, U0, V0, t, X, lam)      # noqa: E731
        x0 = sub_fit.lambda0
        h = 0.02 * max(abs(x0), 1e-3)
        res = minimize_scalar(f_full, bounds=(x0 - h, x0 + h), method="bounded",
                              options={"xatol": 1e-6 * max(1.0, abs(x0)), "maxiter": 12})
        v0 = f_full(x0)
        best_x, best_v = (float(res.x), float(res.fun)) if res.fun < v0 else (x0, v0)
        ynorm = float(np.linalg.norm(Y))
        return Lambda0Fit(lambda0=best_x, error=float(np.sqrt(best_v / T_full) / ynorm),
                          loss=best_v, n_evaluations=sub_fit.n_evaluations + int(res.nfev) + 1)
    L = lambda0_search_bound(Y, U0, V0)
    pos = np.logspace(np.log10(L) - 4.0, np.log10(L), n_grid)
    grid = np.concatenate([-pos[::-1], [0.0], pos])
    sub = np.unique(np.linspace(0, len(t) - 1, min(coarse_points, len(t))).round().astype(int))
    coarse = np.array([regularized_loss(Y, U0, V0, t[sub], X[sub], g) for g in grid])
    f = lambda lam: regularized_loss(Y, U0, V0, t, X, lam)      # noqa: E731
    n_eval = len(grid)
    # local minima of the coarse scores (ends included), best first
    is_min = np.ones(len(grid), bool)
    is_min[1:] &= coarse[1:] <= coarse[:-1]
    is_min[:-1] &= coarse[:-1] <= coarse[1:]
    best_c = np.min(coarse)
    cand = [i for i in np.argsort(coarse) if is_min[i] and coarse[i] <= 4.0 * best_c + 1e-300]
    cand = cand[:n_refine] or [int(np.argmin(coarse))]
    best_x, best_v = None, np.inf
    for i in cand:
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        v = f(grid[i])
        n_eval += 1
        if v < best_v:
            best_x, best_v = float(grid[i]), v
        if hi <= lo:
            continue
        res = minimize_scalar(f, bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-8 * max(1.0, abs(grid[i])), "maxiter": 100})
        n_eval += int(res.nfev)
        if res.fun < best_v:
            best_x, best_v = float(res.x), float(res.fun)
    ynorm = float(np.linalg.norm(Y))
    return Lambda0Fit(lambda0=best_x, error=float(np.sqrt(best_v / len(t)) / ynorm), loss=best_v,
                      n_evaluations=n_eval)


def rate_pred(model: str, init: str, Y: np.ndarray, lambda0: float) -> float | None:
    """SPEC §2: symmetric 4 min|eig(Y)|; asymmetric spectral min sqrt(4 sigma^2 + lambda0^2); other
    asymmetric Prop. 5: sqrt(4 sigma_min^2 + lambda^2) for square Y, |lambda| otherwise; sigmoid None."""
    if model == "symmetric":
        return float(4.0 * np.min(np.abs(np.linalg.eigvalsh(Y))))
    if model == "asymmetric":
        sig = np.linalg.svd(Y, compute_uv=False)
        if init == "spectral":
            return float(np.min(np.sqrt(4.0 * sig ** 2 + lambda0 ** 2)))
        m, n = Y.shape
        if m == n:
            return float(np.sqrt(4.0 * sig.min() ** 2 + lambda0 ** 2))
        return float(abs(lambda0))
    return None
