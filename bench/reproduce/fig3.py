"""Fig. 3: the sigmoid output model, balanced against imbalanced starts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .common import Client, Item, done_results, fetch_all, frac, g, mean_std, median_iqr, plots, save, table


def fig3_item(client: Client, sw: dict, out: Path, written: list[Path]) -> Item:
    df = done_results(client, sw["fig3_balanced"], sw["fig3_gaussian"])
    pids = df["point_id"].tolist()
    cur = dict(zip(pids, fetch_all(client.curves, pids)))
    groups = plots.split_groups(df, ["init"])
    for grp in groups:
        grp.curves = [cur[p] for p in grp.rows["point_id"]]
    f = save(plots.error_figure(groups), out, "repro-fig3-sigmoid.png", written)
    d, m, k, s = 10, 10, 100, float(df["init_scale"].iloc[0])
    ref = math.sqrt(s**4 * ((d + m) * (k * k + k)))
    rows = []
    for init in ("balanced", "gaussian"):
        x = df[df["init"] == init]
        rows.append(
            [
                init,
                mean_std(x["q0_norm"]),
                median_iqr(x["time_to_tol"]),
                median_iqr(x["final_error"]),
                median_iqr(x["final_error_linear"]),
                frac(pd.to_numeric(x["time_to_tol_linear"]).notna()),
            ]
        )
    pair = df[df["init"] == "balanced"].merge(df[df["init"] == "gaussian"], on="seed", suffixes=("_b", "_g"))
    # a run that never reaches tol within the horizon is slower than one that does
    tb = pd.to_numeric(pair["time_to_tol_b"]).fillna(np.inf).to_numpy()
    tg = pd.to_numeric(pair["time_to_tol_g"]).fillna(np.inf).to_numpy()
    both = np.isfinite(tb) & np.isfinite(tg)
    ratio = tb[both] / tg[both]
    faster = frac(tg < tb)
    censored = int((~np.isfinite(tb) & np.isfinite(tg)).sum())
    lin_lag = all(pd.to_numeric(df["final_error"]) < pd.to_numeric(df["final_error_linear"]))
    ok = (np.mean(tg < tb) > 0.5) and lin_lag
    # the paper writes ‖Q0‖_2: which norm gives its 4.6? the spectral norm, from the stored state
    g_ids = df.loc[df["init"] == "gaussian", "point_id"].tolist()
    spec = []
    for st in fetch_all(client.state, g_ids):
        Q0 = st["U0"].T @ st["U0"] - st["V0"].T @ st["V0"]
        spec.append(np.linalg.norm(Q0, 2))
    return Item(
        name="Fig. 3 — sigmoid output, balanced vs imbalanced",
        claim="‖Q0‖ = 0 vs 4.6; the imbalanced two-layer model trains faster (the linear conclusions carry over)",
        measured=f"‖Q0‖ balanced {rows[0][1]}, gaussian {rows[1][1]} (reference √E‖Q0‖² = {g(ref)}); "
        f"gaussian reaches tol 0.01 first in {faster} seed-paired runs (time_to_tol ratio "
        f"balanced / gaussian median {g(np.median(ratio)) if len(ratio) else '—'}"
        + (f"; {censored} balanced runs never reach it in 500 iterations" if censored else "")
        + ")",
        verdict="matches" if ok else "partly",
        figures=[
            (
                f,
                "Fig. 3: e(t) = ‖Y − φ(A U Vᵀ)‖/‖Y‖ of the two-layer and one-layer sigmoid models "
                "(mean ± std over seeds), balanced (Q0 = 0) vs gaussian init",
            )
        ],
        details=[
            table(
                [
                    "init",
                    "‖Q0‖",
                    "two-layer time_to_tol",
                    "two-layer final e",
                    "one-layer final e",
                    "one-layer reaches tol",
                ],
                rows,
            ),
            f"Paired by seed (same A, W*, Y): time_to_tol(balanced) / time_to_tol(gaussian) = "
            f"{median_iqr(ratio)} where both reach tol; gaussian first in {faster} pairs"
            + (f" ({censored} balanced runs do not reach tol within the horizon)" if censored else "")
            + ".",
        ],
        notes=[
            "N = 1000, d = 10, k = 100, weights N(0, 0.1²). The paper does not state the step size; "
            "flowsweep uses η = 1e-3 for 500 iterations (the paper's x axis) on the summed loss. "
            f"Reference ‖Q0‖: E‖Q0‖_F² = σ⁴ (2d)(k² + k) = {g(ref)}² at σ = 0.1; the paper's 4.6 is one "
            f"draw. The paper writes ‖Q0‖₂, but the spectral norm is {mean_std(spec)} (from the stored "
            "U0, V0), so the 4.6 matches the Frobenius norm. Its caption's 'N(0, 10⁻¹)' must mean a "
            "standard deviation of 0.1: a variance of 0.1 would give √E‖Q0‖_F² ≈ "
            f"{g(math.sqrt(0.1**2 * 2 * d * (k * k + k)))}.",
            "The loss depends on U, V only through UVᵀ, so Q = UᵀU − VᵀV is conserved by the flow here "
            f"too (gd drifts by O(η)): `conservation_drift` (max_t ‖Q(t) − Q0‖ relative to ‖U0‖² + ‖V0‖²) is "
            f"{median_iqr(df.loc[df['init'] == 'balanced', 'conservation_drift'])} for the balanced and "
            f"{median_iqr(df.loc[df['init'] == 'gaussian', 'conservation_drift'])} for the gaussian start.",
        ],
    )
