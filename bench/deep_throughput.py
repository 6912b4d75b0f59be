"""Throughput of the deep model's core path (core/deep.py), one core; ratios measured side by side.

(a) core's batched gd (`run_points`) against the obvious per-point numpy loop over the full k-wide
    layers, balanced L = 3 starts (m = 5, n = 10, k = 50);
(b) the cost of one balanced L = 4 point at k = 20 and at k = 1000: reduced coordinates keep it flat
    (the per-point loop at k = 1000 is timed too);
(c) the deep model at L = 2 against the asymmetric model's dedicated gd loop (the same trajectories).

    python bench/deep_throughput.py [--points 64] [--steps 2000]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_v] = "1"  # one core, set before numpy is imported

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from flowsweep.core import PointConfig, initial_state, run_points  # noqa: E402
from flowsweep.status import PointStatus  # noqa: E402


def configs(n: int, steps: int, depth: int, k: int = 50, model: str = "deep") -> list[PointConfig]:
    # balanced X0 = U0 V0^T has norm ~ s^2 k: s ∝ 1/sqrt(k) keeps it comparable across widths
    return [
        PointConfig(
            model=model,
            init="balanced",
            m=5,
            n=10,
            k=k,
            eta=0.01,
            steps=steps,
            record_every=20,
            init_scale=0.3 * np.sqrt(50 / k),
            seed=i,
            depth=depth if model == "deep" else None,
        )
        for i in range(n)
    ]


def naive_point(c: PointConfig) -> float:
    """Full k-wide layers, one point: forward products, backward pass, per-step error, records."""
    st = initial_state(c)
    Y = st["Y"]
    Ws = [st[f"W{j}"].copy() for j in range(1, c.depth + 1)]
    ynorm = np.linalg.norm(Y)
    ttt = np.nan
    for i in range(c.steps + 1):
        P = [Ws[0]]
        for W in Ws[1:]:
            P.append(W @ P[-1])
        R = Y - P[-1]
        e = np.linalg.norm(R) / ynorm
        if np.isnan(ttt) and e <= c.tol:
            ttt = i * c.eta
        if i == c.steps:
            break
        D, grads = R, []
        for j in range(c.depth - 1, -1, -1):
            grads.append(D if j == 0 else D @ P[j - 1].T)
            if j > 0:
                D = Ws[j].T @ D
        for W, g in zip(Ws, grads[::-1]):
            W += c.eta * g
    return ttt


def best_of(fn, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    a = ap.parse_args()
    cs = configs(a.points, a.steps, 3)
    assert all(r.status == PointStatus.DONE for r in run_points(cs))
    t_batch = best_of(lambda: run_points(cs))
    n_naive = max(4, a.points // 8)
    t_naive = best_of(lambda: [naive_point(c) for c in cs[:n_naive]], 1) * a.points / n_naive
    print(
        f"(a) balanced L=3, k=50, {a.steps} gd steps: batched {a.points / t_batch:.1f} points/s, "
        f"per-point loop {a.points / t_naive:.1f} points/s, ratio {t_naive / t_batch:.1f}x"
    )
    assert all(r.status == PointStatus.DONE for r in run_points(configs(2, a.steps, 4, k=1000)))
    one_small = best_of(lambda: run_points(configs(8, a.steps, 4, k=20))) / 8
    one_wide = best_of(lambda: run_points(configs(8, a.steps, 4, k=1000))) / 8
    t_wide_naive = best_of(lambda: naive_point(configs(1, a.steps // 10, 4, k=1000)[0]), 1) * 10
    print(
        f"(b) balanced L=4, per point: k=20 {one_small * 1e3:.1f} ms, k=1000 {one_wide * 1e3:.1f} ms "
        f"(ratio {one_wide / one_small:.2f}); full-width loop at k=1000 {t_wide_naive * 1e3:.0f} ms "
        f"({t_wide_naive / one_wide:.0f}x)"
    )
    d2 = configs(a.points, a.steps, 2)
    asym = [replace(c, model="asymmetric", depth=None) for c in d2]
    t_d2 = best_of(lambda: run_points(d2))
    t_as = best_of(lambda: run_points(asym))
    print(
        f"(c) L=2: deep loop {a.points / t_d2:.1f} points/s, asymmetric loop {a.points / t_as:.1f} "
        f"points/s (deep/asymmetric time {t_d2 / t_as:.2f})"
    )
    print("CPU seconds of this process, one BLAS thread; the machine is shared: compare ratios, not rates.")


if __name__ == "__main__":
    main()
