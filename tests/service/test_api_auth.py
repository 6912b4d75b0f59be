"""Bearer-token auth (SPEC §4): FLOWSWEEP_API_TOKEN guards POST/DELETE; reads stay open unless
FLOWSWEEP_READ_TOKEN_REQUIRED=1. Real app and SQLite database (in-process; no Ray needed)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flowsweep.service.app import create_app
from flowsweep.service.settings import Settings

SPEC = {"model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 10}


@pytest.fixture
def make_client(new_database_url):
    clients = []

    def make(**settings) -> TestClient:
        app = create_app(
            Settings(database_url=new_database_url("sqlite"), **settings), start_runner=False, start_ray=False
        )
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_token_off_everything_open(make_client):
    c = make_client()
    assert c.post("/sweeps", json=SPEC).status_code == 201
    assert c.post("/sweeps/1/cancel").status_code == 200
    assert c.delete("/sweeps/1").status_code == 204
    assert c.get("/sweeps").status_code == 200


def test_token_guards_writes_only(make_client):
    c = make_client(api_token="s3cret")
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic czNjcmV0"}, {"Authorization": "s3cret"}):
        r = c.post("/sweeps", json=SPEC, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert "token" in r.json()["detail"]
    # A malformed body without a token is still a 401: nothing is validated or written first.
    assert c.post("/sweeps", content=b"{bad", headers={}).status_code == 401
    assert c.get("/sweeps").json()["count"] == 0
    r = c.post("/sweeps", json=SPEC, headers=bearer("s3cret"))
    assert r.status_code == 201
    sid = r.json()["id"]
    assert c.post(f"/sweeps/{sid}/cancel").status_code == 401
    assert c.delete(f"/sweeps/{sid}").status_code == 401
    assert c.post(f"/sweeps/{sid}/cancel", headers=bearer("s3cret")).status_code == 200
    for path in (
        "/sweeps",
        f"/sweeps/{sid}",
        f"/sweeps/{sid}/results",
        "/results",
        f"/sweeps/{sid}/summary",
        "/points/1",
        "/healthz",
    ):
        assert c.get(path).status_code == 200, path
    assert c.delete(f"/sweeps/{sid}", headers=bearer("s3cret")).status_code == 204


def test_read_token_required(make_client):
    c = make_client(api_token="s3cret", read_token_required=True)
    for path in ("/sweeps", "/sweeps/1", "/results", "/points/1", "/points/1/curves", "/sweeps/1/summary"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert c.get("/sweeps", headers=bearer("s3cret")).status_code == 200
    assert c.get("/sweeps/1", headers=bearer("s3cret")).status_code == 404
    assert c.get("/healthz").status_code == 200  # health checks stay open


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("FLOWSWEEP_API_TOKEN", "abc")
    monkeypatch.setenv("FLOWSWEEP_READ_TOKEN_REQUIRED", "1")
    monkeypatch.setenv("FLOWSWEEP_MAX_POINTS", "7")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    s = Settings()
    assert (s.api_token, s.read_token_required, s.max_points, s.ray_address) == ("abc", True, 7, "10.0.0.1:6379")
    monkeypatch.setenv("FLOWSWEEP_API_TOKEN", "")
    # reads required to carry a token, but no token: refused at start-up, never silently open
    with pytest.raises(ValueError, match="FLOWSWEEP_READ_TOKEN_REQUIRED"):
        Settings()
    monkeypatch.delenv("FLOWSWEEP_READ_TOKEN_REQUIRED")
    assert Settings().api_token is None


def test_max_points_setting_is_enforced(make_client):
    c = make_client(max_points=5)
    r = c.post("/sweeps", json={**SPEC, "axes": {"seed": {"range": [0, 6]}}})
    assert r.status_code == 422
    assert "at most 5" in r.json()["detail"][0]["msg"] and r.json()["detail"][0]["field"] == "axes.seed"
    r = c.post("/sweeps", json={**SPEC, "axes": {"seed": {"range": [0, 3]}, "k": [4, 5]}})
    assert r.status_code == 422 and "6 points; the maximum is 5" in r.json()["detail"][0]["msg"]
    assert c.post("/sweeps", json={**SPEC, "axes": {"seed": {"range": [0, 5]}}}).status_code == 201


def test_healthz_names_no_host_or_user_when_the_database_is_down(make_client):
    """The exception text of a failed connection names the host and the user: it goes to the log,
    never into the unauthenticated health answer."""
    from flowsweep.service import db

    c = make_client()
    bad = db.make_engine(
        "postgresql+psycopg://secretuser:pw@127.0.0.1:1/nodb", pool_pre_ping=False, connect_args={"connect_timeout": 2}
    )
    c.app.state.read_session_factory = db.make_session_factory(bad)
    try:
        r = c.get("/healthz")
    finally:
        bad.dispose()
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "error" and body["database"].startswith("error: ")
    assert "secretuser" not in r.text and "127.0.0.1" not in r.text and "nodb" not in r.text
