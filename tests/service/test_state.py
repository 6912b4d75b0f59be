"""GET /points/{id}/state: capped (413 stating the size), JSON or a compact .npz, equal to core's
initial state. Real app and SQLite database, in-process (no runner: the points stay pending, and a
state is recomputed from a point's parameters whatever its status)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from flowsweep import core
from flowsweep.service.app import create_app
from flowsweep.service.settings import Settings

LIMIT = 20_000


@pytest.fixture(scope="module")
def client(new_database_url):
    settings = Settings(database_url=new_database_url("sqlite"), max_answer_bytes=LIMIT)
    with TestClient(create_app(settings, start_runner=False, start_ray=False)) as c:
        yield c


def _point(client, k: int) -> int:
    r = client.post(
        "/sweeps",
        json={"model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 10, "axes": {"k": [k], "seed": [k]}},
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    from sqlalchemy import select

    from flowsweep.service.models import Point

    with client.app.state.read_session_factory() as s:
        return s.execute(select(Point.id).where(Point.sweep_id == sid)).scalar_one()


def test_state_as_json_and_npz_equals_core(client):
    pid = _point(client, 40)  # (6 + 5·40) floats: ~5 kB as JSON
    point = client.get(f"/points/{pid}").json()
    want = core.initial_state(
        core.PointConfig(
            model="asymmetric", m=2, n=3, k=40, eta=0.01, steps=10, record_every=point["record_every"], seed=40
        )
    )
    js = client.get(f"/points/{pid}/state").json()
    r = client.get(f"/points/{pid}/state", params={"format": "npz"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npz"
    with np.load(io.BytesIO(r.content), allow_pickle=False) as z:
        npz = {k: z[k] for k in z.files}
    assert set(js) == set(npz) == set(want) == {"Y", "U0", "V0"}
    for k in want:
        np.testing.assert_array_equal(np.array(js[k]), want[k])  # exact: shortest repr round-trips
        np.testing.assert_array_equal(npz[k], want[k])


def test_state_beyond_the_limit_is_413_stating_the_size(client):
    pid = _point(client, 400)  # 2006 floats: ~48 kB as JSON, ~16 kB as npz
    r = client.get(f"/points/{pid}/state")
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert f"{2006 * 24:,} bytes as json" in detail and f"{LIMIT:,}" in detail and "format=npz" in detail
    assert client.get(f"/points/{pid}/state", params={"format": "npz"}).status_code == 200
    big = _point(client, 2000)  # 10006 floats: over the limit in either form
    r = client.get(f"/points/{big}/state", params={"format": "npz"})
    assert r.status_code == 413 and f"{10006 * 8:,} bytes as npz" in r.json()["detail"]
    assert client.get(f"/points/{pid}/state", params={"format": "xml"}).status_code == 422
