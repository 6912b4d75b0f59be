"""Figures of a sweep, as in the paper (matplotlib, no display needed).

Figures are `matplotlib.figure.Figure` objects on their own Agg canvas, never pyplot's: importing
this module leaves a notebook's or an application's matplotlib backend as it was.

Each `*_figure` function takes plain data — result rows as a pandas DataFrame, curves as dicts of
numpy arrays (what `service.client.Client` returns) — and returns a matplotlib `Figure`, so tests can
inspect the lines it drew. `sweep_figure(client, sweep_id, kind)` fetches the data and picks one.

kinds (the paper's figures):
  error            Fig. 1 top: e(t) of the two-layer model against iterations, mean over seeds with a
                   ±1 std band, and the one-layer baseline (dashed), one panel per group.
  singular_values  Fig. 1 bottom: singular values of X(t) for one seed per group (solid), the
                   one-layer model's (dashed, eq. (4)), and the targets σᵢ(Y) (dotted).
  regularized      Fig. 2: e(t) of the general flow (13) (red dashed) against the regularized flow (19)
                   with Λ = λ₀I at the fitted λ₀ (black solid).
  lambda0          `lambda0_fit` against k (or another parameter).
  speedup          `speedup` = time_to_tol_linear / time_to_tol against init_scale or λ₀.
  depth            deep model: `time_to_tol` against depth (L = 1 is the one-layer model).
  plateau          deep model: the plateau's length (first t with e(t) <= 0.9·e(0)) against depth.
  phase            Table 2 as a phase diagram over (σ, λ₀): the median `rate_fit` over seeds of each
                   cell against the one-layer rate 1, and the boundary 4σ² + λ₀² = 1 of eq. (16).
                   σ is σ_min(Y): data_scale · min(y_singular_values), or each point's own Y's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flowsweep.status import PointStatus

# numpy only: the API's GET /sweeps/{id}/curves and /phase compute with these too
from .aggregate import PLATEAU_DROP as PLATEAU_DROP  # re-exported
from .aggregate import aggregate, band, mean_std, phase_boundary, phase_cells
from .aggregate import plateau_length as plateau_length  # re-exported
from .aggregate import stack_padded as stack_padded  # re-exported

KINDS = ("error", "singular_values", "regularized", "lambda0", "speedup", "phase", "depth", "plateau")
GROUP_AXES = ("init_scale", "k", "lambda0", "depth")  # sweep axes other than seed (SPEC §3)
PANEL_SIZE = (4.0, 3.2)  # inches per panel
MAX_COLS = 4
TWO_LAYER_COLOR = "C0"
ONE_LAYER_COLOR = "k"


class PlotError(ValueError):
    """The data cannot make the requested figure (message meant for people)."""


@dataclass
class Group:
    """Points that share a value of the grouping keys (they differ by seed)."""

    label: str
    rows: pd.DataFrame  # their result rows
    curves: list[dict[str, Any]] = field(default_factory=list)  # one dict of arrays per point
    state: dict[str, np.ndarray] | None = None  # initial state of curves[0]'s point
    # Curves aggregated over seeds as GET /sweeps/{id}/curves returns them ({"t", key: {"mean", "std",
    # "n"}}); computed from `curves` by service.aggregate when not given.
    stats: dict[str, Any] | None = None
    n: int | None = None  # seeds in `stats`

    def aggregated(self) -> dict[str, Any]:
        if self.stats is None:
            self.stats, self.n = aggregate(self.curves), len(self.curves)
        return self.stats

    def seeds(self) -> int:
        """Seeds in `stats` (aggregated from `curves` first if needed)."""
        self.aggregated()
        if self.n is None:
            raise PlotError(f"group {self.label}: its aggregated curves do not give their number of seeds n")
        return self.n


# ---------------------------------------------------------------------------------- helpers
def mean_band(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and a ±1 std band (service.aggregate's statistics), band clipped at 0."""
    mean, std, _ = mean_std(arrays)
    return band({"mean": mean, "std": std})


def iterations(t: np.ndarray, eta: float | None) -> np.ndarray:
    """The paper plots against iterations: i = t / η."""
    t = np.asarray(t, dtype=float)
    return np.rint(t / eta) if eta else t


def _figure(figsize: tuple[float, float]) -> Figure:
    """A Figure with its own Agg canvas (PNG without pyplot or a backend switch)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panels(n: int, sharey: bool = True) -> tuple[Figure, list]:
    ncols = min(max(n, 1), MAX_COLS)
    nrows = math.ceil(max(n, 1) / ncols)
    fig = _figure((PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows))
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def group_label(keys: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, values)) or "all points"


def varying_axes(df: pd.DataFrame, candidates: Sequence[str] = GROUP_AXES) -> list[str]:
    """The sweep axes (besides seed) that take more than one value in these rows."""
    return [c for c in candidates if c in df.columns and df[c].nunique(dropna=False) > 1]


def split_groups(df: pd.DataFrame, by: Sequence[str] | None = None) -> list[Group]:
    """Group rows by `by` (default: the axes that vary), sorted by key values."""
    keys = list(by) if by else varying_axes(df)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise PlotError(f"cannot group by {', '.join(missing)}: not a result field")
    if not keys:  # nothing varies but the seed: name the group by its constant parameters
        const = [c for c in ("init", "init_scale", "k", "lambda0") if c in df.columns and len(df)]
        label = group_label(const, [df[c].iloc[0] for c in const]) if const else "all points"
        return [Group(label=label, rows=df.sort_values("seed") if "seed" in df else df)]
    groups = []
    for values, rows in df.groupby(keys, sort=True, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        groups.append(Group(label=group_label(keys, values), rows=rows.sort_values("seed") if "seed" in rows else rows))
    return groups


def _eta(rows: pd.DataFrame) -> float | None:
    if "eta" in rows and rows["eta"].notna().any():
        return float(rows["eta"].dropna().iloc[0])
    return None


def _mean_of(rows: pd.DataFrame, col: str) -> float | None:
    if col in rows and pd.to_numeric(rows[col], errors="coerce").notna().any():
        return float(pd.to_numeric(rows[col], errors="coerce").mean())
    return None


def _model_label(rows: pd.DataFrame) -> str:
    """ "two-layer", or for model deep "L-layer" (one depth in the group) or "deep"."""
    if "model" in rows and (rows["model"] == "deep").all() and "depth" in rows:
        depths = pd.to_numeric(rows["depth"], errors="coerce").dropna().unique()
        return f"{int(depths[0])}-layer" if len(depths) == 1 else "deep"
    return "two-layer"


def _panel_letter(i: int) -> str:
    return f"({chr(ord('a') + i)})" if i < 26 else f"({i + 1})"


# ---------------------------------------------------------------------------------- Fig. 1 top


def _style_error_panel(ax, i: int, title: str, eta) -> None:
    """Title, axes and grid of panel i of an error-against-iterations figure (Fig. 1 top, Fig. 2 top)."""
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iterations" if eta else "t")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_ylabel("reconstruction error ‖Y−X(t)‖/‖Y‖" if i % MAX_COLS == 0 else "")


def error_figure(groups: Sequence[Group]) -> Figure:
    """Reconstruction error ‖Y − X(t)‖/‖Y‖ against iterations, two-layer vs one-layer (Fig. 1 top)."""
    groups = [g for g in groups if g.curves or g.stats is not None]
    if not groups:
        raise PlotError("no finished points with curves to plot")
    fig, axes = _panels(len(groups), sharey=False)  # a large init starts far above 1 (Fig. 1c)
    for i, (ax, g) in enumerate(zip(axes, groups)):
        eta = _eta(g.rows)
        stats = g.aggregated()
        n = g.seeds()
        for key, label, style, color in (
            ("error", _model_label(g.rows), "-", TWO_LAYER_COLOR),
            ("error_linear", "one-layer", "--", ONE_LAYER_COLOR),
        ):
            if stats.get(key) is None:
                continue
            mean, lo, hi = band(stats[key])
            x = iterations(stats["t"], eta)[: len(mean)]
            ax.plot(x, mean[: len(x)], linestyle=style, color=color, label=f"{label} (mean of {n})" if n > 1 else label)
            if n > 1:
                ax.fill_between(x, lo[: len(x)], hi[: len(x)], color=color, alpha=0.2, linewidth=0)
        q0 = _mean_of(g.rows, "q0_norm")
        title = f"{_panel_letter(i)} {g.label}"
        if q0 is not None:
            title += f"\n‖Q₀‖ = {q0:.3g}"
        _style_error_panel(ax, i, title, eta)
    axes[0].legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------- Fig. 1 bottom
def one_layer_singular_values(
    state: Mapping[str, np.ndarray], t: np.ndarray, eta: float | None, integrator: str = "gd", model: str = "asymmetric"
) -> np.ndarray:
    """Singular values of the one-layer baseline from the same X(0), eq. (4):
    X(t) = Y + (X0 − Y) e^{−t} for the flow; (1 − η)^i instead of e^{−t} for gradient descent."""
    Y = np.asarray(state["Y"], dtype=float)
    U0 = np.asarray(state["U0"], dtype=float)
    V0 = np.asarray(state["V0"], dtype=float) if (state.get("V0") is not None and model != "symmetric") else U0
    X0 = U0 @ V0.T
    t = np.asarray(t, dtype=float)
    if integrator == "gd" and eta:
        decay = (1.0 - eta) ** np.rint(t / eta)
    else:
        decay = np.exp(-t)
    X = Y[None] + decay[:, None, None] * (X0 - Y)[None]
    return np.linalg.svd(X, compute_uv=False)


def singular_values_figure(groups: Sequence[Group]) -> Figure:
    """Singular values of X(t) for one seed per group (Fig. 1 bottom)."""
    groups = [g for g in groups if g.curves and g.curves[0].get("singular_values") is not None]
    if not groups:
        raise PlotError("no finished points with singular-value curves to plot")
    fig, axes = _panels(len(groups), sharey=False)  # panels differ by orders of magnitude (Fig. 1)
    for i, (ax, g) in enumerate(zip(axes, groups)):
        c = g.curves[0]
        row = g.rows.iloc[0]
        eta = _eta(g.rows)
        x = iterations(c["t"], eta)
        sv = np.atleast_2d(np.asarray(c["singular_values"], dtype=float))
        if sv.shape[0] != len(x) and sv.shape[1] == len(x):
            sv = sv.T
        for j in range(sv.shape[1]):
            ax.plot(
                x[: len(sv)],
                sv[:, j],
                color=f"C{j % 10}",
                linestyle="-",
                label=f"{_model_label(g.rows)} σᵢ(X(t))" if j == 0 else "_nolegend_",
            )
        model = str(row.get("model", "asymmetric"))
        if g.state is not None and "Y" in g.state and model != "sigmoid":
            base = one_layer_singular_values(g.state, c["t"], eta, str(row.get("integrator", "gd")), model)
            for j in range(base.shape[1]):
                ax.plot(
                    x,
                    base[:, j],
                    color=f"C{j % 10}",
                    linestyle="--",
                    alpha=0.7,
                    label="one-layer" if j == 0 else "_nolegend_",
                )
            for j, s in enumerate(np.linalg.svd(np.asarray(g.state["Y"], dtype=float), compute_uv=False)):
                ax.axhline(s, color="0.5", linestyle=":", linewidth=0.8, label="σᵢ(Y)" if j == 0 else "_nolegend_")
        seed = row.get("seed")
        ax.set_title(f"{_panel_letter(i)} {g.label}" + (f", seed {seed}" if seed is not None else ""), fontsize=10)
        ax.set_xlabel("iterations" if eta else "t")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("singular values of X(t)")
    # below the panels: inside, it hides the early curves of small inits (Fig. 1 bottom)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------------------- Fig. 2
def regularized_figure(groups: Sequence[Group]) -> Figure:
    """e(t) of the general flow (13) vs the regularized flow (19) at λ₀ = lambda0_fit (Fig. 2 top)."""
    groups = [
        g
        for g in groups
        if (g.curves or g.stats is not None) and g.aggregated().get("error_regularized_fit") is not None
    ]
    if not groups:
        raise PlotError('these points have no regularized fit: submit the sweep with "fit_lambda0": true')
    fig, axes = _panels(len(groups), sharey=False)
    for i, (ax, g) in enumerate(zip(axes, groups)):
        eta = _eta(g.rows)
        stats = g.aggregated()
        n = g.seeds()
        x_all = iterations(stats["t"], eta)
        for key, label, style, color in (
            ("error", "general Q₀, flow (13)", "--", "tab:red"),
            ("error_regularized_fit", "regularized, Λ = λ₀I (19)", "-", "k"),
        ):
            mean, lo, hi = band(stats[key])
            x = x_all[: len(mean)]
            ax.plot(x, mean[: len(x)], linestyle=style, color=color, label=label)
            if n > 1:
                ax.fill_between(x, lo[: len(x)], hi[: len(x)], color=color, alpha=0.15, linewidth=0)
        lam = _numeric(g.rows, "lambda0_fit").dropna() if "lambda0_fit" in g.rows else pd.Series(dtype=float)
        title = f"{_panel_letter(i)} {g.label}"
        if len(lam) == 1:
            title += f"\nλ₀ fit = {lam.iloc[0]:.5g}"
        elif len(lam) > 1:  # each point's better branch: its sign varies, so no mean of signed values
            title += f"\n|λ₀ fit| median {lam.abs().median():.4g}, λ₀ > 0 in {int((lam > 0).sum())}/{len(lam)}"
        _style_error_panel(ax, i, title, eta)
    axes[0].legend(fontsize=8)
    return fig


# ---------------------------------------------------------------------------------- scalar metrics
def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(df[col], errors="coerce")


def metric_figure(
    df: pd.DataFrame,
    metric: str,
    x: str,
    by: Sequence[str] | None = None,
    reference: float | None = None,
    reference_label: str | None = None,
) -> Figure:
    """`metric` against `x`: every point (dots) and the mean ± std over seeds (line), one series per
    value of `by`; an optional dashed horizontal reference line."""
    for col in (metric, x, *(by or ())):
        if col not in df.columns:
            raise PlotError(f"no result field named {col!r}")
    data = df.assign(**{metric: _numeric(df, metric), x: _numeric(df, x)}).dropna(subset=[metric, x])
    if data.empty:
        raise PlotError(f"no finished point has a value of {metric}")
    fig = _figure((1.5 * PANEL_SIZE[0], 1.25 * PANEL_SIZE[1]))
    ax = fig.subplots()
    series = (
        [("", data)]
        if not by
        else [
            (group_label(by, v if isinstance(v, tuple) else (v,)), rows)
            for v, rows in data.groupby(list(by), sort=True)
        ]
    )
    for j, (label, rows) in enumerate(series):
        color = f"C{j % 10}"
        ax.plot(rows[x], rows[metric], linestyle="none", marker=".", alpha=0.35, color=color, label="_nolegend_")
        agg = rows.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
        std = agg["std"].fillna(0.0).to_numpy()
        lower = std
        if (rows[metric] > 0).all():  # may be drawn on a log axis: keep the bar above 0
            lower = np.minimum(std, agg["mean"].to_numpy() - 0.5 * rows[metric].min())
        ax.errorbar(
            agg[x],
            agg["mean"],
            yerr=[lower, std],
            color=color,
            marker="o",
            capsize=3,
            label=(label or "mean ± std over seeds"),
        )
    if reference is not None:
        ax.axhline(reference, color="0.3", linestyle="--", linewidth=1, label=reference_label)
    xs = _numeric(df, x).dropna()  # all swept values, also those without a metric value
    if (xs > 0).all() and xs.max() / xs.min() >= 20:
        ax.set_xscale("log")
    ys = data[metric]
    if (ys > 0).all() and ys.max() / ys.min() >= 20:
        ax.set_yscale("log")
    missing = len(df) - len(data)
    if missing:
        # e.g. speedup is null when e(t) never reached tol within the horizon
        where = sorted(set(_numeric(df, x)[_numeric(df, metric).isna()].dropna()))
        ax.set_title(
            f"{missing} of {len(df)} points have no {metric} (null)"
            + (f" at {x} = {', '.join(_fmt(float(v)) for v in where[:6])}" if where else ""),
            fontsize=9,
        )
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def lambda0_figure(df: pd.DataFrame, x: str = "k", by: Sequence[str] | None = None) -> Figure:
    """The fitted imbalance `lambda0_fit` (Fig. 2's λ₀) against width k."""
    if "lambda0_fit" in df and pd.to_numeric(df["lambda0_fit"], errors="coerce").isna().all():
        raise PlotError('these points have no lambda0_fit: submit the sweep with "fit_lambda0": true')
    return metric_figure(df, "lambda0_fit", x, by)


def speedup_figure(df: pd.DataFrame, x: str | None = None, by: Sequence[str] | None = None) -> Figure:
    """`speedup` over the one-layer model against init_scale or λ₀; 1 = no implicit acceleration."""
    if x is None:
        vary = varying_axes(df, ("init_scale", "lambda0", "k"))
        x = vary[0] if vary else "init_scale"
    if by is None:
        by = [a for a in varying_axes(df, ("init_scale", "lambda0", "k")) if a != x][:1] or None
    return metric_figure(df, "speedup", x, by, reference=1.0, reference_label="one-layer (no acceleration)")


def _depth_series(df: pd.DataFrame, by: Sequence[str] | None) -> list[str] | None:
    if "depth" not in df.columns or _numeric(df, "depth").isna().all():
        raise PlotError("these points have no depth: the depth plots are for model deep")
    if by is None:
        return [a for a in varying_axes(df, ("init_scale", "lambda0", "k", "init")) if a != "depth"][:1] or None
    return list(by)


def depth_figure(df: pd.DataFrame, by: Sequence[str] | None = None) -> Figure:
    """`time_to_tol` against depth L, one series per value of the other varying axis."""
    return metric_figure(df, "time_to_tol", "depth", _depth_series(df, by))


def plateau_figure(
    df: pd.DataFrame,
    curves: Sequence[Mapping[str, Any]] | None = None,
    by: Sequence[str] | None = None,
    plateau: Sequence[float] | None = None,
) -> Figure:
    """Plateau length (`plateau_length` of each point's curve) against depth L; `curves` is one dict
    of arrays per row of df, in order, or `plateau` the lengths already computed (by the server)."""
    by = _depth_series(df, by)
    if plateau is None:
        if curves is None:
            raise PlotError("plateau_figure needs each point's curves or its plateau length")
        plateau = [plateau_length(c["t"], c["error"]) for c in curves]
    df = df.assign(plateau=list(plateau))
    fig = metric_figure(df, "plateau", "depth", by)
    fig.axes[0].set_ylabel(f"plateau: first t with e(t) ≤ {1 - PLATEAU_DROP:g}·e(0)")
    return fig


def phase_figure(
    df: pd.DataFrame, sigma: str = "sigma_min", lam: str = "lambda0", metric: str = "rate_fit", reference: float = 1.0
) -> Figure:
    """Table 2 as a phase diagram: one square per (σ, λ₀) cell coloured by log₂ of the median of
    `metric` over seeds relative to `reference` (the one-layer rate 1: red faster, blue slower),
    a ring where fewer than all seeds agree on the side, and the boundary 4σ² + λ₀² = 1 (eq. (16):
    the two-layer rate √(4σ² + λ₀²) exceeds 1 outside it)."""
    for col in (sigma, lam, metric):
        if col not in df.columns:
            raise PlotError(f"no result field named {col!r}")
    data = df.assign(**{c: _numeric(df, c) for c in (sigma, lam, metric)}).dropna(subset=[sigma, lam])
    if data.empty:
        raise PlotError("no finished point has σ and λ₀")
    return phase_cells_figure(
        pd.DataFrame(phase_cells(data[sigma], data[lam], data[metric], reference)), metric, reference
    )


def phase_cells_figure(cells: pd.DataFrame, metric: str = "rate_fit", reference: float = 1.0) -> Figure:
    """`phase_figure` from its cells (`service.aggregate.phase_cells`, as GET /sweeps/{id}/phase
    returns them: sigma_min, lambda0, median, n, points, above)."""
    sigma, lam = "sigma_min", "lambda0"
    cells = cells.assign(**{c: pd.to_numeric(cells[c], errors="coerce") for c in (sigma, lam, "median", "n", "above")})
    fig = Figure(figsize=(1.6 * PANEL_SIZE[0], 4.5), layout="constrained")
    ax = fig.subplots()
    ratio = np.log2(cells["median"] / reference)
    lim = max(float(np.nanmax(np.abs(ratio))) if ratio.notna().any() else 1.0, 0.5)
    # squares about as wide as the closest pair of swept σ allows (points², 72 per inch)
    xs = np.sort(cells[sigma].unique())
    frac_w = (np.min(np.diff(xs)) / (xs[-1] - xs[0])) if len(xs) > 1 else 0.1
    side = float(np.clip(frac_w * 0.8 * fig.get_figwidth() * 72 * 0.75, 6, 18))
    sc = ax.scatter(
        cells[sigma],
        cells[lam],
        c=ratio,
        cmap="coolwarm",
        vmin=-lim,
        vmax=lim,
        marker="s",
        s=side**2,
        edgecolors="none",
    )
    mixed = cells[(cells["above"] > 0) & (cells["above"] < 1)]
    ax.scatter(
        mixed[sigma],
        mixed[lam],
        facecolors="none",
        edgecolors="k",
        marker="o",
        s=0.6 * side**2,
        linewidths=1.0,
        label="seeds on both sides of rate 1" if len(mixed) else "_nolegend_",
    )
    empty = cells[cells["n"] == 0]
    ax.scatter(
        empty[sigma],
        empty[lam],
        color="0.3",
        marker="x",
        s=0.4 * side**2,
        label=f"no {metric} (null)" if len(empty) else "_nolegend_",
    )
    s_max = float(cells[sigma].max()) * 1.05
    ss, bound = phase_boundary(s_max)
    ax.plot(ss, bound, "k--", linewidth=1.2, label="4σ² + λ₀² = 1")
    if (cells[lam] < 0).any():
        ax.plot(ss, -bound, "k--", linewidth=1.2)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label(f"log₂(median {metric} / {_fmt(reference)})")
    ax.set_xlabel("σ = σ_min(Y)")
    ax.set_ylabel("λ₀")
    ax.set_title(f"median {metric} over seeds vs the one-layer rate {_fmt(reference)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    ax.grid(alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------- from a sweep
def sweep_figure(
    client, sweep_id: int, kind: str, by: Sequence[str] | None = None, x: str | None = None, max_seeds: int = 100
) -> Figure:
    """Fetch a sweep's rows (and curves) through `client` and draw the figure `kind`."""
    if kind not in KINDS:
        raise PlotError(f"unknown plot kind {kind!r}: choose one of {', '.join(KINDS)}")
    df = client.results(sweep_id)
    if df.empty:
        raise PlotError(f"sweep {sweep_id} has no result rows yet")
    if kind == "lambda0":
        return lambda0_figure(df, x=x or "k", by=by)
    if kind == "speedup":
        return speedup_figure(df, x=x, by=by)
    if kind == "phase":
        done = df[df["status"] == PointStatus.DONE] if "status" in df else df
        if done.empty:
            raise PlotError(f"sweep {sweep_id} has no finished (done) points yet")
        # The cells computed on the server (GET /sweeps/{id}/phase): the dashboard draws the same.
        body = client.phase(sweep_id)
        if not body["cells"]:
            raise PlotError(f"sweep {sweep_id}: no finished point has σ and λ₀")
        return phase_cells_figure(pd.DataFrame(body["cells"]), body["metric"], body["reference"])
    if kind == "depth":
        return depth_figure(df, by=by)
    done = df[df["status"] == PointStatus.DONE] if "status" in df else df
    if done.empty:
        raise PlotError(f"sweep {sweep_id} has no finished (done) points yet")
    if kind == "plateau":
        # Each point's plateau as GET /sweeps/{id}/curves computes it (the dashboard draws the same).
        body = client.group_curves(sweep_id, max_seeds=1000)
        length = {
            pid: (math.nan if v is None else float(v))
            for g in body["groups"]
            for pid, v in zip(g["point_ids"], g["plateau"])
        }
        return plateau_figure(done, by=by, plateau=[length.get(int(p), math.nan) for p in done["point_id"]])
    if kind in ("error", "regularized"):
        # Aggregated on the server (GET /sweeps/{id}/curves): the dashboard shows the same numbers.
        body = client.group_curves(sweep_id, by=by or varying_axes(done) or None, max_seeds=max_seeds)
        groups = []
        for g in body["groups"]:
            rows = done[done["point_id"].isin(g["point_ids"])]
            groups.append(
                Group(
                    label=group_label(body["by"], list(g["key"].values()))
                    if body["by"]
                    else split_groups(rows)[0].label,
                    rows=rows,
                    stats=g,
                    n=int(g["n"]),
                )
            )
        return (error_figure if kind == "error" else regularized_figure)(groups)
    groups = split_groups(done, by)
    for g in groups:
        g.rows = g.rows.head(1)
        g.curves = [client.curves(int(pid)) for pid in g.rows["point_id"]]
        g.state = client.state(int(g.rows["point_id"].iloc[0]))
    return singular_values_figure(groups)


FIGURE_FORMATS = ("png", "pdf", "svg")


def save_figure(fig: Figure, path: str | Path, dpi: int = 100, fmt: str | None = None) -> Path:
    """Write the figure as PNG (width, height in inches × dpi pixels), PDF or SVG (vector), the format
    from `fmt` or else the file's suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "png").lower()
    if fmt not in FIGURE_FORMATS:
        raise PlotError(f"cannot write a figure as {fmt!r}: choose one of {', '.join(FIGURE_FORMATS)}")
    fig.savefig(path, format=fmt, dpi=dpi)
    return path


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write the figure as PNG at its own size (width, height in inches × dpi pixels)."""
    return save_figure(fig, path, dpi, "png")
