"""Corollary 1 and Proposition 2: the symmetric model converges to Y₊ at rate 4·σ_min."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import Client, Item, done_results, fetch_all, finite, frac, g, median_iqr, plots, save, table


def symmetric_item(client: Client, sw: dict, out: Path, written: list[Path]) -> Item:
    df = done_results(client, sw["sym_spectral"], sw["sym_gaussian"])
    df["rate_ratio"] = pd.to_numeric(df["rate_fit"]) / pd.to_numeric(df["rate_pred"])
    pids = df["point_id"].tolist()
    sts = dict(zip(pids, fetch_all(client.state, pids)))
    # Corollary 1: the limit is the PSD projection of Y, so e(t) tends to ‖Y − Y₊‖/‖Y‖, not 0
    psd_gap = []
    for p in pids:
        w = np.linalg.eigvalsh(sts[p]["Y"])
        psd_gap.append(np.linalg.norm(np.minimum(w, 0)) / np.linalg.norm(w))
    df["final_error_expected"] = psd_gap
    df["psd_limit_dev"] = (pd.to_numeric(df["final_error"]) - df["final_error_expected"]).abs()
    f = save(
        plots.metric_figure(
            df, "rate_ratio", "init_scale", by=["init"], reference=1.0, reference_label="rate_fit = 4 σ_min"
        ),
        out,
        "repro-symmetric-rate.png",
        written,
        ylabel="rate_fit / rate_pred (rate_pred = 4 σ_min)",
    )
    rows = []
    within = []
    for init in ("spectral", "gaussian"):
        for s in sorted(df["init_scale"].unique()):
            x = df[(df["init"] == init) & (df["init_scale"] == s)]
            r = finite(x["rate_ratio"])
            within.append(np.median(r))
            rows.append(
                [
                    init,
                    g(s),
                    median_iqr(x["rate_fit"]),
                    median_iqr(x["rate_pred"]),
                    median_iqr(r, 4, True),
                    frac(np.abs(r - 1) <= 0.05),
                    frac(r >= 0.95),
                    g(finite(x["psd_limit_dev"]).max()),
                    g(finite(x["closed_form_error"]).max()) if len(finite(x["closed_form_error"])) else "—",
                ]
            )
    ok = all(abs(w - 1) <= 0.05 for w in within)
    return Item(
        name="Corollary 1 and Proposition 2 — symmetric model, rate 4·σ_min",
        claim="X(t) → Y₊ (PSD projection of Y) at rate O(e^{−4σ_min t}), σ_min = min_i|σ_i(Y)|, for "
        "spectral (Cor. 1) and any PSD start (Prop. 2)",
        measured="rate_fit / rate_pred, median [IQR]: " + "; ".join(f"{r[0]} σ={r[1]}: {r[4]}" for r in rows),
        verdict="matches" if ok else "partly",
        figures=[(f, "rate_fit / (4 σ_min) for the symmetric model, spectral and gaussian starts")],
        details=[
            table(
                [
                    "init",
                    "σ",
                    "rate_fit",
                    "rate_pred = 4σ_min",
                    "rate_fit / rate_pred",
                    "within ±5 %",
                    "≥ 0.95 (bound holds)",
                    "max |final_error − ‖Y−Y₊‖/‖Y‖|",
                    "max closed_form_error",
                ],
                rows,
            )
        ],
        notes=[
            "Y = (A + Aᵀ)/2, m = 5, k = 10, exact gradient flow to t = 100. The symmetric flow converges "
            "to the PSD projection Y₊, so `rate_fit` is fitted to ‖X(t) − Y₊‖ and final_error tends to "
            "‖Y − Y₊‖/‖Y‖ (checked per point from the stored Y). Proposition 2 is an upper bound: a "
            "point converges faster than 4σ_min when the slowest eigencomponent starts (almost) at its "
            "limit — e.g. a negative eigenvalue whose component starts at σ² = 0.01 and hits the "
            "solver's noise floor before it dominates — so ratios above 1 are consistent with it; "
            "ratios well below 1 would not be."
        ],
    )
