"""The compiled gd loop (numba, core/dynamics/_gd_fused.py) against the numpy loop and the textbook
per-point loop: same trajectories, checks, stops and records.

Tolerances: X, the factors and ||Q - Q0|| agree to 1e-12 relative (in practice X and the factors
are bit-identical: both sum each product in the same order with FMAs). The recorded error
e = ||R|| / ||Y|| is compared absolutely to 1e-12, i.e. relative to ||Y||: ||R||^2 is summed in
another order, and once a point has converged to machine precision e is rounding noise
(~1e-15) whose relative value means nothing."""

import numpy as np
import pytest
from test_gd_freeze import plain_gd

from flowsweep.core import PointConfig, compiled, initial_state, simulate
from flowsweep.core.dynamics import _gd_fused_gen, gd_linear

pytest.importorskip("numba")


def _cfg(scale, seed, **kw):
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
    base.update({"tol": 0.01, **kw})
    return PointConfig(**base)


def _both(configs, monkeypatch):
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    assert gd_linear.compiled_available()
    fused = simulate(configs)
    monkeypatch.setattr(compiled, "USE_COMPILED", False)
    numpy_loop = simulate(configs)
    return fused, numpy_loop


def _assert_same(a, b):
    assert np.array_equal(a.diverged_at, b.diverged_at)
    assert np.array_equal(a.iterations, b.iterations)
    assert np.array_equal(a.time_to_tol, b.time_to_tol, equal_nan=True)
    for name in ("X", "U_final", "V_final"):
        x, y = getattr(a, name), getattr(b, name)
        scale = np.max(np.abs(y).reshape(len(y), -1), axis=1)
        gap = np.max(np.abs(x - y).reshape(len(y), -1), axis=1)
        assert np.all(gap <= 1e-12 * np.maximum(scale, 1e-300)), (name, gap / scale)
    assert np.array_equal(np.isnan(a.error), np.isnan(b.error))
    assert np.nanmax(np.abs(a.error - b.error)) <= 1e-12
    assert np.array_equal(np.isnan(a.final_error), np.isnan(b.final_error))
    assert np.nanmax(np.abs(a.final_error - b.final_error), initial=0.0) <= 1e-12
    # ||Q(t) - Q0|| against the size of Q0's entries' products (it starts at 0 exactly in both)
    q_scale = np.max(np.abs(b.U_final)) ** 2 + np.max(np.abs(b.V_final)) ** 2
    assert np.all(a.q_drift[:, 0] == 0.0) and np.all(b.q_drift[:, 0] == 0.0)
    assert np.max(np.abs(a.q_drift - b.q_drift)) <= 1e-12 * q_scale


def test_generated_kernel_is_the_generators_output():
    path = gd_linear.__file__.replace("gd_linear.py", "_gd_fused.py")
    with open(path) as f:
        assert f.read() == _gd_fused_gen.source(), "run python -m flowsweep.core.dynamics._gd_fused_gen"


def test_fig1_batch_same_as_numpy_loop(monkeypatch):
    # 20 points: more than two groups of lanes, so lanes are refilled; the scale-1 points stop at
    # machine precision (~800 steps) and the others run to the end
    configs = [_cfg(s, seed) for seed in range(7) for s in (0.01, 0.1, 1.0)][:20]
    fused, numpy_loop = _both(configs, monkeypatch)
    assert (fused.iterations < 1200).sum() >= 6 and (fused.iterations == 1500).sum() >= 12
    _assert_same(fused, numpy_loop)


def test_divergence_tol_and_odd_grid_same_as_numpy_loop(monkeypatch):
    # eta too large for some points (they diverge at different iterations, between records), a
    # per-point tol, a record grid that does not end on the last step, r odd (k = 7 < m + n)
    cases = [(0.05, 0.5), (0.3, 0.3), (1.0, 0.5), (2.0, 0.9), (3.0, 0.2), (0.5, 0.6), (1.5, 0.5), (2.5, 0.4)]
    configs = [
        _cfg(scale, seed, eta=0.1, steps=333, record_every=7, k=7, tol=tol)
        for seed, (scale, tol) in enumerate(cases + [(0.2, 0.7), (1.2, 0.5)])
    ]
    fused, numpy_loop = _both(configs, monkeypatch)
    assert (fused.diverged_at >= 0).sum() >= 3 and (fused.diverged_at < 0).sum() >= 3
    assert np.isfinite(fused.time_to_tol).sum() >= 3 and (fused.iterations < 333).sum() >= 3
    _assert_same(fused, numpy_loop)


def test_fused_loop_matches_textbook_loop(monkeypatch):
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    configs = [_cfg(1.0, 3), _cfg(0.1, 3), _cfg(0.01, 4)]
    tr = simulate(configs)
    for b, c in enumerate(configs):
        st = initial_state(c)
        ref = plain_gd(st["Y"], st["U0"], st["V0"], c.eta, c.steps, c.record_every)
        gap = np.linalg.norm(tr.X[b] - ref, axis=(1, 2)) / np.linalg.norm(st["Y"])
        assert gap.max() <= 1e-12, (b, gap.max())


def test_comparison_can_fail(monkeypatch):
    """The comparison notices a trajectory off by 1e-11 (it is not vacuous)."""
    import dataclasses

    configs = [_cfg(0.1, 0), _cfg(1.0, 1)]
    fused, numpy_loop = _both(configs, monkeypatch)
    _assert_same(fused, numpy_loop)
    for name in ("X", "error", "q_drift"):
        off = dataclasses.replace(fused, **{name: getattr(fused, name) * (1 + 1e-11) + 1e-11})
        with pytest.raises(AssertionError):
            _assert_same(off, numpy_loop)


def test_lanes_all_free_with_points_waiting(monkeypatch):
    # no point stops early: the first LANES points end on one step, all lanes are free at once and
    # the next points start at the next multiple of the refill period (here record_every)
    configs = [_cfg(0.1, seed, steps=50) for seed in range(13)]
    fused, numpy_loop = _both(configs, monkeypatch)
    assert np.all(fused.iterations == 50)
    _assert_same(fused, numpy_loop)


def test_windows_end_between_records_same_as_numpy_loop(monkeypatch):
    # record_every > the window (64): windows end on steps that are no record, the lanes refill
    # every 64 steps, and the points stop at machine precision between two records
    configs = [_cfg(s, seed, steps=1500, record_every=100) for seed in range(4) for s in (0.1, 1.0)] + [
        _cfg(1.0, 9, steps=1500, record_every=100)
    ]
    fused, numpy_loop = _both(configs, monkeypatch)
    assert ((fused.iterations < 1500) & (fused.iterations % 100 != 0)).sum() >= 3
    _assert_same(fused, numpy_loop)


def _bits(tr):
    return [
        getattr(tr, f)
        for f in (
            "X",
            "error",
            "q_drift",
            "time_to_tol",
            "final_error",
            "diverged_at",
            "iterations",
            "U_final",
            "V_final",
        )
    ]


def test_queue_order_changes_no_bit(monkeypatch):
    """The lanes take the points in gd_linear._queue_order; any other order gives the same
    trajectories to the bit (lanes never mix)."""
    monkeypatch.setattr(compiled, "USE_COMPILED", True)
    configs = [_cfg(s, seed, steps=900) for seed in range(4) for s in (0.01, 0.1, 1.0)] + [
        _cfg(30.0, 5, steps=900),  # diverges
        _cfg(1.0, 6, steps=900, tol=0.3),
    ]
    base = simulate(configs)
    assert (base.diverged_at >= 0).any() and (base.iterations < 900).sum() >= 4
    for order in (lambda B: np.arange(B)[::-1].copy(), lambda B: np.random.default_rng(1).permutation(B)):
        monkeypatch.setattr(gd_linear, "_queue_order", lambda U0, V0, y, order=order: order(len(U0)).astype(np.int64))
        for x, y in zip(_bits(simulate(configs)), _bits(base), strict=True):
            assert np.array_equal(x, y, equal_nan=True)


def test_queue_order_starts_the_long_runs_first():
    """Fig. 1's points from the smallest start (s = 0.01, they run to the last step) queue before
    those from s = 1 (they stop at machine precision after ~800 steps)."""
    from flowsweep.core.run import _stacked_problem

    configs = [_cfg(s, seed) for seed in range(5) for s in (1.0, 0.1, 0.01)]
    p = _stacked_problem(configs)
    order = list(gd_linear._queue_order(p.U0, p.V0, p.y_norm))
    assert sorted(order) == list(range(len(configs)))
    pos = {p: i for i, p in enumerate(order)}
    small = [pos[b] for b, c in enumerate(configs) if c.init_scale == 0.01]
    large = [pos[b] for b, c in enumerate(configs) if c.init_scale == 1.0]
    assert max(small) < min(large)


def test_simd_lanes_round_once_and_fill_cache_lines():
    """core/_simd.py: fma and fnma round once (x y - 1 = -(k 2^-30)^2 and 1 - x y = (k 2^-30)^2 in
    lane k, both 0 if x y were rounded first), every lane is kept, and work arrays start on a
    64-byte line."""
    from numba import njit

    from flowsweep.core._simd import LANES, fma, fnma, load, store, zeros_lanes

    @njit
    def run(A):
        store(A, 1, 0, fma(load(A, 0, 0), load(A, 0, 1), load(A, 0, 2)))
        store(A, 1, 1, fnma(load(A, 0, 0), load(A, 0, 1), load(A, 0, 3)))

    A = zeros_lanes(2, 4)
    assert A.ctypes.data % 64 == 0 and A.shape == (2, 4, LANES)
    x = 1.0 + 2.0**-30 * np.arange(1, LANES + 1)
    y = 1.0 - 2.0**-30 * np.arange(1, LANES + 1)
    A[0, 0], A[0, 1], A[0, 2], A[0, 3] = x, y, -1.0, 1.0
    run(A)
    want = -((2.0**-30 * np.arange(1, LANES + 1)) ** 2)  # x y - 1, exact
    np.testing.assert_array_equal(A[1, 0], want)
    np.testing.assert_array_equal(A[1, 1], -want)


def test_simd_absolute_and_maximum_are_pythons_per_lane():
    """core/_simd.py's absolute and maximum (the flow's error scale) agree lane by lane with Python's
    abs and max(x, y) (numba's: y if y > x else x), on signed zeros, infinities and NaN."""
    from numba import njit

    from flowsweep.core._simd import LANES, absolute, load, maximum, store, zeros_lanes

    @njit
    def run(A):
        store(A, 1, 0, absolute(load(A, 0, 0)))
        store(A, 1, 1, maximum(load(A, 0, 0), load(A, 0, 1)))

    cases = [(-0.0, 0.0), (0.0, -0.0), (-2.0, 1.0), (np.inf, -np.inf), (np.nan, 1.0), (1.0, np.nan), (-3.0, -3.5)]
    cases = (cases + [(5.0, 7.0)] * LANES)[:LANES]
    A = zeros_lanes(2, 2)
    A[0, 0] = [x for x, _ in cases]
    A[0, 1] = [y for _, y in cases]
    run(A)
    for q, (x, y) in enumerate(cases):
        for got, want in ((A[1, 0, q], abs(x)), (A[1, 1, q], max(x, y))):
            assert (np.isnan(got) and np.isnan(want)) or (got == want and np.signbit(got) == np.signbit(want)), (q, got)


def test_simd_sqrt_and_unaligned_loads_and_stores():
    """core/_simd.py: sqrt is np.sqrt in every lane (correctly rounded); load_at and store_at move
    LANES consecutive entries at any offset of a flat array, and nothing else."""
    from numba import njit

    from flowsweep.core._simd import LANES, load, load_at, sqrt, store, store_at, zeros_lanes

    @njit
    def run(A, a, k, out):
        store(A, 1, 0, sqrt(load(A, 0, 0)))
        store_at(out, k + 1, load_at(a, k))

    A = zeros_lanes(2, 1)
    A[0, 0] = 2.0 + np.arange(LANES) * 0.37
    a = np.arange(40.0)
    out = np.zeros(40)
    run(A, a, 3, out)
    np.testing.assert_array_equal(A[1, 0], np.sqrt(A[0, 0]))
    want = np.zeros(40)
    want[4 : 4 + LANES] = a[3 : 3 + LANES]
    np.testing.assert_array_equal(out, want)
