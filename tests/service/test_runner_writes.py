"""The runner's write path and recovery against real databases (SQLite file and Postgres), without
Ray or HTTP: real core results, written the way the dispatcher's on_results hands them over.

"Exactly one result row per point whatever happens": a batch delivered twice (a task re-run after its
results were already written) must not add rows nor change the first ones.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import ray
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowsweep import core
from flowsweep.core.types import PointConfig
from flowsweep.service import store
from flowsweep.service.db import make_engine, make_session_factory
from flowsweep.service.leadership import Leadership
from flowsweep.service.models import Curve, Point, Result, RunnerLease, Sweep, utcnow
from flowsweep.service.runner import Runner
from flowsweep.workers.dispatch import PointOutcome


@pytest.fixture
def engine(migrated_database_url):
    eng = make_engine(migrated_database_url)
    yield eng
    eng.dispose()


def _sweep_with_points(engine, configs, status="running", owner=None) -> tuple[int, list[int]]:
    with Session(engine) as s, s.begin():
        sweep = Sweep(name="w", status="running", spec={}, n_points=len(configs))
        s.add(sweep)
        s.flush()
        pts = [
            Point(
                sweep_id=sweep.id,
                identity=uuid.uuid4().hex,
                status=status,
                cached=False,
                attempts=1,
                owner=owner if status == "running" else None,
                **c.to_dict(),
            )
            for c in configs
        ]
        s.add_all(pts)
        s.flush()
        return sweep.id, [p.id for p in pts]


def _configs(n=3):
    return [
        PointConfig(model="asymmetric", m=2, n=3, k=4, eta=0.05, steps=50, record_every=5, init_scale=0.3, seed=s)
        for s in range(n)
    ]


def test_a_batch_delivered_twice_leaves_one_untouched_row_per_point(engine):
    cfgs = _configs()
    runner = Runner(make_session_factory(engine), None)
    sweep_id, ids = _sweep_with_points(engine, cfgs, owner=runner.owner)
    results = core.run_points(cfgs)
    runner._write_batch(sweep_id, [PointOutcome(pid, r, "node-a") for pid, r in zip(ids, results)])
    with engine.connect() as c:
        first = c.execute(
            sa.select(Result.point_id, Result.id, Result.created_at, Result.worker, Result.final_error).where(
                Result.sweep_id == sweep_id
            )
        ).all()
    assert len(first) == 3 and all(r.worker == "node-a" for r in first)

    # The same points reported again (by another worker, with other numbers): ignored.
    again = core.run_points(cfgs)
    for r in again:
        r.metrics["final_error"] = 123.0
    runner._write_batch(
        sweep_id,
        [PointOutcome(pid, r, "node-b") for pid, r in zip(ids, again)] + [PointOutcome(ids[0], again[0], "node-c")],
    )
    with engine.connect() as c:
        rows = c.execute(
            sa.select(Result.point_id, Result.id, Result.created_at, Result.worker, Result.final_error).where(
                Result.sweep_id == sweep_id
            )
        ).all()
        n_curves = c.execute(sa.select(sa.func.count()).select_from(Curve).where(Curve.point_id.in_(ids))).scalar_one()
        statuses = c.execute(sa.select(Point.status).where(Point.sweep_id == sweep_id)).scalars().all()
    assert sorted(rows) == sorted(first)
    assert n_curves == 3
    assert statuses == ["done"] * 3
    assert runner.stats["inserted"] == 3 and runner.stats["duplicates"] == 3


def test_metrics_that_do_not_apply_are_stored_as_null_never_nan(engine):
    cfgs = _configs(1)
    runner = Runner(make_session_factory(engine), None)
    sweep_id, ids = _sweep_with_points(engine, cfgs, owner=runner.owner)
    (res,) = core.run_points(cfgs)
    res.metrics["rate_fit"] = float("nan")
    res.metrics["speedup"] = float("inf")
    runner._write_batch(sweep_id, [PointOutcome(ids[0], res, "n")])
    with engine.connect() as c:
        rate_fit, speedup, q0 = c.execute(
            sa.select(Result.rate_fit, Result.speedup, Result.q0_norm).where(Result.point_id == ids[0])
        ).one()
    assert rate_fit is None and speedup is None
    assert q0 == pytest.approx(res.metrics["q0_norm"])


def test_start_requeues_running_points_and_gives_up_on_a_poison_point(engine):
    cfgs = _configs(3)
    sweep_id, ids = _sweep_with_points(engine, cfgs, status="running")
    runner = Runner(make_session_factory(engine), None, max_attempts=5)
    with Session(engine) as s, s.begin():
        s.execute(sa.update(Point).where(Point.id == ids[2]).values(attempts=5))
        s.execute(sa.update(Sweep).where(Sweep.id == sweep_id).values(status="cancelled"))  # not resumed
    runner._recover()
    with engine.connect() as c:
        st = dict(c.execute(sa.select(Point.id, Point.status).where(Point.sweep_id == sweep_id)).all())
        err = c.execute(sa.select(Result.error).where(Result.point_id == ids[2])).scalar_one()
        n_rows = c.execute(
            sa.select(sa.func.count()).select_from(Result).where(Result.sweep_id == sweep_id)
        ).scalar_one()
    assert st == {ids[0]: "pending", ids[1]: "pending", ids[2]: "failed"}
    assert "interrupted 5 times" in err
    assert n_rows == 1


def test_a_runner_changes_only_points_it_owns(engine):
    """Every state change is guarded by the point's owner: a runner that lost its lease (another
    took over and claimed the points) writes nothing, and its requeue leaves them alone."""
    cfgs = _configs(2)
    old = Runner(make_session_factory(engine), None)
    new = Runner(make_session_factory(engine), None)
    sweep_id, ids = _sweep_with_points(engine, cfgs, owner=new.owner)
    results = core.run_points(cfgs)
    assert old._write_batch(sweep_id, [PointOutcome(p, r, "old") for p, r in zip(ids, results)]) == set()
    with Session(engine) as s, s.begin():
        assert store.requeue_running(s, sweep_id, owner=old.owner) == 0
    with engine.connect() as c:
        assert (
            c.execute(sa.select(sa.func.count()).select_from(Result).where(Result.sweep_id == sweep_id)).scalar_one()
            == 0
        )
        assert set(c.execute(sa.select(Point.status, Point.owner).where(Point.sweep_id == sweep_id)).all()) == {
            ("running", new.owner)
        }
    assert new._write_batch(sweep_id, [PointOutcome(p, r, "new") for p, r in zip(ids, results)]) == set(ids)
    with engine.connect() as c:
        assert set(c.execute(sa.select(Point.status, Point.owner).where(Point.sweep_id == sweep_id)).all()) == {
            ("done", None)
        }


def test_one_runner_lease_per_database_expires_when_not_renewed(engine):
    """Both backends: the lease is held by one runner; the other stands by; a lease not renewed
    (its process died) expires after its ttl, by the database's rows, and the standby takes it."""
    t = [0.0]
    factory = make_session_factory(engine)
    a = Leadership(factory, "runner-a", ttl=60.0, clock=lambda: t[0])
    b = Leadership(factory, "runner-b", ttl=60.0, clock=lambda: t[0])
    assert a.ensure() and a.held()
    assert not b.ensure() and not b.held()  # held elsewhere: stands by
    assert a.ensure()  # renewal by the holder
    # a dies: no more renewals. Its lease expires 60 s after the last one (its expiry is moved to
    # the past here rather than waited for).
    with Session(engine) as s, s.begin():
        s.execute(sa.update(RunnerLease).values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    assert b.ensure() and b.held()
    assert not a.ensure()  # a came back: the lease is b's now
    t[0] += 46.0  # a's own clock: 0.75 ttl without renewal
    assert not a.held()
    b.release()  # a clean stop hands it over at once
    assert a.ensure()


@pytest.mark.parametrize("recompute", [False, True])
def test_points_finished_by_another_sweep_meanwhile_are_reused_unless_recompute(engine, recompute):
    cfgs = _configs(2)
    runner = Runner(make_session_factory(engine), None)
    src_sweep, src_ids = _sweep_with_points(engine, cfgs, owner=runner.owner)
    runner._write_batch(src_sweep, [PointOutcome(pid, r, "node-a") for pid, r in zip(src_ids, core.run_points(cfgs))])
    # A second sweep with the same points, submitted while the first was still running (so POST
    # found nothing to reuse): its points are pending, with the same identities.
    with Session(engine) as s, s.begin():
        identities = dict(s.execute(sa.select(Point.id, Point.identity).where(Point.sweep_id == src_sweep)).all())
        sweep = Sweep(name="later", status="queued", spec={"recompute": recompute}, n_points=2)
        s.add(sweep)
        s.flush()
        later = [
            Point(
                sweep_id=sweep.id, identity=identities[pid], status="pending", cached=False, attempts=0, **c.to_dict()
            )
            for pid, c in zip(src_ids, cfgs)
        ]
        s.add_all(later)
        s.flush()
        later_sweep, later_ids = sweep.id, [p.id for p in later]

    n = runner.scheduler.reuse_finished(later_sweep)
    with engine.connect() as c:
        pts = c.execute(
            sa.select(Point.id, Point.status, Point.cached, Point.source_point_id)
            .where(Point.sweep_id == later_sweep)
            .order_by(Point.id)
        ).all()
        rows = dict(
            c.execute(sa.select(Result.point_id, Result.final_error).where(Result.sweep_id == later_sweep)).all()
        )
        src_rows = dict(
            c.execute(sa.select(Result.point_id, Result.final_error).where(Result.sweep_id == src_sweep)).all()
        )
    if recompute:
        assert n == 0 and rows == {} and all(p.status == "pending" and not p.cached for p in pts)
    else:
        assert n == 2
        assert [(p.status, p.cached, p.source_point_id) for p in pts] == [("done", True, s) for s in src_ids]
        assert [rows[p] for p in later_ids] == [src_rows[p] for p in src_ids]


def test_a_point_twice_in_one_chunk_keeps_its_first_row_and_curves():
    from flowsweep.core.types import METRIC_FIELDS
    from flowsweep.service.writer import build_rows
    from flowsweep.status import PointStatus
    from flowsweep.workers.dispatch import ChunkOutcome
    from flowsweep.workers.tasks import ChunkRows

    statuses = [PointStatus.DONE, PointStatus.DIVERGED, PointStatus.DONE]
    cols = ChunkRows(
        statuses=statuses,
        errors=[None, "second", None],
        wall_seconds=[1.0, 2.0, 3.0],
        metrics={f: [None] * 3 for f in METRIC_FIELDS},
        blobs=[b"first", b"second", None],
        curves_format="f8-v2",
    )
    rows, blobs = build_rows(7, ChunkOutcome(point_ids=[11, 11, 12], rows=cols, worker="w"))
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [(11, "done", None, 1.0), (12, "done", None, 3.0)]
    assert blobs == {11: b"first"}


def test_a_result_the_database_refuses_fails_its_point_and_the_rest_of_the_batch_is_stored(engine):
    """A value the database cannot store (here one it cannot even bind) fails the same way on every
    retry: the writer stores the batch's other results and that point's failure, with the reason,
    instead of retrying the whole batch forever (which held back every later batch and left the
    sweep unfinished)."""
    from flowsweep.service.writer import ResultWriter

    cfgs = _configs(7)
    factory = make_session_factory(engine)
    writer = ResultWriter(factory, owner="w-owner")
    sweep_id, ids = _sweep_with_points(engine, cfgs, owner="w-owner")
    outcome = _chunk_outcome(ids, core.run_points(cfgs))
    bad = ids[4]
    outcome.rows.metrics["final_error"][4] = object()  # no driver binds this: refused on SQLite and Postgres alike
    writer.start()
    try:
        writer.put(sweep_id, outcome)
        assert writer.flush(timeout=60), "the writer is stuck on the batch"
        # the next batch is not held back by the refused one
        later_id, later_ids = _sweep_with_points(engine, _configs(1), owner="w-owner")
        writer.put(later_id, _chunk_outcome(later_ids, core.run_points(_configs(1))))
        assert writer.flush(timeout=60)
    finally:
        writer.stop()
    with engine.connect() as c:
        rows = {
            r.point_id: r
            for r in c.execute(
                sa.select(Result.point_id, Result.status, Result.error, Result.final_error).where(
                    Result.sweep_id.in_([sweep_id, later_id])
                )
            )
        }
        statuses = dict(c.execute(sa.select(Point.id, Point.status).where(Point.sweep_id == sweep_id)).all())
        curves = set(c.execute(sa.select(Curve.point_id).where(Curve.point_id.in_(ids))).scalars())
    assert set(rows) == {*ids, *later_ids}
    assert rows[bad].status == "failed" and rows[bad].error.startswith("result not stored: ")
    assert rows[bad].final_error is None and bad not in curves
    for pid in ids:
        if pid != bad:
            assert rows[pid].status == "done" and rows[pid].final_error is not None
            assert pid in curves
    assert statuses == {pid: "failed" if pid == bad else "done" for pid in ids}
    assert rows[later_ids[0]].status == "done"


def _chunk_outcome(point_ids, results):
    """core's results as a streaming task returns them (columns, curves encoded)."""
    from flowsweep.workers.dispatch import ChunkOutcome
    from flowsweep.workers.tasks import to_rows

    return ChunkOutcome(point_ids=point_ids, rows=to_rows(results), worker="node-a")


def test_the_wal_is_checkpointed_between_sweeps_not_in_a_result_commit(tmp_path):
    """SQLite's own checkpoint (every 1000 WAL pages) copied the WAL into the database file and
    fsynced it inside whichever commit crossed the threshold - often a sweep's last result batch.
    A batch of > 1000 pages now commits into the WAL alone (the database file does not grow); the
    runner, once it has no sweep, has the writer's thread checkpoint it (the file grows by the batch)."""
    from flowsweep.service.db import SQLITE_WAL_AUTOCHECKPOINT_PAGES, upgrade

    path = tmp_path / "wal.db"
    upgrade(f"sqlite:///{path}")
    eng = make_engine(f"sqlite:///{path}")
    runner = Runner(make_session_factory(eng), None)
    try:
        # 2001 records x (3 curves + 2 singular values) x 8 bytes = 80 kB of curves per point:
        # 64 points are ~5 MB, ~1250 pages of 4 kB (SQLite's default threshold is 1000)
        cfgs = [
            PointConfig(model="asymmetric", m=2, n=3, k=4, eta=0.01, steps=2000, record_every=1, seed=s)
            for s in range(64)
        ]
        sweep_id, ids = _sweep_with_points(eng, cfgs, owner=runner.owner)
        with eng.begin() as c:  # (not a sweep for the runner to take up: no Ray here)
            c.execute(sa.update(Sweep).where(Sweep.id == sweep_id).values(status="done"))
        with eng.connect() as c:
            assert c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SQLITE_WAL_AUTOCHECKPOINT_PAGES
        results = core.run_points(cfgs)
        assert all(len(r.curves.t) == 2001 for r in results)
        size = path.stat().st_size
        runner._write_batch(sweep_id, [PointOutcome(pid, r, "node") for pid, r in zip(ids, results)])
        assert path.stat().st_size == size  # in the WAL only: no checkpoint in the commit

        runner.start()  # nothing to run: idle at once, and asks for the checkpoint
        assert runner.writer.checkpointed.wait(60)
        runner.stop()
        # a runner without Ray creates no task stream: its express actor would have started a
        # local Ray cluster inside this process (which later took the test process down)
        assert not ray.is_initialized()
        assert path.stat().st_size > size + 4_000_000
        with eng.connect() as c:  # and every result is readable from the database
            n = c.execute(sa.select(sa.func.count()).select_from(Curve).where(Curve.point_id.in_(ids))).scalar()
        assert n == 64
    finally:
        runner.stop()
        eng.dispose()
