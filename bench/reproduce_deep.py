"""Deep linear networks through flowsweep: the field's headline behaviours, measured through the
service, written to docs/reproduction-deep.md with its figures (issue 15).

    .venv/bin/python bench/reproduce_deep.py               # embedded service, fresh SQLite, a few min on 2 cores
    .venv/bin/python bench/reproduce_deep.py --quick       # 3 seeds per group (smoke run)
    .venv/bin/python bench/reproduce_deep.py --url http://127.0.0.1:8000   # a running service

As bench/reproduce.py: the sweeps are POSTed over REST, run by the service's Ray workers, stored, and
read back through the API (result rows, `/points/{id}/curves`, `/points/{id}/state`); figures are drawn
with `service.plots`. Three questions (Saxe et al. 2014; Arora, Cohen, Hazan 2018; Du, Hu, Lee 2018):
1. does the plateau of a small balanced start grow with depth?
2. time to tolerance against depth at a fixed end-to-end start X0;
3. does imbalance still accelerate at depth L >= 3?
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._service import ServiceProcess  # noqa: E402
from flowsweep.service import plots  # noqa: E402
from flowsweep.service.client import Client, FlowsweepError, ServerUnavailable  # noqa: E402
from flowsweep.status import FINISHED_COUNT_KEYS, FINISHED_SWEEP_STATUSES, PointStatus  # noqa: E402

COMMAND = ".venv/bin/python bench/reproduce_deep.py"
SEEDS = 10
DEPTHS = [1, 2, 3, 4, 5, 6]
BALANCED_SCALES = [0.01, 0.03, 0.1, 0.3, 1.0]
PLATEAU_SCALES = [0.01, 0.03]          # the small starts of question 1
SPECTRAL_SCALES = [0.1, 1.0]
LAMBDAS = [0.0, 0.5, 1.0, 2.0]
SPECTRAL_DEPTHS = [2, 3, 4]
GAUSSIAN_SCALES = [0.05, 0.1, 0.2, 0.3, 0.5]


def sweep_specs(seeds: int) -> dict[str, dict[str, Any]]:
    """Exact gradient flow on Y ~ N(0, 1) 5×10, every seed its own Y (data_seed null), hidden width 20.
    Balanced starts share one X0 = U0V0ᵀ across depths (core/deep.py), so a depth axis is a
    comparison at fixed X0; spectral starts have X0 = s²ΦΨᵀ at every depth and imbalance λ₀ on every
    adjacent pair."""
    common = {"model": "deep", "integrator": "flow", "m": 5, "n": 10, "tol": 0.01}
    return {
        # t = 100 on a grid of 0.05: the plateaus of the smallest starts at depth 6 last tens of time units
        "balanced": {"name": "repro-deep-balanced", **common, "init": "balanced", "eta": 0.01,
                     "steps": 10_000, "record_every": 5,
                     "axes": {"init_scale": BALANCED_SCALES, "k": [20], "depth": DEPTHS,
                              "seed": {"range": [0, seeds]}}},
        # t = 10: imbalanced deep starts converge at rates up to ~50
        "spectral": {"name": "repro-deep-imbalance", **common, "init": "spectral", "eta": 0.005,
                     "steps": 2000, "record_every": 5,
                     "axes": {"init_scale": SPECTRAL_SCALES, "k": [20], "lambda0": LAMBDAS,
                              "depth": SPECTRAL_DEPTHS, "seed": {"range": [0, seeds]}}},
        # Fig. 1 at depth: every layer N(0, s²); the imbalance ‖C_j‖ grows like s²k
        "gaussian": {"name": "repro-deep-gaussian", **common, "init": "gaussian", "eta": 0.005,
                     "steps": 4000, "record_every": 10,
                     "axes": {"init_scale": GAUSSIAN_SCALES, "k": [20], "depth": SPECTRAL_DEPTHS,
                              "seed": {"range": [0, seeds]}}},
    }


class EmbeddedService(ServiceProcess):
    """`flowsweep serve` on a fresh SQLite file and a free port (as bench/reproduce.py)."""

    def __init__(self, workdir: Path, cpus: int | None):
        exe = Path(sys.executable).with_name("flowsweep")
        cmd = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "flowsweep.service.server"]
        super().__init__(workdir, cpus, "reproduce-deep.db", cmd)

    def wait_ready(self, client: Client, timeout: float = 180.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"flowsweep serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if "Uvicorn running on" not in self.log():
                    raise ServerUnavailable("not listening yet")
                return client.health()
            except FlowsweepError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"flowsweep serve not ready after {timeout:.0f} s") from None
                time.sleep(0.3)


def run_sweeps(client: Client, specs: dict[str, dict], timeout: float) -> dict[str, dict]:
    submitted = {key: client.submit(spec) for key, spec in specs.items()}
    total = sum(s["n_points"] for s in submitted.values())
    print(f"submitted {len(submitted)} sweeps, {total} points", flush=True)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        states = {key: client.sweep(s["id"]) for key, s in submitted.items()}
        done = sum(sum((st.get("counts") or {}).get(c) or 0 for c in FINISHED_COUNT_KEYS)
                   for st in states.values())
        line = f"  {done}/{total} points finished"
        if line != last:
            print(line, flush=True)
            last = line
        if all(st["status"] in FINISHED_SWEEP_STATUSES for st in states.values()):
            return {key: {**submitted[key], **states[key]} for key in submitted}
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweeps not finished after {timeout:.0f} s: {line}")
        time.sleep(2.0)


def fetch_all(fn, ids, workers: int = 8) -> list:
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, [int(i) for i in ids]))


# ------------------------------------------------------------------------------------ formatting
def g(v, digits: int = 3) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def med_iqr(x) -> str:
    a = np.asarray(pd.to_numeric(pd.Series(x), errors="coerce"), float)
    n_all = len(a)
    a = a[np.isfinite(a)]
    if not len(a):
        return f"— (0/{n_all})"
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    tail = f"n = {len(a)}" if len(a) == n_all else f"{len(a)}/{n_all} reached"
    return f"{g(med)} [{g(q1)}, {g(q3)}] ({tail})"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def save(fig, out: Path, name: str, written: list[Path]) -> str:
    p = plots.save_png(fig, out / name, dpi=90)
    written.append(p)
    return name


# ------------------------------------------------------------------------------------ analysis
def balanced_items(client: Client, sweep: dict, out: Path, written: list[Path]) -> list[str]:
    df = client.results(sweep["id"])
    df = df[df["status"] == PointStatus.DONE].sort_values(["init_scale", "depth", "seed"]).reset_index(drop=True)
    curves = fetch_all(client.curves, df["point_id"])
    df["plateau"] = [plots.plateau_length(c["t"], c["error"]) for c in curves]
    # ‖X0‖/‖Y‖ of every (scale, seed): X0 = W1 of the depth-1 point (the same X0 at every depth)
    one = df[df["depth"] == 1]
    states = fetch_all(client.state, one["point_id"])
    x0_rel = {(r.init_scale, r.seed): float(np.linalg.norm(s["W1"]) / np.linalg.norm(s["Y"]))
              for r, s in zip(one.itertuples(), states)}
    df["x0_rel"] = [x0_rel.get((r.init_scale, r.seed), np.nan) for r in df.itertuples()]
    L: list[str] = []

    # 1. plateau against depth
    rows, verdicts = [], []
    for s in BALANCED_SCALES:
        sub = df[df["init_scale"] == s]
        med = sub.groupby("depth")["plateau"].median()
        rows.append([g(s), g(sub["x0_rel"].median())] + [med_iqr(sub[sub.depth == d]["plateau"]) for d in DEPTHS])
        if s in PLATEAU_SCALES:
            piv = sub.pivot(index="seed", columns="depth", values="plateau")
            per_seed = (piv.diff(axis=1).iloc[:, 1:] > 0).all(axis=1)
            verdicts.append((s, bool(np.all(np.diff(med.values) > 0)), int(per_seed.sum()), len(per_seed)))
    # Saxe et al.: for L >= 3 the escape time from x0 scales as x0^-(1-2/L); X0 ∝ s², so between
    # s = 0.01 and 0.03 the plateau should grow by about 9^(1-2/L) (asymptotically in small x0)
    ratio_rows = []
    a, b = (df[df["init_scale"] == s].set_index(["depth", "seed"])["plateau"] for s in PLATEAU_SCALES)
    r = (a / b).groupby(level=0).median()
    for d in DEPTHS:
        pred = "log(9)/(2σ₁) more, not a ratio" if d == 2 else ("≈ 1 (no plateau)" if d == 1 else g(9 ** (1 - 2 / d)))
        ratio_rows.append([str(d), g(r.get(d, np.nan)), pred])
    holds = all(v[1] for v in verdicts)
    L += ["## 1. The plateau of small balanced starts grows with depth", "",
          "**Claim (Saxe et al. 2014; Arora et al. 2018):** from a small balanced start, a deeper network "
          "stays longer near the saddle at X = 0 before it learns the first mode; for L ≥ 3 the escape "
          "time grows like x₀^−(1−2/L) instead of log(1/x₀) at L = 2.", "",
          "**flowsweep:** balanced starts, exact flow, the same X0 = U0V0ᵀ at every depth (per seed), "
          "plateau = first recorded t with e(t) ≤ 0.9·e(0) (grid 0.05). Median plateau increases with "
          "depth 1 → 6 at " + "; ".join(f"s = {g(s)}: {'yes' if ok else 'no'} ({k}/{n} seeds strictly "
                                       f"increasing at every step)" for s, ok, k, n in verdicts) + ".", "",
          f"**Verdict: {'holds' if holds else 'does not hold'}**", "",
          table(["init_scale", "‖X0‖/‖Y‖ (median)"] + [f"L = {d}" for d in DEPTHS], rows), "",
          "Plateau of s = 0.01 over s = 0.03 (X0 is 9× smaller), median over seeds, against the "
          "small-x₀ scaling 9^(1−2/L) of the balanced mode dynamics ẋ = L x^(2−2/L)(σ − x):", "",
          table(["depth", "measured ratio", "predicted"], ratio_rows), ""]
    small = df["init_scale"] <= 0.1            # larger starts have no plateau (e falls at once)
    fig = plots.plateau_figure(df[small], [c for c, k in zip(curves, small) if k], by=["init_scale"])
    L += [f"![plateau against depth]({save(fig, out, 'repro-deep-plateau.png', written)})", "",
          "*Plateau length against depth (dots: seeds; line: mean ± std), one series per init scale "
          "(the larger starts, without a plateau, left out); "
          "`flowsweep plot ID --kind plateau`.*", ""]
    # mean error curves of one small scale, one line per depth
    import matplotlib.figure as mf
    fig = mf.Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    s = PLATEAU_SCALES[1]
    for j, d in enumerate(DEPTHS):
        cs = [c for c, (_, r) in zip(curves, df.iterrows()) if r.init_scale == s and r.depth == d]
        t = np.asarray(cs[0]["t"])
        e = np.exp(np.mean([np.log(np.asarray(c["error"], float)) for c in cs], axis=0))
        ax.plot(t, e, color=f"C{j}", label=f"L = {d}")
    ax.set_yscale("log")
    ax.set_xlim(0, 45)
    ax.set_ylim(1e-3, 1.5)
    ax.set_xlabel("t")
    ax.set_ylabel("e(t) = ‖Y − X(t)‖/‖Y‖ (geometric mean over seeds)")
    ax.set_title(f"balanced start, init_scale = {g(s)}, same X0 at every depth", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    L += [f"![error against time per depth]({save(fig, out, 'repro-deep-error.png', written)})", "",
          f"*Error of the exact flow from the same small balanced start (init_scale {g(s)}) at depths 1–6; "
          "L = 1 is the one-layer model.*", ""]

    # 2. time to tolerance against depth at fixed X0
    rows = []
    best = []
    for s in BALANCED_SCALES:
        sub = df[df["init_scale"] == s]
        meds = sub.groupby("depth")["time_to_tol"].median()
        rows.append([g(s), g(sub["x0_rel"].median())] + [med_iqr(sub[sub.depth == d]["time_to_tol"]) for d in DEPTHS])
        best.append((s, int(meds.idxmin()) if meds.notna().any() else None, meds))
    L += ["## 2. Time to tolerance against depth at fixed X0", "",
          "**Question:** at a fixed end-to-end start X0 (balanced, so every depth starts from the same "
          "X0 and Arora et al.'s end-to-end dynamics apply), does depth speed up or slow down reaching "
          "e ≤ 0.01? Arora et al. argue depth acts as a preconditioner that can accelerate; Saxe et al. "
          "that small starts slow down with depth.", "",
          "**flowsweep:** median time to e ≤ 0.01 (exact flow, horizon t = 100; L = 1 is the one-layer "
          "model, time log(e0/0.01)). The fastest depth per init scale: "
          + "; ".join(f"s = {g(s)} → L = {b}" for s, b, _ in best) + ".", "",
          f"**Verdict: {_time_verdict_head(best)}** — " + _time_verdict(best), "",
          table(["init_scale", "‖X0‖/‖Y‖"] + [f"L = {d}" for d in DEPTHS], rows), ""]
    fig = plots.depth_figure(df, by=["init_scale"])
    L += [f"![time to tolerance against depth]({save(fig, out, 'repro-deep-time.png', written)})", "",
          "*Time to e ≤ 0.01 against depth at fixed X0 (one series per init scale); "
          "`flowsweep plot ID --kind depth`.*", ""]
    drift = pd.to_numeric(df["conservation_drift"], errors="coerce").max()
    L += [f"Conservation under the flow in these {len(df)} points: the largest `conservation_drift` "
          f"(max over adjacent pairs and t of ‖C_j(t) − C_j(0)‖/(‖W_j(0)‖² + ‖W_(j+1)(0)‖²)) is {g(drift)}.", ""]
    return L


def _time_verdict_head(best) -> str:
    grows = [bool(np.all(np.diff(m.loc[2:].dropna().values) > 0)) for _, _, m in best]
    two = [b == 2 for _, b, _ in best]
    head = ("extra depth beyond L = 2 slows the balanced flow at every ‖X0‖ measured" if all(grows)
            else "extra depth beyond L = 2 does not always slow the balanced flow")
    if any(two):
        head += "; L = 2 is the fastest once ‖X0‖ is not small"
    return head


def _time_verdict(best) -> str:
    parts = []
    for s, b, meds in best:
        m = meds.dropna()
        if m.empty:
            continue
        if b == 1:
            parts.append(f"at s = {g(s)} the one-layer model is fastest and time grows with depth "
                         f"({g(m.iloc[0])} at L = 1 → {g(m.iloc[-1])} at L = {int(m.index[-1])})")
        else:
            parts.append(f"at s = {g(s)} depth {b} is fastest ({g(m.loc[b])} against {g(m.loc[1])} at L = 1)")
    return "; ".join(parts) + "."


def imbalance_items(client: Client, sweep: dict, out: Path, written: list[Path]) -> list[str]:
    df = client.results(sweep["id"])
    df = df[df["status"] == PointStatus.DONE]
    L: list[str] = []
    rows = []
    checks = []
    for s in SPECTRAL_SCALES:
        for d in SPECTRAL_DEPTHS:
            sub = df[(df.init_scale == s) & (df.depth == d)]
            med = sub.groupby("lambda0")["time_to_tol"].median()
            piv = sub.pivot(index="seed", columns="lambda0", values="time_to_tol")
            per_seed = int((piv.diff(axis=1).iloc[:, 1:] < 0).all(axis=1).sum())
            checks.append((s, d, bool(np.all(np.diff(med.values) < 0)), per_seed, len(piv)))
            rows.append([g(s), str(d)] + [med_iqr(sub[sub.lambda0 == lam]["speedup"]) for lam in LAMBDAS]
                        + [f"{per_seed}/{len(piv)}"])
    deep_ok = all(ok for s, d, ok, _, _ in checks if d >= 3)
    med_sp = df.groupby(["init_scale", "lambda0", "depth"])["speedup"].median()
    deeper_more = all(np.all(np.diff(med_sp.loc[(s, lam)].values) > 0)
                      for s in SPECTRAL_SCALES for lam in LAMBDAS if lam > 0)
    rp = pd.to_numeric(df["rate_pred"], errors="coerce")
    rf = pd.to_numeric(df["rate_fit"], errors="coerce")
    rel = ((rf - rp).abs() / rp).dropna()
    cf = pd.to_numeric(df["closed_form_error"], errors="coerce")
    drift = pd.to_numeric(df["conservation_drift"], errors="coerce")
    L += ["## 3. Does imbalance still accelerate at L ≥ 3?", "",
          "**Question:** at L = 2 the conserved imbalance λ₀ sets the rate √(4σ² + λ₀²) (the paper, "
          "eq. 16) and accelerates convergence. Deeper networks conserve W_(j+1)ᵀW_(j+1) − W_jW_jᵀ for "
          "every adjacent pair (Du, Hu, Lee 2018); does a non-zero imbalance still speed them up?", "",
          "**flowsweep:** spectral starts X0 = s²ΦΨᵀ (the same at every depth and λ₀) with "
          "W_(j+1)ᵀW_(j+1) − W_jW_jᵀ = λ₀ on the m modes of every pair, exact flow. Time to e ≤ 0.01 "
          "decreases strictly with λ₀ ∈ {0, 0.5, 1, 2} (median over seeds) at "
          + "; ".join(f"s = {g(s)}, L = {d}: {'yes' if ok else 'no'} ({k}/{n} seeds)" for s, d, ok, k, n in checks)
          + ".", "",
          f"**Verdict: {'holds at L = 3 and 4' if deep_ok else 'does not hold at every depth ≥ 3'}**"
          + (" — and more strongly than at L = 2: the median speedup grows with depth at every λ₀ > 0 and "
             "init scale." if deeper_more else "."), "",
          "Speedup over the one-layer model from the same X0 (time_to_tol_linear / time_to_tol), "
          "median [IQR]; last column: seeds whose time decreases at every step of λ₀:", "",
          table(["init_scale", "depth"] + [f"λ₀ = {g(lam)}" for lam in LAMBDAS] + ["monotone seeds"], rows), "",
          "Why: per mode the layers' scales a_j satisfy a_(j+1)² − a_j² = λ₀ and Π a_j = x; at convergence "
          "(x = σ) the linearised rate is σ² Σ_j 1/a_j² (`rate_pred`; L σ^(2−2/L) when balanced, eq. 16 at "
          "L = 2). Imbalance makes one layer small (a_1² ≈ σ²/((L−1)!·λ₀^(L−1))) and the others large, "
          "so at large λ₀ the rate tends to (L−1)!·λ₀^(L−1), whatever σ: λ₀ at L = 2, 2λ₀² at L = 3, "
          "6λ₀³ at L = 4 — imbalance accelerates more with depth. flowsweep's fitted tail rate `rate_fit` "
          "agrees with `rate_pred` to a median "
          f"relative difference of {g(rel.median())} (max {g(rel.max())}, {len(rel)} points with a "
          "fittable tail).", "",
          f"Exactness in these {len(df)} points: each spectral mode follows the scalar deep network "
          f"(Saxe et al.), `closed_form_error` max {g(cf.max())}; `conservation_drift` max {g(drift.max())}.",
          ""]
    sub = df[df.init_scale == SPECTRAL_SCALES[0]]
    fig = plots.speedup_figure(sub, x="lambda0", by=["depth"])
    L += [f"![speedup against imbalance]({save(fig, out, 'repro-deep-imbalance.png', written)})", "",
          f"*Speedup over the one-layer model against the imbalance λ₀ of every adjacent pair, spectral "
          f"start init_scale {g(SPECTRAL_SCALES[0])}, one series per depth; "
          "`flowsweep plot ID --kind speedup --x lambda0 --by depth`.*", ""]
    return L


def gaussian_items(client: Client, sweep: dict, out: Path, written: list[Path]) -> list[str]:
    df = client.results(sweep["id"])
    df = df[df["status"] == PointStatus.DONE]
    rows, mono = [], []
    for d in SPECTRAL_DEPTHS:
        sub = df[df.depth == d]
        med = sub.groupby("init_scale")["speedup"].median()
        mono.append((d, bool(np.all(np.diff(med.values) > 0))))
        rows.append([str(d)] + [f"{med_iqr(sub[sub.init_scale == s]['speedup'])}; "
                                f"‖C‖ {g(sub[sub.init_scale == s]['q0_norm'].median())}"
                                for s in GAUSSIAN_SCALES])
    ok = all(m for d, m in mono if d >= 3)
    fig = plots.speedup_figure(df, x="init_scale", by=["depth"])
    return ["### Gaussian starts (Fig. 1 at depth)", "",
            "Without a spectral start the imbalance cannot be set alone; the paper's Fig. 1 raises it with "
            "the Gaussian scale s (‖C_j‖ ∝ s²k). Every layer N(0, s²), exact flow, speedup over the "
            "one-layer model from the same X0. The median speedup grows with s at "
            + "; ".join(f"L = {d}: {'yes' if m else 'no'}" for d, m in mono) + f" — "
            f"**{'holds at L = 3 and 4 too' if ok else 'not at every depth ≥ 3'}** (here ‖X0‖ grows with s "
            "as well, so this is the paper's Fig. 1 claim at depth, not a controlled one).", "",
            "Speedup median [IQR]; ‖C‖ = `q0_norm` (largest pair) median:", "",
            table(["depth"] + [f"s = {g(s)}" for s in GAUSSIAN_SCALES], rows), "",
            f"![speedup against Gaussian scale]({save(fig, out, 'repro-deep-gaussian.png', written)})", "",
            "*Speedup over the one-layer model against the Gaussian init scale, one series per depth; "
            "`flowsweep plot ID --kind speedup --by depth`.*", ""]


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="use a running flowsweep service instead of starting one")
    ap.add_argument("--out", default=str(REPO / "docs"), help="directory for reproduction-deep.md and PNGs")
    ap.add_argument("--quick", action="store_true", help="3 seeds per group (smoke run)")
    ap.add_argument("--cpus", type=int, default=None, help="Ray CPUs of the embedded service (default: all)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    seeds = 3 if args.quick else SEEDS
    specs = sweep_specs(seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    service = workdir = None
    written: list[Path] = []
    if not args.url:
        workdir = Path(tempfile.mkdtemp(prefix="flowsweep-repro-deep-"))
        service = EmbeddedService(workdir, args.cpus)
        url = service.url
        print(f"starting flowsweep serve on {url} (SQLite in {workdir})", flush=True)
    else:
        url = args.url
    try:
        with Client(url, timeout=120) as client:
            health = service.wait_ready(client) if service else client.health()
            t0 = time.monotonic()
            sw = run_sweeps(client, specs, args.timeout)
            sweep_seconds = time.monotonic() - t0
            print(f"sweeps finished in {sweep_seconds:.0f} s; analysing", flush=True)
            body = balanced_items(client, sw["balanced"], out, written)
            body += imbalance_items(client, sw["spectral"], out, written)
            body += gaussian_items(client, sw["gaussian"], out, written)
    finally:
        if service:
            service.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    n_points = sum(s["n_points"] for s in sw.values())
    head = ["# Deep linear networks with flowsweep", "",
            f"Generated by `{COMMAND}` ({(time.monotonic() - t_start) / 60:.1f} min on this shared 2-core "
            f"machine, under load): an embedded `flowsweep serve` on a fresh SQLite file, "
            f"{n_points} points in {len(sw)} sweeps of model `deep` POSTed over REST "
            f"({sweep_seconds:.0f} s from submission to the last result, "
            f"{(health.get('ray') or {}).get('cpus', '?')} Ray CPUs), every number read back through the "
            f"API; flowsweep {git_commit()}. Spread: median [IQR] over seeds, each seed its own Y ~ N(0, 1) "
            f"(5×10) and weights; hidden width k = 20.", "",
            "## Sweeps", "",
            table(["sweep", "init", "integrator", "η", "steps", "axes"],
                  [[s["name"], s["init"], s["integrator"], g(s["eta"]), str(s["steps"]),
                    ", ".join(f"{a}={v}" for a, v in s["axes"].items())] for s in specs.values()]), ""]
    path = out / "reproduction-deep.md"
    path.write_text("\n".join(head + body))
    for p in written:
        print(f"  {p}: {p.stat().st_size / 1024:.0f} KB")
    print(f"wrote {path} in {(time.monotonic() - t_start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
