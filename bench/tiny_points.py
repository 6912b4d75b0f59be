"""Tiny points end to end: a 20,000-point sweep of 10-step points through the service, against the
plain per-point numpy loop a researcher would write for the same points, in the same run.

Points: asymmetric model, m=5, n=10, k=50, gaussian init (scale 0.1), gd with eta=1e-3 for 10
steps, recorded every step (issue 9). The loop draws Y, U0, V0, runs the 10 steps and computes the
relative error, the singular values of X = U V^T and ||Q0||, one point after another on ONE core.
The service (`python -m flowsweep.service.server`, SQLite in a temporary directory, local Ray on 2
CPUs) is timed from the POST to the sweep's finished_at, start-up and Ray's worker start excluded
(a warm-up sweep runs first). Per sweep it also prints when the POST answered and the runner took
the sweep up, the CPU its processes used per point (the service process, Ray's workers, Ray's own
processes: all of it comes out of the same 2 CPUs), and the service process's RSS (sampled every
0.2 s: before, and the max in the sweep's first and second halves - bounded, not growing with the
sweep).

`--baseline PYTHON SOURCE` runs a second service from another source tree (e.g. an export of an
older commit with its own venv), interleaved with this one; the loop runs before every round.
Later rounds POST with `recompute` (else every point would be cached). Ratios are of medians.

Also printed: core alone on one core (the floor the service cannot go below, per CPU), as
`run_points` and as `run_points_columns`, in rounds alternating with the loop (CPU time, medians);
`--stages` adds where core's time goes, `--core-only` skips the service; `--core-only --baseline PY SRC`
compares core alone of both trees, in alternating processes (2 x rounds of them each).
Target (issue 9): service throughput >= 5x the loop's.

    .venv/bin/python bench/tiny_points.py [--points 20000] [--cpus 2] [--rounds 2] [--baseline PY SRC]
                                          [--core-only] [--stages]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one core for the loop (and single-threaded BLAS in the service's workers)

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._service import ServiceProcess  # noqa: E402
from bench.e2e_throughput import Service, wait_done  # noqa: E402
from flowsweep.status import SweepStatus  # noqa: E402
from tests.paper_points import TINY_ETA, TINY_K, TINY_M, TINY_N, TINY_SCALE, TINY_STEPS, tiny_configs  # noqa: E402

M, N, K, ETA, STEPS, SCALE = TINY_M, TINY_N, TINY_K, TINY_ETA, TINY_STEPS, TINY_SCALE
TARGET = 5.0


def sweep_body(points: int, name: str) -> dict:
    return {
        "name": name,
        "model": "asymmetric",
        "init": "gaussian",
        "integrator": "gd",
        "m": M,
        "n": N,
        "eta": ETA,
        "steps": STEPS,
        "record_every": 1,
        "axes": {"init_scale": [SCALE], "k": [K], "lambda0": [0.0], "seed": {"range": [0, points]}},
    }


def plain_loop(points: int) -> float:
    """The per-point numpy loop on one core; returns seconds."""
    t0 = time.perf_counter()
    for seed in range(points):
        rng = np.random.default_rng(seed)
        Y = rng.standard_normal((M, N))
        U = SCALE * rng.standard_normal((M, K))
        V = SCALE * rng.standard_normal((N, K))
        q0_norm = np.linalg.norm(U.T @ U - V.T @ V)
        errors = np.empty(STEPS + 1)
        svs = np.empty((STEPS + 1, M))
        ynorm = np.linalg.norm(Y)
        for i in range(STEPS + 1):
            X = U @ V.T
            R = Y - X
            errors[i] = np.linalg.norm(R) / ynorm
            svs[i] = np.linalg.svd(X, compute_uv=False)
            if i < STEPS:
                U, V = U + ETA * (R @ V), V + ETA * (R.T @ U)
        assert np.isfinite(errors[-1]) and q0_norm > 0
    return time.perf_counter() - t0


def core_alone(points: int, rounds: int = 5) -> dict[str, float]:
    """core on one core against the loop, in CPU seconds of this process, alternating within each
    round (the machine is shared): medians in ms/point of the loop, `run_points` (PointResult
    objects) and `run_points_columns` (columns, what a service turning results into rows needs),
    and the median per-round cost ratios core/loop."""
    from flowsweep.core.run import run_points, run_points_columns

    cfgs = tiny_configs(points)
    run_points(cfgs[:10])
    t: dict[str, list[float]] = {"loop": [], "run_points": [], "run_points_columns": []}
    wall: list[float] = []  # run_points in wall-clock time, for the service's ratio to it
    for _ in range(rounds):
        for name, fn in (
            ("loop", lambda: plain_loop(points)),
            ("run_points", lambda: run_points(cfgs)),
            ("run_points_columns", lambda: run_points_columns(cfgs)),
        ):
            t0, w0 = time.process_time(), time.perf_counter()
            fn()
            t[name].append((time.process_time() - t0) / points * 1e3)
            if name == "run_points":
                wall.append((time.perf_counter() - w0) / points * 1e3)
    out = {name: float(np.median(v)) for name, v in t.items()}
    out["run_points wall"] = float(np.median(wall))
    for name in ("run_points", "run_points_columns"):
        out[name + "/loop"] = float(np.median(np.array(t[name]) / np.array(t["loop"])))
    return out


def core_stages(points: int = 512, rounds: int = 5) -> dict[str, float]:
    """Where core's time goes on one batch of tiny points (ms/point, CPU, median of rounds)."""
    from flowsweep.core import data, metrics, run
    from flowsweep.core.dynamics import record_grid, reduce_factors
    from flowsweep.core.validation import validate_config

    cfgs = tiny_configs(points)
    run.run_points(cfgs[:10])
    acc: dict[str, list[float]] = {}
    clock = [0.0]

    def tick(name: str) -> None:
        now = time.process_time()
        acc.setdefault(name, []).append((now - clock[0]) / points * 1e3)
        clock[0] = now

    for _ in range(rounds):
        clock[0] = time.process_time()
        for c in cfgs:
            validate_config(c)
        tick("validate_config")
        s = data.make_initial_states(cfgs)
        tick("data (Y, U0, V0)")
        reduce_factors(s.U0, s.V0, s.factors)
        tick("reduce_factors (Cholesky)")
        prob = run._stacked_problem(cfgs)
        clock[0] = time.process_time()
        tr = run._integrate(cfgs, prob)
        tick("gd")
        sv = run.trajectory_singular_values(tr, record_grid(ETA, STEPS, 1))
        tick("singular values")
        X_reg = run._regularized_flows(cfgs, prob, tr)
        tick("regularized flow (closed form)")
        metrics.batch_metrics(cfgs, prob.Y, prob.U0, prob.V0, tr, sv, X_reg=X_reg)
        tick("metrics")
        cols = run.run_points_columns(cfgs)
        tick("run_points_columns (all of the above)")
        cols.results()
        tick("PointResult objects")
    return {name: float(np.median(v)) for name, v in acc.items()}


def print_core_alone(n: int, core_points: int) -> float:
    """Print core alone against the loop (rounds on min(n, core_points) points); returns core's
    run_points seconds per point in wall-clock time (as the service is timed)."""
    core_n = min(n, core_points)
    c = core_alone(core_n)
    print(
        f"  core alone, one core ({core_n} points, CPU time, median of 5 rounds alternating with the loop): "
        f"loop {c['loop']:.3f} ms/point, run_points {c['run_points']:.3f} ms/point "
        f"(cost {c['run_points/loop']:.2f}x the loop's), run_points_columns {c['run_points_columns']:.3f} ms/point "
        f"({c['run_points_columns/loop']:.2f}x); run_points wall-clock {c['run_points wall']:.3f} ms/point"
    )
    return c["run_points wall"] / 1e3


_CORE_CHILD = (
    "import json, sys; sys.path.insert(0, '.'); from bench.tiny_points import core_alone; "
    "print(json.dumps(core_alone({points}, {rounds})))"
)


def core_against_baseline(points: int, python: str, source: str, rounds: int = 4) -> None:
    """core alone (`core_alone`, one process per tree and round) of this tree and of a baseline
    tree (its interpreter and source folder), interleaved round by round, the order alternating:
    each tree's cost ratio to the loop measured in the same process, then compared."""
    import json
    import subprocess

    trees = {"this": (sys.executable, str(REPO)), "baseline": (python, source)}
    ratios: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for i in range(rounds):
        for name in list(trees) if i % 2 == 0 else list(trees)[::-1]:
            py, src = trees[name]
            code = _CORE_CHILD.format(points=points, rounds=2)
            out = json.loads(
                subprocess.run([py, "-c", code], cwd=src, capture_output=True, text=True, check=True).stdout
            )
            for key in ("run_points/loop", "run_points_columns/loop", "loop", "run_points_columns"):
                ratios[name].setdefault(key, []).append(out[key])
            print(
                f"  round {i + 1} {name:8s}: loop {out['loop']:.3f} ms/point, run_points_columns "
                f"{out['run_points_columns']:.3f} ms/point = {out['run_points_columns/loop']:.3f}x the loop's"
            )
    for name, r in ratios.items():
        cols = r["run_points_columns/loop"]
        print(
            f"{name:8s}: run_points_columns / loop = {statistics.median(cols):.3f} (median of {len(cols)} rounds, "
            f"range {min(cols):.3f}-{max(cols):.3f}); run_points / loop = {statistics.median(r['run_points/loop']):.3f}"
        )
    a = statistics.median(ratios["this"]["run_points_columns/loop"])
    b = statistics.median(ratios["baseline"]["run_points_columns/loop"])
    print(f"core's cost per point, this / baseline (each relative to the loop in its own process) = {a / b:.3f}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_by_kind(session_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the processes of the service's session: the service
    process itself, Ray's workers, and Ray's other processes (raylet, GCS, ...)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"service": 0.0, "ray workers": 0.0, "ray system": 0.0}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if int(f[3]) != session_pid:  # field 6 of stat: the session id
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        cpu = (int(f[11]) + int(f[12])) / tick
        if int(d.name) == session_pid:
            out["service"] += cpu
        elif "default_worker" in cmd or cmd.startswith("ray::"):
            out["ray workers"] += cpu
        else:
            out["ray system"] += cpu
    return out


class TinyService(Service):
    """The embedded service of bench.e2e_throughput, from another source tree when given (a
    baseline: its interpreter and source folder, run there with `env -C`)."""

    def __init__(self, cpus: int, workdir: Path, python: str | None = None, source: str | None = None):
        workdir.mkdir(exist_ok=True)
        if python is None:
            super().__init__(cpus, workdir)
            return
        cmd = ["env", "-C", str(source), python, "-m", "flowsweep.service.server"]
        ServiceProcess.__init__(self, workdir, cpus, "bench.db", cmd)
        self.client = httpx.Client(base_url=self.url, timeout=30)


def time_sweep(service: TinyService, n: int, name: str, recompute: bool) -> dict:
    """One n-point sweep, POST -> finished_at, with the service's RSS sampled every 0.2 s and the
    CPU used by its processes."""
    rss: list[tuple[float, float]] = [(0.0, rss_mb(service.proc.pid))]
    stop = threading.Event()
    t_start = time.perf_counter()

    def sample():
        while not stop.wait(0.2):
            try:
                rss.append((time.perf_counter() - t_start, rss_mb(service.proc.pid)))
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0 = cpu_by_kind(service.proc.pid)
    body = sweep_body(n, name)
    body["recompute"] = recompute
    posted_at = datetime.now(UTC)
    t_post = time.perf_counter()
    r = service.client.post("/sweeps", json=body)
    t_post = time.perf_counter() - t_post
    r.raise_for_status()
    out = wait_done(service.client, r.json()["id"], 1800)
    cpu1 = cpu_by_kind(service.proc.pid)
    stop.set()
    sampler.join()
    seconds = (datetime.fromisoformat(out["finished_at"]) - posted_at).total_seconds()
    rows = service.client.get(f"/sweeps/{out['id']}/results", params={"limit": 1}).json()["count"]
    half = seconds / 2
    return {
        "seconds": seconds,
        "post": t_post,
        "started": (datetime.fromisoformat(out["started_at"]) - posted_at).total_seconds(),
        "cpu": {k: (cpu1[k] - cpu0[k]) / n for k in cpu0},
        "rss_before": rss[0][1],
        "rss_first_half": max(v for t, v in rss if t <= half),
        "rss_second_half": max([v for t, v in rss if t > half] or [rss[-1][1]]),
        "ok": out["status"] == SweepStatus.DONE and rows == n,
        "status": out["status"],
        "rows": rows,
        "runner": service.runner_lines(out["id"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--core-points", type=int, default=2000, help="points of the core-alone rounds")
    ap.add_argument("--core-only", action="store_true", help="core alone against the loop; no service")
    ap.add_argument("--stages", action="store_true", help="also print where core's time goes, per stage")
    ap.add_argument("--rounds", type=int, default=2, help="alternating loop / service(s) measurements")
    ap.add_argument(
        "--baseline",
        nargs=2,
        metavar=("PYTHON", "SOURCE"),
        help="also run a second service (e.g. an older commit: its interpreter and source tree), "
        "interleaved with this one in every round",
    )
    args = ap.parse_args()
    n = args.points
    if args.stages:
        print("core per stage, one batch of 512 tiny points (ms/point, CPU, median of 5 rounds):")
        for name, ms in core_stages().items():
            print(f"  {name:40s} {ms:.4f}")
    if args.core_only:
        if args.baseline:
            core_against_baseline(min(n, args.core_points), *args.baseline, rounds=2 * args.rounds)
            return
        print_core_alone(n, args.core_points)
        return
    print(f"tiny points: {n} points of {STEPS} gd steps (m={M}, n={N}, k={K}); service on {args.cpus} CPUs")
    loop_s: list[float] = []
    runs: dict[str, list[dict]] = {"service": []}
    with tempfile.TemporaryDirectory(prefix="fstiny") as tmp:
        services = {"service": TinyService(args.cpus, Path(tmp) / "service")}
        if args.baseline:
            runs["baseline"] = []
            services["baseline"] = TinyService(args.cpus, Path(tmp) / "baseline", *args.baseline)
        try:
            for name, service in services.items():
                print(f"  {name} ready in {service.wait_ready():.1f} s (start-up excluded)")
                service.run_sweep(sweep_body(20, "warm-up"))  # Ray's workers exist, core imported
            core_s = print_core_alone(n, args.core_points) * n
            for i in range(args.rounds):
                loop_s.append(plain_loop(n))
                print(
                    f"  #{i + 1} plain per-point loop, one core: {loop_s[-1]:6.2f} s ({loop_s[-1] / n * 1e3:.3f} ms/pt)"
                )
                order = list(services) if i % 2 == 0 else list(services)[::-1]
                for name in order:
                    r = time_sweep(services[name], n, f"tiny-{i + 1}", recompute=i > 0)
                    runs[name].append(r)
                    print(
                        f"  #{i + 1} {name:8s}: {r['seconds']:6.2f} s POST -> finished_at "
                        f"({r['seconds'] / n * 1e3:.3f} ms/point; {loop_s[-1] / r['seconds']:.2f}x the loop), "
                        f"status {r['status']}, {r['rows']} result rows"
                    )
                    print(
                        f"      POST answered after {r['post']:.2f} s; runner took it up after {r['started']:.2f} s; "
                        "CPU us/point: " + "; ".join(f"{k} {v * 1e6:.0f}" for k, v in r["cpu"].items())
                    )
                    print(
                        f"      service RSS: {r['rss_before']:.0f} MB before; max {r['rss_first_half']:.0f} MB in the "
                        f"sweep's first half, {r['rss_second_half']:.0f} MB in its second half"
                    )
                    for line in r["runner"]:
                        print("      runner:", line[:300])
            loop_s.append(plain_loop(n))
            print(f"  #{args.rounds + 1} plain per-point loop, one core: {loop_s[-1]:6.2f} s")
        finally:
            for service in services.values():
                service.stop()
    loop = statistics.median(loop_s)
    print()
    print(f"plain loop, one core (median of {len(loop_s)}): {loop / n * 1e3:.3f} ms/point")
    for name, rs in runs.items():
        svc = statistics.median(r["seconds"] for r in rs)
        ratio = loop / svc
        print(
            f"{name:8s}: {svc / n * 1e3:.3f} ms/point (median of {len(rs)}); throughput / the loop's = {ratio:.2f}x "
            f"(target >= {TARGET:.0f}x: {'MET' if ratio >= TARGET else 'NOT MET'}); "
            f"time / (core alone on {args.cpus} CPUs) = {svc / (core_s / args.cpus):.2f}; "
            f"overhead beyond core {(svc - core_s / args.cpus) / n * 1e6:.0f} us/point; "
            f"max RSS {max(max(r['rss_first_half'], r['rss_second_half']) for r in rs):.0f} MB"
        )
    if "baseline" in runs:
        a = statistics.median(r["seconds"] for r in runs["service"])
        b = statistics.median(r["seconds"] for r in runs["baseline"])
        print(f"service / baseline throughput = {b / a:.2f}x (same rounds, interleaved)")
    if not all(r["ok"] for rs in runs.values() for r in rs):
        sys.exit("a sweep did not complete with one result row per point")


if __name__ == "__main__":
    main()
