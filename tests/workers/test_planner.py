"""The chunk planner against a simulated cluster (discrete events, no Ray): tasks cost a + b·n
seconds, P CPUs take queued tasks FIFO. Checks the schedules' shape, not timings of this machine."""

from __future__ import annotations

import heapq
import random

import pytest

from flowsweep.workers.planner import (
    FIRST_CHUNK_CAP,
    MAX_TASK_SECONDS,
    Cost,
    Planner,
    Task,
    stream_chunk_size,
    waterfill,
)


def simulate(n_points, ncpu, a, b, shapes=1, noise=0.0, max_in_flight=None, costs=None, seed=0):
    """Run a sweep through the planner on a simulated cluster. Returns (makespan, ideal, tasks)
    where ideal is a direct run's makespan (one batch per CPU and shape) and tasks lists
    (key, n, start, end)."""
    rng = random.Random(seed)
    groups = {}
    for i in range(n_points):
        ids, cfgs = groups.setdefault(("shape", i % shapes), ([], []))
        ids.append(i)
        cfgs.append(None)
    plan = Planner(groups, ncpu, max_in_flight or 2 * ncpu, 0.5, {} if costs is None else costs)
    now, queue, running, log, serial = 0.0, [], [], [], 0
    max_seen_in_flight = 0

    def fill():
        nonlocal serial, max_seen_in_flight
        while (chunk := plan.next_chunk(now)) is not None:
            task = Task(chunk, serial, now)
            serial += 1
            plan.submitted(task, now)
            queue.append(task)
            max_seen_in_flight = max(max_seen_in_flight, len(plan.inflight))

    def start():
        while queue and len(running) < ncpu:
            task = queue.pop(0)
            n = len(task.chunk.ids)
            seconds = (a + b * n) * (1 + noise * rng.gauss(0, 1))
            heapq.heappush(running, (now + seconds, task.serial, task, seconds, now))

    fill()
    start()
    reported = []
    while running:
        end, _, task, seconds, started = heapq.heappop(running)
        now = end
        plan.finished(task, now, [(len(task.chunk.ids), seconds)])
        reported += task.chunk.ids
        log.append((task.chunk.key, len(task.chunk.ids), started, end))
        fill()
        start()
    assert sorted(reported) == list(range(n_points)), "every point exactly once"
    assert max_seen_in_flight <= (max_in_flight or 2 * ncpu)
    return now, shapes * a + b * n_points / ncpu, log


def test_short_sweep_is_one_task_per_cpu():
    # The e2e benchmark's case: 201 Fig. 1 points on 2 CPUs, per-batch overhead ~0.5 s.
    makespan, ideal, log = simulate(201, 2, a=0.5, b=0.13)
    assert sorted(n for _, n, _, _ in log) == [100, 101]
    assert makespan == pytest.approx(ideal, rel=0.01)


@pytest.mark.parametrize("a,b", [(0.5, 0.13), (0.4, 0.02), (0.01, 0.001), (0.0, 1.0)])
def test_long_sweep_keeps_cpus_busy_and_ends_together(a, b):
    makespan, ideal, log = simulate(20000, 2, a=a, b=b, noise=0.05)
    assert makespan <= 1.10 * ideal
    first_wave, rest = log[:2], log[2:]
    assert all(n <= FIRST_CHUNK_CAP for _, n, _, _ in first_wave)
    ends = sorted(end for _, _, _, end in log)
    # the two CPUs' last tasks end close together (no CPU idles through a long last chunk)
    assert ends[-1] - ends[-2] <= 0.05 * makespan
    # chunks stay within the streaming cap, with the overhead amortised
    assert max((a + b * n) for _, n, _, _ in rest) <= MAX_TASK_SECONDS * 1.3


def test_many_shapes_many_cpus():
    makespan, ideal, log = simulate(30000, 16, a=0.5, b=0.02, shapes=10, noise=0.05)
    assert makespan <= 1.15 * ideal
    assert {key for key, *_ in log} == {("shape", i) for i in range(10)}


def test_known_costs_skip_the_first_wave():
    costs: dict = {}
    simulate(2000, 2, a=0.5, b=0.05, costs=costs)
    assert costs[("shape", 0)].known
    makespan, ideal, log = simulate(300, 2, a=0.5, b=0.05, costs=costs)
    # sized from the model straight away (no even first split of 150 + 150 points)
    assert sorted(n for _, n, _, _ in log) != [150, 150]
    assert len(log) <= 4 and makespan <= 1.1 * ideal


def test_second_short_run_after_an_even_split_is_split_evenly_again():
    # The service's runner keeps one Dispatcher: a second short sweep of a shape whose only
    # samples are the even split's (100 and 101 points: a and b not separable).
    costs: dict = {}
    simulate(201, 2, a=0.4, b=0.04, costs=costs)
    assert costs[("shape", 0)].known and not costs[("shape", 0)].fitted
    makespan, ideal, log = simulate(201, 2, a=0.4, b=0.04, costs=costs)
    assert sorted(n for _, n, _, _ in log) == [100, 101]


def test_tiny_sweeps():
    for n in (1, 2, 3):
        makespan, ideal, log = simulate(n, 2, a=0.5, b=0.1)
        assert len(log) == min(n, 2)


def test_cost_fit_recovers_overhead_and_slope():
    c = Cost()
    for n in (10, 40, 20, 80):
        c.add(n, 0.5 + 0.02 * n)
    a, b = c.fit()
    assert a == pytest.approx(0.5, abs=0.01) and b == pytest.approx(0.02, rel=1e-6)
    # many equal-size chunks later (old samples decayed away) the fit is kept, not lost
    for _ in range(100):
        c.add(50, 0.5 + 0.02 * 50)
    assert c.fit() == pytest.approx((a, b), rel=1e-3)
    one = Cost()
    one.add(10, 1.0)
    assert not one.fitted and one.fit()[1] == pytest.approx(0.1)  # a = 0: b overestimated


def test_waterfill_levels_the_lanes():
    e = waterfill([0.0, 4.0], work=6.0, a=1.0)
    assert (e - 0.0 - 1.0) + (e - 4.0 - 1.0) == pytest.approx(6.0)
    assert waterfill([0.0, 100.0], work=6.0, a=1.0) == pytest.approx(7.0)  # busy lane left out


def test_cost_cache_keeps_a_runs_own_shapes_and_evicts_the_least_recent_others():
    from collections import OrderedDict

    from flowsweep.workers.dispatch import _make_room

    costs = OrderedDict((i, f"model {i}") for i in range(6))
    _make_room(costs, {0: None, 1: None, 10: None, 11: None}, limit=6)
    # 0 and 1 become the most recent; two new shapes need two slots: 2 and 3 go
    assert list(costs) == [4, 5, 0, 1]
    # a run with more shapes than the cache holds, all known, keeps every model it uses
    costs = OrderedDict((i, f"model {i}") for i in range(10))
    _make_room(costs, dict.fromkeys(range(10)), limit=5)
    assert list(costs) == list(range(10))


# --- the streaming scheduler's chunk sizes -------------------------------------------------------


def _cost(a: float, b: float) -> Cost:
    cost = Cost()
    for n in (10, 40, 10, 40):
        cost.add(n, a + b * n)
    assert cost.fitted
    return cost


def test_stream_chunks_probe_first_then_split_evenly_when_short():
    from flowsweep.workers.planner import PROBE_POINTS, stream_chunk_size

    unknown = Cost()
    assert stream_chunk_size(unknown, 100_000, 2, 0) == PROBE_POINTS  # a long sweep: probes
    assert stream_chunk_size(unknown, 100_000, 2, 2) == 0  # none queued while unknown
    assert stream_chunk_size(unknown, 201, 2, 0) == 101  # short: even split, as direct
    assert stream_chunk_size(unknown, 100, 2, 1) == 100  # ... over the free CPUs


def test_stream_chunks_last_about_the_target_and_never_much_over_two_seconds():
    from flowsweep.workers.planner import STREAM_MAX_TASK_SECONDS, stream_chunk_size

    cheap = _cost(0.001, 0.001)  # 1 ms per point, tiny overhead: ~0.5 s chunks
    n = stream_chunk_size(cheap, 1_000_000, 2, 0, 0.5)
    assert 0.4 <= cheap.seconds(n) <= 0.6
    heavy_overhead = _cost(0.5, 0.001)  # 20 a = 10 s would keep overhead at 5 %: capped at 2 s
    n = stream_chunk_size(heavy_overhead, 1_000_000, 2, 0, 0.5)
    assert heavy_overhead.seconds(n) <= STREAM_MAX_TASK_SECONDS + 0.01
    # the last round, while a piece would still be long: halving pieces (half a CPU's share of what
    # is left), queued like steady chunks (a CPU does not wait for the driver between two of them)
    assert stream_chunk_size(cheap, 800, 2, 0, 0.5) == 200
    assert stream_chunk_size(cheap, 600, 2, 3, 0.5) == 150
    # its end (a piece would be < STREAM_MIN_PIECE_SECONDS): what is left split over the CPUs, a
    # crumb taken along, never more than what is left
    assert stream_chunk_size(cheap, 180, 2, 0, 0.5) == 90
    assert stream_chunk_size(cheap, 3, 2, 0, 0.5) == 3  # not split into pieces of < 25 ms
    # chunks in flight past their estimates: a freed CPU does not take half of a short rest (each
    # CPU that frees up would take half of what is left, down to 1-point pieces)
    assert stream_chunk_size(cheap, 40, 2, 1, 0.5, in_flight_seconds=0.0) == 25
    assert stream_chunk_size(cheap, 15, 2, 1, 0.5, in_flight_seconds=0.0) == 15
    assert stream_chunk_size(cheap, 1, 2, 1, 0.5) == 1
    # ... while the sweep occupies every CPU: not queued (sized when a CPU frees up), and never
    # taken whole by one CPU while another could share it
    assert stream_chunk_size(cheap, 180, 2, 2, 0.5) == 0
    # water-filled with the sweep's chunks in flight: a 181-point sweep of known cost is split
    # 91 + 90 over 2 free CPUs (the second piece counts the first, just submitted)
    first = stream_chunk_size(cheap, 181, 2, 0, 0.5)
    assert first == 91
    assert stream_chunk_size(cheap, 90, 2, 1, 0.5, in_flight_seconds=cheap.seconds(first)) == 90
    # a CPU freed while another still has 0.06 s to go takes a bit more than half of the rest
    assert stream_chunk_size(cheap, 120, 2, 1, 0.5, in_flight_seconds=0.06) == 90
    # one size measured (a previous sweep split 101 + 100), slow points (the rest is not yet a last
    # round): the doubled size is capped at a CPU's even share, not 2 x 101 (cut to 2 s) + 78 later
    slow_unfitted = Cost()
    slow_unfitted.add(101, 1.6)
    slow_unfitted.add(100, 1.6)
    assert not slow_unfitted.fitted
    assert stream_chunk_size(slow_unfitted, 201, 2, 0, 0.5) == 101
    # a noisy fit (large a, tiny b) cannot make a chunk much longer than 2 s of mean per-point time
    noisy = Cost()
    for n, t in ((16, 0.5), (32, 0.52), (16, 0.49), (32, 0.53)):
        noisy.add(n, t)
    n = stream_chunk_size(noisy, 10_000, 2, 2, 0.5)
    assert n * noisy.st / noisy.sn <= 1.25 * STREAM_MAX_TASK_SECONDS


def test_stream_chunks_are_short_and_spread_over_a_fair_share_while_sweeps_share_the_cpus():
    from flowsweep.workers.planner import (
        SHARED_OVERHEAD_FACTOR,
        STREAM_MAX_TASK_SECONDS,
        STREAM_SHARED_TASK_SECONDS,
        stream_chunk_size,
        stream_task_seconds,
    )

    fig1_like = _cost(0.05, 0.003)  # 20 a = 1 s chunks alone
    alone = stream_chunk_size(fig1_like, 100_000, 2, 0, 0.5)
    shared = stream_chunk_size(fig1_like, 100_000, 2, 0, 0.5, sharing=2)
    assert 0.9 <= fig1_like.seconds(alone) <= 1.1
    assert 0.2 <= fig1_like.seconds(shared) <= STREAM_SHARED_TASK_SECONDS + 0.003
    # with a large batch overhead a, shared tasks are aimed at SHARED_OVERHEAD_FACTOR a (overhead
    # <= 20 %), longer than STREAM_SHARED_TASK_SECONDS (the mean seconds per point of its small
    # samples, overhead included, errs short)
    heavy = _cost(0.2, 0.001)
    assert stream_task_seconds(heavy, 2) == pytest.approx(SHARED_OVERHEAD_FACTOR * heavy.fit()[0])  # a: + Ray's cost
    assert stream_task_seconds(heavy, 1) == STREAM_MAX_TASK_SECONDS
    n = stream_chunk_size(heavy, 100_000, 2, 0, 0.5, sharing=2)
    assert STREAM_SHARED_TASK_SECONDS < heavy.seconds(n) <= SHARED_OVERHEAD_FACTOR * 0.2
    # the last round of a small sweep sharing 2 CPUs with another: its fair share is one CPU, so it
    # is one task (a second one would wait behind the other sweep's chunks); alone: an even split
    assert stream_chunk_size(fig1_like, 30, 2, 0, 0.5) == 15
    assert stream_chunk_size(fig1_like, 30, 2, 0, 0.5, sharing=2) == 30
    assert stream_chunk_size(fig1_like, 30, 2, 1, 0.5, sharing=2) == 0  # nothing queued beyond it
    # ... also when it is longer than a shared task (slow points): one turn on a CPU, not pieces
    # that each wait behind the other sweep's chunks
    slow = _cost(0.05, 0.012)
    assert slow.seconds(30) > STREAM_SHARED_TASK_SECONDS
    assert stream_chunk_size(slow, 30, 2, 0, 0.5, sharing=2) == 30
    # 2 sweeps on 3 CPUs: 2 lanes each (the lanes of all sweeps cover every CPU): with one task in
    # flight, a second one, half of the rest
    assert stream_chunk_size(fig1_like, 30, 3, 1, 0.5, sharing=2) == 15
    assert stream_chunk_size(fig1_like, 30, 3, 2, 0.5, sharing=2) == 0


def test_near_equal_chunk_sizes_do_not_refit_the_batch_overhead():
    """Steady chunks of nearly one size say nothing about a: timing noise on them (here the smaller
    chunks happened to run slow) would fit a large a, and with it chunks of >= 20 a seconds that a
    sweep submitted next waits behind. a is refitted only from sizes >= ~10 % apart."""
    cost = Cost()
    for n in (16, 16, 32, 32, 64, 64):
        cost.add(n, 0.006 + 0.002 * n)
    for i in range(80):  # (the probes' samples decay away)
        n = 240 if i % 2 else 260
        cost.add(n, 0.55 if n == 240 else 0.57)  # true cost 0.49 and 0.53 s
    a, _ = cost.fit()
    assert a < 0.1  # a fit on the last samples alone would say 0.31 s


def test_noisy_similar_chunks_do_not_inflate_the_streamed_overhead():
    """Measured on a loaded 2-CPU machine (Fig. 1 points, seconds): probes, then steady chunks of
    similar sizes whose timings vary ~2x. The fit on all of them says a = 47 ms (chunks of >= 20 a:
    837 points, one task per CPU); streamed chunks are sized with the probes' a (~3 ms): ~0.5 s."""
    cost = Cost()
    probes = [(16, 23), (16, 26), (32, 58), (32, 76), (32, 64), (32, 72), (243, 338), (187, 341), (193, 325)]
    steady = [(185, 356), (259, 296), (194, 236), (145, 192), (302, 467), (133, 114), (347, 422)]
    steady += [(347, 459), (327, 315), (245, 455), (184, 275), (252, 186), (299, 323)]
    for n, ms in probes + steady:
        cost.add(n, ms / 1000)
    a, b = cost.fit()
    assert a > 0.03  # the noisy fit this guards against
    assert cost.overhead() < 0.01
    n = stream_chunk_size(cost, 2001, 2, 0, 0.5)
    assert 0.4 <= cost.overhead() + b * n <= 0.6
