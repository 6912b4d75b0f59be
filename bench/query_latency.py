"""Query latency: GET /results with two filters and a page of 100 rows over 1,000,000 result rows.

For each database (a fresh SQLite file and a fresh Postgres database on 127.0.0.1:5432):

1. migrate it (Alembic head) and fill it with synthetic sweeps: 10 sweeps x (10 init scales x 10 widths
   x 10 lambda0 x 100 seeds) = 1,000,000 points, each with its result row (bulk insert: one
   executemany transaction on SQLite, COPY on Postgres), then VACUUM ANALYZE on Postgres (SQLite
   stays without statistics, as the service leaves it);
2. start a real uvicorn server on it (the service app, without Ray and the runner: queries do not
   need them) as a subprocess;
3. time GET /results?k=50&init_scale=0.1&limit=100 (10,000 matching rows: the answer holds the page
   and the total `count`) and two more two-filter queries over ~50 calls each after 5 warm-up calls,
   and print the medians against the 100 ms target;
4. time GET /summary (the summary_cells rollup) against the former SQL aggregation over the result
   rows in alternating rounds (medians, ratios), check both give the same numbers to 1e-9, print the
   server's peak resident memory, and run the pandas path once (target: <= 1 s at 1M rows).

    .venv/bin/python bench/query_latency.py [--rows 1000000] [--calls 50] [--db sqlite,postgres] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._service import free_port, start_server  # noqa: E402
from flowsweep.core.types import METRIC_FIELDS  # noqa: E402
from flowsweep.service import db, summary_cells  # noqa: E402
from flowsweep.service.models import Base  # noqa: E402
from flowsweep.status import PointStatus, SweepStatus  # noqa: E402

PG_ADMIN = os.environ.get("FLOWSWEEP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 100.0
QUERIES = [
    ("k=50&init_scale=0.1", {"k": 50, "init_scale": 0.1, "limit": 100}),
    ("sweep 1: seed=7&lambda0=0.5", {"seed": 7, "lambda0": 0.5, "limit": 100, "_sweep": 1}),
    ("status=done&k_min=80", {"status": PointStatus.DONE, "k_min": 80, "limit": 100}),
    # parameters a sweep holds fixed (its single-column indexes: each costs every point's insert, and on
    # Postgres every status change; without them, the first of these is a full scan, 150-330 ms)
    ("m=6 (no point)", {"m": 6, "limit": 100}),
    ("steps=4000&seed=7", {"steps": 4000, "seed": 7, "limit": 100}),
]

POINT_COLS = [
    "id",
    "sweep_id",
    "identity",
    "status",
    "cached",
    "source_point_id",
    "attempts",
    "model",
    "init",
    "integrator",
    "m",
    "n",
    "k",
    "init_scale",
    "lambda0",
    "seed",
    "eta",
    "steps",
    "record_every",
    "tol",
    "data_seed",
    "fit_lambda0",
    "n_samples",
]
RESULT_COLS = ["id", "point_id", "sweep_id", "status", *METRIC_FIELDS, "error", "wall_seconds", "worker", "created_at"]


def synthetic(n_rows: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points and results of 1e5-point sweeps over 10 init scales x 10 widths x 10 lambda0 x 100 seeds."""
    per_sweep = 100_000
    i = np.arange(n_rows)
    w = i % per_sweep
    status = rng.choice(
        np.array([PointStatus.DONE] * 3 + [PointStatus.DIVERGED, PointStatus.FAILED], dtype=str), n_rows
    )
    points = pd.DataFrame(
        {
            "id": i + 1,
            "sweep_id": i // per_sweep + 1,
            "identity": [f"{j:064x}" for j in range(n_rows)],
            "status": status,
            "cached": False,
            "source_point_id": None,
            "attempts": 1,
            "model": "asymmetric",
            "init": "gaussian",
            "integrator": "gd",
            "m": 5,
            "n": 10,
            "k": (np.arange(10) * 10 + 10)[(w // 1000) % 10],
            "init_scale": np.round(np.logspace(-2, 0.25, 10), 12)[w // 10_000],
            "lambda0": (np.arange(10) * 0.5)[(w // 100) % 10],
            "seed": w % 100,
            "eta": 0.001,
            "steps": 4000,
            "record_every": 20,
            "tol": 0.01,
            "data_seed": None,
            "fit_lambda0": False,
            "n_samples": 1000,
        }
    )[POINT_COLS]
    metrics = rng.lognormal(size=(n_rows, len(METRIC_FIELDS)))
    metrics[status == PointStatus.FAILED] = np.nan
    results = pd.DataFrame(metrics, columns=list(METRIC_FIELDS))
    results["diverged_at"] = pd.array(rng.integers(1, 4000, n_rows), dtype="Int64")
    results.loc[status != PointStatus.DIVERGED, "diverged_at"] = pd.NA
    results["id"] = i + 1
    results["point_id"] = i + 1
    results["sweep_id"] = points["sweep_id"]
    results["status"] = status
    results["error"] = np.where(status == PointStatus.FAILED, "boom", None)
    results["wall_seconds"] = 0.1
    results["worker"] = "node-a"
    results["created_at"] = "2026-01-01 00:00:00"
    return points, results[RESULT_COLS]


def _records(df: pd.DataFrame):
    """Rows as tuples of Python scalars with None for missing values (for sqlite3.executemany)."""
    cols = [
        [
            None if (v is None or v is pd.NA or (isinstance(v, float) and v != v)) else v
            for v in df[c].astype(object).tolist()
        ]
        for c in df.columns
    ]
    return zip(*cols)


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(header=False, index=False, na_rep="").encode()


def fill(url: str, n_rows: int) -> float:
    t0 = time.perf_counter()
    db.upgrade(url)
    points, results = synthetic(n_rows, np.random.default_rng(0))
    n_sweeps = int(points["sweep_id"].max())
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sweeps (id, name, status, spec, n_points, created_at, cancel_requested) "
                "VALUES (:id, :name, :status, '{}', :n, :t, false)"
            ),
            [
                {
                    "id": s,
                    "name": f"bench-{s}",
                    "status": SweepStatus.DONE,
                    "n": int((points.sweep_id == s).sum()),
                    "t": "2026-01-01 00:00:00",
                }
                for s in range(1, n_sweeps + 1)
            ],
        )
    # Secondary indexes are dropped for the bulk load and built afterwards (one sort each, much faster
    # than maintaining 20 b-trees row by row); the schema is the migrated one again at the end.
    indexes = [ix for t in ("points", "results") for ix in Base.metadata.tables[t].indexes]
    with engine.begin() as conn:
        for ix in indexes:
            ix.drop(conn)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
            for table, df in (("points", points), ("results", results)):
                cur.executemany(
                    f"INSERT INTO {table} ({','.join(df.columns)}) VALUES ({','.join('?' * len(df.columns))})",
                    _records(df),
                )
            cur.execute("COMMIT")
        else:
            for table, df in (("points", points), ("results", results)):
                with cur.copy(f"COPY {table} ({','.join(df.columns)}) FROM STDIN (FORMAT csv, NULL '')") as cp:
                    cp.write(_csv(df))
            for t in ("sweeps", "points", "results"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
            raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        for ix in indexes:
            ix.create(conn)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # What autovacuum does after a bulk load (statistics + visibility map, so that index-only
            # scans are index-only). SQLite is left as the service leaves it: without statistics.
            conn.exec_driver_sql("VACUUM ANALYZE")
    # The summaries' rollup of the bulk-loaded rows, as migration 0008 builds it for existing rows.
    t1 = time.perf_counter()
    with db.session_scope(db.make_session_factory(engine)) as s:
        summary_cells.rebuild(s)
        n_cells = s.scalar(sa.select(sa.func.count()).select_from(summary_cells.SummaryCell))
    print(f"summary_cells backfill of {n_rows:,} rows: {n_cells:,} cells in {time.perf_counter() - t1:.1f} s")
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE summary_cells")
    assert db.check_schema(engine) == db.head_revision()
    engine.dispose()
    return time.perf_counter() - t0


SERVER = """
import sys, uvicorn
from flowsweep.service.app import create_app
from flowsweep.service.settings import Settings
s = Settings(database_url=sys.argv[1], port=int(sys.argv[2]), auto_migrate=False)
uvicorn.run(create_app(s, start_runner=False, start_ray=False), host="127.0.0.1", port=s.port, log_level="warning")
"""


def time_queries(url: str, calls: int) -> list[tuple[str, float, int]]:
    port = free_port()
    server = start_server(
        url,
        Path(tempfile.mkdtemp(prefix="fs-bench-log-")),
        port=port,
        num_cpus=None,
        cmd=[sys.executable, "-c", SERVER, url, str(port)],
        timeout=30,
    )
    base = server.url
    try:
        out = []
        with httpx.Client(base_url=base, timeout=60) as client:
            # The floor: an endpoint that only does `SELECT 1` (HTTP + app overhead on this machine now).
            floor = []
            for i in range(calls + 5):
                t0 = time.perf_counter()
                client.get("/healthz")
                if i >= 5:
                    floor.append(time.perf_counter() - t0)
            out.append(("floor: GET /healthz", 1000 * statistics.median(floor), 0))
            for label, params in QUERIES:
                params = dict(params)
                sweep = params.pop("_sweep", None)
                path = "/results" if sweep is None else f"/sweeps/{sweep}/results"
                times = []
                for i in range(calls + 5):
                    t0 = time.perf_counter()
                    r = client.get(path, params=params)
                    dt = time.perf_counter() - t0
                    assert r.status_code == 200, r.text
                    body = r.json()
                    assert len(body["data"]) == min(100, body["count"])
                    if i >= 5:
                        times.append(dt)
                out.append((label, 1000 * statistics.median(times), body["count"]))
        return out
    finally:
        server.stop()


SUMMARY_QUERIES = [  # (label, GET /summary parameters)
    ("by=init_scale,k,lambda0", {"by": "init_scale,k,lambda0"}),
    ("by=sweep_id", {"by": "sweep_id"}),
    ("by=k,status lambda0_max=2", {"by": "k,status", "lambda0_max": 2.0}),
    ("sweep 1 by=init_scale", {"by": "init_scale", "_sweep": 1}),
]


def _kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM (peak resident set) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _close(a: list[dict], b: list[dict], rtol: float = 1e-9, atol: float = 1e-15) -> bool:
    """Same groups, same keys, every number within rtol (+ atol: the std of a constant metric is 0
    from the rollup and from pandas, 6e-22 from the rows' SQL), None where the other is None."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if list(x) != list(y):
            return False
        for k, v in y.items():
            u = x[k]
            if isinstance(v, float) and u is not None:
                if abs(u - v) > rtol * abs(v) + atol:
                    return False
            elif u != v:
                return False
    return True


def time_summary(url: str, rounds: int) -> list[tuple[str, float, float, float, int, bool]]:
    """GET /summary (the rollup, through a real server) against today's SQL path over the result rows
    (`queries.summary(source="rows")`, the same statement the endpoint ran before, in this process):
    `rounds` alternating rounds, medians. Also the rollup in this process (no HTTP). Returns (label,
    http s, rollup in-process s, rows s, groups, equal to 1e-9) per query, and prints the server's
    resident memory before and its peak after the calls."""
    from flowsweep.service import queries

    port = free_port()
    server = start_server(
        url,
        Path(tempfile.mkdtemp(prefix="fs-bench-log-")),
        port=port,
        num_cpus=None,
        cmd=[sys.executable, "-c", SERVER, url, str(port)],
        timeout=30,
    )
    engine = db.make_engine(url)
    factory = db.make_read_session_factory(engine)
    pid = server.proc.pid
    out = []
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            client.get("/healthz")
            rss0, hwm0 = _kib(pid, "VmRSS"), _kib(pid, "VmHWM")
            for label, params in SUMMARY_QUERIES:
                params = dict(params)
                sweep = params.pop("_sweep", None)
                path = "/summary" if sweep is None else f"/sweeps/{sweep}/summary"
                q = queries.SummaryQuery(**{k: v.split(",") if k == "by" else v for k, v in params.items()})
                assert queries.cells_answer(q)
                t_http, t_cells, t_rows = [], [], []
                client.get(path, params=params)  # warm-up
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    r = client.get(path, params=params)
                    t_http.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                    with factory() as s:
                        t0 = time.perf_counter()
                        got = queries.summary(s, q, sweep, source="cells")
                        t_cells.append(time.perf_counter() - t0)
                    with factory() as s:
                        t0 = time.perf_counter()
                        want = queries.summary(s, q, sweep, source="rows")
                        t_rows.append(time.perf_counter() - t0)
                same = _close(got, want) and _close(r.json()["data"], want)
                out.append(
                    (
                        label,
                        statistics.median(t_http),
                        statistics.median(t_cells),
                        statistics.median(t_rows),
                        len(got),
                        same,
                    )
                )
            rss1, hwm1 = _kib(pid, "VmRSS"), _kib(pid, "VmHWM")
        print(
            f"         server resident memory: {rss0 / 1024:.0f} MiB before the /summary calls (peak so far "
            f"{hwm0 / 1024:.0f} MiB), peak {hwm1 / 1024:.0f} MiB after them (now {rss1 / 1024:.0f} MiB)"
        )
        # The former pandas path once (every row in memory: slow and large), against the rollup.
        q = queries.SummaryQuery(by=["init_scale", "k", "lambda0"])
        with factory() as s:
            t0 = time.perf_counter()
            want = queries.summary_pandas(s, q, None)
            t_pd = time.perf_counter() - t0
        with factory() as s:
            got = queries.summary(s, q, None)
        print(
            f"         pandas path (by=init_scale,k,lambda0, all rows): {t_pd:.2f} s; the rollup's answer equal "
            f"to it to 1e-9: {_close(got, want)}"
        )
    finally:
        server.stop()
        engine.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--db", default="sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of each /summary timing")
    args = ap.parse_args()
    print(
        f"GET /results, two filters, limit=100, over {args.rows:,} result rows; median of {args.calls} calls "
        f"(target <= {TARGET_MS:.0f} ms)"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work on the machine "
        "inflates every latency)"
    )
    tmp = tempfile.mkdtemp(prefix="fs-bench-")
    for kind in args.db.split(","):
        admin = None
        if kind == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            name = f"flowsweep_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
        try:
            fill_s = fill(url, args.rows)
            print(f"{kind:8s} filled {args.rows:,} points + results in {fill_s:.1f} s")
            for label, median_ms, count in time_queries(url, args.calls):
                if label.startswith("floor"):
                    print(f"{kind:8s} {label:32s} {'':15s}  median {median_ms:7.1f} ms")
                    continue
                verdict = "OK" if median_ms <= TARGET_MS else "OVER"
                print(
                    f"{kind:8s} {label:32s} count={count:>7,}  median {median_ms:7.1f} ms  "
                    f"({median_ms / TARGET_MS:.2f} x target) {verdict}"
                )
            for label, t_http, t_cells, t_rows, groups, same in time_summary(url, args.rounds):
                print(
                    f"{kind:8s} /summary {label:27s} ({groups:>5,} groups): GET {1000 * t_http:7.1f} ms "
                    f"(rollup in-process {1000 * t_cells:7.1f} ms) vs rows {t_rows:6.2f} s: "
                    f"{t_rows / t_http:6.1f}x faster; target <= 1 s: {'OK' if t_http <= 1 else 'OVER'}; "
                    f"same numbers to 1e-9: {same}"
                )
            print(f"{kind:8s} load average now {os.getloadavg()[0]:.1f}")
        finally:
            if admin is not None:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
