"""A controllable stand-in for workers.dispatch.TaskStream (the brief's "controllable dispatcher"):
chunks finish only when the test releases them, in the order a FIFO cluster of `cpus` CPUs would
run them; their points are computed by the real core at release, and each task costs a + b·n
LOGICAL seconds (its CPU seconds for fair share and the cost model), so scheduling decisions do not
depend on this machine's speed.

With `express=True` it has TaskStream's express lane: one more task, started at once whatever the
CPUs hold, one at a time (`express_free`); the test can keep it shut (`express_open = False`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from flowsweep.core import run_points
from flowsweep.workers.dispatch import Done, PointOutcome

_ALL = object()


@dataclass
class GatedTask:
    tag: object
    chunk: object
    started: bool = False
    cancelled: bool = False
    started_at: float = 0.0  # logical seconds (release_next's clock)
    ends_at: float = 0.0
    express: bool = False


class GatedStream:
    def __init__(self, cpus: int = 2, a: float = 0.01, b: float = 0.01, express: bool = False):
        self._cpus = cpus
        self.express_open = express
        self.a, self.b = a, b
        self.tasks: list[GatedTask] = []  # in flight, submission order
        self._ready: deque[Done] = deque()
        self._started: list = []
        self.log: list[tuple[str, object, int]] = []  # ("submit"|"done"|"cancel"|"preempt", tag, points)
        self.closed = False
        self.now = 0.0  # logical clock advanced by release_next (release leaves it alone)

    # ---- the TaskStream interface
    def cpus(self) -> int:
        return self._cpus

    def in_flight(self, tag=_ALL, express=True) -> int:
        if tag is _ALL:
            return sum(1 for t in self.tasks if not t.express)
        return sum(1 for t in self.tasks if t.tag == tag and not t.cancelled and (express or not t.express))

    def running(self, tag=_ALL) -> int:
        return sum(1 for t in self.tasks if t.started and not t.express and (tag is _ALL or t.tag == tag))

    def express_free(self) -> bool:
        return self.express_open and not any(t.express for t in self.tasks)

    def submit(self, chunk, tag, expected=None, express=False) -> None:
        assert not express or self.express_free()
        task = GatedTask(tag, chunk, express=express)
        self.tasks.append(task)
        self.log.append(("express" if express else "submit", tag, len(chunk.ids)))
        if express:
            task.started = True
            task.started_at, task.ends_at = self.now, self.now + self.a + self.b * len(chunk.ids)
            self._started.append((tag, chunk))
        self._start_free()

    def take_started(self):
        out, self._started = self._started, []
        return out

    def cancel(self, tag) -> int:
        n = 0
        for t in self.tasks:
            if t.tag == tag and not t.cancelled and not t.express:  # (as TaskStream: left to finish)
                t.cancelled = True
                n += 1
        self.log.append(("cancel", tag, n))
        return n

    def preempt(self, which):
        out = [
            (t.tag, t.chunk) for t in self.tasks if not t.started and not t.cancelled and which(t.tag)
        ]  # (express: started)
        self.tasks = [t for t in self.tasks if t.started or t.cancelled or not which(t.tag)]
        for tag, chunk in out:
            self.log.append(("preempt", tag, len(chunk.ids)))
        return out

    def wait(self, timeout: float):
        # cancelled tasks leave at once (their CPU is free for the next one)
        self.tasks = [t for t in self.tasks if not t.cancelled]
        self._start_free()
        out = list(self._ready)
        self._ready.clear()
        return out

    def close(self) -> None:
        self.closed = True
        self.tasks.clear()

    # ---- the test's controls
    def _start_free(self) -> None:
        running = self.running()
        for t in self.tasks:
            if running >= self._cpus:
                break
            if not t.started and not t.cancelled:
                t.started = True
                t.started_at, t.ends_at = self.now, self.now + self.a + self.b * len(t.chunk.ids)
                running += 1
                self._started.append((t.tag, t.chunk))

    def release(self, n: int = 1, express: bool = False) -> list[Done]:
        """The n oldest running tasks on the CPUs (`express`: the express lane's) finish (computed
        by core now); returns their Done."""
        out = []
        for _ in range(n):
            running = [t for t in self.tasks if t.started and not t.cancelled and t.express == express]
            if not running:
                break
            t = running[0]
            self.tasks.remove(t)
            results = run_points(t.chunk.cfgs)
            seconds = self.a + self.b * len(t.chunk.ids)
            done = Done(
                t.tag,
                t.chunk,
                [PointOutcome(pid, r, "gated") for pid, r in zip(t.chunk.ids, results)],
                seconds,
                (len(t.chunk.ids), seconds),
            )
            self._ready.append(done)
            self.log.append(("done", t.tag, len(t.chunk.ids)))
            out.append(done)
            self._start_free()
        return out

    def release_next(self) -> GatedTask | None:
        """The running task that ends first in logical time finishes (the CPUs run in parallel,
        each task for a + b·n logical seconds); the clock moves to its end. Returns the task."""
        running = [t for t in self.tasks if t.started and not t.cancelled]
        if not running:
            return None
        t = min(running, key=lambda x: x.ends_at)
        self.now = t.ends_at
        self.tasks.remove(t)
        results = run_points(t.chunk.cfgs)
        seconds = self.a + self.b * len(t.chunk.ids)
        self._ready.append(
            Done(
                t.tag,
                t.chunk,
                [PointOutcome(pid, r, "gated") for pid, r in zip(t.chunk.ids, results)],
                seconds,
                (len(t.chunk.ids), seconds),
            )
        )
        self.log.append(("done", t.tag, len(t.chunk.ids)))
        self._start_free()
        return t

    def running_sizes(self, tag) -> list[int]:
        """Sizes of the tag's chunks running now (on a CPU or the express lane)."""
        return [len(t.chunk.ids) for t in self.tasks if t.tag == tag and t.started and not t.cancelled]

    def submitted(self, tag=None, express=False) -> list[int]:
        kinds = ("submit", "express") if express else ("submit",)
        return [n for kind, t, n in self.log if kind in kinds and (tag is None or t == tag)]

    def expressed(self, tag=None) -> list[int]:
        return [n for kind, t, n in self.log if kind == "express" and (tag is None or t == tag)]
