"""Shared fixtures: fresh databases (SQLite file and Postgres) and real uvicorn servers.

- `new_database_url(kind)` (session-scoped factory): a fresh, empty database of kind "sqlite" or
  "postgres"; Postgres ones are `CREATE DATABASE flowsweep_test_<random>` on the machine's server
  and dropped `WITH (FORCE)` at the end of the session.
- `database_url` (function-scoped, parametrised sqlite/postgres): one fresh empty database per test.
- `migrated_database_url`: the same, upgraded to the head revision.
- `live_server(database_url, env=None, wait=True)` (session-scoped factory): starts
  `python -m service.server` (real uvicorn, real Ray with FLOWSWEEP_NUM_CPUS=2) on a free port, waits
  for /healthz and returns a LiveServer (`.url`, `.stop()`, `.kill()`, `.log()`); every server still
  running is stopped at the end of the session. Use module-scoped fixtures on top of it to share one
  server per database between tests (a server with Ray costs ~6 s to start).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("FLOWSWEEP_TEST_PG_ADMIN_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DB_KINDS = ("sqlite", "postgres")


@pytest.fixture(scope="session")
def new_database_url(tmp_path_factory):
    created: list[str] = []
    admin = None

    def make(kind: str = "sqlite") -> str:
        nonlocal admin
        if kind == "sqlite":
            path = tmp_path_factory.mktemp("db") / "flowsweep.db"
            return f"sqlite:///{path}"
        if kind == "postgres":
            if admin is None:
                admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            name = f"flowsweep_test_{uuid.uuid4().hex[:12]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            created.append(name)
            return sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        raise ValueError(kind)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=DB_KINDS)
def database_url(request, new_database_url) -> str:
    return new_database_url(request.param)


@pytest.fixture
def migrated_database_url(database_url) -> str:
    from flowsweep.service.db import upgrade

    upgrade(database_url)
    return database_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen
    log_path: Path
    ray_tmpdir: str
    env: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.url

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log()[-5000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (clean lifespan shutdown), then SIGKILL of the server's own process group."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap_group()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and every process of its group (its local Ray), as a crash would."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)

    def _reap_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of this server's own group only
        except (ProcessLookupError, PermissionError):
            pass


def start_server(database_url: str, log_dir: Path, env: dict | None = None, wait: bool = True,
                 port: int | None = None, ray_tmpdir: str | None = None) -> LiveServer:
    port = port or free_port()
    ray_tmpdir = ray_tmpdir or tempfile.mkdtemp(prefix="fsray", dir="/tmp")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSWEEP_", "RAY_ADDRESS"))}
    full_env.update({
        "FLOWSWEEP_DATABASE_URL": database_url,
        "FLOWSWEEP_HOST": "127.0.0.1",
        "FLOWSWEEP_PORT": str(port),
        "FLOWSWEEP_NUM_CPUS": "2",
        "RAY_TMPDIR": ray_tmpdir,
        "PYTHONUNBUFFERED": "1",
    })
    full_env.update(env or {})
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "flowsweep.service.server"], cwd=REPO, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LiveServer(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path, ray_tmpdir=ray_tmpdir,
                        env=full_env)
    if wait:
        try:
            server.wait_ready()
        except Exception:
            server.stop()
            raise
    return server


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    servers: list[LiveServer] = []
    log_dir = tmp_path_factory.mktemp("server-logs")

    def start(database_url: str, env: dict | None = None, wait: bool = True, **kw) -> LiveServer:
        server = start_server(database_url, log_dir, env=env, wait=wait, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for tmpdir in {s.ray_tmpdir for s in servers}:
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_server(live_server, new_database_url):
    """shared_server(kind) -> (LiveServer, database_url): one real server (uvicorn + Ray with 2 CPUs)
    per database kind for the whole session, on a fresh database; tests that share it must not
    depend on the database being otherwise empty."""
    servers: dict[str, tuple[LiveServer, str]] = {}

    def get(kind: str) -> tuple[LiveServer, str]:
        if kind not in servers or not servers[kind][0].alive():
            url = new_database_url(kind)
            servers[kind] = (live_server(url), url)
        return servers[kind]

    return get
