"""The deep model through a real uvicorn server with real Ray (SQLite and Postgres): a sweep over the
`depth` axis, the `depth` column of result rows (filters, ranges, order, summaries, CSV), the state
endpoint's layers, rows equal to core's, and depth null on the other models' rows."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pandas as pd
import pytest
from test_api import wait_done

from flowsweep.core import PointConfig, run_points
from flowsweep.service.expand import point_identity

SPEC = {
    "name": "deep-e2e",
    "model": "deep",
    "init": "balanced",
    "integrator": "gd",
    "m": 2,
    "n": 4,
    "eta": 0.02,
    "steps": 300,
    "record_every": 10,
    "axes": {"depth": [1, 2, 3], "init_scale": [0.3], "k": [6], "seed": {"range": [0, 2]}},
}
OTHER = {"name": "asym-e2e", "model": "asymmetric", "m": 2, "n": 4, "eta": 0.02, "steps": 50}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def run(request, shared_server):
    server, _ = shared_server(request.param)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        r = client.post("/sweeps", json=SPEC)
        assert r.status_code == 201, r.text
        deep = r.json()
        assert deep["n_points"] == 6
        other = client.post("/sweeps", json=OTHER)
        assert other.status_code == 201, other.text
        assert wait_done(client, deep["id"])["status"] == "done"
        assert wait_done(client, other.json()["id"])["status"] == "done"
        yield client, deep["id"], other.json()["id"]


def test_rows_carry_depth_and_equal_core(run):
    client, sid, _ = run
    rows = client.get(f"/sweeps/{sid}/results", params={"order_by": "depth,seed"}).json()["data"]
    assert [(r["depth"], r["seed"]) for r in rows] == [(L, s) for L in (1, 2, 3) for s in (0, 1)]
    assert all(r["status"] == "done" and r["model"] == "deep" for r in rows)
    cfgs = [
        PointConfig(
            model="deep",
            init="balanced",
            m=2,
            n=4,
            k=6,
            eta=0.02,
            steps=300,
            record_every=10,
            init_scale=0.3,
            depth=r["depth"],
            seed=r["seed"],
        )
        for r in rows
    ]
    for r, ref in zip(rows, run_points(cfgs)):
        for name in ("final_error", "q0_norm", "time_to_tol", "conservation_drift", "closed_form_error"):
            a, b = r[name], ref.metrics[name]
            assert (a is None) == (b is None), name
            if a is not None:
                assert a == pytest.approx(b, rel=1e-9, abs=1e-15), name
    # depth 1 is the one-layer model: it has no conserved pair
    assert all(r["q0_norm"] is None for r in rows if r["depth"] == 1)
    assert all(r["q0_norm"] is not None for r in rows if r["depth"] >= 2)


def test_depth_filters_ranges_summary_and_csv(run):
    client, sid, other_id = run
    three = client.get(f"/sweeps/{sid}/results", params={"depth": 3}).json()
    assert three["count"] == 2 and {r["depth"] for r in three["data"]} == {3}
    ranged = client.get(f"/sweeps/{sid}/results", params={"depth_min": 2, "order_by": "-depth"}).json()
    assert ranged["count"] == 4 and ranged["data"][0]["depth"] == 3
    both = client.get("/results", params={"sweep_id": f"{sid},{other_id}", "depth": "1,2"}).json()
    assert {r["depth"] for r in both["data"]} == {1, 2}  # asymmetric rows (depth null) excluded
    summary = client.get(f"/sweeps/{sid}/summary", params={"by": "depth"}).json()["data"]
    assert [g["depth"] for g in summary] == [1, 2, 3] and all(g["count"] == 2 for g in summary)
    bad = client.get(f"/sweeps/{sid}/results", params={"depth": "deep"})
    assert bad.status_code == 422 and "depth" in bad.text
    csv = client.get(f"/sweeps/{sid}/results", params={"format": "csv"})
    df = pd.read_csv(io.StringIO(csv.text))
    assert "depth" in df.columns and sorted(df["depth"].tolist()) == [1, 1, 2, 2, 3, 3]


def test_other_models_have_null_depth_and_unchanged_identity(run):
    client, _, other_id = run
    rows = client.get(f"/sweeps/{other_id}/results").json()["data"]
    assert rows and all(r["depth"] is None for r in rows)
    # a non-deep point's identity does not include the depth column (points stored before it stay valid)
    c = PointConfig(model="asymmetric", m=2, n=4, k=8, eta=0.02, steps=50)
    import hashlib
    import json

    from flowsweep import core

    d = {
        f: getattr(c, f)
        for f in (
            "model",
            "m",
            "n",
            "k",
            "eta",
            "steps",
            "init",
            "integrator",
            "init_scale",
            "lambda0",
            "seed",
            "record_every",
            "tol",
            "data_seed",
            "fit_lambda0",
            "n_samples",
            "y_singular_values",
            "data_scale",
        )
    }
    d.update(
        eta=float(d["eta"]),
        init_scale=float(d["init_scale"]),
        lambda0=float(d["lambda0"]),
        data_scale=float(d["data_scale"]),
        tol=float(d["tol"]),
        core_version=str(core.CORE_VERSION),
    )
    legacy = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert point_identity(c) == legacy
    assert point_identity(PointConfig(model="deep", m=2, n=4, k=8, eta=0.02, steps=50, depth=2)) != legacy


def test_state_returns_every_layer(run):
    client, sid, _ = run
    row = client.get(f"/sweeps/{sid}/results", params={"depth": 3, "limit": 1}).json()["data"][0]
    st = client.get(f"/points/{row['point_id']}/state").json()
    W = [np.array(st[f"W{j}"]) for j in (1, 2, 3)]
    assert [w.shape for w in W] == [(6, 4), (6, 6), (2, 6)]
    np.testing.assert_array_equal(np.array(st["U0"]), W[2])
    for j in range(2):  # a balanced start
        C = W[j + 1].T @ W[j + 1] - W[j] @ W[j].T
        assert np.abs(C).max() <= 1e-12
    curves = client.get(f"/points/{row['point_id']}/curves").json()
    assert len(curves["t"]) == 31 and curves["error"][-1] < curves["error"][0]


@pytest.mark.parametrize("kind", ["depth", "plateau"])
def test_cli_plots_against_depth(run, capsys, tmp_path, kind):
    from matplotlib.image import imread

    from flowsweep.service import cli

    client, sid, _ = run
    out = tmp_path / f"{kind}.png"
    rc = cli.main(["--url", str(client.base_url), "plot", str(sid), "--kind", kind, "-o", str(out), "--dpi", "60"])
    assert rc == 0, capsys.readouterr().err
    img = imread(out)
    assert img.shape[0] > 100 and img[..., :3].std() > 0.05
