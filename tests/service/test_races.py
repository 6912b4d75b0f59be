"""A DELETE racing a POST that reuses the deleted sweep's points (issue 11): on Postgres the POST's
foreign keys to the deleted points failed on commit (IntegrityError, a 500). The route's write now
runs again in a fresh transaction, which no longer finds those points and computes them afresh.

Deterministic: the DELETE holds its transaction open until the POST is seen waiting on its row lock
(pg_stat_activity), then commits."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text, update

from flowsweep.service import db, store
from flowsweep.service.models import Point, Result
from flowsweep.service.routes.sweeps import retry_conflicts
from flowsweep.service.schemas import SweepSpec

BODY = {"model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 10, "axes": {"seed": [0, 1, 2]}}


def _finished_sweep(factory) -> int:
    spec = SweepSpec.model_validate(BODY)
    with db.session_scope(factory) as s:
        sweep, _ = store.insert_sweep(s, spec, {"name": "first"})
        s.execute(update(Point).where(Point.sweep_id == sweep.id).values(status="done"))
        ids = s.execute(select(Point.id).where(Point.sweep_id == sweep.id)).scalars().all()
        s.execute(Result.__table__.insert(), [dict(point_id=i, sweep_id=sweep.id, status="done") for i in ids])
        sweep.status = "done"
        return sweep.id


def test_post_reusing_points_of_a_concurrently_deleted_sweep_retries(new_database_url):
    url = new_database_url("postgres")
    db.upgrade(url)
    engine = db.make_engine(url)
    factory = db.make_session_factory(engine)
    try:
        first = _finished_sweep(factory)
        deleting = factory()
        store.delete_sweep(deleting, first)  # uncommitted: the points are still visible to others
        attempts: list[int] = []
        out: dict = {}

        def post() -> None:
            def write():
                attempts.append(1)
                with db.session_scope(factory) as s:
                    sweep, n_cached = store.insert_sweep(s, SweepSpec.model_validate(BODY), {"name": "second"})
                    return sweep.id, n_cached

            try:
                out["result"] = retry_conflicts(write)
            except Exception as exc:  # noqa: BLE001
                out["error"] = exc

        t = threading.Thread(target=post)
        t.start()
        with engine.connect() as conn:  # wait until the POST waits on the DELETE's row locks
            for _ in range(600):
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                if waiting:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the POST never waited on the DELETE's locks")
        deleting.commit()
        deleting.close()
        t.join(60)
        assert "error" not in out, repr(out.get("error"))
        sweep_id, n_cached = out["result"]
        assert len(attempts) == 2 and n_cached == 0  # the first attempt lost; the retry computes afresh
        with factory() as s:
            pts = s.execute(select(Point.status, Point.source_point_id).where(Point.sweep_id == sweep_id)).all()
        assert pts and all(st == "pending" and src is None for st, src in pts)
    finally:
        engine.dispose()


def test_retry_gives_up_with_a_409():
    from fastapi import HTTPException
    from sqlalchemy.exc import IntegrityError

    calls = []

    def always_loses():
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("fk"))

    with pytest.raises(HTTPException) as e:
        retry_conflicts(always_loses)
    assert e.value.status_code == 409 and len(calls) == 3
