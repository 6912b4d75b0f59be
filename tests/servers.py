"""The one helper for a free port and the one for a flowsweep server in a subprocess, shared by the
tests (`from servers import ...`: pytest puts tests/ on sys.path for tests/conftest.py) and the
benchmarks (`from tests.servers import ...`, see bench/_service.py).

- `free_port()`: a TCP port of 127.0.0.1 that nothing listens on (`dead_url()` is its URL).
- `start_server(database_url, log_dir, ...)`: starts the service (by default `python -m
  flowsweep.service.server`: real uvicorn, real Ray with FLOWSWEEP_NUM_CPUS=2) on a free port with a
  private RAY_TMPDIR, in its own process group, waits for /healthz and returns a `LiveServer`
  (`.url`, `.stop()`, `.kill()`, `.log()`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_url() -> str:
    """A URL where nothing answers (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


def flowsweep_cmd() -> list[str]:
    """The installed console script (pyproject [project.scripts]); `python -m` if not installed."""
    script = Path(sys.executable).with_name("flowsweep")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flowsweep.service.cli"]


@dataclass
class LiveServer:
    url: str
    proc: subprocess.Popen
    log_path: Path
    ray_tmpdir: str
    env: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 120.0) -> dict:
        """Until GET /healthz answers 200 (returns its body); fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=2.0)
                if r.status_code == 200:
                    return r.json()
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


def start_server(
    database_url: str,
    log_dir: Path,
    env: dict | None = None,
    wait: bool = True,
    port: int | None = None,
    ray_tmpdir: str | None = None,
    *,
    cmd: list[str] | None = None,
    cwd: Path = REPO,
    num_cpus: int | None = 2,
    timeout: float = 120.0,
    log_name: str | None = None,
    strip: tuple[str, ...] = ("FLOWSWEEP_", "RAY_ADDRESS"),
) -> LiveServer:
    """The service on `database_url` in a subprocess (`cmd`, default `python -m flowsweep.service.server`).

    Its environment is this one without the variables that start with `strip` (FLOWSWEEP_*,
    RAY_ADDRESS), plus the database, host, port, FLOWSWEEP_NUM_CPUS (`num_cpus`; None: all CPUs),
    RAY_TMPDIR, and `env` last."""
    chosen = port is None
    port = port or free_port()
    ray_tmpdir = ray_tmpdir or tempfile.mkdtemp(prefix="fsray", dir="/tmp")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(strip)}
    full_env.update(
        {
            "FLOWSWEEP_DATABASE_URL": database_url,
            "FLOWSWEEP_HOST": "127.0.0.1",
            "FLOWSWEEP_PORT": str(port),
            "RAY_TMPDIR": ray_tmpdir,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if num_cpus:
        full_env["FLOWSWEEP_NUM_CPUS"] = str(num_cpus)
    full_env.update(env or {})
    log_path = log_dir / (log_name or f"server-{port}.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd or [sys.executable, "-m", "flowsweep.service.server"],
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(
        url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path, ray_tmpdir=ray_tmpdir, env=full_env
    )
    if wait:
        try:
            server.wait_ready(timeout)
        except Exception:
            server.stop()
            # the free port was taken meanwhile (Ray starts, and takes ports, before uvicorn binds):
            # once more on another port
            if chosen and "address already in use" in server.log():
                return start_server(
                    database_url,
                    log_dir,
                    env,
                    wait,
                    None,
                    None,
                    cmd=cmd,
                    cwd=cwd,
                    num_cpus=num_cpus,
                    timeout=timeout,
                    log_name=None,
                    strip=strip,
                )
            raise
    return server
