"""The streaming scheduling loop: every CPU of the cluster busy, sweeps sharing it fairly, prompt
cancels. Runs in the runner's thread (service.runner) while this process is the active runner.

- **Streaming.** About `slots_per_cpu` (2) chunks per cluster CPU are kept in flight; each time
  `ray.wait` returns, the freed slots are refilled at once (no barrier anywhere), and the finished
  outcomes go to the result writer (service.writer), whose batched transactions overlap compute.
- **Fair share by CPU seconds.** Each freed slot goes to the runnable sweep that has used the
  fewest CPU seconds (a chunk is charged its estimated cost when submitted, corrected by the
  measured one when it returns). A sweep joins at the smallest usage among the active sweeps
  (as CFS does with min_vruntime), so a small sweep submitted behind a huge one gets every other
  slot and finishes in about the time it takes alone on half the cluster, and two big ones
  alternate. So that a newcomer does not wait behind the chunks queued on Ray for busy CPUs,
  those are taken back (cancelled before they start) and submitted again after its first chunk:
  it starts on the first CPU that frees up.
- **Express lane.** Until then, while other sweeps' chunks hold every CPU, a sweep with none on a
  CPU runs short chunks (<= planner.EXPRESS_TASK_SECONDS, of a shape whose cost is known) at once,
  one at a time, on the stream's express lane (a warm process holding no CPU of Ray's:
  workers.dispatch.TaskStream): a small sweep behind a huge one is often done before any CPU frees
  up, at the price of oversubscribing the CPUs by one process for that long. Its chunks are
  charged, claimed and written as the others (a cancel waits for a running one: it is short).
- **Chunks** come from the shape's cost model (workers.planner.stream_chunk_size: probes first,
  then tasks of ~0.5 s (at least 20 batch overheads, at most 2 s): a newcomer waits for one of
  them at most; the last round of a sweep alone in halving pieces, queued like the others, down to
  ~0.1 s, so results are written while the CPUs compute and the last ones are few; while several
  sweeps have points to submit, each sweep's last round spread over its fair share of the CPUs and
  water-filled with what its chunks in flight still need (so its CPUs end together), and chunks
  preempted for a newcomer resubmitted in short pieces); cost models are shared across sweeps of
  the same shape.
- **Points.** Pending points are read from the database in pages (keyset on the point id, in the
  run order insert_sweep gave them: blocks of neighbouring grid points in a fixed pseudo-random
  order, so chunks are balanced and a partial sweep is a representative sample; store.run_order)
  into a small per-sweep buffer. A refill submits its chunks first, then flips their points pending ->
  running with this runner as owner in one transaction (a CPU never waits for the database; a
  point no longer pending by then is computed for nothing and never written: the writer writes
  only points running under this owner). The same transaction adds 1 to `attempts` of the points
  whose chunk started on a CPU since the last one (estimated: Ray starts queued tasks in order as
  CPUs free up), so `attempts` counts runs that started, not chunks queued.
- **Outcomes** of the chunks that return are handed to the writer after the freed slots are
  refilled (the refill's transaction must not queue behind the writer's). A sweep's only outcomes
  are written at once in this thread; while a sweep's last chunk runs express, the writer holds its
  batches (<= WRITER_HOLD_SECONDS): the runner's transactions that follow its return (a refill's
  claim, the attempts, its results, its settling) would each wait for a batch of the big sweep's
  results that the writer began between two of them.
- **Cancel.** A cancel request (this process's `cancel()`, or `cancel_requested` set by any
  replica, read from the database every `poll_seconds`) stops the sweep's submissions at once,
  cancels its in-flight chunks (except a running one expected to finish within moments, which is
  waited for: workers.dispatch.TaskStream.cancel), waits for the writer to commit what was
  already computed (kept), puts its unfinished points back to pending and settles it `cancelled`.
- **Settling.** A sweep with nothing left to read, buffered or in flight is settled once the
  writer has committed its results: `done`, or `failed` when every point failed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from flowsweep.core.types import PointConfig, ShapeKey
from flowsweep.status import ACTIVE_SWEEP_STATUSES, PointStatus, SweepStatus
from flowsweep.workers.planner import Chunk, Cost, express_max_points, stream_chunk_size, stream_max_points

from . import store
from .db import make_read_session_factory, session_scope
from .models import utcnow
from .progress import ProgressBook
from .writer import Outcomes, ResultWriter

if TYPE_CHECKING:
    from flowsweep.workers.dispatch import TaskStream

log = logging.getLogger("flowsweep.runner")

_MAX_COST_MODELS = 256
_LOGGED_RETURNS = 40  # a sweep's chunk returns listed in its log line when it has no more
WRITER_HOLD_SECONDS = 0.5  # the longest the result writer holds its batches for an express chunk


def read_session_factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """db.make_read_session_factory on the engine of `session_factory`: the runner's polls and page
    reads never wait for the result writer's write lock."""
    bind = session_factory.kw.get("bind")
    return make_read_session_factory(bind) if isinstance(bind, Engine) else session_factory


class SweepSetupError(Exception):
    """A sweep could not be taken up (its rows could not be read or updated)."""

    def __init__(self, sweep_id: int, cause: BaseException) -> None:
        super().__init__(f"sweep {sweep_id}: {type(cause).__name__}: {cause}")
        self.sweep_id = sweep_id
        self.cause = cause


@dataclass
class SweepState:
    """What the scheduler keeps in memory about one sweep it runs."""

    id: int
    used: float  # CPU seconds charged (fair share)
    unsubmitted: int  # pending points not yet submitted (sizing)
    buffer: dict[ShapeKey, deque[tuple[int, PointConfig]]] = field(default_factory=dict)  # (point id, config)
    cursor: int = 0  # keyset position (point id) of the page scan
    first_id: int = 0  # the lowest and highest ids of its unfinished points (store.unfinished_points)
    last_id: int = -1
    scanned_all: bool = False
    cancelling: bool = False
    charged: dict[int, float] = field(default_factory=dict)  # id(chunk) -> estimated seconds charged
    task_seconds: float = 0.0  # seconds its tasks reported (logs, benchmarks)
    taken_at: float = 0.0  # clock when taken up
    redo: deque[Chunk] = field(default_factory=deque)  # preempted chunks (points already claimed)
    marks: dict[str, float] = field(default_factory=dict)  # phase -> clock (first time), for the log
    started: dict[int, float] = field(default_factory=dict)  # id(chunk) -> clock it started on a CPU (est.)
    handed: bool = False  # outcomes of it were handed to the writer thread (to wait for when settling)
    returns: list[tuple[float, int, float]] = field(default_factory=list)  # (clock, points, task seconds), for the log
    sizes: list[int] = field(default_factory=list)  # points of each chunk submitted, in order (the log)

    def in_flight_seconds(self, now: float) -> float:
        """Estimated seconds its chunks in flight (or taken back, to be resubmitted) still need:
        a running chunk's estimate less the time it has run."""
        return sum(
            max(0.0, est - (now - self.started[k])) if k in self.started else est for k, est in self.charged.items()
        )

    def buffered(self) -> int:
        return sum(len(q) for q in self.buffer.values()) + sum(len(c.ids) for c in self.redo)

    def has_work(self) -> bool:
        return not self.cancelling and (self.buffered() > 0 or not self.scanned_all)


class Scheduler:
    """See the module docstring. `stream` is a workers.dispatch.TaskStream (or a test's stand-in
    with the same methods: cpus, in_flight, running, express_free, submit, take_started, cancel,
    preempt, wait, close)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        stream_factory: Callable[[], TaskStream],
        writer: ResultWriter,
        progress: ProgressBook,
        *,
        slots_per_cpu: int = 2,
        page_size: int = 1000,
        poll_seconds: float = 0.25,
        target_task_seconds: float = 0.5,
        wait_seconds: float = 0.02,
        owner: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._read_factory = read_session_factory(session_factory)
        self._stream_factory = stream_factory
        self._stream: TaskStream | None = None
        self.writer = writer
        self.progress = progress
        self.slots_per_cpu = slots_per_cpu
        self.page_size = page_size
        self.poll_seconds = poll_seconds
        self.target_task_seconds = target_task_seconds
        self.wait_seconds = wait_seconds
        self.owner = owner
        self._clock = clock
        self.sweeps: dict[int, SweepState] = {}
        self.costs: OrderedDict[ShapeKey, Cost] = OrderedDict()
        self._cancel_requests: set[int] = set()
        self._lock = threading.Lock()
        self._synced_at = -math.inf
        self.db_seconds = 0.0  # spent in this thread's transactions (logs, benchmarks)
        self._express_held: int | None = None  # the sweep whose last chunk runs express, writer held

    # ------------------------------------------------------------------ interface
    def request_cancel(self, sweep_id: int) -> None:
        """Called from any thread (the cancel route of this process): acted on at the next step."""
        with self._lock:
            self._cancel_requests.add(int(sweep_id))

    def poke(self) -> None:
        """Look at the database at the next step (a sweep was submitted or cancelled)."""
        self._synced_at = -math.inf

    @property
    def stream(self) -> TaskStream:
        if self._stream is None:
            self._stream = self._stream_factory()
        return self._stream

    def busy(self) -> bool:
        return bool(self.sweeps)

    def step(self) -> None:
        """One turn: look for sweeps and cancels (every poll_seconds), fill the free slots, collect
        what finished (waiting up to wait_seconds), settle sweeps that are through."""
        now = self._clock()
        if now - self._synced_at >= self.poll_seconds:
            self._synced_at = now
            self._sync()
        self._apply_cancels()
        if not self.sweeps:
            return
        self._fill()
        outcomes = self._collect(self.stream.wait(self.wait_seconds))
        self._fill()
        self._write(outcomes)
        self._settle()
        held = self._express_held
        if held is None or held not in self.sweeps or not self.stream.in_flight(held):
            self._express_held = None
            self.writer.release()

    def shutdown(self) -> None:
        """Stop: cancel what is in flight, commit what came back, unfinished points to pending.
        The sweeps stay queued/running and are resumed by the next runner."""
        if self._stream is not None:
            self._record_started()  # runs that started count, though they are cut short
            self._stream.close()
            self._stream = None  # a new one (and express lane) if this runner runs again
        self.writer.flush(30.0)
        ids = list(self.sweeps)
        if ids:
            with self._session() as s:
                for sid in ids:
                    store.requeue_running(s, sid, owner=self.owner)
        for sid in ids:
            self.progress.forget(sid)
        self.sweeps.clear()

    # ------------------------------------------------------------------ database
    @contextmanager
    def _session(self, read_only: bool = False) -> Iterator[Session]:
        t0 = time.perf_counter()
        try:
            with session_scope(self._read_factory if read_only else self._session_factory) as s:
                yield s
        finally:
            self.db_seconds += time.perf_counter() - t0

    def _sync(self) -> None:
        """New sweeps are taken up; cancel requests made through any replica are seen."""
        with self._session(read_only=True) as s:
            rows = store.active_sweeps(s)
        for sid, cancel_requested in rows:
            st = self.sweeps.get(sid)
            if st is None:
                st = self._take_up(sid)
                if st is None:
                    continue
            if cancel_requested and not st.cancelling:
                self._start_cancel(st)

    def _take_up(self, sweep_id: int) -> SweepState | None:
        t0 = self._clock()
        posted = t0
        rows: Sequence[tuple] = ()
        try:
            # One transaction in the common case (a small sweep starts sooner): the sweep marked
            # running, a first page of run-time dedupe, the count and id range of the points to run
            # and the first page of them.
            with self._session() as s:
                sweep = store.get_sweep(s, sweep_id, for_update=True)
                if sweep is None or sweep.status not in ACTIVE_SWEEP_STATUSES:
                    return None
                if not sweep.cancel_requested:
                    store.mark_running(sweep)
                if sweep.created_at is not None:
                    posted = t0 - max(0.0, (utcnow() - sweep.created_at).total_seconds())
                recompute = bool((sweep.spec or {}).get("recompute"))
                reused = 0 if recompute else store.reuse_finished_page(s, sweep_id, self.page_size)
                remaining, first, last = store.unfinished_points(s, sweep_id)
                if reused < self.page_size:
                    rows = store.pending_page(s, sweep_id, first - 1, last, self.page_size)
            if reused == self.page_size:  # more to reuse: the rest page by page
                self.reuse_finished(sweep_id)
                with self._session() as s:
                    remaining = store.count_unfinished(s, sweep_id)
        except (OperationalError, InterfaceError):
            raise  # the database is unavailable for a moment: retried, not held against the sweep
        except Exception as exc:
            raise SweepSetupError(sweep_id, exc) from exc
        used = min((o.used for o in self.sweeps.values()), default=0.0)
        st = SweepState(
            sweep_id,
            used,
            remaining,
            cursor=first - 1,
            first_id=first,
            last_id=last,
            taken_at=t0,
            marks={"posted": posted, "taken": self._clock()},
        )
        if reused < self.page_size:
            self._buffer(st, rows)
        self.sweeps[sweep_id] = st
        self.progress.track(sweep_id, remaining)
        log.info("sweep %s: taken up, %d points to run", sweep_id, remaining)
        return st

    def reuse_finished(self, sweep_id: int) -> int:
        """Dedupe at run time too: a pending point whose identity another sweep has finished since
        this one was submitted (two identical sweeps posted back to back) becomes cached with a
        copy of the source's result row, unless the sweep asked to `recompute` (SPEC §3).
        Returns how many were reused."""
        with self._session() as s:
            if (store.sweep_spec(s, sweep_id) or {}).get("recompute"):
                return 0
        reused = 0
        while True:
            with self._session() as s:
                n = store.reuse_finished_page(s, sweep_id, self.page_size)
            if not n:
                break
            reused += n
        if reused:
            log.info("sweep %s: %d points reused from other sweeps' finished points", sweep_id, reused)
        return reused

    def _read_page(self, st: SweepState) -> None:
        with self._session(read_only=True) as s:
            rows = store.pending_page(s, st.id, st.cursor, st.last_id, self.page_size)
        self._buffer(st, rows)

    def _buffer(self, st: SweepState, rows: Sequence[tuple]) -> None:
        """A page of pending points (store.pending_page rows) into the sweep's buffer."""
        st.marks.setdefault("read", self._clock())
        if len(rows) < self.page_size:
            st.scanned_all = True
        if rows:
            st.cursor = rows[-1][0]
        for r in rows:
            cfg = PointConfig(*r[2:])  # PARAM_FIELDS are PointConfig's fields in order: no dict per point
            st.buffer.setdefault(cfg.shape_key(), deque()).append((r[0], cfg))

    # ------------------------------------------------------------------ cancel
    def _apply_cancels(self) -> None:
        with self._lock:
            requests, self._cancel_requests = self._cancel_requests, set()
        for sid in requests:
            st = self.sweeps.get(sid)
            if st is not None and not st.cancelling:
                self._start_cancel(st)
            elif st is None:
                self.poke()  # not taken up yet: the database says what to do

    def _start_cancel(self, st: SweepState) -> None:
        st.cancelling = True
        st.buffer.clear()
        st.redo.clear()  # claimed points: put back to pending when the sweep settles
        n = self.stream.in_flight(st.id) if self._stream is not None else 0
        if n:
            self.stream.cancel(st.id)
        log.info("sweep %s: cancel requested; %d chunks in flight cancelled", st.id, n)

    # ------------------------------------------------------------------ submitting
    def _cost(self, key) -> Cost:
        cost = self.costs.get(key)
        if cost is None:
            cost = self.costs[key] = Cost()
            while len(self.costs) > _MAX_COST_MODELS:
                self.costs.popitem(last=False)
        else:
            self.costs.move_to_end(key)
        return cost

    def _sharing(self) -> int:
        """Sweeps with points to submit: while several share the CPUs, chunks are short and each
        sweep's last round is spread over its share of them (planner.stream_chunk_size)."""
        return sum(1 for st in self.sweeps.values() if st.has_work())

    def _next_chunk(self, st: SweepState, ncpu: int, sharing: int = 1, express: bool = False) -> Chunk | None:
        """The sweep's next chunk (None: none now); `express`: one for the express lane (cost known,
        <= planner.EXPRESS_TASK_SECONDS), or None."""
        if not st.buffer and not st.scanned_all:
            self._read_page(st)
        if not st.buffer:
            return None
        key = max(st.buffer, key=lambda k: len(st.buffer[k]))
        cap = express_max_points(self._cost(key)) if express else 0
        if express and not cap:
            return None
        q = st.buffer[key]
        remaining = len(q) if st.scanned_all else max(len(q), st.unsubmitted)
        n = stream_chunk_size(
            self._cost(key),
            remaining,
            ncpu,
            self.stream.in_flight(st.id),
            self.target_task_seconds,
            st.in_flight_seconds(self._clock()),
            sharing,
        )
        if express:
            n = min(n, cap)
        while n > len(q) and not st.scanned_all:
            self._read_page(st)
            q = st.buffer[key]
        n = min(n, len(q))
        if n <= 0:
            return None
        taken = [q.popleft() for _ in range(n)]
        if not q:
            del st.buffer[key]
        return Chunk(key, [pid for pid, _ in taken], [cfg for _, cfg in taken])

    def _claim(self, ids: list[int]) -> None:
        """pending -> running with this runner as owner, for the points of the chunks just
        submitted (one transaction per refill, after the submissions: a CPU never waits for the
        database). The same transaction counts the attempts of the chunks that started since the
        last one. A point not flipped (taken by another runner after a lost lease, or gone with
        its sweep) is computed for nothing: the writer only writes points running under this
        owner (store.write_results_batch), so nothing of it is written."""
        started = self._take_started()
        # (usually every chunk just submitted has started: CPUs were free) one UPDATE does both
        both = bool(ids) and set(started).issuperset(ids)
        with self._session() as s:
            claimed = store.claim_points(s, ids, owner=self.owner, started=both) if ids else set()
            if both:
                started = list(set(started).difference(ids))
            if started:
                store.count_started(s, started, self.owner)
        if len(claimed) < len(ids):
            log.warning(
                "%d of %d points submitted were no longer pending; not written", len(ids) - len(claimed), len(ids)
            )

    def _preempt_for_waiting(self, slots: int) -> None:
        """A sweep with work and nothing in flight (one just submitted) must not wait behind the
        chunks queued on Ray for busy CPUs: those of sweeps that used more CPU seconds are taken
        back (cancelled before they start) and submitted again after its first chunks."""
        stream = self.stream
        if stream.in_flight() < slots:
            return
        waiting = [st for st in self.sweeps.values() if st.has_work() and not stream.in_flight(st.id, express=False)]
        if not waiting:
            return
        floor = min(st.used for st in waiting)
        ids = {st.id for st in waiting}
        sharing = self._sharing()
        for tag, chunk in stream.preempt(lambda t: t not in ids and t in self.sweeps and self.sweeps[t].used >= floor):
            st = self.sweeps[tag]
            if not st.cancelling:
                # sized when it ran alone: resubmitted in short pieces (the newcomer's next chunks
                # wait behind one of them at most), which stay charged (not charged again)
                est = st.charged.pop(id(chunk), 0.0)
                n = stream_max_points(self._cost(chunk.key), sharing) if self._cost(chunk.key).known else len(chunk.ids)
                for i in range(0, len(chunk.ids), n):
                    piece = Chunk(chunk.key, chunk.ids[i : i + n], chunk.cfgs[i : i + n], chunk.tries_left)
                    st.charged[id(piece)] = est * len(piece.ids) / len(chunk.ids)
                    st.redo.append(piece)

    def _express(self, ncpu: int) -> list[int]:
        """While other sweeps' chunks hold every CPU, a sweep with none on a CPU (one just
        submitted) runs a short chunk at once on the stream's express lane (one chunk at a time,
        of a shape whose cost is known), instead of waiting for a CPU to free up; again when that
        returns, until it has a chunk on a CPU. Returns the point ids submitted (to claim)."""
        stream = self.stream
        waiting = [st for st in self.sweeps.values() if st.has_work() and not st.redo and not stream.running(st.id)]
        if not waiting or stream.running() < ncpu or not stream.express_free():
            return []
        sharing = self._sharing()
        for st in sorted(waiting, key=lambda x: (x.used, -x.id)):
            chunk = self._next_chunk(st, ncpu, sharing, express=True)
            if chunk is None:
                continue
            st.unsubmitted = max(0, st.unsubmitted - len(chunk.ids))
            cost = self.costs[chunk.key]
            est = st.charged[id(chunk)] = cost.seconds(len(chunk.ids))
            st.used += est
            stream.submit(chunk, st.id, est, express=True)
            if not st.has_work():
                # its last chunk: its results and its settling need SQLite's write lock at once
                self._express_held = st.id
                self.writer.hold(WRITER_HOLD_SECONDS)
            st.marks.setdefault("submit", self._clock())
            st.marks.setdefault("express", self._clock())
            st.sizes.append(len(chunk.ids))
            return chunk.ids
        return []

    def _fill(self) -> None:
        stream = self.stream
        ncpu = stream.cpus()
        slots = self.slots_per_cpu * ncpu
        claim: list[int] = self._express(ncpu)
        self._preempt_for_waiting(slots)
        blocked: set[int] = set()
        while stream.in_flight() < slots:
            sharing = self._sharing()
            runnable = [st for st in self.sweeps.values() if not st.cancelling and st.id not in blocked]
            if not runnable:
                break
            st = min(runnable, key=lambda x: (x.used, -x.id))  # ties: the newer (it just joined)
            if st.redo:
                chunk = st.redo.popleft()  # claimed already
            else:
                proposed = self._next_chunk(st, ncpu, sharing)
                if proposed is None:
                    blocked.add(st.id)
                    continue
                chunk = proposed
                claim += chunk.ids
                st.unsubmitted = max(0, st.unsubmitted - len(chunk.ids))
            if id(chunk) not in st.charged:
                cost = self.costs[chunk.key]
                est = cost.seconds(len(chunk.ids)) if cost.known else 0.0
                st.used += est
                st.charged[id(chunk)] = est
            stream.submit(chunk, st.id, st.charged[id(chunk)])
            st.marks.setdefault("submit", self._clock())
            st.sizes.append(len(chunk.ids))
        if claim:
            self._claim(claim)
            for st in self.sweeps.values():
                st.marks.setdefault("claimed", self._clock())
        # Otherwise the attempts of chunks that started are counted in the next claim's
        # transaction or before their results are written, whichever comes first.

    # ------------------------------------------------------------------ results
    def _take_started(self) -> list[int]:
        """Point ids of the chunks that started on a CPU since the last call (their start time
        noted for the in-flight estimates)."""
        now = self._clock()
        ids = []
        for tag, chunk in self.stream.take_started():
            st = self.sweeps.get(tag)
            if st is not None:
                st.started[id(chunk)] = now
            ids += chunk.ids
        return ids

    def _record_started(self) -> None:
        """attempts + 1 for the points of the chunks that started (see _claim)."""
        ids = self._take_started()
        if ids:
            with self._session() as s:
                store.count_started(s, ids, self.owner)

    def _collect(self, dones) -> list[tuple[int, Outcomes]]:
        """Book finished chunks (costs, CPU seconds); their outcomes, for the writer once the freed
        slots are refilled (the refill's claim must not wait behind the writer's transaction)."""
        out: list[tuple[int, Outcomes]] = []
        for d in dones:
            st = self.sweeps.get(d.tag)
            if d.sample is not None:
                self._cost(d.chunk.key).add(*d.sample)
            if st is not None:
                st.used += d.seconds - st.charged.pop(id(d.chunk), 0.0)
                st.started.pop(id(d.chunk), None)
                st.task_seconds += d.seconds
                st.marks.setdefault("result", self._clock())
                if len(st.returns) <= _LOGGED_RETURNS:  # (bounded: the log lists them for short sweeps only)
                    st.returns.append((self._clock(), len(d.chunk.ids), d.seconds))
                st.marks["last result"] = self._clock()
            if d.outcomes:
                out.append((d.tag, d.outcomes))
        return out

    def _write(self, outcomes: list[tuple[int, Outcomes]]) -> None:
        if outcomes:
            self._record_started()  # before their results are written (which clears their owner)
        for tag, o in outcomes:
            st = self.sweeps.get(tag)
            if st is not None and self._through(st):
                # A sweep's last outcomes: written at once in this thread (its settling waits for
                # them anyway), not handed over to the writer's thread and waited for; after what
                # was handed over before, so the first report of a point stays the one written.
                if st.handed:
                    self.writer.flush()
                self.writer.write_now(tag, o)
                continue
            if st is not None:
                st.handed = True
            self.writer.put(tag, o)

    def _through(self, st: SweepState) -> bool:
        """Nothing of the sweep is left to submit or in flight."""
        return not self.stream.in_flight(st.id) and (st.cancelling or not (st.buffered() or not st.scanned_all))

    def _settle(self) -> None:
        for st in list(self.sweeps.values()):
            if not self._through(st):
                continue
            self._record_started()  # (a cancelled chunk that had started counts as a run)
            if st.handed:
                self.writer.flush()
            st.marks["written"] = self._clock()
            if st.cancelling:
                self._finish_cancelled(st)
            else:
                self._finish(st)

    def _finish_cancelled(self, st: SweepState) -> None:
        with self._session() as s:
            store.requeue_running(s, st.id, owner=self.owner)
            sweep = store.get_sweep(s, st.id, for_update=True)
            if sweep is not None:
                store.mark_cancelled(sweep)
        log.info("sweep %s: cancelled", st.id)
        self._forget(st.id)

    def _finish(self, st: SweepState) -> None:
        with self._session() as s:
            store.requeue_running(s, st.id, owner=self.owner)
            sweep = store.get_sweep(s, st.id, for_update=True)
            if sweep is None:
                self._forget(st.id)
                return
            if sweep.cancel_requested:
                store.mark_cancelled(sweep)
                self._forget(st.id)
                return
            counts = store.point_status_counts(s, st.id)
            left = counts.get(PointStatus.PENDING, 0) + counts.get(PointStatus.RUNNING, 0)
            if left:
                # Points put back to pending (a chunk lost for good, a restart): scan again.
                st.cursor, st.scanned_all, st.unsubmitted = st.first_id - 1, False, left
                return
            total = sum(counts.values())
            n_failed = counts.get(PointStatus.FAILED, 0)
            if total and n_failed == total:
                first = store.first_failure(s, st.id)
                store.finish_sweep(sweep, SweepStatus.FAILED, f"all {total} points failed; first error: {first}")
            else:
                store.finish_sweep(sweep, SweepStatus.DONE, None)
        sizes = st.sizes
        st.marks["finished"] = self._clock()
        log.info(
            "sweep %s finished: %s; %d chunks of %s points; task seconds %.2f over %.2f s; timeline from take-up: %s",
            st.id,
            counts,
            len(sizes),
            sizes if len(sizes) <= 40 else f"{min(sizes)}..{max(sizes)}",
            st.task_seconds,
            self._clock() - st.taken_at,
            ", ".join(f"{k} {1000 * (t - st.taken_at):.0f} ms" for k, t in st.marks.items()),
        )
        if len(st.returns) <= _LOGGED_RETURNS:
            log.info(
                "sweep %s chunks returned (ms from take-up: points, task ms): %s",
                st.id,
                ", ".join(f"{1000 * (c - st.taken_at):.0f}: {n}, {1000 * x:.0f}" for c, n, x in st.returns),
            )
        span = st.marks.get("last result", 0.0) - st.marks.get("submit", 0.0)
        log.info(
            "runner: tasks kept %.0f%% of %d CPUs busy from first submit to last result; %.0f ms in the runner "
            "thread's transactions so far; writer %s",
            100 * st.task_seconds / (self.stream.cpus() * span) if span > 0 else 0.0,
            self.stream.cpus(),
            1000 * self.db_seconds,
            self.writer.stats,
        )
        self._forget(st.id)

    def _forget(self, sweep_id: int) -> None:
        self.sweeps.pop(sweep_id, None)
        self.progress.forget(sweep_id)

    def fail_sweep(self, sweep_id: int, message: str, give_up: bool) -> None:
        """A sweep that cannot be taken up: the error on sweeps.error; failed when `give_up`."""
        self.sweeps.pop(sweep_id, None)
        with self._session() as s:
            store.record_runner_error(s, sweep_id, message, give_up=give_up)
        if give_up:
            self.progress.forget(sweep_id)
