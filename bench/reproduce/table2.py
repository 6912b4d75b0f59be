"""Table 2 as a phase diagram over (σ, λ0): spectral starts, exact flow, judged by rate_fit against the
one-layer rate 1, with the boundary 4σ² + λ0² = 1 of eq. (16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import Client, Item, done_results, finite, frac, g, median_iqr, plots, save, table


def table2_item(client: Client, sw: dict, out: Path, written: list[Path]) -> Item:
    df = done_results(client, sw["phase"])
    spec = sw["phase"].get("spec") or {}
    sv_min = min(spec.get("y_singular_values") or [1.0])
    df["sigma_min"] = pd.to_numeric(df["data_scale"]) * sv_min
    lam = pd.to_numeric(df["lambda0"])
    df["theory_rate"] = np.sqrt(4 * df["sigma_min"] ** 2 + lam**2)
    df["rate_ratio"] = pd.to_numeric(df["rate_fit"]) / pd.to_numeric(df["rate_pred"])
    f_phase = save(plots.phase_figure(df), out, "repro-table2-phase.png", written)
    cells = df.groupby(["sigma_min", "lambda0"])
    rows, agree, near = [], [], []
    for (s, l0), x in cells:
        rf = finite(x["rate_fit"])
        med = np.median(rf) if len(rf) else np.nan
        theory = float(np.sqrt(4 * s * s + l0 * l0))
        side_fit, side_theory = med > 1, theory > 1
        margin = abs(theory - 1)
        (agree if margin > 0.05 else near).append(side_fit == side_theory)
    # the table: the four corners of the paper's Table 2 plus the cells next to the boundary
    corners = {
        ("small σ", "λ0 ≈ 0"): (0.15, 0.0),
        ("small σ", "large λ0"): (0.15, 3.0),
        ("large σ", "λ0 ≈ 0"): (1.2, 0.0),
        ("large σ", "large λ0"): (1.2, 3.0),
    }
    paper = {
        ("small σ", "λ0 ≈ 0"): "✗",
        ("small σ", "large λ0"): "✓",
        ("large σ", "λ0 ≈ 0"): "✓",
        ("large σ", "large λ0"): "✓",
    }
    corner_ok = []
    for key, (s, l0) in corners.items():
        x = df[np.isclose(df["sigma_min"], s) & np.isclose(lam, l0)]
        rf = finite(x["rate_fit"])
        got = "✓" if len(rf) and np.median(rf) > 1 else "✗"
        corner_ok.append(got == paper[key])
        rows.append(
            [
                key[0] + f" (σ = {g(s)})",
                key[1] + f" (λ0 = {g(l0)})",
                paper[key],
                f"{got} {median_iqr(x['rate_fit'])}",
                g(float(np.sqrt(4 * s * s + l0 * l0))),
                median_iqr(x["rate_ratio"], 4, True),
                median_iqr(x["speedup"]),
                frac(pd.to_numeric(x["rate_fit"]).isna()),
            ]
        )
    ratio_all = finite(df["rate_ratio"])
    verdict = "matches" if all(corner_ok) and all(agree) else "partly" if any(corner_ok) else "does not"
    return Item(
        name="Table 2 — acceleration as a phase diagram over (σ, λ0)",
        claim="acceleration (✓) unless σ small and λ0 ≈ 0 (✗); rate √(4σ_i² + λ0²) per component (eq. 16), "
        "so the boundary against the one-layer rate 1 is 4σ² + λ0² = 1",
        measured=f"median rate_fit on the correct side of 1 in {sum(agree)}/{len(agree)} (σ, λ0) cells at "
        f"least 5 % from the boundary ({sum(near)}/{len(near)} of the cells within 5 %); the four "
        f"corners as the paper: {sum(corner_ok)}/4; rate_fit / rate_pred median "
        f"{np.median(ratio_all):.4f} over {len(ratio_all)} points",
        verdict=verdict,
        figures=[
            (
                f_phase,
                "Table 2 as a phase diagram: median rate_fit over seeds per (σ, λ0) cell against "
                "the one-layer rate 1 (red faster, blue slower), with 4σ² + λ0² = 1 dashed",
            )
        ],
        details=[
            table(
                [
                    "σ",
                    "λ0",
                    "paper",
                    "rate_fit > 1 (median [IQR])",
                    "√(4σ² + λ0²)",
                    "rate_fit / rate_pred",
                    "speedup at tol 0.01",
                    "rate_fit null",
                ],
                rows,
            )
        ],
        notes=[
            "Y = σ Φ Ψᵀ with Φ, Ψ from the data seed (m = 2, n = 3: `y_singular_values` [1, 1] and "
            "`data_scale` σ), so every component has the same σ and the regime is set by the data, not "
            "by the shape of a Gaussian Y as in earlier reports. Spectral start with ū v̄ = 0.01, exact "
            "gradient flow to t = 400, records every t = 0.2; `rate_fit` fits the tail of e(t) above the "
            "solver's noise (1e-8).",
            "The judgement is the asymptotic rate against the one-layer rate 1, which is what Table 2 is "
            "about. `speedup` at tol 0.01 also counts the delay of the small start (the logistic growth "
            "from ū v̄ = 0.01 to σ), so it can be below 1 where the rate is above 1 (small σ, large λ0).",
        ],
    )
