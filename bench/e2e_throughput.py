"""End-to-end throughput: the service versus core's batched path called directly, on the same CPUs.

A Fig. 1 sweep of the paper (asymmetric model, gaussian init, m=5, n=10, k=50, gd, eta=1e-3,
4000 steps, record_every 20; init scales 0.01, 0.1, 1 x 67 seeds = 201 points by default) is

1. run directly: `core.run_points` on the same configs, split into one chunk per CPU and run by a
   `multiprocessing` Pool of nproc processes (pool start-up excluded, imports warmed);
2. POSTed to an embedded service (`python -m service.server`: SQLite in a temporary directory, local
   Ray on all CPUs) started as a subprocess, and timed from the POST until GET /sweeps/{id} says
   `done`. Service and Ray start-up are EXCLUDED: the clock starts once /healthz answers and a tiny
   warm-up sweep has finished (so Ray's worker processes exist and have imported core). The time the
   runner itself measured (sweep started_at -> finished_at) is printed too;
3. run directly once more; the direct throughput is the mean of the two direct runs (the machine is
   shared, so measuring before and after evens out load drift).

Target (issue 3): service throughput >= 85 % of the direct one.

    .venv/bin/python bench/e2e_throughput.py [--seeds 67] [--steps 4000] [--cpus N]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.types import PointConfig  # noqa: E402

TARGET = 0.85
SCALES = (0.01, 0.1, 1.0)  # sigma of Fig. 1 (a), (b), (c)


def sweep_body(seeds: int, steps: int, name: str) -> dict:
    return {
        "name": name, "model": "asymmetric", "init": "gaussian", "integrator": "gd",
        "m": 5, "n": 10, "eta": 1e-3, "steps": steps, "record_every": 20, "tol": 0.01,
        "axes": {"init_scale": list(SCALES), "k": [50], "lambda0": [0.0], "seed": {"range": [0, seeds]}},
    }


def configs(seeds: int, steps: int) -> list[PointConfig]:
    return [PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=steps, init="gaussian",
                        integrator="gd", init_scale=s, lambda0=0.0, seed=seed, record_every=20, tol=0.01)
            for s in SCALES for seed in range(seeds)]


def _run_chunk(chunk: list[PointConfig]) -> int:
    import core
    results = core.run_points(chunk)
    return sum(r.status != "failed" for r in results)


def direct(cfgs: list[PointConfig], nproc: int) -> float:
    """Seconds for core.run_points over cfgs on nproc processes, one contiguous chunk each."""
    chunks = [cfgs[i::nproc] for i in range(nproc)]
    ctx = mp.get_context("fork")
    with ctx.Pool(nproc) as pool:
        pool.map(_run_chunk, [[cfgs[0]]] * nproc)  # warm imports in every process
        t0 = time.perf_counter()
        ok = sum(pool.map(_run_chunk, chunks, chunksize=1))
        dt = time.perf_counter() - t0
    assert ok == len(cfgs), f"direct run: only {ok}/{len(cfgs)} points succeeded"
    return dt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_done(client: httpx.Client, sweep_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/sweeps/{sweep_id}").json()
        if body["status"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.05)
    raise TimeoutError(f"sweep {sweep_id} not done after {timeout} s: {body}")


def service(seeds: int, steps: int, cpus: int | None, workdir: Path) -> tuple[float, float | None, dict]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSWEEP_", "RAY_ADDRESS"))}
    env.update({"FLOWSWEEP_DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
                "FLOWSWEEP_HOST": "127.0.0.1", "FLOWSWEEP_PORT": str(port),
                "RAY_TMPDIR": str(workdir / "ray"), "PYTHONUNBUFFERED": "1"})
    if cpus:
        env["FLOWSWEEP_NUM_CPUS"] = str(cpus)
    (workdir / "ray").mkdir(exist_ok=True)
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "service.server"], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        t_start = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited:\n" + (workdir / "server.log").read_text()[-3000:])
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t_start > 120:
                raise TimeoutError("server not ready")
            time.sleep(0.2)
        print(f"  service ready in {time.monotonic() - t_start:.1f} s (excluded)")
        # Warm-up: Ray starts worker processes lazily; a tiny sweep makes them exist (excluded).
        warm = client.post("/sweeps", json=sweep_body(1, 20, "warm-up"))
        warm.raise_for_status()
        wait_done(client, warm.json()["id"], 120)

        t0 = time.perf_counter()
        r = client.post("/sweeps", json=sweep_body(seeds, steps, "bench-fig1"))
        r.raise_for_status()
        body = wait_done(client, r.json()["id"], 1800)
        wall = time.perf_counter() - t0
        runner_seconds = None
        if body.get("started_at") and body.get("finished_at"):
            runner_seconds = (datetime.fromisoformat(body["finished_at"])
                              - datetime.fromisoformat(body["started_at"])).total_seconds()
        n_rows = client.get(f"/sweeps/{body['id']}/results", params={"limit": 1}).json()["count"]
        body["result_rows"] = n_rows
        log_text = (workdir / "server.log").read_text(errors="replace")
        if body["status"] != "done":
            print(log_text[-6000:], file=sys.stderr)
        for line in log_text.splitlines():  # how the runner fed Ray: chunk sizes, DB write time
            if f"sweep {body['id']}: dispatcher run" in line:
                print("  runner:", line.split("flowsweep.runner: ", 1)[-1])
        return wall, runner_seconds, body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=67, help="seeds per init scale (3 scales)")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs for both sides (default: all)")
    args = ap.parse_args()
    nproc = args.cpus or os.cpu_count() or 1
    cfgs = configs(args.seeds, args.steps)
    n = len(cfgs)
    print(f"Fig. 1 sweep: {n} points (m=5, n=10, k=50, gd, eta=1e-3, {args.steps} steps), {nproc} CPUs")

    d1 = direct(cfgs, nproc)
    print(f"  direct run 1: {d1:.2f} s  ({n / d1:.1f} points/s)")
    with tempfile.TemporaryDirectory(prefix="fsbench") as tmp:
        wall, runner_s, body = service(args.seeds, args.steps, args.cpus, Path(tmp))
    counts = body.get("counts", {})
    print(f"  service: {wall:.2f} s POST->done ({n / wall:.1f} points/s); runner started->finished "
          f"{runner_s if runner_s is None else round(runner_s, 2)} s; status {body['status']}, "
          f"counts {counts}, result rows {body['result_rows']}"
          + (f"; error: {body['error']}" if body.get("error") else ""))
    d2 = direct(cfgs, nproc)
    print(f"  direct run 2: {d2:.2f} s  ({n / d2:.1f} points/s)")

    direct_rate = n / ((d1 + d2) / 2)
    service_rate = n / wall
    ratio = service_rate / direct_rate
    print()
    print(f"direct  (core.run_points, Pool({nproc}))  {direct_rate:8.2f} points/s")
    print(f"service (POST -> done, embedded, SQLite) {service_rate:8.2f} points/s")
    print(f"ratio service/direct = {ratio:.1%}  (target >= {TARGET:.0%}: "
          f"{'MET' if ratio >= TARGET else 'NOT MET'})")
    if body["status"] != "done" or body["result_rows"] != n:
        sys.exit(f"service sweep incomplete: status {body['status']}, {body['result_rows']}/{n} rows")


if __name__ == "__main__":
    main()
