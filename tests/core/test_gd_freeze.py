"""gd stops iterating a point once it has converged to machine precision; what it records is still
the gradient descent of the textbook loop, and points that have not converged are never stopped."""

import numpy as np

from flowsweep.core import PointConfig, initial_state, simulate
from flowsweep.core.dynamics import FREEZE_ERROR


def plain_gd(Y, U0, V0, eta, steps, record_every, symmetric=False):
    """The textbook loop on the full factors (no reduced coordinates, no freezing): X on the grid."""
    U, V = U0.copy(), V0.copy()
    Xs = []
    for i in range(steps + 1):
        X = U @ (U if symmetric else V).T
        if i % record_every == 0:
            Xs.append(X)
        R = Y - X
        if symmetric:
            U = U + 2.0 * eta * R @ U
        else:
            U, V = U + eta * R @ V, V + eta * R.T @ U
    return np.array(Xs)


def _fig1(scale, seed, **kw):
    base = dict(
        model="asymmetric",
        m=5,
        n=10,
        k=50,
        eta=1e-3,
        steps=1500,
        record_every=20,
        init_scale=scale,
        seed=seed,
        tol=0.01,
    )
    base.update(kw)
    return PointConfig(**base)


def test_converged_points_stop_and_still_match_plain_gd():
    configs = [_fig1(1.0, 0), _fig1(0.1, 0), _fig1(1.0, 1)]
    tr = simulate(configs)
    # the init_scale = 1 points reach machine precision within ~800 steps and leave the batch;
    # the slower one is iterated to the end
    assert tr.iterations[0] < 1200 and tr.iterations[2] < 1200, tr.iterations
    assert tr.iterations[1] == 1500
    for b, c in enumerate(configs):
        st = initial_state(c)
        ref = plain_gd(st["Y"], st["U0"], st["V0"], c.eta, c.steps, c.record_every)
        ynorm = np.linalg.norm(st["Y"])
        gap = np.linalg.norm(tr.X[b] - ref, axis=(1, 2)) / ynorm
        assert gap.max() <= 1e-12, (b, gap.max())
        if tr.iterations[b] < c.steps:  # records after the stop repeat it
            after = tr.t >= tr.iterations[b] * c.eta
            assert np.all(tr.X[b][after] == tr.X[b][after][0])
            assert tr.error[b][after][0] <= FREEZE_ERROR
            assert np.isclose(tr.final_error[b], tr.error[b][-1])


def test_stopping_does_not_depend_on_the_batch():
    configs = [_fig1(1.0, 0), _fig1(0.1, 0), _fig1(1.0, 1), _fig1(0.01, 2)]
    together = simulate(configs)
    for b, c in enumerate(configs):
        alone = simulate(c)
        assert alone.iterations[0] == together.iterations[b]
        np.testing.assert_array_equal(alone.X[0], together.X[b])
        np.testing.assert_array_equal(alone.error[0], together.error[b])


def test_no_stop_above_the_floor_or_before_tol():
    # symmetric model with an indefinite Y: X tends to its PSD projection, the error stays at
    # ||Y_-|| / ||Y|| > FREEZE_ERROR, and the point is iterated to the end
    c = PointConfig(
        model="symmetric", m=4, n=4, k=8, eta=1e-2, steps=1500, record_every=50, init_scale=1.0, seed=3, tol=0.9
    )
    st = initial_state(c)
    assert np.linalg.eigvalsh(st["Y"])[0] < 0
    tr = simulate(c)
    assert tr.iterations[0] == c.steps and tr.error[0][-1] > 1e-3
    ref = plain_gd(st["Y"], st["U0"], st["U0"], c.eta, c.steps, c.record_every, symmetric=True)
    assert np.linalg.norm(tr.X[0] - ref, axis=(1, 2)).max() <= 1e-12 * np.linalg.norm(st["Y"])
    # a tol below what rounding allows is never reached, so the point is never stopped
    deep = simulate(_fig1(1.0, 0, tol=1e-17))
    assert np.isnan(deep.time_to_tol[0]) and deep.iterations[0] == 1500


def test_singular_values_of_repeated_records_are_computed_once_and_equal():
    from flowsweep.core.dynamics import record_grid
    from flowsweep.core.run import singular_values, trajectory_singular_values

    # two points stop at machine precision, one diverges (eta too large for its scale), one runs on
    configs = [_fig1(1.0, 0, eta=2e-3), _fig1(0.1, 0, eta=2e-3), _fig1(1.0, 1, eta=2e-3), _fig1(6.0, 2, eta=2e-3)]
    tr = simulate(configs)
    assert (tr.iterations < 1500).sum() == 3 and tr.diverged_at[3] >= 0, (tr.iterations, tr.diverged_at)
    c = configs[0]
    np.testing.assert_array_equal(
        trajectory_singular_values(tr, record_grid(c.eta, c.steps, c.record_every)), singular_values(tr.X)
    )
