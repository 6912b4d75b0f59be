"""Dispatcher on a real local Ray (2 CPUs): exactly-once delivery, statuses, equality with core run
directly, shape-grouped chunks, a worker killed mid-run, cancel (with chunks that block until the test
releases them), and init_ray's signal handling."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import ray

from flowsweep.core import METRIC_FIELDS, PointConfig, run_points
from flowsweep.workers.dispatch import Dispatcher, PointOutcome
from flowsweep.workers.runtime import init_ray, ray_status

# --- helpers -------------------------------------------------------------------------------------


def small_sweep() -> list[tuple[int, PointConfig]]:
    """Three shape groups of cheap points (k = 4 and 6; seeds x init scales), one diverging point
    (huge init, eta 0.9) and one invalid point (asymmetric needs n >= m) that core marks failed."""
    cfgs = [
        PointConfig("asymmetric", 2, 3, k, 0.05, 60, record_every=5, seed=s, init_scale=sc)
        for k in (4, 6)
        for sc in (0.1, 0.5)
        for s in range(12)
    ]
    cfgs += [PointConfig("asymmetric", 2, 3, 4, 0.05, 30, record_every=5, seed=s) for s in range(6)]
    cfgs.append(PointConfig("asymmetric", 2, 3, 4, 0.9, 60, record_every=5, init_scale=10.0))
    cfgs.append(PointConfig("asymmetric", 4, 3, 4, 0.05, 60, record_every=5))
    # point ids deliberately not 0..N-1: the dispatcher must carry the caller's ids through
    return [(1000 + 7 * i, c) for i, c in enumerate(cfgs)]


def raylet_children(title: str) -> list[int]:
    """PIDs of this driver's Ray worker processes whose title starts with `title` (found via /proc,
    children of our own raylet only: other Rays on the machine are never touched)."""
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == raylet and cmd.startswith(title):
            pids.append(int(p.name))
    return pids


class Collector:
    """on_results sink that records every call (and may flip a cancel flag)."""

    def __init__(self) -> None:
        self.calls: list[list[PointOutcome]] = []
        self.first = threading.Event()

    def __call__(self, outcomes: list[PointOutcome]) -> None:
        assert threading.current_thread() is self.thread, "on_results must run in the caller's thread"
        self.calls.append(outcomes)
        self.first.set()

    @property
    def outcomes(self) -> list[PointOutcome]:
        return [o for call in self.calls for o in call]

    def run(self, dispatcher: Dispatcher, points, cancelled=lambda: False):
        self.thread = threading.current_thread()
        return dispatcher.run(points, self, cancelled)


def assert_exactly_once(outcomes: list[PointOutcome], points) -> dict[int, PointOutcome]:
    counts = Counter(o.point_id for o in outcomes)
    dupes = {pid: c for pid, c in counts.items() if c > 1}
    assert not dupes, f"points reported more than once: {dupes}"
    assert set(counts) == {pid for pid, _ in points}
    return {o.point_id: o for o in outcomes}


def same_metrics(a: dict, b: dict) -> bool:
    """Bit-identical metrics (None == None, floats compared exactly)."""
    return a.keys() == b.keys() and all(
        (x is None and y is None) or (x is not None and y is not None and (x == y or (math.isnan(x) and math.isnan(y))))
        for x, y in ((a[k], b[k]) for k in a)
    )


# --- tests ---------------------------------------------------------------------------------------


def test_init_ray_restores_sigterm_handler_and_reports_status(local_ray):
    assert local_ray["sigterm_after_init"] is local_ray["sentinel"]
    assert local_ray["status"] == {"nodes": 1, "cpus": 2}
    init_ray()  # idempotent: no second Ray, no error
    assert ray_status() == {"nodes": 1, "cpus": 2}
    assert signal.getsignal(signal.SIGTERM) is local_ray["sentinel"]


def test_sweep_points_come_back_once_equal_to_core(local_ray):
    points = small_sweep()
    sink = Collector()
    stats = sink.run(Dispatcher(), points)
    by_id = assert_exactly_once(sink.outcomes, points)
    assert stats.n_points == stats.n_reported == len(points)
    assert stats.n_failed_tasks == 0 and not stats.cancelled

    direct = run_points([c for _, c in points])
    for (pid, cfg), ref in zip(points, direct):
        got = by_id[pid]
        assert got.result.config == cfg
        assert got.result.status == ref.status, (cfg, got.result.error)
        assert got.result.error == ref.error
        assert same_metrics(got.result.metrics, ref.metrics), (cfg, got.result.metrics, ref.metrics)
        if ref.curves is not None:
            assert np.array_equal(got.result.curves.error, ref.curves.error)
            assert np.array_equal(got.result.curves.singular_values, ref.curves.singular_values)
        assert len(got.worker) == 56 and int(got.worker, 16) >= 0  # a Ray node id in hex
    statuses = Counter(by_id[pid].result.status for pid, _ in points)
    assert statuses == {"done": len(points) - 2, "diverged": 1, "failed": 1}
    assert by_id[points[-1][0]].result.error.startswith("n:")  # core names the field
    assert by_id[points[-2][0]].result.metrics["diverged_at"] is not None

    # one task = one shape group; the largest group was split over the two CPUs
    tasks = defaultdict(set)
    for o in sink.outcomes:
        tasks[o.task].add(o.result.config.shape_key())
    assert all(len(keys) == 1 for keys in tasks.values())
    assert stats.n_shapes == 5
    assert len(tasks) == stats.n_tasks > stats.n_shapes
    assert sum(stats.task_sizes) == len(points)


_DRIVER_PID = os.getpid()


class PoisonConfig(PointConfig):
    """A point whose shape_key raises on a Ray worker, outside core's per-point isolation, so
    run_points raises for its whole chunk (core itself never does)."""

    def shape_key(self):
        if os.getpid() != _DRIVER_PID:
            raise RuntimeError("poison point")
        return super().shape_key()


def test_chunk_that_raises_is_bisected_down_to_the_bad_point(local_ray):
    # the class travels to the workers by value (they cannot import this test module)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        points = [(i, PointConfig("asymmetric", 2, 3, 4, 0.05, 40, record_every=5, seed=i)) for i in range(12)]
        points[7] = (7, PoisonConfig("asymmetric", 2, 3, 4, 0.05, 40, record_every=5, seed=7))
        sink = Collector()
        stats = sink.run(Dispatcher(), points)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    by_id = assert_exactly_once(sink.outcomes, points)
    assert by_id[7].result.status == "failed"
    assert by_id[7].result.error == "RuntimeError: poison point"
    assert by_id[7].result.metrics == dict.fromkeys(METRIC_FIELDS)
    assert all(by_id[i].result.status == "done" for i in range(12) if i != 7)
    assert stats.n_split >= 1 and stats.n_failed_points == 1


def test_empty_input_reports_nothing(local_ray):
    sink = Collector()
    stats = sink.run(Dispatcher(), [])
    assert sink.calls == [] and stats.n_points == 0 and stats.n_tasks == 0


@pytest.mark.parametrize("max_retries", [0, 3])
def test_worker_killed_mid_run_every_point_once(local_ray, tmp_path, max_retries):
    """kill -9 a worker while it runs a chunk (chunks block until the test releases them, so the
    kill lands mid-chunk whatever this machine's speed). With Ray's own retries off
    (max_retries=0) the dispatcher must resubmit the lost chunk itself; with them on, Ray retries it."""
    from test_stream import gated_remote, open_gate

    points = [(i, PointConfig("asymmetric", 2, 3, 4, 0.05, 20, record_every=5, seed=i)) for i in range(160)]
    sink = Collector()
    result = {}
    runner = threading.Thread(
        target=lambda: result.update(
            stats=sink.run(Dispatcher(max_retries=max_retries, remote=gated_remote(tmp_path)), points)
        )
    )
    runner.start()
    killed = None
    try:
        deadline = time.monotonic() + 120  # only against hanging forever
        while killed is None and time.monotonic() < deadline:
            busy = raylet_children("ray::gated_chunk")
            if busy:
                os.kill(busy[0], signal.SIGKILL)  # blocked on its gate: mid-chunk for sure
                killed = busy[0]
            else:
                time.sleep(0.01)
    finally:
        for seed in (0, 80):  # the two chunks (an even split of 160 points of unknown cost)
            open_gate(tmp_path, seed)
        runner.join(120)
    assert killed is not None, "never caught a worker running a chunk"
    assert not runner.is_alive()
    stats = result["stats"]
    assert stats.task_sizes[:2] == [80, 80]
    by_id = assert_exactly_once(sink.outcomes, points)
    assert all(o.result.status == "done" for o in by_id.values())
    if max_retries == 0:
        assert stats.n_failed_tasks >= 1 and stats.n_retried >= 1
    assert stats.n_failed_points == 0


def test_cancel_returns_without_waiting_for_chunks_in_flight(local_ray, tmp_path):
    """Chunks block until the test releases them (test_stream.gated_remote): 200 points of unknown
    cost are split evenly, one chunk per CPU; only the first is released. The cancel comes with its
    results, and run returns with the second chunk still blocked: it was cancelled, not awaited,
    and none of its points is reported."""
    from test_stream import gated_remote, open_gate

    points = [(i, PointConfig("asymmetric", 2, 3, 4, 0.05, 20, record_every=5, seed=i)) for i in range(200)]
    sink = Collector()
    flag = threading.Event()

    def on_results(outcomes):
        sink(outcomes)
        flag.set()

    sink.thread = threading.current_thread()
    open_gate(tmp_path, 0)  # the chunk starting at seed 0 may run; the one at seed 100 never
    stats = Dispatcher(remote=gated_remote(tmp_path)).run(points, on_results, flag.is_set)
    assert stats.cancelled and stats.task_sizes == [100, 100]
    # (run returned although the other chunk is blocked for good: had it waited, it never would)
    assert sorted(o.point_id for o in sink.outcomes) == list(range(100))
