"""A table of malformed POST /sweeps bodies against a real uvicorn server on SQLite and Postgres:
each is a 4xx whose detail names the field, and the database is unchanged (rows counted before/after)."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from flowsweep.service import db

OK = {"model": "asymmetric", "m": 5, "n": 10, "eta": 0.001, "steps": 400}


def body(**changes):
    out = {**OK, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


DROP = object()

# (id, request body: a dict to send as JSON or raw bytes, the field path the detail must name)
CASES = [
    ("empty-object", {}, "model"),
    ("not-json", b'{"model": "asymmetric", ', "body"),
    ("json-array", b"[1, 2]", "body"),
    ("json-string", b'"sweep"', "body"),
    ("empty-body", b"", "body"),
    ("deeply-nested", b"[" * 100_000 + b"]" * 100_000, "body"),
    ("name-number", body(name=5), "name"),
    ("unknown-field", body(colour="red"), "colour"),
    ("unknown-axis", body(axes={"width": [1]}), "axes.width"),
    ("bad-model", body(model="linear"), "model"),
    ("bad-init", body(init="orthogonal"), "init"),
    ("bad-integrator", body(integrator="rk4"), "integrator"),
    ("m-string", body(m="5"), "m"),
    ("m-zero", body(m=0), "m"),
    ("m-float", body(m=2.5), "m"),
    ("m-huge", body(m=10**6, n=10**6), "m"),
    ("n-missing-asymmetric", body(n=DROP), "n"),
    ("m-greater-than-n", body(m=10, n=5), "n"),
    ("symmetric-n-differs", body(model="symmetric", m=5, n=6), "n"),
    ("eta-nan", b'{"model": "asymmetric", "m": 5, "n": 10, "eta": NaN, "steps": 400}', "eta"),
    ("eta-infinity", b'{"model": "asymmetric", "m": 5, "n": 10, "eta": Infinity, "steps": 400}', "eta"),
    ("eta-negative", body(eta=-0.1), "eta"),
    ("eta-zero", body(eta=0), "eta"),
    ("eta-gd-unstable", body(eta=1.5), "eta"),
    ("eta-string", body(eta="fast"), "eta"),
    ("steps-missing", body(steps=DROP), "steps"),
    ("steps-zero", body(steps=0), "steps"),
    ("steps-absurd", body(steps=10**12), "steps"),
    ("tol-above-one", body(tol=1.5), "tol"),
    ("tol-zero", body(tol=0), "tol"),
    ("record-every-zero", body(record_every=0), "record_every"),
    ("record-every-over-steps", body(record_every=401), "record_every"),
    ("record-every-too-many-records", body(steps=10_000_000, record_every=1), "record_every"),
    ("fit-lambda0-string", body(fit_lambda0="yes"), "fit_lambda0"),
    ("recompute-int", body(recompute=1), "recompute"),
    ("data-seed-negative", body(data_seed=-1), "data_seed"),
    ("n-samples-not-sigmoid", body(n_samples=100), "n_samples"),
    ("name-empty", body(name=""), "name"),
    ("axes-null", body(axes=None), "axes"),
    ("axes-list", body(axes=[1, 2]), "axes"),
    ("init-scale-negative", body(axes={"init_scale": [0.1, -0.1]}), "axes.init_scale"),
    ("init-scale-zero-in-linspace", body(axes={"init_scale": {"linspace": [0, 1, 3]}}), "axes.init_scale"),
    ("init-scale-empty", body(axes={"init_scale": []}), "axes.init_scale"),
    ("init-scale-bare-number", body(axes={"init_scale": 0.1}), "axes.init_scale"),
    ("init-scale-text", body(axes={"init_scale": ["a"]}), "axes.init_scale"),
    (
        "init-scale-nan",
        b'{"model": "asymmetric", "m": 5, "n": 10, "eta": 0.001, "steps": 400, "axes": {"init_scale": [0.1, NaN]}}',
        "axes.init_scale",
    ),
    ("linspace-two-args", body(axes={"init_scale": {"linspace": [0.1, 1]}}), "axes.init_scale"),
    ("logspace-overflow", body(axes={"init_scale": {"logspace": [-2, 400, 3]}}), "axes.init_scale"),
    ("unknown-axis-form", body(axes={"init_scale": {"geomspace": [1, 2, 3]}}), "axes.init_scale"),
    ("k-duplicate", body(axes={"k": [20, 20]}), "axes.k"),
    ("k-float", body(axes={"k": [2.5]}), "axes.k"),
    ("k-zero", body(axes={"k": [0]}), "axes.k"),
    ("k-bool", body(axes={"k": [True]}), "axes.k"),
    ("k-nested-list", body(axes={"k": [[10]]}), "axes.k"),
    ("k-linspace-fractional", body(axes={"k": {"linspace": [10, 11, 3]}}), "axes.k"),
    ("seed-empty-range", body(axes={"seed": {"range": [5, 5]}}), "axes.seed"),
    ("seed-range-float", body(axes={"seed": {"range": [0, 2.5]}}), "axes.seed"),
    ("seed-negative", body(axes={"seed": [-1, 0]}), "axes.seed"),
    ("seed-huge-range", body(axes={"seed": {"range": [0, 10**12]}}), "axes.seed"),
    ("sweep-too-large", body(axes={"init_scale": {"logspace": [-3, 0, 1000]}, "seed": {"range": [0, 1000]}}), "axes"),
    ("lambda0-on-symmetric", body(model="symmetric", n=5, axes={"lambda0": [0.0, 0.5]}), "axes.lambda0"),
    ("spectral-k-below-m", body(init="spectral", axes={"k": [3, 20]}), "axes.k"),
    ("spectral-on-sigmoid", body(model="sigmoid", n=5, init="spectral", axes={"k": [10]}), "init"),
    ("balanced-on-symmetric", body(model="symmetric", n=5, init="balanced"), "init"),
    ("deep-depth-missing", body(model="deep"), "depth"),
    ("deep-depth-zero", body(model="deep", depth=0), "depth"),
    ("deep-depth-field-and-axis", body(model="deep", depth=2, axes={"depth": [3]}), "depth"),
    ("deep-depth-axis-too-deep", body(model="deep", axes={"depth": [2, 51]}), "axes.depth"),
    ("deep-depth-axis-float", body(model="deep", axes={"depth": [2.5]}), "axes.depth"),
    ("deep-m-greater-than-n", body(model="deep", depth=3, m=10, n=5), "n"),
    ("deep-spectral-k-below-m", body(model="deep", depth=3, init="spectral", axes={"k": [3]}), "axes.k"),
    ("depth-on-asymmetric", body(depth=3), "depth"),
    ("depth-axis-on-asymmetric", body(axes={"depth": [2, 3]}), "axes.depth"),
    ("eta-field-and-axis", body(axes={"eta": [0.001, 0.01]}), "eta"),
    ("eta-missing", body(eta=DROP), "eta"),
    ("eta-axis-negative", body(eta=DROP, axes={"eta": [0.001, -0.01]}), "axes.eta"),
    ("eta-axis-gd-unstable", body(eta=DROP, axes={"eta": [0.001, 1.5]}), "axes.eta"),
    ("data-scale-zero", body(data_scale=0), "data_scale"),
    ("data-scale-axis-negative", body(axes={"data_scale": [1.0, -2.0]}), "axes.data_scale"),
    ("data-scale-field-and-axis", body(data_scale=2.0, axes={"data_scale": [1.0]}), "data_scale"),
    ("data-scale-on-sigmoid", body(model="sigmoid", n=5, axes={"data_scale": [2.0]}), "axes.data_scale"),
    ("y-singular-values-length", body(y_singular_values=[1.0, 2.0]), "y_singular_values"),
    ("y-singular-values-negative", body(y_singular_values=[1.0, 2.0, 3.0, 4.0, -1.0]), "y_singular_values"),
    ("y-singular-values-text", body(y_singular_values=["a", 1, 1, 1, 1]), "y_singular_values.0"),
    (
        "y-singular-values-symmetric",
        body(model="symmetric", n=5, y_singular_values=[1, 1, 1, 1, 1]),
        "y_singular_values",
    ),
]


def count_rows(url: str) -> dict[str, int]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("sweeps", "points", "results", "curves")
            }
    finally:
        engine.dispose()


def test_the_table_is_large_enough():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_malformed_sweeps_are_rejected_and_write_nothing(shared_server, kind):
    server, url = shared_server(kind)
    before = count_rows(url)
    failures = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name, payload, field in CASES:
            if isinstance(payload, bytes):
                r = client.post("/sweeps", content=payload, headers={"content-type": "application/json"})
            else:
                r = client.post("/sweeps", json=payload)
            if not 400 <= r.status_code < 500:
                failures.append(f"{name}: HTTP {r.status_code} {r.text[:200]}")
                continue
            detail = r.json()["detail"]
            fields = [d["field"] for d in detail] if isinstance(detail, list) else []
            if field not in fields:
                failures.append(f"{name}: expected field {field!r}, got {json.dumps(detail)[:300]}")
            elif any(not d["msg"] for d in detail):
                failures.append(f"{name}: empty message")
        # The bounds are stated in the message.
        r = client.post("/sweeps", json=body(steps=10**12))
        assert "10000000" in r.text and "FLOWSWEEP_MAX_STEPS" in r.text
        r = client.post("/sweeps", json=body(axes={"seed": {"range": [0, 200_000]}}))
        assert "100000" in r.text and "FLOWSWEEP_MAX_POINTS" in r.text
        r = client.post("/sweeps", json=body(axes={"init_scale": [-1.0]}))
        assert r.json()["detail"][0]["msg"] == "must be > 0 (got -1.0)"
    assert not failures, "\n".join(failures)
    assert count_rows(url) == before
