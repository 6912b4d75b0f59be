"""Alembic migrations on SQLite and Postgres: empty -> head, previous revision -> head, models == schema,
and the server's schema check."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from flowsweep.service import db
from flowsweep.service.models import Base, Point, Result, Sweep

HEAD = "0009"
PREVIOUS = "0002"


def _diff(engine):
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def test_head_is_known():
    assert db.head_revision() == HEAD


def test_upgrade_empty_database(database_url):
    engine = db.make_engine(database_url)
    try:
        assert db.is_empty(engine)
        assert db.current_revision(engine) is None
        with pytest.raises(
            db.SchemaError, match=rf"schema is at <empty>, code needs {HEAD}: run `flowsweep db upgrade`"
        ):
            db.check_schema(engine)
        db.upgrade(database_url)
        assert db.current_revision(engine) == HEAD
        assert db.check_schema(engine) == HEAD
        assert not db.is_empty(engine)
        # The migrated schema is exactly the models' (tables, columns, types, indexes, constraints).
        assert _diff(engine) == []
        db.upgrade(database_url)  # idempotent at head
        assert db.current_revision(engine) == HEAD
    finally:
        engine.dispose()


@pytest.mark.parametrize("start", ["0003", PREVIOUS, "0001"])
def test_upgrade_from_previous_revision_keeps_data(database_url, start):
    db.upgrade(database_url, start)
    engine = db.make_engine(database_url)
    try:
        with pytest.raises(
            db.SchemaError, match=rf"schema is at {start}, code needs {HEAD}: run `flowsweep db upgrade`"
        ):
            db.check_schema(engine)
        factory = db.make_session_factory(engine)
        # rows written as an older release wrote them: only the columns of that schema (the current
        # models' Python defaults would name columns a later revision adds)
        old_points = sa.table(
            "points",
            *[
                sa.column(c)
                for c in (
                    "sweep_id",
                    "identity",
                    "status",
                    "cached",
                    "attempts",
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
                    "record_every",
                    "tol",
                    "data_seed",
                    "fit_lambda0",
                    "n_samples",
                )
            ],
        )
        old_results = sa.table(
            "results", *[sa.column(c) for c in ("point_id", "sweep_id", "status", "final_error", "created_at")]
        )
        old_sweeps = sa.table(
            "sweeps", *[sa.column(c) for c in ("name", "status", "spec", "n_points", "cancel_requested", "created_at")]
        )
        with db.session_scope(factory) as s:
            sweep_id = s.execute(
                sa.insert(old_sweeps)
                .values(
                    name="old",
                    status="done",
                    spec=sa.literal({"model": "asymmetric"}, sa.JSON),
                    n_points=1,
                    cancel_requested=False,
                    created_at=dt.datetime.now(dt.UTC),
                )
                .returning(sa.column("id"))
            ).scalar_one()
            pid = s.execute(
                sa.insert(old_points)
                .values(
                    sweep_id=sweep_id,
                    identity="a" * 64,
                    status="done",
                    cached=False,
                    attempts=1,
                    model="asymmetric",
                    init="gaussian",
                    integrator="gd",
                    m=2,
                    n=3,
                    k=6,
                    init_scale=0.1,
                    lambda0=0.0,
                    seed=0,
                    eta=0.01,
                    steps=10,
                    record_every=1,
                    tol=0.01,
                    data_seed=None,
                    fit_lambda0=False,
                    n_samples=1000,
                )
                .returning(sa.column("id"))
            ).scalar_one()
            s.execute(
                sa.insert(old_results).values(
                    point_id=pid, sweep_id=sweep_id, status="done", final_error=0.25, created_at=dt.datetime.now(dt.UTC)
                )
            )
        db.upgrade(database_url)
        assert db.check_schema(engine) == HEAD
        assert _diff(engine) == []
        with db.session_scope(factory) as s:
            row = s.execute(
                sa.select(Result.final_error, Sweep.name, Sweep.created_at).join(Sweep, Sweep.id == Result.sweep_id)
            ).one()
            assert row.final_error == 0.25 and row.name == "old"
            assert s.execute(sa.select(Point.depth)).scalar_one() is None  # 0004: null for old points
            assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == dt.timedelta(0)
            # 0006: points computed before it had Y unscaled and no spectrum
            assert s.execute(sa.select(Point.data_scale, Point.y_singular_values)).one() == (1.0, None)
        names = {ix["name"] for ix in sa.inspect(engine).get_indexes("points")}
        assert {"ix_points_k_cover", "ix_points_seed_cover"} <= names and "ix_points_k" not in names
        # ... and back down: every revision is a real, reversible step.
        db.downgrade(database_url, PREVIOUS)
        assert db.current_revision(engine) == PREVIOUS
        insp = sa.inspect(engine)
        assert "owner" not in {c["name"] for c in insp.get_columns("points")}
        assert "runner_lease" not in insp.get_table_names()
        db.downgrade(database_url, "0002")
        names = {ix["name"] for ix in sa.inspect(engine).get_indexes("points")}
        assert "ix_points_k_cover" not in names and {"ix_points_k", "ix_points_sweep_id_status"} <= names
        db.downgrade(database_url, "0001")
        names = {ix["name"] for ix in sa.inspect(engine).get_indexes("points")}
        assert "ix_points_sweep_id_status" not in names and "ix_points_k" in names
        with db.session_scope(factory) as s:
            assert s.scalar(sa.select(Result.final_error)) == 0.25
    finally:
        engine.dispose()


def test_one_result_row_per_point(migrated_database_url):
    engine = db.make_engine(migrated_database_url)
    factory = db.make_session_factory(engine)
    try:
        with db.session_scope(factory) as s:
            sweep = Sweep(name="u", status="running", spec={}, n_points=1)
            s.add(sweep)
            s.flush()
            p = Point(
                sweep_id=sweep.id,
                identity="b" * 64,
                model="asymmetric",
                init="gaussian",
                integrator="gd",
                m=2,
                n=3,
                k=6,
                init_scale=0.1,
                lambda0=0.0,
                seed=0,
                eta=0.01,
                steps=10,
                record_every=1,
                tol=0.01,
                fit_lambda0=False,
                n_samples=1000,
            )
            s.add(p)
            s.flush()
            s.add(Result(point_id=p.id, sweep_id=sweep.id, status="done"))
            ids = (sweep.id, p.id)
        with pytest.raises(sa.exc.IntegrityError), db.session_scope(factory) as s:
            s.add(Result(point_id=ids[1], sweep_id=ids[0], status="done"))
        with db.session_scope(factory) as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(Result)) == 1
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------- the server's check


def test_prepare_schema_policy(new_database_url):
    from flowsweep.service.app import prepare_schema
    from flowsweep.service.settings import Settings

    # SQLite at the previous revision: migrated when auto_migrate (the embedded default), else refused.
    url = new_database_url("sqlite")
    db.upgrade(url, PREVIOUS)
    engine = db.make_engine(url)
    with pytest.raises(db.SchemaError, match="flowsweep db upgrade"):
        prepare_schema(engine, Settings(database_url=url, auto_migrate=False))
    assert prepare_schema(engine, Settings(database_url=url)) == HEAD
    engine.dispose()
    # Postgres: an empty database is migrated; one at an older revision is never changed by the server.
    url = new_database_url("postgres")
    engine = db.make_engine(url)
    assert prepare_schema(engine, Settings(database_url=url)) == HEAD
    db.downgrade(url, PREVIOUS)
    with pytest.raises(
        db.SchemaError, match=rf"schema is at {PREVIOUS}, code needs {HEAD}: run `flowsweep db upgrade`"
    ):
        prepare_schema(engine, Settings(database_url=url))
    assert db.current_revision(engine) == PREVIOUS
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_server_refuses_an_outdated_schema(live_server, new_database_url, kind):
    url = new_database_url(kind)
    db.upgrade(url, PREVIOUS)
    server = live_server(url, env={"FLOWSWEEP_AUTO_MIGRATE": "0"}, wait=False)
    rc = server.proc.wait(120)
    assert rc != 0
    assert f"database schema is at {PREVIOUS}, code needs {HEAD}: run `flowsweep db upgrade`" in server.log()
    engine = db.make_engine(url)
    assert db.current_revision(engine) == PREVIOUS  # untouched
    engine.dispose()


def test_app_lifespan_refuses_an_outdated_schema(new_database_url):
    from fastapi.testclient import TestClient

    from flowsweep.service.app import create_app
    from flowsweep.service.settings import Settings

    url = new_database_url("postgres")
    db.upgrade(url, PREVIOUS)
    app = create_app(Settings(database_url=url), start_runner=False, start_ray=False)
    with pytest.raises(db.SchemaError, match="flowsweep db upgrade"), TestClient(app):
        pass
