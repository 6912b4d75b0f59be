"""Curves of a sweep's points aggregated per group over seeds (`GET /sweeps/{id}/curves`).

The statistics are `service.aggregate`'s (the PNG plots and the dashboard draw exactly these). Each
group also carries one representative point's singular values (the lowest seed: Fig. 1 bottom shows
one seed), the means of the metrics that the figures print in their titles, and each point's plateau
length (`service.aggregate.plateau_length`, the deep model's figure) with its mean and std.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from flowsweep.workers.codec import decode_curves

from . import queries
from .aggregate import aggregate, mean_std, plateau_length
from .models import PARAM_FIELDS

# Parameters that can tell groups apart (seed is what the groups aggregate over).
GROUPABLE = tuple(f for f in PARAM_FIELDS if f != "seed")
DEFAULT_AXES = ("init_scale", "k", "lambda0")
TITLE_METRICS = ("q0_norm", "lambda0_fit", "speedup", "final_error")


def _decode(blob: bytes, fmt: str) -> dict[str, np.ndarray]:
    """The arrays a blob holds (workers.codec, either format); absent curves are left out."""
    return {k: v for k, v in decode_curves(blob, fmt).items() if v is not None}


def _list(a: Any) -> Any:
    """A JSON list with null for non-finite values (a diverged run)."""
    if a is None:
        return None
    a = np.asarray(a, dtype=float)
    obj = a.astype(object)
    obj[~np.isfinite(a)] = None
    return obj.tolist()


def group_curves(session: Session, sweep_id: int, by: list[str] | None, max_per_group: int) -> dict[str, Any]:
    """{"by": keys, "groups": [{"key": {...}, "n_points", "point_ids", "eta", "t", "error": {"mean",
    "std", "n"}, "error_linear", "error_regularized_fit", "singular_values", "representative":
    {"point_id", "seed"}, "<metric>_mean"..., "plateau" (per point), "plateau_mean", "plateau_std",
    "plateau_n"}]} over the sweep's done points, at most
    `max_per_group` (the lowest seeds) per group."""
    records = queries.done_point_rows(session, sweep_id, TITLE_METRICS)
    if by is None:
        by = [f for f in DEFAULT_AXES if len({r[f] for r in records}) > 1]
        by += [
            f
            for f in GROUPABLE
            if f not in by and f not in DEFAULT_AXES and len({_hashable(r[f]) for r in records}) > 1
        ]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(_hashable(r[k]) for k in by), []).append(r)
    keep = {key: members[:max_per_group] for key, members in sorted(groups.items(), key=_sort_key)}
    # One read of the blobs needed (own or the source's for a cached point).
    blob_of = queries.curve_blobs(
        session, (r["source_point_id"] or r["point_id"] for members in keep.values() for r in members)
    )
    out = []
    for key, members in keep.items():
        curves, used = [], []
        for r in members:
            blob = blob_of.get(r["source_point_id"] or r["point_id"])
            if blob is not None:
                curves.append(_decode(*blob))
                used.append(r)
        if not curves:
            continue
        agg = aggregate(curves)
        rep = curves[0]
        g: dict[str, Any] = {
            "key": dict(zip(by, key)),
            "n_points": len(groups[key]),
            "n": len(curves),
            "point_ids": [r["point_id"] for r in used],
            "eta": used[0]["eta"],
            "model": used[0]["model"],
            "integrator": used[0]["integrator"],
            "t": _list(agg["t"]),
            "representative": {"point_id": used[0]["point_id"], "seed": used[0]["seed"]},
            "singular_values": _list(rep["singular_values"]) if "singular_values" in rep else None,
        }
        for name in ("error", "error_linear", "error_regularized_fit"):
            s = agg[name]
            g[name] = (
                None if s is None else {"mean": _list(s["mean"]), "std": _list(s["std"]), "n": [int(v) for v in s["n"]]}
            )
        plateau = [plateau_length(c["t"], c["error"]) for c in curves]
        p_mean, p_std, p_n = mean_std([[v] for v in plateau])
        g["plateau"] = _list(plateau)
        g["plateau_mean"], g["plateau_std"] = _list(p_mean)[0], _list(p_std)[0]
        g["plateau_n"] = int(p_n[0])
        for m in TITLE_METRICS:
            vals = [r[m] for r in used if r[m] is not None and np.isfinite(r[m])]
            g[f"{m}_mean"] = float(np.mean(vals)) if vals else None
        out.append(g)
    return {"by": list(by), "groups": out}


def _hashable(v: Any) -> Any:
    """A parameter's value as a dict key: y_singular_values is a JSON list (was a 500 for any sweep
    that set it)."""
    return tuple(v) if isinstance(v, list) else v


def _sort_key(item: tuple[tuple, list]) -> tuple:
    # None sorts first; values of one key share a type within a sweep.
    return tuple((v is not None, v) for v in item[0])
