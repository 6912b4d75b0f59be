"""Latencies of the streaming scheduler, end to end through the embedded service (SQLite, local Ray):

- cancel latency: a large Fig. 1 sweep is running (results coming in); time from POST /cancel to
  GET /sweeps/{id} saying `cancelled` (and the status the cancel response showed);
- small behind huge: a 30-point Fig. 1 sweep submitted while a 60,000-point sweep runs: submit ->
  first result, submit -> done; and the same small sweep alone (after the huge one is cancelled).

Each is the median over --tries tries (the machine may be shared: the numbers are taken under
whatever load it has; the target of issue 9 is cancelled within 2 s, and the small sweep starting
within about a second and finishing in about the time it takes alone on half the cluster).

    .venv/bin/python bench/scheduling_latency.py [--tries 5] [--cpus 2]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.e2e_throughput import Service, sweep_body  # noqa: E402
from flowsweep.status import PointStatus, SweepStatus  # noqa: E402

POLL = 0.02


def fig1(name: str, seeds: int, seed0: int = 0, recompute: bool = False) -> dict:
    body = sweep_body(seeds, 4000, name)
    body["axes"]["seed"] = {"range": [seed0, seed0 + seeds]}
    body["recompute"] = recompute
    return body


def poll_until(client, sweep_id: int, predicate, timeout: float = 600.0) -> tuple[float, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/sweeps/{sweep_id}").json()
        if predicate(body):
            return time.perf_counter(), body
        time.sleep(POLL)
    raise TimeoutError(f"sweep {sweep_id}: {body}")


def measure(svc: Service, tries: int, label: str, rnd: int) -> dict[str, list]:
    """One round of the three measurements on one service (see the module docstring)."""
    c = svc.client
    out: dict[str, list] = {"cancel": [], "shown": [], "first": [], "whole": [], "alone": []}
    base = 1_000_000 * rnd
    for i in range(tries):
        sid = c.post("/sweeps", json=fig1(f"to-cancel-{i}", 1000, seed0=base + 100_000 * (i + 1))).json()["id"]
        poll_until(c, sid, lambda b: b["counts"][PointStatus.DONE] > 0)
        time.sleep(0.5)  # well under way: chunks in flight
        t0 = time.perf_counter()
        r = c.post(f"/sweeps/{sid}/cancel").json()
        if "status" not in r:  # it finished first (a fast moment of a shared machine): not a sample
            print(f"  {label} cancel #{i + 1}: not cancelled: {r}")
            continue
        out["shown"].append(r["status"])
        t1, body = poll_until(c, sid, lambda b: b["status"] == SweepStatus.CANCELLED)
        out["cancel"].append(t1 - t0)
        print(
            f"  {label} cancel #{i + 1}: response said {r['status']!r}; cancelled after {t1 - t0:.3f} s "
            f"({body['counts'][PointStatus.DONE]} points done, {body['counts'][PointStatus.PENDING]} never run)"
        )

    huge = c.post("/sweeps", json=fig1("huge", 20_000, seed0=base + 10_000_000)).json()
    poll_until(c, huge["id"], lambda b: b["counts"][PointStatus.DONE] > 0)
    for i in range(tries):
        time.sleep(0.3)  # a random phase of the huge sweep's chunks
        t0 = time.perf_counter()
        sid = c.post("/sweeps", json=fig1(f"small-{i}", 10, seed0=base + 1000 * (i + 1))).json()["id"]
        t1, _ = poll_until(c, sid, lambda b: b["counts"][PointStatus.DONE] > 0)
        t2, _ = poll_until(c, sid, lambda b: b["status"] == SweepStatus.DONE)
        out["first"].append(t1 - t0)
        out["whole"].append(t2 - t0)
        print(f"  {label} small behind huge #{i + 1}: first result {t1 - t0:.3f} s, done {t2 - t0:.3f} s")
        for line in svc.runner_lines(sid):
            print("      runner:", line)
    hb = c.get(f"/sweeps/{huge['id']}").json()
    print(
        f"  ({label} huge sweep: {huge['n_points']} points, {hb['counts'][PointStatus.DONE]} done, "
        f"status {hb['status']})"
    )
    c.post(f"/sweeps/{huge['id']}/cancel")
    poll_until(c, huge["id"], lambda b: b["status"] == SweepStatus.CANCELLED)
    for i in range(tries):
        t0 = time.perf_counter()
        body = fig1(f"small-{i}-alone", 10, seed0=base + 1000 * (i + 1), recompute=True)
        sid = c.post("/sweeps", json=body).json()["id"]
        t2, _ = poll_until(c, sid, lambda b: b["status"] == SweepStatus.DONE)
        out["alone"].append(t2 - t0)
        print(f"  {label} small alone #{i + 1}: done {t2 - t0:.3f} s")
        for line in svc.runner_lines(sid):
            print("      runner:", line)
    return out


def express_lane_memory(svc: Service, label: str) -> None:
    """The express lane's process (workers.dispatch.TaskStream): its log line (RSS once warm) and
    its resident memory now, from /proc (same machine)."""
    lines = [ln for ln in svc.log().splitlines() if "express lane" in ln]
    for ln in lines[-3:]:
        print(f"  {label}: {ln.split(': ', 1)[-1]}")
    if not lines:
        print(f"  {label}: no express lane in the log")
        return
    m = re.search(r"pid (\d+)", lines[-1])
    try:
        rss = next(x for x in Path(f"/proc/{m.group(1)}/status").read_text().splitlines() if x.startswith("VmRSS"))
        print(f"  {label}: express lane process (pid {m.group(1)}) now: {rss.split(':', 1)[1].strip()} resident")
    except (AttributeError, OSError, StopIteration):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1, help="rounds (each service in turn in every round)")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument(
        "--baseline",
        nargs=2,
        metavar=("PYTHON", "SOURCE"),
        help="also measure a second service (e.g. an older commit: its interpreter and source tree), "
        "the two in turn in every round",
    )
    args = ap.parse_args()
    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="fslat") as tmp:
        services = {"service": Service(args.cpus, Path(tmp) / "service")}
        if args.baseline:
            services["baseline"] = Service(args.cpus, Path(tmp) / "baseline", args.baseline[0], Path(args.baseline[1]))
        try:
            for name, svc in services.items():
                print(f"{name} ready in {svc.wait_ready():.1f} s (start-up excluded); {args.cpus} CPUs")
                svc.run_sweep(sweep_body(1, 20, "warm-up"))
                results[name] = {}
            for rnd in range(args.rounds):
                for name, svc in services.items():
                    for k, v in measure(svc, args.tries, name, rnd).items():
                        results[name].setdefault(k, []).extend(v)
            for name, svc in services.items():
                express_lane_memory(svc, name)
        finally:
            for svc in services.values():
                svc.stop()
    med = statistics.median
    for name, r in results.items():
        print()
        print(
            f"{name}: cancel latency (POST cancel -> status cancelled), median of {len(r['cancel'])}: "
            f"{med(r['cancel']):.3f} s (max {max(r['cancel']):.3f} s; target <= 2 s); cancel response status: "
            f"{sorted(set(r['shown']))}"
        )
        print(
            f"{name}: small (30 points) behind a 60,000-point sweep, median of {len(r['first'])}: "
            f"submit -> first result {med(r['first']):.3f} s, submit -> done {med(r['whole']):.3f} s"
        )
        print(
            f"{name}: the same small sweep alone, median of {len(r['alone'])}: submit -> done {med(r['alone']):.3f} s; "
            f"behind huge / alone = {med(r['whole']) / med(r['alone']):.2f} (~2 = half the cluster)"
        )


if __name__ == "__main__":
    main()
