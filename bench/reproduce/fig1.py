"""Fig. 1: ‖Q0‖, error curves and speed-up (with balanced controls), singular values learned one
by one or together (a scale-free measure), predicted rates on Gaussian points, gd against the flow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from flowsweep.status import PointStatus

from .common import (
    PAPER_ITERATIONS,
    Client,
    Item,
    _combine,
    censored,
    cut,
    done_results,
    fetch_all,
    finite,
    frac,
    g,
    median_iqr,
    plots,
    save,
    summary_check,
    table,
)

SETTLE_REL = 0.10  # a singular value is "learned" once within ±10 % of σ_i(Y) for good


def settling_times(t: np.ndarray, sv: np.ndarray, target: np.ndarray, rel: float = SETTLE_REL) -> np.ndarray:
    """Per singular value i: the first record time from which |σ_i(X) − σ_i(Y)| ≤ rel·σ_i(Y) holds to
    the end of the horizon (inf when it does not). Growing from a small start this is the first time
    σ_i(X) reaches 90 % of σ_i(Y); from a large start (σ = 1: ‖X0‖ ≫ ‖Y‖) it is when it has come
    down to within 10 %."""
    ok = np.abs(sv - target[None, :]) <= rel * target[None, :]  # (T, r)
    T = len(t)
    out = np.full(sv.shape[1], np.inf)
    for i in range(sv.shape[1]):
        bad = np.flatnonzero(~ok[:, i])
        if not len(bad):
            out[i] = t[0]
        elif bad[-1] < T - 1:
            out[i] = t[bad[-1] + 1]
    return out


def q0_item(client: Client, sw: dict) -> Item:
    sid = sw["fig1_gd"]["id"]
    df = client.results(sid)
    done = df[df["status"] == PointStatus.DONE].copy()
    summ = summary_check(client, sid, df, ["init_scale"], "q0_norm")
    scales = sorted(done["init_scale"].unique())
    m, n, k = 5, 10, 50
    coef = math.sqrt((m + n) * (k * k + k) + k * (m - n) ** 2)  # E‖Q0‖² = s⁴[...] → RMS = coef·s²
    paper = {0.01: 0.02, 0.1: 1.83, 1.0: None}
    rows, verdicts = [], []
    for s in scales:
        q = finite(done.loc[done["init_scale"] == s, "q0_norm"])
        srow = summ[np.isclose(pd.to_numeric(summ["init_scale"]), s)]
        q_mean = float(srow["q0_norm_mean"].iloc[0]) if len(srow) else q.mean()
        q_std = float(srow["q0_norm_std"].iloc[0]) if len(srow) else q.std(ddof=1)
        rms = math.sqrt(np.mean(q**2))
        ref = coef * s * s
        p = paper.get(round(s, 6))
        if p is None:
            v = "n/a (paper gives no value)"
        else:
            z = abs(p - q_mean) / q_std
            v = "matches" if z <= 2 else ("partly" if abs(p - q_mean) <= 0.2 * q_mean else "does not")
            verdicts.append(v)
            v += f" ({z:.1f} std from the mean)"
        rows.append(
            [
                g(s),
                "—" if p is None else g(p),
                f"{g(q_mean)} ± {g(q_std, 2)} (n = {len(q)})",
                g(rms),
                g(ref),
                f"{100 * (rms / ref - 1):+.1f} %",
                v,
            ]
        )
    q_item = Item(
        name="Fig. 1 — ‖Q0‖ at σ = 1e-2, 1e-1, 1",
        claim="‖Q0‖ = 0.02, 1.83, — (one draw each)",
        measured="; ".join(f"σ={g(s)}: {r[2]}" for s, r in zip(scales, rows)),
        verdict=_combine(verdicts),
        details=[
            table(
                [
                    "σ",
                    "paper",
                    "flowsweep mean ± std (/summary)",
                    "RMS √mean‖Q0‖²",
                    "reference √E‖Q0‖² = 198.7 σ²",
                    "RMS vs reference",
                    "verdict",
                ],
                rows,
            )
        ],
        notes=[
            f"Independent reference: for U0 ∈ R^{{m×k}}, V0 ∈ R^{{n×k}} with N(0, σ²) entries, "
            f"E‖U0ᵀU0 − V0ᵀV0‖²_F = σ⁴[(m+n)(k²+k) + k(m−n)²] = ({coef:.1f} σ²)² for m=5, n=10, k=50. "
            "The paper's 1.83 at σ = 0.1 is one draw: it lies within the seed spread of ‖Q0‖ "
            "(the RMS over seeds agrees with the reference to sampling error)."
        ],
    )
    return q_item


def fig1_items(client: Client, sw: dict, out: Path, written: list[Path]) -> tuple[list[Item], dict]:
    sid, bid = sw["fig1_gd"]["id"], sw["fig1_balanced"]["id"]
    df = client.results(sid)
    done = df[df["status"] == PointStatus.DONE].copy()
    bal = done_results(client, sw["fig1_balanced"])
    scales = sorted(done["init_scale"].unique())
    q_item = q0_item(client, sw)

    # --- error curves and speed-up (Fig. 1 top), balanced starts at the same scale as the control
    pids = done["point_id"].tolist()
    curves = dict(zip(pids, fetch_all(client.curves, pids)))
    states = dict(zip(pids, fetch_all(client.state, pids)))
    bcurves = dict(zip(bal["point_id"], fetch_all(client.curves, bal["point_id"])))
    t_paper = PAPER_ITERATIONS * float(done["eta"].iloc[0])
    groups = plots.split_groups(done, ["init_scale"])
    for grp in groups:
        grp.curves = [cut(curves[p], t_paper) for p in grp.rows["point_id"]]
        grp.state = states[int(grp.rows["point_id"].iloc[0])]
    f_err = save(plots.error_figure(groups), out, "repro-fig1-error.png", written)
    for grp in groups:  # one seed per panel for the singular values
        grp.rows = grp.rows.head(1)
        grp.curves = grp.curves[:1]
    f_sv = save(plots.singular_values_figure(groups), out, "repro-fig1-singular-values.png", written)
    both = pd.concat([done.assign(start="gaussian"), bal.assign(start="balanced (Q0 = 0)")], ignore_index=True)
    f_sp = save(
        plots.metric_figure(
            both, "speedup", "init_scale", by=["start"], reference=1.0, reference_label="one-layer (no acceleration)"
        ),
        out,
        "repro-fig1-speedup.png",
        written,
    )
    summ_g = client.summary(sid, by=["init_scale"])
    summ_b = client.summary(bid, by=["init_scale"])
    cens_g, cens_b = censored(summ_g, "speedup"), censored(summ_b, "speedup")

    def at(s, summ, cens, rows):
        """censored / n for σ = s: /summary's count where it has `speedup_count`, else the rows'."""
        sel = np.isclose(pd.to_numeric(summ["init_scale"]), s)
        c = cens[sel]
        if len(c) and np.isfinite(c.iloc[0]):
            return f"{int(c.iloc[0])}/{int(summ.loc[sel, 'count'].iloc[0])}"
        return f"{int(pd.to_numeric(rows['speedup']).isna().sum())}/{len(rows)} (rows)"

    err_rows, med_speed, med_bal = [], [], []
    for s in scales:
        sel = done[done["init_scale"] == s]
        b = bal[bal["init_scale"] == s]
        e2 = np.array([np.interp(t_paper, curves[p]["t"], curves[p]["error"]) for p in sel["point_id"]])
        e1 = np.array([np.interp(t_paper, curves[p]["t"], curves[p]["error_linear"]) for p in sel["point_id"]])
        eb = np.array([np.interp(t_paper, bcurves[p]["t"], bcurves[p]["error"]) for p in b["point_id"]])
        sp, spb = finite(sel["speedup"]), finite(b["speedup"])
        med_speed.append(np.median(sp) if len(sp) else np.nan)
        med_bal.append(np.median(spb) if len(spb) else np.nan)
        err_rows.append(
            [
                g(s),
                median_iqr(sel["q0_norm"]),
                median_iqr(e2),
                median_iqr(eb),
                median_iqr(e1),
                median_iqr(sel["speedup"]),
                at(s, summ_g, cens_g, sel),
                median_iqr(b["speedup"]),
                at(s, summ_b, cens_b, b),
            ]
        )
    monotone = all(np.diff(med_speed) > 0) and med_speed[-1] > 1
    # the control: at the same scale, does the imbalance (not the scale) make it faster?
    control = [mg > mb for mg, mb in zip(med_speed, med_bal) if np.isfinite(mg) and np.isfinite(mb)]
    e_item = Item(
        name="Fig. 1 — error curves, one- vs two-layer (with balanced controls)",
        claim="the two-layer model converges faster the more imbalanced the start (larger ‖Q0‖, "
        "Fig. 1a→c), 'significantly faster' than the one-layer model at σ = 1",
        measured="median speedup (time_to_tol_linear / time_to_tol, tol 0.01), gaussian vs balanced start "
        "at the same σ: " + ", ".join(f"σ={g(s)}: {g(v)} vs {g(w)}" for s, v, w in zip(scales, med_speed, med_bal)),
        verdict=("matches" if monotone and all(control) else "partly" if monotone or any(control) else "does not"),
        figures=[
            (
                f_err,
                "Fig. 1 top: e(t) of the two-layer model (mean ± std over seeds) and the "
                "one-layer model from the same X(0), first 4000 iterations",
            ),
            (
                f_sp,
                "speedup against σ, gaussian (imbalanced) and balanced (Q0 = 0) starts; the title "
                "counts points whose run never reached tol (censored)",
            ),
        ],
        details=[
            table(
                [
                    "σ",
                    "‖Q0‖ (gaussian)",
                    "two-layer e at it. 4000",
                    "balanced e at it. 4000",
                    "one-layer e at it. 4000",
                    "speedup gaussian",
                    "censored (no time_to_tol) / n",
                    "speedup balanced",
                    "censored / n",
                ],
                err_rows,
            )
        ],
        notes=[
            "Speedup grows with σ for both starts, so σ alone (the size of the weights) explains part of "
            "it. The control separates the two: at the same σ the balanced start has Q0 = 0 exactly. "
            "'censored' counts runs whose e(t) never reached tol within the horizon (t = 10): their "
            "speedup is not missing but below time_to_tol_linear / 10; counts come from /summary's "
            "`speedup_count` where the service provides it, else from the result rows ('(rows)')."
        ],
    )

    # --- singular values learned one by one vs together (Fig. 1 bottom), scale-free
    sv_rows, tau_med, spread_med = [], [], []
    horizon = float(done["eta"].iloc[0]) * int(done["steps"].iloc[0])
    rec = float(done["eta"].iloc[0]) * 10
    spreads = []
    for _, r in done.iterrows():
        c, st = curves[r["point_id"]], states[r["point_id"]]
        target = np.linalg.svd(st["Y"], compute_uv=False)
        ts = settling_times(c["t"], np.atleast_2d(c["singular_values"]), target)
        fin = np.isfinite(ts).all()
        tau = -kendalltau(ts, target).statistic if fin else np.nan  # +1: largest first, in order
        spreads.append(
            {
                "init_scale": r["init_scale"],
                "t_first": ts.min(),
                "t_last": ts.max(),
                "order_tau": tau,
                "settle_spread_rel": (ts.max() - ts.min()) / ts.max() if fin else np.nan,
                "censored": not fin,
            }
        )
    sp = pd.DataFrame(spreads)
    for s in scales:
        x = sp[sp["init_scale"] == s]
        fin = x[~x["censored"]]
        tau_med.append(np.nanmedian(fin["order_tau"]) if len(fin) else np.nan)
        spread_med.append(np.nanmedian(fin["settle_spread_rel"]) if len(fin) else np.nan)
        sv_rows.append(
            [
                g(s),
                median_iqr(x["t_first"]),
                median_iqr(fin["t_last"]),
                median_iqr(fin["settle_spread_rel"], 2, True),
                median_iqr(fin["order_tau"], 2, True),
                frac(fin["order_tau"] > 0.99),
                frac(x["censored"]),
            ]
        )
    f_spread = save(
        plots.metric_figure(sp[~sp["censored"]], "settle_spread_rel", "init_scale"),
        out,
        "repro-fig1-settling-spread.png",
        written,
        ylabel="settling spread (t_last − t_first) / t_last",
    )
    f_tau = save(
        plots.metric_figure(sp[~sp["censored"]], "order_tau", "init_scale"),
        out,
        "repro-fig1-settling-order.png",
        written,
        ylabel="Kendall τ: settling order against σ_i(Y) order",
    )
    seq_small = tau_med[0] > 0.9 and spread_med[0] > 0.5
    # "together": the relative spread at the largest σ at most half that of the smallest
    together_large = spread_med[-1] < 0.5 * spread_med[0]
    sv_item = Item(
        name="Fig. 1 — singular values: one by one (small, balanced) vs together (imbalanced)",
        claim="σ = 0.01 (‖Q0‖ ≈ 0.02): components learned sequentially, largest first; larger ‖Q0‖: "
        "learned faster and together",
        measured="per point, the settling times t_i of σ_i(X(t)) (within ±10 % of σ_i(Y) for good): "
        "median Kendall τ of the settling order against the order of σ_i(Y) (+1 = largest first) "
        + ", ".join(f"σ={g(s)}: {v:.2f}" for s, v in zip(scales, tau_med))
        + "; median relative spread (t_last − t_first)/t_last "
        + ", ".join(f"σ={g(s)}: {v:.2f}" for s, v in zip(scales, spread_med)),
        verdict="matches"
        if seq_small and together_large and tau_med[-1] < tau_med[0]
        else ("partly" if seq_small or together_large else "does not"),
        figures=[
            (
                f_sv,
                "Fig. 1 bottom: singular values of X(t) (solid), of the one-layer model "
                "(dashed) and σ_i(Y) (dotted), seed 0, first 4000 iterations",
            ),
            (
                f_spread,
                "relative spread (t_last − t_first)/t_last of the 5 settling times per point "
                "(0 = together, → 1 = one after another)",
            ),
            (
                f_tau,
                "Kendall τ between the settling order and the order of σ_i(Y) per point (+1 = strictly largest first)",
            ),
        ],
        details=[
            table(
                [
                    "σ",
                    "first σ_i settled (t)",
                    "last σ_i settled (t)",
                    "(t_last − t_first)/t_last",
                    "order τ (+1 = largest first)",
                    "τ = 1",
                    "not all settled by t = " + g(horizon),
                ],
                sv_rows,
            )
        ],
        notes=[
            "Verdict rule: 'matches' needs the small start sequential (τ > 0.9, relative spread > 0.5), the "
            "order lost at σ = 1 (τ lower) and the relative spread at σ = 1 at most half the one at "
            "σ = 0.01; 'partly' when only some of that holds.",
            "Both measures are scale-free: τ compares orders only, and the spread is relative to the last "
            "settling time, so a faster run is not 'more together' merely because all its times are "
            f"smaller. Records every 10 iterations (t = {g(rec)}), so settling times at σ = 1 (a few "
            "dozen iterations) are resolved. t_i is the first record time from which |σ_i(X(t)) − σ_i(Y)| "
            "≤ 0.1 σ_i(Y) holds up to the horizon; at σ = 1 the singular values start far above σ_i(Y) "
            "(‖X0‖ ≫ ‖Y‖) and t_i is when they have come down. Points where some σ_i never settles are "
            "counted, not used.",
        ],
    )
    rates = rates_item(client, sw, done)
    return [q_item, e_item, sv_item, rates], curves


def rates_item(client: Client, sw: dict, gd: pd.DataFrame) -> Item:
    """rate_lin (linearised error dynamics at the final state) against rate_fit on Gaussian points,
    where no theorem gives rate_pred."""
    fl = done_results(client, sw["fig1_flow"])
    rows, ok = [], []
    for label, df in (("gd", gd), ("flow", fl)):
        for s in sorted(df["init_scale"].unique()):
            x = df[df["init_scale"] == s]
            ratio = pd.to_numeric(x["rate_fit"]) / pd.to_numeric(x["rate_lin"])
            r = finite(ratio)
            ok.append(len(r) and abs(np.median(r) - 1) <= 0.1)
            rows.append(
                [
                    label,
                    g(s),
                    median_iqr(x["rate_fit"]),
                    median_iqr(x["rate_lin"]),
                    median_iqr(r, 3, True),
                    frac(np.abs(r - 1) <= 0.1),
                    frac(pd.to_numeric(x["rate_pred"]).isna()),
                ]
            )
    return Item(
        name="Predicted rates on Gaussian (Fig. 1) points: rate_lin against rate_fit",
        claim="(flowsweep's own check) the asymptotic rate is that of the linearised error dynamics "
        "Ė = −(UUᵀE + EVVᵀ) at the final state; no theorem of the paper predicts it for a Gaussian start",
        measured="median rate_fit / rate_lin: " + "; ".join(f"{r[0]} σ={r[1]}: {r[4].split(' [')[0]}" for r in rows),
        verdict="matches" if all(ok) else ("partly" if any(ok) else "does not"),
        details=[
            table(
                ["integrator", "σ", "rate_fit", "rate_lin", "rate_fit / rate_lin", "within ±10 %", "rate_pred null"],
                rows,
            )
        ],
        notes=[
            "rate_pred is null on every one of these points (fit_lambda0 off): before core 3 it was "
            "reported as |λ0| = 0. rate_lin takes U(T), V(T) at the end of the run and the modes the "
            "error excites at the last record above 1e-8; rate_fit fits the tail of e(t) over the second "
            "half of the horizon, where the slowest excited mode need not dominate yet — ratios above 1 "
            "mean the tail is still a mix of modes."
        ],
    )


def gd_flow_item(client: Client, sw: dict, gd_curves: dict) -> Item:
    gd, fl = done_results(client, sw["fig1_gd"]), done_results(client, sw["fig1_flow"])
    pair = fl.merge(gd, on=["init_scale", "seed", "k", "lambda0"], suffixes=("_flow", "_gd"))
    fl_curves = dict(zip(pair["point_id_flow"], fetch_all(client.curves, pair["point_id_flow"])))
    rows, verdicts, per_scale = [], [], []
    for s in sorted(pair["init_scale"].unique()):
        p = pair[pair["init_scale"] == s]
        d, rel, at = [], [], []
        for _, r in p.iterrows():
            a, b = gd_curves[r["point_id_gd"]], fl_curves[r["point_id_flow"]]
            L = min(len(a["t"]), len(b["t"]))
            if not np.allclose(a["t"][:L], b["t"][:L]):
                raise RuntimeError("gd and flow record grids differ")
            diff = np.abs(a["error"][:L] - b["error"][:L])
            i = int(np.nanargmax(diff))
            d.append(diff[i])
            rel.append(diff[i] / np.nanmax(b["error"][:L]))  # against the panel's height
            at.append(a["t"][i] / float(r["eta_gd"]))
        d, rel = np.array(d), np.array(rel)
        tt = finite(
            (pd.to_numeric(p["time_to_tol_gd"]) - pd.to_numeric(p["time_to_tol_flow"])).abs()
            / pd.to_numeric(p["time_to_tol_flow"])
        )
        worst_tt = tt.max() if len(tt) else np.nan
        v = "matches" if d.max() < 0.01 and (not len(tt) or worst_tt < 0.01) else "partly"
        verdicts.append(v)
        per_scale.append(f"σ={g(s)}: {g(d.max())} ({v})")
        rows.append(
            [g(s), median_iqr(d), g(d.max()), g(rel.max()), f"{np.median(at):.0f}", median_iqr(tt), g(worst_tt), v]
        )
    return Item(
        name="η = 1e-3 gradient descent vs gradient flow (Fig. 1 points)",
        claim="gd with η = 1e-3 approximates the flow; 'smaller step sizes did not lead to a discernible change'",
        measured="worst |e_gd(t) − e_flow(t)| over t and seeds: " + ", ".join(per_scale),
        verdict=_combine(verdicts),
        details=[
            table(
                [
                    "σ",
                    "max_t |e_gd − e_flow| per point",
                    "worst point",
                    "worst / max_t e(t) (panel height)",
                    "iteration of the max (median)",
                    "|Δ time_to_tol| / time_to_tol_flow",
                    "worst",
                    "verdict",
                ],
                rows,
            )
        ],
        notes=[
            "`flow` is the exact gradient flow by an adaptive ODE solver (rtol ≤ 1e-9) on the same record "
            "grid; same seeds, so the same Y, U0, V0. A scale 'matches' when the curves differ by less "
            "than 0.01 in relative error everywhere and time_to_tol by less than 1 %.",
            "Where gd deviates (σ = 1) it is in the first few dozen iterations: ‖U0‖₂², ‖V0‖₂² are of "
            "order (√k + √n)² σ² ≈ 100, so η times the fastest rate is ~0.1–0.2 and explicit Euler lags "
            "the flow's very fast initial drop (e falls from ~7 to ~1 in 20 iterations). The gap is at most about "
            "2 % of that panel's height — hardly discernible on a plot like the paper's — but it is there in "
            "the numbers (time_to_tol a couple of per cent later). For σ ≤ 0.1 gd and the flow agree to "
            "the third decimal.",
        ],
    )
