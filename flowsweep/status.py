"""The states of a point and of a sweep (SPEC §4): one definition, imported everywhere a state is named.

`StrEnum`s, like Optuna's `TrialState`: a member *is* its string (`PointStatus.DONE == "done"`), so
it is stored, compared, serialised to JSON and passed as a query parameter as that string. This
module imports nothing of flowsweep's and no third-party package: core, the workers, the server and
the client side all read it.
"""

from __future__ import annotations

from enum import StrEnum


class PointStatus(StrEnum):
    """A point's status. core produces the three finished ones; the service adds pending/running."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # the run raised; its `error` text is kept
    DIVERGED = "diverged"  # non-finite values: a result (with `diverged_at`), not a crash

    def is_finished(self) -> bool:
        """Finished points have a result row."""
        return self in FINISHED_POINT_STATUSES


class SweepStatus(StrEnum):
    """A sweep's status."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_finished(self) -> bool:
        """No point of a finished sweep runs any more."""
        return self in FINISHED_SWEEP_STATUSES


FINISHED_POINT_STATUSES: tuple[PointStatus, ...] = (PointStatus.DONE, PointStatus.FAILED, PointStatus.DIVERGED)
# A finished point whose result another sweep with the same identity reuses (a failure is retried).
REUSABLE_POINT_STATUSES: tuple[PointStatus, ...] = (PointStatus.DONE, PointStatus.DIVERGED)
ACTIVE_SWEEP_STATUSES: tuple[SweepStatus, ...] = (SweepStatus.QUEUED, SweepStatus.RUNNING)
FINISHED_SWEEP_STATUSES: tuple[SweepStatus, ...] = (SweepStatus.DONE, SweepStatus.FAILED, SweepStatus.CANCELLED)
# Shown (never stored) for a queued or running sweep whose cancel was requested, until the runner has
# stopped its chunks and stores `cancelled` (issue 9: the answer to a cancel says so at once).
CANCELLING = "cancelling"

# GET /sweeps/{id} "counts" (SPEC §4): one key per point status, and `cached` for points whose result
# was reused from an earlier sweep (counted there only, whatever the source's status).
CACHED = "cached"
COUNT_KEYS: tuple[str, ...] = (*(s.value for s in PointStatus), CACHED)
# Counts of points that have a result row.
FINISHED_COUNT_KEYS: tuple[str, ...] = (*(s.value for s in FINISHED_POINT_STATUSES), CACHED)
