"""The set-wise SQL of service.store on real SQLite and Postgres: result rows written as tuples
(executemany on SQLite, one INSERT over arrays on Postgres) read back exactly as given, a point
that has its row keeps it, a value too long for its column is refused rather than cut, and id
lists of any length (one bound parameter) select exactly their rows, as do id lists turned into
ranges (store.in_ids); a sweep's points are stored in run order (the runner's)."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from flowsweep.core.types import METRIC_FIELDS, PointConfig
from flowsweep.service import store
from flowsweep.service.db import make_engine
from flowsweep.service.models import Point, Result, Sweep
from flowsweep.service.schemas import SweepSpec


@pytest.fixture
def engine(migrated_database_url):
    eng = make_engine(migrated_database_url)
    yield eng
    eng.dispose()


def _points(engine, n: int) -> tuple[int, list[int]]:
    with Session(engine) as s, s.begin():
        sweep = Sweep(name="b", status="running", spec={}, n_points=n)
        s.add(sweep)
        s.flush()
        pts = [
            Point(
                sweep_id=sweep.id,
                identity=uuid.uuid4().hex,
                status="running",
                cached=False,
                attempts=1,
                **PointConfig("asymmetric", 2, 3, 4, 0.1, 5, seed=i).to_dict(),
            )
            for i in range(n)
        ]
        s.add_all(pts)
        s.flush()
        return sweep.id, [p.id for p in pts]


def test_result_rows_read_back_as_written_and_a_point_keeps_its_first_row(engine):
    sid, ids = _points(engine, 4)
    at = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    metrics = [{f: (i + 1) * 0.5 + j for j, f in enumerate(METRIC_FIELDS)} for i in range(3)]
    for i, m in enumerate(metrics):
        m["diverged_at"] = 7 if i == 0 else None  # the one integer metric
    metrics[1] = {"q0_norm": float("nan"), "final_error": 1e-300}  # NaN and missing -> NULL
    rows = [
        store.result_row(pid, sid, "done" if i else "diverged", m, None if i else "msg", 0.25 * i, f"node-{i}", at)
        for i, (pid, m) in enumerate(zip(ids, metrics))
    ]
    with Session(engine) as s, s.begin():
        assert store.insert_results(s, rows + [rows[0]]) == set(ids[:3])  # twice in a batch: once
    other = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    again = [store.result_row(ids[0], sid, "failed", {}, "later", 9.0, "x", other)]
    again.append(store.result_row(ids[3], sid, "failed", {}, "new", None, None, other))  # created at another time
    with Session(engine) as s, s.begin():
        assert store.insert_results(s, again) == {ids[3]}
    with Session(engine) as s:
        got = {r.point_id: r for r in s.execute(sa.select(Result).where(Result.sweep_id == sid)).scalars()}
    assert sorted(got) == ids
    for i, pid in enumerate(ids[:3]):
        r = got[pid]
        assert (r.status, r.error, r.wall_seconds, r.worker, r.created_at) == (
            "done" if i else "diverged",
            None if i else "msg",
            0.25 * i,
            f"node-{i}",
            at,
        )
        for f in METRIC_FIELDS:
            want = metrics[i].get(f)
            assert getattr(r, f) == (None if want != want else want), f  # NaN stored as NULL
    assert got[ids[0]].diverged_at == 7 and isinstance(got[ids[0]].diverged_at, int)
    assert (got[ids[3]].status, got[ids[3]].error, got[ids[3]].created_at) == ("failed", "new", other)


def test_a_value_too_long_for_its_column_is_refused_or_kept_whole_never_cut(engine):
    sid, ids = _points(engine, 1)
    row = store.result_row(ids[0], sid, "done", {}, None, 0.0, "w" * 129, dt.datetime.now(dt.UTC))  # String(128)
    if engine.dialect.name == "sqlite":  # SQLite does not enforce VARCHAR lengths: the value is kept whole
        with Session(engine) as s, s.begin():
            store.insert_results(s, [row])
        with Session(engine) as s:
            assert s.get(Result, ids[0]).worker == "w" * 129
        return
    with pytest.raises(DBAPIError), Session(engine) as s, s.begin():
        store.insert_results(s, [row])


@pytest.mark.parametrize("n", [0, 1, 3, 2500])
def test_an_id_list_of_any_length_selects_exactly_its_rows(engine, n):
    sid, ids = _points(engine, 5)
    wanted = ids[1:4][:n] + list(range(10**6, 10**6 + max(0, n - 3)))  # absent ids select nothing
    with Session(engine) as s:
        got = s.execute(sa.select(Point.id).where(store.in_values(s, Point.id, wanted))).scalars().all()
        by_identity = (
            s.execute(sa.select(Point.id).where(store.in_values(s, Point.identity, [uuid.uuid4().hex]))).scalars().all()
        )
    assert sorted(got) == ids[1:4][:n]
    assert by_identity == []


@pytest.mark.parametrize(
    "pick",
    [
        lambda ids: [],
        lambda ids: ids[3:4],  # one id
        lambda ids: ids[2:9],  # one run
        lambda ids: ids[9:2:-1] + ids[4:6],  # one run, unordered, with duplicates
        lambda ids: ids[0:3] + ids[5:6] + ids[8:12] + ids[15:16] + ids[18:20],  # 5 runs: padded to 8 ranges
        lambda ids: [ids[i] for i in range(0, 18, 2)],  # 9 runs: the in_values path
        lambda ids: ids[17:20] + [10**6, 10**6 + 1],  # absent ids select nothing
    ],
)
def test_ids_as_ranges_select_exactly_their_rows_and_never_a_neighbour(engine, pick):
    _, ids = _points(engine, 20)
    assert ids == list(range(ids[0], ids[0] + 20))  # one insert: consecutive ids (the premise of ranges)
    wanted = pick(ids)
    with Session(engine) as s:
        got = s.execute(sa.select(Point.id).where(store.in_ids(s, Point.id, wanted))).scalars().all()
    assert sorted(got) == sorted(set(wanted) & set(ids))


def test_id_runs_are_the_maximal_runs_of_consecutive_ids():
    assert store.id_runs([]) == []
    assert store.id_runs([5]) == [(5, 5)]
    assert store.id_runs([7, 3, 4, 5, 5, 9, 10, 1]) == [(1, 1), (3, 5), (7, 7), (9, 10)]


def test_a_sweeps_points_get_ids_in_run_order_and_pages_follow_it(engine):
    """insert_sweep stores the points in run order (the runner's): blocks of run_block consecutive
    grid points (seed fastest; single points in a sweep this small), ordered by their first point's
    identity, so its chunks are id ranges; pending_page reads them in that order between the lowest
    and highest ids of the sweep's unfinished points (unfinished_points): its pending points only,
    another sweep's never."""
    body = {"name": "o", "model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 5}
    body["axes"] = {"k": [4, 8], "seed": {"range": [0, 100]}}  # 200 points
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6, "max_steps": 10**7})
    with Session(engine) as s, s.begin():
        sweep, _ = store.insert_sweep(s, spec, {"name": "o"})
        other, _ = store.insert_sweep(s, spec, {"name": "other"})
        sid = sweep.id
        rows = s.execute(
            sa.select(Point.id, Point.identity, Point.k, Point.seed).where(Point.sweep_id == sid).order_by(Point.id)
        ).all()
        s.execute(sa.update(Point).where(Point.id.in_([rows[0].id, rows[70].id])).values(status="done"))
        s.execute(sa.update(Point).where(Point.id == rows[1].id).values(status="running"))
        n, lo, hi = store.unfinished_points(s, sid)
        pages, after = [], lo - 1
        while page := store.pending_page(s, sid, after, hi, 30):
            pages.append(page)
            after = page[-1][0]
    assert len(rows) == 200 and len({(k, seed) for _, _, k, seed in rows}) == 200
    assert (n, lo, hi) == (198, rows[1].id, rows[-1].id)
    grid = [(k, seed) for k in (4, 8) for seed in range(100)]  # the grid's order
    size = store.run_block(200)
    blocks = [grid[b : b + size] for b in range(0, 200, size)]
    identity = {(r.k, r.seed): r.identity for r in rows}
    want = [p for block in sorted(blocks, key=lambda b: identity[b[0]]) for p in block]
    assert [(r.k, r.seed) for r in rows] == want
    assert want != grid  # (the blocks are shuffled)
    assert [len(p) for p in pages] == [30] * 6 + [17]
    assert [r[0] for p in pages for r in p] == [r.id for r in rows if r.id not in (rows[0].id, rows[1].id, rows[70].id)]


@pytest.mark.parametrize(("n", "size"), [(1, 1), (511, 1), (1000, 3), (20_000, 64), (10**6, 64)])
def test_the_run_order_takes_blocks_of_neighbours_and_keeps_a_sweep_a_fine_sample(n, size):
    """Blocks of RUN_BLOCK grid neighbours, smaller in sweeps of fewer than RUN_BLOCK x
    MIN_RUN_BLOCKS points (a running sweep's first results cover its grid finely); every grid
    position once; the blocks in the order of their first point's identity."""
    rng = np.random.default_rng(n)
    identities = [f"{x:016x}" for x in rng.integers(0, 2**63, n)]
    order = store.run_order(identities)
    assert store.run_block(n) == size and sorted(order) == list(range(n))
    block = [p // size for p in order]
    firsts = [order[i] for i in range(n) if i == 0 or block[i] != block[i - 1]]
    assert len(firsts) == -(-n // size) >= min(n, store.MIN_RUN_BLOCKS)  # each block in one run
    assert all(order[i] + 1 == order[i + 1] for i in range(n - 1) if block[i] == block[i + 1])
    assert [identities[f] for f in firsts] == sorted(identities[f] for f in firsts)


def test_sqlite_connections_get_the_larger_page_cache(tmp_path):
    """Every SQLite connection of make_engine has SQLITE_CACHE_KIB of page cache (the status flips'
    pages stay in it), not SQLite's 2 MB default."""
    from flowsweep.service.db import SQLITE_CACHE_KIB

    engine = make_engine(f"sqlite:///{tmp_path / 'cache.db'}")

    conns = [engine.raw_connection() for _ in range(2)]  # a second one: the pool's next connection too
    try:
        got = [c.cursor().execute("PRAGMA cache_size").fetchone()[0] for c in conns]
        assert got == [-SQLITE_CACHE_KIB] * 2
    finally:
        for c in conns:
            c.close()
        engine.dispose()


def test_autocommit_statements_are_committed(engine):
    """An AUTOCOMMIT connection commits each statement on both databases (on SQLite the engine's
    own BEGIN, emitted for every transaction, used to swallow them: rolled back at close)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("CREATE TABLE autocommit_probe (x integer)")
        c.exec_driver_sql("INSERT INTO autocommit_probe VALUES (7)")
    try:
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT x FROM autocommit_probe").scalar_one() == 7
    finally:
        with engine.begin() as c:
            c.exec_driver_sql("DROP TABLE IF EXISTS autocommit_probe")


def test_a_pending_pages_parameters_are_the_points_configs_in_field_order(engine):
    """store.pending_page's rows are (id, identity, *PARAM_FIELDS): PointConfig(*row[2:]) (the
    runner's scheduler builds its configs so, without a dict per point) is the point's config as
    the ORM builds it field by field (Point.config), list parameters included."""
    body = {"name": "p", "model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 5, "data_seed": 7}
    body |= {"y_singular_values": [2.0, 0.5], "tol": 0.02, "record_every": 5}
    body["axes"] = {"k": [4, 8], "lambda0": [0.0, 0.25], "seed": {"range": [0, 5]}}
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6, "max_steps": 10**7})
    with Session(engine) as s, s.begin():
        sweep, _ = store.insert_sweep(s, spec, {"name": "p"})
        rows = store.pending_page(s, sweep.id, 0, 10**9, 1000)
        by_id = {p.id: p.config() for p in s.execute(sa.select(Point).where(Point.sweep_id == sweep.id)).scalars()}
    assert len(rows) == 20 == len(by_id)
    for r in rows:
        cfg = PointConfig(*r[2:])
        assert cfg == by_id[r[0]] and hash(cfg) == hash(by_id[r[0]])
        assert cfg.y_singular_values == (2.0, 0.5) and cfg.data_seed == 7


def test_counts_are_the_points_by_status_and_cached_read_from_the_sweep_index_alone(engine):
    """store.counts (GET /sweeps/{id}, polled) over a sweep with pending, running, done, failed and
    cached points: each point counted once, a cached one under `cached` only; another sweep's
    points not at all. On SQLite its statement reads ix_points_sweep_id_cover alone (the index
    holds `cached`, revision 0009): no table row is read per point."""
    body = {"name": "c", "model": "asymmetric", "m": 2, "n": 3, "eta": 0.01, "steps": 5}
    body["axes"] = {"k": [4, 8], "seed": {"range": [0, 10]}}
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6, "max_steps": 10**7})
    with Session(engine) as s, s.begin():
        sweep, _ = store.insert_sweep(s, spec, {"name": "c"})
        other, _ = store.insert_sweep(s, spec, {"name": "other"})
        sid, oid = sweep.id, other.id
        ids = s.execute(sa.select(Point.id).where(Point.sweep_id == sid).order_by(Point.id)).scalars().all()
        changes = {"running": ids[:3], "done": ids[3:8], "failed": ids[8:9], "diverged": ids[9:11]}
        for status, some in changes.items():
            s.execute(sa.update(Point).where(Point.id.in_(some)).values(status=status))
        s.execute(sa.update(Point).where(Point.id.in_(ids[4:6] + ids[10:11])).values(cached=True))
    statements: list[tuple[str, tuple]] = []

    def seen(conn, cursor, statement, parameters, *args):  # noqa: ANN001
        statements.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with Session(engine) as s:
            got = store.counts(s, [sid, oid])
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert got[sid] == {"pending": 9, "running": 3, "done": 3, "failed": 1, "diverged": 1, "cached": 3}
    assert got[oid] == {"pending": 20, "running": 0, "done": 0, "failed": 0, "diverged": 0, "cached": 0}
    if engine.dialect.name == "sqlite":
        ((sql, params),) = [st for st in statements if st[0].lstrip().upper().startswith("SELECT")]
        with engine.connect() as c:
            plan = " ".join(r[3] for r in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
        assert "COVERING INDEX ix_points_sweep_id_cover" in plan and "TEMP B-TREE" not in plan, plan
