"""Two service processes on one database (two API replicas on Postgres; two `flowsweep serve` on one
SQLite file), each with its own Ray: one runner (the lease holder), the other stands by. Real
uvicorn, real Ray, real Postgres and SQLite.

Covers issue 9 point 4: a cancel sent to the replica that does not run the sweeps reaches the runner
through the database (results computed before it are kept); the runner SIGKILLed mid-sweep: the
standby takes the lease over once it expires, and the sweep completes with exactly one result per
point, none lost, none failed.
"""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from test_runner_helpers import (
    engine_for,
    get_sweep,
    long_body,
    point_rows,
    post_sweep,
    result_rows,
    wait_sweep,
    wait_until,
)

from flowsweep.service.models import RunnerLease

LEASE = {"FLOWSWEEP_RUNNER_LEASE_SECONDS": "3"}


@pytest.fixture(scope="module", params=("postgres", "sqlite"))
def replicas(request, new_database_url, live_server):
    url = new_database_url(request.param)
    a = live_server(url, env=LEASE)
    b = live_server(url, env=LEASE)
    engine = engine_for(a)
    yield a, b, engine
    engine.dispose()
    a.stop()
    b.stop()


def leader_pid(engine) -> int | None:
    with engine.connect() as c:
        owner = c.execute(sa.select(RunnerLease.owner)).scalar()
    return int(owner.split(":")[1]) if owner else None


def roles(a, b, engine):
    pid = wait_until(lambda: leader_pid(engine), timeout=60, what="a runner lease")
    assert pid in (a.proc.pid, b.proc.pid)
    return (a, b) if pid == a.proc.pid else (b, a)


def test_a_cancel_sent_to_the_standby_reaches_the_runner(replicas):
    a, b, engine = replicas
    leader, standby = roles(a, b, engine)
    body = long_body("cancel-via-standby")
    sid = post_sweep(standby.url, body)["id"]
    wait_until(lambda: get_sweep(standby.url, sid)["counts"]["done"] > 0, timeout=120, what="first results")
    r = httpx.post(f"{standby.url}/sweeps/{sid}/cancel", timeout=30)
    assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled"), r.text
    s = wait_sweep(standby.url, sid, until=("cancelled",), timeout=60, log=leader.log)
    c = s["counts"]
    assert c["running"] == 0 and c["pending"] > 0, c
    assert len(result_rows(engine, sid)) == c["done"] + c["failed"] + c["diverged"]  # computed ones kept
    assert leader_pid(engine) == leader.proc.pid  # the cancel did not move the runner


def test_runner_killed_the_standby_takes_over_and_completes_the_sweep(replicas):
    a, b, engine = replicas
    leader, standby = roles(a, b, engine)
    body = long_body("survives-leader-kill", seed0=5000)
    created = post_sweep(standby.url, body)
    sid, n = created["id"], created["n_points"]
    wait_until(
        lambda: get_sweep(standby.url, sid)["counts"]["done"] >= 10,
        timeout=120,
        interval=0.05,
        what="first results before the kill",
    )
    leader.kill()  # SIGKILL of its process group (its Ray too): the lease is no longer renewed
    before = result_rows(engine, sid)
    assert 0 < len(before) < n, f"kill did not land mid-sweep: {len(before)}/{n}"
    wait_until(lambda: leader_pid(engine) == standby.proc.pid, timeout=60, what="the standby taking the lease")
    s = wait_sweep(standby.url, sid, timeout=240, log=standby.log)
    assert s["status"] == "done" and s["counts"]["done"] == n, s
    with engine.connect() as c:
        n_rows, n_distinct = c.execute(
            sa.text("SELECT count(*), count(DISTINCT point_id) FROM results WHERE sweep_id = :s"), {"s": sid}
        ).one()
    assert n_rows == n_distinct == n  # no point has two results, none is lost
    after = result_rows(engine, sid)
    assert all(after[p] == row for p, row in before.items())  # results written before the kill kept as they were
    points = point_rows(engine, sid)
    assert all(st == "done" and attempts >= 1 for st, attempts in points.values())  # none failed
