"""The deep linear network (model `deep`, SPEC §2): X = W_L ⋯ W_2 W_1 with `depth` L >= 1.

W_1 ∈ R^{k×n}, W_j ∈ R^{k×k} (1 < j < L), W_L ∈ R^{m×k}; loss ½‖Y − X‖², so
Ẇ_j = (W_L⋯W_{j+1})ᵀ (Y − X) (W_{j−1}⋯W_1)ᵀ. Every adjacent pair conserves
C_j = W_{j+1}ᵀW_{j+1} − W_jW_jᵀ under the flow (Du, Hu, Lee 2018). L = 1 is the one-layer model,
L = 2 the `asymmetric` model with W_2 = U, W_1 = Vᵀ.

Initialisations (the same seed draws the same Y, U0, V0 as the asymmetric model):
- `gaussian`: W_L = U0, W_1 = V0ᵀ, the k×k middle layers N(0, s²) from a third random stream;
- `balanced`: the same end-to-end X0 = U0V0ᵀ as the asymmetric balanced init for every depth, split
  evenly over the layers (Arora et al. 2018/2019): with U0 = P S Rᵀ and V0 = W U0,
  W_L = P S^{2/L} O_{L−1}ᵀ, W_j = O_j S^{2/L} O_{j−1}ᵀ, W_1 = O_1 S^{2/L} (WP)ᵀ, O_{L−1} = R and the other
  frames O_j random; every C_j = 0 (at L = 2 this is U0, V0ᵀ);
- `spectral`: X0 = s² Φ Ψ_mᵀ for every depth, mode i of layer j scaled by a_j with Π_j a_j = s² and
  a_{j+1}² − a_j² = λ₀ (so C_j = λ₀ on the m modes; L = 2 is Definition 3), frames as for balanced.
L = 1 starts from X0 = U0V0ᵀ (or s²ΦΨ_mᵀ): the one-layer model from the two-layer model's start.

Reduced coordinates: hidden space j (between W_j and W_{j+1}) only ever uses
S_j = col W_j(0) + row W_{j+1}(0) (the gradient's columns and rows stay in these spaces), so the
layers are simulated as W̃_j = B_jᵀ W_j B_{j−1} with orthonormal bases B_j of S_j: rank ≤ m for the
balanced and spectral inits and ≤ m + n at L = 2, independent of k. Gaussian k×k middle layers have
rank k: nothing to reduce there (the dynamics reach all of R^k).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from flowsweep.jsonsafe import finite_or_none as clean  # float/int or None; NaN and inf become None
from flowsweep.status import PointStatus

from .data import haar_rows, make_data, make_weights, random_orthonormal_columns, spectral_factors, weight_rng
from .dynamics import DIVERGENCE_ERROR, FLOW_RTOL, FREEZE_ERROR, Trajectory, record_grid
from .dynamics.flow import FLOW_ATOL
from .dynamics.gd_linear import FREEZE_STEPS
from .fits import rate_fit
from .metrics import NOISE_FLOOR, linear_error_curve, linear_time_to_tol, point_metrics
from .types import METRIC_FIELDS, Curves, IntArray, PointConfig, PointResult

# ---------------------------------------------------------------- initial state -----------


@dataclass
class DeepState:
    """Y and the layers in reduced coordinates: W_j = B_j W̃_j B_{j−1}ᵀ (B_0 = I_n, B_L = I_m).

    `layers[j-1]` is W̃_j, shape (d_j, d_{j−1}) with d_0 = n, d_L = m; `bases[j-1]` is B_j (k×d_j)
    or None where no reduction was made (B_j = I_k)."""

    Y: np.ndarray
    layers: list[np.ndarray]
    bases: Sequence[np.ndarray | None]

    def full_layers(self) -> list[np.ndarray]:
        L = len(self.layers)
        out: list[np.ndarray] = []
        for j, W in enumerate(self.layers):  # j = 0 is W_1
            Bo = self.bases[j] if j < L - 1 else None
            Bi = self.bases[j - 1] if j > 0 else None
            F = W if Bo is None else Bo @ W
            out.append(F if Bi is None else F @ Bi.T)
        return out

    def as_dict(self) -> dict[str, np.ndarray]:
        """{"Y", "W1", ..., "WL"} and, for L >= 2, "U0" = W_L and "V0" = W_1ᵀ (the asymmetric names)."""
        Ws = self.full_layers()
        out = {"Y": self.Y}
        if len(Ws) >= 2:
            out["U0"], out["V0"] = Ws[-1], Ws[0].T
        out.update({f"W{j + 1}": W for j, W in enumerate(Ws)})
        return out


def _asymmetric(config: PointConfig) -> PointConfig:
    """The asymmetric point whose data and U0, V0 the deep point starts from."""
    return replace(config, model="asymmetric", depth=None)


def _depth(config: PointConfig) -> int:
    """The deep model's number of layers L (validation makes it an integer >= 1)."""
    if config.depth is None:
        raise ValueError("depth: the deep model needs an integer depth >= 1, got None")
    return config.depth


def frame_rng(config: PointConfig) -> np.random.Generator:
    """Third weight stream (after data and U0/V0): middle layers and hidden frames of depth >= 3."""
    return np.random.default_rng(np.random.SeedSequence([int(config.seed), 2]))


def layer_squares(product: float, lambda0: float, L: int) -> np.ndarray:
    """a_1², ..., a_L² with Π a_j = product and a_{j+1}² − a_j² = λ₀ (one mode of a spectral start).

    Written a_j² = base_j + w with base_j >= 0 (no cancellation for either sign of λ₀) and w > 0 the
    root of Σ_j log(base_j + w) = 2 log(product), increasing in w."""
    if lambda0 == 0:  # balanced: all equal
        return np.full(L, product ** (2.0 / L))
    j = np.arange(L)
    base = j * lambda0 if lambda0 >= 0 else (L - 1 - j) * (-lambda0)
    target = 2.0 * np.log(product)

    def g(w: float) -> float:
        return float(np.sum(np.log(base + w)) - target)

    hi = 2.0 * product ** (2.0 / L) + (L - 1) * abs(lambda0)  # every base_j + hi > product^(2/L)
    lo = 1e-300
    out: np.ndarray
    if g(lo) >= 0:
        out = base + lo
        return out
    w = brentq(g, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    out = base + w
    return out


def spectral_layer_scales(s: float, lambda0: float, L: int) -> np.ndarray:
    """a_1..a_L of the spectral start (L = 2: Definition 3's v, u; L = 1: s²)."""
    if L == 1:
        return np.array([s * s])
    if L == 2:
        u, v = spectral_factors(s, lambda0)
        return np.array([v, u])
    out: np.ndarray = np.sqrt(layer_squares(s * s, lambda0, L))
    return out


def make_deep_state(config: PointConfig) -> DeepState:
    a = _asymmetric(config)
    Y, _ = make_data(a)
    L, k, m, s = _depth(config), config.k, config.m, config.init_scale
    if config.init == "spectral":
        Phi, _, PsiT = np.linalg.svd(Y)
        Psi_m = PsiT[:m].T
        if L == 1:
            return DeepState(Y, [(Phi * (s * s)) @ Psi_m.T], [])
        Gm = haar_rows(weight_rng(a), m, k)  # Definition 3's G (make_weights' first draw)
        sc = spectral_layer_scales(s, config.lambda0, L)
        rng = frame_rng(config)
        frames = [random_orthonormal_columns(rng, k, m) for _ in range(L - 2)] + [Gm.T]
        layers = [sc[0] * Psi_m.T] + [sc[j] * np.eye(m) for j in range(1, L - 1)] + [Phi * sc[-1]]
        return DeepState(Y, layers, frames)
    U0, V0 = make_weights(a, Y)
    if V0 is None:
        raise ValueError("make_deep_state: the asymmetric start needs V0, got None")
    if L == 1:
        return DeepState(Y, [U0 @ V0.T], [])
    if config.init == "balanced":
        P, S, Rt = np.linalg.svd(U0, full_matrices=False)  # U0 = P S Rᵀ, r = min(m, k)
        R = Rt.T
        if L == 2:  # W̃_2 = U0 R, W̃_1 = Rᵀ V0ᵀ
            return DeepState(Y, [(V0 @ R).T, U0 @ R], [R])
        r = len(S)
        c = S ** (2.0 / L)
        rng = frame_rng(config)
        frames = [random_orthonormal_columns(rng, k, r) for _ in range(L - 2)] + [R]
        # W_1 = O_1 S^{2/L} (W P)ᵀ with W P = V0 R S^{-1}
        layers = [(c / S)[:, None] * (V0 @ R).T] + [np.diag(c) for _ in range(L - 2)] + [P * c]
        return DeepState(Y, layers, frames)
    # gaussian
    if L == 2:
        B = _row_space_basis(np.vstack([U0, V0]))
        if B is None:
            return DeepState(Y, [V0.T, U0], [None])
        return DeepState(Y, [(V0 @ B).T, U0 @ B], [B])
    rng = frame_rng(config)
    middle = [s * rng.standard_normal((k, k)) for _ in range(L - 2)]
    return DeepState(Y, [V0.T] + middle + [U0], [None] * (L - 1))


def _row_space_basis(R0: np.ndarray) -> np.ndarray | None:
    """Orthonormal basis of R0's row space as columns (QR); None when
    k <= rows (nothing to gain)."""
    if R0.shape[1] <= R0.shape[0]:
        return None
    B, _ = np.linalg.qr(R0.T)
    return B


def initial_state(config: PointConfig) -> dict[str, np.ndarray]:
    return make_deep_state(config).as_dict()


def state_size(config: PointConfig) -> int:
    """float64 elements of one point's layers in reduced coordinates (a bound; memory planning)."""
    L, k, m, n = _depth(config), config.k, config.m, config.n
    if L == 1:
        return m * n
    if config.init == "gaussian" and L >= 3:
        return k * (m + n) + (L - 2) * k * k
    d = min(k, m + n)
    return d * (m + n) + (L - 2) * d * d


# ---------------------------------------------------------------- batched dynamics --------


def _forward(Ws: list[np.ndarray]) -> list[np.ndarray]:
    """P_j = W_j ⋯ W_1 for j = 1..L (batched); P_L = X."""
    P = [Ws[0]]
    for W in Ws[1:]:
        P.append(W @ P[-1])
    return P


def _descent(Ws: list[np.ndarray], P: list[np.ndarray], R: np.ndarray) -> list[np.ndarray]:
    """−∂ℓ/∂W_j = (W_L⋯W_{j+1})ᵀ R (W_{j−1}⋯W_1)ᵀ for every layer, from the forward products P."""
    L = len(Ws)
    out: list[np.ndarray] = []  # W_L's first, reversed at the end
    D = R  # (W_L⋯W_{j+1})ᵀ R, starting at j = L
    for j in range(L - 1, -1, -1):
        out.append(D if j == 0 else D @ P[j - 1].mT)
        if j > 0:
            D = Ws[j].mT @ D
    return out[::-1]


def _pair_grams(Ws: list[np.ndarray]) -> list[np.ndarray]:
    """C_j = W_{j+1}ᵀW_{j+1} − W_jW_jᵀ for j = 1..L−1 (batched)."""
    return [Ws[j + 1].mT @ Ws[j + 1] - Ws[j] @ Ws[j].mT for j in range(len(Ws) - 1)]


def _sq(A: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.einsum("...ij,...ij->...", A, A)
    return out


@dataclass
class DeepTrajectory(Trajectory):
    """A Trajectory plus the drift of every conserved pair: pair_drift (B, L−1, T) = ‖C_j(t) − C_j(0)‖_F."""

    pair_drift: np.ndarray | None = None


def _pair_drift(Ws: list[np.ndarray], C0: list[np.ndarray]) -> np.ndarray:
    """(B, L−1) current ‖C_j − C_j(0)‖."""
    C = _pair_grams(Ws)
    if not C:
        return np.zeros((Ws[0].shape[0], 0))
    drift: np.ndarray = np.sqrt(np.stack([_sq(c - c0) for c, c0 in zip(C, C0)], axis=1))
    return drift


def run_deep_gd(
    Y: np.ndarray, layers: list[np.ndarray], eta: float, steps: int, record_every: int, tol: npt.ArrayLike
) -> DeepTrajectory:
    """Gradient descent W_j += η (−∂ℓ/∂W_j), all layers from the old values, all points at once.

    As dynamics.run_gd: time_to_tol is checked at every step, a point whose error becomes non-finite
    (or > DIVERGENCE_ERROR) keeps the iteration where it happened and leaves the batch, and a point
    that has converged to machine precision (e <= FREEZE_ERROR for FREEZE_STEPS steps after reaching
    tol) leaves it too; later records repeat the state a point left with."""
    Bn = Y.shape[0]
    tol = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))
    ynorm = np.sqrt(_sq(Y))
    idx = record_grid(eta, steps, record_every)
    T = len(idx)
    m, n = Y.shape[1:]
    L = len(layers)
    Ws = [W.copy() for W in layers]
    C0 = _pair_grams(Ws)
    X_rec = np.empty((Bn, T, m, n))
    e_rec = np.empty((Bn, T))
    d_rec = np.empty((Bn, L - 1, T))
    ttt = np.full(Bn, np.nan)
    div = np.full(Bn, -1, dtype=np.int64)
    final = np.empty(Bn)
    iterations = np.full(Bn, steps, dtype=np.int64)
    below = np.zeros(Bn, dtype=np.int64)
    act = np.arange(Bn)
    Ya = Y
    rec = 0
    with np.errstate(all="ignore"):
        for i in range(steps + 1):
            P = _forward(Ws)
            X = P[-1]
            R = Ya - X
            e = np.sqrt(_sq(R)) / ynorm[act]
            bad = ~(e <= DIVERGENCE_ERROR)
            hit = (e <= tol[act]) & np.isnan(ttt[act]) & ~bad
            ttt[act[hit]] = i * eta
            below = np.where(e <= FREEZE_ERROR, below + 1, 0)
            frozen = (below >= FREEZE_STEPS) & ~np.isnan(ttt[act]) & ~bad
            is_rec = rec < T and idx[rec] == i
            if bad.any():
                div[act[bad]] = i
            if is_rec:
                X_rec[act, rec] = X
                e_rec[act, rec] = e
                d_rec[act, :, rec] = _pair_drift(Ws, C0)
                rec += 1
            if i == steps:
                final[act] = e
                break
            gone = bad | frozen
            if gone.any():
                pts = act[gone]
                iterations[pts] = i
                final[pts] = e[gone]
                X_rec[pts, rec:] = X[gone][:, None]
                e_rec[pts, rec:] = e[gone][:, None]
                d_rec[pts, :, rec:] = _pair_drift([W[gone] for W in Ws], [c[gone] for c in C0])[..., None]
                keep = ~gone
                act, below = act[keep], below[keep]
                Ws = [W[keep] for W in Ws]
                C0 = [c[keep] for c in C0]
                Ya = Ya[keep]
                if not len(act):
                    break
                P = [p[keep] for p in P]
                R = R[keep]
            G = _descent(Ws, P, R)
            for W, g in zip(Ws, G):
                W += eta * g
    # a diverged point is recorded as NaN from the iteration where it diverged on
    cut = (div[:, None] >= 0) & (idx[None, :] >= div[:, None])
    e_rec[cut] = np.nan
    final[div >= 0] = np.nan
    return _trajectory(idx * eta, X_rec, e_rec, d_rec, ttt, final, div, iterations)


def _trajectory(
    t: np.ndarray,
    X: np.ndarray,
    e: np.ndarray,
    d: np.ndarray,
    ttt: np.ndarray,
    final: np.ndarray,
    div: IntArray,
    iterations: IntArray | None = None,
) -> DeepTrajectory:
    q = np.max(d, axis=1) if d.shape[1] else None
    return DeepTrajectory(
        t=t,
        X=X,
        error=e,
        q_drift=q,
        time_to_tol=ttt,
        final_error=final,
        diverged_at=div,
        iterations=iterations,
        pair_drift=d,
    )


class _DeepFlow:
    """The stacked ODE of a batch: state = every reduced layer of every point, flattened."""

    def __init__(self, Y: np.ndarray, layers: list[np.ndarray]):
        self.Y = Y
        self.ynorm = np.sqrt(_sq(Y))
        self.shapes = [W.shape for W in layers]
        self.sizes = [W.size for W in layers]
        self._key: tuple[float, int, float, float] | None = None
        self._val: np.ndarray | None = None

    def pack(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([a.ravel() for a in arrays])

    def unpack(self, y: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        o = 0
        for s, n in zip(self.shapes, self.sizes):
            out.append(y[o : o + n].reshape(s))
            o += n
        return out

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        Ws = self.unpack(y)
        P = _forward(Ws)
        return self.pack(_descent(Ws, P, self.Y - P[-1]))

    def evaluate(self, y: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        Ws = self.unpack(y)
        X = _forward(Ws)[-1]
        return Ws, X, np.sqrt(_sq(self.Y - X)) / self.ynorm

    def errors(self, t: float, y: np.ndarray) -> np.ndarray:
        key = (t, int(y.ctypes.data), float(y[0]), float(y[-1]))
        val = self._val
        if key != self._key or val is None:
            val = self.evaluate(y)[2]
            self._key, self._val = key, val
        return val


class _ReachesTol:
    """solve_ivp event of point b: its error crosses tol[b] downwards (`direction` as scipy reads it)."""

    direction = -1

    def __init__(self, sysm: _DeepFlow, b: int, tol_b: float):
        self.sysm, self.b, self.tol_b = sysm, b, tol_b

    def __call__(self, t: float, y: np.ndarray) -> float:
        return float(self.sysm.errors(t, y)[self.b] - self.tol_b)


def run_deep_flow(
    Y: np.ndarray, layers: list[np.ndarray], eta: float, steps: int, record_every: int, tol: npt.ArrayLike
) -> DeepTrajectory:
    """The exact gradient flow on [0, eta·steps] (DOP853 at dynamics.FLOW_RTOL), the batch stacked;
    time_to_tol is a solver event per point. If the stacked solve fails, points are re-run one by
    one and the failing ones are reported as diverged (as dynamics.run_flow)."""
    try:
        return _flow_stacked(Y, layers, eta, steps, record_every, tol)
    except FloatingPointError:
        pass
    tols = np.broadcast_to(np.asarray(tol, dtype=float), (Y.shape[0],))
    parts: list[DeepTrajectory] = []
    for b in range(Y.shape[0]):
        sub = [W[b : b + 1] for W in layers]
        try:
            parts.append(_flow_stacked(Y[b : b + 1], sub, eta, steps, record_every, tols[b : b + 1]))
        except FloatingPointError as exc:
            idx = record_grid(eta, steps, record_every)
            T, (m, n), L = len(idx), Y.shape[1:], len(layers)
            parts.append(
                _trajectory(
                    idx * eta,
                    np.zeros((1, T, m, n)),
                    np.full((1, T), np.nan),
                    np.full((1, L - 1, T), np.nan),
                    np.full(1, np.nan),
                    np.full(1, np.nan),
                    np.array([max(int(exc.args[1]), 0)]),
                )
            )

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    return _trajectory(
        parts[0].t,
        cat("X"),
        cat("error"),
        cat("pair_drift"),
        cat("time_to_tol"),
        cat("final_error"),
        cat("diverged_at"),
    )


def _flow_stacked(
    Y: np.ndarray, layers: list[np.ndarray], eta: float, steps: int, record_every: int, tol: npt.ArrayLike
) -> DeepTrajectory:
    sysm = _DeepFlow(Y, layers)
    Bn = Y.shape[0]
    idx = record_grid(eta, steps, record_every)
    t_rec = idx * eta
    t_end = eta * steps
    t_eval = t_rec if idx[-1] == steps else np.append(t_rec, t_end)
    tols = np.broadcast_to(np.asarray(tol, dtype=float), (Bn,))

    with np.errstate(all="ignore"):
        sol = solve_ivp(
            sysm.rhs,
            (0.0, t_end),
            sysm.pack(layers),
            method="DOP853",
            t_eval=t_eval,
            rtol=FLOW_RTOL,
            atol=FLOW_ATOL,
            events=[_ReachesTol(sysm, b, tols[b]) for b in range(Bn)],
        )
        ok = sol.status == 0 and np.all(np.isfinite(sol.y))
        C0 = _pair_grams(layers)
        evals = [sysm.evaluate(y) for y in sol.y.T]
    bad = [j for j, ev in enumerate(evals) if not np.all(ev[2] < DIVERGENCE_ERROR)]
    if bad or not ok:
        t_fail = sol.t[bad[0]] if bad else (sol.t[-1] if len(sol.t) else 0.0)
        raise FloatingPointError("flow failed", int(np.floor(t_fail / eta + 1e-9)))
    T = len(idx)
    X = np.stack([ev[1] for ev in evals[:T]], axis=1)
    e = np.stack([ev[2] for ev in evals[:T]], axis=1)
    d = np.stack([_pair_drift(ev[0], C0) for ev in evals[:T]], axis=2)
    ttt = np.full(Bn, np.nan)
    for b in range(Bn):
        if evals[0][2][b] <= tols[b]:
            ttt[b] = 0.0
        elif len(sol.t_events[b]):
            ttt[b] = float(sol.t_events[b][0])
    return _trajectory(t_rec, X, e, d, ttt, evals[-1][2], np.full(Bn, -1, dtype=np.int64))


# ---------------------------------------------------------------- batches and metrics -----


def _integrate(configs: list[PointConfig], states: list[DeepState]) -> DeepTrajectory:
    c0 = configs[0]
    Y = np.stack([s.Y for s in states])
    layers = [np.stack([s.layers[j] for s in states]) for j in range(_depth(c0))]
    runner = run_deep_gd if c0.integrator == "gd" else run_deep_flow
    return runner(Y, layers, c0.eta, c0.steps, c0.record_every, np.array([c.tol for c in configs]))


def _groups_by_reduced_shape(configs: list[PointConfig]) -> tuple[list[DeepState], list[list[int]]]:
    """Indices of configs whose reduced layers have equal shapes (the reduced rank of a gaussian
    L = 2 point or a rank-deficient balanced one may differ within one shape key)."""
    states = [make_deep_state(c) for c in configs]
    groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
    for i, s in enumerate(states):
        groups.setdefault(tuple(W.shape for W in s.layers), []).append(i)
    return states, list(groups.values())


def simulate(configs: list[PointConfig]) -> DeepTrajectory:
    """The raw batched trajectory of deep configs sharing one shape key (same order)."""
    states, groups = _groups_by_reduced_shape(configs)
    parts = [(g, _integrate([configs[i] for i in g], [states[i] for i in g])) for g in groups]
    return _reorder(parts, len(configs))


def _reorder(parts: list[tuple[list[int], DeepTrajectory]], B: int) -> DeepTrajectory:
    if len(parts) == 1:
        return parts[0][1]
    order = np.argsort(np.concatenate([np.asarray(g) for g, _ in parts]))

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(tr, name) for _, tr in parts])[order]

    its = [tr.iterations for _, tr in parts if tr.iterations is not None]
    if len(its) not in (0, len(parts)):  # one shape key: one integrator, gd counts iterations
        raise ValueError("deep batch: parts with and without iteration counts (gd and flow mixed)")
    t0 = parts[0][1]
    return _trajectory(
        t0.t,
        cat("X"),
        cat("error"),
        cat("pair_drift"),
        cat("time_to_tol"),
        cat("final_error"),
        cat("diverged_at"),
        np.concatenate(its)[order] if its else None,
    )


def mode_trajectory(sig: np.ndarray, scales: np.ndarray, t: np.ndarray) -> np.ndarray:
    """x_i(t) = Π_j a_{j,i}(t) of a spectral start (Saxe et al. 2014): every mode is an independent
    scalar deep network, ȧ_j = (σ_i − x_i) Π_{l≠j} a_l, from a_j(0) = scales[j]; (T, m).
    A balanced start (λ₀ = 0) reduces to ẋ = L x^{2−2/L}(σ − x)."""
    L, m = len(scales), len(sig)

    ones = np.ones((1, m))

    def rhs(_: float, a: np.ndarray) -> np.ndarray:
        A = a.reshape(L, m)
        # Π_{l≠j} a_l from prefix and suffix products (no division: a_j may be tiny)
        before = np.cumprod(np.vstack([ones, A[:-1]]), axis=0)
        after = np.cumprod(np.vstack([ones, A[:0:-1]]), axis=0)[::-1]
        x = before[-1] * A[-1]
        out: np.ndarray = ((sig - x) * before * after).ravel()
        return out

    a0 = np.repeat(np.asarray(scales, float)[:, None], m, axis=1).ravel()
    # a small explicit system (L·m scalars): DOP853 at a tolerance below the matrix flow's error
    sol = solve_ivp(rhs, (0.0, float(t[-1])), a0, method="DOP853", t_eval=t, rtol=1e-13, atol=1e-300)
    if sol.status != 0:
        return np.full((len(t), m), np.nan)
    x: np.ndarray = np.prod(sol.y.reshape(L, m, -1), axis=0).T
    return x


def rate_pred_deep(config: PointConfig, Y: np.ndarray) -> float | None:
    """Spectral starts: the slowest mode's linearised rate at convergence, min_i σ_i² Σ_j 1/a_j²
    with the limit's a_j (Π a_j = σ_i, a_{j+1}² − a_j² = λ₀ conserved); L σ^{2−2/L} when balanced,
    eq. (16)'s √(4σ² + λ₀²) at L = 2, 1 at L = 1. None for the other inits (no result predicts it)."""
    if config.depth == 1:
        return 1.0
    if config.init != "spectral":
        return None
    sig = np.linalg.svd(Y, compute_uv=False)
    L = _depth(config)
    rates = [s * s * np.sum(1.0 / layer_squares(s, config.lambda0, L)) for s in sig]
    return float(min(rates))


def _closed_form(config: PointConfig, Y: np.ndarray, X0: np.ndarray, t: np.ndarray) -> np.ndarray | None:
    """X_cf(t) where one applies (depth != 2): eq. (4) at L = 1; the spectral modes at L >= 3."""
    L = _depth(config)
    X_cf: np.ndarray
    if L == 1:
        X_cf = Y[None] + (X0 - Y)[None] * np.exp(-t)[:, None, None]
        return X_cf
    if config.init == "spectral":
        Phi, sig, PsiT = np.linalg.svd(Y, full_matrices=False)
        x = mode_trajectory(sig, spectral_layer_scales(config.init_scale, config.lambda0, L), t)
        X_cf = np.einsum("im,tm,mj->tij", Phi, x, PsiT)
        return X_cf
    return None


def point_metrics_deep(
    config: PointConfig, state: DeepState, tr: DeepTrajectory, b: int, sv: np.ndarray
) -> tuple[PointStatus, dict[str, Any], Curves]:
    """(status, metrics, curves) of point b. At L = 2 these are exactly the asymmetric model's
    (metrics.point_metrics on W_2 = U, W_1 = Vᵀ); conservation_drift is max_j max_t
    ‖C_j(t) − C_j(0)‖ / (‖W_j(0)‖² + ‖W_{j+1}(0)‖²) at every depth, q0_norm max_j ‖C_j(0)‖."""
    Ws = state.layers
    L = _depth(config)
    if tr.pair_drift is None:
        raise ValueError("point_metrics_deep: the deep trajectory has no pair_drift")
    pair_drift = tr.pair_drift
    norms2 = [float(_sq(W)) for W in Ws]
    pair_scale = [norms2[j] + norms2[j + 1] for j in range(L - 1)]
    drift = None
    if L >= 2:
        drift = max(float(np.max(pair_drift[b, j])) / max(pair_scale[j], 1e-300) for j in range(L - 1))
    if L == 2:
        asym = Trajectory(
            t=tr.t,
            X=tr.X,
            error=tr.error,
            q_drift=pair_drift[:, 0],
            time_to_tol=tr.time_to_tol,
            final_error=tr.final_error,
            diverged_at=tr.diverged_at,
            iterations=tr.iterations,
        )
        status, asym_met, curves = point_metrics(_asymmetric(config), state.Y, Ws[1], Ws[0].T, asym, b, sv)
        if status == PointStatus.DONE:
            asym_met["conservation_drift"] = clean(drift)
        return status, asym_met, curves
    met: dict[str, Any] = dict.fromkeys(METRIC_FIELDS)
    t = tr.t
    Y = state.Y
    ynorm = float(np.sqrt(_sq(Y)))
    X0 = _forward(Ws)[-1]
    if L >= 2:
        met["q0_norm"] = max(float(np.sqrt(_sq(c))) for c in _pair_grams(Ws))
    e0 = float(np.sqrt(_sq(Y - X0))) / ynorm
    err_lin = linear_error_curve(config, e0, t)
    met["time_to_tol_linear"] = clean(linear_time_to_tol(config, e0))
    met["final_error_linear"] = clean(linear_error_curve(config, e0, np.array([config.eta * config.steps]))[0])
    div = int(tr.diverged_at[b])
    if div >= 0:
        met["diverged_at"] = div
        met["time_to_tol"] = clean(tr.time_to_tol[b])
        keep = np.rint(t / config.eta) < div
        return (
            PointStatus.DIVERGED,
            met,
            Curves(t=t[keep], error=tr.error[b][keep], error_linear=err_lin[keep], singular_values=sv[keep]),
        )
    err = tr.error[b]
    met["final_error"] = clean(tr.final_error[b])
    met["time_to_tol"] = clean(tr.time_to_tol[b])
    if met["time_to_tol"] and met["time_to_tol_linear"] is not None:
        met["speedup"] = clean(met["time_to_tol_linear"] / met["time_to_tol"])
    met["rate_fit"] = clean(rate_fit(t, err, NOISE_FLOOR[config.integrator]).rate)
    met["conservation_drift"] = clean(drift)
    met["rate_pred"] = clean(rate_pred_deep(config, Y))
    Xcf = _closed_form(config, Y, X0, t)
    if Xcf is not None:
        met["closed_form_error"] = clean(np.max(np.sqrt(_sq(Xcf - tr.X[b]))) / ynorm)
    return PointStatus.DONE, met, Curves(t=t, error=err, error_linear=err_lin, singular_values=sv)


def run_group(configs: list[PointConfig]) -> list[PointResult]:
    """run.run_points' batch for deep configs sharing one shape key."""
    from .run import trajectory_singular_values  # run imports this module

    t0 = time.perf_counter()
    c0 = configs[0]
    states, groups = _groups_by_reduced_shape(configs)
    out: list[PointResult | None] = [None] * len(configs)
    for g in groups:
        cs, ss = [configs[i] for i in g], [states[i] for i in g]
        tr = _integrate(cs, ss)
        sv = trajectory_singular_values(tr, record_grid(c0.eta, c0.steps, c0.record_every))
        for b, i in enumerate(g):
            status, met, curves = point_metrics_deep(configs[i], ss[b], tr, b, sv[b])
            out[i] = PointResult(config=configs[i], status=status, metrics=met, curves=curves)
    wall = (time.perf_counter() - t0) / len(configs)
    results: list[PointResult] = []
    for i, r in enumerate(out):
        if r is None:  # every index is in exactly one group
            raise RuntimeError(f"deep.run_group: point {i} has no result")
        r.wall_seconds = wall
        results.append(r)
    return results
