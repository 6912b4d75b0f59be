"""What the summaries' rollup (service.summary_cells) adds to the result writer's transactions.

For each database (a fresh SQLite file, a fresh Postgres database on 127.0.0.1:5432), sweeps of
10,000 running points (100 cells x 100 seeds, or --seeds) get their results written the way the
writer writes them: store.write_results_batch in transactions of 2,000 rows (writer.MAX_BATCH), in
identity order (a pseudo-random permutation, so a batch touches many cells: the worst case; the
runner's run order, store.run_order, takes blocks of neighbouring grid points, fewer cells a
batch), with a 2 kB curves blob per row. Rounds alternate between the writer as it is (rollup
merged in each transaction) and the writer with `summary_cells.add_rows` replaced by a no-op, each
on a fresh sweep; medians of seconds per 10,000 results and their ratio. The last sweep written
with the rollup is checked against a rebuild from its rows.

    .venv/bin/python bench/rollup_write_cost.py [--points 10000] [--seeds 100] [--rounds 5] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy import insert, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flowsweep.core.types import METRIC_FIELDS  # noqa: E402
from flowsweep.service import db, queries, store, summary_cells  # noqa: E402
from flowsweep.service.models import Point, Sweep, utcnow  # noqa: E402
from flowsweep.service.writer import MAX_BATCH  # noqa: E402
from flowsweep.status import PointStatus, SweepStatus  # noqa: E402

PG_ADMIN = os.environ.get("FLOWSWEEP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def new_sweep(factory, n_points: int, seeds: int, rng: np.random.Generator) -> tuple[int, list[int]]:
    """A running sweep of n_points running points over (n_points / seeds) cells; point ids in the
    identity order."""
    with db.session_scope(factory) as s:
        sweep = Sweep(name="w", status=SweepStatus.RUNNING, spec={}, n_points=n_points)
        s.add(sweep)
        s.flush()
        cells = n_points // seeds
        rows = [
            dict(
                sweep_id=sweep.id,
                identity=uuid.uuid4().hex + uuid.uuid4().hex,
                status=PointStatus.RUNNING,
                cached=False,
                attempts=1,
                model="asymmetric",
                init="gaussian",
                integrator="gd",
                m=5,
                n=10,
                k=10 + (i % cells) % 10,
                init_scale=0.01 * (1 + (i % cells) // 10),
                lambda0=0.0,
                seed=i // cells,
                eta=0.01,
                steps=4000,
                record_every=20,
                tol=0.01,
                data_seed=None,
                fit_lambda0=False,
                n_samples=1000,
            )
            for i in range(n_points)
        ]
        s.connection().execute(insert(Point), rows)
        order = s.execute(select(Point.id).where(Point.sweep_id == sweep.id).order_by(Point.identity)).scalars().all()
        return sweep.id, list(order)


def write(factory, sweep_id: int, ids: list[int], rng: np.random.Generator) -> float:
    """Seconds to write results for `ids` in writer-sized transactions."""
    now = utcnow()
    blob = rng.bytes(2048)
    total = 0.0
    for i in range(0, len(ids), MAX_BATCH):
        batch = ids[i : i + MAX_BATCH]
        rows = []
        for pid in batch:
            status = rng.choice([PointStatus.DONE] * 8 + [PointStatus.DIVERGED, PointStatus.FAILED])
            metrics = {} if status == PointStatus.FAILED else {m: float(rng.lognormal()) for m in METRIC_FIELDS}
            rows.append(store.result_row(pid, sweep_id, status, metrics, None, 0.1, "node", now))
        blobs = {pid: blob for pid in batch}
        t0 = time.perf_counter()
        with db.session_scope(factory) as s:
            store.write_results_batch(s, rows, blobs, "f8-v2")
        total += time.perf_counter() - t0
    return total


def run(url: str, args: argparse.Namespace) -> None:
    db.upgrade(url)
    engine = db.make_engine(url)
    factory = db.make_session_factory(engine)
    rng = np.random.default_rng(0)
    real_add = summary_cells.add_rows  # what the writer's batches call
    with_rollup, without = [], []
    last = None
    try:
        for r in range(2 * args.rounds):
            use = r % 2 == 0
            summary_cells.add_rows = real_add if use else (lambda *args: None)
            sid, ids = new_sweep(factory, args.points, args.seeds, rng)
            secs = write(factory, sid, ids, rng) * 10_000 / args.points
            (with_rollup if use else without).append(secs)
            if use:
                last = sid
    finally:
        summary_cells.add_rows = real_add
    # the rollup written batch by batch == the rollup rebuilt from the rows (same summary to 1e-9)
    q = queries.SummaryQuery(by=["init_scale", "k", "status"])
    with factory() as s:
        got = queries.summary(s, q, last)
        want = queries.summary(s, q, last, source="rows")
    ok = len(got) == len(want) and all(
        (g[k] is None and w[k] is None) or g[k] == w[k] or abs(g[k] - w[k]) <= 1e-9 * abs(w[k])
        for g, w in zip(got, want)
        for k in w
    )
    engine.dispose()
    a, b = statistics.median(with_rollup), statistics.median(without)
    print(
        f"{make_kind(url):8s} s per 10,000 results ({args.points:,} points, {args.points // args.seeds} cells x "
        f"{args.seeds} seeds, batches of {MAX_BATCH}): with rollup {a:.3f} s, without {b:.3f} s: "
        f"x{a / b:.2f} ({a - b:+.3f} s); rollup == summary over rows to 1e-9: {ok}"
    )


def make_kind(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else "sqlite"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--db", default="sqlite,postgres")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    for kind in args.db.split(","):
        admin = None
        if kind == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='fs-bench-')}/w.db"
        else:
            name = f"flowsweep_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
        try:
            run(url, args)
        finally:
            if admin is not None:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()


if __name__ == "__main__":
    main()
