"""Facts the service reads from one definition: the counts' keys are the point states, the `points`
columns are PointConfig's fields with their types, the status columns hold the enums' values."""

from __future__ import annotations

from dataclasses import fields

from sqlalchemy import JSON, Boolean, Double, Integer, String

from flowsweep.core.types import FLOAT_PARAMS, INT_PARAMS, PARAM_FIELDS, PointConfig
from flowsweep.service import models, queries, schemas
from flowsweep.status import COUNT_KEYS, FINISHED_POINT_STATUSES, PointStatus, SweepStatus

BOOKKEEPING = {"id", "sweep_id", "identity", "status", "cached", "source_point_id", "attempts", "owner"}


def test_counts_schema_is_the_point_states_and_cached():
    assert tuple(schemas.Counts.model_fields) == COUNT_KEYS


def test_points_columns_are_pointconfig_fields_with_their_types():
    assert tuple(f.name for f in fields(PointConfig)) == PARAM_FIELDS
    columns = models.Point.__table__.c
    assert set(columns.keys()) == set(PARAM_FIELDS) | BOOKKEEPING
    assert set(INT_PARAMS) | set(FLOAT_PARAMS) < set(PARAM_FIELDS)
    for name in PARAM_FIELDS:
        kind = type(columns[name].type)
        if name in INT_PARAMS:
            assert kind is Integer, name
        elif name in FLOAT_PARAMS:
            assert kind is Double, name
        elif name in models.LIST_PARAM_FIELDS:
            assert kind is JSON, name
        else:
            assert kind in (String, Boolean), name
    # every scalar parameter is a result filter (a list parameter is part of the identity only)
    assert set(PARAM_FIELDS) - set(models.LIST_PARAM_FIELDS) <= set(queries._PARAM_TYPES)


def test_the_version_is_pyprojects(tmp_path):
    """pyproject.toml holds the version; the package, the CLI and the API's OpenAPI document read it."""
    import tomllib
    from pathlib import Path

    from flowsweep import __version__
    from flowsweep.service.app import create_app
    from flowsweep.service.settings import Settings

    version = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == version
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'v.db'}"), start_runner=False, start_ray=False)
    assert app.version == version


def test_status_columns_default_to_the_enums():
    assert models.Sweep.__table__.c.status.default.arg == SweepStatus.QUEUED
    assert models.Point.__table__.c.status.default.arg == PointStatus.PENDING
    assert set(queries.RESULT_STATUSES) == set(FINISHED_POINT_STATUSES)
