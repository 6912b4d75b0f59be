"""The service SIGKILLed mid-sweep and started again on the same database (SPEC §5): the sweep
completes, no point has two result rows, and points finished before the kill are not recomputed.

Real uvicorn + real local Ray (the kill takes the server's whole process group, Ray included, as a
crash of the machine's service would), on a SQLite file and on Postgres.
"""

from __future__ import annotations

import sqlalchemy as sa
from test_runner_helpers import (
    all_results,
    engine_for,
    get_sweep,
    long_body,
    point_rows,
    post_sweep,
    result_rows,
    wait_sweep,
    wait_until,
)


def test_sigkill_mid_sweep_then_restart_completes_without_recomputing(database_url, live_server):
    first = live_server(database_url)
    # Seconds of work (long_body): the first chunks (probes) come back long before the rest, so
    # the kill lands mid-sweep.
    body = long_body("survives-kill")
    created = post_sweep(first.url, body)
    sid, n = created["id"], created["n_points"]
    assert n == 1000

    def partly_done():
        c = get_sweep(first.url, sid)["counts"]
        return c if c["done"] >= 10 else None

    wait_until(partly_done, timeout=120, interval=0.05, what="first results before the kill")
    first.kill()  # SIGKILL: no lifespan shutdown, no chance to tidy up
    assert not first.alive()

    engine = engine_for(first)
    try:
        before = result_rows(engine, sid)  # point_id -> (id, created_at, wall_seconds, worker)
        points_before = point_rows(engine, sid)  # point id -> (status, attempts)
        assert 0 < len(before) < n, f"kill did not land mid-sweep: {len(before)}/{n} rows"
        finished_before = {p for p, (st, _) in points_before.items() if st in ("done", "diverged", "failed")}
        assert finished_before == set(before), "a point's status and its result row must commit together"
        assert any(st in ("running", "pending") for st, _ in points_before.values())

        second = live_server(database_url)
        s = wait_sweep(second.url, sid, timeout=240, log=second.log)
        assert s["status"] == "done", s
        assert s["counts"]["done"] == n and s["counts"]["pending"] == 0 and s["counts"]["running"] == 0

        after = result_rows(engine, sid)
        with engine.connect() as conn:
            n_rows, n_distinct = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT point_id) FROM results WHERE sweep_id = :s"), {"s": sid}
            ).one()
        assert n_rows == n_distinct == n  # exactly one result row per point
        # Points finished before the kill kept their rows untouched: not recomputed, not rewritten.
        for pid, row in before.items():
            assert after[pid] == row, (pid, row, after[pid])
        points_after = point_rows(engine, sid)
        for pid in finished_before:
            assert points_after[pid][1] == points_before[pid][1], "a finished point was dispatched again"
        # Every unfinished point was handed to a worker exactly once more after the restart, so the
        # points computed in total (before the kill + after the restart) == n_points.
        recomputed = sum(points_after[p][1] - points_before[p][1] for p in points_before)
        assert len(before) + recomputed == n
        assert "already had a result row" not in second.log()
        assert len(all_results(second.url, sid)) == n
        second.stop()
    finally:
        engine.dispose()
