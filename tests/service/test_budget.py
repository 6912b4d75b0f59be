"""The largest sweeps validation accepts, one per axis of cost (SPEC §4 Limits): each is either a
422 that names the budget it exceeds (FLOWSWEEP_MAX_*), or accepted, and then one of its points runs
within the per-point memory budget the README states (measured with tracemalloc; points whose
estimated CPU time is more than a few seconds are held to core.cost's estimate instead, which
tests/core/test_cost.py checks against measured peaks). Real app and SQLite database, no runner."""

from __future__ import annotations

import tracemalloc

import pytest
from fastapi.testclient import TestClient

from flowsweep.core import PointConfig, run_points
from flowsweep.core.compiled import compiled_expected
from flowsweep.core.cost import point_cost
from flowsweep.service.app import create_app
from flowsweep.service.expand import expand
from flowsweep.service.schemas import SweepSpec
from flowsweep.service.settings import Settings

S = {"model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 10}
# (axis of cost, the body at its largest accepted field values, the budget a 422 must name or None)
LARGEST = [
    ("dimensions", {**S, "m": 2000, "n": 2000}, "FLOWSWEEP_MAX_POINT_BYTES"),
    ("width", {**S, "axes": {"k": [20000]}}, None),
    ("steps", {**S, "steps": 10_000_000, "record_every": 100}, None),
    ("records", {**S, "steps": 100_000, "record_every": 1}, None),
    ("records-dimensions", {**S, "m": 200, "n": 400, "steps": 100_000, "record_every": 1}, "FLOWSWEEP_MAX_POINT_BYTES"),
    ("sigmoid-samples", {**S, "model": "sigmoid", "m": 10, "n": 10, "n_samples": 100_000}, None),
    (
        "sigmoid-samples-width",
        {**S, "model": "sigmoid", "m": 2000, "n": 2000, "n_samples": 100_000},
        "FLOWSWEEP_MAX_POINT_BYTES",
    ),
    ("flow-horizon", {**S, "integrator": "flow", "eta": 1e300}, "FLOWSWEEP_MAX_POINT_CPU_SECONDS"),
    (
        "flow-steps",
        {**S, "integrator": "flow", "eta": 0.9, "steps": 10_000_000, "record_every": 1000},
        # compiled, t = 9e6 is ~1e7 DOP853 steps of a 2x3 point (priced ~20 s); scipy's loop: hours
        None if compiled_expected() else "FLOWSWEEP_MAX_POINT_CPU_SECONDS",
    ),
    ("points", {**S, "axes": {"seed": {"range": [0, 100_000]}}}, None),
    (
        "points-times-steps",
        {**S, "steps": 10_000_000, "record_every": 100_000, "axes": {"seed": {"range": [0, 100_000]}}},
        "FLOWSWEEP_MAX_SWEEP_CPU_SECONDS",
    ),
    (
        "lambda0-fit",
        {**S, "m": 20, "n": 40, "steps": 100_000, "record_every": 1, "fit_lambda0": True},
        "FLOWSWEEP_MAX_POINT_BYTES",
    ),
    (
        "deep-depth-width",
        {**S, "model": "deep", "depth": 50, "steps": 100_000, "record_every": 1000, "axes": {"k": [20000]}},
        "FLOWSWEEP_MAX_POINT_BYTES",
    ),
    (
        "deep-depth-steps",
        {**S, "model": "deep", "steps": 10_000_000, "record_every": 100_000, "axes": {"k": [500], "depth": [50]}},
        "FLOWSWEEP_MAX_POINT_CPU_SECONDS",
    ),
    (
        "eta-axis-times-steps",
        {
            **S,
            "eta": None,
            "steps": 10_000_000,
            "record_every": 100_000,
            "axes": {"eta": {"linspace": [0.001, 0.01, 100]}, "seed": {"range": [0, 1000]}},
        },
        "FLOWSWEEP_MAX_SWEEP_CPU_SECONDS",
    ),
    (
        "the-issue's-example",
        {
            **S,
            "m": 2000,
            "n": 2000,
            "steps": 10_000_000,
            "record_every": 100,
            "axes": {"k": [20000], "seed": {"range": [0, 100_000]}},
        },
        "FLOWSWEEP_MAX_POINT_BYTES",
    ),
]
RUN_IF_ESTIMATED_SECONDS_BELOW = 5.0


@pytest.fixture(scope="module")
def client(new_database_url):
    settings = Settings(database_url=new_database_url("sqlite"))
    with TestClient(create_app(settings, start_runner=False, start_ray=False)) as c:
        c.settings = settings
        yield c


@pytest.mark.parametrize("axis, body, budget", LARGEST, ids=[c[0] for c in LARGEST])
def test_largest_accepted_sweep_is_refused_by_its_budget_or_fits_it(client, axis, body, budget):
    r = client.post("/sweeps", json=body)
    if budget is not None:
        assert r.status_code == 422, r.text
        (d,) = r.json()["detail"]
        assert budget in d["msg"] and "budget" in d["msg"], d
        assert d["field"].split(".")[0] in SweepSpec.model_fields, d  # a request field, named
        return
    assert r.status_code == 201, r.text
    s = client.settings
    spec = SweepSpec.model_validate(body)
    config = (
        expand(spec)[0]
        if spec.size <= 10
        else PointConfig(
            **{**expand(SweepSpec.model_validate({**body, "axes": {**body.get("axes", {}), "seed": [0]}}))[0].to_dict()}
        )
    )
    est = point_cost(config)
    assert est.peak_bytes <= s.max_point_bytes
    if est.cpu_seconds < RUN_IF_ESTIMATED_SECONDS_BELOW:
        run_points([config])  # a first call compiles numba's kernels: one-time, not the point's memory
        tracemalloc.start()
        try:
            (res,) = run_points([config])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert res.status in ("done", "diverged"), res.error
        assert peak <= s.max_point_bytes and peak <= est.peak_bytes, (peak, est)


def test_a_flow_sweep_with_eta_as_an_axis_is_costed_at_each_eta(client):
    """flow's cost grows with the horizon eta·steps: with eta given as axes.eta (no eta field) every
    value is costed (it was a 500: the estimate read the absent field)."""
    body = {k: v for k, v in S.items() if k != "eta"} | {"integrator": "flow"}
    r = client.post("/sweeps", json={**body, "axes": {"eta": [0.01, 0.02]}})
    assert r.status_code == 201, r.text
    r = client.post("/sweeps", json={**body, "axes": {"eta": [0.01, 1e300]}})
    assert r.status_code == 422, r.text
    (d,) = r.json()["detail"]
    assert "FLOWSWEEP_MAX_POINT_CPU_SECONDS" in d["msg"] and d["field"].split(".")[0] == "eta", d
