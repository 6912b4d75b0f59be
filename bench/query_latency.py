"""Query latency: GET /results with two filters and a page of 100 rows over 1,000,000 result rows.

For each database (a fresh SQLite file and a fresh Postgres database on 127.0.0.1:5432):

1. migrate it (Alembic head) and fill it with synthetic sweeps: 10 sweeps x (10 init scales x 10 widths
   x 10 lambda0 x 100 seeds) = 1,000,000 points, each with its result row (bulk insert: one
   executemany transaction on SQLite, COPY on Postgres), then ANALYZE;
2. start a real uvicorn server on it (the service app, without Ray and the runner: queries do not
   need them) as a subprocess;
3. time GET /results?k=50&init_scale=0.1&limit=100 (10,000 matching rows: the answer holds the page
   and the total `count`) and two more two-filter queries over ~50 calls each after 5 warm-up calls,
   and print the medians against the 100 ms target.

    .venv/bin/python bench/query_latency.py [--rows 1000000] [--calls 50] [--db sqlite,postgres]
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.types import METRIC_FIELDS  # noqa: E402
from service import db  # noqa: E402
from service.models import Base  # noqa: E402

PG_ADMIN = os.environ.get("FLOWSWEEP_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 100.0
QUERIES = [
    ("k=50&init_scale=0.1", {"k": 50, "init_scale": 0.1, "limit": 100}),
    ("sweep 1: seed=7&lambda0=0.5", {"seed": 7, "lambda0": 0.5, "limit": 100, "_sweep": 1}),
    ("status=done&k_min=80", {"status": "done", "k_min": 80, "limit": 100}),
]

POINT_COLS = ["id", "sweep_id", "identity", "status", "cached", "source_point_id", "attempts", "model", "init",
              "integrator", "m", "n", "k", "init_scale", "lambda0", "seed", "eta", "steps", "record_every", "tol",
              "data_seed", "fit_lambda0", "n_samples"]
RESULT_COLS = ["id", "point_id", "sweep_id", "status", *METRIC_FIELDS, "error", "wall_seconds", "worker",
               "created_at"]


def synthetic(n_rows: int, rng: np.random.Generator):
    """Column arrays for n_rows points/results: sweeps of 10x10x10x100 grids."""
    per_sweep = 100_000
    i = np.arange(n_rows)
    within = i % per_sweep
    cols = {
        "id": i + 1,
        "sweep_id": i // per_sweep + 1,
        "init_scale": np.round(np.logspace(-2, 0.25, 10), 12)[within // 10_000],
        "k": (np.arange(10) * 10 + 10)[(within // 1000) % 10],
        "lambda0": (np.arange(10) * 0.5)[(within // 100) % 10],
        "seed": within % 100,
    }
    status = rng.choice(np.array(["done", "done", "done", "diverged", "failed"]), n_rows)
    metrics = rng.lognormal(size=(n_rows, len(METRIC_FIELDS)))
    return cols, status, metrics


def point_rows(cols, status, start, stop):
    for j in range(start, stop):
        yield (int(cols["id"][j]), int(cols["sweep_id"][j]), uuid.UUID(int=j).hex + uuid.UUID(int=j).hex,
               str(status[j]), False, None, 1, "asymmetric", "gaussian", "gd", 5, 10, int(cols["k"][j]),
               float(cols["init_scale"][j]), float(cols["lambda0"][j]), int(cols["seed"][j]), 0.001, 4000, 20,
               0.01, None, False, 1000)


def result_rows(cols, status, metrics, start, stop, now):
    for j in range(start, stop):
        m = metrics[j].tolist()
        m[-1] = None if status[j] != "diverged" else int(m[-1] * 100)  # diverged_at
        if status[j] == "failed":
            m = [None] * len(m)
        yield (int(cols["id"][j]), int(cols["id"][j]), int(cols["sweep_id"][j]), str(status[j]), *m,
               "boom" if status[j] == "failed" else None, 0.1, "node-a", now)


def fill(url: str, n_rows: int) -> float:
    t0 = time.perf_counter()
    db.upgrade(url)
    cols, status, metrics = synthetic(n_rows, np.random.default_rng(0))
    n_sweeps = int(cols["sweep_id"].max())
    now = "2026-01-01 00:00:00"
    engine = db.make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sweeps (id, name, status, spec, n_points, created_at, cancel_requested) "
                             "VALUES (:id, :name, 'done', '{}', :n, :t, false)"),
                     [{"id": s, "name": f"bench-{s}", "n": int((cols["sweep_id"] == s).sum()), "t": now}
                      for s in range(1, n_sweeps + 1)])
    # Secondary indexes are dropped for the bulk load and built afterwards (one sort each, much faster
    # than maintaining 20 b-trees row by row); the schema is the migrated one again at the end.
    indexes = [ix for t in ("points", "results") for ix in Base.metadata.tables[t].indexes]
    with engine.begin() as conn:
        for ix in indexes:
            ix.drop(conn)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        step = 100_000
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
            for a in range(0, n_rows, step):
                b = min(n_rows, a + step)
                cur.executemany(f"INSERT INTO points ({','.join(POINT_COLS)}) VALUES "
                                f"({','.join('?' * len(POINT_COLS))})", point_rows(cols, status, a, b))
                cur.executemany(f"INSERT INTO results ({','.join(RESULT_COLS)}) VALUES "
                                f"({','.join('?' * len(RESULT_COLS))})",
                                result_rows(cols, status, metrics, a, b, now))
            cur.execute("COMMIT")
        else:
            with cur.copy(f"COPY points ({','.join(POINT_COLS)}) FROM STDIN") as cp:
                for row in point_rows(cols, status, 0, n_rows):
                    cp.write_row(row)
            with cur.copy(f"COPY results ({','.join(RESULT_COLS)}) FROM STDIN") as cp:
                for row in result_rows(cols, status, metrics, 0, n_rows, now):
                    cp.write_row(row)
            for t in ("sweeps", "points", "results"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))")
            raw.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        for ix in indexes:
            ix.create(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    assert db.check_schema(engine) == db.head_revision()
    engine.dispose()
    return time.perf_counter() - t0


SERVER = """
import sys, uvicorn
from service.app import create_app
from service.settings import Settings
s = Settings(database_url=sys.argv[1], port=int(sys.argv[2]), auto_migrate=False)
uvicorn.run(create_app(s, start_runner=False, start_ray=False), host="127.0.0.1", port=s.port, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_queries(url: str, calls: int) -> list[tuple[str, float, int]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port)], cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        out = []
        with httpx.Client(base_url=base, timeout=60) as client:
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
        proc.terminate()
        proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--db", default="sqlite,postgres")
    args = ap.parse_args()
    print(f"GET /results, two filters, limit=100, over {args.rows:,} result rows; median of {args.calls} calls "
          f"(target <= {TARGET_MS:.0f} ms)")
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
                verdict = "OK" if median_ms <= TARGET_MS else "OVER"
                print(f"{kind:8s} {label:32s} count={count:>7,}  median {median_ms:7.1f} ms  "
                      f"({median_ms / TARGET_MS:.2f} x target) {verdict}")
        finally:
            if admin is not None:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
