"""The summaries' rollup (service.summary_cells, revision 0008) against the pandas summary of the same
rows, on SQLite and Postgres, through the service's own write paths: the writer's batches (done,
diverged and failed points, metrics that do not apply), failed points, cached copies at POST /sweeps
and at run time, a sweep that recomputes, a deleted sweep; and a 0007 database with results migrated.

The reference is queries.summary_pandas (every row loaded into pandas: the former in-process path);
every field of every group must agree to 1e-9.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

from flowsweep.core.types import METRIC_FIELDS
from flowsweep.service import db, queries, store, summary_cells
from flowsweep.service.models import Point, Result, SummaryCell, Sweep, utcnow
from flowsweep.service.schemas import SweepSpec
from flowsweep.status import PointStatus

GROUPINGS = ["init_scale,k,lambda0", "status", "k,status", "sweep_id", "model,depth", "depth,init_scale,sweep_id"]
FILTERS = [{}, {"status": ["done"]}, {"k_min": 6}, {"lambda0": [0.5]}, {"status": ["failed", "diverged"], "k": [4]}]


def _assert_rows_close(got: list[dict], want: list[dict], rtol: float = 1e-9) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == list(w)
        for k, wv in w.items():
            gv = g[k]
            if isinstance(wv, float) and gv is not None:
                assert gv == pytest.approx(wv, rel=rtol, abs=1e-300), k
            else:
                assert gv == wv, k


def assert_rollup_exact(engine, sweep_ids=(None,)) -> int:
    """Every grouping x filter (across sweeps and per sweep): the rollup's summary == pandas'; the
    number of groups compared."""
    groups = 0
    with db.make_session_factory(engine)() as s:
        for by, filters, sid in itertools.product(GROUPINGS, FILTERS, sweep_ids):
            q = queries.SummaryQuery(by=by.split(","), **filters)
            assert queries.cells_answer(q)
            got = queries.summary(s, q, sid, source="cells")
            _assert_rows_close(got, queries.summary_pandas(s, q, sid))
            groups += len(got)
    return groups


def _spec(**extra) -> tuple[SweepSpec, dict]:
    body = {
        "name": "cells",
        "model": "asymmetric",
        "m": 2,
        "n": 3,
        "eta": 0.01,
        "steps": 10,
        "record_every": 1,
        "axes": {"init_scale": [0.1, 1.0], "k": [4, 8], "lambda0": [0.0, 0.5], "seed": {"range": [0, 6]}},
        **extra,
    }
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6, "max_steps": 10**7})
    stored = spec.model_dump(mode="json", exclude={"axes"})
    stored["axes"] = body["axes"]
    return spec, stored


def _deep_spec() -> tuple[SweepSpec, dict]:
    body = {
        "name": "deep",
        "model": "deep",
        "init": "balanced",
        "m": 2,
        "n": 3,
        "eta": 0.01,
        "steps": 10,
        "record_every": 1,
        "axes": {"init_scale": [0.1], "k": [4], "depth": [2, 3], "seed": {"range": [0, 5]}},
    }
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6, "max_steps": 10**7})
    stored = spec.model_dump(mode="json", exclude={"axes"})
    stored["axes"] = body["axes"]
    return spec, stored


def _insert(factory, spec_stored) -> tuple[int, int]:
    spec, stored = spec_stored
    with db.session_scope(factory) as s:
        sweep, n_cached = store.insert_sweep(s, spec, stored)
        return sweep.id, n_cached


def _pending(factory, sweep_id: int) -> list[int]:
    with factory() as s:
        return list(
            s.execute(
                select(Point.id)
                .where(Point.sweep_id == sweep_id, Point.status == PointStatus.PENDING)
                .order_by(Point.id)
            ).scalars()
        )


def _write(factory, sweep_id: int, ids: list[int], rng: np.random.Generator, batches: int = 3) -> None:
    """Results for `ids` written as the writer writes them (store.write_results_batch, one
    transaction per batch): done, diverged and failed points, some metrics null."""
    with db.session_scope(factory) as s:
        s.execute(sa.update(Point).where(Point.id.in_(ids)).values(status=PointStatus.RUNNING))
    now = utcnow()
    for batch in np.array_split(rng.permutation(ids), batches):
        rows = []
        for pid in batch.tolist():
            status = rng.choice([PointStatus.DONE] * 3 + [PointStatus.DIVERGED, PointStatus.FAILED])
            metrics: dict = {}
            if status != PointStatus.FAILED:
                metrics = {m: float(rng.lognormal()) for m in METRIC_FIELDS if rng.random() > 0.15}
                # (values 1e8 + O(1e-3) are test_queries' test: pandas' groupby std loses 1e-7 there)
                metrics["diverged_at"] = int(rng.integers(1, 100)) if status == PointStatus.DIVERGED else None
            error = "boom" if status == PointStatus.FAILED else None
            rows.append(store.result_row(pid, sweep_id, status, metrics, error, float(rng.uniform()), "node", now))
        with db.session_scope(factory) as s:
            store.write_results_batch(s, rows, {}, "f8-v2")


@pytest.fixture
def engine(migrated_database_url):
    eng = db.make_engine(migrated_database_url)
    yield eng
    eng.dispose()


def test_the_rollup_follows_every_write_exactly(engine):
    factory = db.make_session_factory(engine)
    rng = np.random.default_rng(11)
    # A sweep computed by the writer, with failed points written by recovery (store.write_failed).
    a, _ = _insert(factory, _spec())
    ids = _pending(factory, a)
    _write(factory, a, ids[:-4], rng)
    with db.session_scope(factory) as s:
        s.execute(sa.update(Point).where(Point.id.in_(ids[-4:])).values(status=PointStatus.RUNNING))
        store.write_failed(s, [(pid, a) for pid in ids[-4:]], "poison", utcnow())
    deep, _ = _insert(factory, _deep_spec())  # depth: a nullable key, null in the other sweeps
    _write(factory, deep, _pending(factory, deep), rng, batches=2)
    assert assert_rollup_exact(engine, (None, a)) > 0

    # The same grid again: every point is a cached copy of a's (done/diverged) or computed anew
    # (a's failed ones are not reused).
    b, n_cached = _insert(factory, _spec(name="again"))
    assert n_cached > 0
    _write(factory, b, _pending(factory, b), rng, batches=1)
    # recompute: nothing reused, every point computed anew
    c, n_cached = _insert(factory, _spec(name="recomputed", recompute=True))
    assert n_cached == 0
    _write(factory, c, _pending(factory, c), rng)
    # d submitted before e was computed, then reused at run time (store.reuse_finished_page).
    d_spec = _spec(name="later", axes={"init_scale": [5.0], "k": [4], "lambda0": [0.0], "seed": {"range": [0, 4]}})
    e_spec = _spec(name="first", axes={"init_scale": [5.0], "k": [4], "lambda0": [0.0], "seed": {"range": [0, 6]}})
    d, _ = _insert(factory, d_spec)
    e, _ = _insert(factory, e_spec)
    _write(factory, e, _pending(factory, e), rng, batches=1)
    with db.session_scope(factory) as s:
        assert store.reuse_finished_page(s, d, 100) > 0
    left = _pending(factory, d)  # e's failed points are not reused: computed here
    if left:
        _write(factory, d, left, rng, batches=1)
    assert assert_rollup_exact(engine, (None, b, d)) > 0

    # Deleting a sweep takes its cells (others keep theirs: their result rows are kept).
    with db.session_scope(factory) as s:
        store.delete_sweep(s, a)
    with factory() as s:
        assert s.scalar(select(sa.func.count()).select_from(SummaryCell).where(SummaryCell.sweep_id == a)) == 0
    assert assert_rollup_exact(engine, (None, b)) > 0

    # The cells merged write by write hold what a rebuild from the rows holds.
    def cells() -> dict:
        with factory() as s:
            rows = s.execute(select(SummaryCell.__table__)).mappings().all()
        return {(r["sweep_id"], r["status"], r["cell"]): r for r in rows}

    before = cells()
    with db.session_scope(factory) as s:
        summary_cells.rebuild(s)
    after = cells()
    assert before.keys() == after.keys()
    for key, row in after.items():
        for name, v in row.items():
            if name.endswith(("_n", "_min", "_max")) or name in ("n_rows", "status", "sweep_id", "cell"):
                assert before[key][name] == v, name
    assert assert_rollup_exact(engine) > 0


def test_a_0007_database_with_results_is_migrated_with_its_rollup(database_url):
    """Nothing stored is lost: 0008 fills the rollup from the rows already there."""
    db.upgrade(database_url, "0007")
    engine = db.make_engine(database_url)
    rng = np.random.default_rng(5)
    try:
        with db.session_scope(db.make_session_factory(engine)) as s:
            s.execute(
                insert(Sweep),
                [dict(id=i, name=f"s{i}", status="done", spec={}, n_points=1, cancel_requested=False) for i in (1, 2)],
            )
            points, results = [], []
            for pid, (sweep_id, k, lam, depth, seed) in enumerate(
                itertools.product((1, 2), (4, 8), (0.0, 0.5), (None, 2), range(5)), start=1
            ):
                status = rng.choice(["done", "done", "diverged", "failed"])
                points.append(
                    dict(
                        id=pid,
                        sweep_id=sweep_id,
                        identity=f"{pid:064x}",
                        status=status,
                        cached=False,
                        attempts=1,
                        model="deep" if depth else "asymmetric",
                        init="gaussian",
                        integrator="gd",
                        m=2,
                        n=3,
                        k=k,
                        init_scale=0.1,
                        lambda0=lam,
                        seed=seed,
                        eta=0.01,
                        steps=10,
                        record_every=1,
                        tol=0.01,
                        data_seed=None,
                        fit_lambda0=False,
                        n_samples=1000,
                        depth=depth,
                    )
                )
                metrics = {} if status == "failed" else {m: float(rng.lognormal()) for m in METRIC_FIELDS}
                if status != "diverged":
                    metrics["diverged_at"] = None
                else:
                    metrics["diverged_at"] = int(rng.integers(1, 50))
                results.append(dict(point_id=pid, sweep_id=sweep_id, status=status, wall_seconds=0.5, **metrics))
            s.execute(insert(Point), points)
            s.execute(insert(Result), results)
            if engine.dialect.name == "postgresql":
                for t in ("sweeps", "points", "results"):
                    s.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))"))
        db.upgrade(database_url)
        assert db.current_revision(engine) == db.head_revision()
        assert assert_rollup_exact(engine, (None, 2)) > 0
        with engine.connect() as conn:  # one cell per (sweep, status, k, lambda0, depth) present
            assert conn.scalar(select(sa.func.sum(SummaryCell.n_rows))) == len(results)
    finally:
        engine.dispose()


def test_seed_and_point_id_keys_or_filters_read_the_rows(engine):
    """What the rollup cannot answer (a cell spans the seeds) goes to the result rows, same numbers."""
    factory = db.make_session_factory(engine)
    a, _ = _insert(factory, _spec())
    _write(factory, a, _pending(factory, a), np.random.default_rng(2))
    with factory() as s:
        for params in (
            {"by": ["seed"]},
            {"by": ["k"], "seed": [1, 2]},
            {"by": ["k"], "seed_max": 3},
            {"point_id_min": 5},
        ):
            q = queries.SummaryQuery(**params)
            assert not queries.cells_answer(q)
            _assert_rows_close(queries.summary(s, q, None), queries.summary_pandas(s, q, None))


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_concurrent_writers_to_one_cell_lose_nothing(new_database_url, kind):
    """Two writers committing rows of the same cells at the same time (Postgres: READ COMMITTED, each
    upsert waits for the other's row lock and merges into what it committed)."""
    import threading

    url = new_database_url(kind)
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        factory = db.make_session_factory(engine)
        sid, _ = _insert(
            factory, _spec(axes={"init_scale": [0.1], "k": [4], "lambda0": [0.0, 0.5], "seed": {"range": [0, 40]}})
        )
        ids = _pending(factory, sid)
        errors: list[BaseException] = []

        def writer(part: list[int], seed: int) -> None:
            try:
                _write(factory, sid, part, np.random.default_rng(seed), batches=len(part) // 2)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(ids[i::2], i)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        with factory() as s:
            assert s.scalar(select(sa.func.sum(SummaryCell.n_rows))) == len(ids)
        assert assert_rollup_exact(engine, (sid,)) > 0
    finally:
        engine.dispose()
