"""What every integrator shares: the batch (`Problem`), what is recorded (`Trajectory`), the reduced
coordinates, the record grid, the batched gradients and the named divergence error."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import sigmoid

# A relative error above this is treated as divergence (it only ever grows to inf from there).
DIVERGENCE_ERROR = 1e20


@dataclass
class Problem:
    """A batch of points of one shape: model, data and reduced initial factors."""

    model: str                      # "asymmetric" | "symmetric" | "sigmoid"
    Y: np.ndarray                   # (B, m, n) or (B, N, d) for sigmoid
    U0: np.ndarray                  # (B, m, r)
    V0: np.ndarray | None           # (B, n, r); None for symmetric
    A: np.ndarray | None = None     # (B, N, d) sigmoid inputs
    y_norm: np.ndarray | None = None  # (B,) ||Y||

    def __post_init__(self):
        if self.y_norm is None:
            self.y_norm = np.sqrt(np.einsum("bij,bij->b", self.Y, self.Y))

    @property
    def batch(self) -> int:
        return self.Y.shape[0]


@dataclass
class Trajectory:
    """What an integrator recorded on the grid t = eta * i, i = 0, record_every, ... <= steps."""

    t: np.ndarray                   # (T,)
    X: np.ndarray                   # (B, T, m, n) end-to-end map (U V^T, U U^T, or U V^T for sigmoid)
    error: np.ndarray               # (B, T) relative error e(t)
    q_drift: np.ndarray | None      # (B, T) ||Q(t) - Q0||_F (None for symmetric)
    time_to_tol: np.ndarray         # (B,) first t with e <= tol, nan if not reached
    final_error: np.ndarray         # (B,) e at t = eta * steps
    diverged_at: np.ndarray         # (B,) iteration of divergence, -1 if none
    error_linear: np.ndarray | None = None        # (B, T) simulated baseline (sigmoid only)
    time_to_tol_linear: np.ndarray | None = None  # (B,) simulated baseline (sigmoid only)
    final_error_linear: np.ndarray | None = None  # (B,)
    iterations: np.ndarray | None = None          # (B,) gd steps computed (fewer once stopped)


def reduce_factors(U0: np.ndarray, V0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Coordinates of U0 (and V0) in an orthonormal basis of the row space of [U0; V0]; a stack of
    points (leading batch dimension) is reduced in one call."""
    R0 = U0 if V0 is None else np.concatenate([U0, V0], axis=-2)
    if R0.shape[-1] <= R0.shape[-2]:        # nothing to gain: k <= m (+ n)
        return U0, V0
    B, _ = np.linalg.qr(np.swapaxes(R0, -1, -2))   # (k, m+n), orthonormal columns spanning R0's rows
    return U0 @ B, (None if V0 is None else V0 @ B)


def record_grid(eta: float, steps: int, record_every: int) -> np.ndarray:
    return np.arange(0, steps + 1, record_every)


# ---------------------------------------------------------------- gradients (batched) -----

def residual_and_grads(p: Problem, U, V):
    """Return (end-to-end X, squared residual norm, dU, dV) with dU = -dL/dU (descent direction)."""
    if p.model == "asymmetric":
        X = U @ V.transpose(0, 2, 1)
        R = p.Y - X
        return X, np.einsum("bij,bij->b", R, R), R @ V, R.transpose(0, 2, 1) @ U
    if p.model == "symmetric":
        X = U @ U.transpose(0, 2, 1)
        R = p.Y - X
        return X, np.einsum("bij,bij->b", R, R), 2.0 * (R @ U), None
    X = U @ V.transpose(0, 2, 1)                  # sigmoid: loss 1/2 ||Y - phi(A X)||^2
    G, r2 = sigmoid_grad(p, X)
    return X, r2, G @ V, G.transpose(0, 2, 1) @ U


def sigmoid_grad(p: Problem, X):
    """-dL/dX = A^T [(Y - phi) * phi * (1 - phi)] for L = 1/2 ||Y - phi(A X)||^2."""
    P = sigmoid(p.A @ X)
    Rr = p.Y - P
    G = p.A.transpose(0, 2, 1) @ (Rr * P * (1.0 - P))
    return G, np.einsum("bij,bij->b", Rr, Rr)


def gram_diff(U, V):
    return U.transpose(0, 2, 1) @ U - V.transpose(0, 2, 1) @ V


class FlowDiverged(FloatingPointError):
    """The stacked flow solve met a non-finite or absurdly large error (or the solver gave up).

    `iteration`: the first grid iteration (t / eta) at or after which the solution is bad."""

    def __init__(self, iteration: int, t: float):
        super().__init__(f"flow diverged at t={t:g} (iteration {iteration})")
        self.iteration = iteration
        self.t = t
