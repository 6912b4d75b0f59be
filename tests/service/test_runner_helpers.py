"""Helpers shared by the runner and resilience tests (real uvicorn + real Ray via conftest)."""

from __future__ import annotations

import time
import uuid

import httpx
import sqlalchemy as sa

from flowsweep.service.db import make_engine

TERMINAL = ("done", "failed", "cancelled")


def sweep_body(
    name: str | None = None, *, steps: int = 40, seeds=(0, 3), scales=(0.1,), k: int = 6, **overrides
) -> dict:
    """A small Fig. 1-shaped sweep (asymmetric, gaussian, gd); `overrides` replace top-level keys."""
    body = {
        "name": name or f"t-{uuid.uuid4().hex[:8]}",
        "model": "asymmetric",
        "init": "gaussian",
        "integrator": "gd",
        "m": 3,
        "n": 4,
        "eta": 0.01,
        "steps": steps,
        "record_every": max(1, steps // 20),
        "axes": {"init_scale": list(scales), "k": [k], "lambda0": [0.0], "seed": {"range": list(seeds)}},
    }
    body.update(overrides)
    return body


def long_body(name: str, n_seeds: int = 500, seed0: int = 0) -> dict:
    """A sweep a test acts on while it runs (a cancel, a SIGKILL): it must not finish first however
    fast this machine or a later core is (a fresh clone finished 3000 Fig. 1 points before a cancel
    landed). Rank k = 4 < m = 5 keeps every point's error above sigma_5(Y) (no stop at machine
    precision) for 400,000 gd steps: ~17 ms a point compiled here, ~8 s of work on 2 CPUs for the
    default 1000 points, against the tens of ms a test takes from the first results to its act."""
    return sweep_body(
        name,
        steps=400_000,
        seeds=(seed0, seed0 + n_seeds),
        scales=(0.05, 0.1),
        k=4,
        m=5,
        n=10,
        eta=1e-3,
        record_every=100_000,
    )


def post_sweep(url: str, body: dict) -> dict:
    r = httpx.post(f"{url}/sweeps", json=body, timeout=60)
    assert r.status_code == 201, r.text
    return r.json()


def get_sweep(url: str, sweep_id: int) -> dict:
    r = httpx.get(f"{url}/sweeps/{sweep_id}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_sweep(url: str, sweep_id: int, until=TERMINAL, timeout: float = 120.0, log=None) -> dict:
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        body = get_sweep(url, sweep_id)
        if body["status"] in until:
            return body
        time.sleep(0.1)
    extra = f"\nserver log tail:\n{log()[-4000:]}" if log else ""
    raise AssertionError(f"sweep {sweep_id} not in {until} after {timeout} s: {body}{extra}")


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def all_results(url: str, sweep_id: int) -> list[dict]:
    rows, offset = [], 0
    while True:
        r = httpx.get(
            f"{url}/sweeps/{sweep_id}/results",
            params={"limit": 1000, "offset": offset, "order_by": "point_id"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        page = r.json()["data"]
        rows += page
        if len(page) < 1000:
            return rows
        offset += len(page)


def engine_for(server) -> sa.Engine:
    return make_engine(server.env["FLOWSWEEP_DATABASE_URL"])


def result_rows(engine: sa.Engine, sweep_id: int) -> dict[int, tuple]:
    """point_id -> (result id, created_at, wall_seconds, worker) straight from the database."""
    from flowsweep.service.models import Result

    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Result.point_id, Result.id, Result.created_at, Result.wall_seconds, Result.worker).where(
                Result.sweep_id == sweep_id
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def point_rows(engine: sa.Engine, sweep_id: int) -> dict[int, tuple]:
    """point id -> (status, attempts)."""
    from flowsweep.service.models import Point

    with engine.connect() as conn:
        rows = conn.execute(sa.select(Point.id, Point.status, Point.attempts).where(Point.sweep_id == sweep_id)).all()
    return {r[0]: (r[1], r[2]) for r in rows}
