"""workers.codec: the curves blob formats round-trip core's arrays exactly (the new f8-v2 that the
workers write, and npz-v1 rows written before it), a truncated blob is refused, and both encoders
(per point, per block of points) write f8-v2's bytes as first defined."""

from __future__ import annotations

import numpy as np
import pytest

from flowsweep.core import PointConfig, run_points
from flowsweep.core.types import Curves
from flowsweep.workers.codec import (
    CURVE_NAMES,
    CURVES_FORMAT,
    NPZ_FORMAT,
    decode_curves,
    encode_curve_rows,
    encode_curves,
    encode_curves_npz,
)


def curves_with_fit() -> Curves:
    t = np.linspace(0, 1, 7)
    sv = np.arange(21, dtype=float).reshape(7, 3)
    return Curves(
        t=t,
        error=np.exp(-t),
        error_linear=np.exp(-2 * t),
        singular_values=sv,
        error_regularized_fit=np.array([np.nan, np.inf, 1, 2, 3, 4, 5.0]),
    )


@pytest.mark.parametrize(
    "curves",
    [curves_with_fit(), run_points([PointConfig("asymmetric", 3, 4, 6, 0.01, 30, record_every=3, seed=1)])[0].curves],
    ids=["with-fit", "core"],
)
@pytest.mark.parametrize("fmt", [CURVES_FORMAT, NPZ_FORMAT])
def test_round_trip_is_exact(curves, fmt):
    blob = encode_curves(curves) if fmt == CURVES_FORMAT else encode_curves_npz(curves)
    out = decode_curves(blob, fmt)
    for name in CURVE_NAMES:
        want = getattr(curves, name)
        if want is None:
            assert out[name] is None
        else:
            np.testing.assert_array_equal(out[name], np.asarray(want, dtype=float))
            assert out[name].shape == np.shape(want)


def test_bad_blobs_are_refused():
    blob = encode_curves(curves_with_fit())
    with pytest.raises(ValueError, match="corrupt f8-v2"):
        decode_curves(blob[:-8], CURVES_FORMAT)
    with pytest.raises(ValueError, match="unknown curves format"):
        decode_curves(blob, "zz-v9")


def reference_f8_v2(curves: Curves) -> bytes:
    """f8-v2 as first written (numpy header), independently of workers.codec."""
    sv = np.asarray(curves.singular_values, dtype="<f8")
    fit = curves.error_regularized_fit
    parts = [
        np.array([len(curves.t), sv.shape[1] if sv.ndim == 2 else 0, fit is not None], dtype="<u4").tobytes(),
        *(np.asarray(a, dtype="<f8").tobytes() for a in (curves.t, curves.error, curves.error_linear)),
        sv.tobytes(),
    ]
    if fit is not None:
        parts.append(np.asarray(fit, dtype="<f8").tobytes())
    return b"".join(parts)


@pytest.mark.parametrize("seed", range(4))
def test_encoders_write_the_bytes_of_the_f8_v2_format(seed):
    """encode_curves and the block encoder encode_curve_rows write f8-v2 byte for byte: rows of a
    block with different lengths (a diverged point's curves stop early) and with or without a fit."""
    rng = np.random.default_rng(seed)
    P, T, r = 9, 7, 3
    t = np.linspace(0, 1, T)
    error, error_linear, fit = rng.standard_normal((3, P, T))
    fit[0, 2] = np.nan  # non-finite values are kept as they are
    sv = rng.standard_normal((P, T, r))
    n_records = rng.integers(1, T + 1, P)
    has_fit = rng.random(P) < 0.5
    rows = [
        Curves(
            t=t[:n],
            error=error[j, :n],
            error_linear=error_linear[j, :n],
            singular_values=sv[j, :n],
            error_regularized_fit=fit[j, :n] if has_fit[j] else None,
        )
        for j, n in enumerate(n_records)
    ]
    want = [reference_f8_v2(c) for c in rows]
    assert [encode_curves(c) for c in rows] == want
    assert encode_curve_rows(t, error, error_linear, sv, n_records, fit, has_fit) == want
    no_fit = [reference_f8_v2(Curves(c.t, c.error, c.error_linear, c.singular_values)) for c in rows]
    assert encode_curve_rows(t, error, error_linear, sv, n_records) == no_fit
    for blob, c in zip(want, rows):
        np.testing.assert_array_equal(decode_curves(blob, CURVES_FORMAT)["singular_values"], c.singular_values)
