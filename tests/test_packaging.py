"""The distribution as a user gets it: the wheel holds one import name, `flowsweep`, and installs
without the `server` extra into a fresh virtualenv where the CLI and the client work (and the
server's dependencies are absent)."""

from __future__ import annotations

import email
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from servers import dead_url

REPO = Path(__file__).resolve().parents[1]
# What the Dockerfile copies into the image (its COPY lines): the wheel must build from exactly these.
SOURCES = tuple(
    src
    for line in (REPO / "Dockerfile").read_text().splitlines()
    if line.startswith("COPY ")
    for src in line.split()[1:-1]
)
SERVER_ONLY = ("ray", "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "pydantic", "pydantic_settings")

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a copy of the sources (the work tree stays free of build/ folders)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)])
    (whl,) = (tmp / "dist").glob("flowsweep-*.whl")
    return whl


def test_the_wheel_holds_only_flowsweep(wheel, project):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = f"flowsweep-{project['version']}.dist-info"
        assert {n.split("/", 1)[0] for n in names} == {"flowsweep", dist_info}
        # every folder of the repository is a subpackage, with the Alembic template as package data
        for module in (
            "flowsweep/__init__.py",
            "flowsweep/core/run.py",
            "flowsweep/workers/tasks.py",
            "flowsweep/service/app.py",
            "flowsweep/service/client.py",
            "flowsweep/migrations/env.py",
            "flowsweep/migrations/script.py.mako",
            "flowsweep/migrations/versions/0001_initial.py",
        ):
            assert module in names, module
        meta = email.message_from_bytes(z.read(f"{dist_info}/METADATA"))
    requires = meta.get_all("Requires-Dist")
    base = {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r}
    server = {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in requires if 'extra == "server"' in r}
    assert {"numpy", "scipy", "httpx", "pandas", "matplotlib"} <= base
    assert not base & {"ray", "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "pydantic"}, base
    assert {"ray", "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg", "pydantic-settings"} <= server


def test_a_client_only_install_runs_the_cli_and_the_client(wheel, project, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    # this interpreter's pip installs into the new venv (no ensurepip: seconds saved)
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", str(wheel)])

    version = _run([str(venv / "bin" / "flowsweep"), "--version"], cwd=tmp_path)
    assert version.stdout.strip() == f"flowsweep {project['version']}"

    probe = (
        "import importlib.util, json, flowsweep\n"
        "from flowsweep import Client\n"
        "import flowsweep.service.cli, flowsweep.service.plots\n"
        f"absent = [m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m) is not None]\n"
        "print(json.dumps({'client': Client.__module__, 'version': flowsweep.__version__,\n"
        "                  'file': flowsweep.__file__, 'present': absent}))\n"
    )
    got = json.loads(_run([str(py), "-c", probe], cwd=tmp_path).stdout)
    assert got["client"] == "flowsweep.service.client"
    assert got["version"] == project["version"]
    assert got["file"].startswith(str(venv)), got["file"]  # the installed copy, not the repo
    assert got["present"] == [], f"server dependencies installed without the extra: {got['present']}"

    # a client command talks HTTP only: against a port nothing listens on it fails in one line
    down = subprocess.run(
        [str(venv / "bin" / "flowsweep"), "--url", dead_url(), "list"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert down.returncode == 1
    assert "cannot reach the flowsweep server" in down.stderr and "Traceback" not in down.stderr
    serve = subprocess.run(
        [str(venv / "bin" / "flowsweep"), "serve"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert serve.returncode == 1 and "pip install 'flowsweep[server]'" in serve.stderr, serve.stderr
