"""Result queries (SPEC §4) on a database filled with synthetic result rows, checked against pandas.

The rows are inserted directly through the models; the expected answers are computed by pandas from
the generated data (never read back from the database), on SQLite and on Postgres, through the real
FastAPI app (in-process; no Ray or runner needed for queries).
"""

from __future__ import annotations

import io
import itertools
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text

from flowsweep.core.types import METRIC_FIELDS, Curves
from flowsweep.service import db, summary_cells
from flowsweep.service.app import create_app
from flowsweep.service.models import Curve, Point, Result, Sweep
from flowsweep.service.schemas import RESULT_FIELDS
from flowsweep.service.settings import Settings
from flowsweep.workers.codec import CURVES_FORMAT, encode_curves

NUMERIC = list(METRIC_FIELDS) + ["wall_seconds"]


def synthetic_rows(rng: np.random.Generator) -> tuple[list[dict], list[dict], pd.DataFrame]:
    """Two sweeps over init_scale x k x lambda0 x seed with random metrics (some null)."""
    points, results = [], []
    pid = 0
    for sweep_id, model in ((1, "asymmetric"), (2, "asymmetric")):
        for s, k, lam, seed in itertools.product((0.01, 0.1, 1.0), (10, 20, 50), (0.0, 0.5), range(12)):
            pid += 1
            status = rng.choice(["done", "done", "done", "failed", "diverged"])
            metrics = {m: float(rng.lognormal()) for m in METRIC_FIELDS}
            metrics["diverged_at"] = int(rng.integers(1, 1000)) if status == "diverged" else None
            for m in METRIC_FIELDS:
                if m != "diverged_at" and (status == "failed" or rng.random() < 0.1):
                    metrics[m] = None  # a metric that does not apply
            points.append(
                dict(
                    id=pid,
                    sweep_id=sweep_id,
                    identity=f"{pid:064x}",
                    status=status,
                    cached=False,
                    attempts=1,
                    model=model,
                    init="gaussian",
                    integrator="gd",
                    m=5,
                    n=10,
                    k=k,
                    init_scale=s,
                    lambda0=lam,
                    seed=seed,
                    eta=1e-3 * sweep_id,
                    steps=4000,
                    record_every=20,
                    tol=0.01,
                    data_seed=None,
                    fit_lambda0=False,
                    n_samples=1000,
                    depth=None,
                    data_scale=float(sweep_id),
                )
            )
            results.append(
                dict(
                    point_id=pid,
                    sweep_id=sweep_id,
                    status=status,
                    error=None,
                    wall_seconds=float(rng.uniform(0.01, 1)),
                    worker=f"node{pid % 3}",
                    **metrics,
                )
            )
    truth = (
        pd.DataFrame(points)
        .rename(columns={"id": "point_id"})
        .merge(pd.DataFrame(results).drop(columns=["sweep_id", "status"]), on="point_id")
    )
    truth = truth[list(RESULT_FIELDS)].astype({m: "float64" for m in NUMERIC})
    return points, results, truth


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request, new_database_url):
    url = new_database_url(request.param)
    db.upgrade(url)
    points, results, truth = synthetic_rows(np.random.default_rng(7))
    engine = db.make_engine(url)
    with db.session_scope(db.make_session_factory(engine)) as s:
        s.execute(
            insert(Sweep),
            [dict(id=i, name=f"s{i}", status="done", spec={}, n_points=432, cancel_requested=False) for i in (1, 2)],
        )
        s.execute(insert(Point), points)
        s.execute(insert(Result), results)
        # The summaries' rollup as the writer builds it: rows merged into their cells in small
        # batches in a random order (Chan et al.'s merge at work, not one aggregation per cell).
        order = np.random.default_rng(1).permutation([p["id"] for p in points])
        for batch in np.array_split(order, 23):
            summary_cells.add(s, [int(i) for i in batch])
        if request.param == "postgres":  # explicit ids were inserted: move the sequences past them
            for t in ("sweeps", "points", "results"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), (SELECT max(id) FROM {t}))"))
    engine.dispose()
    app = create_app(Settings(database_url=url), start_runner=False, start_ray=False)
    with TestClient(app) as client:
        client.truth = truth
        client.url = url
        yield client


def ids(resp) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [r["point_id"] for r in resp.json()["data"]]


def test_rows_have_exactly_the_spec_fields(api):
    r = api.get("/results", params={"limit": 3})
    body = r.json()
    assert body["count"] == len(api.truth)
    assert [list(row) for row in body["data"]] == [list(RESULT_FIELDS)] * 3
    assert "NaN" not in r.text and "Infinity" not in r.text
    first = api.truth.iloc[0]
    row = body["data"][0]
    for f in RESULT_FIELDS:
        want = first[f]
        assert (row[f] is None) if pd.isna(want) else row[f] == want, f


@pytest.mark.parametrize(
    "params, select_",
    [
        ({"k": 20, "init_scale": 0.1}, lambda t: (t.k == 20) & (t.init_scale == 0.1)),
        ({"k": "10,50"}, lambda t: t.k.isin([10, 50])),
        ({"k": [10, 50], "lambda0": 0.5}, lambda t: t.k.isin([10, 50]) & (t.lambda0 == 0.5)),
        ({"init_scale_min": 0.05, "k_max": 20}, lambda t: (t.init_scale >= 0.05) & (t.k <= 20)),
        ({"seed_min": 3, "seed_max": 5, "status": "done"}, lambda t: t.seed.between(3, 5) & (t.status == "done")),
        ({"status": "failed,diverged"}, lambda t: t.status.isin(["failed", "diverged"])),
        ({"eta": 0.002, "model": "asymmetric"}, lambda t: t.eta == 0.002),
        ({"sweep_id": 1, "k": 50, "seed": 0}, lambda t: (t.sweep_id == 1) & (t.k == 50) & (t.seed == 0)),
        # a fixed parameter beside an axis (the axis's covering index answers; the other is tested on its rows)
        ({"steps": 4000, "seed": 7}, lambda t: (t.steps == 4000) & (t.seed == 7)),
        ({"eta_min": 0.0015, "fit_lambda0": "false", "k": 20}, lambda t: (t.eta >= 0.0015) & (t.k == 20)),
        (
            {"model": "asymmetric", "data_scale": 2.0, "lambda0": 0.5},
            lambda t: (t.data_scale == 2.0) & (t.lambda0 == 0.5),
        ),
    ],
)
def test_filters_match_pandas(api, params, select_):
    t = api.truth
    want = sorted(t[select_(t)].point_id.tolist())
    assert want, "the filter should select something"
    r = api.get("/results", params={**params, "limit": 10_000})
    assert ids(r) == want
    assert r.json()["count"] == len(want)


def test_sqlite_answers_a_fixed_parameter_beside_an_axis_from_the_axis_index(api):
    """Without statistics SQLite's planner searched `steps=4000&seed=7` by the index on `steps`
    (every row of a sweep) instead of the covering index on `seed` (one row in 100 here)."""
    from flowsweep.service import queries

    engine = db.make_engine(api.url)
    try:
        if engine.dialect.name != "sqlite":  # Postgres plans from its statistics: the columns as they are
            q = queries.ResultQuery.model_validate({"steps": [4000], "seed": [7]})
            sql = str(select(Point.id).where(*queries._where(q, None)).compile(engine))
            assert "points.steps = " in sql and "+" not in sql, sql
            return
        for params, index in (({"steps": [4000], "seed": [7]}, "ix_points_seed_cover"), ({"m": [6]}, "ix_points_m")):
            q = queries.ResultQuery.model_validate(params)
            count = select(func.count()).select_from(Point).where(*queries._where(q, None))
            for stmt in (count, queries._statement(q, None, 100)):
                sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
                with engine.connect() as c:
                    plan = " ".join(row[3] for row in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
                assert f"INDEX {index} " in plan, plan
    finally:
        engine.dispose()


def test_sweep_scoped_results(api):
    t = api.truth
    r = api.get("/sweeps/2/results", params={"k": 10, "limit": 10_000})
    assert ids(r) == sorted(t[(t.sweep_id == 2) & (t.k == 10)].point_id)
    assert api.get("/sweeps/999/results").status_code == 404


@pytest.mark.parametrize("order_by", ["-final_error", "speedup,seed", "-init_scale,-k,seed", "diverged_at"])
def test_order_by_matches_pandas(api, order_by):
    t = api.truth
    keys = [k.lstrip("-") for k in order_by.split(",")] + ["point_id"]
    asc = [not k.startswith("-") for k in order_by.split(",")] + [True]
    # Nulls last in both directions; ties broken by point_id.
    want = t.sort_values(keys, ascending=asc, na_position="last", kind="stable").point_id.tolist()
    assert ids(api.get("/results", params={"order_by": order_by, "limit": 10_000})) == want


def test_pagination_covers_every_row_once(api):
    t = api.truth
    want = t.sort_values(["speedup", "point_id"], na_position="last").point_id.tolist()
    got = []
    for offset in range(0, len(t) + 100, 100):
        r = api.get("/results", params={"order_by": "speedup", "limit": 100, "offset": offset})
        assert r.json()["count"] == len(t)
        got += ids(r)
    assert got == want


def test_csv_and_parquet_match(api):
    t = api.truth
    sel = t[(t.k == 20) & (t.sweep_id == 1)].sort_values("point_id").reset_index(drop=True)
    r = api.get("/results", params={"k": 20, "sweep_id": 1, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0] == ",".join(RESULT_FIELDS)
    csv = pd.read_csv(io.StringIO(r.text))
    r = api.get("/results", params={"k": 20, "sweep_id": 1, "format": "parquet"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    pq = pd.read_parquet(io.BytesIO(r.content))
    for got in (csv, pq):
        assert list(got.columns) == list(RESULT_FIELDS)
        assert len(got) == len(sel)
        for f in RESULT_FIELDS:
            if f in NUMERIC or f in ("init_scale", "lambda0", "eta"):
                np.testing.assert_array_equal(got[f].astype(float).to_numpy(), sel[f].astype(float).to_numpy(), f)
            else:
                assert got[f].astype(str).tolist() == sel[f].astype(str).tolist(), f
    assert pq["diverged_at"].dtype == "Int64" and pq["final_error"].dtype == "float64"


@pytest.mark.parametrize("by", ["init_scale,k", "lambda0", "k,status"])
def test_summary_matches_pandas(api, by):
    t = api.truth[api.truth.sweep_id == 1]
    keys = by.split(",")
    r = api.get("/sweeps/1/summary", params={"by": by})
    assert r.status_code == 200, r.text
    assert "NaN" not in r.text
    got = pd.DataFrame(r.json()["data"])
    g = t.groupby(keys, sort=True)
    assert len(got) == g.ngroups
    assert got["count"].tolist() == g.size().tolist()
    for m in NUMERIC:
        vals = g[m]
        for stat, want in (
            ("mean", vals.mean()),
            ("std", vals.std()),
            ("min", vals.min()),
            ("max", vals.max()),
            ("sem", vals.std() / np.sqrt(vals.count())),
        ):
            np.testing.assert_allclose(
                got[f"{m}_{stat}"].astype(float).to_numpy(),
                want.to_numpy(dtype=float),
                rtol=1e-12,
                equal_nan=True,
                err_msg=f"{m}_{stat}",
            )


def test_summary_with_filter(api):
    t = api.truth
    sel = t[(t.sweep_id == 1) & (t.status == "done") & (t.k == 50)]
    got = api.get("/sweeps/1/summary", params={"by": "init_scale", "status": "done", "k": 50}).json()["data"]
    assert [g["count"] for g in got] == sel.groupby("init_scale").size().tolist()
    np.testing.assert_allclose(
        [g["final_error_mean"] for g in got], sel.groupby("init_scale").final_error.mean().to_numpy(), rtol=1e-12
    )


@pytest.mark.parametrize(
    "query, field",
    [
        ("/results?order_by=nonsense", "order_by"),
        ("/results?order_by=-k,bogus", "order_by"),
        ("/results?kk=3", "kk"),
        ("/results?k=abc", "k"),
        ("/results?init_scale=nan", "init_scale"),
        ("/results?init_scale_min=inf", "init_scale_min"),
        ("/results?k=99999999999", "k"),
        ("/results?status=running", "status"),
        ("/results?limit=0", "limit"),
        ("/results?offset=-1", "offset"),
        ("/results?format=xlsx", "format"),
        ("/results?model=linear", "model"),
        ("/results?model_min=1", "model_min"),
        ("/sweeps/1/summary?by=final_error", "by"),
        ("/sweeps/1/summary?by=k,k", "by"),
    ],
)
def test_bad_queries_are_422_naming_the_parameter(api, query, field):
    r = api.get(query)
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["detail"]], r.json()


def test_unknown_ids_are_404(api):
    for path in (
        "/sweeps/12345",
        "/sweeps/0",
        "/points/99999",
        "/points/99999/curves",
        "/points/99999/state",
        "/sweeps/99999999999999/results",
        "/sweeps/77/summary",
    ):
        r = api.get(path)
        assert r.status_code == 404, path
        assert "not found" in r.json()["detail"]


def test_curves_decode_and_cached_points_read_the_source(api):
    t = np.linspace(0, 1, 5)
    err = np.array([1.0, 0.5, np.inf, np.nan, 0.1])  # a diverged run: non-finite values become null
    sv = np.arange(10.0).reshape(5, 2)
    blob = encode_curves(Curves(t=t, error=err, error_linear=np.exp(-t), singular_values=sv))
    engine = db.make_engine(api.url)
    with db.session_scope(db.make_session_factory(engine)) as s:
        src = s.scalar(select(Point.id).where(Point.sweep_id == 1).order_by(Point.id).limit(1))
        s.add(Curve(point_id=src, format=CURVES_FORMAT, blob=blob))
        sweep = Sweep(name="copy", status="done", spec={}, n_points=1)
        s.add(sweep)
        s.flush()
        cols = {c: getattr(s.get(Point, src), c) for c in Point.__table__.columns.keys() if c not in ("id",)}  # noqa: SIM118 (a ColumnCollection)
        copy = Point(**{**cols, "sweep_id": sweep.id, "cached": True, "source_point_id": src})
        s.add(copy)
        s.flush()
        copy_id = copy.id
    engine.dispose()
    for pid in (src, copy_id):
        r = api.get(f"/points/{pid}/curves")
        assert r.status_code == 200, r.text
        c = r.json()
        assert c["t"] == t.tolist()
        assert c["error"] == [1.0, 0.5, None, None, 0.1]
        assert c["singular_values"] == sv.tolist()
        assert c["error_regularized_fit"] is None
        np.testing.assert_allclose(c["error_linear"], np.exp(-t), rtol=0, atol=0)
    p = api.get(f"/points/{copy_id}").json()
    assert (
        p["cached"] is True
        and p["source_point_id"] == src
        and p["status"] == api.truth.set_index("point_id").status[src]
    )
    no_curves = api.truth.point_id.iloc[-1]
    assert api.get(f"/points/{no_curves}/curves").status_code == 404


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


@pytest.mark.parametrize("by", ["init_scale,k,lambda0", "status", "sweep_id,seed", "k,data_seed"])
def test_sql_summary_equals_the_pandas_path(api, by):
    """The database's aggregation against the former pandas path on the same rows, every field."""
    from flowsweep.service import queries

    engine = db.make_engine(api.url)
    try:
        with db.make_session_factory(engine)() as s:
            q = queries.SummaryQuery(by=by.split(","))
            got, want = queries.summary(s, q, None), queries.summary_pandas(s, q, None)
    finally:
        engine.dispose()
    assert got and all(f"{m}_count" in got[0] for m in NUMERIC)
    _assert_rows_close(got, want)


def test_summary_counts_non_null_values(api):
    t = api.truth[api.truth.sweep_id == 2]
    got = api.get("/sweeps/2/summary", params={"by": "k"}).json()["data"]
    want = t.groupby("k")
    for m in NUMERIC:
        assert [g[f"{m}_count"] for g in got] == want[m].count().tolist(), m


def test_summary_rejects_page_and_format_parameters(api):
    for params in ({"limit": 5}, {"order_by": "k"}, {"format": "csv"}, {"offset": 1}, {"after": 3}):
        r = api.get("/sweeps/1/summary", params=params)
        assert r.status_code == 422, params
        assert list(params)[0] in [d["field"] for d in r.json()["detail"]]


def test_keyset_paging_covers_every_row_once(api):
    t = api.truth
    got, after = [], 0
    while True:
        r = api.get("/results", params={"after": after, "limit": 100})
        page = ids(r)
        if not page:
            break
        got += page
        after = page[-1]
    assert got == sorted(t.point_id.tolist())
    # with another order, `after` is a filter on point_id
    got = ids(api.get("/results", params={"after": 400, "order_by": "-k", "limit": 10_000}))
    assert got == t[t.point_id > 400].sort_values(["k", "point_id"], ascending=[False, True]).point_id.tolist()


def test_empty_exports_have_their_header(api):
    r = api.get("/results", params={"k": 999, "format": "csv"})
    assert r.status_code == 200 and r.text.strip() == ",".join(RESULT_FIELDS)
    r = api.get("/results", params={"k": 999, "format": "parquet"})
    pq = pd.read_parquet(io.BytesIO(r.content))
    assert list(pq.columns) == list(RESULT_FIELDS) and len(pq) == 0


def _insert_sweep_of_done_points(session, ks: np.ndarray, **metrics: np.ndarray) -> None:
    """Sweep 1 with one done point per entry of `ks` (its width k) and a result row holding `metrics`."""
    n = len(ks)
    session.execute(insert(Sweep), [dict(id=1, name="s", status="done", spec={}, n_points=n, cancel_requested=False)])
    session.execute(
        insert(Point),
        [
            dict(
                id=i + 1,
                sweep_id=1,
                identity=f"{i:064x}",
                status="done",
                cached=False,
                attempts=1,
                model="asymmetric",
                init="gaussian",
                integrator="gd",
                m=2,
                n=3,
                k=int(ks[i]),
                init_scale=0.1,
                lambda0=0.0,
                seed=i,
                eta=0.01,
                steps=10,
                record_every=1,
                tol=0.01,
                data_seed=None,
                fit_lambda0=False,
                n_samples=1000,
            )
            for i in range(n)
        ],
    )
    rows = [dict(point_id=i + 1, sweep_id=1, status="done") for i in range(n)]
    for name, values in metrics.items():
        for row, v in zip(rows, values):
            row[name] = float(v)
    session.execute(insert(Result), rows)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_summary_std_is_sound_when_the_mean_dwarfs_the_spread(new_database_url, kind):
    """Values 1e8 + O(1e-3): sum-of-squares formulas lose every digit here (x^2 ~ 1e16, var ~ 1e-6);
    the database's std must agree with numpy's two-pass std to 1e-9, from the result rows and from
    the rollup, whose cells (5 widths k, each mean 1e-3 apart) got their rows one at a time (500
    merges) and are merged again across k."""
    from flowsweep.service import queries

    url = new_database_url(kind)
    db.upgrade(url)
    rng = np.random.default_rng(3)
    n = 500
    ks = np.arange(n) % 5 + 1
    vals = 1e8 + 1e-3 * (rng.standard_normal(n) + ks)
    tiny = 1e-15 * (1 + 0.1 * rng.standard_normal(n))
    engine = db.make_engine(url)
    try:
        with db.session_scope(db.make_session_factory(engine)) as s:
            _insert_sweep_of_done_points(s, ks, q0_norm=vals, final_error=tiny)
            for i in range(n):
                summary_cells.add(s, [i + 1])
        for source in ("rows", "cells"):
            with db.make_session_factory(engine)() as s:
                (row,) = queries.summary(s, queries.SummaryQuery(by="init_scale"), 1, source=source)
                by_k = queries.summary(s, queries.SummaryQuery(by="k"), 1, source=source)
            assert row["q0_norm_count"] == n and row["final_error_count"] == n and row["speedup_count"] == 0
            assert row["q0_norm_std"] == pytest.approx(np.std(vals, ddof=1), rel=1e-9), source
            assert row["q0_norm_mean"] == pytest.approx(np.mean(vals), rel=1e-15), source
            assert row["final_error_std"] == pytest.approx(np.std(tiny, ddof=1), rel=1e-9), source
            assert row["q0_norm_sem"] == pytest.approx(np.std(vals, ddof=1) / np.sqrt(n), rel=1e-9), source
            assert row["speedup_mean"] is None and row["speedup_std"] is None and row["speedup_min"] is None
            assert [g["k"] for g in by_k] == [1, 2, 3, 4, 5]
            for g in by_k:
                x = vals[ks == g["k"]]
                assert g["q0_norm_std"] == pytest.approx(np.std(x, ddof=1), rel=1e-9), source
                assert g["q0_norm_mean"] == pytest.approx(np.mean(x), rel=1e-15), source
                assert (g["q0_norm_min"], g["q0_norm_max"]) == (x.min(), x.max())
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_metrics_near_the_smallest_doubles_are_summarised_not_refused(new_database_url, kind):
    """A metric of ~1e-174 (the one-layer error e^-t at t = 400) squared, or a residual of a few
    subnormals divided by a count, rounds to 0: Postgres raised `underflow` there, which kept the
    result writer retrying one batch forever (a cancelled sweep stuck in `cancelling`) and would have
    made /summary a 500. The cells merge one row at a time; both sources agree with numpy."""
    from flowsweep.service import queries

    url = new_database_url(kind)
    db.upgrade(url)
    rng = np.random.default_rng(5)
    n = 60
    ks = np.arange(n) % 3 + 1
    tiny = np.exp(-400.0) * (1 + 0.1 * rng.standard_normal(n))  # ~1.9e-174
    tiny[:3] = (5e-324, 0.0, 1e-310)  # the smallest subnormal, a zero, a subnormal
    engine = db.make_engine(url)
    try:
        with db.session_scope(db.make_session_factory(engine)) as s:
            _insert_sweep_of_done_points(s, ks, final_error=tiny)
        for i in range(n):  # one merge per row: the writer's upsert each time
            with db.session_scope(db.make_session_factory(engine)) as s:
                summary_cells.add(s, [i + 1])
        for source in ("rows", "cells"):
            with db.make_session_factory(engine)() as s:
                (row,) = queries.summary(s, queries.SummaryQuery(by="init_scale"), 1, source=source)
                by_k = queries.summary(s, queries.SummaryQuery(by="k"), 1, source=source)
            for got, x in [(row, tiny)] + [(g, tiny[ks == g["k"]]) for g in by_k]:
                assert got["final_error_count"] == len(x)
                assert got["final_error_mean"] == pytest.approx(np.mean(x), rel=1e-12), source
                assert (got["final_error_min"], got["final_error_max"]) == (x.min(), x.max())
                # squares of deviations ~1e-175 are 0 in doubles, for numpy as for the database
                assert got["final_error_std"] == pytest.approx(np.std(x, ddof=1), abs=1e-300), source
    finally:
        engine.dispose()


def test_exports_give_their_slot_back(api):
    """Each streaming export holds one of FLOWSWEEP_MAX_CONCURRENT_EXPORTS slots (a connection) while
    it streams; finished ones, complete or abandoned by the client, must give it back."""
    for fmt in ("csv", "parquet"):
        assert api.get("/results", params={"format": fmt, "k": 20}).status_code == 200
    with api.stream("GET", "/results", params={"format": "csv"}) as r:  # left after the first bytes
        next(r.iter_bytes())
    assert api.get("/results", params={"format": "csv", "k": 20}).status_code == 200
    slots = api.app.state.export_slots
    limit = api.app.state.settings.max_concurrent_exports
    for _ in range(50):
        if slots._value == limit:
            break
        time.sleep(0.1)
    assert slots._value == limit
