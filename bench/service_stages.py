"""The service's per-point cost, stage by stage, for tiny points (bench/tiny_points.py's sweep).

Each stage the service adds on top of core.run_points is run in this process on a real database
(a fresh SQLite file; Postgres too with --postgres) and timed in microseconds per point:

- post: SweepSpec validation + store.insert_sweep (expand, point identities, the reuse lookup, the
  points' INSERT), one transaction, as POST /sweeps does;
- read: the runner's pending pages (store.pending_page) turned into PointConfigs;
- claim: store.claim_points + store.count_started per chunk, in one transaction (as the scheduler's
  refill does);
- ship out: the chunk's configs pickled and unpickled (what Ray does to the task's argument);
- rows (worker): workers.tasks.to_rows (curves encoded) of core's results;
- ship back: the ChunkRows pickled and unpickled;
- write: service.writer.ResultWriter.write_now (rows built, owner check, results, curves, statuses).

core.run_points itself is timed too (same points, one core), for scale. The stages run one after
another, so the sum is what the service's process spends per point (the worker-side ones run on
the workers). `--baseline PYTHON SOURCE` runs the same stages with another source tree (its
interpreter, e.g. main's venv, and its folder), each in a subprocess, interleaved with this tree's
over `--rounds` rounds: medians side by side (the machine is shared: only an interleaved A/B is a
comparison). Run from the worktree:

    .venv/bin/python bench/service_stages.py [--points 20000] [--chunk 1000] [--postgres]
                                             [--baseline PYTHON SOURCE] [--rounds 3]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
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
    # this tree's pages: in id order (store.run_order) between the sweep's first and last ids; an
    # older tree's (a baseline run with this script): keyset on identity
    by_id = hasattr(store, "unfinished_points")
    if by_id:
        with db.session_scope(sf) as s:
            _, first, last = store.unfinished_points(s, sid)
    cursor: str | int = first - 1 if by_id else "" if order == "identity" else 0
    while True:
        t.start()
        with db.session_scope(sf) as s:
            if by_id:
                rows = store.pending_page(s, sid, int(cursor), last, 1000)
            elif order == "identity":
                rows = store.pending_page(s, sid, str(cursor), 1000)  # type: ignore[call-arg]
            else:
                rows = _id_page(s, sid, int(cursor), 1000)
        page = [(r[0], PointConfig(*r[2:])) for r in rows]  # as scheduling.Scheduler._buffer
        t.stop("read")
        if not rows:
            break
        cursor = rows[-1][0 if by_id else 1]
        for i in range(0, len(page), chunk):
            ids = [p for p, _ in page[i : i + chunk]]
            cfgs = [c for _, c in page[i : i + chunk]]
            t.start()
            with db.session_scope(sf) as s:
                claimed = store.claim_points(s, ids, owner=OWNER)
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


def measure(kinds: list[str], n: int, chunk: int, order: str) -> dict[str, dict[str, dict[str, float]]]:
    """kind -> {"wall"|"cpu"|"db cpu" -> stage -> microseconds per point}, on fresh databases."""
    core.run_points([PointConfig(model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=10)])  # warm
    out = {}
    with tempfile.TemporaryDirectory(prefix="fsstages") as tmp:
        urls = [(k, f"sqlite:///{tmp}/stages.db") for k in kinds if k == "sqlite"]
        admin = None
        if "postgres" in kinds:
            admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            name = f"flowsweep_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as c:
                c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            urls.append(("postgres", sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)))
        try:
            for kind, url in urls:
                db.upgrade(url)
                stages(url, min(n, 500), chunk, order)  # warm: imports, statement caches
                t = stages(url, n, chunk, order)
                out[kind] = {
                    label: {k: d[k] / n * 1e6 for k in STAGES}
                    for label, d in (("wall", t.wall), ("cpu", t.cpu), ("db cpu", t.db_cpu))
                }
        finally:
            if admin is not None:
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
    return out


def _total(d: dict[str, float]) -> float:
    return sum(v for k, v in d.items() if k != "core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=20_000)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--postgres", action="store_true")
    ap.add_argument(
        "--order",
        choices=("identity", "id"),
        default="identity",
        help="an older tree's (without store.run_order): the order the runner takes pending points in "
        "(identity: its scheduler's; id: id order); this tree's is its run order",
    )
    ap.add_argument("--baseline", nargs=2, metavar=("PYTHON", "SOURCE"), help="another tree, interleaved (A/B)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds with --baseline")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one measurement, as JSON
    args = ap.parse_args()
    kinds = ["sqlite", *(["postgres"] if args.postgres else [])]
    if args.json:
        print(json.dumps(measure(kinds, args.points, args.chunk, args.order)))
        return
    if not args.baseline:
        for kind, t in measure(kinds, args.points, args.chunk, args.order).items():
            print(f"{kind}: {args.points} points, chunks of {args.chunk} in {args.order} order; microseconds per point")
            print(f"  {'stage':14s} {'wall':>8s} {'cpu':>8s} {'db cpu':>8s}")
            for k in STAGES:
                print(f"  {k:14s} {t['wall'][k]:8.1f} {t['cpu'][k]:8.1f} {t['db cpu'][k]:8.1f}")
            tot = [_total(t[label]) for label in ("wall", "cpu", "db cpu")]
            print(f"  {'service total':14s} {tot[0]:8.1f} {tot[1]:8.1f} {tot[2]:8.1f}  (every stage but core)")
        return
    flags = ["--json", "--points", str(args.points), "--chunk", str(args.chunk), "--order", args.order]
    flags += ["--postgres"] if args.postgres else []
    me = Path(__file__).resolve()
    cmds = {
        "this": [sys.executable, str(me), *flags],
        # the same stages with the baseline's interpreter, from its folder (its own flowsweep)
        "baseline": ["env", "-C", args.baseline[1], args.baseline[0], str(me), *flags],
    }
    got: dict[str, list[dict]] = {name: [] for name in cmds}
    for i in range(args.rounds):
        for name in list(cmds) if i % 2 == 0 else list(cmds)[::-1]:
            out = subprocess.run(cmds[name], check=True, capture_output=True, text=True).stdout
            got[name].append(json.loads(out.strip().splitlines()[-1]))
            print(
                f"  round {i + 1} {name:8s}: "
                + ", ".join(f"{k} {_total(v['cpu']):.0f}" for k, v in got[name][-1].items())
                + " us/point of service CPU",
                flush=True,
            )
    for kind in kinds:
        # Postgres: its backend's CPU too (the database's share of the same CPUs)
        for label in ("cpu", "db cpu") if kind == "postgres" else ("cpu",):
            print(
                f"{kind}: {args.points} points, chunks of {args.chunk}; {label} microseconds per point, median of "
                f"{args.rounds} interleaved rounds (this tree / baseline {args.baseline[1]})"
            )
            print(f"  {'stage':14s} {'this':>8s} {'baseline':>9s} {'ratio':>6s}")
            rows = [
                (k, [r[kind][label][k] for r in got["this"]], [r[kind][label][k] for r in got["baseline"]])
                for k in STAGES
            ]
            rows.append(
                (
                    "service total",
                    [_total(r[kind][label]) for r in got["this"]],
                    [_total(r[kind][label]) for r in got["baseline"]],
                )
            )
            for k, a, b in rows:
                ma, mb = statistics.median(a), statistics.median(b)
                print(
                    f"  {k:14s} {ma:8.1f} {mb:9.1f} {ma / mb if mb else float('nan'):6.2f}   "
                    f"(this {min(a):.0f}-{max(a):.0f}, baseline {min(b):.0f}-{max(b):.0f})"
                )


if __name__ == "__main__":
    main()
