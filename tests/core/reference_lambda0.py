"""The lambda0 fit as it was before the two-branch search (core 2), kept verbatim as the reference
the fast fit is tested against, with one addition: `sign` restricts the search to one branch."""

import numpy as np
from scipy.optimize import minimize_scalar

from flowsweep.core.closed_forms import regularized_flow
from flowsweep.core.lambda0_fit import Lambda0Branch, lambda0_search_bound


def regularized_loss(Y, U0, V0, t, X, lambda0: float) -> float:
    Xr = regularized_flow(Y, U0, V0, lambda0, t).X
    D = Xr - X
    v = float(np.einsum("tij,tij->", D, D))
    return v if np.isfinite(v) else np.inf


def lambda0_fit_reference(
    Y, U0, V0, t, X, sign: float | None = None, n_grid: int = 30, n_refine: int = 3, coarse_points: int = 40
) -> Lambda0Branch:
    """Core 2's search (coarse grid over both signs, bounded Brent around the best local minima on
    the full grid) with its grid restricted to sign * [0, L] when `sign` is given."""
    t = np.asarray(t, float)
    X = np.asarray(X, float)
    L = lambda0_search_bound(Y, U0, V0)
    pos = np.logspace(np.log10(L) - 4.0, np.log10(L), n_grid)
    grid = np.concatenate([-pos[::-1], [0.0], pos])
    if sign is not None:
        grid = grid[sign * grid >= 0]
    sub = np.unique(np.linspace(0, len(t) - 1, min(coarse_points, len(t))).round().astype(int))
    coarse = np.array([regularized_loss(Y, U0, V0, t[sub], X[sub], g) for g in grid])
    f = lambda lam: regularized_loss(Y, U0, V0, t, X, lam)  # noqa: E731
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
        if v < best_v:
            best_x, best_v = float(grid[i]), v
        if hi <= lo:
            continue
        res = minimize_scalar(
            f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-8 * max(1.0, abs(grid[i])), "maxiter": 100}
        )
        if res.fun < best_v:
            best_x, best_v = float(res.x), float(res.fun)
    ynorm = float(np.linalg.norm(Y))
    return Lambda0Branch(lambda0=best_x, error=float(np.sqrt(best_v / len(t)) / ynorm), loss=best_v)
