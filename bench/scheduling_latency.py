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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--cpus", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fslat") as tmp:
        svc = Service(args.cpus, Path(tmp))
        c = svc.client
        try:
            print(f"service ready in {svc.wait_ready():.1f} s (start-up excluded); {args.cpus} CPUs")
            svc.run_sweep(sweep_body(1, 20, "warm-up"))

            cancel_s, shown = [], []
            for i in range(args.tries):
                sid = c.post("/sweeps", json=fig1(f"to-cancel-{i}", 1000, seed0=100_000 * (i + 1))).json()["id"]
                poll_until(c, sid, lambda b: b["counts"][PointStatus.DONE] > 0)
                time.sleep(0.5)  # well under way: chunks in flight
                t0 = time.perf_counter()
                r = c.post(f"/sweeps/{sid}/cancel").json()
                shown.append(r["status"])
                t1, body = poll_until(c, sid, lambda b: b["status"] == SweepStatus.CANCELLED)
                cancel_s.append(t1 - t0)
                print(
                    f"  cancel #{i + 1}: response said {r['status']!r}; cancelled after {t1 - t0:.3f} s "
                    f"({body['counts'][PointStatus.DONE]} points done, "
                    f"{body['counts'][PointStatus.PENDING]} never run)"
                )

            huge = c.post("/sweeps", json=fig1("huge", 20_000, seed0=10_000_000)).json()
            poll_until(c, huge["id"], lambda b: b["counts"][PointStatus.DONE] > 0)
            first_s, done_s = [], []
            for i in range(args.tries):
                t0 = time.perf_counter()
                sid = c.post("/sweeps", json=fig1(f"small-{i}", 10, seed0=1000 * (i + 1))).json()["id"]
                t1, _ = poll_until(c, sid, lambda b: b["counts"][PointStatus.DONE] > 0)
                t2, _ = poll_until(c, sid, lambda b: b["status"] == SweepStatus.DONE)
                first_s.append(t1 - t0)
                done_s.append(t2 - t0)
                print(f"  small behind huge #{i + 1}: first result {t1 - t0:.3f} s, done {t2 - t0:.3f} s")
            hb = c.get(f"/sweeps/{huge['id']}").json()
            print(
                f"  (huge sweep: {huge['n_points']} points, {hb['counts'][PointStatus.DONE]} done, "
                f"status {hb['status']})"
            )
            c.post(f"/sweeps/{huge['id']}/cancel")
            poll_until(c, huge["id"], lambda b: b["status"] == SweepStatus.CANCELLED)
            alone_s = []
            for i in range(args.tries):
                t0 = time.perf_counter()
                sid = c.post("/sweeps", json=fig1(f"small-{i}-alone", 10, seed0=1000 * (i + 1), recompute=True)).json()[
                    "id"
                ]
                t2, _ = poll_until(c, sid, lambda b: b["status"] == SweepStatus.DONE)
                alone_s.append(t2 - t0)
                print(f"  small alone #{i + 1}: done {t2 - t0:.3f} s")
        finally:
            svc.stop()
    med = statistics.median
    print()
    print(
        f"cancel latency (POST cancel -> status cancelled), median of {len(cancel_s)}: {med(cancel_s):.3f} s "
        f"(max {max(cancel_s):.3f} s; target <= 2 s); cancel response status: {sorted(set(shown))}"
    )
    print(
        f"small (30 points) behind a 60,000-point sweep, median of {len(first_s)}: "
        f"submit -> first result {med(first_s):.3f} s, submit -> done {med(done_s):.3f} s"
    )
    print(
        f"the same small sweep alone, median of {len(alone_s)}: submit -> done {med(alone_s):.3f} s; "
        f"behind huge / alone = {med(done_s) / med(alone_s):.2f} (~2 = half the cluster)"
    )


if __name__ == "__main__":
    main()
