"""The curves codec: one compact blob per computed point (service.models.Curve).

Written by the result writer (service.writer), read back by service.queries.decode_curves.
"""
from __future__ import annotations

import io

import numpy as np

CURVES_FORMAT = "npz-v1"  # curves.format: np.savez bytes of the record-grid arrays


def encode_curves(curves) -> bytes:
    """One compact blob per point: an ``np.savez`` archive of the record-grid arrays."""
    buf = io.BytesIO()
    arrays = {
        "t": np.asarray(curves.t, dtype=np.float64),
        "error": np.asarray(curves.error, dtype=np.float64),
        "error_linear": np.asarray(curves.error_linear, dtype=np.float64),
        "singular_values": np.asarray(curves.singular_values, dtype=np.float64),
    }
    if curves.error_regularized_fit is not None:
        arrays["error_regularized_fit"] = np.asarray(curves.error_regularized_fit, dtype=np.float64)
    np.savez(buf, **arrays)
    return buf.getvalue()
