"""Fits: the exponential rate of a decaying curve, predicted rates (rate_pred, rate_lin), the gd
stability limit; the paper's lambda0 fit (Fig. 2) lives in `lambda0_fit` and is re-exported here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lambda0_fit import Lambda0Branch, Lambda0Fit, lambda0_fit, lambda0_search_bound, regularized_loss  # noqa: F401

MIN_TAIL_POINTS = 5


@dataclass
class RateFit:
    rate: float | None  # fitted exponential rate (None when the tail is too short)
    t_start: float | None  # the tail that was fitted
    t_stop: float | None
    n_points: int


def rate_fit(t: np.ndarray, r: np.ndarray, noise_floor: float = 1e-11) -> RateFit:
    """Rate c of r(t) ~ C e^{-c t}: least squares on log r over the tail above numerical noise.

    The usable part is the prefix of the curve that stays finite and above `noise_floor`; the tail
    is its second half in time. None when that tail has fewer than 5 points."""
    t = np.asarray(t, float)
    r = np.asarray(r, float)
    good = np.isfinite(r) & (r > noise_floor)
    stop = len(r) if good.all() else int(np.argmin(good))
    if stop < 2:
        return RateFit(None, None, None, 0)
    t_mid = 0.5 * (t[0] + t[stop - 1])
    sel = np.arange(stop)[t[:stop] >= t_mid]
    if len(sel) < MIN_TAIL_POINTS:
        return RateFit(None, None, None, len(sel))
    ts, ys = t[sel] - t[sel].mean(), np.log(r[sel])
    slope = float(ts @ (ys - ys.mean())) / float(ts @ ts)  # least-squares line
    return RateFit(float(-slope), float(t[sel[0]]), float(t[sel[-1]]), len(sel))


def component_rates(
    t: np.ndarray, singular_values: np.ndarray, target: np.ndarray, noise_floor: float = 1e-11
) -> list[float | None]:
    """Fitted rate of |sigma_i(t) - target_i| for every singular component i (cf. eq. (16))."""
    sv = np.asarray(singular_values, float)
    return [rate_fit(t, np.abs(sv[:, i] - target[i]), noise_floor).rate for i in range(sv.shape[1])]


def regularized_rate(Y: np.ndarray, lambda0: float) -> float:
    """Rate of ||Y - X_reg(t; lambda0)|| under the regularized flow eq. (19) from a generic R0.

    From eq. (21)'s stable form, P(t) - P* = e^{-t|A|} D0 (I + M D0)^{-1} e^{-t|A|} decays entrywise
    (in S~'s eigenbasis) at |a_i| + |a_j|, with eigenvalues +-r_i, r_i = sqrt(sigma_i^2 + lambda0^2/4),
    and -lambda0/2 on the n - m directions of Psi that Y does not reach. X is the block rows Phi x
    columns Psi of P: pairs of two such extra directions (rate |lambda0|, Prop. 5's rate of R R^T)
    do not reach it, a block direction with an extra one does. So the slowest rate is 2 r_min =
    sqrt(4 sigma_min^2 + lambda0^2) for square Y and r_min + |lambda0|/2 for m < n."""
    m, n = Y.shape
    sig = np.linalg.svd(Y, compute_uv=False)
    r_min = float(np.sqrt(sig.min() ** 2 + lambda0**2 / 4.0))
    return 2.0 * r_min if m == n else r_min + abs(lambda0) / 2.0


def rate_pred(model: str, init: str, Y: np.ndarray, lambda0: float | None, k: int) -> float | None:
    """The rate a result predicts (SPEC §2), None where none does.

    symmetric: 4 min|eig(Y)| (Prop. 2, k >= m); asymmetric spectral: min_i sqrt(4 sigma_i^2 + lambda0^2)
    (eq. (16)); asymmetric otherwise: `regularized_rate` at `lambda0`, which the caller passes as 0 for
    balanced starts (Q0 = 0 I exactly, Prop. 5) and as lambda0_fit for gaussian ones (None: no fit,
    no prediction). Under-parameterised k < m keeps rank (eq. (5)): the error does not vanish, None."""
    m = Y.shape[0]
    if k < m:
        return None
    if model == "symmetric":
        return float(4.0 * np.min(np.abs(np.linalg.eigvalsh(Y))))
    if model != "asymmetric" or lambda0 is None:
        return None
    if init == "spectral":
        sig = np.linalg.svd(Y, compute_uv=False)
        return float(np.min(np.sqrt(4.0 * sig**2 + lambda0**2)))
    return regularized_rate(Y, lambda0)


# a mode of the error counts as excited above this fraction of ||E|| (rounding leaves ~1e-16 ||Y||)
EXCITED_MODE = 1e-5


def rate_lin(U: np.ndarray, V: np.ndarray, E: np.ndarray) -> float | None:
    """Slowest rate of the error's dynamics dE/dt = -(U U^T E + E V V^T) with U, V frozen, over the
    modes E excites. The operator has eigenvalues alpha_i + beta_j (eigenpairs of U U^T and V V^T)
    on the modes a_i b_j^T; E's coefficient on a mode is a_i^T E b_j. On a spectral point at its
    equilibrium (u_i v_i = sigma_i, u_i^2 - v_i^2 = lambda0) E excites the modes i = j only and the
    rate is u_i^2 + v_i^2 = sqrt(4 sigma_i^2 + lambda0^2), eq. (16)."""
    alpha, A = np.linalg.eigh(U @ U.T)
    beta, B = np.linalg.eigh(V @ V.T)
    C = A.T @ E @ B
    norm = float(np.linalg.norm(E))
    if not np.isfinite(norm) or norm == 0.0:
        return None
    excited = np.abs(C) > EXCITED_MODE * norm
    rates = alpha[:, None] + beta[None, :]
    return float(np.min(rates[excited]))


def eta_stability_limit(
    model: str, init: str, Y: np.ndarray, U0: np.ndarray, V0: np.ndarray | None, lambda0: float
) -> float | None:
    """Predicted largest gd step that converges (Appendix G), asymmetric model.

    To first order gd moves the error by E <- E - eta L(E), L(E) = U U^T E + E V V^T, stable while
    eta lambda_max(L) < 2 with lambda_max(L) = lambda_max(U U^T) + lambda_max(V V^T). At any global
    minimum (U V^T = Y) that sum is >= 2 sigma_max(Y) (= 2 sigma_max at balanced ones), so no step
    above 1/sigma_max(Y) converges; at the start it is the sum for U0, V0. The prediction is
    2 / max(that sum at the start, 2 sigma_max(Y)). Measured (tests/core/test_rates.py): small and
    moderate starts converge below it and never above 1/sigma_max; large starts (s = 1, k = 50)
    survive steps up to ~2x the prediction (gd leaves the sharp start, the "catapult"), so there
    it is a sufficient bound, not the boundary."""
    if model != "asymmetric":
        return None
    if V0 is None:
        raise ValueError("eta_stability_limit: the asymmetric model needs V0, got None")
    s0 = np.linalg.eigvalsh(U0 @ U0.T)[-1] + np.linalg.eigvalsh(V0 @ V0.T)[-1]
    return float(2.0 / max(s0, 2.0 * np.linalg.norm(Y, 2)))
