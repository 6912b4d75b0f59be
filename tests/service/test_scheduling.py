"""The streaming scheduler, deterministically: a real database (SQLite file and Postgres), the real
result writer and real core results, but a GatedStream in place of Ray - chunks finish only when
the test releases them, in FIFO order on 2 logical CPUs, each costing a + b·n logical seconds. The
scheduler is stepped by the test, so nothing here depends on how fast this machine is.

Covers issue 9: streaming refill (~2 chunks per CPU), fair share by CPU seconds (a small sweep
behind a huge one; two big ones), cancel (no new chunk after the request, in-flight chunks
cancelled, computed results kept, `cancelling` shown at once), attempts counting started runs; the
express lane (`express` fixtures: a newcomer's short chunks run at once while another sweep's
chunks hold every CPU, bounded, cancel and exactly-once writes intact).
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from gated_stream import GatedStream

from flowsweep.service import store
from flowsweep.service.db import make_engine, make_session_factory, session_scope
from flowsweep.service.models import Point, Result
from flowsweep.service.progress import ProgressBook, sweep_progress
from flowsweep.service.scheduling import Scheduler
from flowsweep.service.schemas import SweepSpec
from flowsweep.service.writer import ResultWriter

OWNER = "test-runner"


@pytest.fixture
def factory(migrated_database_url):
    engine = make_engine(migrated_database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(params=[False], ids=["no-express"])
def sched(factory, request):
    stream = GatedStream(cpus=2, express=request.param)
    book = ProgressBook()
    writer = ResultWriter(factory, book.add, owner=OWNER)
    writer.start()
    clock = [0.0]
    s = Scheduler(
        factory, lambda: stream, writer, book, poll_seconds=1.0, wait_seconds=0.0, owner=OWNER, clock=lambda: clock[0]
    )
    s.gated, s.clock = stream, clock
    yield s
    writer.stop()


def add_sweep(factory, name: str, n_seeds: int, seed0: int = 0) -> int:
    """A sweep of cheap points (10 gd steps), stored as POST /sweeps stores it."""
    body = {
        "name": name,
        "model": "asymmetric",
        "init": "gaussian",
        "integrator": "gd",
        "m": 3,
        "n": 4,
        "eta": 0.01,
        "steps": 10,
        "record_every": 1,
        "axes": {"init_scale": [0.1], "k": [6], "lambda0": [0.0], "seed": {"range": [seed0, seed0 + n_seeds]}},
    }
    spec = SweepSpec.model_validate(body, context={"max_points": 10**6, "max_steps": 10**7})
    stored = spec.model_dump(mode="json", exclude={"axes"})
    stored["axes"] = body["axes"]
    with session_scope(factory) as s:
        sweep, _ = store.insert_sweep(s, spec, stored)
        return sweep.id


def step(sched, n: int = 1, advance: float = 1.0) -> None:
    """n scheduler turns, each after `advance` logical seconds (>= poll_seconds: the database is read)."""
    for _ in range(n):
        sched.clock[0] += advance
        sched.step()


def counts(factory, sweep_id):
    with session_scope(factory) as s:
        return store.counts(s, [sweep_id])[sweep_id]


def status(factory, sweep_id):
    with session_scope(factory) as s:
        return store.get_sweep(s, sweep_id).status


def test_slots_stay_full_and_refill_on_every_return(factory, sched):
    big = add_sweep(factory, "big", 2000)
    step(sched)
    g = sched.gated
    assert g.submitted(big) == [16, 16]  # cost unknown: one probe per CPU, nothing queued beyond
    g.release(1)
    step(sched, advance=0.0)  # a turn without a database read: refill is driven by returns
    assert g.in_flight() == 4  # cost known: two chunks per CPU
    for _ in range(6):
        n = len(g.submitted(big))
        g.release(1)
        step(sched, advance=0.0)
        assert g.in_flight() == 4 and len(g.submitted(big)) == n + 1  # each return refilled at once
    sizes = g.submitted(big)
    assert max(sizes) > 16  # chunks grow from the probes to the cost model's size (~0.5 s of work)
    # attempts count runs that started on a CPU: the chunks queued behind the busy CPUs hold
    # claimed (running) points that were not counted
    queued = sum(len(t.chunk.ids) for t in g.tasks if not t.started)
    started = sum(len(t.chunk.ids) for t in g.tasks if t.started)
    sched.writer.flush()  # the released chunks' results are written (their points no longer running)
    with session_scope(factory) as s:
        by_attempts = dict(
            s.execute(
                sa.select(Point.attempts, sa.func.count())
                .where(Point.sweep_id == big, Point.status == "running")
                .group_by(Point.attempts)
            ).all()
        )
    assert queued > 0 and by_attempts == {0: queued, 1: started}, by_attempts


def test_small_sweep_behind_a_huge_one_starts_at_once_and_finishes_early(factory, sched):
    g = sched.gated
    huge = add_sweep(factory, "huge", 3000)
    step(sched)
    for _ in range(8):  # the huge sweep under way, costs known, 4 chunks in flight
        g.release(1)
        step(sched, advance=0.0)
    assert g.in_flight(huge) == 4
    small = add_sweep(factory, "small", 20, seed0=10_000)
    queued = [len(t.chunk.ids) for t in g.tasks if not t.started]
    assert len(queued) == 2  # the huge sweep's chunks queued behind the 2 busy CPUs
    step(sched)  # the database is read: the small sweep joins
    # the queued chunks are taken back; the small sweep's chunk (its cost is known: same shape;
    # all of it: its fair share is one of the two CPUs) goes first, the huge one's after it
    assert [e for e in g.log if e[0] == "preempt"] == [("preempt", huge, n) for n in queued]
    assert g.submitted(small) == [20]
    assert [t.tag for t in g.tasks if not t.started][0] == small
    g.release(1)
    step(sched, advance=0.0)
    assert g.running_sizes(small) == [20]  # started on the first CPU that freed up
    releases = 1
    while status(factory, small) != "done":
        g.release(1)
        step(sched, advance=0.0)
        releases += 1
        assert releases < 10, [e for e in g.log if e[1] == small or e[0] == "preempt"]
    # done after a few of the huge one's chunks (one per slot it did not get), while the huge one has
    # most of its work to do
    c = counts(factory, huge)
    assert c["pending"] > 2000, c
    assert counts(factory, small)["done"] == 20
    # the huge one then runs on alone and completes, exactly one result per point
    while status(factory, huge) != "done":
        g.release(4)
        step(sched, advance=0.0)
    with session_scope(factory) as s:
        n_rows, n_distinct = s.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(Result.point_id))).where(Result.sweep_id == huge)
        ).one()
        attempts = set(s.execute(sa.select(Point.attempts).where(Point.sweep_id == huge)).scalars())
    assert n_rows == n_distinct == 3000
    assert attempts == {1}  # each point's chunk started once


def test_a_small_sweeps_results_do_not_wait_behind_a_huge_ones_in_the_writer(factory, sched):
    """A sweep whose only chunk returns is written at once in the runner's thread and settled: it
    does not wait for the writer thread's queue, which holds the huge sweep's batches (here the
    writer is stuck on them until the test lets it go)."""
    g = sched.gated
    huge = add_sweep(factory, "huge", 3000)
    gate, stuck = threading.Event(), []
    write = sched.writer._write

    def gated(batch):
        if any(sid == huge for sid, _ in batch):
            stuck.append(not gate.wait(30))  # True: the writer was still stuck after 30 s
        return write(batch)

    sched.writer._write = gated
    step(sched)
    g.release(2)
    step(sched, advance=0.0)  # the huge sweep's first outcomes go to the (stuck) writer
    small = add_sweep(factory, "small", 20, seed0=10_000)
    step(sched)
    while g.submitted(small) == [] or g.running_sizes(small) == []:
        g.release(1)
        step(sched, advance=0.0)
    g.release(1 + [t.tag for t in g.tasks if t.started].index(small))
    step(sched, advance=0.0)
    assert status(factory, small) == "done" and counts(factory, small)["done"] == 20
    assert not gate.is_set() and not stuck  # the writer is still stuck on the huge sweep's results
    gate.set()
    sched.writer.flush()
    assert stuck and not any(stuck)


def test_a_newcomer_waits_one_chunk_and_runs_as_alone_on_half_the_cluster(factory, sched):
    """Logical time (release_next: the CPUs run in parallel, a task of n points takes a + b·n): a
    sweep joining one that has both CPUs starts when the first of them frees up and is done within
    2x its time alone on one CPU; the other sweep's chunks are short while they share the CPUs,
    long again once it is alone."""
    from flowsweep.workers.planner import STREAM_SHARED_TASK_SECONDS

    g = sched.gated
    sched.target_task_seconds = 1.0  # a sweep alone: tasks of ~1 s (as Fig. 1 points' 20 a)
    huge = add_sweep(factory, "huge", 3000)
    step(sched)
    for _ in range(12):  # the huge sweep alone: its cost fitted, chunks of ~target seconds
        g.release_next()
        step(sched, advance=0.0)
    long_chunk = g.a + g.b * g.submitted(huge)[-1]
    assert long_chunk > 2 * STREAM_SHARED_TASK_SECONDS
    joined = g.now
    wait_bound = max(t.ends_at for t in g.tasks if t.started) - joined  # the CPUs' busy horizons
    small = add_sweep(factory, "small", 20, seed0=10_000)
    step(sched)
    n_log = len(g.log)
    first_start = done_at = None
    while status(factory, small) != "done":
        t = g.release_next()
        step(sched, advance=0.0)
        if first_start is None and any(x.tag == small and x.started for x in g.tasks):
            first_start = min(x.started_at for x in g.tasks if x.tag == small and x.started)
        if t.tag == small:
            done_at = t.ends_at
    alone_on_one_cpu = g.a + g.b * 20
    assert first_start - joined <= min(wait_bound, long_chunk)  # the first CPU that frees up
    assert done_at - first_start <= 2 * alone_on_one_cpu, (first_start, done_at)
    shared = [n for kind, tag, n in g.log[n_log:] if kind == "submit" and tag == huge]
    assert shared and max(g.a + g.b * n for n in shared) <= STREAM_SHARED_TASK_SECONDS + g.b, shared
    for _ in range(8):  # alone again: long chunks
        g.release_next()
        step(sched, advance=0.0)
    assert g.a + g.b * g.submitted(huge)[-1] > 2 * STREAM_SHARED_TASK_SECONDS


@pytest.mark.parametrize("sched", [False, True], ids=["no-express", "express"], indirect=True)
def test_two_big_sweeps_share_the_cpu_seconds(factory, sched):
    g = sched.gated
    a = add_sweep(factory, "a", 3000)
    step(sched)
    for _ in range(10):
        g.release(1)
        step(sched, advance=0.0)
    b = add_sweep(factory, "b", 3000, seed0=50_000)
    step(sched)
    start = len(g.log)
    for _ in range(40):
        g.release(1)
        step(sched, advance=0.0)
    # CPU seconds of the chunks that ran since b joined (the 2 running on the CPUs when it joined
    # are a's and not counted): equal to within a's 2 chunks queued when b joined (charged to a
    # before, run in short pieces after) and one short chunk at the end of the window
    dones = [(tag, g.a + g.b * n) for kind, tag, n in g.log[start:] if kind == "done"][2:]
    secs = {a: sum(t for tag, t in dones if tag == a), b: sum(t for tag, t in dones if tag == b)}
    alone = g.a + g.b * max(n for kind, tag, n in g.log[:start] if kind == "submit")
    shared = g.a + g.b * max(n for kind, tag, n in g.log[start:] if kind == "submit")
    assert shared < alone  # short chunks while they share the CPUs
    assert secs[b] > 10 * shared and abs(secs[a] - secs[b]) <= 2 * alone + shared, (secs, alone, shared)


def test_cancel_stops_submissions_cancels_in_flight_and_keeps_results(factory, sched):
    g = sched.gated
    sid = add_sweep(factory, "to-cancel", 2000)
    other = add_sweep(factory, "other", 2000, seed0=90_000)
    step(sched)
    for _ in range(6):
        g.release(1)
        step(sched, advance=0.0)
    g.release(2)
    step(sched, advance=0.0)  # results of the released chunks handed to the writer
    sched.writer.flush()
    done_before = counts(factory, sid)["done"]
    assert done_before > 0 and g.in_flight(sid) > 0
    n_submitted = len(g.submitted(sid))

    # Cancel through the database, as a request to another replica does.
    with session_scope(factory) as s:
        store.request_cancel(store.get_sweep(s, sid, for_update=True))
    with session_scope(factory) as s:
        assert sweep_progress(s, sid).status == "cancelling"  # shown at once
    step(sched)  # the runner reads the database
    assert [e for e in g.log if e[0] == "cancel"] == [("cancel", sid, 2)]  # its 2 in-flight chunks
    assert g.in_flight(sid) == 0
    assert status(factory, sid) == "cancelled"
    for _ in range(5):
        g.release(1)
        step(sched, advance=0.0)
    assert len(g.submitted(sid)) == n_submitted  # no chunk of it after the request
    c = counts(factory, sid)
    assert c["running"] == 0 and c["done"] == done_before and c["pending"] == 2000 - done_before
    with session_scope(factory) as s:
        assert (
            s.execute(sa.select(sa.func.count()).select_from(Result).where(Result.sweep_id == sid)).scalar_one()
            == done_before
        )  # kept
        assert sweep_progress(s, sid).status == "cancelled"
    assert status(factory, other) == "running" and g.in_flight(other) == 4  # the other one goes on


def test_cancel_made_in_this_process_needs_no_database_read(factory, sched):
    g = sched.gated
    sid = add_sweep(factory, "local-cancel", 500)
    step(sched)
    g.release(1)
    step(sched, advance=0.0)
    sched.request_cancel(sid)
    step(sched, advance=0.0)  # no poll of the database in this turn
    assert g.in_flight(sid) == 0 and status(factory, sid) == "cancelled"


@pytest.mark.parametrize(
    ("a", "b", "n"), [(0.02, 0.003, 1000), (0.02, 0.003, 3000), (0.02, 0.003, 7000), (0.001, 0.001, 3000)]
)
def test_the_last_round_ends_the_cpus_together(factory, sched, a, b, n):
    # Each task costs a + b·n logical seconds; the scheduler's clock follows the cluster's. The
    # last pieces are water-filled with what the chunks in flight still need (a running chunk's
    # estimate less the time it has run), so the second CPU does not idle while the first works
    # through an oversized last piece.
    g = sched.gated
    g.a, g.b = a, b
    sid = add_sweep(factory, "tail", n)
    sched.clock[0] = -1.0
    step(sched)  # at logical time 0
    ends = []
    while (t := g.release_next()) is not None:
        ends.append(t.ends_at)
        sched.clock[0] = g.now
        sched.step()
    sched.step()
    assert status(factory, sid) == "done"
    ends.sort()
    idle = ends[-1] - ends[-2]  # one CPU idle while the other finishes the sweep
    assert idle <= 0.05 * ends[-1], (idle, ends[-1], g.submitted(sid))


def test_a_sweep_alone_ends_in_short_pieces_queued_behind_the_running_ones(factory, sched):
    """Cheap batch overhead (a << a chunk's work, as Fig. 1 points with the compiled kernels): the
    last round is cut into halving pieces, queued two per CPU like steady chunks (a CPU that frees
    up does not wait for the driver), so the results still to write once the CPUs stop are one short
    piece's, not half the sweep's."""
    from flowsweep.workers.planner import STREAM_MIN_PIECE_SECONDS

    g = sched.gated
    g.a, g.b = 0.001, 0.001
    sid = add_sweep(factory, "pieces", 3000)
    sched.clock[0] = -1.0
    step(sched)
    queued_in_last_round = []
    while g.release_next() is not None:
        sched.clock[0] = g.now
        sched.step()
        queued_in_last_round.append(g.in_flight(sid))
    sched.step()
    assert status(factory, sid) == "done"
    sizes = g.submitted(sid)
    steady = max(sizes)
    assert g.a + g.b * steady <= 1.1 * sched.target_task_seconds  # tasks of ~the target alone
    tail = sizes[sizes.index(steady) :]
    pieces = [n for n in tail if n < steady * 0.9]
    assert len(pieces) >= 4 and pieces[:3] == sorted(pieces[:3], reverse=True), sizes  # halving
    last = [n for kind, tag, n in g.log if kind == "done"][-1]
    assert g.a + g.b * last <= 3 * STREAM_MIN_PIECE_SECONDS, sizes
    # two per CPU in flight until the last few pieces
    assert queued_in_last_round[: -len(pieces)].count(4) >= len(queued_in_last_round) - len(pieces) - 2


def test_points_taken_by_another_runner_between_read_and_claim_are_never_written(factory, sched):
    # Chunks are submitted first and claimed right after (a CPU never waits for the database):
    # a point that is no longer pending by then (here: another runner took it) is computed for
    # nothing, and the writer, which only writes points running under this runner, drops it.
    g = sched.gated
    sid = add_sweep(factory, "raced", 40)
    taken: list[int] = []
    submit = g.submit

    def submit_after_another_runner_took_some(chunk, tag, expected=None):
        if not taken:
            taken.extend(chunk.ids[:3])
            with session_scope(factory) as s:
                s.execute(sa.update(Point).where(Point.id.in_(taken)).values(status="running", owner="other-runner"))
        submit(chunk, tag, expected)

    g.submit = submit_after_another_runner_took_some
    step(sched)
    while g.release(1):
        step(sched, advance=0.0)
    sched.writer.flush()
    with session_scope(factory) as s:
        rows = dict(s.execute(sa.select(Point.id, Point.owner).where(Point.sweep_id == sid)).all())
        written = set(s.execute(sa.select(Result.point_id).where(Result.sweep_id == sid)).scalars())
    assert len(taken) == 3 and not written & set(taken)  # nothing of theirs written by this runner
    assert all(rows[p] == "other-runner" for p in taken)  # still theirs
    assert written == set(rows) - set(taken)  # every other point written once


# ---------------------------------------------------------------- the express lane


def huge_holding_every_cpu(factory, sched, n: int = 3000) -> int:
    """A big sweep under way (cost known), its chunks on both CPUs and two queued behind them."""
    g = sched.gated
    huge = add_sweep(factory, "huge", n)
    step(sched)
    for _ in range(8):
        g.release(1)
        step(sched, advance=0.0)
    assert g.running(huge) == 2 and g.in_flight(huge) == 4 and not g.expressed()  # alone: no express
    return huge


def held(g) -> list[int]:
    """Identities of the chunks on the CPUs (the test never releases them while it checks)."""
    return [id(t.chunk) for t in g.tasks if t.started and not t.express]


def result_rows(factory, sweep_id) -> tuple[int, int]:
    with session_scope(factory) as s:
        return s.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(Result.point_id))).where(Result.sweep_id == sweep_id)
        ).one()


@pytest.mark.parametrize("sched", [True], ids=["express"], indirect=True)
def test_a_newcomer_runs_on_the_express_lane_while_another_sweep_holds_every_cpu(factory, sched):
    g = sched.gated
    huge = huge_holding_every_cpu(factory, sched)
    cpus = held(g)
    small = add_sweep(factory, "small", 20, seed0=10_000)
    step(sched)
    # its whole sweep (shape's cost known, <= EXPRESS_TASK_SECONDS) started at once, beside the
    # huge sweep's chunks, which still hold both CPUs; nothing of the huge one taken back
    assert g.expressed(small) == [20] and g.running_sizes(small) == [20]
    assert held(g) == cpus and not [e for e in g.log if e[0] == "preempt"]
    g.release(1, express=True)
    step(sched, advance=0.0)
    assert status(factory, small) == "done" and counts(factory, small)["done"] == 20
    assert held(g) == cpus  # done before any chunk of the huge sweep returned
    assert g.submitted(small) == []  # nothing of it went to the CPU slots
    while status(factory, huge) != "done":
        g.release(4)
        step(sched, advance=0.0)
    for sid, n in ((huge, 3000), (small, 20)):
        assert result_rows(factory, sid) == (n, n)  # exactly one result per point
        with session_scope(factory) as s:
            assert set(s.execute(sa.select(Point.attempts).where(Point.sweep_id == sid)).scalars()) == {1}


@pytest.mark.parametrize("sched", [True], ids=["express"], indirect=True)
def test_the_express_lane_is_bounded(factory, sched):
    """Short chunks of a known cost only, one at a time, only while another sweep holds every
    CPU and the newcomer has none on a CPU."""
    from flowsweep.workers.planner import EXPRESS_TASK_SECONDS

    g = sched.gated
    huge = huge_holding_every_cpu(factory, sched)
    cpus = held(g)
    other_shape = add_sweep(factory, "new-shape", 20, seed0=20_000)
    with session_scope(factory) as s:  # another shape: its cost unknown, its length unbounded
        s.execute(sa.update(Point).where(Point.sweep_id == other_shape).values(steps=11))
    step(sched)
    assert g.expressed(other_shape) == [] and g.submitted(other_shape)  # waits for a CPU instead
    mid = add_sweep(factory, "mid", 400, seed0=30_000)
    step(sched)
    (first,) = g.expressed(mid)
    assert g.a + g.b * first <= EXPRESS_TASK_SECONDS < g.a + g.b * 400  # a short chunk, not all of it
    for _ in range(3):
        step(sched, advance=0.0)
    assert g.expressed(mid) == [first]  # one at a time: the next waits for the lane
    g.release(1, express=True)
    step(sched, advance=0.0)
    assert held(g) == cpus and len(g.expressed(mid)) == 2  # still no CPU for it: the next one
    g.release(1)  # a CPU frees up: a chunk queued in the CPU slots starts on it
    step(sched, advance=0.0)
    g.release(1, express=True)
    step(sched, advance=0.0)
    while g.tasks and not any(t.tag == mid and t.started and not t.express for t in g.tasks):
        assert g.running() == 2
        g.release(1)
        step(sched, advance=0.0)
    n_express = len(g.expressed(mid))
    while any(status(factory, sid) != "done" for sid in (huge, other_shape, mid)):
        g.release(4)
        if g.express_free() is False and any(t.express for t in g.tasks):
            g.release(1, express=True)
        step(sched, advance=0.0)
        assert len(g.expressed(mid)) == n_express or g.running(mid) == 0  # only while it has no CPU
    assert all(g.a + g.b * n <= EXPRESS_TASK_SECONDS for n in g.expressed())
    for sid, n in ((huge, 3000), (other_shape, 20), (mid, 400)):
        assert result_rows(factory, sid) == (n, n)


@pytest.mark.parametrize("sched", [True], ids=["express"], indirect=True)
def test_cancel_waits_for_the_express_chunk_keeps_its_results_and_requeues_the_rest(factory, sched):
    g = sched.gated
    huge = huge_holding_every_cpu(factory, sched)
    sid = add_sweep(factory, "to-cancel", 400, seed0=40_000)
    step(sched)
    (n,) = g.expressed(sid)
    with session_scope(factory) as s:  # through the database, as the API does
        store.request_cancel(store.get_sweep(s, sid, for_update=True))
    step(sched)
    with session_scope(factory) as s:
        assert sweep_progress(s, sid).status == "cancelling"  # its express chunk is left to finish (short)
    assert g.in_flight(sid) == 1 and not g.tasks[-1].cancelled
    g.release(1, express=True)
    step(sched, advance=0.0)
    assert status(factory, sid) == "cancelled"
    c = counts(factory, sid)
    assert c["done"] == n and c["running"] == 0 and c["pending"] == 400 - n  # kept; the rest pending
    assert result_rows(factory, sid) == (n, n)
    assert g.expressed(sid) == [n]  # and nothing of it after the cancel
    assert status(factory, huge) == "running" and g.in_flight(huge) == 4


@pytest.mark.parametrize("sched", [True], ids=["express"], indirect=True)
def test_the_writer_holds_its_batches_while_a_newcomers_last_chunk_runs_express(factory, sched):
    """The runner's transactions after it returns (its results, its settling) then find SQLite's
    write lock free; the hold ends with it, and a flush never waits for a hold."""
    g = sched.gated
    huge = huge_holding_every_cpu(factory, sched)
    assert sched.writer._hold_until == 0.0
    small = add_sweep(factory, "small", 20, seed0=10_000)
    step(sched)
    assert g.expressed(small) == [20] and sched.writer._hold_until > 0.0  # held while it runs
    g.release(1)  # a chunk of the huge sweep returns: handed to the writer, which holds it
    step(sched, advance=0.0)
    assert sched.writer._hold_until > 0.0
    g.release(1, express=True)
    step(sched, advance=0.0)
    assert status(factory, small) == "done" and sched.writer._hold_until == 0.0  # released
    sched.writer.hold(3600.0)
    assert sched.writer.flush(60.0)  # a flush ends a hold
    assert counts(factory, huge)["done"] > 0
