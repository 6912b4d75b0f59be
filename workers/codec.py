"""The curves codec: one compact blob per computed point (service.models.Curve `blob`, `format`).

Written on the Ray workers (workers.tasks.run_chunk_rows), so encoding runs in parallel next to
the computation rather than in the service process; read back by service.queries.decode_curves.

- ``f8-v2`` (written now): a little-endian uint32 header (T records, r singular values per record,
  1 if error_regularized_fit is present) followed by the float64 arrays t, error, error_linear,
  singular_values (T x r, row-major) and error_regularized_fit. Encoding costs about a
  microsecond per point (encode_curves), a fraction of one for a block of points (encode_curve_rows).
- ``npz-v1`` (older rows): an ``np.savez`` archive of the same arrays (~0.3 ms per point to write).
"""

from __future__ import annotations

import io
import struct
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from flowsweep.core.types import Curves

CURVES_FORMAT = "f8-v2"
NPZ_FORMAT = "npz-v1"
CURVE_NAMES = ("t", "error", "error_linear", "singular_values", "error_regularized_fit")
_HEADER = np.dtype("<u4")
_F8 = np.dtype("<f8")
_PACK_HEADER = struct.Struct("<3I").pack  # the header's three <u4 (T, r, has fit)


def encode_curves(curves: Curves) -> bytes:
    """A Curves (core.types) as an ``f8-v2`` blob."""
    sv = np.asarray(curves.singular_values, dtype=_F8)
    fit = curves.error_regularized_fit
    parts = [
        _PACK_HEADER(len(curves.t), sv.shape[1] if sv.ndim == 2 else 0, fit is not None),
        np.asarray(curves.t, dtype=_F8).tobytes(),
        np.asarray(curves.error, dtype=_F8).tobytes(),
        np.asarray(curves.error_linear, dtype=_F8).tobytes(),
        sv.tobytes(),
    ]
    if fit is not None:
        parts.append(np.asarray(fit, dtype=_F8).tobytes())
    return b"".join(parts)


def encode_curve_rows(
    t: np.ndarray,
    error: np.ndarray,
    error_linear: np.ndarray,
    singular_values: np.ndarray,
    n_records: np.ndarray,
    error_regularized_fit: np.ndarray | None = None,
    has_fit: np.ndarray | None = None,
) -> list[bytes]:
    """The ``f8-v2`` blob of every row of a block of curves on one record grid `t` (T,): row j is
    error[j, :n], error_linear[j, :n], singular_values[j, :n] (P, T, r) and, where has_fit[j],
    error_regularized_fit[j, :n], with n = n_records[j]. The same bytes as encode_curves of each
    row's Curves, written for all rows of equal (n, has fit) at once."""
    P, r = len(n_records), singular_values.shape[2]
    fits = np.zeros(P, dtype=bool) if error_regularized_fit is None or has_fit is None else np.asarray(has_fit, bool)
    out: list[bytes] = [b""] * P
    keys = np.asarray(n_records, dtype=np.int64) * 2 + fits
    for key in np.unique(keys):
        rows = np.flatnonzero(keys == key)
        n, fit = int(key) // 2, bool(key % 2)
        L = n * (3 + r + fit)
        data = np.empty((len(rows), L), dtype=_F8)
        data[:, :n] = t[:n]
        data[:, n : 2 * n] = error[rows, :n]
        data[:, 2 * n : 3 * n] = error_linear[rows, :n]
        data[:, 3 * n : (3 + r) * n] = singular_values[rows, :n].reshape(len(rows), n * r)
        if fit:
            data[:, (3 + r) * n :] = error_regularized_fit[rows, :n]  # type: ignore[index]
        width = 12 + 8 * L
        buf = np.empty((len(rows), width), dtype=np.uint8)
        buf[:, :12] = np.frombuffer(_PACK_HEADER(n, r, fit), dtype=np.uint8)
        buf[:, 12:] = data.view(np.uint8)
        raw = buf.tobytes()
        for i, j in enumerate(rows.tolist()):
            out[j] = raw[i * width : (i + 1) * width]
    return out


def encode_curves_npz(curves: Curves) -> bytes:
    """The older ``npz-v1`` encoding (kept for reading and for tests of old rows)."""
    buf = io.BytesIO()
    t, error, error_linear, sv = (np.asarray(getattr(curves, name), dtype=np.float64) for name in CURVE_NAMES[:4])
    fit = curves.error_regularized_fit
    # keywords spelled out: a **dict could bind savez's own `allow_pickle` (mypy rejects it)
    if fit is None:
        np.savez(buf, t=t, error=error, error_linear=error_linear, singular_values=sv)
    else:
        np.savez(
            buf,
            t=t,
            error=error,
            error_linear=error_linear,
            singular_values=sv,
            error_regularized_fit=np.asarray(fit, dtype=np.float64),
        )
    return buf.getvalue()


def decode_curves(blob: bytes, format: str) -> dict[str, np.ndarray | None]:
    """name -> array (None when absent) for a blob of either format; ValueError if unknown."""
    if format == NPZ_FORMAT:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {name: (z[name] if name in z.files else None) for name in CURVE_NAMES}
    if format != CURVES_FORMAT:
        raise ValueError(f"unknown curves format {format!r}")
    T, r, has_fit = (int(v) for v in np.frombuffer(blob, dtype=_HEADER, count=3))
    data = np.frombuffer(blob, dtype=_F8, offset=3 * _HEADER.itemsize)
    if data.size != T * (3 + r + has_fit):
        raise ValueError(f"corrupt {CURVES_FORMAT} curves blob: {data.size} values for T={T}, r={r}")
    out = {
        "t": data[:T],
        "error": data[T : 2 * T],
        "error_linear": data[2 * T : 3 * T],
        "singular_values": data[3 * T : (3 + r) * T].reshape(T, r),
        "error_regularized_fit": None,
    }
    if has_fit:
        out["error_regularized_fit"] = data[(3 + r) * T :]
    return out
