"""The regularized flow's closed form (eq. (21)) for a stack of points at once.

`closed_forms.regularized_flow` of one point is ~40 numpy calls on 15 x 15 matrices: for cheap
points that per-call cost, not the arithmetic, is most of a point's metrics. Here the same "stable"
form (closed_forms.riccati, block X = P[:m, m:]) runs on the whole batch, each step one stacked call;
a point that needs the rank-preserving factored form (P0 singular on A's unstable eigenspace, e.g.
balanced starts) is computed by `regularized_flow` itself. Same numbers to rounding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .closed_forms import regularized_flow
from .compiled import compiled_module
from .linalg import stacked_eigh, stacked_eigvalsh
from .types import FloatArray

# Points per stacked call: about this many (N x N) systems at once keep the work arrays in cache.
_SYSTEMS_PER_CALL = 1024
_FUSED = "flowsweep.core._closed_forms_fused"


def regularized_flow_stacked(
    Y: FloatArray, U0: FloatArray, V0: FloatArray, lambda0: npt.ArrayLike, t: npt.ArrayLike
) -> FloatArray:
    """X_reg(t; lambda0) of every point, (B, T, m, n): Y (B, m, n), U0 (B, m, r), V0 (B, n, r),
    lambda0 a scalar or (B,), t (T,)."""
    Bn = Y.shape[0]
    t = np.atleast_1d(np.asarray(t, float))
    lam = np.broadcast_to(np.asarray(lambda0, dtype=float), (Bn,))
    # the compiled stage works point by point: no (B, T, N, N) arrays to keep in cache
    step = Bn if compiled_module(_FUSED) is not None else max(1, _SYSTEMS_PER_CALL // len(t))
    if Bn <= step:
        return _stacked(Y, U0, V0, lam, t)
    return np.concatenate(
        [
            _stacked(Y[i : i + step], U0[i : i + step], V0[i : i + step], lam[i : i + step], t)
            for i in range(0, Bn, step)
        ]
    )


def _stacked(Y: FloatArray, U0: FloatArray, V0: FloatArray, lam: FloatArray, t: FloatArray) -> FloatArray:
    Bn, m, n = Y.shape
    Nn = m + n
    T = len(t)
    # S~ = S_Y + (lambda0/2) J (closed_forms.shifted_gram_A), P0 = R0 R0^T
    A = np.zeros((Bn, Nn, Nn))
    A[:, :m, m:] = Y
    A[:, m:, :m] = np.swapaxes(Y, 1, 2)
    diag = A.reshape(Bn, -1)[:, :: Nn + 1]
    diag[:, :m] += 0.5 * lam[:, None]
    diag[:, m:] -= 0.5 * lam[:, None]
    a, E = stacked_eigh(A)
    fused = compiled_module(_FUSED)
    if fused is not None:  # the same P0e = E^T P0 E, as Z Z^T with Z = E^T R0 (no stacked matmuls)
        P0e = np.empty((Bn, Nn, Nn))
        fused.rotated_gram(E, np.ascontiguousarray(U0, dtype=float), np.ascontiguousarray(V0, dtype=float), P0e)
    else:
        R0 = np.concatenate([U0, V0], axis=1)
        P0 = R0 @ np.swapaxes(R0, 1, 2)
        P0e = np.swapaxes(E, 1, 2) @ P0 @ E
    amax = np.maximum(np.max(np.abs(a), axis=1), 1e-300)
    pos = a > 1e-12 * amax[:, None]  # eigh sorts ascending: pos is a tail
    out = np.empty((Bn, T, m, n))
    stable = _positive_on_unstable(P0e, pos.sum(axis=1))
    for b in np.flatnonzero(~stable):  # the factored form, point by point
        out[b] = regularized_flow(Y[b], U0[b], V0[b], float(lam[b]), t).X
    s = np.flatnonzero(stable)
    if not len(s):
        return out
    everyone = len(s) == Bn
    if not everyone:
        a, E, P0e, pos = a[s], E[s], P0e[s], pos[s]
    absa = np.abs(a)
    pstar = np.where(pos, 2.0 * a, 0.0)
    # c = e^{-t|a|}, d = c^2 (a > 0) or 1, M = t h with h = (1 - e^{-z}) / z, z = 2 t |a| (as
    # closed_forms._one_minus_exp_over); (B, T, N), in place: the same numbers with fewer temporaries
    z = t[None, :, None] * absa[:, None, :]
    c = np.exp(-z)
    if fused is not None:  # the same per (point, time), LANES times at once; D0, base, d and M formed there
        z *= -2.0
        em = np.expm1(z)
        Xs = out if everyone else np.empty((len(s), T, m, n))
        with np.errstate(all="ignore"):
            fused.stable_form(P0e, pstar, c, em, t, absa, pos, np.ascontiguousarray(E), Xs)
        if not everyone:
            out[s] = Xs
        return out
    D0 = P0e.copy()
    D0.reshape(len(s), -1)[:, :: Nn + 1] -= pstar
    Er, Ec = E[:, :m], E[:, m:]
    base = (Er * pstar[:, None, :]) @ np.swapaxes(Ec, 1, 2)
    d = c * c
    np.copyto(d, 1.0, where=~pos[:, None, :])
    z *= 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        M = np.expm1(-z)
        M /= z
    np.negative(M, out=M)
    np.copyto(M, 1.0 - z / 2.0, where=z <= 1e-12)
    M *= t[None, :, None]
    K = M[..., None] * P0e[:, None]  # I + M D0 = diag(d) + M P0e
    K.reshape(len(s), T, -1)[:, :, :: Nn + 1] += d
    EcT = np.swapaxes(Ec, 1, 2)[:, None]
    ErcD0 = (Er[:, None] * c[:, :, None, :]) @ D0[:, None]  # (B, T, m, N)
    if m < n:  # solve from the side with fewer columns
        W = np.linalg.solve(np.swapaxes(K, 2, 3), np.swapaxes(ErcD0, 2, 3))
        out[s] = base[:, None] + (np.swapaxes(W, 2, 3) * c[:, :, None, :]) @ EcT
    else:
        out[s] = base[:, None] + ErcD0 @ np.linalg.solve(K, c[..., None] * EcT)
    return out


def _positive_on_unstable(P0e: FloatArray, n_pos: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Whether the stable form applies to each point: P0 > 0 on the unstable eigenspace (the last
    n_pos eigenvectors), i.e. mu > 1e-7 top with mu the smallest eigenvalue of that block of P0e
    and top the largest of P0e (True where n_pos = 0). top is only computed where its bounds leave
    the answer open: max_i P0e_ii <= top <= ||S||_F <= sqrt(2) ||P0e||_F (S: the symmetric matrix the
    eigensolver reads, P0e's lower triangle mirrored), widened by far more than the solver's
    rounding (~N eps ||P0e||): the same decisions as with top itself, without an N x N eigenvalue
    problem per point."""
    Bn, N = len(n_pos), P0e.shape[-1]
    mu = np.full(Bn, np.nan)
    for p in np.unique(n_pos[n_pos > 0]).tolist():
        rows = np.flatnonzero(n_pos == p)
        mu[rows] = stacked_eigvalsh(P0e[:, -p:, -p:] if len(rows) == Bn else P0e[rows, -p:, -p:])[:, 0]
    flat = P0e.reshape(Bn, N * N)
    with np.errstate(invalid="ignore", over="ignore"):
        fro = np.sqrt(2.0 * np.vecdot(flat, flat))  # >= the Frobenius norm of P0e's lower triangle mirrored
        upper = np.maximum(fro * (1.0 + 1e-10), 1e-300)  # >= top as computed
        lower = np.maximum(flat[:, :: N + 1].max(axis=1) - 1e-10 * fro, 1e-300)  # <= top as computed
        sure = mu > 1e-7 * upper
        undecided = (n_pos > 0) & ~sure & ~(mu <= 1e-7 * lower)  # NaN: undecided, as top decides
    stable = np.where(n_pos > 0, sure, True)
    if undecided.any():
        top = stacked_eigvalsh(P0e[undecided])[:, -1]
        stable[undecided] = mu[undecided] > 1e-7 * np.maximum(top, 1e-300)
    return stable
