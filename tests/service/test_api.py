"""End to end through a real uvicorn server with real Ray (2 CPUs), on SQLite and on Postgres:
submit -> done, results/curves/state checked against independent numpy, caching across sweeps,
recompute, cancel, delete (other sweeps' cached points keep their results and curves)."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import numpy as np
import pytest

SPEC = {
    "name": "e2e",
    "model": "asymmetric",
    "m": 2,
    "n": 4,
    "eta": 0.01,
    "steps": 300,
    "record_every": 10,
    "axes": {"init_scale": [0.1, 1.0], "k": [4, 8], "seed": {"range": [0, 3]}},
}
N_POINTS = 12


def wait_done(client: httpx.Client, sweep_id: int, timeout: float = 240.0, until=("done", "failed", "cancelled")):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/sweeps/{sweep_id}").json()
        if body["status"] in until:
            return body
        time.sleep(0.3)
    raise AssertionError(f"sweep {sweep_id} not finished after {timeout} s: {body}")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def run(request, shared_server):
    server, url = shared_server(request.param)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/sweeps", json=SPEC)
        assert r.status_code == 201, r.text
        created = r.json()
        state = wait_done(client, created["id"])
        yield client, created, state


def test_submit_runs_to_done(run):
    client, created, state = run
    assert created["n_points"] == N_POINTS and created["n_cached"] == 0 and created["status"] == "queued"
    assert state["status"] == "done", state
    assert state["counts"] == {"pending": 0, "running": 0, "done": N_POINTS, "failed": 0, "diverged": 0, "cached": 0}
    assert state["progress"] == 1.0 and state["eta_seconds"] == 0.0
    created_at, started_at, finished_at = (
        dt.datetime.fromisoformat(state[k]) for k in ("created_at", "started_at", "finished_at")
    )
    assert created_at <= started_at <= finished_at and created_at.utcoffset() == dt.timedelta(0)
    assert state["spec"]["axes"] == SPEC["axes"] and state["spec"]["record_every"] == 10
    listed = client.get("/sweeps", params={"limit": 5}).json()
    assert listed["data"][0]["id"] == created["id"] and listed["count"] >= 1


def test_results_curves_and_state_agree_with_numpy(run):
    client, created, _ = run
    sid = created["id"]
    body = client.get(f"/sweeps/{sid}/results", params={"order_by": "point_id"}).json()
    rows = body["data"]
    assert body["count"] == N_POINTS == len(rows)
    assert {(r["init_scale"], r["k"], r["seed"]) for r in rows} == {
        (s, k, seed) for s in (0.1, 1.0) for k in (4, 8) for seed in range(3)
    }
    for row in rows:
        assert row["status"] == "done" and row["worker"] and row["sweep_id"] == sid
        assert 0 <= row["final_error"] < 1.5 and row["wall_seconds"] is not None
        # The one-layer gd baseline contracts exactly: e_i = (1 - eta)^i e_0.
        assert row["final_error_linear"] == pytest.approx((1 - 0.01) ** 300 * _e0(client, row["point_id"]), rel=1e-9)
    # One point in depth: ‖Q₀‖ and e(0) recomputed from the exact initial state.
    row = rows[-1]
    st = {k: np.array(v) for k, v in client.get(f"/points/{row['point_id']}/state").json().items()}
    Y, U0, V0 = st["Y"], st["U0"], st["V0"]
    assert Y.shape == (2, 4) and U0.shape == (2, row["k"]) and V0.shape == (4, row["k"])
    q0 = np.linalg.norm(U0.T @ U0 - V0.T @ V0)
    assert row["q0_norm"] == pytest.approx(q0, rel=1e-10)
    c = client.get(f"/points/{row['point_id']}/curves").json()
    np.testing.assert_allclose(c["t"], 0.01 * np.arange(0, 301, 10), rtol=1e-12)
    assert len(c["error"]) == len(c["error_linear"]) == 31
    assert np.array(c["singular_values"]).shape == (31, 2)
    assert c["error"][0] == pytest.approx(np.linalg.norm(Y - U0 @ V0.T) / np.linalg.norm(Y), rel=1e-10)
    assert c["error"][-1] == pytest.approx(row["final_error"], rel=1e-10)
    point = client.get(f"/points/{row['point_id']}").json()
    assert {k: point[k] for k in row} == row and point["cached"] is False


def _e0(client, point_id):
    c = client.get(f"/points/{point_id}/curves").json()
    return c["error_linear"][0]


def test_identical_sweep_is_cached_and_recompute_agrees(run):
    client, created, _ = run
    orig = client.get(f"/sweeps/{created['id']}/results").json()["data"]
    r = client.post("/sweeps", json={**SPEC, "name": "again"})
    assert r.status_code == 201
    again = r.json()
    assert again == {"id": again["id"], "status": "done", "n_points": N_POINTS, "n_cached": N_POINTS}
    state = client.get(f"/sweeps/{again['id']}").json()
    assert state["counts"]["cached"] == N_POINTS and state["counts"]["done"] == 0 and state["progress"] == 1.0
    copies = client.get(f"/sweeps/{again['id']}/results").json()["data"]
    metric_keys = [k for k in orig[0] if k not in ("point_id", "sweep_id")]
    assert [{k: r[k] for k in metric_keys} for r in copies] == [{k: r[k] for k in metric_keys} for r in orig]
    assert (
        client.get(f"/points/{copies[0]['point_id']}/curves").json()
        == client.get(f"/points/{orig[0]['point_id']}/curves").json()
    )

    r = client.post("/sweeps", json={**SPEC, "name": "recomputed", "recompute": True})
    assert r.status_code == 201 and r.json()["n_cached"] == 0
    state = wait_done(client, r.json()["id"])
    assert state["status"] == "done" and state["counts"]["done"] == N_POINTS
    fresh = client.get(f"/sweeps/{r.json()['id']}/results").json()["data"]
    for a, b in zip(orig, fresh):
        assert b["final_error"] == pytest.approx(a["final_error"], rel=1e-9)
        assert b["q0_norm"] == pytest.approx(a["q0_norm"], rel=1e-12)


def test_cancel(run):
    client, created, _ = run
    big = {
        **SPEC,
        "name": "to-cancel",
        "steps": 100_000,
        "record_every": 1000,
        # k = 1 < m: the error never reaches machine precision, so no point stops early and the
        # sweep is far more work than the chunks in flight, however fast this machine's gd is
        "axes": {"init_scale": [0.3], "k": [1], "seed": {"range": [100, 3100]}},
    }
    # Cancelled while queued (or just taken by the runner): it ends cancelled either way.
    sid = client.post("/sweeps", json=big).json()["id"]
    assert client.post(f"/sweeps/{sid}/cancel").status_code == 200
    wait_done(client, sid, until=("cancelled",), timeout=120)
    # Cancelled while running: pending points are not run, results already written are kept.
    sid = client.post("/sweeps", json={**big, "name": "to-cancel-running"}).json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"/sweeps/{sid}").json()["counts"]["done"] == 0:  # some results are written
        assert time.monotonic() < deadline, "no result within 120 s"
        time.sleep(0.1)
    r = client.post(f"/sweeps/{sid}/cancel")
    assert r.status_code == 200, r.text
    state = wait_done(client, sid, until=("cancelled",), timeout=120)
    counts = state["counts"]
    assert counts["pending"] > 0 and counts["running"] == 0 and state["finished_at"]
    n = client.get(f"/sweeps/{sid}/results").json()["count"]
    assert 0 < n == counts["done"] + counts["failed"] + counts["diverged"] < 3000  # kept, not all run
    assert client.post(f"/sweeps/{created['id']}/cancel").status_code == 409  # already done
    assert client.post("/sweeps/987654/cancel").status_code == 404
    assert client.delete("/sweeps/987654").status_code == 404
    assert client.delete(f"/sweeps/{sid}").status_code == 204  # a cancelled sweep can be deleted


def test_delete_keeps_other_sweeps_cached_results(run):
    client, _, _ = run
    spec = {**SPEC, "name": "to-delete", "axes": {"init_scale": [0.5], "k": [4], "seed": [7, 8]}}
    first = client.post("/sweeps", json=spec).json()
    wait_done(client, first["id"])
    second = client.post("/sweeps", json={**spec, "name": "reuser"}).json()
    assert second["n_cached"] == 2
    before = client.get(f"/sweeps/{second['id']}/results").json()["data"]
    curves_before = [client.get(f"/points/{r['point_id']}/curves").json() for r in before]
    assert client.delete(f"/sweeps/{first['id']}").status_code == 204
    assert client.get(f"/sweeps/{first['id']}").status_code == 404
    assert client.get(f"/sweeps/{first['id']}/results").status_code == 404
    after = client.get(f"/sweeps/{second['id']}/results").json()["data"]
    assert after == before
    assert [client.get(f"/points/{r['point_id']}/curves").json() for r in after] == curves_before
    # The re-homed results are reused again by a third sweep.
    third = client.post("/sweeps", json={**spec, "name": "third"}).json()
    assert third["n_cached"] == 2 and third["status"] == "done"
    third_rows = client.get(f"/sweeps/{third['id']}/results").json()["data"]
    assert client.get(f"/points/{third_rows[0]['point_id']}/curves").json() == curves_before[0]


def test_healthz_reports_database_and_ray(run):
    client, _, _ = run
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["database"] == "ok"
    assert h["ray"]["nodes"] >= 1 and h["ray"]["cpus"] == 2


def test_eta_and_data_scale_axes_and_a_data_spectrum(run):
    """SPEC §2-§4: eta and data_scale as axes, Y = Phi diag(y_singular_values) Psi^T times data_scale,
    both lambda0 branches and rate_lin in the rows; a point's parameters filter its rows."""
    client, _, _ = run
    spec = {
        "name": "spectrum",
        "model": "asymmetric",
        "m": 2,
        "n": 4,
        "steps": 200,
        "record_every": 10,
        "y_singular_values": [2.0, 0.5],
        "fit_lambda0": True,
        "axes": {"eta": [0.01, 0.02], "data_scale": [1.0, 3.0], "k": [6], "seed": [0, 1]},
    }
    r = client.post("/sweeps", json=spec)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["n_points"] == 8
    assert wait_done(client, sid)["status"] == "done"
    rows = client.get(f"/sweeps/{sid}/results", params={"order_by": "point_id"}).json()["data"]
    assert {(x["eta"], x["data_scale"], x["seed"]) for x in rows} == {
        (e, d, s) for e in (0.01, 0.02) for d in (1.0, 3.0) for s in (0, 1)
    }
    for row in rows:
        assert row["lambda0_fit_pos"] > 0 > row["lambda0_fit_neg"]
        assert row["lambda0_fit"] in (row["lambda0_fit_pos"], row["lambda0_fit_neg"])
        assert row["rate_lin"] is not None and row["eta_stability_limit"] > 0
        st = client.get(f"/points/{row['point_id']}/state").json()
        sv = np.linalg.svd(np.array(st["Y"]), compute_uv=False)
        np.testing.assert_allclose(sv, row["data_scale"] * np.array([2.0, 0.5]), rtol=1e-12)
    scaled = client.get(f"/sweeps/{sid}/results", params={"data_scale": 3.0, "eta_min": 0.015}).json()
    assert scaled["count"] == 2 and all(x["data_scale"] == 3.0 and x["eta"] == 0.02 for x in scaled["data"])
    # the phase diagram of such a sweep through the Python client (σ = data_scale · min(y_singular_values))
    from flowsweep.service import plots
    from flowsweep.service.client import Client

    with Client(str(client.base_url)) as c:
        fig = plots.sweep_figure(c, sid, "phase")
    squares = fig.axes[0].collections[0]
    assert sorted(set(np.round(squares.get_offsets()[:, 0], 12))) == [0.5, 1.5]
