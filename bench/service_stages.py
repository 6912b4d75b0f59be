"""The service's per-point cost, stage by stage, for tiny points (bench/tiny_points.py's sweep).

Each stage the service adds on top of core.run_points is run in this process on a real database
(a fresh SQLite file; Postgres too with --postgres) and timed in microseconds per point:

- post: SweepSpec validation + store.insert_sweep (expand, point identities, the reuse lookup, the
  points' INSERT), one transaction, as POST /sweeps does;
- read: the runner's pending pages (store.pending_page) turned into PointConfigs;
- claim: store.claim_points + store.count_started per chunk;
- ship out: the chunk's configs pickled and unpickled (what Ray does to the task's argument);
- rows (worker): workers.tasks.to_rows (curves encoded) of core's results;
- ship back: the ChunkRows pickled and unpickled;
- write: service.writer.ResultWriter.write_now (rows built, owner check, results, curves, statuses).

core.run_points itself is timed too (same points, one core), for scale. The stages run one after
another, so the sum is what the service's process spends per point (the worker-side ones run on
the workers). Run from the worktree:

    .venv/bin/python bench/service_stages.py [--points 20000] [--chunk 1000] [--postgres]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import sqlalchemy as sa  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.tiny_points import sweep_body  # noqa: E402
from flowsweep import core  # noqa: E402
from flowsweep.core.types import PointConfig  # noqa: E402
from flowsweep.service import db, store  # noqa: E402
from flowsweep.service.models import PARAM_FIELDS  # noqa: E402
from flowsweep.service.schemas import SweepSpec  # noqa: E402
from flowsweep.service.writer import ResultWriter  # noqa: E402
from flowsweep.workers.dispatch import ChunkOutcome  # noqa: E402
from flowsweep.workers.tasks import to_rows  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OWNER = "bench-owner"


STAGES = ("post", "read", "claim", "ship out", "core", "rows (worker)", "ship back", "write")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Per stage: wall seconds and CPU seconds (this thread + the database server's backend of our
    one connection, Postgres only: it competes for the same CPUs)."""

    def __init__(self, backend_pid: int | None):
        self.backend_pid = backend_pid
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self.db_cpu = dict.fromkeys(STAGES, 0.0)

    def _now(self) -> tuple[float, float, float]:
        db_cpu = _proc_cpu(self.backend_pid) if self.backend_pid else 0.0
        return time.perf_counter(), time.thread_time(), db_cpu

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self, stage: str) -> None:
        w, c, d = self._now()
        self.wall[stage] += w - self._t0[0]
        self.cpu[stage] += c - self._t0[1]
        self.db_cpu[stage] += d - self._t0[2]
        self._t0 = self._now()


def _id_page(session, sweep_id: int, after: int, limit: int):
    """Pending points in id order (grid order) instead of identity order: the what-if of --order id."""
    from sqlalchemy import select

    from flowsweep.service.models import Point
    from flowsweep.status import PointStatus

    cols = [Point.id, Point.id] + [getattr(Point, name) for name in PARAM_FIELDS]
    return session.execute(
        select(*cols)
        .where(Point.sweep_id == sweep_id, Point.id > after, Point.status == PointStatus.PENDING)
        .order_by(Point.id)
        .limit(limit)
    ).all()


def stages(url: str, n: int, chunk: int, order: str = "identity") -> Clock:
    """Time per stage for an n-point sweep on the database at `url` (already migrated)."""
    # one connection: on Postgres its backend's CPU is the database's share
    engine = db.make_engine(url, pool_size=1, max_overflow=0)
    sf = db.make_session_factory(engine)
    backend = None
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            backend = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    t = Clock(backend)
    body = sweep_body(n, "stages")
    body["recompute"] = True
    t.start()
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6})
    stored = spec.model_dump(mode="json", exclude={"axes"})
    stored["axes"] = body["axes"]
    with db.session_scope(sf) as s:
        sweep, _ = store.insert_sweep(s, spec, stored)
        sid = sweep.id
    t.stop("post")

    writer = ResultWriter(sf, owner=OWNER)
    cursor: str | int = "" if order == "identity" else 0
    while True:
        t.start()
        with db.session_scope(sf) as s:
            if order == "identity":
                rows = store.pending_page(s, sid, str(cursor), 1000)
            else:
                rows = _id_page(s, sid, int(cursor), 1000)
        page = [(r[0], PointConfig(**dict(zip(PARAM_FIELDS, r[2:])))) for r in rows]
        t.stop("read")
        if not rows:
            break
        cursor = rows[-1][1]
        for i in range(0, len(page), chunk):
            ids = [p for p, _ in page[i : i + chunk]]
            cfgs = [c for _, c in page[i : i + chunk]]
            t.start()
            with db.session_scope(sf) as s:
                claimed = store.claim_points(s, ids, owner=OWNER)
            with db.session_scope(sf) as s:
                store.count_started(s, ids, OWNER)
            t.stop("claim")
            assert len(claimed) == len(ids)
            t.start()
            cfgs = pickle.loads(pickle.dumps(cfgs, protocol=5))
            t.stop("ship out")
            t.start()
            results = core.run_points(cfgs)
            t.stop("core")
            t.start()
            crow = to_rows(results)
            t.stop("rows (worker)")
            t.start()
            crow = pickle.loads(pickle.dumps(crow, protocol=5))
            t.stop("ship back")
            t.start()
            written = writer.write_now(sid, ChunkOutcome(ids, crow, "node"))
            t.stop("write")
            assert len(written) == len(ids)
    with db.session_scope(sf) as s:
        assert store.count_unfinished(s, sid) == 0
    engine.dispose()
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument(
        "--order",
        choices=("identity", "id"),
        default="identity",
        help="order the runner takes pending points in (identity: the scheduler's; id: grid order)",
    )
    args = ap.parse_args()
    core.run_points([PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=10)])  # warm
    with tempfile.TemporaryDirectory(prefix="fsstages") as tmp:
        urls = [("sqlite", f"sqlite:///{tmp}/stages.db")]
        admin = None
        if args.postgres:
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            name = f"flowsweep_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            urls.append(("postgres", sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)))
        try:
            for kind, url in urls:
                db.upgrade(url)
                stages(url, min(args.points, 500), args.chunk, args.order)  # warm: imports, statement caches
                t = stages(url, args.points, args.chunk, args.order)
                n = args.points
                print(f"{kind}: {n} points, chunks of {args.chunk} in {args.order} order; microseconds per point")
                print(f"  {'stage':14s} {'wall':>8s} {'cpu':>8s} {'db cpu':>8s}")
                for k in STAGES:
                    print(
                        f"  {k:14s} {t.wall[k] / n * 1e6:8.1f} {t.cpu[k] / n * 1e6:8.1f} {t.db_cpu[k] / n * 1e6:8.1f}"
                    )
                svc = [sum(d[k] for k in STAGES if k != "core") / n * 1e6 for d in (t.wall, t.cpu, t.db_cpu)]
                print(f"  {'service total':14s} {svc[0]:8.1f} {svc[1]:8.1f} {svc[2]:8.1f}  (every stage but core)")
        finally:
            if admin is not None:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()


if __name__ == "__main__":
    main()
