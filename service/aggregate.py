"""Curves aggregated over seeds: one definition for the API, the PNG plots and the dashboard.

numpy only (no server imports): `GET /sweeps/{id}/curves` computes these on the server, and
`service.plots` draws what that endpoint returns, so every figure shows the same statistics.

Statistics per record time over the seeds that have a finite value there (a diverged or shorter
trajectory drops out where it has none): `mean`, `std` (ddof 1, as `/summary`'s `_std`; null with one
value) and `n`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CURVE_KEYS = ("error", "error_linear", "error_regularized_fit")


def stack_padded(arrays: Sequence[Any]) -> np.ndarray:
    """Stack 1-D arrays of possibly different lengths (a diverged point stops early) with nan."""
    arrays = [np.asarray(a, dtype=float).ravel() for a in arrays]
    out = np.full((len(arrays), max((len(a) for a in arrays), default=0)), np.nan)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def common_grid(ts: Sequence[Any]) -> np.ndarray:
    """The longest of the record grids (the others are its prefixes when eta and record_every agree)."""
    ts = [np.asarray(t, dtype=float).ravel() for t in ts]
    return max(ts, key=len) if ts else np.array([])


def on_grid(t: Any, y: Any, grid: np.ndarray) -> np.ndarray:
    """y(t) on `grid`: as is when t is a prefix of grid, else interpolated (nan outside t's range)."""
    t = np.asarray(t, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()[: len(t)]
    if len(t) <= len(grid) and np.array_equal(t, grid[: len(t)]):
        out = np.full(len(grid), np.nan)
        out[: len(y)] = y
        return out
    return np.interp(grid, t, y, left=np.nan, right=np.nan)


def mean_std(arrays: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std with ddof 1, n) per position over the finite values of arrays already on one grid;
    mean is nan where n = 0 and std where n < 2."""
    stacked = stack_padded(arrays)
    if stacked.size == 0:
        return np.array([]), np.array([]), np.array([], dtype=int)
    finite = np.isfinite(stacked)
    n = finite.sum(axis=0)
    vals = np.where(finite, stacked, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = vals.sum(axis=0) / n
        dev = np.where(finite, stacked - mean, 0.0)
        std = np.sqrt((dev**2).sum(axis=0) / (n - 1))
    mean = np.where(n > 0, mean, np.nan)
    std = np.where(n > 1, std, np.nan)
    return mean, std, n


def aggregate(curves: Sequence[dict[str, Any]], keys: Sequence[str] = CURVE_KEYS) -> dict[str, Any]:
    """Curves of one group (dicts with `t` and the curve keys) on their common grid:
    {"t": grid, key: {"mean", "std", "n"} or None when no curve has that key}."""
    grid = common_grid([c["t"] for c in curves])
    out: dict[str, Any] = {"t": grid}
    for key in keys:
        series = [on_grid(c["t"], c[key], grid) for c in curves if c.get(key) is not None]
        if not series:
            out[key] = None
            continue
        mean, std, n = mean_std(series)
        out[key] = {"mean": mean, "std": std, "n": n}
    return out


def band(stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper) of a ±1 std band from {"mean", "std"}; no band (std null) is zero width,
    and the lower edge is clipped at 0 (errors are >= 0)."""
    mean = np.asarray(stats["mean"], dtype=float)
    std = np.nan_to_num(np.asarray(stats["std"], dtype=float), nan=0.0)
    return mean, np.clip(mean - std, 0.0, None), mean + std


# ---------------------------------------------------------------------------------- deep model, Table 2
PLATEAU_DROP = 0.1  # the plateau ends when e(t) has fallen by this fraction of e(0)


def plateau_length(t: Any, error: Any, drop: float = PLATEAU_DROP) -> float:
    """First recorded t with e(t) <= (1 − drop)·e(0): how long a small start stays near the saddle
    at X = 0 before its first mode is learned; NaN if the error never fell that far."""
    t, e = np.asarray(t, float).ravel(), np.asarray(error, float).ravel()
    below = np.flatnonzero(e <= (1.0 - drop) * e[0])
    return float(t[below[0]]) if len(below) else float("nan")


def phase_cells(
    sigma: Sequence[float], lambda0: Sequence[float], metric: Sequence[Any], reference: float = 1.0
) -> list[dict[str, Any]]:
    """Table 2's phase diagram: one cell per (σ, λ₀) in sorted order, with `median` of the finite
    `metric` values (nan when none), `n` (how many), `points` (all points of the cell) and `above`
    (the fraction of those values > `reference`; nan when none). Points without σ or λ₀ drop out."""
    s = np.asarray(sigma, dtype=float)
    lam = np.asarray(lambda0, dtype=float)
    v = np.array([np.nan if m is None else m for m in metric], dtype=float)
    keep = np.isfinite(s) & np.isfinite(lam)
    cells: dict[tuple[float, float], list[float]] = {}
    for si, li, vi in zip(s[keep], lam[keep], v[keep]):
        cells.setdefault((float(si), float(li)), []).append(float(vi))
    out = []
    for (si, li), vals in sorted(cells.items()):
        finite = np.array([x for x in vals if np.isfinite(x)])
        out.append(
            {
                "sigma_min": si,
                "lambda0": li,
                "points": len(vals),
                "n": len(finite),
                "median": float(np.median(finite)) if len(finite) else float("nan"),
                "above": float((finite > reference).mean()) if len(finite) else float("nan"),
            }
        )
    return out


def phase_boundary(sigma_max: float, num: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(σ, λ₀ ≥ 0) on the boundary 4σ² + λ₀² = 1 of eq. (16), for 0 <= σ <= min(1/2, sigma_max): the
    two-layer rate √(4σ² + λ₀²) exceeds the one-layer rate 1 outside it."""
    ss = np.linspace(0.0, min(0.5, sigma_max), num)
    return ss, np.sqrt(np.maximum(1.0 - 4.0 * ss**2, 0.0))
