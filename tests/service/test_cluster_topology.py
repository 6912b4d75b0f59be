"""The docker-compose topology without Docker: a Ray head (`ray start --head`), a second node
(`ray start --address`), `flowsweep db upgrade` on a fresh Postgres database, then the service with
RAY_ADDRESS joining that cluster. A small sweep must complete and /healthz must count both nodes.

Every process this test starts carries a private marker in its environment; teardown kills exactly
those (never `ray stop`, which would kill every Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from servers import flowsweep_cmd, free_port, start_server

from flowsweep.service.client import Client

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
MARK = "FLOWSWEEP_TOPOLOGY_TEST_MARK"


def _marked_pids(mark: str) -> list[int]:
    """Processes whose environment holds our marker (Ray daemons inherit the env of `ray start`)."""
    needle = f"{MARK}={mark}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def _kill_marked(mark: str, grace: float = 5.0) -> None:
    pids = _marked_pids(mark)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _marked_pids(mark):
        time.sleep(0.2)
    for pid in _marked_pids(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_cluster():
    """Two Ray nodes of one CPU each, as compose's ray-head and ray-worker."""
    if not Path(RAY).exists():
        pytest.fail(f"ray CLI not found next to {sys.executable}")
    mark = uuid.uuid4().hex
    tmpdir = tempfile.mkdtemp(prefix="fstopo", dir="/tmp")  # short: Ray's unix socket paths are capped
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "FLOWSWEEP_"))}
    env.update({MARK: mark, "RAY_TMPDIR": tmpdir, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    port = free_port()
    address = f"127.0.0.1:{port}"

    def ray(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=timeout)

    try:
        head = ray(
            "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"
        )
        assert head.returncode == 0, head.stdout + head.stderr
        node = ray("start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats")
        assert node.returncode == 0, node.stdout + node.stderr
        yield {"address": address, "env": env, "tmpdir": tmpdir, "mark": mark, "ray": ray}
    finally:
        _kill_marked(mark)
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_compose_topology_on_postgres_without_docker(ray_cluster, new_database_url, tmp_path):
    address, mark = ray_cluster["address"], ray_cluster["mark"]
    # compose's ray-head healthcheck command works against a real head
    status = ray_cluster["ray"]("status", f"--address={address}", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr

    # compose's migrate service: `flowsweep db upgrade` on a fresh Postgres database
    db_url = new_database_url("postgres")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWSWEEP_", "RAY_"))}
    mig = subprocess.run(
        [*flowsweep_cmd(), "db", "upgrade"],
        cwd=REPO,
        env={**base, "FLOWSWEEP_DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert mig.returncode == 0, mig.stdout + mig.stderr

    # compose's api service: `flowsweep serve` with RAY_ADDRESS at the head, no auto-migration,
    # Ray auth off as on the nodes; it carries the marker so teardown can always reap it
    server = start_server(
        db_url,
        tmp_path,
        cmd=[*flowsweep_cmd(), "serve"],
        cwd=tmp_path,
        num_cpus=None,
        ray_tmpdir=ray_cluster["tmpdir"],
        strip=("FLOWSWEEP_", "RAY_"),
        wait=False,
        env={MARK: mark, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "disabled", "FLOWSWEEP_AUTO_MIGRATE": "false"},
    )
    try:
        health = server.wait_ready(timeout=180)
        assert health["ray"] == {"nodes": 2, "cpus": 2}, health  # the driver joined, not started a Ray
        with Client(server.url) as c:
            created = c.submit(
                {
                    "name": "topology",
                    "model": "asymmetric",
                    "m": 3,
                    "n": 4,
                    "eta": 0.01,
                    "steps": 200,
                    "axes": {"k": [6], "init_scale": [0.1, 1.0], "seed": {"range": [0, 4]}},
                }
            )
            assert created["n_points"] == 8
            final = c.wait(created["id"], poll=0.5, timeout=150)
            assert final["status"] == "done", final
            assert final["counts"]["done"] == 8
            df = c.results(created["id"])
            assert len(df) == 8 and set(df["status"]) == {"done"}
            assert df["worker"].notna().all()
            assert df["final_error"].between(0, 10).all()
        assert not (tmp_path / "flowsweep.db").exists()  # Postgres, not the SQLite default
    finally:
        server.stop()
