"""The benchmarks' embedded flowsweep service: a subprocess on a fresh SQLite file and a free port.

The port and the subprocess come from the tests' helper (tests/servers.py): one way to start a
server, for the tests and the benchmarks alike."""

from __future__ import annotations

from pathlib import Path

from tests.servers import free_port, start_server  # noqa: F401 (bench/query_latency.py uses both)


class ServiceProcess:
    """`cmd` (the service) with FLOWSWEEP_DATABASE_URL on `workdir / db_name`, Ray's files under
    `workdir`, its output in `workdir / "server.log"`, `cpus` CPUs (None: all); not waited for
    (subclasses wait their own way); stopped (SIGTERM, then SIGKILL of its process group) by `stop()`."""

    def __init__(self, workdir: Path, cpus: int | None, db_name: str, cmd: list[str]):
        self.workdir = workdir
        (workdir / "ray").mkdir(exist_ok=True)
        self.server = start_server(
            f"sqlite:///{workdir / db_name}",
            workdir,
            cmd=cmd,
            num_cpus=cpus,
            ray_tmpdir=str(workdir / "ray"),
            wait=False,
            log_name="server.log",
        )
        self.proc = self.server.proc
        self.port = self.server.port
        self.url = self.server.url
        self.log_path = self.server.log_path

    def log(self) -> str:
        return self.server.log()

    def stop(self) -> None:
        self.server.stop()
