"""The client side (HTTP client, CLI client commands, plots) and core work with the server's dependencies
absent: a fresh interpreter where importing any of them fails, as on a client-only install
(`pip install flowsweep` without the `server` extra). Importing the plots module leaves the
matplotlib backend alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from servers import dead_url

from flowsweep.service.cli import SERVER_DEPENDENCIES

# Modules of the server side: none may be imported by a client command.
SERVER_MODULES = (
    "flowsweep.service.app",
    "flowsweep.service.server",
    "flowsweep.service.db",
    "flowsweep.service.models",
    "flowsweep.service.runner",
    "flowsweep.service.store",
    "flowsweep.service.queries",
    "flowsweep.service.schemas",
    "flowsweep.service.settings",
    "flowsweep.service.deps",
    "flowsweep.service.expand",
    "flowsweep.service.routes",
    "flowsweep.workers",
    "flowsweep.migrations",
)

PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from importlib.abc import MetaPathFinder

    BLOCKED = set(json.loads(sys.argv[1]))
    attempts = []

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())

    import matplotlib
    matplotlib.use("svg")                      # the user's backend, e.g. a notebook's

    import numpy as np, pandas as pd
    from flowsweep import Client, __version__
    from flowsweep.service import cli, client, plots

    # plots: a figure from plain data, saved as PNG through its own canvas
    rows = pd.DataFrame({"point_id": [1, 2], "init_scale": [0.1, 0.1], "seed": [0, 1], "eta": [0.01, 0.01],
                         "status": ["done", "done"]})
    curves = [{"t": np.array([0.0, 0.5, 1.0]), "error": np.array([1.0, 0.5, 0.2]),
               "error_linear": np.array([1.0, 0.6, 0.37])} for _ in range(2)]
    fig = plots.error_figure([plots.Group(label="init_scale=0.1", rows=rows, curves=curves)])
    png = plots.save_png(fig, sys.argv[2])

    # a client command: one line and exit 1 when nothing listens
    dead = sys.argv[4]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc_list = cli.main(["--url", dead, "list"])

    # the science runs in a notebook of a client-only install
    from flowsweep.core import PointConfig, run_points
    (point,) = run_points([PointConfig(model="asymmetric", m=2, n=3, k=4, eta=0.01, steps=50, record_every=10)])
    client_attempts = list(attempts)
    loaded = sorted(m for m in sys.modules if m.startswith(tuple(json.loads(sys.argv[3]))))

    # the server commands say what to install
    serve_err = io.StringIO()
    with contextlib.redirect_stderr(serve_err):
        rc_serve = cli.main(["serve"])
        rc_db = cli.main(["db", "upgrade"])
    print(json.dumps({"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules,
                      "png": open(png, "rb").read(8).hex(), "rc_list": rc_list, "list_err": err.getvalue(),
                      "attempts": client_attempts, "server_modules": loaded, "rc_serve": rc_serve,
                      "rc_db": rc_db, "serve_err": serve_err.getvalue(), "client": Client.__name__,
                      "core_status": point.status, "core_error": point.metrics["final_error"]}))
""")


def test_client_side_runs_without_the_server_and_its_dependencies(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            json.dumps(sorted(SERVER_DEPENDENCIES)),
            str(tmp_path / "fig.png"),
            json.dumps(SERVER_MODULES),
            dead_url(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["attempts"] == [], f"the client side tried to import {got['attempts']}"
    assert got["server_modules"] == [], f"the client side imported {got['server_modules']}"
    assert got["backend"] == "svg" and got["pyplot"] is False  # the user's backend is untouched
    assert got["png"] == "89504e470d0a1a0a"  # a PNG all the same
    assert got["rc_list"] == 1 and "cannot reach the flowsweep server" in got["list_err"]
    assert got["core_status"] == "done" and 0 < got["core_error"] < 1
    assert got["rc_serve"] == 1 and got["rc_db"] == 1
    lines = got["serve_err"].strip().splitlines()
    assert len(lines) == 2 and all("pip install 'flowsweep[server]'" in line for line in lines), lines
    assert "Traceback" not in got["serve_err"]


def test_the_blocked_dependencies_are_the_server_extra():
    """SERVER_DEPENDENCIES (what `serve` reports missing) covers every requirement of the extra."""
    import tomllib
    from importlib.metadata import packages_distributions
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    dists = {
        r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().replace("-", "_").lower()
        for r in pyproject["project"]["optional-dependencies"]["server"]
    }
    # the import names of those distributions (swagger-ui-py installs `swagger_ui`)
    names = {
        module
        for module, ds in packages_distributions().items()
        if any(d.replace("-", "_").lower() in dists for d in ds)
        and not module.startswith("_")
        and module not in ("test", "tests")
    }  # stray test folders
    assert dists <= {d.replace("-", "_").lower() for ds in packages_distributions().values() for d in ds}
    assert names and names <= SERVER_DEPENDENCIES, names - SERVER_DEPENDENCIES
