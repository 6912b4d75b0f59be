"""End-to-end throughput: the service versus core's batched path called directly, on the same CPUs.

A Fig. 1 sweep of the paper (asymmetric model, gaussian init, m=5, n=10, k=50, gd, eta=1e-3,
4000 steps, record_every 20; init scales 0.01, 0.1, 1 x 67 seeds = 201 points by default) is

- run directly: `core.run_points` on the same configs, split into one chunk per CPU and run by a
  `multiprocessing` Pool of nproc processes with single-threaded BLAS, like Ray's workers (pool
  start-up excluded, imports warmed);
- POSTed to an embedded service (`python -m service.server`: SQLite in a temporary directory, local
  Ray on all CPUs) started as a subprocess, and timed from the POST until GET /sweeps/{id} says
  `done` (results in the database); the service time is POST -> the sweep's `finished_at` (same
  machine's clock; the time until a 0.2 s poll sees it is printed too). Service and Ray start-up
  are EXCLUDED: the clock starts once
  /healthz answers and a tiny warm-up sweep has finished (so Ray's worker processes exist). The
  runner's own started_at -> finished_at and its per-run log line (tasks, chunk sizes, seconds spent
  writing results) are printed too, and the service process's own CPU seconds per sweep (its
  threads: API, runner, writer, Ray driver; not the Ray workers): its overhead, which competes with
  the workers for the CPUs, and which other load on the machine changes less than it changes seconds.

The two alternate for `--rounds` rounds (later service rounds POST with `recompute: true`), with a
last direct run at the end: the machine may be shared, and alternating evens out load drift. Each
throughput is points / mean seconds.

Target (issue 9): service throughput >= 90 % of the direct one, at 201 and at 2001 points.

Also printed: the fixed cost per sweep (a one-point sweep, POST -> finished_at), and the service
against the per-point numpy loop (bench/core_throughput.naive_point on the same CPUs; issue 14's
target >= 40x). `--baseline PYTHON SOURCE` runs a second service (e.g. an older commit's source
tree with a venv whose editable install points at it), interleaved with this one in every round,
for before/after numbers taken under the same load.

    .venv/bin/python bench/e2e_throughput.py [--seeds 67] [--steps 4000] [--cpus N] [--rounds 2]
        [--baseline PYTHON SOURCE]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._service import ServiceProcess  # noqa: E402
from flowsweep.core.types import PointConfig  # noqa: E402
from flowsweep.status import CACHED, FINISHED_SWEEP_STATUSES, PointStatus, SweepStatus  # noqa: E402
from tests.paper_points import FIG1_SCALES, fig1_configs  # noqa: E402

TARGET = 0.90
_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def sweep_body(seeds: int, steps: int, name: str) -> dict:
    return {
        "name": name,
        "model": "asymmetric",
        "init": "gaussian",
        "integrator": "gd",
        "m": 5,
        "n": 10,
        "eta": 1e-3,
        "steps": steps,
        "record_every": 20,
        "tol": 0.01,
        "axes": {"init_scale": list(FIG1_SCALES), "k": [50], "lambda0": [0.0], "seed": {"range": [0, seeds]}},
    }


def configs(seeds: int, steps: int) -> list[PointConfig]:
    return fig1_configs(seeds, steps)  # (bench/core_ab.py imports it from older trees too)


def _run_chunk(chunk: list[PointConfig]) -> int:
    from flowsweep import core

    results = core.run_points(chunk)
    return sum(r.status != PointStatus.FAILED for r in results)


class Direct:
    """core.run_points on nproc processes, one chunk per process (what a direct run would do)."""

    def __init__(self, nproc: int):
        self.nproc = nproc
        # One single-threaded BLAS per process, as Ray gives its workers (OMP_NUM_THREADS=1 for a
        # 1-CPU task): nproc processes x multi-threaded BLAS would oversubscribe the CPUs and make
        # the direct baseline slower than it should be. Spawned, so the children's numpy sees it.
        saved = {k: os.environ.get(k) for k in _BLAS_ENV}
        os.environ.update({k: "1" for k in _BLAS_ENV})
        try:
            self.pool = mp.get_context("spawn").Pool(nproc)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def warm(self, cfg: PointConfig) -> None:
        self.pool.map(_run_chunk, [[cfg]] * self.nproc)  # imports done in every process

    def time(self, cfgs: list[PointConfig]) -> float:
        chunks = [cfgs[i :: self.nproc] for i in range(self.nproc)]
        t0 = time.perf_counter()
        ok = sum(self.pool.map(_run_chunk, chunks, chunksize=1))
        dt = time.perf_counter() - t0
        assert ok == len(cfgs), f"direct run: only {ok}/{len(cfgs)} points succeeded"
        return dt

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


class Service(ServiceProcess):
    """An embedded service (`python -m service.server`, SQLite, local Ray) in a subprocess."""

    def __init__(self, cpus: int | None, workdir: Path, python: str = sys.executable, source: Path | None = None):
        cmd = [python, "-m", "flowsweep.service.server"]
        if source is not None:  # another source tree (a baseline): run from there (`env -C`)
            cmd = ["env", "-C", str(source), *cmd]
        workdir.mkdir(exist_ok=True)
        super().__init__(workdir, cpus, "bench.db", cmd)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_ready(self) -> float:
        t_start = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log()[-3000:])
            try:
                if self.client.get("/healthz").status_code == 200:
                    return time.monotonic() - t_start
            except httpx.HTTPError:
                pass
            if time.monotonic() - t_start > 180:
                raise TimeoutError("server not ready")
            time.sleep(0.2)

    def run_sweep(self, body: dict) -> tuple[float, dict]:
        """Seconds from the POST until GET /sweeps/{id} says the sweep finished."""
        cpu0 = process_cpu_seconds(self.proc.pid)
        posted_at = datetime.now(UTC)
        t0 = time.perf_counter()
        r = self.client.post("/sweeps", json=body)
        r.raise_for_status()
        out = wait_done(self.client, r.json()["id"], 1800)
        wall = time.perf_counter() - t0
        # The service process's own CPU (API, runner, writer, Ray driver; not its Ray workers): its
        # overhead, which competes with the workers for the CPUs. Less sensitive to other load than
        # seconds are (the polls of wait_done are in it too: at most one per 0.2 s).
        out["service_cpu"] = process_cpu_seconds(self.proc.pid) - cpu0
        # The sweep was done at its finished_at (server clock, same machine); polling only sees it
        # up to one poll interval later.
        out["post_to_finished"] = (
            (datetime.fromisoformat(out["finished_at"]) - posted_at).total_seconds() if out.get("finished_at") else None
        )
        out["result_rows"] = self.client.get(f"/sweeps/{out['id']}/results", params={"limit": 1}).json()["count"]
        if out["status"] != SweepStatus.DONE:
            print(self.log()[-6000:], file=sys.stderr)
        return wall, out

    def runner_lines(self, sweep_id: int) -> list[str]:
        """How the runner fed Ray (chunk sizes), from the server log."""
        return [
            line.split("flowsweep.runner: ", 1)[-1]
            for line in self.log().splitlines()
            if f"sweep {sweep_id} finished" in line or f"sweep {sweep_id} chunks returned" in line
        ]


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds the threads of process `pid` have run so far (/proc/PID/task/*/schedstat, in ns;
    a thread that has exited is missed: the service's threads live as long as it does)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the thread just exited
            pass
    return total / 1e9


def wait_done(client: httpx.Client, sweep_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        body = client.get(f"/sweeps/{sweep_id}").json()
        if body["status"] in FINISHED_SWEEP_STATUSES:
            return body
        # Not too often: every poll costs the service's process CPU that its Ray workers share.
        time.sleep(0.2)
    raise TimeoutError(f"sweep {sweep_id} not done after {timeout} s: {body}")


def _seconds(body: dict) -> float | None:
    if body.get("started_at") and body.get("finished_at"):
        return (
            datetime.fromisoformat(body["finished_at"]) - datetime.fromisoformat(body["started_at"])
        ).total_seconds()
    return None


def _naive_chunk(chunk: list[PointConfig]) -> int:
    from bench.core_throughput import naive_point

    for c in chunk:
        naive_point(c)
    return len(chunk)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=67, help="seeds per init scale (3 scales)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs for both sides (default: all)")
    ap.add_argument(
        "--rounds", type=int, default=2, help="alternating direct/service measurements (the machine may be shared)"
    )
    ap.add_argument("--fixed-tries", type=int, default=10, help="one-point sweeps timed for the fixed cost per sweep")
    ap.add_argument("--loop-points", type=int, default=8, help="points per CPU of the per-point numpy loop per round")
    ap.add_argument(
        "--baseline",
        nargs=2,
        metavar=("PYTHON", "SOURCE"),
        help="also run a second service (e.g. an older commit: its interpreter and source tree), "
        "interleaved with this one in every round",
    )
    args = ap.parse_args()
    nproc = args.cpus or os.cpu_count() or 1
    cfgs = configs(args.seeds, args.steps)
    n = len(cfgs)
    print(
        f"Fig. 1 sweep: {n} points (m=5, n=10, k=50, gd, eta=1e-3, {args.steps} steps), {nproc} CPUs; "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )

    direct_s: list[float] = []
    loop_s: list[float] = []  # seconds per point of the per-point loop on nproc CPUs
    names = ["service"] + (["baseline"] if args.baseline else [])
    service_s: dict[str, list[float]] = {k: [] for k in names}
    observed_s: dict[str, list[float]] = {k: [] for k in names}
    fixed_s: dict[str, list[float]] = {k: [] for k in names}
    cpu_s: dict[str, list[float]] = {k: [] for k in names}  # the service process's CPU seconds per sweep
    ok = True
    loop_cfgs = configs(max(1, args.loop_points * nproc // 3 + 1), args.steps)[: args.loop_points * nproc]
    with tempfile.TemporaryDirectory(prefix="fsbench") as tmp:
        direct = Direct(nproc)
        services = {"service": Service(args.cpus, Path(tmp) / "service")}
        if args.baseline:
            services["baseline"] = Service(args.cpus, Path(tmp) / "baseline", args.baseline[0], Path(args.baseline[1]))
        try:
            direct.warm(cfgs[0])
            for name, service in services.items():
                print(f"  {name} ready in {service.wait_ready():.1f} s (start-up excluded)")
                # Ray starts its worker processes lazily: a tiny sweep makes them exist (excluded).
                service.run_sweep(sweep_body(1, 20, "warm-up"))

            def time_direct(label: str) -> None:
                d = direct.time(cfgs)
                direct_s.append(d)
                print(f"  direct   {label}: {d:6.2f} s  ({n / d:5.1f} points/s)")
                chunks = [loop_cfgs[i::nproc] for i in range(nproc)]
                t0 = time.perf_counter()
                direct.pool.map(_naive_chunk, chunks, chunksize=1)
                loop_s.append((time.perf_counter() - t0) / len(loop_cfgs))

            for i in range(args.rounds):
                time_direct(f"#{i + 1}")
                # Round 1 computes; later rounds ask to recompute (else every point is cached).
                body = sweep_body(args.seeds, args.steps, f"bench-fig1-{i + 1}")
                body["recompute"] = i > 0
                # which service goes first alternates (the load may drift within a round too)
                for name, service in list(services.items())[:: 1 if i % 2 == 0 else -1]:
                    wall, out = service.run_sweep(body)
                    fin = out["post_to_finished"] or wall
                    service_s[name].append(fin)
                    observed_s[name].append(wall)
                    cpu_s[name].append(out["service_cpu"])
                    ok &= out["status"] == SweepStatus.DONE and out["result_rows"] == n and out["counts"][CACHED] == 0
                    print(
                        f"  {name:8s} #{i + 1}: {fin:6.2f} s  ({n / fin:5.1f} points/s) POST -> finished_at; "
                        f"{wall:.2f} s until a poll saw it; runner started -> finished {_seconds(out):.2f} s; "
                        f"service process CPU {1000 * out['service_cpu']:.0f} ms; "
                        f"status {out['status']}, {out['result_rows']} rows"
                        + (f"; error: {out['error']}" if out.get("error") else "")
                    )
                    for line in service.runner_lines(out["id"]):
                        print("      runner:", line)
            time_direct(f"#{args.rounds + 1}")
            # The fixed cost per sweep: a sweep of one point of 20 steps (its compute is ~1 ms), the
            # services alternating; POST -> finished_at, median.
            for i in range(args.fixed_tries):
                for name, service in list(services.items())[:: 1 if i % 2 == 0 else -1]:
                    body = sweep_body(1, 20, f"fixed-{i}")
                    body["axes"]["init_scale"] = [1.0]
                    body["recompute"] = True
                    wall, out = service.run_sweep(body)
                    fixed_s[name].append(out["post_to_finished"] or wall)
        finally:
            for service in services.values():
                service.stop()
            direct.close()

    med = statistics.median
    direct_rate = n / (sum(direct_s) / len(direct_s))
    loop_rate = 1 / med(loop_s)
    print()
    print(f"direct  (core.run_points, Pool({nproc}), mean of {len(direct_s)})        {direct_rate:8.2f} points/s")
    print(f"per-point numpy loop (Pool({nproc}), median of {len(loop_s)})         {loop_rate:8.2f} points/s")
    for name in names:
        rate = n / (sum(service_s[name]) / len(service_s[name]))
        observed = n / (sum(observed_s[name]) / len(observed_s[name]))
        ratio = rate / direct_rate
        # per round: the service against the direct runs just before and after it (load drift)
        paired = [(direct_s[i] + direct_s[i + 1]) / 2 / service_s[name][i] for i in range(len(service_s[name]))]
        print(f"{name} (POST -> finished_at, SQLite, mean of {len(service_s[name])})   {rate:8.2f} points/s")
        print(
            f"{name} (POST -> seen done by a 0.2 s poll)           {observed:8.2f} points/s "
            f"(ratio {observed / direct_rate:.1%})"
        )
        print(
            f"{name}: ratio service/direct = {ratio:.1%}  (target >= {TARGET:.0%}: "
            f"{'MET' if ratio >= TARGET else 'NOT MET'}); per-round ratios (against the direct runs on either "
            f"side) median {med(paired):.1%}, best-of {min(direct_s) / min(service_s[name]):.1%}; "
            f"service / per-point loop = {rate / loop_rate:.1f}x (issue 14 target >= 40x)"
        )
        print(
            f"{name}: the service process's CPU per sweep (API, runner, writer, Ray driver), median of "
            f"{len(cpu_s[name])}: {1000 * med(cpu_s[name]):.0f} ms ({1e6 * med(cpu_s[name]) / n:.0f} us per point)"
        )
        if fixed_s[name]:
            print(
                f"{name}: fixed cost per sweep (a 1-point, 20-step sweep: POST -> finished_at), median of "
                f"{len(fixed_s[name])}: {1000 * med(fixed_s[name]):.0f} ms"
            )
    if args.baseline:
        per_round = [b / a for a, b in zip(service_s["service"], service_s["baseline"])]
        print(
            f"service vs baseline, same round (baseline seconds / service seconds): median {med(per_round):.3f}, "
            f"rounds {', '.join(f'{r:.2f}' for r in per_round)}; fixed cost "
            f"{1000 * med(fixed_s['service']):.0f} vs {1000 * med(fixed_s['baseline']):.0f} ms"
        )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not ok:
        sys.exit("a service sweep did not complete with one computed result row per point")


if __name__ == "__main__":
    main()
