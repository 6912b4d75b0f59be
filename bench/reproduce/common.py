"""Shared pieces of the reproduction: the embedded service, submitting and waiting, statistics,
report items and the Markdown writer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._service import ServiceProcess  # noqa: E402
from flowsweep.service import plots  # noqa: E402
from flowsweep.service.client import Client, FlowsweepError, ServerUnavailable  # noqa: E402
from flowsweep.status import FINISHED_COUNT_KEYS, FINISHED_SWEEP_STATUSES, PointStatus, SweepStatus  # noqa: E402

COMMAND = ".venv/bin/python bench/reproduce"
PAPER_ITERATIONS = 4000  # the paper plots Figs. 1 and 2 over 4000 iterations


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
                    raise TimeoutError(f"flowsweep serve not ready after {timeout:.0f} s:\n{self.log_tail()}") from None
                time.sleep(0.3)
                continue
            if client.sweeps(limit=1).get("count"):
                raise RuntimeError(
                    f"the service on port {self.port} already has sweeps: it is not the fresh embedded one"
                )
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
        finished = sum(sum((st.get("counts") or {}).get(c) or 0 for c in FINISHED_COUNT_KEYS) for st in states.values())
        line = f"  {finished}/{total} points finished"
        if line != last:
            print(line, flush=True)
            last = line
        if all(st["status"] in FINISHED_SWEEP_STATUSES for st in states.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweeps not finished after {timeout:.0f} s: {line}")
        time.sleep(2.0)
    bad = {k: st["status"] for k, st in states.items() if st["status"] != SweepStatus.DONE}
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


def median_iqr(x, digits: int = 3, fixed: bool = False, censored: bool = False) -> str:
    """median [Q1, Q3] (n); `fixed` prints `digits` decimals (ratios near 1: 1.0012, not 1);
    `censored`: a missing value is a run that never got there (time_to_tol, speedup), and the count
    says how many of all did, `k/N reached` (the quartiles are of those that did)."""
    a = finite(x)
    n_all = len(pd.Series(x))
    count = f"{len(a)}/{n_all} reached" if censored and len(a) < n_all else f"n = {len(a)}"
    if not len(a):
        return f"— ({count})"
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    f = (lambda v: f"{v:.{digits}f}") if fixed else (lambda v: g(v, digits))
    return f"{f(med)} [{f(q1)}, {f(q3)}] ({count})"


def frac(mask) -> str:
    m = np.asarray(mask, bool)
    return f"{int(m.sum())}/{len(m)}"


def cut(curves: dict, t_max: float) -> dict:
    """Curves restricted to t <= t_max (the paper's plotting window)."""
    keep = np.asarray(curves["t"]) <= t_max * (1 + 1e-9)
    return {k: (None if v is None else np.asarray(v)[keep]) for k, v in curves.items()}


def fetch_all(fn: Callable[[int], Any], ids, workers: int = 4, attempts: int = 4) -> list[Any]:
    """fn(id) for every id on a few threads; a dropped connection (a busy shared machine) is retried."""

    def one(i: int):
        for k in range(attempts):
            try:
                return fn(i)
            except ServerUnavailable:
                if k == attempts - 1:
                    raise
                time.sleep(0.5 * 2**k)

    ids = [int(i) for i in ids]
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, ids))


@dataclass
class Item:
    name: str
    claim: str
    measured: str
    verdict: str
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)
    claim_by: str = "Paper"  # whose claim: the paper's, or (beyond the paper) the cited literature's
    details: list[str] = field(default_factory=list)  # markdown blocks


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(h.replace("|", "\\|") for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def save(
    fig, out_dir: Path, name: str, written: list[Path], ylabel: str | None = None, xlabel: str | None = None
) -> str:
    """Write fig as out_dir/name; `ylabel`/`xlabel` name in words a column this report computed
    (metric_figure labels an axis with the column's name)."""
    if ylabel:
        fig.axes[0].set_ylabel(ylabel)
    if xlabel:
        fig.axes[0].set_xlabel(xlabel)
    path = plots.save_png(fig, out_dir / name, dpi=80)
    written.append(path)
    return name


def done_results(client: Client, *sweeps: dict) -> pd.DataFrame:
    """The result rows of status done of one or more sweeps, as one frame."""
    parts = [client.results(sw["id"]) for sw in sweeps]
    return pd.concat([d[d["status"] == PointStatus.DONE] for d in parts], ignore_index=True)


def summary_check(client: Client, sweep_id: int, df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """GET /summary and check its mean against the rows' own mean (both come from the database)."""
    s = client.summary(sweep_id, by=by)
    col = f"{metric}_mean"
    if col in s.columns:
        for _, row in s.iterrows():
            sel = np.ones(len(df), bool)
            for b in by:
                sel &= np.isclose(pd.to_numeric(df[b]), float(row[b]))
            own = finite(df.loc[sel & (df["status"] == PointStatus.DONE), metric])
            if (
                len(own)
                and row[col] is not None
                and np.isfinite(row[col])
                and not np.isclose(own.mean(), float(row[col]), rtol=1e-9, atol=1e-12)
            ):
                print(
                    f"warning: /summary {col} = {row[col]} but the rows' mean is {own.mean()} "
                    f"(sweep {sweep_id}, {dict((b, row[b]) for b in by)})",
                    file=sys.stderr,
                )
    return s


def _combine(verdicts: list[str]) -> str:
    if verdicts and all(v == "matches" for v in verdicts):
        return "matches"
    if verdicts and all(v == "does not" for v in verdicts):
        return "does not"
    return "partly"


def failed_item(label: str, exc: BaseException) -> Item:
    import traceback

    traceback.print_exception(exc, file=sys.stderr)
    return Item(
        name=label,
        claim="(see the paper)",
        measured=f"not measured: {type(exc).__name__}: {exc}",
        verdict="not measured",
    )


# ------------------------------------------------------------------------------------ the report
def censored(summary: pd.DataFrame, metric: str) -> pd.Series:
    """Per group of a /summary answer: points without a value of `metric` (e.g. a speedup of a run
    that never reached tol: censored, not missing), from `<metric>_count` where the service gives it."""
    col = f"{metric}_count"
    if col in summary.columns:
        return summary["count"] - pd.to_numeric(summary[col])
    return pd.Series([np.nan] * len(summary), index=summary.index)


def write_report(path: Path, items: list[Item], meta: dict) -> None:
    L = [
        "# Reproducing the paper with flowsweep",
        "",
        f"Generated by one command from the repository root (about {meta['minutes']:.0f} min on this 2-core machine):",
        "",
        "```sh",
        COMMAND,
        "```",
        "",
        "It starts an embedded service (`flowsweep serve` on a fresh SQLite file), POSTs the paper's "
        "experiments as sweeps, waits, and reads every number back through the REST API (result rows, "
        "`/summary`, `/points/{id}/curves`, `/points/{id}/state`); figures are drawn by `service.plots`. "
        f"`--url` uses a running service instead. This run: {meta['points']} points in "
        f"{meta['n_sweeps']} sweeps, {meta['sweep_seconds']:.0f} s from submission to the last result "
        f"({meta['cpus']} Ray CPUs), flowsweep {meta['commit']}.",
        "",
        "Verdicts: **matches** = flowsweep's value agrees with the paper's within the seed spread "
        "(|paper − mean| ≤ 2 std over seeds) or the qualitative claim holds for the median seed; "
        "**partly** = part of the claim holds; **does not** = it fails. Spread is mean ± std or "
        "median [IQR] over n seeds; every seed draws its own data Y and initial weights unless a sweep "
        "fixes `data_seed`. Timings were taken on a shared, loaded machine.",
        "",
        "The items named *Deep networks* go beyond the paper (model `deep`, X = W_L ⋯ W_1): their claim "
        "is the cited literature's, or the paper's two-layer claim asked again at depth L ≥ 3, and the "
        "verdict says whether flowsweep's numbers bear it out.",
        "",
        "## Summary",
        "",
        table(
            ["item", "claim", "flowsweep (n seeds)", "verdict"],
            [[it.name, it.claim, it.measured, f"**{it.verdict}**"] for it in items],
        ),
        "",
    ]
    for it in items:
        L += [
            f"## {it.name}",
            "",
            f"**{it.claim_by}:** {it.claim}",
            "",
            f"**flowsweep:** {it.measured}",
            "",
            f"**Verdict: {it.verdict}**",
            "",
        ]
        for d in it.details:
            L += [d, ""]
        for n in it.notes:
            L += [n, ""]
        for fname, cap in it.figures:
            L += [f"![{cap}]({fname})", "", f"*{cap}.*", ""]
    L += [
        "## Sweeps",
        "",
        "Seeds per group: " + ", ".join(f"{k} {v}" for k, v in meta["seeds"].items()) + ".",
        "",
        table(
            ["sweep", "model", "init", "integrator", "m×n", "η", "steps", "axes and data"],
            [
                [
                    s["name"],
                    s["model"],
                    s.get("init", "gaussian"),
                    s.get("integrator", "gd"),
                    f"{s['m']}×{s.get('n', s['m'])}",
                    g(s["eta"]) if "eta" in s else "axis",
                    str(s["steps"]),
                    ", ".join(
                        [f"{a}={v}" for a, v in s["axes"].items()]
                        + [
                            f"{f}={s[f]}"
                            for f in ("y_singular_values", "data_seed", "fit_lambda0")
                            if s.get(f) is not None
                        ]
                    ),
                ]
                for s in meta["specs"].values()
            ],
        ),
        "",
    ]
    path.write_text("\n".join(L))


def git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
