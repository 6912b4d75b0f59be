"""The API against its own OpenAPI document, and the inputs a generator does not think of.

schemathesis 4.32.5 (`--checks all`, fixed seed, bounded examples) runs against a real uvicorn server
on SQLite and on Postgres, without and with FLOWSWEEP_API_TOKEN: no failure of any kind, and no sweep
left half-written. The server runs without Ray and the runner (the HTTP layer, validation and the
database are the real ones; a posted sweep stays queued). The four runs go at once, one process
each against its own server; with the token only the writes run again (the reads do not change).
Then hand-written cases: huge integers, NUL and control characters, other content types,
oversized and streamed bodies, cross-site Origin and foreign Host headers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from servers import start_server

from flowsweep.service import db

HERE = Path(__file__).resolve().parent
MAX_EXAMPLES = 10
TOKEN = "fuzz-t0ken"
OK = {"model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 10}
SERVER = """
import uvicorn
from flowsweep.service.app import create_app
from flowsweep.service.settings import Settings
s = Settings()
uvicorn.run(create_app(s, start_runner=False, start_ray=False), host="127.0.0.1", port=s.port, log_level="warning")
"""


PARAMS = [("sqlite", None), ("postgres", None), ("sqlite", TOKEN), ("postgres", TOKEN)]
IDS = ["sqlite", "postgres", "sqlite-token", "postgres-token"]


class Servers:
    """One live server per (database, token), started on first use and stopped at the module's end."""

    def __init__(self, new_database_url, tmp_path_factory):  # noqa: ANN001
        self.new_database_url, self.tmp = new_database_url, tmp_path_factory
        self.started: dict = {}

    def start(self, params: list) -> None:
        """Start the servers of `params` at once (each takes seconds to import), then wait for all."""
        waiting = [p for p in params if p not in self.started]
        for kind, token in waiting:
            url = self.new_database_url(kind)
            env = {"FLOWSWEEP_MAX_BODY_BYTES": "200000", **({"FLOWSWEEP_API_TOKEN": token} if token else {})}
            live = start_server(
                url, self.tmp.mktemp("fuzz"), env=env, wait=False, num_cpus=None, cmd=[sys.executable, "-c", SERVER]
            )
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            client = httpx.Client(base_url=live.url, headers=headers, timeout=60)
            client.db_url, client.token, client.live = url, token, live
            client.param = (kind, token)
            self.started[(kind, token)] = client
        for p in waiting:
            self.started[p].live.wait_ready()

    def get(self, param: tuple) -> httpx.Client:
        self.start([param])
        return self.started[param]

    def stop(self) -> list[str]:
        logs = []
        for client in self.started.values():
            client.live.stop()
            client.close()
            logs.append(client.live.log())
        return logs


@pytest.fixture(scope="module")
def servers(new_database_url, tmp_path_factory):
    pool = Servers(new_database_url, tmp_path_factory)
    yield pool
    for log in pool.stop():
        assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module", params=PARAMS, ids=IDS)
def server(request, servers):
    return servers.get(request.param)


def schemathesis_command(server) -> list[str]:  # noqa: ANN001
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(HERE / "fuzz" / "schemathesis.toml"),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "1",
        "--no-color",
    ]
    if server.token:
        # The token changes the writes only (their security and 401s; reads stay open unless
        # FLOWSWEEP_READ_TOKEN_REQUIRED): the reads were fuzzed on the same database without it.
        cmd += ["-H", f"Authorization: Bearer {server.token}"]
        cmd += [arg for m in ("POST", "PATCH", "DELETE") for arg in ("--include-method", m)]
    return cmd


@pytest.fixture(scope="module")
def fuzz_runs(request, servers, tmp_path_factory):
    """One schemathesis process per selected parametrization, all started at once (they wait on HTTP
    and on their servers far more than they compute); each test collects its own."""
    selected = [
        item.callspec.params["server"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_schemathesis_finds_nothing" and hasattr(item, "callspec")
    ]
    servers.start(selected)
    runs = {}
    for param in selected:
        # its cache (.schemathesis/) goes to a temporary directory, not the repository
        cwd = tmp_path_factory.mktemp("schemathesis")
        out = open(cwd / "out.txt", "w+")  # noqa: SIM115 (the run writes to it after this block; closed below)
        runs[param] = (
            subprocess.Popen(
                schemathesis_command(servers.get(param)), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=cwd
            ),
            out,
        )
    yield runs
    for proc, out in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def half_written(url: str) -> list:
    """Sweeps whose stored points are not exactly their n_points (a write that stopped half-way)."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT s.id, s.n_points, count(p.id) FROM sweeps s LEFT JOIN points p ON p.sweep_id = s.id "
                    "GROUP BY s.id, s.n_points HAVING count(p.id) != s.n_points"
                )
            ).all()
    finally:
        engine.dispose()


def test_schemathesis_finds_nothing(server, fuzz_runs):
    proc, out = fuzz_runs[server.param]
    returncode = proc.wait(timeout=600)
    out.seek(0)
    stdout = out.read()
    summary = [line for line in stdout.splitlines() if "generated" in line]
    print(f"schemathesis ({'token' if server.token else 'no token'}):", *summary)
    assert returncode == 0, stdout[-8000:]
    assert summary and " passed" in summary[-1]
    assert half_written(server.db_url) == []


def test_openapi_states_the_auth_as_configured(server):
    doc = server.get("/openapi.json").json()
    post = doc["paths"]["/sweeps"]["post"]
    get = doc["paths"]["/sweeps"]["get"]
    if server.token:
        assert post["security"] == [{"HTTPBearer": []}] and "401" in post["responses"]
        assert "security" not in get  # reads stay open unless FLOWSWEEP_READ_TOKEN_REQUIRED
        assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    else:
        assert "security" not in post and "401" not in post["responses"]
        assert "securitySchemes" not in doc.get("components", {})
    assert {"404", "409"} <= set(doc["paths"]["/sweeps/{sweep_id}"]["delete"]["responses"])
    assert {"413", "415", "422"} <= set(post["responses"])
    order_by = next(p for p in doc["paths"]["/results"]["get"]["parameters"] if p["name"] == "order_by")
    items = order_by["schema"]["anyOf"][0]["items"]
    assert "-speedup" in items["enum"] and "nonsense" not in items["enum"]


def _digits(n: int) -> str:
    return "1" + "0" * (n - 1)


# (id, raw JSON body, the field the 422 must name)
RAW_CASES = [
    ("eta-400-digit-int", '{"model":"asymmetric","m":2,"n":3,"eta":%s,"steps":10}' % _digits(400), "eta"),
    ("m-400-digit-int", '{"model":"asymmetric","m":%s,"n":3,"eta":0.01,"steps":10}' % _digits(400), "m"),
    ("steps-5000-digit-int", '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":%s}' % _digits(5000), "steps"),
    (
        "steps-negative-5000-digits",
        '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":-%s}' % _digits(5000),
        "steps",
    ),
    (
        "init-scale-400-digit-int",
        '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":10,"axes":{"init_scale":[%s]}}' % _digits(400),
        "axes.init_scale",
    ),
    (
        "seed-400-digit-int",
        '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":10,"axes":{"seed":[%s]}}' % _digits(400),
        "axes.seed",
    ),
    (
        "linspace-400-digit-bound",
        '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":10,"axes":{"lambda0":{"linspace":[0,%s,3]}}}'
        % _digits(400),
        "axes.lambda0",
    ),
    (
        "range-5000-digit-stop",
        '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":10,"axes":{"seed":{"range":[0,%s]}}}' % _digits(5000),
        "axes.seed",
    ),
    ("eta-float-overflow", '{"model":"asymmetric","m":2,"n":3,"eta":1e400,"steps":10}', "eta"),
    ("name-nul", json.dumps({**OK, "name": "a\u0000b"}), "name"),
    ("name-newline", json.dumps({**OK, "name": "a\nb"}), "name"),
    ("name-escape", json.dumps({**OK, "name": "\u001b[31mred"}), "name"),
    ("name-lone-surrogate", '{"model":"asymmetric","m":2,"n":3,"eta":0.01,"steps":10,"name":"\\ud800"}', "name"),
    ("model-nul", json.dumps({**OK, "model": "asym\u0000metric"}), "model"),
    ("flow-eta-1e300", json.dumps({**OK, "integrator": "flow", "eta": 1e300}), "eta"),
    ("invalid-utf8", b'{"model":"asymmetric","name":"\xff\xfe","m":2,"n":3,"eta":0.01,"steps":10}', "body"),
]


def test_inputs_the_generator_misses_are_422s_naming_the_field(server):
    failures = []
    for name, raw, field in RAW_CASES:
        body = raw if isinstance(raw, bytes) else raw.encode()
        r = server.post("/sweeps", content=body, headers={"Content-Type": "application/json"})
        fields = [d.get("field") for d in r.json()["detail"]] if r.status_code == 422 else []
        if r.status_code != 422 or field not in fields:
            failures.append(f"{name}: {r.status_code} {r.text[:300]}")
    assert not failures, "\n".join(failures)
    assert half_written(server.db_url) == []


def test_other_content_types_are_415(server):
    body = json.dumps(OK).encode()
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        None,
    ):
        headers = {"Content-Type": ctype} if ctype else {}
        r = server.post("/sweeps", content=body, headers=headers)
        assert r.status_code == 415, (ctype, r.text)
        assert "application/json" in r.json()["detail"]
    r = server.post("/sweeps", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201, r.text


def test_oversized_bodies_are_413_declared_or_streamed(server):
    big = json.dumps({**OK, "name": "x" * 150, "axes": {"seed": list(range(60_000))}}).encode()
    assert len(big) > 200_000
    r = server.post("/sweeps", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "200000" in r.json()["detail"]

    def chunks():  # no Content-Length: chunked transfer, counted as it arrives
        for i in range(0, len(big), 16_384):
            yield big[i : i + 16_384]

    r = server.post("/sweeps", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert half_written(server.db_url) == []


def test_cross_site_writes_and_foreign_hosts_are_refused(server):
    before = server.get("/sweeps").json()["count"]
    r = server.post("/sweeps", json=OK, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "origin" in r.json()["detail"]
    r = server.post("/sweeps", json=OK, headers={"Origin": str(server.base_url).rstrip("/")})
    assert r.status_code == 201, r.text
    r = server.get("/sweeps", headers={"Host": "attacker.example"})
    assert r.status_code == 400 and "host" in r.json()["detail"]
    r = server.get("/sweeps", headers={"Host": f"localhost:{server.base_url.port}"})
    assert r.status_code == 200
    assert server.get("/sweeps").json()["count"] == before + 1


def test_labels_and_filters_with_control_characters_are_422s(server):
    """PATCH's name, tags and notes, and the name/tag filters: no control character reaches the database
    (Postgres refuses NUL in text: a 500 before)."""
    sid = server.post("/sweeps", json=OK).json()["id"]
    for body, field in (
        ({"name": "a\u0000b"}, "name"),
        ({"notes": "x\u0000"}, "notes"),
        ({"tags": ["a\u0000"]}, "tags"),
        ({"tags": [" padded"]}, "tags"),
        ({"tags": ["a,b"]}, "tags"),
        ({"tags": [""]}, "tags"),
    ):
        r = server.patch(f"/sweeps/{sid}", json=body)
        assert r.status_code == 422 and field in [d["field"] for d in r.json()["detail"]], (body, r.text)
    r = server.patch(f"/sweeps/{sid}", json={"notes": "two\nlines\tand a tab", "tags": ["a b", "a b"]})
    assert r.status_code == 200 and r.json()["tags"] == ["a b"], r.text
    assert server.patch(f"/sweeps/{sid}", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    for path, field in (
        ("/sweeps?tag=a%00", "tag"),
        ("/sweeps?name=%00", "name"),
        ("/results?tag=%01", "tag"),
        ("/summary?tag=x%00", "tag"),
        ("/sweeps/events?name=%00", "name"),
    ):
        r = server.get(path)
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == field, (path, r.text)
    r = server.get("/sweeps?name=a&name=b")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "name", r.text
    r = server.patch("/sweeps/events", json={})
    assert r.status_code == 405 and r.headers["allow"] == "GET", r.text
