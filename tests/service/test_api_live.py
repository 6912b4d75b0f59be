"""The API the dashboard, CLI and client use, through a real uvicorn server with real Ray, on SQLite
and Postgres: Server-Sent Events of progress, curves aggregated per group (against numpy on each
point's own curves), tags/notes with PATCH and `tag=` filters, the summary across sweeps, dry runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import httpx
import numpy as np
import pytest

from flowsweep.core.cost import point_cost
from flowsweep.service.events import SnapshotCache
from flowsweep.service.expand import expand
from flowsweep.service.schemas import SweepSpec

RUN = uuid.uuid4().hex[:6]  # tags unique to this run: the shared server holds other modules' sweeps
LIVE, PAPER, FIG1, OTHER = (f"{t}-{RUN}" for t in ("live", "paper", "fig1", "other"))
SPEC = {
    "name": "live-a",
    "model": "asymmetric",
    "m": 2,
    "n": 3,
    "eta": 0.02,
    "steps": 200,
    "record_every": 10,
    "tags": [LIVE, PAPER],
    "axes": {"init_scale": [0.1, 1.0], "k": [4], "seed": {"range": [0, 3]}},
}


def read_events(client: httpx.Client, path: str, timeout: float = 180.0) -> list[tuple[str, dict]]:
    """(event name, data) of an SSE stream until it ends."""
    events, name = [], "message"
    with client.stream("GET", path, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line[5:])))
                name = "message"
    return events


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def run(request, shared_server):
    server, _ = shared_server(request.param)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/sweeps", json=SPEC)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        events = read_events(client, f"/sweeps/{sid}/events")
        yield client, sid, events


def test_events_stream_progress_until_terminal(run):
    client, sid, events = run
    assert events and events[-1][0] == "end"
    data = [d for name, d in events if name == "message"]
    progress = [d["progress"] for d in data]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert all(d["id"] == sid for d in data) and data[-1]["status"] == "done"
    assert events[-1][1]["status"] == "done"
    # Each event is GET /sweeps/{id}'s body, so a late subscriber gets the final state and the end at once.
    late = read_events(client, f"/sweeps/{sid}/events", timeout=30)
    assert late[0][1] == client.get(f"/sweeps/{sid}").json() and late[-1][0] == "end"
    assert client.get("/sweeps/987654/events").status_code == 404


def test_list_events_send_the_list_body(run):
    client, sid, _ = run
    with client.stream("GET", "/sweeps/events", params={"tag": LIVE, "limit": 5}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                body = json.loads(line[5:])
                break
    assert body == client.get("/sweeps", params={"tag": LIVE, "limit": 5}).json()
    assert sid in [s["id"] for s in body["data"]]


def test_curves_aggregate_per_group_as_numpy_does(run):
    client, sid, _ = run
    body = client.get(f"/sweeps/{sid}/curves").json()
    assert body["by"] == ["init_scale"]
    assert [g["key"] for g in body["groups"]] == [{"init_scale": 0.1}, {"init_scale": 1.0}]
    rows = client.get(f"/sweeps/{sid}/results").json()["data"]
    for g in body["groups"]:
        ids = sorted(r["point_id"] for r in rows if r["init_scale"] == g["key"]["init_scale"])
        assert sorted(g["point_ids"]) == ids and g["n"] == 3
        own = [client.get(f"/points/{p}/curves").json() for p in ids]
        np.testing.assert_allclose(g["t"], own[0]["t"])
        for key in ("error", "error_linear"):
            stacked = np.array([c[key] for c in own])
            np.testing.assert_allclose(g[key]["mean"], stacked.mean(axis=0), rtol=1e-12)
            np.testing.assert_allclose(g[key]["std"], stacked.std(axis=0, ddof=1), rtol=1e-9, atol=1e-15)
            assert g[key]["n"] == [3] * len(g["t"])
        assert g["error_regularized_fit"] is None  # fit_lambda0 is false
        rep = client.get(f"/points/{g['representative']['point_id']}/curves").json()
        assert g["singular_values"] == rep["singular_values"] and g["representative"]["seed"] == 0
        q0 = [r["q0_norm"] for r in rows if r["point_id"] in ids]
        assert g["q0_norm_mean"] == pytest.approx(float(np.mean(q0)), rel=1e-12)
    one = client.get(f"/sweeps/{sid}/curves", params={"by": "init_scale,k", "max_seeds": 1}).json()
    assert one["by"] == ["init_scale", "k"] and all(g["n"] == 1 and g["error"]["std"][0] is None for g in one["groups"])
    bad = client.get(f"/sweeps/{sid}/curves", params={"by": "speedup"})
    assert bad.status_code == 422 and "speedup" in bad.text


def test_tags_notes_patch_and_tag_filters(run):
    client, sid, _ = run
    assert client.get(f"/sweeps/{sid}").json()["tags"] == sorted([LIVE, PAPER])
    other = client.post("/sweeps", json={**SPEC, "name": "live-b", "tags": [OTHER]}).json()
    assert other["n_cached"] == other["n_points"]  # same points: reused, done at once
    r = client.patch(f"/sweeps/{sid}", json={"name": f"renamed-{RUN}", "tags": [LIVE, FIG1], "notes": "first try"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["tags"], r.json()["notes"]) == (
        f"renamed-{RUN}",
        sorted([FIG1, LIVE]),
        "first try",
    )
    assert client.get(f"/sweeps/{sid}").json()["notes"] == "first try"
    assert client.patch(f"/sweeps/{sid}", json={"tags": ["a,b"]}).status_code == 422
    assert client.patch(f"/sweeps/{sid}", json={"colour": "red"}).status_code == 422
    assert client.patch("/sweeps/987654", json={"notes": "x"}).status_code == 404
    ids = lambda body: {s["id"] for s in body["data"]}  # noqa: E731
    assert sid in ids(client.get("/sweeps", params={"tag": FIG1}).json())
    assert other["id"] not in ids(client.get("/sweeps", params={"tag": FIG1}).json())
    assert {sid, other["id"]} <= ids(client.get("/sweeps", params={"tag": f"{FIG1},{OTHER}"}).json())
    assert ids(client.get("/sweeps", params={"name": f"RENAMED-{RUN}"}).json()) >= {sid}
    assert other["id"] not in ids(client.get("/sweeps", params={"name": f"renamed-{RUN}"}).json())
    res = client.get("/results", params={"tag": FIG1}).json()
    assert {r["sweep_id"] for r in res["data"]} == {sid} and res["count"] == 6
    both = client.get("/results", params={"tag": [FIG1, OTHER], "format": "csv"})
    assert both.status_code == 200 and len(both.text.strip().splitlines()) == 1 + 12
    # The summary across sweeps, grouped by sweep: each sweep's own summary, row for row.
    s = client.get("/summary", params={"tag": f"{FIG1},{OTHER}", "by": "sweep_id,init_scale"}).json()
    assert s["by"] == ["sweep_id", "init_scale"] and s["count"] == 4
    own = client.get(f"/sweeps/{sid}/summary", params={"by": "init_scale"}).json()["data"]
    mine = [{k: v for k, v in r.items() if k != "sweep_id"} for r in s["data"] if r["sweep_id"] == sid]
    assert len(mine) == len(own)
    for a, b in zip(mine, own):
        assert a.keys() == b.keys()
        assert all(
            a[k] == b[k] if b[k] is None or isinstance(b[k], str) else a[k] == pytest.approx(b[k], rel=1e-12) for k in b
        )
    assert client.get("/summary", params={"tag": "no-such-tag"}).json()["count"] == 0
    assert client.get("/summary", params={"by": "colour"}).status_code == 422
    # Deleting a sweep deletes its tags.
    assert client.delete(f"/sweeps/{other['id']}").status_code == 204
    assert client.get("/sweeps", params={"tag": OTHER}).json()["count"] == 0


def test_dry_run_counts_and_estimates_without_storing(run):
    client, sid, _ = run
    before = client.get("/sweeps").json()["count"]
    r = client.post(
        "/sweeps", params={"dry_run": "true"}, json={**SPEC, "axes": {**SPEC["axes"], "seed": {"range": [0, 5]}}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["valid"], body["n_points"], body["n_cached"], body["n_new"]) == (True, 10, 6, 4)
    assert body["estimate"]["cpus"] >= 1
    # the budget's model (core.cost) for the 4 points to run: every point of this sweep costs the same
    spec = SweepSpec.model_validate({**SPEC, "axes": {**SPEC["axes"], "seed": {"range": [0, 5]}}})
    costs = {point_cost(dataclasses.replace(p, seed=0)) for p in expand(spec)}
    assert len(costs) == 1
    (cost,) = costs
    assert body["estimate"]["cpu_seconds"] == pytest.approx(4 * cost.cpu_seconds)
    assert body["estimate"]["peak_bytes_per_point"] == int(cost.peak_bytes)
    assert client.get("/sweeps").json()["count"] == before
    bad = client.post("/sweeps", params={"dry_run": "true"}, json={**SPEC, "eta": -1})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "eta"


def test_snapshot_cache_shares_one_read_between_streams():
    """Concurrent askers of one key in one interval cause one read; another key its own read."""

    async def main() -> tuple[int, list]:
        cache = SnapshotCache(interval=3600.0)
        calls = []

        def load() -> dict:
            calls.append(1)
            return {"n": len(calls)}

        got = await asyncio.gather(*[cache.get("k", load) for _ in range(50)])
        await cache.get("other", load)
        return cache.reads, got

    reads, got = asyncio.run(main())
    assert reads == 2 and all(g == {"n": 1} for g in got)


def test_stop_ends_open_event_streams(live_server, new_database_url):
    """SIGTERM with an event stream open: the stream ends by itself (uvicorn does not have to cancel
    it after its graceful-shutdown timeout) and the server exits cleanly."""
    server = live_server(new_database_url("sqlite"))
    with httpx.Client(base_url=server.url, timeout=60) as client, client.stream("GET", "/sweeps/events") as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        server.stop()  # SIGTERM (uvicorn re-raises it after its shutdown)
        rest = list(lines)  # the server closed the stream: iteration ends
    assert all(not line.startswith("event: end") for line in rest)
    log = server.log()
    assert "timeout graceful shutdown exceeded" not in log and "Application shutdown complete" in log
