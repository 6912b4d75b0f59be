"""The figures draw what they claim: inspect the matplotlib Figure (lines, styles, labels, the plotted
values against numpy references) and decode the PNG. No server needed: plots take plain data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.image import imread

from flowsweep.service import plots
from flowsweep.service.plots import Group, PlotError

ETA = 1e-3
STEPS = 400
RECORD = 20


def _curves(rate: float, seed: int, m: int = 3, fit: bool = False) -> dict[str, np.ndarray]:
    """Synthetic trajectories with known values: e(t) = e0 exp(-rate t), baseline e0 (1-eta)^i."""
    rng = np.random.default_rng(seed)
    i = np.arange(0, STEPS + 1, RECORD)
    t = ETA * i
    e0 = 1.0 + 0.1 * rng.random()
    out = {
        "t": t,
        "error": e0 * np.exp(-rate * t),
        "error_linear": e0 * (1 - ETA) ** i,
        "singular_values": np.outer(1 - np.exp(-rate * t), np.arange(m, 0, -1.0)),
        "error_regularized_fit": e0 * np.exp(-rate * t) * 1.01 if fit else None,
    }
    return out


def _group(scale: float, rate: float, n_seeds: int = 4, fit: bool = False) -> Group:
    rows = pd.DataFrame(
        {
            "point_id": np.arange(n_seeds) + int(scale * 1000),
            "status": "done",
            "model": "asymmetric",
            "integrator": "gd",
            "init_scale": scale,
            "k": 50,
            "lambda0": 0.0,
            "seed": np.arange(n_seeds),
            "eta": ETA,
            "steps": STEPS,
            "q0_norm": scale * 10.0,
            "lambda0_fit": rate,
        }
    )
    return Group(label=f"init_scale={scale:g}", rows=rows, curves=[_curves(rate, s, fit=fit) for s in range(n_seeds)])


def _linestyle(line) -> str:
    return {"-": "solid", "--": "dashed", ":": "dotted"}.get(line.get_linestyle(), line.get_linestyle())


def test_error_figure_has_mean_band_and_dashed_baseline_per_group(tmp_path):
    groups = [_group(0.01, 1.0), _group(0.1, 3.0), _group(1.0, 9.0)]
    fig = plots.error_figure(groups)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3
    for ax, g in zip(axes, groups):
        lines = ax.get_lines()
        assert len(lines) == 2
        two, one = lines
        assert two.get_label().startswith("two-layer") and _linestyle(two) == "solid"
        assert one.get_label().startswith("one-layer") and _linestyle(one) == "dashed"
        # x is iterations (t / eta), y the mean over seeds: compare with numpy directly.
        np.testing.assert_allclose(two.get_xdata(), np.arange(0, STEPS + 1, RECORD))
        np.testing.assert_allclose(two.get_ydata(), np.mean([c["error"] for c in g.curves], axis=0))
        np.testing.assert_allclose(one.get_ydata(), np.mean([c["error_linear"] for c in g.curves], axis=0))
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 2  # a band over seeds for each model
        assert g.label in ax.get_title() and "Q₀" in ax.get_title()
        assert ax.get_xlabel() == "iterations"
    # the faster the two-layer rate, the lower its final error (the panels differ)
    finals = [ax.get_lines()[0].get_ydata()[-1] for ax in axes]
    assert finals[0] > finals[1] > finals[2]

    out = plots.save_png(fig, tmp_path / "err.png", dpi=50)
    img = imread(out)
    w, h = fig.get_size_inches() * 50
    assert img.shape[:2] == (round(h), round(w))
    assert img.std() > 0.05  # not a blank canvas


def test_error_figure_single_seed_has_no_band_and_rejects_empty():
    fig = plots.error_figure([_group(0.1, 2.0, n_seeds=1)])
    ax = fig.axes[0]
    assert [c for c in ax.collections if isinstance(c, PolyCollection)] == []
    assert [ln.get_label() for ln in ax.get_lines()] == ["two-layer", "one-layer"]
    with pytest.raises(PlotError):
        plots.error_figure([Group(label="x", rows=pd.DataFrame())])


def test_mean_band_pads_a_diverged_short_trajectory_with_nan():
    mean, lo, hi = plots.mean_band([np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0])])
    np.testing.assert_allclose(mean, [2.0, 3.0, 3.0])
    # std over seeds with ddof 1 (as /summary's _std and GET /sweeps/{id}/curves); no band with one value
    np.testing.assert_allclose(hi - mean, [np.sqrt(2.0), np.sqrt(2.0), 0.0])
    assert (lo >= 0).all()


def test_one_layer_singular_values_match_eq4_for_gd_and_flow():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((3, 5))
    state = {"Y": Y, "U0": np.zeros((3, 4)), "V0": np.zeros((5, 4))}  # X0 = 0
    t = ETA * np.arange(0, 101, 10)
    sigma = np.linalg.svd(Y, compute_uv=False)
    # X0 = 0: X(t) = Y (1 - decay), so sigma_i(X(t)) = sigma_i(Y) (1 - decay)
    gd = plots.one_layer_singular_values(state, t, ETA, "gd")
    np.testing.assert_allclose(gd, np.outer(1 - (1 - ETA) ** np.arange(0, 101, 10), sigma), atol=1e-12)
    flow = plots.one_layer_singular_values(state, t, ETA, "flow")
    np.testing.assert_allclose(flow, np.outer(1 - np.exp(-t), sigma), atol=1e-12)


def test_singular_values_figure_draws_two_layer_one_layer_and_targets():
    g = _group(0.1, 3.0, n_seeds=2)
    rng = np.random.default_rng(1)
    g.state = {
        "Y": rng.standard_normal((3, 6)),
        "U0": 0.1 * rng.standard_normal((3, 8)),
        "V0": 0.1 * rng.standard_normal((6, 8)),
    }
    fig = plots.singular_values_figure([g])
    ax = fig.axes[0]
    styles = [_linestyle(ln) for ln in ax.get_lines()]
    assert styles.count("solid") == 3 and styles.count("dashed") == 3 and styles.count("dotted") == 3
    labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert labels == ["two-layer σᵢ(X(t))", "one-layer", "σᵢ(Y)"]
    # the legend sits below the panels, not over the early curves
    assert ax.get_legend() is None and [t.get_text() for t in fig.legends[0].get_texts()] == labels
    dotted = [ln.get_ydata()[0] for ln in ax.get_lines() if _linestyle(ln) == "dotted"]
    np.testing.assert_allclose(dotted, np.linalg.svd(g.state["Y"], compute_uv=False))
    solid = [ln for ln in ax.get_lines() if _linestyle(ln) == "solid"]
    np.testing.assert_allclose(solid[0].get_ydata(), g.curves[0]["singular_values"][:, 0])


def test_regularized_figure_is_red_dashed_vs_black_solid_and_needs_a_fit():
    groups = [_group(1.0, r, n_seeds=3, fit=True) for r in (100.0, 200.0)]
    for g, k in zip(groups, (50, 100)):
        g.label = f"k={k}"
    fig = plots.regularized_figure(groups)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    for ax, g in zip(fig.axes, groups):
        general, reg = ax.get_lines()
        assert _linestyle(general) == "dashed" and general.get_color() == "tab:red"
        assert _linestyle(reg) == "solid" and reg.get_color() == "k"
        np.testing.assert_allclose(reg.get_ydata(), np.mean([c["error_regularized_fit"] for c in g.curves], axis=0))
        assert "λ₀ fit" in ax.get_title()
    with pytest.raises(PlotError, match="fit_lambda0"):
        plots.regularized_figure([_group(1.0, 2.0)])


def _metric_rows() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for scale in (0.01, 0.1, 1.0):
        for k in (50, 100, 200):
            for seed in range(4):
                rows.append(
                    {
                        "init_scale": scale,
                        "k": k,
                        "lambda0": 0.0,
                        "seed": seed,
                        "status": "done",
                        "speedup": 1 + 10 * scale + rng.random(),
                        "lambda0_fit": 2.2 * k + rng.random(),
                    }
                )
    return pd.DataFrame(rows)


def test_lambda0_figure_plots_group_means_against_k():
    df = _metric_rows()
    fig = plots.lambda0_figure(df, x="k")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "k" and ax.get_ylabel() == "lambda0_fit"
    mean_line = [ln for ln in ax.get_lines() if ln.get_marker() == "o"][0]
    expect = df.groupby("k")["lambda0_fit"].mean()
    np.testing.assert_allclose(np.asarray(mean_line.get_xdata(), float), expect.index.to_numpy(float))
    np.testing.assert_allclose(np.asarray(mean_line.get_ydata(), float), expect.to_numpy(float))


def test_speedup_figure_one_series_per_group_and_reference_at_one(tmp_path):
    df = _metric_rows()
    fig = plots.speedup_figure(df, x="init_scale", by=["k"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "init_scale"
    means = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
    assert len(means) == 3  # k = 50, 100, 200
    ref = [ln for ln in ax.get_lines() if _linestyle(ln) == "dashed"]
    assert len(ref) == 1 and np.allclose(ref[0].get_ydata(), 1.0)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == sorted(["k=50", "k=100", "k=200", "one-layer (no acceleration)"])
    # default x: the first axis that varies
    assert plots.speedup_figure(df).axes[0].get_xlabel() == "init_scale"
    img = imread(plots.save_png(fig, tmp_path / "s.png", dpi=80))
    assert img.shape[:2] == tuple(round(v) for v in fig.get_size_inches()[::-1] * 80)
    with pytest.raises(PlotError, match="no result field"):
        plots.metric_figure(df, "speedup", "nonexistent")


def test_split_groups_defaults_to_the_axes_that_vary():
    df = _metric_rows()
    groups = plots.split_groups(df)
    assert len(groups) == 9 and groups[0].label == "init_scale=0.01, k=50"
    assert [g.label for g in plots.split_groups(df, ["k"])] == ["k=50", "k=100", "k=200"]
    with pytest.raises(PlotError):
        plots.split_groups(df, ["nope"])


def test_cli_offers_every_plot_kind():
    from flowsweep.service import cli

    assert cli.PLOT_KINDS == plots.KINDS


def test_lambda0_figure_without_fits_says_how_to_get_them():
    df = _metric_rows().assign(lambda0_fit=None)
    with pytest.raises(PlotError, match="fit_lambda0"):
        plots.lambda0_figure(df)


def _deep_rows():
    """Two init scales x depths 1..4 x 3 seeds with known times and plateau lengths."""
    rows, curves = [], []
    pid = 0
    for scale in (0.01, 0.1):
        for L in (1, 2, 3, 4):
            for seed in range(3):
                pid += 1
                plateau = 0.5 * L * (2 if scale == 0.01 else 1) + 0.1 * seed
                t = np.linspace(0, 20, 401)
                e = np.where(t < plateau, 1.0, np.exp(-(t - plateau)))  # flat, then falls
                rows.append(
                    {
                        "point_id": pid,
                        "status": "done",
                        "model": "deep",
                        "depth": L,
                        "init_scale": scale,
                        "lambda0": 0.0,
                        "k": 20,
                        "seed": seed,
                        "time_to_tol": plateau + np.log(100),
                    }
                )
                curves.append({"t": t, "error": e})
    return pd.DataFrame(rows), curves


def test_plateau_length_is_the_first_fall_below_ninety_percent():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    assert plots.plateau_length(t, np.array([2.0, 1.9, 1.7, 0.1])) == 2.0
    assert np.isnan(plots.plateau_length(t, np.array([2.0, 1.95, 1.9, 1.85])))


def test_depth_and_plateau_figures_plot_means_against_depth(tmp_path):
    df, curves = _deep_rows()
    for fig, col in ((plots.depth_figure(df), "time_to_tol"), (plots.plateau_figure(df, curves), None)):
        ax = fig.axes[0]
        assert ax.get_xlabel() == "depth"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == ["init_scale=0.01", "init_scale=0.1"]
        means = [c for c in ax.containers]  # errorbar containers, one per series
        for cont, scale in zip(means, (0.01, 0.1)):
            x, y = cont.lines[0].get_data()
            sub = df[df.init_scale == scale]
            expect = (
                sub.groupby("depth")["time_to_tol"].mean()
                if col
                else sub.groupby("depth")["time_to_tol"].mean() - np.log(100) + np.log(1 / 0.9)
            )
            np.testing.assert_allclose(np.asarray(x, float), [1, 2, 3, 4])
            # the plateau is read off the recorded curve: its grid (0.05) bounds the difference
            np.testing.assert_allclose(np.asarray(y, float), expect.values, atol=1e-9 if col else 0.05)
        plots.save_png(fig, tmp_path / "deep.png")
    with pytest.raises(PlotError, match="depth"):
        plots.depth_figure(df.drop(columns=["depth"]).assign(depth=None))


def test_error_figure_names_the_deep_models_layers():
    g = _group(0.1, 2.0)
    deep = Group(label="depth=3", rows=g.rows.assign(model="deep", depth=3), curves=g.curves)
    fig = plots.error_figure([deep, g])
    assert fig.axes[0].get_lines()[0].get_label().startswith("3-layer")
    assert fig.axes[1].get_lines()[0].get_label().startswith("two-layer")


def test_phase_figure_colours_cells_by_median_rate_and_draws_the_boundary(tmp_path):
    """Table 2's phase diagram: one square per (σ, λ₀) cell, coloured by log2 of the median rate_fit
    over seeds (positive = faster than the one-layer rate 1), a ring where seeds disagree, and the
    boundary 4σ² + λ₀² = 1."""
    rows = []
    for s in (0.1, 0.3, 0.8):
        for lam in (0.0, 2.0):
            for seed, wobble in enumerate((0.9, 1.0, 1.1)):
                rows.append(
                    {"sigma_min": s, "lambda0": lam, "seed": seed, "rate_fit": np.sqrt(4 * s * s + lam * lam) * wobble}
                )
    df = pd.DataFrame(rows)
    fig = plots.phase_figure(df)
    ax = fig.axes[0]
    squares = ax.collections[0]
    assert len(squares.get_offsets()) == 6
    colours = dict(zip(map(tuple, np.round(squares.get_offsets(), 6)), squares.get_array()))
    assert colours[(0.1, 0.0)] == pytest.approx(np.log2(0.2))  # median rate 0.2 < 1: slower
    assert colours[(0.8, 2.0)] == pytest.approx(np.log2(np.sqrt(4 * 0.64 + 4)))
    ring = ax.collections[1]  # 0.3, 0: rates 0.54..0.66, all < 1
    assert len(ring.get_offsets()) == 0
    (boundary,) = [ln for ln in ax.get_lines() if ln.get_label() == "4σ² + λ₀² = 1"]
    x, y = boundary.get_data()
    np.testing.assert_allclose(4 * x**2 + y**2, 1.0, atol=1e-12)
    plots.save_png(fig, tmp_path / "phase.png")
    # a cell whose seeds fall on both sides of 1 is ringed
    df2 = pd.DataFrame({"sigma_min": [0.5] * 3, "lambda0": [0.1] * 3, "rate_fit": [0.9, 1.05, 1.2]})
    ring2 = plots.phase_figure(df2).axes[0].collections[1]
    assert len(ring2.get_offsets()) == 1
    with pytest.raises(PlotError, match="rate_fit"):
        plots.phase_figure(df.drop(columns=["rate_fit"]))
