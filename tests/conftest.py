"""Shared fixtures: fresh databases (SQLite file and Postgres) and real uvicorn servers.

- `new_database_url(kind)` (session-scoped factory): a fresh, empty database of kind "sqlite" or
  "postgres"; Postgres ones are `CREATE DATABASE flowsweep_test_<random>` on the machine's server
  and dropped `WITH (FORCE)` at the end of the session.
- `database_url` (function-scoped, parametrised sqlite/postgres): one fresh empty database per test.
- `migrated_database_url`: the same, upgraded to the head revision.
- `live_server(database_url, env=None, wait=True)` (session-scoped factory): servers.start_server
  (`python -m flowsweep.service.server`: real uvicorn, real Ray with FLOWSWEEP_NUM_CPUS=2) on a free
  port, waits for /healthz and returns a LiveServer (`.url`, `.stop()`, `.kill()`, `.log()`); every
  server still running is stopped at the end of the session. Use module-scoped fixtures on top of
  it to share one server per database between tests (a server with Ray costs ~6 s to start).
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
import sqlalchemy as sa
from servers import LiveServer, start_server

PG_ADMIN_URL = os.environ.get("FLOWSWEEP_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
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
