"""An a-priori cost model of a point: estimated CPU seconds and peak memory (pure arithmetic).

The service refuses sweeps whose estimate exceeds its budget (a 422 that states it) before anything
is stored or run. The estimates are deliberately on the high side of what `run_points` measures
(bench/core_throughput.py: the Fig. 1 point costs ~3 ms batched; the model says ~20 ms):

- work: both integrators run in reduced coordinates of rank r = min(k, m + n), so a gd step costs
  ~6·m·n·r flops plus a fixed per-step overhead; sigmoid adds its data products (N·d² each, for
  the two-layer model and the one-layer baseline). `flow` integrates t in [0, eta·steps] with an
  explicit solver whose step is bounded by the stiffness L ~ 2(||Y||_2 + ||U0||_2² + ||V0||_2²),
  so its cost grows with the horizon eta·steps times L: right-hand sides (DOP853) priced as
  today's solver runs them, the asymmetric model's compiled one where numba is (each point its
  own steps), else scipy's stacked solve (a Python loop, ~60x the compiled cost per evaluation).
- memory: the initial state ((m + n)·k, a few copies), the recorded trajectory (T records of the
  m×n X(t) and its singular values), the sigmoid data (N·d, a few copies), the λ₀ fit's records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .compiled import compiled_expected
from .types import PointConfig

FLOPS_PER_SECOND = 2e9  # sustained on one core for these small products (measured 7 GFLOP/s)
STEP_OVERHEAD_SECONDS = 3e-7  # per point per gd step (numpy call overhead shared by a batch)
RHS_OVERHEAD_SECONDS = 2e-5  # per right-hand side of the flow solver (scipy's Python loop)
FLOW_STEPS_PER_UNIT_STIFFNESS = 0.5  # DOP853 at rtol 3e-14: steps ≈ 0.5·L·t + 50 (fitted, Fig. 1 shape)
# the compiled flow (core/dynamics/_flow_dop853.py), per point: steps ≈ 0.1·L·t + 40·log(1 + L·t) + 20,
# fitted above the steps (accepted and rejected) counted on gaussian, spectral and balanced starts at
# m×n = 2×4, 5×10, 20×30, scales 0.01-3, t = 0.4-40: 1.2-8x above them (up to 100x on spectral and
# balanced starts of scale >= 1, whose norms L's gaussian formula overstates; counted 0.07·L·t + ~100
# when stiff); 12 right-hand sides per step and 3 more for the dense output of the steps that reach a
# record (nearly all at the service's record grids), each at FLOPS_PER_SECOND plus a fixed cost (stage
# sums, step control): measured 0.07 µs in all at 2×4, 0.34 µs at 5×10 (13 GFLOP/s), 113 µs at 40×60
COMPILED_FLOW_STEPS_PER_UNIT_STIFFNESS = 0.1
COMPILED_FLOW_STEPS_PER_LOG_STIFFNESS = 40.0
COMPILED_FLOW_MIN_STEPS = 20.0
COMPILED_FLOW_RHS_PER_STEP = 15
COMPILED_FLOW_RHS_OVERHEAD_SECONDS = 1e-7
# the λ₀ fit solves one (m + n)-square system per (λ, record) pair: LAMBDA0_FIT_RECORD_GRIDS times the
# record grid's pairs per fit (measured 10.4–11.9 on Fig. 2 points, bench/lambda0_fit_cost.py), each a
# Cholesky and a solve with min(m, n) right-hand sides, plus a per-pair overhead (numpy's path: ~3 µs per
# pair in all; the compiled one, search included: ~0.25 µs) and the search's own logic
LAMBDA0_FIT_RECORD_GRIDS = 13
LAMBDA0_PAIR_OVERHEAD_SECONDS = 1.5e-6
LAMBDA0_FIT_SECONDS = 2e-3
BYTES_PER_FLOAT = 8
STATE_COPIES = 4  # U0, V0, their reduction and the batch's stacked copy
SIGMOID_COPIES = 6  # A, targets, A·W and its sigmoid for both models
POINT_SECONDS = 0.02  # data, metrics and curves of one point
TEMPORARIES = 2.5  # numpy temporaries over the arrays counted (measured with tracemalloc)
BASE_BYTES = 2e6


@dataclass(frozen=True)
class PointCost:
    cpu_seconds: float
    peak_bytes: float
    # which input dominates each estimate (a request field: the service names it in its 422)
    cpu_field: str
    memory_field: str


def _records(c: PointConfig) -> int:
    return c.steps // c.record_every + 1


def _flow_stiffness(c: PointConfig) -> float:
    """L ~ 2(||Y||_2 + ||U0||_2² + ||V0||_2² + |λ₀|) for a gaussian Y and start of scale init_scale."""
    sigma_y = math.sqrt(c.m) + math.sqrt(c.n)
    s2 = c.init_scale**2 * (math.sqrt(max(c.m, c.n)) + math.sqrt(c.k)) ** 2
    return 2.0 * (sigma_y + 2.0 * s2 + abs(c.lambda0))


def _flow_compiled(c: PointConfig) -> bool:
    """Whether the flow of c runs compiled (core.dynamics.flow.run_flow's choice)."""
    return c.model == "asymmetric" and c.steps > 0 and compiled_expected()


def flow_right_hand_sides(c: PointConfig) -> float:
    """Right-hand side evaluations the compiled flow is estimated to need for point c."""
    lt = _flow_stiffness(c) * c.eta * c.steps
    steps = (
        COMPILED_FLOW_STEPS_PER_UNIT_STIFFNESS * lt
        + COMPILED_FLOW_STEPS_PER_LOG_STIFFNESS * math.log1p(lt)
        + COMPILED_FLOW_MIN_STEPS
    )
    return COMPILED_FLOW_RHS_PER_STEP * steps


def point_cost(c: PointConfig) -> PointCost:
    """Estimated CPU seconds and peak bytes of one point (for a batch: per point)."""
    m, n, k = c.m, c.n, c.k
    r = min(k, m + n)
    T = _records(c)
    setup = 2.0 * (m + n) * k * r / FLOPS_PER_SECOND  # reduction of U0, V0 (their Gram matrix; its Cholesky)
    records = T * (m * n * r + 4 * min(m, n) ** 2 * max(m, n)) / FLOPS_PER_SECOND
    step_flops = 6.0 * m * n * r
    depth = c.depth if c.model == "deep" and c.depth is not None else 2
    # deep (L >= 3): hidden k×k layers keep rank k for gaussian starts, min(k, m + n) otherwise, and a
    # step runs the forward and backward products through every layer
    d = k if c.init == "gaussian" else r
    if depth >= 3:
        step_flops += 6.0 * (depth - 2) * d * d * max(m, n)
    if c.model == "sigmoid":
        step_flops += 2.0 * 3 * c.n_samples * m * n * 2  # A·(UVᵀ), its gradient, and the baseline's
    if c.integrator == "gd":
        work, cpu_field = c.steps * (STEP_OVERHEAD_SECONDS + step_flops / FLOPS_PER_SECOND), "steps"
    elif _flow_compiled(c):
        rhs = flow_right_hand_sides(c)
        work, cpu_field = rhs * (COMPILED_FLOW_RHS_OVERHEAD_SECONDS + step_flops / FLOPS_PER_SECOND), "eta"
    else:
        solver_steps = FLOW_STEPS_PER_UNIT_STIFFNESS * _flow_stiffness(c) * c.eta * c.steps + 50.0
        work = solver_steps * 12 * (RHS_OVERHEAD_SECONDS + step_flops / FLOPS_PER_SECOND)
        cpu_field = "eta"
    fit = 0.0
    if c.fit_lambda0:
        pair_flops = (m + n) ** 3 / 3.0 + 2.0 * (m + n) ** 2 * min(m, n)
        pair = pair_flops / FLOPS_PER_SECOND + LAMBDA0_PAIR_OVERHEAD_SECONDS
        fit = LAMBDA0_FIT_SECONDS + LAMBDA0_FIT_RECORD_GRIDS * T * pair
    cpu = POINT_SECONDS + setup + records + work + fit

    terms = {
        "axes.k": STATE_COPIES * (m + n) * k,
        # X(t), its singular values, the reduced factors' records and the per-record scalar curves
        "record_every": T * (3 * m * n + min(m, n) + 2 * (m + n) * r + 10) + (T * (m + n) ** 2 if c.fit_lambda0 else 0),
        "m": 8 * m * n + 4 * (m + n) ** 2,
    }
    if depth >= 3:
        terms["depth"] = STATE_COPIES * (depth - 2) * d * d
    if c.model == "sigmoid":
        terms["n_samples"] = SIGMOID_COPIES * c.n_samples * max(m, n)
    memory_field = max(terms, key=lambda name: terms[name])
    peak = BASE_BYTES + TEMPORARIES * BYTES_PER_FLOAT * sum(terms.values())
    return PointCost(cpu_seconds=cpu, peak_bytes=peak, cpu_field=cpu_field, memory_field=memory_field)


def human_seconds(s: float) -> str:
    if not math.isfinite(s) or s >= 1e15:
        return f"{s:.3g} s"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"


def human_bytes(b: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"
