"""The points the core tests and the benchmarks share, one definition each: the paper's Fig. 1
configuration and issue 9's tiny points. Importing it does nothing else (the benchmarks set their
BLAS threads before numpy is imported). Tests import it as `paper_points`, benchmarks as
`tests.paper_points`."""

from __future__ import annotations

from flowsweep.core.types import PointConfig

FIG1_SCALES = (0.01, 0.1, 1.0)  # sigma of Fig. 1 (a), (b), (c)
# Tiny points: m, n, k, eta, gd steps (every one recorded) and the gaussian init's scale.
TINY_M, TINY_N, TINY_K, TINY_ETA, TINY_STEPS, TINY_SCALE = 5, 10, 50, 1e-3, 10, 0.1


def fig1_point(init_scale: float, seed: int, steps: int = 4000, record_every: int = 20) -> PointConfig:
    """A point of Fig. 1: asymmetric model, gaussian init, m=5, n=10, k=50, gd with eta=1e-3, tol 0.01."""
    return PointConfig(
        model="asymmetric",
        m=5,
        n=10,
        k=50,
        eta=1e-3,
        steps=steps,
        init="gaussian",
        integrator="gd",
        init_scale=init_scale,
        lambda0=0.0,
        seed=seed,
        record_every=record_every,
        tol=0.01,
    )


def fig1_configs(seeds: int, steps: int = 4000, record_every: int = 20) -> list[PointConfig]:
    """Fig. 1's points for seeds 0..seeds-1 of each scale, scale by scale (the sweep's expansion order)."""
    return [fig1_point(s, seed, steps, record_every) for s in FIG1_SCALES for seed in range(seeds)]


def tiny_configs(points: int) -> list[PointConfig]:
    """Issue 9's cheap points, seeds 0..points-1."""
    return [
        PointConfig(
            model="asymmetric",
            m=TINY_M,
            n=TINY_N,
            k=TINY_K,
            eta=TINY_ETA,
            steps=TINY_STEPS,
            record_every=1,
            init_scale=TINY_SCALE,
            seed=s,
        )
        for s in range(points)
    ]
