"""The sweep runner end to end: real uvicorn (`python -m service.server`), real local Ray (2 CPUs),
a real SQLite file and a real Postgres database. One server per database for the whole module.

Covers issue 3 "Runner": many concurrent sweeps, cancel, dedupe across sweeps (`n_cached`,
`recompute`), diverged and failed points, status transitions with started_at/finished_at, ETA.
Scheduling decisions (fair share, refill, cancel) are tested deterministically in test_scheduling.py.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa
from test_runner_helpers import (
    all_results,
    engine_for,
    get_sweep,
    long_body,
    point_rows,
    post_sweep,
    result_rows,
    sweep_body,
    wait_sweep,
    wait_until,
)

DB_KINDS = ("sqlite", "postgres")


@pytest.fixture(scope="module", params=DB_KINDS)
def server(request, new_database_url, live_server):
    srv = live_server(new_database_url(request.param))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def engine(server):
    eng = engine_for(server)
    yield eng
    eng.dispose()


def _ts(v) -> dt.datetime:
    t = dt.datetime.fromisoformat(v)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def test_twenty_concurrent_sweeps_all_land_and_complete(server, engine):
    # 20 distinct sweeps (different seed ranges: no dedupe between them), POSTed at once.
    bodies = [
        sweep_body(f"conc-{i}-{uuid.uuid4().hex[:6]}", seeds=(100 + 3 * i, 103 + 3 * i), scales=(0.05,))
        for i in range(20)
    ]
    with ThreadPoolExecutor(20) as pool:
        created = list(pool.map(lambda b: post_sweep(server.url, b), bodies))
    ids = [c["id"] for c in created]
    assert len(set(ids)) == 20
    assert all(c["n_points"] == 3 and c["n_cached"] == 0 for c in created), created
    seen_points: set[int] = set()
    for sid in ids:
        body = wait_sweep(server.url, sid, timeout=180, log=server.log)
        assert body["status"] == "done", body
        assert body["counts"]["done"] == 3 and body["counts"]["pending"] == 0, body
        assert body["counts"]["running"] == 0 and body["progress"] == pytest.approx(1.0)
        assert body["started_at"] and body["finished_at"]
        assert _ts(body["created_at"]) <= _ts(body["started_at"]) <= _ts(body["finished_at"])
        rows = all_results(server.url, sid)
        assert len(rows) == 3 and {r["sweep_id"] for r in rows} == {sid}
        assert all(r["status"] == "done" and r["final_error"] is not None for r in rows)
        seen_points |= {r["point_id"] for r in rows}
        assert len(result_rows(engine, sid)) == 3  # exactly one row per point in the table itself
    assert len(seen_points) == 60


def test_dedupe_across_sweeps_and_recompute(server, engine):
    body = sweep_body(scales=(0.37,), seeds=(0, 4), steps=60)
    first = post_sweep(server.url, body)
    assert first["n_cached"] == 0
    a = wait_sweep(server.url, first["id"], log=server.log)
    assert a["status"] == "done"
    rows_a = all_results(server.url, first["id"])

    second = post_sweep(server.url, dict(body, name="again"))
    assert second["n_points"] == 4 and second["n_cached"] == 4, second
    b = wait_sweep(server.url, second["id"], log=server.log)
    assert b["status"] == "done" and b["counts"]["cached"] == 4, b
    # No work: the cached points were never handed to a worker.
    assert all(attempts == 0 for _, attempts in point_rows(engine, second["id"]).values())
    rows_b = all_results(server.url, second["id"])
    assert [r["final_error"] for r in rows_b] == [r["final_error"] for r in rows_a]
    assert len(result_rows(engine, second["id"])) == 4

    third = post_sweep(server.url, dict(body, name="recomputed", recompute=True))
    assert third["n_cached"] == 0
    c = wait_sweep(server.url, third["id"], log=server.log)
    assert c["status"] == "done" and c["counts"]["done"] == 4 and c["counts"]["cached"] == 0, c
    assert all(attempts == 1 for _, attempts in point_rows(engine, third["id"]).values())
    new_rows = result_rows(engine, third["id"])
    finished_a = _ts(a["finished_at"])
    assert all(created >= finished_a for _, created, _, _ in new_rows.values())
    rows_c = all_results(server.url, third["id"])
    # gd is deterministic: recomputing gives the same numbers.
    for r_a, r_c in zip(rows_a, rows_c):
        assert r_c["final_error"] == pytest.approx(r_a["final_error"], rel=1e-12)


def test_diverging_point_is_recorded_as_diverged(server):
    # Explicit Euler with eta far beyond 2/L blows up: a result ("diverged"), not a crash.
    body = sweep_body(scales=(3.0,), seeds=(0, 1), steps=400, eta=0.5, record_every=10)
    created = post_sweep(server.url, body)
    s = wait_sweep(server.url, created["id"], log=server.log)
    assert s["status"] == "done", s  # a diverged point is a result
    assert s["counts"]["diverged"] == 1, s
    (row,) = all_results(server.url, created["id"])
    assert row["status"] == "diverged"
    assert isinstance(row["diverged_at"], int) and 0 < row["diverged_at"] <= 400
    for v in row.values():  # never NaN/inf in JSON
        assert not (isinstance(v, float) and not math.isfinite(v))


def _insert_sweep(engine, name: str, configs: list[dict]) -> int:
    """A sweep written straight into the database, bypassing the API's validation, so that a point
    core rejects at run time reaches the runner (the runner polls the database for queued sweeps)."""
    from sqlalchemy.orm import Session

    from flowsweep.core.types import PointConfig
    from flowsweep.service.models import Point, Sweep

    with Session(engine) as s, s.begin():
        sweep = Sweep(name=name, status="queued", spec={"name": name}, n_points=len(configs))
        s.add(sweep)
        s.flush()
        for c in configs:
            cfg = PointConfig(**c).to_dict()
            s.add(
                Point(
                    sweep_id=sweep.id,
                    identity=uuid.uuid4().hex + uuid.uuid4().hex,
                    status="pending",
                    cached=False,
                    attempts=0,
                    **cfg,
                )
            )
        s.flush()
        return sweep.id


def test_failing_point_is_recorded_with_its_message(server, engine):
    good = dict(model="asymmetric", m=3, n=4, k=6, eta=0.01, steps=30, record_every=3, seed=7, init_scale=0.21)
    # `spectral` needs k >= m (SPEC §2): core refuses this point when it runs.
    bad = dict(good, init="spectral", k=2, seed=8)
    mixed = _insert_sweep(engine, "mixed", [good, bad])
    only_bad = _insert_sweep(engine, "only-bad", [dict(bad, seed=9)])

    s = wait_sweep(server.url, mixed, timeout=60, log=server.log)
    assert s["status"] == "done", s  # one point failed, one is done: the sweep is done
    assert s["counts"]["failed"] == 1 and s["counts"]["done"] == 1, s
    rows = {r["status"]: r for r in all_results(server.url, mixed)}
    assert set(rows) == {"done", "failed"}
    with engine.connect() as conn:
        err = conn.execute(
            sa.text("SELECT error FROM results WHERE sweep_id = :s AND status = 'failed'"), {"s": mixed}
        ).scalar_one()
    assert err and "k" in err, err

    s2 = wait_sweep(server.url, only_bad, timeout=60, log=server.log)
    assert s2["status"] == "failed", s2  # every point failed: the sweep failed
    assert s2["finished_at"] is not None
    assert len(result_rows(engine, only_bad)) == 1


def test_cancel_mid_sweep(server, engine):
    body = long_body("to-cancel")
    created = post_sweep(server.url, body)
    sid, n = created["id"], created["n_points"]

    def some_done():
        s = get_sweep(server.url, sid)
        return s if s["counts"]["done"] > 0 else None

    s = wait_until(some_done, timeout=120, what="first results")
    assert s["status"] == "running" and s["started_at"] is not None
    # ETA from the observed completion rate, while it runs (the runner's bookkeeping follows the
    # commit of a batch by a hair, hence the short wait).
    eta = wait_until(lambda: get_sweep(server.url, sid)["eta_seconds"], timeout=10, interval=0.02, what="an ETA")
    assert 0 < eta < 3600
    r = httpx.post(f"{server.url}/sweeps/{sid}/cancel", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("cancelling", "cancelled"), r.json()  # never "running" again
    s = wait_sweep(server.url, sid, until=("cancelled",), timeout=60, log=server.log)
    wait_until(lambda: get_sweep(server.url, sid)["counts"]["running"] == 0, timeout=30, what="no point left running")
    s = get_sweep(server.url, sid)
    c = s["counts"]
    assert s["status"] == "cancelled" and s["finished_at"] is not None
    assert c["pending"] > 0, c  # the rest was never run
    finished = c["done"] + c["failed"] + c["diverged"]
    assert finished + c["pending"] == n
    assert len(result_rows(engine, sid)) == finished
    # Nothing keeps running in the background after the cancel.
    import time

    time.sleep(2.0)
    assert len(result_rows(engine, sid)) == finished
    assert get_sweep(server.url, sid)["status"] == "cancelled"
    # The server still runs new work after a cancel.
    after = post_sweep(server.url, sweep_body(scales=(0.43,), seeds=(0, 2)))
    assert wait_sweep(server.url, after["id"], log=server.log)["status"] == "done"


# Fairness between sweeps (a small one behind a huge one, two big ones) is tested deterministically,
# with chunks released by the test, in tests/service/test_scheduling.py.
