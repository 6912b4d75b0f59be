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
from .data import InitialState, make_initial_state
from .dynamics import Problem, Trajectory, integrate, record_grid, reduce_factors
from .metrics import point_metrics
from .types import METRIC_FIELDS, FloatArray, PointConfig, PointResult
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
    with np.errstate(all="ignore"):
        if not np.isfinite(X).all():  # diverged points: their curves are cut anyway
            X = np.nan_to_num(X)
        G = X @ np.swapaxes(X, -1, -2) if X.shape[-2] <= X.shape[-1] else np.swapaxes(X, -1, -2) @ X
        w = np.linalg.eigvalsh(G)
    return np.sqrt(np.maximum(w[..., ::-1], 0.0))


def trajectory_singular_values(tr: Trajectory, record_iterations: np.ndarray) -> np.ndarray:
    """Singular values of tr.X, (B, T, min(m, n)). The records after a gd point left the batch
    (stopped at machine precision, or diverged) repeat one state: computed once."""
    if tr.iterations is None:
        return singular_values(tr.X)
    T = len(record_iterations)
    # the first record at or after the iteration where the point left; later ones repeat it
    first = np.minimum(np.searchsorted(record_iterations, tr.iterations, side="left"), T - 1)
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


def _problem(
    configs: list[PointConfig],
) -> tuple[list[InitialState], list[tuple[FloatArray, FloatArray | None]], Problem]:
    """States, reduced factors and the stacked Problem of configs sharing one shape key."""
    c0 = configs[0]
    states = [make_initial_state(c) for c in configs]
    sym = c0.model == "symmetric"
    U0, V0 = reduce_factors(
        np.stack([s.U0 for s in states]),  # one batched QR
        None if sym else np.stack([_present(s.V0, "V0", c0.model) for s in states]),
    )
    reduced = [(U0[b], None if V0 is None else V0[b]) for b in range(len(configs))]
    prob = Problem(
        model=c0.model,
        Y=np.stack([s.Y for s in states]),
        U0=U0,
        V0=V0,
        A=None if c0.model != "sigmoid" else np.stack([_present(s.A, "A", c0.model) for s in states]),
    )
    return states, reduced, prob


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
    return _integrate(configs, _problem(configs)[2])


def _integrate(configs: list[PointConfig], prob: Problem) -> Trajectory:
    """gd or flow on the stacked problem of configs sharing one shape key."""
    c0 = configs[0]
    return integrate(prob, c0.integrator, c0.eta, c0.steps, c0.record_every, np.array([c.tol for c in configs]))


def _failed(config: PointConfig, message: str) -> PointResult:
    return PointResult(
        config=config, status=PointStatus.FAILED, metrics=dict.fromkeys(METRIC_FIELDS), curves=None, error=message
    )


def _chunk_size(c: PointConfig) -> int:
    T = c.steps // c.record_every + 1
    per_point = T * c.m * c.n
    if c.model == "sigmoid":
        per_point += 6 * c.n_samples * c.m
    if c.model == "deep":  # layers, forward products and their gradients
        per_point += 3 * deep.state_size(c)
    cap = _MAX_FLOW_BATCH if c.integrator == "flow" else _MAX_BATCH
    return int(max(1, min(cap, _RECORD_BUDGET // per_point)))


def _run_group(configs: list[PointConfig]) -> list[PointResult]:
    """One vectorised batch: every config shares `shape_key()`."""
    if configs[0].model == "deep":  # core/deep.py: own layers, integrators, metrics
        return deep.run_group(configs)
    t0 = time.perf_counter()
    states, reduced, prob = _problem(configs)
    tr = _integrate(configs, prob)
    c0 = configs[0]
    sv = trajectory_singular_values(tr, record_grid(c0.eta, c0.steps, c0.record_every))
    X_reg = _regularized_flows(configs, prob, tr)
    out = []
    for b, c in enumerate(configs):
        Ub, Vb = reduced[b]
        status, met, curves = point_metrics(c, states[b].Y, Ub, Vb, tr, b, sv[b], X_reg=X_reg[b])
        out.append(PointResult(config=c, status=status, metrics=met, curves=curves))
    wall = (time.perf_counter() - t0) / len(configs)
    for r in out:
        r.wall_seconds = wall
    return out


def _regularized_flows(configs: list[PointConfig], prob: Problem, tr: Trajectory) -> list[FloatArray | None]:
    """X_reg(t; lambda0) of the batch's asymmetric points that did not diverge, in stacked calls
    (the `regularized_error` metric; None where point_metrics does not use it)."""
    out: list[FloatArray | None] = [None] * len(configs)
    live = np.flatnonzero(tr.diverged_at < 0)
    if configs[0].model != "asymmetric" or not len(live):
        return out
    lam = np.array([configs[b].lambda0 for b in live])
    V0 = _present(prob.V0, "V0", prob.model)
    X = regularized_flow_stacked(prob.Y[live], prob.U0[live], V0[live], lam, tr.t)
    for j, b in enumerate(live):
        out[b] = X[j]
    return out


def _run_group_safely(configs: list[PointConfig]) -> list[PointResult]:
    try:
        return _run_group(configs)
    except Exception as exc:  # isolate the point that breaks the batch
        if len(configs) == 1:
            return [_failed(configs[0], f"{type(exc).__name__}: {exc}")]
        return [r for c in configs for r in _run_group_safely([c])]


def run_points(configs: Sequence[PointConfig]) -> list[PointResult]:
    """Run points; same order as the input. Points with equal `shape_key()` run as one
    vectorised batch. Never raises for a per-point problem: an invalid config gives status
    "failed" with an error text, non-finite values status "diverged" with metrics["diverged_at"]."""
    results: list[PointResult | None] = [None] * len(configs)
    groups: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
    for i, c in enumerate(configs):
        try:
            validate_config(c)
        except ValueError as exc:
            results[i] = _failed(c, str(exc))
            continue
        except Exception as exc:  # e.g. a value of a wrong type
            results[i] = _failed(c, f"{type(exc).__name__}: {exc}")
            continue
        groups.setdefault(c.shape_key(), []).append(i)
    for idx in groups.values():
        size = _chunk_size(configs[idx[0]])
        for s in range(0, len(idx), size):
            part = idx[s : s + size]
            for i, r in zip(part, _run_group_safely([configs[i] for i in part])):
                results[i] = r
    out: list[PointResult] = []
    for i, res in enumerate(results):
        if res is None:  # every point is validated, failed or run above
            raise RuntimeError(f"run_points: point {i} has no result")
        out.append(res)
    return out


def run_point(config: PointConfig) -> PointResult:
    """A batch of one."""
    return run_points([config])[0]
