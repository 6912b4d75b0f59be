"""NaN -> null: the one cleaner of values bound for JSON or a database (SPEC §4: "a metric that does
not apply is null, never NaN in JSON").

`finite_or_none` cleans one value, `json_safe` a nested structure (dicts, lists, tuples, numpy
arrays), `frame_records` the rows of a pandas DataFrame. numpy scalars become Python ones.
Used by core (metrics), the service (result rows, responses, curves) and the client (exports).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def finite_or_none(v: Any) -> Any:
    """A float that is NaN or ±inf becomes None; numpy scalars become Python bool/int/float; any other
    value (None, str, ...) is returned as it is."""
    if v.__class__ is float:  # the common case first (result rows, metrics)
        return v if math.isfinite(v) else None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def json_safe(obj: Any) -> Any:
    """`finite_or_none` on every leaf of dicts, lists, tuples (as lists) and numpy arrays (as lists)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            if np.all(np.isfinite(obj)):  # curves: nearly always finite, one C call
                return obj.tolist()
            out = obj.astype(object)
            out[~np.isfinite(obj)] = None
            return out.tolist()
        return json_safe(obj.tolist())
    return finite_or_none(obj)


def frame_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a DataFrame as dicts of plain Python values, exactly (pandas' to_json rounds floats to
    10 digits); NaN, NA and NaT become None."""
    records = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    return [{k: finite_or_none(v) for k, v in r.items()} for r in records]
