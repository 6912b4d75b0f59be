"""Reproduce the paper's experiments through flowsweep itself and write docs/reproduction.md (issue 5).

    .venv/bin/python bench/reproduce.py                 # embedded service, fresh SQLite, ~3-6 min on 2 cores
    .venv/bin/python bench/reproduce.py --quick         # a few seeds per item: a smoke run (~1-2 min)
    .venv/bin/python bench/reproduce.py --url http://127.0.0.1:8000   # use a running service

Every number in the report goes through the product: the sweeps are POSTed over REST
(`service.client.Client`), run by the service's Ray workers, stored in the database, and read back
through the API (result rows, `/summary`, `/points/{id}/curves`, `/points/{id}/state`). Figures are
drawn with `service.plots`. Nothing here is tuned toward the paper's numbers: the sweep parameters are
the paper's where it states them, and the report says where a choice had to be made (horizon, data
shape of Table 2, step size of Fig. 3) and why.

Without `--url`, the script starts `flowsweep serve` as a subprocess on a free port with
FLOWSWEEP_DATABASE_URL pointing at a SQLite file in a temporary directory (and Ray's files under it),
and stops it at the end (`--keep` keeps the directory and its database).
"""
from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._service import ServiceProcess  # noqa: E402
from flowsweep.core.closed_forms import regularized_flow  # noqa: E402  (eq. (21), to check the other sign of λ0)
from flowsweep.core import PointConfig, initial_state, simulate  # noqa: E402  (the sign check of Fig. 2)
from flowsweep.core.fits import component_rates, regularized_loss  # noqa: E402  (flowsweep's own fits)
from flowsweep.service import plots  # noqa: E402
from flowsweep.service.client import Client, FlowsweepError, ServerUnavailable  # noqa: E402

COMMAND = ".venv/bin/python bench/reproduce.py"
PAPER_ITERATIONS = 4000          # the paper plots Figs. 1 and 2 over 4000 iterations
SIGN_CHECK_SEEDS = 5             # Fig. 2: seeds per k re-simulated to score the other sign of λ0
SETTLE_REL = 0.10                # a singular value is "learned" once within ±10 % of σ_i(Y) for good
# Seeds per item (per group of parameters). Chosen so the whole run stays well under ~10 min on a
# shared 2-core machine; --quick divides them for a smoke run.
SEEDS = {"fig1": 100, "fig1_flow": 30, "table2": 50, "fig2": 20, "fig3": 15, "symmetric": 40}


# ------------------------------------------------------------------------------------ the sweeps
def sweep_specs(seeds: dict[str, int]) -> dict[str, dict[str, Any]]:
    """The paper's experiments as flowsweep sweeps (SPEC §3). `data_seed` null: every seed draws its
    own Y (and A for sigmoid), so the spread is over data and initialisation together."""
    def rng(key):
        return {"range": [0, seeds[key]]}

    fig1 = {"model": "asymmetric", "init": "gaussian", "m": 5, "n": 10, "eta": 1e-3,
            # t = 10 (10,000 iterations): the paper's window is 4000 iterations (t = 4), where the
            # smallest singular values of the σ = 0.01 runs are often not learned yet; figures show
            # the first 4000 iterations, the settling times use the whole horizon.
            "steps": 10_000, "record_every": 20, "tol": 0.01,
            "axes": {"init_scale": [0.01, 0.1, 1.0], "k": [50], "lambda0": [0.0]}}
    # Table 2 regimes. The sweep format has no data-scale knob, so the regime is chosen through the
    # shape of Y ~ N(0,1): square 5x5 has a small σ_min (4σ_min² < 1 for most draws), wide 2x20 a
    # large one (σ_min ≈ √20 − √2). λ0 = 0 (balanced) vs 4 (4σ² + λ0² > 1 whatever σ).
    # Exact gradient flow (the table is a statement about the flow), horizon t = 100.
    table2 = {"model": "asymmetric", "init": "spectral", "integrator": "flow", "eta": 5e-3,
              "steps": 20_000, "record_every": 10, "tol": 0.01}
    return {
        "fig1_gd": {"name": "repro-fig1-gd", **fig1, "integrator": "gd",
                    "axes": {**fig1["axes"], "seed": rng("fig1")}},
        "fig1_flow": {"name": "repro-fig1-flow", **fig1, "integrator": "flow",
                      "axes": {**fig1["axes"], "seed": rng("fig1_flow")}},
        "table2_small": {"name": "repro-table2-square-5x5", **table2, "m": 5, "n": 5,
                         "axes": {"init_scale": [0.1], "k": [10], "lambda0": [0.0, 4.0],
                                  "seed": rng("table2")}},
        "table2_large": {"name": "repro-table2-wide-2x20", **table2, "m": 2, "n": 20,
                         "axes": {"init_scale": [0.1], "k": [40], "lambda0": [0.0, 4.0],
                                  "seed": rng("table2")}},
        # Fig. 2: σ = 1, η = 1e-5 and 4000 iterations as the paper (horizon t = 0.04).
        "fig2": {"name": "repro-fig2", "model": "asymmetric", "init": "gaussian", "integrator": "gd",
                 "m": 5, "n": 10, "eta": 1e-5, "steps": PAPER_ITERATIONS, "record_every": 20,
                 "fit_lambda0": True,
                 "axes": {"init_scale": [1.0], "k": [50, 100, 200], "seed": rng("fig2")}},
        # Fig. 3: N = 1000, d = 10, k = 100, weights N(0, 0.1²); the paper does not state η: we use
        # η = 1e-3 for 500 iterations (its x axis).
        **{f"fig3_{init}": {"name": f"repro-fig3-{init}", "model": "sigmoid", "init": init,
                            "integrator": "gd", "m": 10, "n": 10, "n_samples": 1000,
                            "eta": 1e-3, "steps": 500, "record_every": 5,
                            "axes": {"init_scale": [0.1], "k": [100], "seed": rng("fig3")}}
           for init in ("balanced", "gaussian")},
        # Corollary 1 (spectral) and Proposition 2 (any PSD start: gaussian U0), exact flow, t = 100.
        **{f"sym_{init}": {"name": f"repro-symmetric-{init}", "model": "symmetric", "init": init,
                           "integrator": "flow", "m": 5, "eta": 1e-2, "steps": 10_000,
                           "record_every": 10,
                           "axes": {"init_scale": [0.1, 1.0], "k": [10], "seed": rng("symmetric")}}
           for init in ("spectral", "gaussian")},
    }


# ------------------------------------------------------------------------------------ the service
class EmbeddedService(ServiceProcess):
    """`flowsweep serve` on a fresh SQLite file and a free port, stopped (SIGTERM, then SIGKILL of
    its process group) on exit."""

    def __init__(self, workdir: Path, cpus: int | None):
        exe = Path(sys.executable).with_name("flowsweep")
        cmd = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "flowsweep.service.server"]
        super().__init__(workdir, cpus, "reproduce.db", cmd)

    def log_tail(self, n: int = 4000) -> str:
        return self.log()[-n:]

    def wait_ready(self, client: Client, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flowsweep serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                # uvicorn binds after the app's start-up (Ray): until our log says it is listening,
                # an answer on the port would come from somebody else's service
                if "Uvicorn running on" not in self.log_tail(1_000_000):
                    raise ServerUnavailable("not listening yet")
                health = client.health()
            except FlowsweepError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flowsweep serve not ready after {timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.3)
                continue
            if client.sweeps(limit=1).get("count"):
                raise RuntimeError(f"the service on port {self.port} already has sweeps: it is not the "
                                   "fresh embedded one")
            return health


def run_sweeps(client: Client, specs: dict[str, dict], timeout: float) -> dict[str, dict]:
    """Submit every sweep at once (the runner interleaves them), then wait for all of them."""
    submitted = {key: client.submit(spec) for key, spec in specs.items()}
    total = sum(s["n_points"] for s in submitted.values())
    print(f"submitted {len(submitted)} sweeps, {total} points", flush=True)
    deadline = time.monotonic() + timeout
    states: dict[str, dict] = {}
    last = ""
    while True:
        states = {key: client.sweep(s["id"]) for key, s in submitted.items()}
        finished = sum(sum((st.get("counts") or {}).get(c) or 0
                           for c in ("done", "failed", "diverged", "cached")) for st in states.values())
        line = f"  {finished}/{total} points finished"
        if line != last:
            print(line, flush=True)
            last = line
        if all(st["status"] in ("done", "failed", "cancelled") for st in states.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweeps not finished after {timeout:.0f} s: {line}")
        time.sleep(2.0)
    bad = {k: st["status"] for k, st in states.items() if st["status"] != "done"}
    if bad:
        print(f"warning: sweeps not done: {bad}", file=sys.stderr)
    return {key: {**submitted[key], **states[key]} for key in submitted}


# ------------------------------------------------------------------------------------ statistics
def finite(x) -> np.ndarray:
    a = pd.to_numeric(pd.Series(x), errors="coerce").to_numpy(dtype=float)
    return a[np.isfinite(a)]


def g(v: float, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def mean_std(x, digits: int = 3) -> str:
    a = finite(x)
    if not len(a):
        return "— (n = 0)"
    return f"{g(a.mean(), digits)} ± {g(a.std(ddof=1) if len(a) > 1 else 0.0, 2)} (n = {len(a)})"


def median_iqr(x, digits: int = 3, fixed: bool = False) -> str:
    """median [Q1, Q3] (n); `fixed` prints `digits` decimals (ratios near 1: 1.0012, not 1)."""
    a = finite(x)
    if not len(a):
        return "— (n = 0)"
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    f = (lambda v: f"{v:.{digits}f}") if fixed else (lambda v: g(v, digits))
    return f"{f(med)} [{f(q1)}, {f(q3)}] (n = {len(a)})"


def frac(mask) -> str:
    m = np.asarray(mask, bool)
    return f"{int(m.sum())}/{len(m)}"


def settling_times(t: np.ndarray, sv: np.ndarray, target: np.ndarray, rel: float = SETTLE_REL) -> np.ndarray:
    """Per singular value i: the first record time from which |σ_i(X) − σ_i(Y)| ≤ rel·σ_i(Y) holds to
    the end of the horizon (inf when it does not). Growing from a small start this is the first time
    σ_i(X) reaches 90 % of σ_i(Y); from a large start (σ = 1: ‖X0‖ ≫ ‖Y‖) it is when it has come
    down to within 10 %."""
    ok = np.abs(sv - target[None, :]) <= rel * target[None, :]          # (T, r)
    T = len(t)
    out = np.full(sv.shape[1], np.inf)
    for i in range(sv.shape[1]):
        bad = np.flatnonzero(~ok[:, i])
        if not len(bad):
            out[i] = t[0]
        elif bad[-1] < T - 1:
            out[i] = t[bad[-1] + 1]
    return out


def cut(curves: dict, t_max: float) -> dict:
    """Curves restricted to t <= t_max (the paper's plotting window)."""
    keep = np.asarray(curves["t"]) <= t_max * (1 + 1e-9)
    return {k: (None if v is None else np.asarray(v)[keep]) for k, v in curves.items()}


def fetch_all(fn: Callable[[int], Any], ids, workers: int = 8) -> list[Any]:
    ids = [int(i) for i in ids]
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, ids))


# ------------------------------------------------------------------------------------ report pieces
@dataclass
class Item:
    name: str
    claim: str
    measured: str
    verdict: str
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)   # (file name, caption)
    details: list[str] = field(default_factory=list)               # markdown blocks


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def save(fig, out_dir: Path, name: str, written: list[Path]) -> str:
    path = plots.save_png(fig, out_dir / name, dpi=80)
    written.append(path)
    return name


def done_results(client: Client, *sweeps: dict) -> pd.DataFrame:
    """The result rows of status done of one or more sweeps, as one frame."""
    parts = [client.results(sw["id"]) for sw in sweeps]
    return pd.concat([d[d["status"] == "done"] for d in parts], ignore_index=True)


def summary_check(client: Client, sweep_id: int, df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """GET /summary and check its mean against the rows' own mean (both come from the database)."""
    s = client.summary(sweep_id, by=by)
    col = f"{metric}_mean"
    if col in s.columns:
        for _, row in s.iterrows():
            sel = np.ones(len(df), bool)
            for b in by:
                sel &= np.isclose(pd.to_numeric(df[b]), float(row[b]))
            own = finite(df.loc[sel & (df["status"] == "done"), metric])
            if len(own) and row[col] is not None and np.isfinite(row[col]) and \
                    not np.isclose(own.mean(), float(row[col]), rtol=1e-9, atol=1e-12):
                print(f"warning: /summary {col} = {row[col]} but the rows' mean is {own.mean()} "
                      f"(sweep {sweep_id}, {dict((b, row[b]) for b in by)})", file=sys.stderr)
    return s


# ------------------------------------------------------------------------------------ the items
def fig1_items(client: Client, sw: dict, out: Path, written: list[Path]) -> list[Item]:
    sid = sw["fig1_gd"]["id"]
    df = client.results(sid)
    done = df[df["status"] == "done"].copy()
    summ = summary_check(client, sid, df, ["init_scale"], "q0_norm")
    scales = sorted(done["init_scale"].unique())
    m, n, k = 5, 10, 50
    coef = math.sqrt((m + n) * (k * k + k) + k * (m - n) ** 2)        # E‖Q0‖² = s⁴[...] → RMS = coef·s²
    paper = {0.01: 0.02, 0.1: 1.83, 1.0: None}
    rows, verdicts = [], []
    for s in scales:
        q = finite(done.loc[done["init_scale"] == s, "q0_norm"])
        srow = summ[np.isclose(pd.to_numeric(summ["init_scale"]), s)]
        q_mean = float(srow["q0_norm_mean"].iloc[0]) if len(srow) else q.mean()
        q_std = float(srow["q0_norm_std"].iloc[0]) if len(srow) else q.std(ddof=1)
        rms = math.sqrt(np.mean(q ** 2))
        ref = coef * s * s
        p = paper.get(round(s, 6))
        if p is None:
            v = "n/a (paper gives no value)"
        else:
            z = abs(p - q_mean) / q_std
            v = "matches" if z <= 2 else ("partly" if abs(p - q_mean) <= 0.2 * q_mean else "does not")
            verdicts.append(v)
            v += f" ({z:.1f} std from the mean)"
        rows.append([g(s), "—" if p is None else g(p), f"{g(q_mean)} ± {g(q_std, 2)} (n = {len(q)})",
                     g(rms), g(ref), f"{100 * (rms / ref - 1):+.1f} %", v])
    q_item = Item(
        name="Fig. 1 — ‖Q0‖ at σ = 1e-2, 1e-1, 1",
        claim="‖Q0‖ = 0.02, 1.83, — (one draw each)",
        measured="; ".join(f"σ={g(s)}: {r[2]}" for s, r in zip(scales, rows)),
        verdict=_combine(verdicts),
        details=[table(["σ", "paper", "flowsweep mean ± std (/summary)", "RMS √mean‖Q0‖²",
                        "reference √E‖Q0‖² = 198.7 σ²", "RMS vs reference", "verdict"], rows)],
        notes=[f"Independent reference: for U0 ∈ R^{{m×k}}, V0 ∈ R^{{n×k}} with N(0, σ²) entries, "
               f"E‖U0ᵀU0 − V0ᵀV0‖²_F = σ⁴[(m+n)(k²+k) + k(m−n)²] = ({coef:.1f} σ²)² for m=5, n=10, k=50. "
               "The paper's 1.83 at σ = 0.1 is one draw: it lies within the seed spread of ‖Q0‖ "
               "(the RMS over seeds agrees with the reference to sampling error)."])

    # --- error curves and speed-up (Fig. 1 top)
    pids = done["point_id"].tolist()
    curves = dict(zip(pids, fetch_all(client.curves, pids)))
    states = dict(zip(pids, fetch_all(client.state, pids)))
    t_paper = PAPER_ITERATIONS * float(done["eta"].iloc[0])
    groups = plots.split_groups(done, ["init_scale"])
    for grp in groups:
        grp.curves = [cut(curves[p], t_paper) for p in grp.rows["point_id"]]
        grp.state = states[int(grp.rows["point_id"].iloc[0])]
    f_err = save(plots.error_figure(groups), out, "repro-fig1-error.png", written)
    for grp in groups:                               # one seed per panel for the singular values
        grp.rows = grp.rows.head(1)
        grp.curves = grp.curves[:1]
    f_sv = save(plots.singular_values_figure(groups), out, "repro-fig1-singular-values.png", written)

    err_rows, speed_ok = [], []
    med_speed = []
    for s in scales:
        sel = done[done["init_scale"] == s]
        e2 = np.array([np.interp(t_paper, curves[p]["t"], curves[p]["error"]) for p in sel["point_id"]])
        e1 = np.array([np.interp(t_paper, curves[p]["t"], curves[p]["error_linear"]) for p in sel["point_id"]])
        sp = finite(sel["speedup"])
        med_speed.append(np.median(sp) if len(sp) else np.nan)
        err_rows.append([g(s), median_iqr(e2), median_iqr(e1), frac(e2 < e1), median_iqr(sel["time_to_tol"]),
                         median_iqr(sel["time_to_tol_linear"]), median_iqr(sel["speedup"])])
    monotone = all(np.diff(med_speed) > 0) and med_speed[-1] > 1
    e_item = Item(
        name="Fig. 1 — error curves, one- vs two-layer",
        claim="the two-layer model converges faster the more imbalanced the start (larger ‖Q0‖, "
              "Fig. 1a→c), 'significantly faster' than the one-layer model at σ = 1",
        measured="median speedup (time_to_tol_linear / time_to_tol, tol 0.01): "
                 + ", ".join(f"σ={g(s)}: {g(v)}" for s, v in zip(scales, med_speed)),
        verdict="matches" if monotone else "does not",
        figures=[(f_err, "Fig. 1 top: e(t) of the two-layer model (mean ± std over seeds) and the "
                         "one-layer model from the same X(0), first 4000 iterations")],
        details=[table(["σ", "two-layer e at it. 4000", "one-layer e at it. 4000", "two-layer lower",
                        "time_to_tol", "time_to_tol_linear", "speedup"], err_rows)])

    # --- singular values learned one by one vs together (Fig. 1 bottom)
    sv_rows, spread_med = [], []
    horizon = float(done["eta"].iloc[0]) * int(done["steps"].iloc[0])
    spreads = []
    for _, r in done.iterrows():
        c, st = curves[r["point_id"]], states[r["point_id"]]
        target = np.linalg.svd(st["Y"], compute_uv=False)
        ts = settling_times(c["t"], np.atleast_2d(c["singular_values"]), target)
        spreads.append({"point_id": r["point_id"], "init_scale": r["init_scale"], "seed": r["seed"],
                        "t_first": ts.min(), "t_last": ts.max(), "sv_settle_spread": ts.max() - ts.min(),
                        "sv_settle_ratio": ts.max() / max(ts.min(), 1e-12), "censored": not np.isfinite(ts).all()})
    sp = pd.DataFrame(spreads)
    for s in scales:
        x = sp[sp["init_scale"] == s]
        fin = x[~x["censored"]]
        spread_med.append(np.median(fin["sv_settle_spread"]) if len(fin) else np.nan)
        sv_rows.append([g(s), median_iqr(x["t_first"]), median_iqr(fin["t_last"]),
                        median_iqr(fin["sv_settle_spread"]), median_iqr(fin["sv_settle_ratio"]),
                        frac(x["censored"])])
    f_spread = save(plots.metric_figure(sp[~sp["censored"]], "sv_settle_spread", "init_scale"), out,
                    "repro-fig1-settling-spread.png", written)
    ok = np.all(np.diff(spread_med) < 0)
    sv_item = Item(
        name="Fig. 1 — singular values: one by one (small, balanced) vs together (imbalanced)",
        claim="σ = 0.01 (‖Q0‖ ≈ 0.02): components learned sequentially, largest first; larger ‖Q0‖: "
              "learned faster and together",
        measured="median spread max_i t_i − min_i t_i of the times t_i at which σ_i(X(t)) settles within "
                 "±10 % of σ_i(Y): " + ", ".join(f"σ={g(s)}: {g(v)}" for s, v in zip(scales, spread_med)),
        verdict="matches" if ok else "partly",
        figures=[(f_sv, "Fig. 1 bottom: singular values of X(t) (solid), of the one-layer model "
                        "(dashed) and σ_i(Y) (dotted), seed 0, first 4000 iterations"),
                 (f_spread, "spread of the settling times of the 5 singular values per point, against σ")],
        details=[table(["σ", "first σ_i settled (t)", "last σ_i settled (t)", "spread (t)",
                        "ratio last/first", "not all settled by t = " + g(horizon)], sv_rows)],
        notes=["t_i is the first record time from which |σ_i(X(t)) − σ_i(Y)| ≤ 0.1 σ_i(Y) holds up to the "
               f"end of the horizon t = {g(horizon)} ({int(horizon / float(done['eta'].iloc[0]))} iterations; "
               "the paper plots 4000). Growing from a small start this is the first time σ_i(X(t)) reaches "
               "90 % of σ_i(Y); at σ = 1 the singular values start far above σ_i(Y) (‖X0‖ ≫ ‖Y‖) and t_i "
               "is when they have come down. Points where some σ_i never settles are counted, not used. Times are "
               "resolved to the record grid (every 20 iterations, t = 0.02), which is coarse for σ = 1."])
    return [q_item, e_item, sv_item], curves


def _combine(verdicts: list[str]) -> str:
    if verdicts and all(v == "matches" for v in verdicts):
        return "matches"
    if verdicts and all(v == "does not" for v in verdicts):
        return "does not"
    return "partly"


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
            rel.append(diff[i] / np.nanmax(b["error"][:L]))       # against the panel's height
            at.append(a["t"][i] / float(r["eta_gd"]))
        d, rel = np.array(d), np.array(rel)
        tt = finite((pd.to_numeric(p["time_to_tol_gd"]) - pd.to_numeric(p["time_to_tol_flow"])).abs()
                    / pd.to_numeric(p["time_to_tol_flow"]))
        worst_tt = tt.max() if len(tt) else np.nan
        v = "matches" if d.max() < 0.01 and (not len(tt) or worst_tt < 0.01) else "partly"
        verdicts.append(v)
        per_scale.append(f"σ={g(s)}: {g(d.max())} ({v})")
        rows.append([g(s), median_iqr(d), g(d.max()), g(rel.max()), f"{np.median(at):.0f}",
                     median_iqr(tt), g(worst_tt), v])
    return Item(
        name="η = 1e-3 gradient descent vs gradient flow (Fig. 1 points)",
        claim="gd with η = 1e-3 approximates the flow; 'smaller step sizes did not lead to a discernible change'",
        measured="worst |e_gd(t) − e_flow(t)| over t and seeds: " + ", ".join(per_scale),
        verdict=_combine(verdicts),
        details=[table(["σ", "max_t |e_gd − e_flow| per point", "worst point",
                        "worst / max_t e(t) (panel height)", "iteration of the max (median)",
                        "|Δ time_to_tol| / time_to_tol_flow", "worst", "verdict"], rows)],
        notes=["`flow` is the exact gradient flow by an adaptive ODE solver (rtol ≤ 1e-9) on the same record "
               "grid; same seeds, so the same Y, U0, V0. A scale 'matches' when the curves differ by less "
               "than 0.01 in relative error everywhere and time_to_tol by less than 1 %.",
               "Where gd deviates (σ = 1) it is in the first few dozen iterations: ‖U0‖₂², ‖V0‖₂² are of "
               "order (√k + √n)² σ² ≈ 100, so η times the fastest rate is ~0.1–0.2 and explicit Euler lags "
               "the flow's very fast initial drop (e falls from ~7 to ~1 in 20 iterations). The gap is about "
               "1 % of that panel's height — not discernible on a plot like the paper's — but it is there in "
               "the numbers (time_to_tol a couple of per cent later). For σ ≤ 0.1 gd and the flow agree to "
               "the third decimal."])


def table2_item(client: Client, sw: dict, out: Path, written: list[Path]) -> Item:
    parts = []
    for key, label in (("table2_small", "small σ (square 5×5)"), ("table2_large", "large σ (wide 2×20)")):
        d = done_results(client, sw[key])
        d["regime"] = label
        parts.append(d)
    df = pd.concat(parts, ignore_index=True)
    df["rate_ratio"] = pd.to_numeric(df["rate_fit"]) / pd.to_numeric(df["rate_pred"])
    # per-component rates from the curves: the slowest component is what rate_pred predicts
    pids = df["point_id"].tolist()
    cur = dict(zip(pids, fetch_all(client.curves, pids)))
    sts = dict(zip(pids, fetch_all(client.state, pids)))
    comp = []
    for p in pids:
        target = np.linalg.svd(sts[p]["Y"], compute_uv=False)
        rates = component_rates(cur[p]["t"], np.atleast_2d(cur[p]["singular_values"]), target,
                                noise_floor=1e-7 * target.max())
        rates = [r for r in rates if r is not None]
        comp.append(min(rates) if rates else np.nan)
    df["component_rate_min"] = comp
    df["component_ratio"] = df["component_rate_min"] / pd.to_numeric(df["rate_pred"])
    paper = {("small", 0.0): "✗", ("small", 4.0): "✓", ("large", 0.0): "✓", ("large", 4.0): "✓"}
    rows, ok, boundary = [], [], []
    for label in df["regime"].unique():
        for lam in sorted(df["lambda0"].unique()):
            x = df[(df["regime"] == label) & (df["lambda0"] == lam)]
            expect = paper[("small" if label.startswith("small") else "large", float(lam))]
            sp = finite(x["speedup"])
            med = np.median(sp) if len(sp) else np.nan
            got = "✓" if med > 1 else "✗"
            ok.append(got == expect)
            above = pd.to_numeric(x["rate_pred"]) ** 2 if lam == 0 else None
            cond = (f"4σ_min² > 1 in {frac(above > 1)}" if above is not None
                    else f"4σ_min² + λ0² > 1 in {frac(pd.to_numeric(x['rate_pred']) > 1)}")
            rows.append([label, "balanced λ0=0" if lam == 0 else f"imbalanced λ0={g(lam)}", expect,
                         f"{got} {median_iqr(x['speedup'])}", f"{frac(sp > 1)} (+{len(x) - len(sp)} null)" if len(sp) < len(x) else frac(sp > 1),
                         median_iqr(x["rate_fit"]), median_iqr(x["rate_pred"]),
                         median_iqr(x["rate_ratio"], 4, True), median_iqr(x["component_ratio"], 4, True), cond])
            if lam == 0:
                # the boundary 4σ_min² > 1 (eq. 16) against what happened, point by point
                agree = (pd.to_numeric(x["rate_pred"]) ** 2 > 1).to_numpy() == \
                    (pd.to_numeric(x["speedup"]).fillna(0) > 1).to_numpy()
                boundary.append(f"{label}, λ0 = 0: 'speedup > 1' agrees with '4σ_min² > 1' for "
                                f"{frac(agree)} points")
    f_sp = save(plots.metric_figure(df, "speedup", "lambda0", by=["regime"], reference=1.0,
                                    reference_label="one-layer (no acceleration)"),
                out, "repro-table2-speedup.png", written)
    f_rate = save(plots.metric_figure(df, "rate_ratio", "lambda0", by=["regime"], reference=1.0,
                                      reference_label="rate_fit = rate_pred"),
                  out, "repro-table2-rate.png", written)
    comp_med = np.nanmedian(df["component_ratio"])
    return Item(
        name="Table 2 — four regimes, spectral init",
        claim="acceleration (✓) unless σ small and λ0 ≈ 0 (✗); rate √(4σ_i² + λ0²) per component (eq. 16)",
        measured="median speedup per regime: " + "; ".join(f"{r[0]}, {r[1]}: {r[3]}" for r in rows)
                 + f"; slowest component's rate / rate_pred, median {comp_med:.4f}",
        verdict="matches" if all(ok) else ("partly" if any(ok) else "does not"),
        figures=[(f_sp, "speedup over the one-layer model per regime (dots: seeds; line: mean ± std)"),
                 (f_rate, "rate_fit / rate_pred per regime")],
        details=[table(["data", "init", "paper", "speedup (median [IQR])", "speedup > 1", "rate_fit",
                        "rate_pred = min_i √(4σ_i²+λ0²)", "rate_fit / rate_pred",
                        "slowest component's rate / rate_pred", "boundary"], rows),
                 "Point by point: " + "; ".join(boundary) + ". The boundary is about the asymptotic rate; "
                 "`speedup` is measured at tol = 0.01 and also reflects the delay of the small start "
                 "(ū v̄ = 0.01) and which components matter at that tolerance: a component with "
                 "σ_i/‖Y‖ below ~0.01 need not be learned at all for e(t) to reach tol, so the slowest rate "
                 "need not decide it."],
        notes=["flowsweep has no data-scale knob, so the σ regimes come from the shape of Y ~ N(0,1): a square "
               "5×5 Y has a small σ_min (4σ_min² < 1 for most draws), a wide 2×20 Y a large one "
               "(σ_min ≈ √20 − √2 ≈ 3). λ0 = 4 puts every component past 4σ² + λ0² > 1. Spectral init with "
               "ū_i v̄_i = σ² = 0.01, exact gradient flow, horizon t = 100, tol 0.01.",
               "`rate_fit` fits the tail of the total error e(t) above the solver's noise (1e-8). When the "
               "component rates √(4σ_i² + λ0²) are close together (λ0 = 4 on 5×5: all in [4, ~7]) the slower "
               "components have not yet dominated e(t) when it reaches the noise floor, so rate_fit lies a "
               "few per cent above rate_pred; fitting each singular value's own residual |σ_i(t) − σ_i| "
               "(core.fits.component_rates on the stored curves) recovers the slowest rate, which is what "
               "rate_pred predicts."])


def fig2_item(client: Client, sw: dict, out: Path, written: list[Path]) -> Item:
    sid = sw["fig2"]["id"]
    df = client.results(sid)
    done = df[df["status"] == "done"].copy()
    summary_check(client, sid, df, ["k"], "lambda0_fit")
    pids = done["point_id"].tolist()
    cur = dict(zip(pids, fetch_all(client.curves, pids)))
    done["curve_gap"] = [np.nanmax(np.abs(cur[p]["error_regularized_fit"] - cur[p]["error"]))
                         if cur[p].get("error_regularized_fit") is not None else np.nan for p in pids]
    done["curve_gap_rel"] = done["curve_gap"] / [np.nanmax(cur[p]["error"]) for p in pids]   # panel height
    # The fit searched both signs; check the other sign independently from the stored initial state
    # (core's closed form eq. (21)) against the stored e(t): how much worse is +|λ0| than −|λ0|?
    sts = dict(zip(pids, fetch_all(client.state, pids)))

    def gap_at(p, lam):
        st, c = sts[p], cur[p]
        X = regularized_flow(st["Y"], st["U0"], st["V0"], lam, c["t"]).X
        e = np.linalg.norm(st["Y"][None] - X, axis=(1, 2)) / np.linalg.norm(st["Y"])
        return float(np.nanmax(np.abs(e - c["error"])))
    lam_fit = pd.to_numeric(done["lambda0_fit"]).to_numpy()
    done["curve_gap_same"] = [gap_at(p, lam) for p, lam in zip(pids, lam_fit)]
    done["curve_gap_flipped"] = [gap_at(p, -lam) for p, lam in zip(pids, lam_fit)]
    # The fit itself is on the matrices X(t), which the API does not return: for a few seeds per k,
    # re-simulate X(t) with core (checked bit-identical to /state) and score both signs of λ0.
    flip_loss = []
    spec = sw["fig2"]["spec"] if isinstance(sw["fig2"].get("spec"), dict) else {}
    for kk, rows_k in done.groupby("k"):
        for _, r in rows_k.sort_values("seed").head(SIGN_CHECK_SEEDS).iterrows():
            cfg = PointConfig(model=r["model"], m=int(r["m"]), n=int(r["n"]), k=int(r["k"]),
                              eta=float(r["eta"]), steps=int(r["steps"]), init=r["init"],
                              integrator=r["integrator"], init_scale=float(r["init_scale"]),
                              lambda0=float(r["lambda0"]), seed=int(r["seed"]),
                              record_every=int(spec.get("record_every", 20)),
                              data_seed=spec.get("data_seed"))
            st = sts[r["point_id"]]
            mine = initial_state(cfg)
            if not all(np.array_equal(mine[a], st[a]) for a in ("Y", "U0", "V0")):
                print(f"warning: core's initial state differs from /state of point {r['point_id']}; "
                      "skipping the sign check for it", file=sys.stderr)
                continue
            tr = simulate(cfg)
            lam = float(r["lambda0_fit"])
            same = regularized_loss(st["Y"], st["U0"], st["V0"], tr.t, tr.X[0], lam)
            other = regularized_loss(st["Y"], st["U0"], st["V0"], tr.t, tr.X[0], -lam)
            flip_loss.append(other / same)
    groups = plots.split_groups(done, ["k"])
    for grp in groups:
        grp.curves = [cur[p] for p in grp.rows["point_id"]]
    f_reg = save(plots.regularized_figure(groups), out, "repro-fig2-regularized.png", written)
    done["abs_lambda0_fit"] = pd.to_numeric(done["lambda0_fit"]).abs()
    f_lam = save(plots.metric_figure(done, "abs_lambda0_fit", "k"), out, "repro-fig2-lambda0.png", written)
    paper = {50: 111.32, 100: 203.66, 200: 460.99}
    rows, verdicts = [], []
    for kk in sorted(done["k"].unique()):
        x = done[done["k"] == kk]
        lam = finite(x["lambda0_fit"])
        a = np.abs(lam)
        p = paper.get(int(kk))
        z = abs(p - a.mean()) / a.std(ddof=1) if len(a) > 1 else np.inf
        mag = "matches" if z <= 2 else ("partly" if abs(p - a.mean()) <= 0.2 * a.mean() else "does not")
        sign_neg = frac(lam < 0)
        sign = "as paper (> 0)" if (lam > 0).all() else ("opposite (< 0)" if (lam < 0).all() else "mixed")
        v = mag if (lam > 0).all() else ("partly" if mag == "matches" else mag)
        verdicts.append(v)
        v = f"|λ0| {mag}; sign {sign}"
        rows.append([str(int(kk)), g(p, 5), mean_std(lam, 4), mean_std(a, 4), f"{z:.1f}", sign_neg,
                     median_iqr(x["lambda0_fit_error"]), median_iqr(x["curve_gap"]),
                     median_iqr(x["curve_gap_rel"]),
                     median_iqr(x["regularized_error"]), median_iqr(x["final_error"]), v])
    neg = (finite(done["lambda0_fit"]) < 0).mean()
    consistent = np.allclose(done["curve_gap_same"], done["curve_gap"], rtol=1e-6, atol=1e-9)
    if not consistent:
        print("warning: e(t) of X_reg recomputed from /state differs from the stored "
              "error_regularized_fit curve", file=sys.stderr)
    flip_ratio = finite(done["curve_gap_flipped"] / done["curve_gap"])
    notes = [f"Horizon as the paper: η = 1e-5, 4000 iterations (t = 0.04), σ = 1, m = 5, n = 10; "
             f"{len(done) // max(done['k'].nunique(), 1)} seeds per k, each with its own Y.",
             "`lambda0_fit_error` = √(mean_t ‖X_reg(t; λ0) − X(t)‖²)/‖Y‖ compares the matrices; the paper "
             "compares the error curves e(t) (its Fig. 2 top row), which is the column "
             "max_t |e_reg(t) − e(t)| (from the stored curves). `regularized_error` is the same mismatch "
             "with Λ = 0 instead of the fitted λ0 I, to show what the fit buys."]
    pos = 1.0 - neg
    notes.append(
        f"Sign: {100 * neg:.0f} % of the fitted λ0 are negative and {100 * pos:.0f} % positive; the paper's "
        "three values are positive. flowsweep fits on the matrices (Σ_t ‖X_reg(t; λ0) − X(t)‖², SPEC §2; "
        "the paper 'minimizes the error ‖X_I(t) − X(t)‖_F') over both signs. Re-simulating X(t) with core "
        f"for {len(flip_loss)} points (first {SIGN_CHECK_SEEDS} seeds per k; initial state checked "
        "identical to /state), the loss at the mirrored value −λ0_fit is "
        f"{median_iqr(flip_loss, 2, True)} times the loss at λ0_fit ({frac(np.asarray(flip_loss) < 1.1)} within "
        "10 %)" + (f". Still, {100 * pos:.0f} % of the draws fit best at a positive λ0 and the rest at a "
                   "negative one: which sign wins varies from draw to draw." if 0 < neg < 1 else ".")
        + " The error "
        "curves the paper plots tell the signs apart even less: recomputing X_reg(t; −λ0_fit) from each "
        "point's stored initial state (eq. (21)) gives max_t |e_reg − e| "
        f"{median_iqr(flip_ratio, 2, True)} times the fitted one"
        + ("" if consistent else " (warning: the recomputed curve at λ0_fit does not match the stored one)")
        + ". So the magnitude |λ0| is the reproducible quantity and is what we compare; the sign is a "
        "property of the draw (the paper shows one draw per k, with one Y), and its convention also "
        "flips if Y is transposed or Q is defined as V0ᵀV0 − U0ᵀU0. The item is 'partly' while the signs "
        "are mixed.")
    return Item(
        name="Fig. 2 — fitted λ0 for k = 50, 100, 200",
        claim="λ0 = 111.32, 203.66, 460.99; the regularized flow (19) with Λ = λ0 I is 'nearly "
              "indistinguishable' from the general one",
        measured="; ".join(f"k={r[0]}: |λ0_fit| {r[3]}, λ0 < 0 in {r[5]}" for r in rows)
                 + "; max_t |e_reg − e| / max_t e, median: " + ", ".join(r[8].split(" [")[0] for r in rows),
        verdict=_combine(verdicts),
        figures=[(f_reg, "Fig. 2 top: e(t) of the general flow (13) and of the regularized flow (19) at "
                         "the fitted λ0 (mean ± std over seeds)"),
                 (f_lam, "|lambda0_fit| against k")],
        details=[table(["k", "paper λ0", "lambda0_fit", "|lambda0_fit|", "paper vs |λ0| (std)",
                        "λ0 < 0", "lambda0_fit_error", "max_t |e_reg − e|", "… / max_t e (panel height)",
                        "regularized_error (Λ=0)",
                        "final_error", "verdict"], rows)],
        notes=notes)


def fig3_item(client: Client, sw: dict, out: Path, written: list[Path]) -> Item:
    df = done_results(client, sw["fig3_balanced"], sw["fig3_gaussian"])
    pids = df["point_id"].tolist()
    cur = dict(zip(pids, fetch_all(client.curves, pids)))
    groups = plots.split_groups(df, ["init"])
    for grp in groups:
        grp.curves = [cur[p] for p in grp.rows["point_id"]]
    f = save(plots.error_figure(groups), out, "repro-fig3-sigmoid.png", written)
    d, m, k, s = 10, 10, 100, float(df["init_scale"].iloc[0])
    ref = math.sqrt(s ** 4 * ((d + m) * (k * k + k)))
    rows = []
    for init in ("balanced", "gaussian"):
        x = df[df["init"] == init]
        rows.append([init, mean_std(x["q0_norm"]), median_iqr(x["time_to_tol"]),
                     median_iqr(x["final_error"]), median_iqr(x["final_error_linear"]),
                     frac(pd.to_numeric(x["time_to_tol_linear"]).notna())])
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
        claim="‖Q0‖ = 0 vs 4.6; the imbalanced two-layer model trains faster (the linear conclusions "
              "carry over)",
        measured=f"‖Q0‖ balanced {rows[0][1]}, gaussian {rows[1][1]} (reference √E‖Q0‖² = {g(ref)}); "
                 f"gaussian reaches tol 0.01 first in {faster} seed-paired runs (time_to_tol ratio "
                 f"balanced / gaussian median {g(np.median(ratio)) if len(ratio) else '—'}"
                 + (f"; {censored} balanced runs never reach it in 500 iterations" if censored else "") + ")",
        verdict="matches" if ok else "partly",
        figures=[(f, "Fig. 3: e(t) = ‖Y − φ(A U Vᵀ)‖/‖Y‖ of the two-layer and one-layer sigmoid models "
                     "(mean ± std over seeds), balanced (Q0 = 0) vs gaussian init")],
        details=[table(["init", "‖Q0‖", "two-layer time_to_tol", "two-layer final e", "one-layer final e",
                        "one-layer reaches tol"], rows),
                 f"Paired by seed (same A, W*, Y): time_to_tol(balanced) / time_to_tol(gaussian) = "
                 f"{median_iqr(ratio)} where both reach tol; gaussian first in {faster} pairs"
                 + (f" ({censored} balanced runs do not reach tol within the horizon)" if censored else "")
                 + "."],
        notes=["N = 1000, d = 10, k = 100, weights N(0, 0.1²). The paper does not state the step size; "
               "flowsweep uses η = 1e-3 for 500 iterations (the paper's x axis) on the summed loss. "
               f"Reference ‖Q0‖: E‖Q0‖_F² = σ⁴ (2d)(k² + k) = {g(ref)}² at σ = 0.1; the paper's 4.6 is one "
               f"draw. The paper writes ‖Q0‖₂, but the spectral norm is {mean_std(spec)} (from the stored "
               "U0, V0), so the 4.6 matches the Frobenius norm. Its caption's 'N(0, 10⁻¹)' must mean a "
               "standard deviation of 0.1: a variance of 0.1 would give √E‖Q0‖_F² ≈ "
               f"{g(math.sqrt(0.1 ** 2 * 2 * d * (k * k + k)))}.",
               "The loss depends on U, V only through UVᵀ, so Q = UᵀU − VᵀV is conserved by the flow here "
               "too (gd drifts by O(η)); `conservation_drift` is relative to ‖Q0‖ and so is not meaningful "
               "for the balanced start where ‖Q0‖ = 0."])


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
    f = save(plots.metric_figure(df, "rate_ratio", "init_scale", by=["init"], reference=1.0,
                                 reference_label="rate_fit = 4 σ_min"),
             out, "repro-symmetric-rate.png", written)
    rows = []
    within = []
    for init in ("spectral", "gaussian"):
        for s in sorted(df["init_scale"].unique()):
            x = df[(df["init"] == init) & (df["init_scale"] == s)]
            r = finite(x["rate_ratio"])
            within.append(np.median(r))
            rows.append([init, g(s), median_iqr(x["rate_fit"]), median_iqr(x["rate_pred"]), median_iqr(r, 4, True),
                         frac(np.abs(r - 1) <= 0.05), frac(r >= 0.95),
                         g(finite(x["psd_limit_dev"]).max()),
                         g(finite(x["closed_form_error"]).max()) if len(finite(x["closed_form_error"])) else "—"])
    ok = all(abs(w - 1) <= 0.05 for w in within)
    return Item(
        name="Corollary 1 and Proposition 2 — symmetric model, rate 4·σ_min",
        claim="X(t) → Y₊ (PSD projection of Y) at rate O(e^{−4σ_min t}), σ_min = min_i|σ_i(Y)|, for "
              "spectral (Cor. 1) and any PSD start (Prop. 2)",
        measured="rate_fit / rate_pred, median [IQR]: " + "; ".join(f"{r[0]} σ={r[1]}: {r[4]}" for r in rows),
        verdict="matches" if ok else "partly",
        figures=[(f, "rate_fit / (4 σ_min) for the symmetric model, spectral and gaussian starts")],
        details=[table(["init", "σ", "rate_fit", "rate_pred = 4σ_min", "rate_fit / rate_pred",
                        "within ±5 %", "≥ 0.95 (bound holds)", "max |final_error − ‖Y−Y₊‖/‖Y‖|",
                        "max closed_form_error"], rows)],
        notes=["Y = (A + Aᵀ)/2, m = 5, k = 10, exact gradient flow to t = 100. The symmetric flow converges "
               "to the PSD projection Y₊, so `rate_fit` is fitted to ‖X(t) − Y₊‖ and final_error tends to "
               "‖Y − Y₊‖/‖Y‖ (checked per point from the stored Y). Proposition 2 is an upper bound: a "
               "point converges faster than 4σ_min when the slowest eigencomponent starts (almost) at its "
               "limit — e.g. a negative eigenvalue whose component starts at σ² = 0.01 and hits the "
               "solver's noise floor before it dominates — so ratios above 1 are consistent with it; "
               "ratios well below 1 would not be."])


def failed_item(label: str, exc: BaseException) -> Item:
    import traceback
    traceback.print_exception(exc, file=sys.stderr)
    return Item(name=label, claim="(see the paper)", measured=f"not measured: {type(exc).__name__}: {exc}",
                verdict="not measured")


# ------------------------------------------------------------------------------------ the report
def write_report(path: Path, items: list[Item], meta: dict) -> None:
    L = ["# Reproducing the paper with flowsweep", "",
         "Generated by one command from the repository root (about "
         f"{meta['minutes']:.0f} min on this 2-core machine):", "", "```sh", COMMAND, "```", "",
         "It starts an embedded service (`flowsweep serve` on a fresh SQLite file), POSTs the paper's "
         "experiments as sweeps, waits, and reads every number back through the REST API (result rows, "
         "`/summary`, `/points/{id}/curves`, `/points/{id}/state`); figures are drawn by `service.plots`. "
         f"`--url` uses a running service instead. This run: {meta['points']} points in "
         f"{meta['n_sweeps']} sweeps, {meta['sweep_seconds']:.0f} s from submission to the last result "
         f"({meta['cpus']} Ray CPUs), flowsweep {meta['commit']}.", "",
         "Verdicts: **matches** = flowsweep's value agrees with the paper's within the seed spread "
         "(|paper − mean| ≤ 2 std over seeds) or the qualitative claim holds for the median seed; "
         "**partly** = part of the claim holds; **does not** = it fails. Spread is mean ± std or "
         "median [IQR] over n seeds; every seed draws its own data Y and initial weights.", "",
         "## Summary", "",
         table(["item", "paper", "flowsweep (n seeds)", "verdict"],
               [[it.name, it.claim, it.measured, f"**{it.verdict}**"] for it in items]), ""]
    for it in items:
        L += [f"## {it.name}", "", f"**Paper:** {it.claim}", "", f"**flowsweep:** {it.measured}", "",
              f"**Verdict: {it.verdict}**", ""]
        for d in it.details:
            L += [d, ""]
        for n in it.notes:
            L += [n, ""]
        for fname, cap in it.figures:
            L += [f"![{cap}]({fname})", "", f"*{cap}.*", ""]
    L += ["## Sweeps", "", "Seeds per group: " + ", ".join(f"{k} {v}" for k, v in meta["seeds"].items())
          + ".", "",
          table(["sweep", "model", "init", "integrator", "m×n", "η", "steps", "axes"],
                [[s["name"], s["model"], s.get("init", "gaussian"), s.get("integrator", "gd"),
                  f"{s['m']}×{s.get('n', s['m'])}", g(s["eta"]), str(s["steps"]),
                  ", ".join(f"{a}={v}" for a, v in s["axes"].items())] for s in meta["specs"].values()]),
          ""]
    path.write_text("\n".join(L))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="use a running flowsweep service instead of starting one")
    ap.add_argument("--out", default=str(REPO / "docs"), help="directory for reproduction.md and PNGs")
    ap.add_argument("--quick", action="store_true", help="a few seeds per item (smoke run)")
    ap.add_argument("--cpus", type=int, default=None, help="Ray CPUs of the embedded service (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the embedded service's temporary directory")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the sweeps")
    args = ap.parse_args(argv)

    seeds = {k: max(3, v // 10) for k, v in SEEDS.items()} if args.quick else dict(SEEDS)
    specs = sweep_specs(seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    service = workdir = None
    written: list[Path] = []
    items: list[Item] = []
    report = out / "reproduction.md"
    if not args.url:
        workdir = Path(tempfile.mkdtemp(prefix="flowsweep-repro-"))
        service = EmbeddedService(workdir, args.cpus)
        url = service.url
        print(f"starting flowsweep serve on {url} (SQLite in {workdir})", flush=True)
    else:
        url = args.url
    try:
        with Client(url, timeout=120) as client:
            health = service.wait_ready(client) if service else client.health()
            print(f"service ready: {health}", flush=True)
            t0 = time.monotonic()
            sw = run_sweeps(client, specs, args.timeout)
            sweep_seconds = time.monotonic() - t0
            print(f"sweeps finished in {sweep_seconds:.0f} s; analysing", flush=True)
            t1 = time.monotonic()
            try:
                items, gd_curves = fig1_items(client, sw, out, written)
            except Exception as exc:          # keep going: the report says what could not be measured
                items, gd_curves = [failed_item("Fig. 1", exc)], None
            steps = (("gd vs flow", lambda: gd_flow_item(client, sw, gd_curves)),
                     ("Table 2", lambda: table2_item(client, sw, out, written)),
                     ("Fig. 2", lambda: fig2_item(client, sw, out, written)),
                     ("Fig. 3", lambda: fig3_item(client, sw, out, written)),
                     ("symmetric", lambda: symmetric_item(client, sw, out, written)))
            print(f"  Fig. 1 analysed in {time.monotonic() - t1:.1f} s", flush=True)
            for label, fn in steps:
                t1 = time.monotonic()
                try:
                    if label == "gd vs flow" and gd_curves is None:
                        raise RuntimeError("the Fig. 1 gd curves are missing")
                    items.append(fn())
                except Exception as exc:
                    items.append(failed_item(label, exc))
                print(f"  {label} analysed in {time.monotonic() - t1:.1f} s", flush=True)
            meta = {"minutes": (time.monotonic() - t_start) / 60, "points": sum(s["n_points"] for s in sw.values()),
                    "n_sweeps": len(sw), "sweep_seconds": sweep_seconds,
                    "cpus": (health.get("ray") or {}).get("cpus", "?"), "commit": git_commit(),
                    "seeds": seeds, "specs": specs}
            write_report(report, items, meta)
    except FlowsweepError as exc:            # the service is unreachable or refused a sweep: one line
        print(f"reproduce: {exc}", file=sys.stderr)
        if service:
            print(f"server log tail:\n{service.log_tail()}", file=sys.stderr)
        return 2
    except BaseException:
        if service:
            print(f"server log tail:\n{service.log_tail()}", file=sys.stderr)
        raise
    finally:
        if service:
            service.stop()
            if args.keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    for p in written:
        kb = p.stat().st_size / 1024
        print(f"  {p.relative_to(REPO) if p.is_relative_to(REPO) else p}: {kb:.0f} KB"
              + ("  (over 300 KB!)" if kb > 300 else ""))
    print(f"wrote {report} in {(time.monotonic() - t_start) / 60:.1f} min")
    for it in items:
        print(f"  [{it.verdict}] {it.name}: {it.measured}")
    return 1 if any(it.verdict == "not measured" for it in items) else 0


if __name__ == "__main__":
    sys.exit(main())
