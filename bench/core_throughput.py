"""Throughput of core on the paper's Fig. 1 configuration, one core.

Prints points per second (per CPU second of this process, one BLAS thread) for (a) the obvious
per-point numpy loop and (b) core's batched path (`run_points`), their ratio, (b') the batched path
without gd's stop at machine precision, the achieved GFLOP/s against a large matrix product on
the same machine, the time of one `lambda0_fit` at k = 200, the exact flow's cost per point against
gd's on the same points, and core's cost per cheap point (10 steps) against the plain per-point loop
(issue 9). Where numba is installed gd runs its compiled loop: the numpy loop is timed back to back
with it, and the compile time (empty cache) and cache load of a fresh process are printed.

    python bench/core_throughput.py [--points 96] [--steps 4000]
"""

from __future__ import annotations

import os

for _v in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_v] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: tests.paper_points

from flowsweep.core import PointConfig, initial_state, run_points, simulate  # noqa: E402
from flowsweep.core import compiled as core_compiled  # noqa: E402
from flowsweep.core.dynamics import (  # noqa: E402
    Trajectory,
    flow,
    gd_linear,  # noqa: E402
    record_grid,
)
from flowsweep.core.fits import lambda0_fit  # noqa: E402
from flowsweep.core.metrics import point_metrics  # noqa: E402
from flowsweep.core.run import _stacked_problem  # noqa: E402
from flowsweep.status import PointStatus  # noqa: E402
from tests.paper_points import FIG1_SCALES, fig1_point, tiny_configs  # noqa: E402


def fig1_configs(n_points: int, steps: int) -> list[PointConfig]:
    """n_points of Fig. 1, the scales interleaved (seed i // 3 of scale i % 3)."""
    return [fig1_point(FIG1_SCALES[i % 3], i // 3, steps) for i in range(n_points)]


def naive_point(c: PointConfig):
    """The obvious implementation: full k, one point, plain numpy, same outputs and metrics."""
    st = initial_state(c)
    Y, U, V = st["Y"], st["U0"].copy(), st["V0"].copy()
    ynorm = np.linalg.norm(Y)
    Q0 = U.T @ U - V.T @ V
    idx = record_grid(c.eta, c.steps, c.record_every)
    Xs, errs, drift = [], [], []
    ttt = np.nan
    for i in range(c.steps + 1):
        X = U @ V.T
        R = Y - X
        e = np.linalg.norm(R) / ynorm
        if np.isnan(ttt) and e <= c.tol:
            ttt = i * c.eta
        if i % c.record_every == 0:
            Xs.append(X)
            errs.append(e)
            drift.append(np.linalg.norm(U.T @ U - V.T @ V - Q0))
        if i == c.steps:
            break
        U, V = U + c.eta * (R @ V), V + c.eta * (R.T @ U)
    tr = Trajectory(
        t=idx * c.eta,
        X=np.array(Xs)[None],
        error=np.array(errs)[None],
        q_drift=np.array(drift)[None],
        time_to_tol=np.array([ttt]),
        final_error=np.array([e]),
        diverged_at=np.array([-1]),
    )
    sv = np.linalg.svd(tr.X[0], compute_uv=False)
    return point_metrics(c, Y, st["U0"], st["V0"], tr, 0, sv)


def tiny_loop_point(c: PointConfig):
    """The plain per-point loop a researcher writes for a cheap point: draw Y, U0, V0; the steps;
    error at every step, singular values of each X, ||Q0||."""
    st = initial_state(c)
    Y, U, V = st["Y"], st["U0"], st["V0"]
    ynorm = np.linalg.norm(Y)
    q0_norm = np.linalg.norm(U.T @ U - V.T @ V)
    errs, svs = [], []
    for i in range(c.steps + 1):
        X = U @ V.T
        R = Y - X
        errs.append(np.linalg.norm(R) / ynorm)
        svs.append(np.linalg.svd(X, compute_uv=False))
        if i < c.steps:
            U, V = U + c.eta * (R @ V), V + c.eta * (R.T @ U)
    return q0_norm, errs, svs


@contextlib.contextmanager
def freeze_off():
    """gd without its stop at machine precision (core.dynamics.gd_linear.FREEZE_ERROR = 0)."""
    saved = gd_linear.FREEZE_ERROR
    gd_linear.FREEZE_ERROR = 0.0
    try:
        yield
    finally:
        gd_linear.FREEZE_ERROR = saved


@contextlib.contextmanager
def numpy_gd():
    """gd through the numpy loop (and the flow through scipy) even where the compiled ones are available."""
    saved = core_compiled.USE_COMPILED
    core_compiled.USE_COMPILED = False
    try:
        yield
    finally:
        core_compiled.USE_COMPILED = saved


def compile_seconds() -> tuple[float, float]:
    """Wall seconds of a first run_points call (gd loop and stable form compiled) in a fresh process
    with an empty numba cache, then again with the cache it wrote (what a new worker process pays)."""
    code = (
        "import time; t = time.perf_counter(); from flowsweep.core import PointConfig, run_points; "
        "run_points([PointConfig(model='asymmetric', m=5, n=10, k=50, eta=1e-3, steps=10)]); "
        "print(time.perf_counter() - t)"
    )
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for _ in range(2):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out.append(float(res.stdout.split()[-1]))
    return out[0], out[1]


def matmul_gflops(n: int = 1500, reps: int = 3) -> float:
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    A @ B
    best = np.inf
    for _ in range(reps):
        t = time.process_time()
        A @ B
        best = min(best, time.process_time() - t)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=96)
    ap.add_argument("--naive-points", type=int, default=12)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tiny-points", type=int, default=2000)
    ap.add_argument("--flow-points", type=int, default=64)
    args = ap.parse_args()

    try:
        from threadpoolctl import threadpool_info

        print("BLAS threads:", [d.get("num_threads") for d in threadpool_info()])
    except ImportError:
        pass
    configs = fig1_configs(args.points, args.steps)
    m, n, k = 5, 10, 50
    print(
        f"Fig. 1 configuration: m={m} n={n} k={k} gd eta=1e-3 steps={args.steps} record_every=20,"
        f" baseline + metrics (fit_lambda0 off); scales 0.01/0.1/1"
    )

    # (a) and (b) alternate over a few rounds, timed in CPU seconds of this process (one BLAS
    # thread). The machine is shared: its speed drifts by up to ~1.5x over minutes, so the ratio
    # is taken within each round ((a) and (b) measured back to back) and the median is reported
    naive = configs[: args.naive_points]
    t_naive, t_batch, t_nostop, ratios, ratios_nostop = [], [], [], [], []
    for _ in range(args.rounds):
        t = time.process_time()
        for c in naive:
            naive_point(c)
        t_naive.append((time.process_time() - t) / len(naive))
        t = time.process_time()
        res = run_points(configs)
        t_batch.append((time.process_time() - t) / len(configs))
        assert all(r.status == PointStatus.DONE for r in res)
        ratios.append(t_naive[-1] / t_batch[-1])
        # (b') the same without gd's stop at machine precision: what batching alone gives
        t = time.process_time()
        with freeze_off():
            run_points(configs)
        t_nostop.append((time.process_time() - t) / len(configs))
        ratios_nostop.append(t_naive[-1] / t_nostop[-1])
    print(
        f"(a) per-point numpy loop : {1 / min(t_naive):8.2f} points/s  ({min(t_naive) * 1e3:.1f} ms/point,"
        f" {len(naive)} points, best of {args.rounds})"
    )
    print(
        f"(b) core batched         : {1 / min(t_batch):8.2f} points/s  ({min(t_batch) * 1e3:.2f} ms/point,"
        f" {len(configs)} points in one call, best of {args.rounds})"
    )
    print(
        f"    ratio (b)/(a)        : {np.median(ratios):8.1f}x  (median of {args.rounds} back-to-back"
        f" rounds; range {min(ratios):.1f}-{max(ratios):.1f}x; best/best {min(t_naive) / min(t_batch):.1f}x)"
    )
    print(
        f"(b') without the stop    : {1 / min(t_nostop):8.2f} points/s  ({min(t_nostop) * 1e3:.2f} ms/point;"
        f" gd iterates converged points to the end)"
    )
    print(
        f"    ratio (b')/(a)       : {np.median(ratios_nostop):8.1f}x  (median; range"
        f" {min(ratios_nostop):.1f}-{max(ratios_nostop):.1f}x)"
    )

    # arithmetic: only the gd loop (simulate), in the reduced coordinates actually computed; the
    # numpy loop (gd_linear.run_gd_linear_numpy) measured back to back when the compiled one runs
    compiled = gd_linear.compiled_available()
    t_sim, t_np, r_np = np.inf, np.inf, []
    for _ in range(args.rounds):
        t = time.process_time()
        tr = simulate(configs)
        t_sim = min(t_sim, time.process_time() - t)
        if compiled:
            t1 = time.process_time() - t
            with numpy_gd():
                t = time.process_time()
                simulate(configs)
                t2 = time.process_time() - t
            t_np = min(t_np, t2)
            r_np.append(t2 / t1)
    r = m + n  # reduced width (k = 50 > m + n)
    point_steps = int(tr.iterations.sum())  # converged points leave the batch early
    flops = point_steps * 6 * m * n * r
    nominal = len(configs) * args.steps * 6 * m * n * k
    print(
        f"    gd steps computed    : {point_steps} of {len(configs) * args.steps}"
        f" ({100 * point_steps / (len(configs) * args.steps):.0f}%; the rest after convergence to"
        f" machine precision)"
    )
    peak = matmul_gflops()
    print(
        f"    gd loop alone        : {t_sim / len(configs) * 1e3:.2f} ms/point; "
        f"{flops / t_sim / 1e9:.2f} GFLOP/s performed (r={r}), "
        f"{nominal / t_sim / 1e9:.2f} GFLOP/s k={k}- and all-steps-equivalent"
    )
    print(
        f"    large matmul         : {peak:8.2f} GFLOP/s  -> gd loop at {100 * flops / t_sim / 1e9 / peak:.1f}% of it"
    )
    if compiled:
        print(
            f"    gd loop, numpy path  : {t_np / len(configs) * 1e3:.2f} ms/point; compiled loop"
            f" {np.median(r_np):.2f}x faster (median of {args.rounds} back-to-back rounds; range"
            f" {min(r_np):.2f}-{max(r_np):.2f}x)"
        )
        cold, warm = compile_seconds()
        print(
            f"    compiled kernels     : first run_points in a fresh process {cold:.1f} s with an empty numba"
            f" cache (compiling), {warm:.2f} s from its cache (imports included)"
        )
    else:
        print("    compiled loop        : not available (numba not installed or FLOWSWEEP_NUMBA=0)")

    c200 = PointConfig(
        model="asymmetric", m=5, n=10, k=200, eta=1e-3, steps=args.steps, record_every=20, init_scale=1.0, seed=0
    )
    tr = simulate(c200)
    st = initial_state(c200)
    t = time.process_time()
    fit = lambda0_fit(st["Y"], st["U0"], st["V0"], tr.t, tr.X[0])
    t_fit = time.process_time() - t
    print(
        f"lambda0_fit at k=200     : {t_fit:.3f} CPU s  (lambda0_fit={fit.lambda0:.2f}, "
        f"lambda0_fit_error={fit.error:.2e}, {fit.n_evaluations} closed-form evaluations,"
        f" T={len(tr.t)})"
    )

    # the exact flow against gd on the same points and horizon (simulate only), back to back; the
    # flow compiled where numba is (each point its own DOP853 steps), and scipy's stacked solve
    gd_cfgs = configs[: args.flow_points]
    flow_cfgs = [PointConfig(**{**c.to_dict(), "integrator": "flow"}) for c in gd_cfgs]
    simulate(flow_cfgs[:2])
    flow_compiled = flow.compiled_available()
    r_flow, r_scipy, t_gd, t_flow, t_scipy = [], [], [], [], []
    for _ in range(args.rounds):
        t = time.process_time()
        simulate(gd_cfgs)
        t_gd.append((time.process_time() - t) / len(gd_cfgs))
        t = time.process_time()
        simulate(flow_cfgs)
        t_flow.append((time.process_time() - t) / len(flow_cfgs))
        r_flow.append(t_flow[-1] / t_gd[-1])
        if flow_compiled:
            with numpy_gd():  # the flow's switch too: scipy's stacked DOP853
                t = time.process_time()
                simulate(flow_cfgs)
                t_scipy.append((time.process_time() - t) / len(flow_cfgs))
            r_scipy.append(t_scipy[-1] / t_gd[-1])
    sol = flow._solve_compiled(_stacked_problem(flow_cfgs), simulate(flow_cfgs[:1]).t, np.full(len(flow_cfgs), 0.01))
    print(
        f"exact flow vs gd         : flow {min(t_flow) * 1e3:.2f} ms/point"
        f" ({'compiled' if flow_compiled else 'scipy, stacked'}), gd {min(t_gd) * 1e3:.2f} ms/point"
        f" ({len(gd_cfgs)} points, horizon {gd_cfgs[0].eta * gd_cfgs[0].steps:g}, rtol 3e-14; best of"
        f" {args.rounds})"
    )
    print(
        f"    cost ratio flow/gd   : {np.median(r_flow):8.2f}x  (median of {args.rounds} back-to-back"
        f" rounds; range {min(r_flow):.2f}-{max(r_flow):.2f}x)"
    )
    if flow_compiled:
        print(
            f"    scipy's stacked flow : {min(t_scipy) * 1e3:.2f} ms/point, {np.median(r_scipy):.2f}x gd (median;"
            f" range {min(r_scipy):.2f}-{max(r_scipy):.2f}x); compiled per point: {sol.counts[:, 0].mean():.0f}"
            f" steps, {sol.counts[:, 1].mean():.1f} rejected, {sol.counts[:, 2].mean():.0f} right-hand sides"
            f" (mean; max {sol.counts[:, 2].max()})"
        )

    # the accuracy bought at that cost: records against scipy's DOP853 on each point alone (same rtol:
    # max over records of ||X - X_scipy||_F / ||Y||), and against the closed form on spectral starts
    from scipy.integrate import solve_ivp

    tr = simulate(flow_cfgs[:3])
    prob = _stacked_problem(flow_cfgs[:3])
    vs_scipy = []
    for b in range(3):
        sysm = flow._FlowSystem(
            type(prob)(model=prob.model, Y=prob.Y[b : b + 1], U0=prob.U0[b : b + 1], V0=prob.V0[b : b + 1])
        )
        ref = solve_ivp(
            sysm.rhs, (0.0, tr.t[-1]), sysm.initial(), "DOP853", t_eval=tr.t, rtol=flow.FLOW_RTOL, atol=flow.FLOW_ATOL
        )
        X_ref = np.stack([sysm.evaluate(y)[2][0] for y in ref.y.T])
        vs_scipy.append(np.max(np.linalg.norm(tr.X[b] - X_ref, axis=(1, 2))) / prob.y_norm[b])
    spectral = [PointConfig(**{**c.to_dict(), "init": "spectral"}) for c in flow_cfgs[:3]]
    cf = [r.metrics["closed_form_error"] for r in run_points(spectral)]
    print(
        f"    flow accuracy        : vs scipy per point {' '.join(f'{x:.1e}' for x in vs_scipy)} (scales"
        f" {' '.join(f'{c.init_scale:g}' for c in flow_cfgs[:3])}; ||dX||/||Y||); vs the closed form (spectral)"
        f" {' '.join(f'{x:.1e}' for x in cf)}"
    )

    # issue 9's cheap points: core's fixed cost per point against the plain loop, back to back
    from flowsweep.core.run import run_points_columns

    tiny = tiny_configs(args.tiny_points)
    run_points(tiny[:8])
    t_loop, t_core, t_cols, r_tiny, r_cols = [], [], [], [], []
    for _ in range(args.rounds):
        t = time.process_time()
        for c in tiny:
            tiny_loop_point(c)
        t_loop.append((time.process_time() - t) / len(tiny))
        t = time.process_time()
        run_points(tiny)
        t_core.append((time.process_time() - t) / len(tiny))
        t = time.process_time()
        run_points_columns(tiny)  # the same results as columns: no PointResult per point
        t_cols.append((time.process_time() - t) / len(tiny))
        r_tiny.append(t_core[-1] / t_loop[-1])
        r_cols.append(t_cols[-1] / t_loop[-1])
    print(
        f"tiny points (steps=10, m=5, n=10, k=50, {len(tiny)} points): plain loop"
        f" {min(t_loop) * 1e3:.3f} ms/point, core.run_points {min(t_core) * 1e3:.3f} ms/point,"
        f" run_points_columns {min(t_cols) * 1e3:.3f} ms/point (best of {args.rounds})"
    )
    print(
        f"    cost ratio core/loop : {np.median(r_tiny):8.2f}x  (median of {args.rounds} back-to-back"
        f" rounds; range {min(r_tiny):.2f}-{max(r_tiny):.2f}x; columns {np.median(r_cols):.2f}x; core also"
        f" computes the baseline, rate and regularized-flow metrics)"
    )

    fit_cfgs = [PointConfig(**{**c.to_dict(), "fit_lambda0": True}) for c in configs[:24]]
    t = time.process_time()
    run_points(fit_cfgs)
    t_fitb = (time.process_time() - t) / len(fit_cfgs)
    print(f"(b) with fit_lambda0 on  : {1 / t_fitb:8.2f} points/s")


if __name__ == "__main__":
    main()
