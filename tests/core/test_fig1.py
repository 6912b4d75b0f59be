"""The paper's Fig. 1 regime: m = 5, n = 10, k = 50, Gaussian init, gd with eta = 1e-3."""

import numpy as np
import pytest

from flowsweep.core import PointConfig, initial_state, run_points


def _cfg(s, seed):
    return PointConfig(
        model="asymmetric", m=5, n=10, k=50, eta=1e-3, steps=4000, record_every=20, init_scale=s, seed=seed, tol=0.01
    )


@pytest.mark.parametrize("s", [1e-2, 1e-1, 1.0])
def test_median_q0_norm(s):
    # E ||Q0||^2 = s^4 (k (m - n)^2 + 2 k (m + n) + k (k - 1)(m + n)) -> 198.7 s^2
    q = [
        np.linalg.norm(st["U0"].T @ st["U0"] - st["V0"].T @ st["V0"])
        for st in (initial_state(_cfg(s, seed)) for seed in range(41))
    ]
    assert abs(np.median(q) / (198.7 * s * s) - 1) < 0.10


def test_speedup_grows_with_scale_and_exceeds_10_at_s_1():
    scales = (1e-2, 1e-1, 1.0)
    seeds = range(3)
    res = run_points([_cfg(s, seed) for s in scales for seed in seeds])
    assert all(r.status == "done" for r in res)
    by_scale = {}
    for r in res:
        # not reaching tol within the horizon counts as no speedup
        by_scale.setdefault(r.config.init_scale, []).append(r.metrics["speedup"] or 0.0)
        assert r.metrics["time_to_tol_linear"] == pytest.approx(
            1e-3 * np.ceil(np.log(0.01 / r.curves.error_linear[0]) / np.log(1 - 1e-3)), abs=1e-3
        )
    med = [np.median(by_scale[s]) for s in scales]
    assert med[0] < med[1] < med[2], med
    assert min(by_scale[1.0]) >= 10
    # the printed ||Q0|| of the paper's three panels: 0.02, 1.83, (large)
    assert res[0].metrics["q0_norm"] == pytest.approx(0.02, rel=0.15)
