"""The sigmoid gd loop stops once every point of its batch has diverged, and records what the
continuing loop would have recorded (factors zero: X = 0, errors NaN, ||Q - Q0|| = ||Q0||)."""

import numpy as np

import flowsweep.core.dynamics.gd_sigmoid as gd_sigmoid
from flowsweep.core import PointConfig, simulate


def _configs():
    return [
        PointConfig(
            model="sigmoid", m=3, n=3, k=6, n_samples=40, eta=0.05, steps=400, record_every=20, init_scale=s, seed=i
        )
        for i, s in enumerate((0.5, 2.0, 0.3))
    ]


def test_sigmoid_gd_stops_after_every_point_diverged(monkeypatch):
    configs = _configs()
    ref = simulate(configs)
    assert ref.iterations.tolist() == [400] * 3 and (ref.diverged_at < 0).all()
    e0 = ref.error[:, 0]
    # a divergence threshold below every point's initial error: all diverge at iteration 0
    monkeypatch.setattr(gd_sigmoid, "DIVERGENCE_ERROR", 0.5 * e0.min())
    tr = simulate(configs)
    assert tr.diverged_at.tolist() == [0, 0, 0]
    assert tr.iterations.tolist() == [0, 0, 0]  # no step computed after that
    assert np.isnan(tr.error).all() and np.isnan(tr.error_linear).all()
    assert np.isnan(tr.final_error).all() and np.isnan(tr.time_to_tol).all()
    np.testing.assert_array_equal(tr.X[:, 1:], 0.0)
    q0 = ref.q_drift[:, 0]  # 0 at t = 0 ...
    assert np.all(q0 == 0.0)
    # ... and ||0 - Q0|| = ||Q0|| on every later record, as the continuing loop gives
    from flowsweep.core import initial_state

    for b, c in enumerate(configs):
        s = initial_state(c)
        Q0 = s["U0"].T @ s["U0"] - s["V0"].T @ s["V0"]
        np.testing.assert_allclose(tr.q_drift[b, 1:], np.linalg.norm(Q0), rtol=1e-12)


def test_sigmoid_gd_runs_on_while_one_point_is_alive(monkeypatch):
    configs = _configs()
    ref = simulate(configs)
    e0 = ref.error[:, 0]
    keep = int(np.argmin(e0))
    # between the smallest initial error and the others, above the kept point's whole curve
    thr = 0.5 * (e0[keep] + np.sort(e0)[1])
    assert np.nanmax(ref.error[keep]) < thr
    monkeypatch.setattr(gd_sigmoid, "DIVERGENCE_ERROR", thr)
    tr = simulate(configs)
    assert (tr.diverged_at >= 0).sum() == 2 and tr.diverged_at[keep] == -1
    assert tr.iterations.tolist() == [400] * 3
    np.testing.assert_array_equal(tr.X[keep], ref.X[keep])
    np.testing.assert_array_equal(tr.error[keep], ref.error[keep])
