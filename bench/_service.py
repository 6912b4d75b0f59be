"""The benchmarks' embedded flowsweep service: a subprocess on a fresh SQLite file and a free port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """`cmd` (the service) with FLOWSWEEP_DATABASE_URL on `workdir / db_name`, Ray's files under
    `workdir`, its output in `workdir / "server.log"`; stopped (SIGTERM, then SIGKILL of its process
    group) by `stop()`."""

    def __init__(self, workdir: Path, cpus: int | None, db_name: str, cmd: list[str]):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("FLOWSWEEP_") and k != "RAY_ADDRESS"}
        (workdir / "ray").mkdir(exist_ok=True)
        env.update({"FLOWSWEEP_DATABASE_URL": f"sqlite:///{workdir / db_name}",
                    "FLOWSWEEP_HOST": "127.0.0.1", "FLOWSWEEP_PORT": str(self.port),
                    "RAY_TMPDIR": str(workdir / "ray"), "PYTHONUNBUFFERED": "1"})
        if cpus:
            env["FLOWSWEEP_NUM_CPUS"] = str(cpus)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
