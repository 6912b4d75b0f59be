"""Chunk sizing for the dispatcher: which points go into the next Ray task (pure Python, no Ray).

A chunk is a list of points sharing one `PointConfig.shape_key()`, run as one vectorised core batch.
A batch of n points costs about t = a + b·n seconds: a is the per-batch overhead (per-step numpy
calls, data set-up; ~0.5 s for 4000 gd steps) and b the marginal cost of a point. With a that large,
tasks must be few and large, and the end of a sweep must be planned so that all CPUs finish together.

Phases, per decision (a Ray slot is free):

1. unknown shape (no task of it has finished yet): up to ncpu x FIRST_CHUNK_CAP points, an even
   split over the CPUs, as a direct run would do: a short sweep is done in one task per CPU and
   pays the batch overhead once. A longer one starts with PROBE_POINTS-point chunks so that
   results (and the runner's ETA) come soon. Nothing is queued beyond the CPUs while costs are
   unknown.
2. middle: while much work is left, steady chunks of max(target_task_seconds, 20·a) seconds
   (batch overhead <= 5 %; the brief's 0.2-2 s holds when a is small), capped at
   MAX_TASK_SECONDS for streaming and at half the CPU's share of the work left; up to
   max_in_flight tasks are queued. With one chunk size seen,
   the next chunk doubles it (the a + b·n fit needs two sizes).
3. final round: once the remaining work fits in one short task per CPU (max(4 target, 10 a)
   seconds, so timing noise on the last chunks stays small), the CPUs' busy horizons are
   estimated (running tasks: predicted cost minus elapsed; queued ones stacked on the earliest
   lane) and the remaining work is water-filled so every lane ends at the same time. Each lane
   gets its share when it actually frees up (nothing is queued), so every decision uses the latest
   estimates and errors self-correct; a lane takes everything left when that ends no later than
   sharing it (which would cost another batch overhead).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from flowsweep.core.types import PointConfig, ShapeKey

MAX_TASK_SECONDS = 30.0  # streaming granularity: results reach the database at least this often
OVERHEAD_FACTOR = 20.0  # middle-phase chunks carry >= 20 a of work: <= 5 % batch overhead
FINAL_ROUND_TASKS = 4  # the final round starts when each CPU has <= 4 target tasks of work
FINAL_ROUND_OVERHEADS = 10  # ... or <= 10 a (its chunks are small enough that noise evens out)
FIRST_CHUNK_CAP = 128  # shapes of <= ncpu x 128 points with unknown cost: split evenly at once
PROBE_POINTS = 16  # larger ones: first chunks of 16 points, then doubling until fitted
RESUBMITS = 2  # driver-side resubmissions of a chunk lost to a system error
DECAY = 0.9  # weight of older samples per new one: the cost model follows load drift
RAY_TASK_SECONDS = 0.002  # Ray's own cost per task, added to a
# Sizes spread widely (coefficient of variation >= 0.5: var(n) >= 0.2 E[n^2]; the probes' 16..300
# points have it) tell a from timing noise; similar sizes do not: on a loaded machine steady
# 184..347-point Fig. 1 chunks fitted a = 47 ms, the probes 3 ms (Cost.overhead).
WIDE_SPREAD = 0.2


@dataclass
class Chunk:
    key: ShapeKey
    ids: list[int]
    cfgs: list[PointConfig]
    tries_left: int = RESUBMITS  # driver-side resubmissions left after a system error


@dataclass
class Task:
    chunk: Chunk
    serial: int
    submitted: float
    started: float | None = None  # estimated: a task starts when a CPU frees up (FIFO)


class Cost:
    """Samples (n points, seconds) of one shape, exponentially weighted, fitted as t = a + b·n."""

    __slots__ = ("_fit", "_good", "_wide_a", "max_n", "min_n", "sn", "snn", "snt", "st", "w")

    def __init__(self) -> None:
        self.w = self.sn = self.snn = self.st = self.snt = 0.0
        self.min_n = self.max_n = 0
        self._fit = (RAY_TASK_SECONDS, 0.0)
        self._good: tuple[float, float] | None = None  # the last well-conditioned fit
        self._wide_a: float | None = None  # the least a fitted on widely spread sizes (WIDE_SPREAD)

    def add(self, n: int, t: float) -> None:
        for name in ("w", "sn", "snn", "st", "snt"):
            setattr(self, name, getattr(self, name) * DECAY)
        self.w += 1.0
        self.sn += n
        self.snn += n * n
        self.st += t
        self.snt += n * t
        self.min_n = min(self.min_n, n) if self.min_n else n
        self.max_n = max(self.max_n, n)
        var = self.w * self.snn - self.sn * self.sn
        # a is refitted only while the sizes differ by >= ~10 % (coefficient of variation): on chunks
        # of nearly one size timing noise decides a, often 10x too large (chunks of >= 20 a follow)
        if self.min_n != self.max_n and var > 1e-2 * self.w * self.snn:
            b = (self.w * self.snt - self.sn * self.st) / var
            a = (self.st - b * self.sn) / self.w
            if b > 0:
                self._good = (max(a, 0.0) + RAY_TASK_SECONDS, b)
                if var > WIDE_SPREAD * self.w * self.snn:
                    self._wide_a = min(self._good[0], self._wide_a or math.inf)
        if self._good is not None:
            self._fit = self._good
        else:
            self._fit = (RAY_TASK_SECONDS, max(self.st / max(self.sn, 1e-12), 1e-9))

    @property
    def known(self) -> bool:
        return self.w > 0

    @property
    def fitted(self) -> bool:
        """Whether a and b have been told apart (two different chunk sizes measured)."""
        return self._good is not None

    def fit(self) -> tuple[float, float]:
        """(a, b): the latest well-conditioned least-squares fit (recent samples weigh more); until
        there is one, a = 0 and b = t/n, an overestimate of b that errs towards smaller chunks."""
        return self._fit

    def overhead(self) -> float:
        """a for sizing streamed chunks: the fit's, at most the least one fitted on widely spread
        sizes. Timing noise (2 CPUs shared with the service) moves a fit's a both ways; an a too
        large makes chunks of >= 20 a, one task per CPU whose results are written after the CPUs
        stop, while one too small costs a few more task overheads."""
        a = self._fit[0]
        return a if self._wide_a is None else min(a, self._wide_a)

    def seconds(self, n: int) -> float:
        a, b = self._fit
        return a + b * n


def waterfill(lanes: list[float], work: float, a: float) -> float:
    """End time E with sum over lanes of max(0, E - lane - a) = work: the lanes (busy horizons)
    that are free early take more of the remaining work, and all end together."""
    acc = 0.0
    ls = sorted(lanes)
    for j, lane in enumerate(ls, start=1):
        acc += lane + a
        e = (work + acc) / j
        if j == len(ls) or e <= ls[j] + a:
            return e
    return ls[-1] + a + work  # not reached


@dataclass
class Planner:
    """Decides the next chunk; the dispatcher reports submissions and completions to it."""

    groups: dict[ShapeKey, tuple[list[int], list[PointConfig]]]
    ncpu: int
    max_in_flight: int
    target_task_seconds: float
    costs: dict[ShapeKey, Cost]  # kept by the Dispatcher across runs
    cursor: dict[ShapeKey, int] = field(init=False)
    redo: deque[Chunk] = field(default_factory=deque)
    inflight: list[Task] = field(default_factory=list)  # in submission order

    def __post_init__(self) -> None:
        self.cursor = {k: 0 for k in self.groups}
        for k in self.groups:
            self.costs.setdefault(k, Cost())

    # ---- bookkeeping ----------------------------------------------------------------------
    def remaining(self, key: ShapeKey) -> int:
        return len(self.groups[key][0]) - self.cursor[key]

    def submitted(self, task: Task, now: float) -> None:
        if sum(t.started is not None for t in self.inflight) < self.ncpu:
            task.started = now
        self.inflight.append(task)

    def finished(self, task: Task, now: float, samples: list[tuple[int, float]] | None) -> None:
        """A task left the cluster (done, failed or lost); samples are its timed batches."""
        self.inflight.remove(task)
        for n, seconds in samples or ():
            self.costs[task.chunk.key].add(n, seconds)
        for t in self.inflight:  # the oldest queued task takes the CPU that just freed
            if t.started is None:
                t.started = now
                break

    def _take(self, key: ShapeKey, n: int) -> Chunk:
        i = self.cursor[key]
        self.cursor[key] = i + n
        ids, cfgs = self.groups[key]
        return Chunk(key, ids[i : i + n], cfgs[i : i + n])

    def _even_split(self, key: ShapeKey) -> Chunk:
        """This free CPU's share of an even split of the shape's rest over the free CPUs."""
        return self._take(key, math.ceil(self.remaining(key) / (self.ncpu - len(self.inflight))))

    def lanes(self, now: float) -> list[float]:
        """Seconds until each CPU is free, given the tasks in flight (queued ones stacked FIFO)."""
        heap = [0.0] * self.ncpu
        for t in self.inflight:
            cost = self.costs[t.chunk.key]
            d = cost.seconds(len(t.chunk.ids)) if cost.known else MAX_TASK_SECONDS
            if t.started is not None:
                d = max(d - (now - t.started), 0.0)
            heapq.heappush(heap, heapq.heappop(heap) + d)
        return heap

    # ---- the decision ---------------------------------------------------------------------
    def next_chunk(self, now: float) -> Chunk | None:
        if len(self.inflight) >= self.max_in_flight:
            return None
        if self.redo:
            return self.redo.popleft()
        open_keys = [k for k in self.groups if self.remaining(k)]
        if not open_keys:
            return None
        busy = len(self.inflight) >= self.ncpu
        unknown = [k for k in open_keys if not self.costs[k].known]
        if unknown:
            if busy:
                return None  # nothing to size queued tasks with yet
            # First wave of a short sweep: an even split over the free CPUs, as a direct run
            # would do (one task per CPU, paying the batch overhead once).
            key = max(unknown, key=self.remaining)
            r = self.remaining(key)
            if r <= self.ncpu * FIRST_CHUNK_CAP:
                return self._even_split(key)
            # A long sweep: learn its costs from small chunks first (results and an ETA come
            # soon even if points are slow; the extra batch overheads are few against the total).
            return self._take(key, PROBE_POINTS)

        fits = {k: self.costs[k].fit() for k in open_keys}
        work = sum(fits[k][1] * self.remaining(k) for k in open_keys)
        key = max(open_keys, key=lambda k: fits[k][1] * self.remaining(k))
        a, b = fits[key]
        r = self.remaining(key)
        if not self.costs[key].fitted and r <= self.ncpu * FIRST_CHUNK_CAP:
            # Costs seen, but a and b not told apart (e.g. a previous short run split evenly):
            # a short rest is split evenly over the free CPUs, as in the first wave.
            return None if busy else self._even_split(key)
        lanes = self.lanes(now)
        slot = min(lanes)
        end = waterfill(lanes, work, max(f[0] for f in fits.values()))
        final = min(MAX_TASK_SECONDS, max(FINAL_ROUND_TASKS * self.target_task_seconds, FINAL_ROUND_OVERHEADS * a))
        if end - slot <= final:
            # Final round: this lane's share of the water-filled remaining work.
            if busy:
                return None  # size it when a CPU is actually free, with the latest estimates
            n = math.ceil(max(end - slot - a, b) / b)
            if slot + a + b * r <= end + 0.1 * a or r - n < n // 4:
                # Taking all of it ends no later than sharing it (which costs another a), or
                # what would be left is a crumb (the fit's a may not be known yet).
                n = r
        elif not self.costs[key].fitted:
            # No a/b split yet (one chunk size measured): double the size, which also gives the
            # fit a second size; a = 0 makes b an overestimate, so the cap errs short.
            n = min(2 * self.costs[key].max_n, math.ceil(MAX_TASK_SECONDS / b), math.ceil((end - slot) / 2 / b))
        else:
            w = min(MAX_TASK_SECONDS, max(self.target_task_seconds, OVERHEAD_FACTOR * a))
            # never more than half this CPU's share of what is left (factoring: the last chunks
            # get smaller, so their timing noise cannot leave a CPU idle for long)
            w = min(w, max(final, (end - slot) / 2))
            n = math.ceil(max(w - a, b) / b)
        return self._take(key, max(1, min(n, r)))


# ============================================================================ streaming
STREAM_MAX_TASK_SECONDS = 2.0  # streaming scheduler: tasks of ~0.2-2 s (issue 9), so a cancel or
# a newly submitted sweep never waits long for a free CPU
STREAM_SHARED_TASK_SECONDS = 0.25  # ... and of ~0.25 s while several sweeps share the CPUs, so a
# sweep's chunk never waits long behind another sweep's
SHARED_OVERHEAD_FACTOR = 5.0  # ... but of >= 5 a (batch overhead <= 20 %)
STREAM_MIN_PIECE_SECONDS = 0.1  # a last round is cut into halving pieces down to ~this: the
# results written after the CPUs stop are one small piece's (writing a row costs ~1/10 of computing
# a Fig. 1 point, so halving a piece of S seconds saves ~S/20 of tail for one more task's a, Ray's
# round trip and the service's transactions, measured ~20-30 ms per chunk on a loaded machine)
PIECE_OVERHEAD_FACTOR = 10.0  # ... and of >= 10 a (batch overhead <= 10 %)
EXPRESS_TASK_SECONDS = 0.25  # the longest chunk sent to the express lane (workers.dispatch.TaskStream):
# it oversubscribes the CPUs by one process for that long, so a newcomer's first results come now


def stream_task_seconds(cost: Cost, sharing: int = 1) -> float:
    """The longest task the streaming scheduler submits: STREAM_MAX_TASK_SECONDS for a sweep alone,
    short while `sharing` > 1 sweeps have points to submit."""
    if sharing <= 1:
        return STREAM_MAX_TASK_SECONDS
    a = cost.overhead() if cost.known else 0.0
    return min(STREAM_MAX_TASK_SECONDS, max(STREAM_SHARED_TASK_SECONDS, SHARED_OVERHEAD_FACTOR * a))


def stream_max_points(cost: Cost, sharing: int = 1) -> int:
    """Points in a task of stream_task_seconds, by the mean seconds per point (>= b: robust to a
    fit that splits a noisy load into a large a and a small b); cost known."""
    b = cost.fit()[1]
    return max(1, math.ceil(stream_task_seconds(cost, sharing) / max(b, cost.st / max(cost.sn, 1e-12))))


def express_max_points(cost: Cost) -> int:
    """Points in an express chunk of <= EXPRESS_TASK_SECONDS, by the mean seconds per point (>= b,
    batch overhead included: errs short); 0 while the cost is unknown (its length cannot be bounded)."""
    if not cost.known:
        return 0
    a, b = cost.fit()
    mean = max(b, cost.st / max(cost.sn, 1e-12))
    return max(0, math.floor((EXPRESS_TASK_SECONDS - a) / mean))


def stream_chunk_size(
    cost: Cost,
    remaining: int,
    ncpu: int,
    own_in_flight: int,
    target_task_seconds: float = 0.5,
    in_flight_seconds: float = 0.0,
    sharing: int = 1,
) -> int:
    """Points for the next chunk of one shape of one sweep under the streaming scheduler
    (service.scheduling), which refills every freed slot with some sweep's next chunk; 0 = wait.

    - cost unknown: a short rest (<= ncpu x FIRST_CHUNK_CAP points) is split evenly over the CPUs
      (one batch overhead per CPU, as a direct run); a longer one starts with PROBE_POINTS-point
      probes. Nothing beyond one task per CPU while the cost is unknown.
    - one chunk size measured: double it (the a + b·n fit needs two sizes).
    - fitted: chunks of max(target, 20 a) seconds, at most STREAM_MAX_TASK_SECONDS, and at most
      half a CPU's share of the work left; once that share is short (the last round), a sweep alone
      takes halving pieces (half a CPU's share of what is left to submit), queued as the chunks
      before them, while they are >= STREAM_MIN_PIECE_SECONDS and >= PIECE_OVERHEAD_FACTOR a; then
      nothing more is queued and each CPU that frees up takes its water-filled share of the rest
      (counting what the sweep's chunks in flight still need, `in_flight_seconds`: a running
      chunk's estimate less the time it has run), so the CPUs end together (a crumb is taken
      along).
    - `sharing` sweeps with points to submit: the sweep's fair share is ceil(ncpu / sharing) CPUs
      (its lanes: the final round is water-filled over them, so a small sweep behind a big one runs
      as it would alone on its share of the cluster) and tasks are short
      (stream_task_seconds), so no sweep waits long for a CPU another one holds; a last round's
      piece may be as long as a sweep's alone (one turn on a CPU for a small sweep)."""
    if remaining <= 0:
        return 0
    if not cost.known:
        if own_in_flight >= ncpu:
            return 0
        if remaining <= ncpu * FIRST_CHUNK_CAP:
            return math.ceil(remaining / (ncpu - own_in_flight))
        return min(PROBE_POINTS, remaining)
    a, b = cost.overhead(), cost.fit()[1]
    lanes = max(1, math.ceil(ncpu / max(sharing, 1)))  # CPUs of the sweep's fair share
    cap = stream_task_seconds(cost, sharing)
    share = b * remaining / lanes  # a CPU's share of the work left (seconds)
    final = max(FINAL_ROUND_TASKS * target_task_seconds / 2, 2 * a)
    piece = b * remaining / (2 * lanes)  # factoring: half a lane's share of what is left to submit
    if share <= final and sharing <= 1 and piece >= max(STREAM_MIN_PIECE_SECONDS, PIECE_OVERHEAD_FACTOR * a):
        # The last round of a sweep alone, while its pieces are long: halving pieces, queued as
        # steady chunks are (no CPU waits for the driver between two of them), so results are
        # written while the CPUs compute and the pieces that end the sweep are short. (Not while
        # sharing: a sweep's next piece would wait for its turn behind the other sweeps' chunks.)
        n = min(math.ceil(piece / b), stream_max_points(cost, sharing))
    elif share <= final:
        # Its end: nothing is queued (a piece is sized when a CPU frees up, with the latest
        # costs), so the CPUs finish together.
        if own_in_flight >= lanes:
            return 0
        # water-filling: the rest and the sweep's chunks in flight (`in_flight_seconds`, their
        # estimated cost) end together over its lanes; this free CPU takes its share
        n = math.ceil((b * remaining + in_flight_seconds) / lanes / b)
        # tasks of <= STREAM_MAX_TASK_SECONDS even while sharing: a short cap would cut a small
        # sweep's last round into pieces that each wait for another turn on a CPU
        n = min(n, stream_max_points(cost))
        # no piece of < STREAM_MIN_PIECE_SECONDS / 4 (the rest is taken whole instead): when the
        # chunks in flight have run past their estimates, each freed CPU would take half of what
        # is left, down to 1-point pieces that each pay a task's overhead and a round trip
        n = max(n, math.ceil(STREAM_MIN_PIECE_SECONDS / 4 / b))
    else:
        if not cost.fitted:
            # double the size (the fit needs two), but never past this CPU's even share of the
            # rest: a chunk bigger than that leaves the other CPUs idle at the end
            n = min(2 * cost.max_n, math.ceil(cap / b), math.ceil(remaining / lanes))
        else:
            w = min(cap, max(target_task_seconds, OVERHEAD_FACTOR * a))
            w = min(w, max(final, share / 2))
            n = math.ceil(max(w - a, b) / b)
        n = min(n, stream_max_points(cost, sharing))  # tasks of <= stream_task_seconds
    if remaining - n < max(1, n // 4):
        n = remaining  # a crumb is taken along (<= 1.25 x the cap)
    return max(1, min(n, remaining))
