"""The `flowsweep` CLI against a real server (uvicorn + Ray + SQLite): submit --wait with its progress
bar, status/list, results export (csv, parquet, json) with filters, summary, cancel, every plot kind,
and one-line errors (exit 1, no traceback) when the server is down or a sweep is unknown."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from servers import dead_url, flowsweep_cmd

from flowsweep.service import cli, plots
from flowsweep.service.client import Client

REPO = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "cli-test",
    "model": "asymmetric",
    "init": "gaussian",
    "integrator": "gd",
    "m": 3,
    "n": 4,
    "eta": 0.01,
    "steps": 1000,
    "record_every": 20,
    "fit_lambda0": True,
    "axes": {"k": [6], "init_scale": [0.1, 1.0], "seed": {"range": [0, 3]}},
}


TOKEN = "cli-test-token"


@pytest.fixture(scope="module")
def server(new_database_url, live_server):
    """Writes need the token (SPEC §4 Auth): the CLI must send $FLOWSWEEP_API_TOKEN."""
    srv = live_server(new_database_url("sqlite"), env={"FLOWSWEEP_API_TOKEN": TOKEN})
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def token_env(monkeypatch):
    monkeypatch.setenv("FLOWSWEEP_API_TOKEN", TOKEN)


@pytest.fixture(scope="module")
def submitted(server, tmp_path_factory):
    """`flowsweep submit FILE --wait` as a user runs it: a separate process, URL from the env."""
    spec_file = tmp_path_factory.mktemp("cli") / "sweep.json"
    spec_file.write_text(json.dumps(SPEC))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWSWEEP_")}
    env["FLOWSWEEP_URL"] = server.url
    env["FLOWSWEEP_API_TOKEN"] = TOKEN
    proc = subprocess.run(
        [*flowsweep_cmd(), "submit", str(spec_file), "--wait", "--poll", "0.3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    m = re.search(r"submitted sweep (\d+): 6 points", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return int(m.group(1)), proc


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_submit_wait_shows_a_progress_bar_and_ends_done(submitted):
    sid, proc = submitted
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"sweep {sid} done: done 6"
    # tqdm's bar on stderr: done/total, a rate and an ETA field
    assert re.search(r"sweep \d+: .*6/6 \[[0-9:]+<[0-9:?]+, +[0-9.?]+ ?(pt/s|s/pt)", proc.stderr), proc.stderr


def test_status_and_list(server, submitted, capsys):
    sid, _ = submitted
    rc, out, _ = run(capsys, "--url", server.url, "status", str(sid))
    assert rc == 0
    assert f"sweep {sid} 'cli-test': done" in out and "6/6 finished (100.0%)" in out
    rc, out, _ = run(capsys, "status", str(sid), "--url", server.url, "--json")  # --url after the command too
    assert rc == 0 and json.loads(out)["counts"]["done"] == 6
    rc, out, _ = run(capsys, "--url", server.url, "list")
    assert rc == 0
    header, *rows = out.strip().splitlines()
    assert header.split()[:4] == ["id", "name", "status", "n_points"]
    assert any(r.split()[:4] == [str(sid), "cli-test", "done", "6"] for r in rows)
    rc, out, _ = run(capsys, "--url", server.url, "list", "--status", "failed")
    assert rc == 0 and out.strip() == "no sweeps"


def test_results_export_csv_parquet_json_with_filters(server, submitted, capsys, tmp_path):
    sid, _ = submitted
    with Client(server.url) as c:
        ref = c.results(sid).set_index("point_id").sort_index()
    csv = tmp_path / "r.csv"
    rc, _, err = run(
        capsys,
        "--url",
        server.url,
        "results",
        str(sid),
        "--format",
        "csv",
        "-o",
        str(csv),
        "init_scale=0.1",
        "--filter",
        "seed_max=1",
    )
    assert rc == 0 and "wrote 2 rows" in err
    df = pd.read_csv(csv)
    assert list(df.columns) == list(ref.reset_index().columns)  # header row, SPEC field order
    assert sorted(df["seed"]) == [0, 1] and set(df["init_scale"]) == {0.1}
    np.testing.assert_allclose(
        df.set_index("point_id").sort_index()["final_error"], ref.loc[sorted(df["point_id"]), "final_error"], rtol=1e-12
    )

    pq = tmp_path / "r.parquet"
    assert run(capsys, "--url", server.url, "results", str(sid), "-o", str(pq))[0] == 0  # format from suffix
    df = pd.read_parquet(pq)
    assert len(df) == 6 and sorted(df["point_id"]) == list(ref.index)

    js = tmp_path / "r.json"
    assert (
        run(
            capsys,
            "--url",
            server.url,
            "results",
            str(sid),
            "--format",
            "json",
            "-o",
            str(js),
            "--order-by",
            "-final_error",
        )[0]
        == 0
    )
    rows = json.loads(js.read_text())
    assert [r["final_error"] for r in rows] == sorted(ref["final_error"], reverse=True)

    rc, out, _ = run(capsys, "--url", server.url, "results", str(sid), "k=6", "--limit", "3")
    assert rc == 0 and len(out.strip().splitlines()) == 1 + 3  # csv on stdout

    rc, _, err = run(capsys, "--url", server.url, "results", str(sid), "nonsense_field=1")
    assert rc == 1 and "nonsense_field" in err and "Traceback" not in err
    rc, _, err = run(capsys, "--url", server.url, "results", str(sid), "k")
    assert rc == 1 and "key=value" in err


def test_summary_by_groups(server, submitted, capsys):
    sid, _ = submitted
    rc, out, _ = run(capsys, "--url", server.url, "summary", str(sid), "--by", "init_scale", "--format", "csv")
    assert rc == 0
    from io import StringIO

    summ = pd.read_csv(StringIO(out))
    assert list(summ["init_scale"]) == [0.1, 1.0] and list(summ["count"]) == [3, 3]
    with Client(server.url) as c:
        ref = c.results(sid).groupby("init_scale")["speedup"].mean()
    np.testing.assert_allclose(summ["speedup_mean"], ref.values, rtol=1e-9)
    rc, out, _ = run(capsys, "--url", server.url, "summary", str(sid), "--by", "init_scale,k")
    assert rc == 0
    header = out.splitlines()[0].split()
    assert header[:3] == ["init_scale", "k", "count"] and "final_error_mean" in header


@pytest.mark.parametrize("kind", plots.KINDS)
def test_plot_writes_a_png_of_the_figure(server, submitted, capsys, tmp_path, kind):
    sid, _ = submitted
    out = tmp_path / f"{kind}.png"
    rc, stdout, err = run(capsys, "--url", server.url, "plot", str(sid), "--kind", kind, "-o", str(out), "--dpi", "60")
    if kind in ("depth", "plateau"):  # an asymmetric sweep: the deep model's kinds say why not
        assert rc != 0 and "depth" in err and not out.exists()
        return
    assert rc == 0, err
    assert stdout.strip() == f"wrote {out}"
    with Client(server.url) as c:
        fig = plots.sweep_figure(c, sid, kind)
    img = imread(out)
    w, h = fig.get_size_inches() * 60
    assert img.shape[:2] == (round(h), round(w))
    assert img[..., :3].std() > 0.05


def test_plot_error_has_one_panel_per_init_scale_with_seed_means(server, submitted):
    sid, _ = submitted
    with Client(server.url) as c:
        fig = plots.sweep_figure(c, sid, "error")
        df = c.results(sid)
        curves = {s: [c.curves(p) for p in df[df.init_scale == s].sort_values("seed").point_id] for s in (0.1, 1.0)}
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title().splitlines()[0] for a in axes] == ["(a) init_scale=0.1", "(b) init_scale=1"]
    for ax, s in zip(axes, (0.1, 1.0)):
        two, one = ax.get_lines()
        assert two.get_linestyle() == "-" and one.get_linestyle() == "--"
        assert two.get_label() == "two-layer (mean of 3)" and one.get_label() == "one-layer (mean of 3)"
        np.testing.assert_allclose(two.get_ydata(), np.mean([cv["error"] for cv in curves[s]], axis=0))
        np.testing.assert_allclose(two.get_xdata(), np.arange(0, SPEC["steps"] + 1, SPEC["record_every"]))


def test_cancel(server, capsys, tmp_path):
    with Client(server.url) as c:
        big = c.submit(
            {
                **SPEC,
                "name": "to-cancel",
                "steps": 2_000_000,
                "record_every": 20_000,
                "fit_lambda0": False,
                # k = 1 < m: no point reaches machine precision and stops early: hours of work
                "axes": {"k": [1], "seed": {"range": [0, 400]}},
            }
        )
        rc, out, err = run(capsys, "--url", server.url, "cancel", str(big["id"]))
        assert rc == 0, err
        assert f"sweep {big['id']}: cancel requested" in out
        final = c.wait(big["id"], poll=0.3, timeout=90)
    assert final["status"] == "cancelled"
    assert final["counts"]["done"] < 400
    # cancelling a finished sweep is a clear one-line refusal
    rc, _, err = run(capsys, "--url", server.url, "cancel", str(big["id"]))
    assert rc in (0, 1) and "Traceback" not in err


def test_unknown_sweep_is_one_line(server, capsys):
    for argv in (
        ["status", "987654"],
        ["cancel", "987654"],
        ["plot", "987654"],
        ["summary", "987654"],
        ["results", "987654"],
    ):
        rc, _, err = run(capsys, "--url", server.url, *argv)
        assert rc == 1, argv
        assert err.strip() == f"flowsweep: error: sweep 987654 not found on {server.url}", (argv, err)


def test_invalid_sweep_file_names_the_field(server, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SPEC, "tol": 2.0}))
    rc, _, err = run(capsys, "--url", server.url, "submit", str(bad))
    assert rc == 1 and "422" in err and "tol" in err and len(err.strip().splitlines()) == 1
    bad.write_text("{not json")
    rc, _, err = run(capsys, "--url", server.url, "submit", str(bad))
    assert rc == 1 and "not valid JSON" in err


def test_server_down_is_one_line_without_traceback(capsys):
    url = dead_url()
    for argv in (["list"], ["status", "1"], ["submit", str(REPO / "examples" / "fig1.json")], ["plot", "1"]):
        rc, out, err = run(capsys, "--url", url, *argv)
        assert rc == 1 and out == ""
        assert err.strip().splitlines() == [
            f"flowsweep: error: cannot reach the flowsweep server at {url} (ConnectError); "
            "start it with `flowsweep serve` or pass --url / set FLOWSWEEP_URL"
        ]
    # the same through the installed script, URL from the environment
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWSWEEP_")}, "FLOWSWEEP_URL": url}
    proc = subprocess.run([*flowsweep_cmd(), "status", "3"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"flowsweep: error: cannot reach the flowsweep server at {url}")


def test_writes_without_the_token_are_refused_in_one_line(server, submitted, capsys, monkeypatch):
    monkeypatch.delenv("FLOWSWEEP_API_TOKEN")
    rc, out, err = run(capsys, "--url", server.url, "submit", str(REPO / "examples" / "fig1.json"))
    assert rc == 1 and out == ""
    assert err.startswith("flowsweep: error: unauthorized") and "FLOWSWEEP_API_TOKEN" in err
    assert len(err.strip().splitlines()) == 1
    rc, _, err = run(capsys, "--url", server.url, "cancel", str(submitted[0]))
    assert rc == 1 and "unauthorized" in err
    monkeypatch.setenv("FLOWSWEEP_API_TOKEN", "wrong")
    rc, _, err = run(capsys, "--url", server.url, "submit", str(REPO / "examples" / "fig1.json"))
    assert rc == 1 and "unauthorized" in err
    # reads stay open without a token (FLOWSWEEP_READ_TOKEN_REQUIRED unset)
    monkeypatch.delenv("FLOWSWEEP_API_TOKEN")
    assert run(capsys, "--url", server.url, "status", str(submitted[0]))[0] == 0


def test_db_upgrade(capsys, tmp_path):
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    rc, out, err = run(capsys, "db", "upgrade", "--database-url", url)
    assert rc == 0, err
    assert out.strip() == f"database {url} is at the latest schema"
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"sweeps", "points", "results", "curves", "alembic_version"} <= tables
    assert run(capsys, "db", "upgrade", "--database-url", url)[0] == 0  # idempotent
    # an unreachable database: one line, password hidden, exit 1
    bad = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/nope"
    rc, out, err = run(capsys, "db", "upgrade", "--database-url", bad)
    assert rc == 1 and "database upgrade failed" in err and "hunter2" not in err
    assert len(err.strip().splitlines()) == 1


def test_wait_rides_out_a_short_outage_then_gives_up(monkeypatch):
    import time

    monkeypatch.setattr(cli, "RECONNECT_SECONDS", 1.5)
    start = time.monotonic()
    with Client(dead_url()) as c, pytest.raises(cli.ServerUnavailable):
        cli._wait(c, [1], poll=0.1, quiet=True)
    assert time.monotonic() - start >= 1.5  # it kept retrying for the whole window


# ----------------------------------------------------------------------------------- wave 2: wait, open,
# delete, --version, sweeps by name, YAML/TOML files, PDF/SVG figures, one --format spelling


def test_version_prints_the_installed_version(capsys):
    from flowsweep import __version__

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"flowsweep {__version__}"


def test_yaml_and_toml_files_tagged_together_then_wait_by_name(server, capsys, tmp_path):
    yaml_file = tmp_path / "one.yaml"
    yaml_file.write_text(
        f"name: yaml-{tmp_path.name}\nmodel: asymmetric\nm: 2\nn: 3\neta: 0.01\nsteps: 300\n"
        "axes:\n  init_scale: [0.1, 1.0]\n  seed: {range: [0, 2]}\n"
    )
    toml_file = tmp_path / "two.toml"
    toml_file.write_text(
        'tags = ["pair"]\n'
        + "".join(
            f'[[sweeps]]\nname = "toml-{i}-{tmp_path.name}"\nmodel = "asymmetric"\nm = 2\nn = {3 + i}\neta = 0.01\n'
            "steps = 300\naxes = { seed = { range = [0, 2] } }\n\n"
            for i in range(2)
        )
    )
    rc, out, err = run(capsys, "--url", server.url, "submit", str(yaml_file), "--tag", "cli")
    assert rc == 0, err
    rc, out2, err = run(capsys, "--url", server.url, "submit", str(toml_file))
    assert rc == 0, err
    ids = [int(m) for m in re.findall(r"submitted sweep (\d+)", out + out2)]
    with Client(server.url) as c:
        specs = [c.sweep(i) for i in ids]
    assert [s["tags"] for s in specs] == [["cli"], ["pair"], ["pair"]]
    assert specs[0]["spec"]["axes"] == {"init_scale": [0.1, 1.0], "seed": {"range": [0, 2]}}
    # `wait` takes names as well as ids and follows the event stream to the end.
    rc, out, err = run(capsys, "--url", server.url, "wait", f"yaml-{tmp_path.name}", str(ids[1]), str(ids[2]))
    assert rc == 0, err
    assert [line.split()[:3] for line in out.strip().splitlines()] == [["sweep", str(i), "done:"] for i in ids]
    rc, out, _ = run(capsys, "--url", server.url, "status", f"toml-1-{tmp_path.name}", "--format", "json")
    assert rc == 0 and json.loads(out)["id"] == ids[2]
    rc, out, _ = run(capsys, "--url", server.url, "list", "--tag", "pair", "--format", "json")
    assert rc == 0 and [s["id"] for s in json.loads(out)["data"]] == [ids[2], ids[1]]
    rc, out, _ = run(capsys, "--url", server.url, "list", "--name", f"yaml-{tmp_path.name}")
    assert rc == 0 and out.splitlines()[1].split()[:2] == [str(ids[0]), f"yaml-{tmp_path.name}"]
    assert out.splitlines()[1].split()[-1] == "cli"
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [asymmetric\n")
    rc, _, err = run(capsys, "--url", server.url, "submit", str(bad))
    assert rc == 1 and "not valid YAML" in err and "line" in err


def test_open_delete_and_unknown_names(server, submitted, capsys, monkeypatch):
    sid, _ = submitted
    rc, out, _ = run(capsys, "--url", server.url, "open", "cli-test", "--print-only")
    assert rc == 0 and out.strip() == f"{server.url}/#/sweeps/{sid}"
    rc, out, _ = run(capsys, "--url", server.url, "open", "--print-only")
    assert rc == 0 and out.strip() == f"{server.url}/"
    rc, _, err = run(capsys, "--url", server.url, "status", "no-such-sweep")
    assert rc == 1 and "no sweep named 'no-such-sweep'" in err
    with Client(server.url) as c:
        victim = c.submit({**SPEC, "name": "to-delete", "fit_lambda0": False})["id"]
        c.wait(victim, poll=0.3, timeout=120)
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115 (not a terminal: needs --yes)
    rc, _, err = run(capsys, "--url", server.url, "delete", "to-delete")
    assert rc == 1 and "--yes" in err
    rc, out, _ = run(capsys, "--url", server.url, "delete", "to-delete", "--yes")
    assert rc == 0 and out.strip() == f"deleted sweep {victim} 'to-delete'"
    with Client(server.url) as c, pytest.raises(Exception, match="not found"):
        c.sweep(victim)


@pytest.mark.parametrize("suffix,magic", [("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_plot_writes_pdf_and_svg_by_suffix(server, submitted, capsys, tmp_path, suffix, magic):
    sid, _ = submitted
    out = tmp_path / f"fig.{suffix}"
    rc, stdout, err = run(capsys, "--url", server.url, "plot", "cli-test", "-o", str(out))
    assert rc == 0, err
    assert out.read_bytes()[: len(magic)] == magic
    if suffix == "svg":
        assert b"<svg" in out.read_bytes()[:2000] and b"two-layer" in out.read_bytes()
    rc, _, err = run(capsys, "--url", server.url, "plot", str(sid), "-o", str(tmp_path / "fig.jpg"))
    assert rc == 1 and "png, pdf, svg" in err


def test_ctrl_c_hint_names_wait(server, capsys, monkeypatch):
    """A KeyboardInterrupt while following: the hint says how to follow again."""
    with Client(server.url) as c:
        big = c.submit(
            {
                **SPEC,
                "name": "ctrl-c",
                "steps": 2_000_000,
                "record_every": 20_000,
                "fit_lambda0": False,
                # k = 1 < m: no point reaches machine precision and stops early: hours of work
                "axes": {"k": [1], "seed": {"range": [0, 400]}},
            }
        )

        def interrupted(self, sweep_id):  # noqa: ANN001
            raise KeyboardInterrupt
            yield  # unreachable: makes this a generator, as Client.events is

        monkeypatch.setattr(Client, "events", interrupted)
        rc, _, err = run(capsys, "--url", server.url, "wait", str(big["id"]))
        c.cancel(big["id"])
    assert rc == 130 and f"flowsweep wait {big['id']}" in err
