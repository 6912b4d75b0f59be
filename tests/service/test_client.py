"""The Python client against a real server (uvicorn + Ray + SQLite): submit, wait with progress,
results and summaries as DataFrames, curves and states as arrays, friendly errors. Values are checked
against references computed here from the point's initial state (the one-layer gd baseline has the
closed form X_i − Y = (1 − η)^i (X_0 − Y), eq. (4) discretised)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from servers import dead_url

from flowsweep.service.client import APIError, Client, NotFound, ServerUnavailable, finished_count

SPEC = {
    "name": "client-test",
    "model": "asymmetric",
    "init": "gaussian",
    "integrator": "gd",
    "m": 3,
    "n": 4,
    "eta": 0.01,
    "steps": 300,
    "record_every": 10,
    "fit_lambda0": True,
    "axes": {"k": [6], "init_scale": [0.1, 1.0], "seed": {"range": [0, 3]}},
}
RESULT_FIELDS = [
    "point_id",
    "sweep_id",
    "status",
    "model",
    "init",
    "integrator",
    "m",
    "n",
    "k",
    "init_scale",
    "lambda0",
    "seed",
    "eta",
    "steps",
    "depth",
    "data_scale",
    "q0_norm",
    "final_error",
    "final_error_linear",
    "time_to_tol",
    "time_to_tol_linear",
    "speedup",
    "rate_fit",
    "rate_pred",
    "rate_lin",
    "conservation_drift",
    "lambda0_fit",
    "lambda0_fit_error",
    "lambda0_fit_pos",
    "lambda0_fit_pos_error",
    "lambda0_fit_neg",
    "lambda0_fit_neg_error",
    "regularized_error",
    "closed_form_error",
    "eta_stability_limit",
    "diverged_at",
    "wall_seconds",
    "worker",
]


@pytest.fixture(scope="module")
def server(new_database_url, live_server):
    srv = live_server(new_database_url("sqlite"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def finished(server):
    """One sweep run to the end, with every progress state seen by wait()."""
    seen = []
    with Client(server.url) as c:
        created = c.submit(SPEC)
        final = c.wait(created["id"], poll=0.3, timeout=120, progress=seen.append)
    return created, final, seen


def test_submit_and_wait_report_progress(finished):
    created, final, seen = finished
    assert set(created) >= {"id", "status", "n_points", "n_cached"}
    assert created["n_points"] == 6 and created["n_cached"] == 0
    assert final["status"] == "done" and final["counts"]["done"] == 6
    assert seen and seen[-1] is final
    done = [finished_count(s) for s in seen]
    assert done == sorted(done) and done[-1] == 6  # progress only moves forward
    assert final["progress"] == pytest.approx(1.0)


def test_results_are_a_dataframe_with_the_spec_columns_and_filters(server, finished):
    sid = finished[0]["id"]
    with Client(server.url) as c:
        df = c.results(sid)
        assert list(df.columns) == RESULT_FIELDS
        assert len(df) == 6 and set(df["status"]) == {"done"} and set(df["sweep_id"]) == {sid}
        small = c.results(sid, init_scale=0.1)
        assert len(small) == 3 and set(small["init_scale"]) == {0.1}
        ranged = c.results(sid, {"seed_min": 1, "seed_max": 2})
        assert sorted(ranged["seed"]) == [1, 1, 2, 2]
        ordered = c.results(sid, order_by="-final_error")
        assert list(ordered["final_error"]) == sorted(df["final_error"], reverse=True)
        # pages of 2 give the same rows as one page; limit/offset are honoured
        paged = pd.DataFrame(c.result_rows(sid, page_size=2))
        assert sorted(paged["point_id"]) == sorted(df["point_id"])
        assert len(c.results(sid, limit=4)) == 4
        across = c.results(None, {"sweep_id": sid})
        assert sorted(across["point_id"]) == sorted(df["point_id"])


def test_summary_matches_the_mean_over_seeds(server, finished):
    sid = finished[0]["id"]
    with Client(server.url) as c:
        summ = c.summary(sid, by=["init_scale"])
        df = c.results(sid)
    assert summ.attrs["by"] == ["init_scale"]
    assert list(summ["init_scale"]) == [0.1, 1.0] and list(summ["count"]) == [3, 3]
    expect = df.groupby("init_scale")["final_error"].agg(["mean", "std", "min", "max"])
    np.testing.assert_allclose(summ["final_error_mean"], expect["mean"], rtol=1e-12)
    np.testing.assert_allclose(summ["final_error_std"], expect["std"], rtol=1e-9)
    np.testing.assert_allclose(summ["final_error_max"], expect["max"], rtol=1e-12)
    # no point diverged: diverged_at statistics are null in every group and come back as float NaN, not None
    assert summ["diverged_at_mean"].dtype == np.float64 and summ["diverged_at_mean"].isna().all()


def test_curves_and_state_are_arrays_consistent_with_each_other(server, finished):
    sid = finished[0]["id"]
    eta, steps, every = SPEC["eta"], SPEC["steps"], SPEC["record_every"]
    with Client(server.url) as c:
        row = c.results(sid, init_scale=1.0, seed=0).iloc[0]
        curves = c.curves(int(row.point_id))
        state = c.state(int(row.point_id))
    i = np.arange(0, steps + 1, every)
    np.testing.assert_allclose(curves["t"], eta * i, rtol=1e-12)
    T = len(i)
    assert curves["error"].shape == curves["error_linear"].shape == (T,)
    assert curves["singular_values"].shape == (T, 3)
    assert curves["error_regularized_fit"].shape == (T,)  # fit_lambda0: true
    Y, U0, V0 = state["Y"], state["U0"], state["V0"]
    assert Y.shape == (3, 4) and U0.shape == (3, 6) and V0.shape == (4, 6)
    X0 = U0 @ V0.T
    e0 = np.linalg.norm(Y - X0) / np.linalg.norm(Y)
    assert curves["error"][0] == pytest.approx(e0, rel=1e-9)
    assert curves["error_linear"][0] == pytest.approx(e0, rel=1e-9)
    np.testing.assert_allclose(curves["error_linear"], e0 * (1 - eta) ** i, rtol=1e-8)
    np.testing.assert_allclose(curves["singular_values"][0], np.linalg.svd(X0, compute_uv=False), rtol=1e-8)
    assert row.final_error == pytest.approx(curves["error"][-1], rel=1e-9)


def test_unknown_ids_and_bad_specs_are_clear_errors(server):
    with Client(server.url) as c:
        with pytest.raises(NotFound, match="sweep 987654 not found"):
            c.sweep(987654)
        with pytest.raises(NotFound, match="point 987654"):
            c.curves(987654)
        with pytest.raises(APIError) as err:
            c.submit({**SPEC, "tol": 2.0})
        assert err.value.status_code == 422 and "tol" in str(err.value)


def test_server_down_is_server_unavailable():
    url = dead_url()
    with Client(url) as c, pytest.raises(ServerUnavailable, match=f"cannot reach the flowsweep server at {url}"):
        c.sweeps()


def test_url_and_token_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FLOWSWEEP_URL", "http://example.invalid:1234/")
    monkeypatch.setenv("FLOWSWEEP_API_TOKEN", "t0k")
    with Client() as c:
        assert c.url == "http://example.invalid:1234"
        assert c._http.headers["Authorization"] == "Bearer t0k"
    monkeypatch.delenv("FLOWSWEEP_API_TOKEN")
    with Client("http://x:1") as c:
        assert "Authorization" not in c._http.headers and c.url == "http://x:1"
