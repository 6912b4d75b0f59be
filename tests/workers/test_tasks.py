"""workers.tasks: core's results as the rows the service stores (ChunkRows), built on the worker.

to_rows (from PointResults) is checked against a plain per-point reference (jsonsafe.finite_or_none
of every metric, codec.encode_curves of every curve) on real core results with a failed, a diverged
and non-finite metrics; columns_to_rows (from core's columnar results: ResultColumns, curves in
blocks) must give the same rows as to_rows of the same results.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from flowsweep.core import PointConfig, run_points
from flowsweep.core.run import run_points_columns
from flowsweep.core.types import METRIC_FIELDS
from flowsweep.jsonsafe import finite_or_none
from flowsweep.status import PointStatus
from flowsweep.workers.codec import CURVES_FORMAT, encode_curves
from flowsweep.workers.tasks import columns_to_rows, to_rows


def results():
    cfgs = [PointConfig("asymmetric", 3, 4, 6, 0.01, 30, record_every=3, seed=s, fit_lambda0=s == 1) for s in range(4)]
    cfgs.append(PointConfig("asymmetric", 3, 4, 6, 0.9, 200, init_scale=30.0, seed=5))  # diverges
    cfgs.append(PointConfig("asymmetric", 3, 4, 6, 2.0, 30, seed=6))  # invalid for gd: failed
    out = run_points(cfgs)
    out[0].metrics["rate_fit"] = float("nan")
    out[0].metrics["speedup"] = np.float64(np.inf)
    out[2].metrics["final_error"] = np.float64(0.5)
    assert {r.status for r in out} == {PointStatus.DONE, PointStatus.DIVERGED, PointStatus.FAILED}
    return out


def test_to_rows_is_the_per_point_reference():
    res = results()
    rows = to_rows(res)
    assert len(rows) == len(res)
    assert rows.statuses == [r.status for r in res]
    assert rows.errors == [r.error for r in res]
    assert rows.wall_seconds == [r.wall_seconds for r in res]
    for f in METRIC_FIELDS:
        want = [finite_or_none(r.metrics.get(f)) for r in res]
        assert rows.metrics[f] == want
        assert [type(v) for v in rows.metrics[f]] == [type(v) for v in want]
    assert rows.metrics["rate_fit"][0] is None and rows.metrics["speedup"][0] is None
    assert rows.blobs == [None if r.curves is None else encode_curves(r.curves) for r in res]
    assert rows.curves_format == CURVES_FORMAT


def as_columns(res):
    """The results as core's columnar form: curves in blocks (the points with curves of equal
    length stacked in one block, the others alone), block_points in each block's row order."""
    by_len: dict[tuple[int, bool], list[int]] = {}
    for i, r in enumerate(res):
        if r.curves is not None:
            by_len.setdefault((len(r.curves.t), r.curves.error_regularized_fit is not None), []).append(i)
    blocks, block_points = [], []
    for (T, fit), idx in by_len.items():
        cs = [res[i].curves for i in idx]
        blocks.append(
            SimpleNamespace(
                t=cs[0].t,
                error=np.stack([c.error for c in cs]),
                error_linear=np.stack([c.error_linear for c in cs]),
                singular_values=np.stack([c.singular_values for c in cs]),
                n_records=np.full(len(cs), T),
                error_regularized_fit=np.stack([c.error_regularized_fit for c in cs]) if fit else None,
                has_fit=np.ones(len(cs), dtype=bool) if fit else None,
            )
        )
        block_points.append(np.array(idx[::-1]))  # rows in any order of the points
        blocks[-1].error = blocks[-1].error[::-1]
        blocks[-1].error_linear = blocks[-1].error_linear[::-1]
        blocks[-1].singular_values = blocks[-1].singular_values[::-1]
        if fit:
            blocks[-1].error_regularized_fit = blocks[-1].error_regularized_fit[::-1]
    return SimpleNamespace(
        configs=[r.config for r in res],
        status=[r.status for r in res],
        error=[r.error for r in res],
        wall_seconds=[r.wall_seconds for r in res],
        metrics={f: [r.metrics.get(f) for r in res] for f in METRIC_FIELDS},
        blocks=blocks,
        block_points=block_points,
    )


def test_columns_to_rows_gives_the_rows_of_to_rows():
    res = results()
    assert columns_to_rows(as_columns(res)) == to_rows(res)


def test_columns_to_rows_of_core_columns_gives_the_rows_of_their_results():
    cfgs = [PointConfig("asymmetric", 3, 4, 6, 0.01, 30, record_every=3, seed=s, fit_lambda0=s == 1) for s in range(4)]
    cfgs.append(PointConfig("asymmetric", 3, 4, 6, 0.9, 200, init_scale=30.0, seed=5))  # diverges
    cfgs.append(PointConfig("asymmetric", 3, 4, 6, 2.0, 30, seed=6))  # invalid for gd: failed
    cfgs.append(PointConfig("symmetric", 3, 3, 5, 0.01, 20, seed=7))  # a second block
    cols = run_points_columns(cfgs)
    assert len(cols.blocks) >= 2
    assert columns_to_rows(cols) == to_rows(cols.results())
