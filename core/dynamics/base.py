"""What every integrator shares: the batch (`Problem`), what is recorded (`Trajectory`), the reduced
coordinates, the record grid, the batched gradients and the named divergence error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..compiled import compiled_module
from ..data import sigmoid
from ..types import FloatArray, IntArray

_REDUCE_FUSED = "flowsweep.core.dynamics._reduce_fused"

# A relative error above this is treated as divergence (it only ever grows to inf from there).
DIVERGENCE_ERROR = 1e20


@dataclass(init=False)
class Problem:
    """A batch of points of one shape: model, data and reduced initial factors."""

    model: str  # "asymmetric" | "symmetric" | "sigmoid"
    Y: FloatArray  # (B, m, n) or (B, N, d) for sigmoid
    U0: FloatArray  # (B, m, r)
    V0: FloatArray | None  # (B, n, r); None for symmetric
    A: FloatArray | None  # (B, N, d) sigmoid inputs
    y_norm: FloatArray  # (B,) ||Y||

    # written out (not generated) so that y_norm, optional here, is always an array afterwards
    def __init__(
        self,
        model: str,
        Y: FloatArray,
        U0: FloatArray,
        V0: FloatArray | None,
        A: FloatArray | None = None,
        y_norm: FloatArray | None = None,
    ) -> None:
        self.model, self.Y, self.U0, self.V0, self.A = model, Y, U0, V0, A
        self.y_norm = np.sqrt(np.einsum("bij,bij->b", Y, Y)) if y_norm is None else y_norm

    @property
    def batch(self) -> int:
        return int(self.Y.shape[0])


@dataclass
class Trajectory:
    """What an integrator recorded on the grid t = eta * i, i = 0, record_every, ... <= steps."""

    t: FloatArray  # (T,)
    X: FloatArray  # (B, T, m, n) end-to-end map (U V^T, U U^T, or U V^T for sigmoid)
    error: FloatArray  # (B, T) relative error e(t)
    q_drift: FloatArray | None  # (B, T) ||Q(t) - Q0||_F (None for symmetric)
    time_to_tol: FloatArray  # (B,) first t with e <= tol, nan if not reached
    final_error: FloatArray  # (B,) e at t = eta * steps
    diverged_at: IntArray  # (B,) iteration of divergence, -1 if none
    error_linear: FloatArray | None = None  # (B, T) simulated baseline (sigmoid only)
    time_to_tol_linear: FloatArray | None = None  # (B,) simulated baseline (sigmoid only)
    final_error_linear: FloatArray | None = None  # (B,)
    iterations: IntArray | None = None  # (B,) gd steps computed (fewer once stopped)
    # factors (reduced coordinates) at the last state computed, for rate_lin and the gd stability
    # limit; None where an integrator does not keep them (sigmoid), zeros for diverged points
    U_final: FloatArray | None = None  # (B, m, r)
    V_final: FloatArray | None = None  # (B, n, r); None for symmetric


def reduce_factors(
    U0: FloatArray, V0: FloatArray | None, stacked: FloatArray | None = None
) -> tuple[FloatArray, FloatArray | None]:
    """Coordinates of U0 (and V0) in an orthonormal basis of the row space of [U0; V0]; a stack of
    points (leading batch dimension) is reduced in one call. `stacked`: [U0; V0] itself when the
    caller holds it as one array (no copy to make).

    gd and the flow act on [U; V] through its Gram matrix G = [U0; V0] [U0; V0]^T only (X = U V^T,
    R V, R^T U, Q = U^T U - V^T V stay in the row space), so any F with F F^T = G is such a set of
    coordinates: the Cholesky factor L of G (for R0^T = Q R, L = R^T up to column signs, without
    forming Q). Cholesky is backward stable when it completes (L L^T = G + O(eps ||G||)); a point
    whose G is singular (balanced, spectral starts: rank m) takes the R of a Householder QR."""
    R0 = stacked if stacked is not None else U0 if V0 is None else np.concatenate([U0, V0], axis=-2)
    r, k = R0.shape[-2], R0.shape[-1]
    if k <= r:  # nothing to gain: k <= m (+ n)
        return U0, V0
    fused = compiled_module(_REDUCE_FUSED)
    if fused is not None:  # with numba: G and L in one compiled pass, the QR for the points it refused
        flat = np.ascontiguousarray(R0, dtype=np.float64).reshape(-1, r * k)
        L = np.empty((len(flat), r, r))
        ok = np.empty(len(flat), dtype=np.bool_)
        fused.gram_cholesky(flat, r, L, ok)
        if not ok.all():
            L[~ok] = _qr_coordinates(flat[~ok].reshape(-1, r, k))
        L = L.reshape(R0.shape[:-1] + (r,))
    else:
        try:
            L = np.linalg.cholesky(R0 @ np.swapaxes(R0, -1, -2))  # (r, r) lower triangular
        except np.linalg.LinAlgError:  # some G of the stack
            L = _qr_coordinates(R0)
    m = U0.shape[-2]
    return np.ascontiguousarray(L[..., :m, :]), (None if V0 is None else np.ascontiguousarray(L[..., m:, :]))


def _qr_coordinates(R0: FloatArray) -> FloatArray:
    """R0's coordinates R^T in the orthonormal basis Q of R0^T = Q R (R only: no Q, no products)."""
    out: FloatArray = np.swapaxes(np.linalg.qr(np.swapaxes(R0, -1, -2), mode="r"), -1, -2)
    return out


def record_grid(eta: float, steps: int, record_every: int) -> IntArray:
    return np.arange(0, steps + 1, record_every)


# ---------------------------------------------------------------- gradients (batched) -----


def residual_and_grads(
    p: Problem, U: FloatArray, V: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
    """Return (end-to-end X, squared residual norm, dU, dV) with dU = -dL/dU (descent direction);
    V and dV are None for the symmetric model."""
    if p.model == "symmetric":
        X = U @ U.transpose(0, 2, 1)
        R = p.Y - X
        return X, np.einsum("bij,bij->b", R, R), 2.0 * (R @ U), None
    if V is None:
        raise ValueError(f"V: the {p.model} model has two factors, got None")
    if p.model == "asymmetric":
        X = U @ V.transpose(0, 2, 1)
        R = p.Y - X
        return X, np.einsum("bij,bij->b", R, R), R @ V, R.transpose(0, 2, 1) @ U
    X = U @ V.transpose(0, 2, 1)  # sigmoid: loss 1/2 ||Y - phi(A X)||^2
    G, r2 = sigmoid_grad(p, X)
    return X, r2, G @ V, G.transpose(0, 2, 1) @ U


def sigmoid_grad(p: Problem, X: FloatArray) -> tuple[FloatArray, FloatArray]:
    """-dL/dX = A^T [(Y - phi) * phi * (1 - phi)] for L = 1/2 ||Y - phi(A X)||^2; (G, ||Y - phi||^2)."""
    if p.A is None:
        raise ValueError("A: the sigmoid model needs its inputs, got None")
    P = sigmoid(p.A @ X)
    Rr = p.Y - P
    G = p.A.transpose(0, 2, 1) @ (Rr * P * (1.0 - P))
    return G, np.einsum("bij,bij->b", Rr, Rr)


def gram_diff(U: FloatArray, V: FloatArray) -> FloatArray:
    return U.transpose(0, 2, 1) @ U - V.transpose(0, 2, 1) @ V


class FlowDiverged(FloatingPointError):
    """The stacked flow solve met a non-finite or absurdly large error (or the solver gave up).

    `iteration`: the first grid iteration (t / eta) at or after which the solution is bad."""

    def __init__(self, iteration: int, t: float) -> None:
        super().__init__(f"flow diverged at t={t:g} (iteration {iteration})")
        self.iteration = iteration
        self.t = t
