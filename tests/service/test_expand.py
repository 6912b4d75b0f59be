"""A sweep's grid (service.expand): the points and their identities as POST /sweeps stores them.

The grid's identities come from a JSON template filled in per point (no json.dumps per point): they
must be exactly point_identity's strings (identities already stored decide which points are reused),
checked against it on specs of every model and on random axis values. The points themselves are
checked against an independent reference of the expansion (itertools.product in AXIS_NAMES order).
"""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsweep.core.types import PARAM_FIELDS, PointConfig
from flowsweep.service.expand import core_version, expand, expand_grid, point_identity
from flowsweep.service.schemas import AXIS_NAMES, SweepSpec

SPECS = [
    {"model": "asymmetric", "m": 5, "n": 10, "eta": 1e-3, "steps": 10, "axes": {"seed": {"range": [0, 50]}}},
    {
        "model": "asymmetric",
        "m": 3,
        "n": 4,
        "eta": 0.01,
        "steps": 20,
        "record_every": 5,
        "y_singular_values": [3.0, 1.5, 0.25],
        "data_seed": 7,
        "fit_lambda0": True,
        "axes": {
            "init_scale": {"logspace": [-2, 0, 3]},
            "k": [4, 9],
            "lambda0": [-0.5, 0.0, 1e-300],
            "data_scale": [0.1, 1],
            "seed": [0, 2**31 - 1],
        },
    },
    {"model": "symmetric", "m": 4, "steps": 5, "integrator": "flow", "axes": {"eta": [0.01, 0.3]}},
    {"model": "sigmoid", "m": 3, "n": 3, "eta": 0.1, "steps": 5, "n_samples": 50, "axes": {"k": [3, 6]}},
    {"model": "deep", "m": 2, "n": 4, "eta": 0.02, "steps": 5, "axes": {"depth": [1, 2, 3], "seed": [1, 5]}},
    {"model": "deep", "m": 2, "n": 4, "eta": 0.02, "steps": 5, "depth": 2},  # one point
]


def reference_points(spec: SweepSpec) -> list[PointConfig]:
    """The expansion as first written: every axis in AXIS_NAMES order, seed fastest."""
    out = []
    for values in itertools.product(*[spec.axis(a) for a in AXIS_NAMES]):
        p = dict(zip(AXIS_NAMES, values))
        out.append(
            PointConfig(
                model=spec.model,
                m=int(spec.m),
                n=int(spec.n),
                steps=int(spec.steps),
                y_singular_values=None if spec.y_singular_values is None else tuple(spec.y_singular_values),
                init=spec.init,
                integrator=spec.integrator,
                record_every=int(spec.record_every),
                tol=float(spec.tol),
                data_seed=spec.data_seed,
                fit_lambda0=bool(spec.fit_lambda0),
                n_samples=int(spec.n_samples or 1000),
                init_scale=float(p["init_scale"]),
                k=int(p["k"]),
                lambda0=float(p["lambda0"]),
                eta=float(p["eta"]),
                data_scale=float(p["data_scale"]),
                depth=None if p["depth"] is None else int(p["depth"]),
                seed=int(p["seed"]),
            )
        )
    return out


def reference_identity(c: PointConfig) -> str:
    """sha256 of the canonical JSON, written out independently of service.expand."""
    d = {name: getattr(c, name) for name in PARAM_FIELDS}
    if d["depth"] is None:
        del d["depth"]
    for name in ("eta", "init_scale", "lambda0", "tol", "data_scale"):
        d[name] = float(d[name])
    if d["y_singular_values"] is not None:
        d["y_singular_values"] = [float(v) for v in d["y_singular_values"]]
    d["core_version"] = core_version()
    return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.parametrize("body", SPECS, ids=lambda b: f"{b['model']}-{len(b.get('axes', {}))}axes")
def test_grid_points_and_identities_are_the_reference_ones(body):
    spec = SweepSpec.model_validate(body)
    ref = reference_points(spec)
    grid = expand_grid(spec)
    assert len(grid) == len(ref)
    assert list(grid.configs()) == ref
    assert expand(spec) == ref
    # field types too: an int where a float belongs would change nothing here but an identity
    assert [[type(getattr(c, f)) for f in PARAM_FIELDS] for c in expand(spec)] == [
        [type(getattr(c, f)) for f in PARAM_FIELDS] for c in ref
    ]
    assert grid.identities() == [reference_identity(c) for c in ref] == [point_identity(c) for c in ref]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
positive = st.floats(min_value=5e-324, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    scales=st.lists(positive, min_size=1, max_size=3, unique=True),
    lambdas=st.lists(finite, min_size=1, max_size=3, unique=True),
    etas=st.lists(st.floats(min_value=1e-12, max_value=0.999), min_size=1, max_size=2, unique=True),
    seeds=st.lists(st.integers(0, 2**31 - 1), min_size=1, max_size=3, unique=True),
    ks=st.lists(st.integers(1, 40), min_size=1, max_size=2, unique=True),
)
def test_template_identities_equal_point_identity_on_random_axes(scales, lambdas, etas, seeds, ks):
    body = {
        "model": "asymmetric",
        "m": 2,
        "n": 3,
        "steps": 3,
        "axes": {"init_scale": scales, "lambda0": lambdas, "eta": etas, "seed": seeds, "k": ks},
    }
    spec = SweepSpec.model_validate(body, context={"max_point_cpu_seconds": 1e30, "max_sweep_cpu_seconds": 1e30})
    grid = expand_grid(spec)
    assert grid.identities() == [point_identity(c) for c in grid.configs()]


def test_identities_change_with_core_version():
    spec = SweepSpec.model_validate(SPECS[1])
    grid = expand_grid(spec)
    assert grid.identities("other") == [point_identity(c, "other") for c in grid.configs()]
    assert set(grid.identities("other")).isdisjoint(grid.identities())
