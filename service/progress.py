"""Progress of sweeps: completion rate, ETA and the status a person sees.

`sweep_progress(session, sweep_id, runner)` is the one call that returns a sweep's progress
snapshot (status, counts, fraction done, ETA) for the routes, the CLI and the dashboard's events.
The rate is kept in memory by the process that runs the sweep (`ProgressBook`, fed by the result
writer); another replica reports eta None.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from flowsweep.status import ACTIVE_SWEEP_STATUSES, CANCELLING, FINISHED_COUNT_KEYS, SweepStatus

WINDOW_SECONDS = 60.0  # the completion rate is measured over the last minute


class Progress:
    """Completion-rate bookkeeping of one sweep, for eta_seconds."""

    def __init__(self, remaining: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.remaining = remaining
        self._clock = clock
        self.started = clock()
        self.window: deque[tuple[float, int]] = deque()  # (time, n finished) of recent batches

    def add(self, n: int) -> None:
        now = self._clock()
        self.remaining = max(0, self.remaining - n)
        self.window.append((now, n))
        while self.window and now - self.window[0][0] > WINDOW_SECONDS:
            self.window.popleft()

    def rate(self) -> float | None:
        """Points per second over the last WINDOW_SECONDS (or since the sweep started)."""
        if not self.window:
            return None
        now = self._clock()
        t0 = max(self.started, now - WINDOW_SECONDS)
        done = sum(n for t, n in self.window if t >= t0)
        elapsed = now - t0
        return done / elapsed if done and elapsed > 0 else None

    def eta(self) -> float | None:
        if self.remaining == 0:
            return 0.0
        rate = self.rate()
        return None if rate is None else self.remaining / rate


class ProgressBook:
    """Thread-safe Progress per sweep run by this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._by_sweep: dict[int, Progress] = {}

    def track(self, sweep_id: int, remaining: int) -> None:
        with self._lock:
            p = self._by_sweep.get(sweep_id)
            if p is None:
                self._by_sweep[sweep_id] = Progress(remaining, self._clock)
            else:
                p.remaining = remaining

    def add(self, sweep_id: int, n: int) -> None:
        with self._lock:
            p = self._by_sweep.get(sweep_id)
            if p is not None:
                p.add(n)

    def forget(self, sweep_id: int) -> None:
        with self._lock:
            self._by_sweep.pop(sweep_id, None)

    def eta(self, sweep_id: int) -> float | None:
        with self._lock:
            p = self._by_sweep.get(sweep_id)
            return None if p is None else p.eta()


def display_status(status: str, cancel_requested: bool) -> str:
    """The status shown by GET /sweeps/{id}: a running sweep whose cancel was requested shows
    `cancelling` at once, until the runner has stopped its chunks and settles it `cancelled`."""
    if cancel_requested and status in ACTIVE_SWEEP_STATUSES:
        return CANCELLING
    return status


def eta_of(sweep: Any, runner: Any) -> float | None:
    """ETA in seconds of a sweep row: 0 when done, None when unknown here (not running, not run by
    this process, or no point finished yet)."""
    if sweep.status == SweepStatus.DONE:
        return 0.0
    if sweep.status not in ACTIVE_SWEEP_STATUSES or sweep.cancel_requested or runner is None:
        return None
    try:
        eta = runner.eta_seconds(sweep.id)
    except Exception:
        return None
    return None if eta is None else float(eta)


@dataclass
class SweepProgress:
    status: str  # display status (see display_status)
    counts: dict[str, int]  # SPEC counts: pending, running, done, failed, diverged, cached
    progress: float  # finished fraction
    eta_seconds: float | None
    n_points: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def progress_fraction(counts: dict[str, int], n_points: int) -> float:
    """The finished share of a sweep's points (a point reused from cache counts as finished)."""
    return sum(counts[k] for k in FINISHED_COUNT_KEYS) / n_points if n_points else 1.0


def sweep_progress(session: Session, sweep_id: int, runner: Any = None) -> SweepProgress | None:
    """A sweep's progress snapshot, or None when it does not exist."""
    from . import store

    sweep = store.get_sweep(session, sweep_id)
    if sweep is None:
        return None
    counts = store.counts(session, [sweep_id])[sweep_id]
    return SweepProgress(
        display_status(sweep.status, sweep.cancel_requested),
        counts,
        progress_fraction(counts, sweep.n_points),
        eta_of(sweep, runner),
        sweep.n_points,
    )
