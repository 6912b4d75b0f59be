"""run_points: validate, group by shape, run each group as one vectorised batch, build results."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from flowsweep.status import PointStatus

from . import deep
from .closed_forms_stacked import regularized_flow_stacked
from .data import make_initial_state, make_initial_states
from .dynamics import Problem, Trajectory, integrate, record_grid, reduce_factors
from .linalg import compiled_singular_values, stacked_eigvalsh
from .metrics import batch_metrics
from .types import METRIC_FIELDS, CurveBlock, FloatArray, PointConfig, PointResult, ResultColumns
from .validation import validate_config

# Memory budget of one vectorised batch (float64 elements of the recorded X and sigmoid arrays).
_MAX_BATCH = 512
_MAX_FLOW_BATCH = 64  # a stacked flow solve steps at the pace of its stiffest point
_RECORD_BUDGET = 2e7


def initial_state(config: PointConfig) -> dict[str, np.ndarray]:
    """The exact arrays a point starts from: {"Y", "U0", "V0"} (+ "A", "W0" for sigmoid).

    These are bit-identical to what `run_points` uses (V0 is U0 for the symmetric model)."""
    validate_config(config)
    if config.model == "deep":  # {"Y", "W1".."WL"} (+ "U0", "V0" for L >= 2)
        return deep.initial_state(config)
    return make_initial_state(config).as_dict(config.model)


def singular_values(X: np.ndarray) -> np.ndarray:
    """Singular values of a stack of matrices, descending, as square roots of the eigenvalues of
    the smaller Gram matrix (several times cheaper than batched SVDs of these small matrices;
    absolute accuracy ~ eps * sigma_max^2 / sigma, ample for curves)."""
    flat = X.reshape((-1, 1) + X.shape[-2:])  # the kernel of trajectory_singular_values: the same numbers
    sv = compiled_singular_values(flat, np.zeros(len(flat), dtype=np.int64))
    if sv is not None:
        return sv.reshape(X.shape[:-2] + (sv.shape[-1],))
    with np.errstate(all="ignore"):
        if not np.isfinite(X).all():  # diverged points: their curves are cut anyway
            X = np.nan_to_num(X)
        G = X @ np.swapaxes(X, -1, -2) if X.shape[-2] <= X.shape[-1] else np.swapaxes(X, -1, -2) @ X
        w = stacked_eigvalsh(G)
    return np.sqrt(np.maximum(w[..., ::-1], 0.0))


def trajectory_singular_values(tr: Trajectory, record_iterations: np.ndarray) -> np.ndarray:
    """Singular values of tr.X, (B, T, min(m, n)). The records after a gd point left the batch
    (stopped at machine precision, or diverged) repeat one state: computed once."""
    B, T = tr.X.shape[:2]
    if tr.iterations is None:
        first = np.full(B, T - 1)
    else:  # the first record at or after the iteration where the point left; later ones repeat it
        first = np.minimum(np.searchsorted(record_iterations, tr.iterations, side="left"), T - 1)
    sv = compiled_singular_values(tr.X, first)  # one kernel: Gram matrices, eigenvalues
    if sv is not None:
        return sv
    own = np.arange(T)[None, :] <= first[:, None]
    if own.all():
        return singular_values(tr.X)
    sv = np.empty(tr.X.shape[:2] + (min(tr.X.shape[2:]),))
    sv[own] = singular_values(tr.X[own])
    return np.take_along_axis(sv, np.minimum(np.arange(T)[None, :], first[:, None])[..., None], axis=1)


def _present(a: FloatArray | None, what: str, model: str) -> FloatArray:
    """An initial state's array that the model needs (V0 for two factors, A for sigmoid)."""
    if a is None:
        raise ValueError(f"initial state: the {model} model needs {what}, got None")
    return a


def _stacked_problem(configs: list[PointConfig]) -> Problem:
    """The stacked Problem (reduced factors) of configs sharing one shape key."""
    c0 = configs[0]
    s = make_initial_states(configs)
    sym = c0.model == "symmetric"
    U0, V0 = reduce_factors(s.U0, None if sym else _present(s.V0, "V0", c0.model), s.factors)  # one batched Cholesky
    A = None if c0.model != "sigmoid" else _present(s.A, "A", c0.model)
    return Problem(model=c0.model, Y=s.Y, U0=U0, V0=V0, A=A)


def simulate(configs: Sequence[PointConfig] | PointConfig) -> Trajectory:
    """The raw batched trajectory (X(t), e(t), ||Q(t) - Q0||, ...) of configs sharing one shape key,
    for notebooks and checks; `run_points` adds metrics and curves on top of the same computation."""
    configs = [configs] if isinstance(configs, PointConfig) else list(configs)
    for c in configs:
        validate_config(c)
    if len({c.shape_key() for c in configs}) != 1:
        raise ValueError("configs: simulate needs configs with one shape_key()")
    if configs[0].model == "deep":
        return deep.simulate(configs)
    return _integrate(configs, _stacked_problem(configs))


def _integrate(configs: list[PointConfig], prob: Problem) -> Trajectory:
    """gd or flow on the stacked problem of configs sharing one shape key."""
    c0 = configs[0]
    return integrate(prob, c0.integrator, c0.eta, c0.steps, c0.record_every, np.array([c.tol for c in configs]))


def _chunk_size(c: PointConfig) -> int:
    T = c.steps // c.record_every + 1
    per_point = T * c.m * c.n
    if c.model == "sigmoid":
        per_point += 6 * c.n_samples * c.m
    if c.model == "deep":  # layers, forward products and their gradients
        per_point += 3 * deep.state_size(c)
    cap = _MAX_FLOW_BATCH if c.integrator == "flow" else _MAX_BATCH
    return int(max(1, min(cap, _RECORD_BUDGET // per_point)))


class _Group:
    """One batch's results as columns (statuses, metric columns, curves), rows in batch order."""

    def __init__(
        self,
        statuses: list[PointStatus],
        metrics: dict[str, list[Any]],
        block: CurveBlock | None,
        wall: float,
        error: str | None = None,
    ) -> None:
        self.statuses, self.metrics, self.block, self.wall, self.error = statuses, metrics, block, wall, error

    @classmethod
    def failed(cls, message: str) -> _Group:
        return cls([PointStatus.FAILED], {f: [None] for f in METRIC_FIELDS}, None, 0.0, message)

    @classmethod
    def of_results(cls, results: list[PointResult]) -> list[_Group]:
        """Per-point results (the deep model's) as groups of one."""
        return [
            cls(
                [r.status],
                {f: [r.metrics.get(f)] for f in METRIC_FIELDS},
                None if r.curves is None else CurveBlock.of(r.curves),
                r.wall_seconds,
                r.error,
            )
            for r in results
        ]


def _run_group(configs: list[PointConfig]) -> list[_Group]:
    """One vectorised batch: every config shares `shape_key()`."""
    if configs[0].model == "deep":  # core/deep.py: own layers, integrators, metrics
        return _Group.of_results(deep.run_group(configs))
    t0 = time.perf_counter()
    prob = _stacked_problem(configs)
    tr = _integrate(configs, prob)
    c0 = configs[0]
    sv = trajectory_singular_values(tr, record_grid(c0.eta, c0.steps, c0.record_every))
    X_reg = _regularized_flows(configs, prob, tr)
    statuses, metrics, block = batch_metrics(configs, prob.Y, prob.U0, prob.V0, tr, sv, X_reg=X_reg)
    return [_Group(statuses, metrics, block, (time.perf_counter() - t0) / len(configs))]


def _regularized_flows(configs: list[PointConfig], prob: Problem, tr: Trajectory) -> FloatArray | None:
    """X_reg(t; lambda0) (B, T, m, n) of an asymmetric batch, the points that did not diverge in
    stacked calls (the `regularized_error` metric; the other rows are zero); None otherwise."""
    live = np.flatnonzero(tr.diverged_at < 0)
    if configs[0].model != "asymmetric" or not len(live):
        return None
    lam = np.array([configs[b].lambda0 for b in live])
    V0 = _present(prob.V0, "V0", prob.model)
    if len(live) == len(configs):
        return regularized_flow_stacked(prob.Y, prob.U0, V0, lam, tr.t)
    out = np.zeros(tr.X.shape)
    out[live] = regularized_flow_stacked(prob.Y[live], prob.U0[live], V0[live], lam, tr.t)
    return out


def _run_group_safely(configs: list[PointConfig]) -> list[_Group]:
    try:
        return _run_group(configs)
    except Exception as exc:  # isolate the point that breaks the batch
        if len(configs) == 1:
            return [_Group.failed(f"{type(exc).__name__}: {exc}")]
        return [g for c in configs for g in _run_group_safely([c])]


def run_points_columns(configs: Sequence[PointConfig]) -> ResultColumns:
    """`run_points` as columns (types.ResultColumns): the same results without a Python object per
    point, for callers that turn them into rows."""
    configs = list(configs)
    P = len(configs)
    status: list[PointStatus | None] = [None] * P
    error: list[str | None] = [None] * P
    wall = [0.0] * P
    metrics: dict[str, list[Any]] = {f: [None] * P for f in METRIC_FIELDS}
    blocks: list[CurveBlock] = []
    block_points: list[np.ndarray] = []
    groups: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
    for i, c in enumerate(configs):
        try:
            validate_config(c)
        except ValueError as exc:
            status[i], error[i] = PointStatus.FAILED, str(exc)
            continue
        except Exception as exc:  # e.g. a value of a wrong type
            status[i], error[i] = PointStatus.FAILED, f"{type(exc).__name__}: {exc}"
            continue
        groups.setdefault(c.shape_key(), []).append(i)
    for idx in groups.values():
        size = _chunk_size(configs[idx[0]])
        for s in range(0, len(idx), size):
            part = idx[s : s + size]
            done = 0
            for g in _run_group_safely([configs[i] for i in part]):
                pts = part[done : done + len(g.statuses)]
                done += len(pts)
                k = len(pts)
                if pts[-1] - pts[0] == k - 1:  # consecutive points (one shape): slices, not loops
                    at = slice(pts[0], pts[0] + k)
                    status[at], error[at], wall[at] = g.statuses, [g.error] * k, [g.wall] * k
                    for f, values in g.metrics.items():
                        if len(values) != k:  # a slice assignment would resize the column
                            raise RuntimeError(f"run_points: {k} points, {len(values)} values of {f}")
                        metrics[f][at] = values
                else:
                    for j, i in enumerate(pts):
                        status[i], error[i], wall[i] = g.statuses[j], g.error, g.wall
                    for f, values in g.metrics.items():
                        column = metrics[f]
                        for i, v in zip(pts, values):
                            column[i] = v
                if g.block is not None:
                    blocks.append(g.block)
                    block_points.append(np.array(pts, dtype=np.int64))
            if done != len(part):
                raise RuntimeError(f"run_points: {len(part)} points ran, {done} results")
    if None in status:  # every point is validated, failed or run above
        raise RuntimeError(f"run_points: point {status.index(None)} has no result")
    return ResultColumns(
        configs=configs,
        status=status,  # type: ignore[arg-type]  # no None left (checked above)
        error=error,
        wall_seconds=wall,
        metrics=metrics,
        blocks=blocks,
        block_points=block_points,
    )


def run_points(configs: Sequence[PointConfig]) -> list[PointResult]:
    """Run points; same order as the input. Points with equal `shape_key()` run as one
    vectorised batch. Never raises for a per-point problem: an invalid config gives status
    "failed" with an error text, non-finite values status "diverged" with metrics["diverged_at"]."""
    return run_points_columns(configs).results()


def run_point(config: PointConfig) -> PointResult:
    """A batch of one."""
    return run_points([config])[0]


def warm_up() -> None:
    """Run one tiny point, so that what a first batch would pay for is paid now: imports, and with
    numba the compiled kernels loaded from their cache (or compiled into it, once per machine)."""
    # k > m + n: the factors' reduction runs too
    run_point(PointConfig(model="asymmetric", m=2, n=3, k=6, eta=0.01, steps=2, fit_lambda0=True))
    run_point(PointConfig(model="asymmetric", m=2, n=3, k=4, eta=0.01, steps=2, integrator="flow"))
