"""workers.codec: the curves blob formats round-trip core's arrays exactly (the new f8-v2 that the
workers write, and npz-v1 rows written before it), and a truncated blob is refused."""

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
