"""workers.dispatch.TaskStream on a real local Ray (2 CPUs), with chunks that block until the test
releases them (each waits for its own file to exist) and a logical clock for the task timeout:
what is asserted never depends on how fast this machine is.

Covers issue 9: a cancel takes a tag's chunks out of flight at once and never reports them, while
results computed before the cancel are kept; other tags go on; a task over the timeout is cancelled
and bisected, a single point that times out is failed with a clear message.
"""

from __future__ import annotations

import time
from pathlib import Path

import ray

from flowsweep.core import PointConfig
from flowsweep.workers.dispatch import TaskStream
from flowsweep.workers.planner import Chunk


def gated_remote(gate: Path):
    """A chunk task that runs core only once the file gate/<first seed> exists."""

    @ray.remote(num_cpus=1)
    def gated_chunk(configs):
        import os
        import time as _time

        from flowsweep.core import run_points

        path = os.path.join(str(gate), str(configs[0].seed))
        while not os.path.exists(path):
            _time.sleep(0.01)
        t0 = _time.perf_counter()
        results = run_points(configs)
        return results, ray.get_runtime_context().get_node_id(), _time.perf_counter() - t0

    return gated_chunk


def chunk(seeds) -> Chunk:
    cfgs = [PointConfig("asymmetric", 2, 3, 4, 0.05, 20, record_every=5, seed=s) for s in seeds]
    return Chunk(cfgs[0].shape_key(), [1000 + s for s in seeds], cfgs)


def open_gate(gate: Path, seed: int) -> None:
    (gate / str(seed)).touch()


def collect_until(stream, predicate, dones, what, timeout=60.0):
    """Call stream.wait until predicate(dones) holds (a deadline only against hanging forever)."""
    deadline = time.monotonic() + timeout
    while not predicate(dones):
        assert time.monotonic() < deadline, (
            f"never got {what}: {[(d.tag, d.chunk.ids) for d in dones]}; "
            f"in flight {[(f.tag, f.chunk.ids, f.cancelled) for f in stream._inflight.values()]}"
        )
        dones.extend(stream.wait(0.05))
    return dones


def test_cancel_drops_a_tag_in_flight_keeps_what_was_computed_and_others_go_on(local_ray, tmp_path):
    stream = TaskStream(remote=gated_remote(tmp_path))
    assert stream.cpus() == 2
    stream.submit(chunk([1, 2]), "A")
    stream.submit(chunk([3, 4]), "A")
    stream.submit(chunk([5, 6]), "B")
    assert stream.in_flight() == 3 and stream.in_flight("A") == 2
    started = stream.take_started()
    assert [(tag, c.ids) for tag, c in started] == [("A", [1001, 1002]), ("A", [1003, 1004])]

    # A's first chunk finishes, but is not collected yet when the cancel comes
    open_gate(tmp_path, 1)
    ref = next(r for r, f in stream._inflight.items() if f.chunk.ids == [1001, 1002])
    ray.wait([ref], timeout=60)
    assert stream.cancel("A") == 2
    assert stream.in_flight("A") == 0  # at once: nothing of A is waited for any more
    open_gate(tmp_path, 5)  # (A's second chunk is never released: only the cancel ends it)
    dones = collect_until(stream, lambda d: stream.in_flight() == 0, [], "every task gone")
    got = {(d.tag, tuple(o.point_id for o in d.outcomes)) for d in dones}
    # computed before the cancel: kept; the other chunk of A: never reported; B: reported
    assert got == {("A", (1001, 1002)), ("B", (1005, 1006))}, got
    assert all(o.result.status == "done" for d in dones for o in d.outcomes)
    stream.close()


def test_a_task_over_the_timeout_is_bisected_and_its_points_failed_with_a_message(local_ray, tmp_path):
    t = [0.0]
    stream = TaskStream(remote=gated_remote(tmp_path), task_timeout=100.0, clock=lambda: t[0])
    stream.submit(chunk([10, 11]), "T")  # never released
    assert stream.wait(0.01) == []
    t[0] = 150.0  # past the timeout on the logical clock
    assert stream.wait(0.01) == []  # cancelled (worker killed) and split in two halves
    assert stream.in_flight("T") == 2
    open_gate(tmp_path, 11)  # the second half runs; the first hangs again
    dones = collect_until(stream, lambda d: any(x.outcomes for x in d), [], "the released half")
    assert [(o.point_id, o.result.status) for d in dones for o in d.outcomes] == [(1011, "done")]
    t[0] = 300.0
    dones = collect_until(stream, lambda d: any(x.outcomes for x in d), [], "the timed-out point")
    (o,) = [o for d in dones for o in d.outcomes]
    assert o.point_id == 1010 and o.result.status == "failed"
    assert o.result.error == "TaskTimeout: no result within the task timeout of 100 s"
    assert stream.in_flight() == 0
    stream.close()


def test_preempt_takes_back_only_the_chunks_queued_behind_busy_cpus(local_ray, tmp_path):
    stream = TaskStream(remote=gated_remote(tmp_path))
    for seeds in ([20, 21], [22, 23], [24, 25]):
        stream.submit(chunk(seeds), "A")
    taken = stream.preempt(lambda tag: tag == "A")
    assert [(tag, c.ids) for tag, c in taken] == [("A", [1024, 1025])]  # the third: queued, never started
    assert stream.in_flight() == 2 and stream.in_flight("A") == 2
    stream.submit(chunk([26]), "B")
    for seed in (20, 22, 24, 26):
        open_gate(tmp_path, seed)
    dones = collect_until(stream, lambda d: stream.in_flight() == 0, [], "every task gone")
    reported = sorted(o.point_id for d in dones for o in d.outcomes)
    assert reported == [1020, 1021, 1022, 1023, 1026]
    stream.close()


def test_a_running_task_about_to_finish_is_left_to_finish_not_cancelled(local_ray, tmp_path):
    # Ray 2.60's driver aborts when a cancel races a task's finished reply: a running task
    # expected to end within the margin is not cancelled; its results are reported (kept).
    t = [0.0]
    stream = TaskStream(remote=gated_remote(tmp_path), clock=lambda: t[0])
    stream.submit(chunk([30, 31]), "A", expected=10.0)  # starts at 0 on a free CPU
    stream.submit(chunk([32, 33]), "A", expected=10.0)
    t[0] = 9.8  # both running (2 CPUs), 0.2 s left by the estimate: about to finish
    assert stream.cancel("A") == 0
    assert stream.in_flight("A") == 2  # still waited for
    stream.submit(chunk([34, 35]), "B", expected=10.0)  # queued behind the busy CPUs: cancelled
    assert stream.cancel("B") == 1 and stream.in_flight("B") == 0
    for seed in (30, 32):
        open_gate(tmp_path, seed)
    dones = collect_until(stream, lambda d: stream.in_flight("A") == 0, [], "A's tasks")
    assert sorted(o.point_id for d in dones for o in d.outcomes) == [1030, 1031, 1032, 1033]
    stream.close()


def wait_for_express(stream, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout  # only against hanging forever (the actor warms up)
    while not stream.express_free():
        assert time.monotonic() < deadline, "the express lane never became free"
        time.sleep(0.05)


def test_an_express_chunk_runs_while_every_cpu_is_held_and_a_lost_one_is_resubmitted_once(local_ray, tmp_path):
    stream = TaskStream(remote=gated_remote(tmp_path))
    stream.submit(chunk([40, 41]), "A")
    stream.submit(chunk([42, 43]), "A")  # both CPUs held (their gates stay shut for now)
    wait_for_express(stream)
    node, pid, rss = stream.express_info
    assert pid > 0 and rss > 0 and node
    assert stream.running() == 2 and stream.running("B") == 0
    stream.submit(chunk([44, 45]), "B", express=True)
    assert not stream.express_free()  # one at a time
    assert stream.in_flight() == 2 and stream.in_flight("B") == 1  # it holds no CPU slot
    assert [(tag, c.ids) for tag, c in stream.take_started()][-1] == ("B", [1044, 1045])  # started at once
    open_gate(tmp_path, 44)
    dones = collect_until(stream, lambda d: any(x.tag == "B" for x in d), [], "the express chunk")
    assert [(d.tag, [o.point_id for o in d.outcomes]) for d in dones] == [("B", [1044, 1045])]
    assert stream.in_flight("A") == 2 and stream.running() == 2  # A's chunks still blocked on the CPUs
    # a cancel leaves an express chunk alone (short: it finishes and is kept)
    wait_for_express(stream)
    stream.submit(chunk([46, 47]), "C", express=True)
    assert stream.cancel("C") == 0 and stream.in_flight("C") == 1
    # its process dies (as with a lost node): the chunk goes to the ordinary lane, reported once
    ray.kill(stream._express, no_restart=False)
    for seed in (40, 42, 46):
        open_gate(tmp_path, seed)
    dones = collect_until(stream, lambda d: stream.in_flight() == 0 and stream.in_flight("C") == 0, [], "all")
    reported = sorted(o.point_id for d in dones for o in d.outcomes)
    assert reported == [1040, 1041, 1042, 1043, 1046, 1047]
    wait_for_express(stream)  # restarted, warm again
    stream.close()
