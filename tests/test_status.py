"""flowsweep.status: one definition of the point and sweep states (SPEC §4)."""

from __future__ import annotations

import json

from flowsweep.status import (
    ACTIVE_SWEEP_STATUSES,
    COUNT_KEYS,
    FINISHED_COUNT_KEYS,
    FINISHED_POINT_STATUSES,
    FINISHED_SWEEP_STATUSES,
    REUSABLE_POINT_STATUSES,
    PointStatus,
    SweepStatus,
)


def test_states_are_the_specs_strings():
    # SPEC §4: "status of a sweep: queued, running, done, failed, cancelled. Of a point: pending,
    # running, done, failed, diverged"
    assert [s.value for s in SweepStatus] == ["queued", "running", "done", "failed", "cancelled"]
    assert [s.value for s in PointStatus] == ["pending", "running", "done", "failed", "diverged"]
    assert PointStatus.DONE == "done" and json.dumps({"s": SweepStatus.CANCELLED}) == '{"s": "cancelled"}'
    assert PointStatus("diverged") is PointStatus.DIVERGED


def test_finished_and_active_partition_the_states():
    assert {s for s in PointStatus if s.is_finished()} == set(FINISHED_POINT_STATUSES)
    assert not PointStatus.PENDING.is_finished() and not PointStatus.RUNNING.is_finished()
    assert set(REUSABLE_POINT_STATUSES) < set(FINISHED_POINT_STATUSES)
    assert PointStatus.FAILED not in REUSABLE_POINT_STATUSES  # a failure is retried, never reused
    assert set(ACTIVE_SWEEP_STATUSES) | set(FINISHED_SWEEP_STATUSES) == set(SweepStatus)
    assert not set(ACTIVE_SWEEP_STATUSES) & set(FINISHED_SWEEP_STATUSES)
    assert [s for s in SweepStatus if s.is_finished()] == list(FINISHED_SWEEP_STATUSES)


def test_counts_keys_are_the_point_states_and_cached():
    # SPEC §4 GET /sweeps/{id}: "counts": {"pending", "running", "done", "failed", "diverged", "cached"}
    assert COUNT_KEYS == ("pending", "running", "done", "failed", "diverged", "cached")
    assert set(FINISHED_COUNT_KEYS) == set(COUNT_KEYS) - {"pending", "running"}
