"""The paper's Fig. 2 fit: lambda0 minimising sum_t ||X_reg(t; lambda0) - X(t)||^2, one minimum per sign.

Why it is cheap. In the basis B = diag(Phi, Psi) of Y's singular vectors (Y = Phi Sigma Psi^T, Psi
full), S~ = S_Y + (lambda/2) J of eq. (21) is block diagonal for every lambda: a 2x2 block
[[lambda/2, sigma_i], [sigma_i, -lambda/2]] per singular value (eigenvalues +-r_i,
r_i = sqrt(sigma_i^2 + lambda^2/4), eigenvectors a rotation by theta_i with cos 2theta_i =
lambda/(2 r_i)) and -lambda/2 on the n - m directions of Psi that Y does not reach. So one SVD of Y
and one change of basis of R0 = [U0; V0] serve every lambda (no eigendecomposition per lambda),
and every step below is analytic in lambda: the derivative of the objective comes from one
complex-step evaluation, f'(lambda) = Im f(lambda + i h) / h, exact to rounding. Each branch
(lambda > 0, lambda < 0) is searched on its own: a coarse log grid scored on a subsample of the
record times, a safeguarded secant on f' inside the best cell (subsample), then the same secant on
the full record grid from there, to a relative step of 1e-9.

The evaluation is the stable form of eq. (21) used by `closed_forms.riccati` (P = P* + c D0 K^{-1} c
around the stabilising solution), which needs P0 > 0 on the unstable eigenspace of S~; when that
fails (balanced starts, k < m + n), the branch is searched with `closed_forms.regularized_flow`
(rank-preserving factored form) and bounded Brent instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from .closed_forms import regularized_flow
from .types import FloatArray, IntArray

N_COARSE = 10  # log-spaced |lambda| per branch (plus lambda = 0)
SUB_TIMES = 17  # record times the coarse search scores
STEP_H = 1e-20  # complex step (relative to max(1, |lambda|))
# The full-grid secant stops when its next step is below FULL_RTOL |lambda| and returns that step's
# end: the secant converges superlinearly, so the error left is far below the step (measured:
# <= 5e-8 relative against a converged search; tests/core/test_lambda0_branches.py holds it to 1e-6).
FULL_RTOL = 1e-5
MID_RTOL = 1e-3  # the subsample's minimum is 1e-4..1e-3 from the full grid's anyway


@dataclass
class Lambda0Branch:
    lambda0: float
    error: float  # sqrt(mean_t ||X_reg(t; lambda0) - X(t)||^2) / ||Y||
    loss: float  # sum_t ||X_reg(t; lambda0) - X(t)||^2


@dataclass
class Lambda0Fit:
    """Both branches and the better one (`lambda0`, `error`, `loss`); `X_reg` is X_reg(t; lambda0)
    on the record grid (the curve `error_regularized_fit` is computed from it)."""

    lambda0: float
    error: float
    loss: float
    n_evaluations: int  # closed-form evaluations of eq. (21), any number of times each
    pos: Lambda0Branch
    neg: Lambda0Branch
    X_reg: np.ndarray


def regularized_loss(
    Y: FloatArray, U0: FloatArray, V0: FloatArray, t: FloatArray, X: FloatArray, lambda0: float
) -> float:
    """sum_t ||X_reg(t; lambda0) - X(t)||^2 through `closed_forms.regularized_flow` (the reference)."""
    Xr = regularized_flow(Y, U0, V0, lambda0, t).X
    D = Xr - X
    v = float(np.einsum("tij,tij->", D, D))
    return v if np.isfinite(v) else np.inf


def lambda0_search_bound(Y: FloatArray, U0: FloatArray, V0: FloatArray) -> float:
    """Well above the spectrum of Q0 and of S_Y: 4 (||U0^T U0||_2 + ||V0^T V0||_2 + sigma_max(Y))."""
    return float(4.0 * (np.linalg.norm(U0, 2) ** 2 + np.linalg.norm(V0, 2) ** 2 + np.linalg.norm(Y, 2)) + 1.0)


class _NotStable(Exception):
    """P0 is not positive definite on the unstable eigenspace of S~ (use the factored form)."""


def _exp(z: np.ndarray) -> np.ndarray:
    """exp, and expm1 below, through real functions for complex z (numpy's complex exp/expm1 are
    ~100x slower than the real ones and dominated the complex-step evaluation)."""
    out: np.ndarray
    if not np.iscomplexobj(z):
        out = np.exp(z)
        return out
    ex = np.exp(z.real)
    out = ex * np.cos(z.imag) + 1j * (ex * np.sin(z.imag))
    return out


def _expm1(z: np.ndarray) -> np.ndarray:
    out: np.ndarray
    if not np.iscomplexobj(z):
        out = np.expm1(z)
        return out
    x, y = z.real, z.imag
    ex = np.exp(x)
    out = (np.expm1(x) - 2.0 * ex * np.sin(y / 2.0) ** 2) + 1j * (ex * np.sin(y))
    return out


def _trapezoid_weights(idx: np.ndarray) -> np.ndarray:
    """Weights w with sum_j w_j g(idx_j) ~ sum_{i = idx_0}^{idx_-1} g(i) for smooth g (the trapezoid
    rule on the record index, plus half of each end: the sum counts both ends fully)."""
    idx = np.asarray(idx, float)
    if len(idx) == 1:
        return np.ones(1)
    gaps = np.diff(idx)
    w = np.zeros(len(idx))
    w[:-1] += gaps / 2.0
    w[1:] += gaps / 2.0
    w[[0, -1]] += 0.5
    return w


def _subsample(T: int, n_dense: int, stride: int) -> np.ndarray:
    """The first n_dense record indices (the fast transient lives there), then every stride-th, and
    the last."""
    idx = np.unique(np.concatenate([np.arange(min(n_dense, T)), np.arange(0, T, stride), [T - 1]]))
    return idx


class RegularizedObjective:
    """f(lambda) = sum_t ||X_reg(t; lambda) - X(t)||^2 on the record grid, with shared factorizations."""

    def __init__(self, Y: np.ndarray, U0: np.ndarray, V0: np.ndarray, t: np.ndarray, X: np.ndarray):
        m, n = Y.shape
        self.m, self.n = m, n
        Phi, sig, PsiT = np.linalg.svd(Y)  # Psi full: n x n
        self.sigma, self.Phi, self.PsiT = sig, Phi, PsiT
        R0 = np.vstack([Phi.T @ U0, PsiT @ V0])  # R0 in the basis B
        self.F0 = R0
        self.P0b = R0 @ R0.T
        self.t = np.asarray(t, float)
        self.Xb = Phi.T @ np.asarray(X, float) @ PsiT.T  # X(t) in the basis B, (T, m, n)
        self.n_evaluations = 0

    # -- eigendecomposition of S~ in the basis B, closed form in lambda (complex allowed) --------
    def _eig(self, lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues a (L, N) and eigenvectors E (L, N, N) of S~(lambda) in the basis B, for a
        vector of lambdas of one sign: +r_i, -r_i (i < m), then -lambda/2 (n - m times)."""
        m, n, s = self.m, self.n, self.sigma[None, :]
        lam = lam[:, None]
        r = np.sqrt(s * s + lam * lam / 4.0)
        if np.all(lam.real >= 0):  # cos^2 = (2r + lam)/(4r), sin^2 = sigma^2/(r (2r + lam)): no cancellation
            c2, s2 = (2 * r + lam) / (4 * r), s * s / (r * (2 * r + lam))
        else:
            c2, s2 = s * s / (r * (2 * r - lam)), (2 * r - lam) / (4 * r)
        cs, sn = np.sqrt(c2), np.sqrt(s2)
        N, L = m + n, lam.shape[0]
        E = np.zeros((L, N, N), dtype=np.result_type(lam, float))
        i = np.arange(m)
        E[:, i, i], E[:, m + i, i] = cs, sn  # eigenvalue +r_i
        E[:, i, m + i], E[:, m + i, m + i] = -sn, cs  # eigenvalue -r_i
        j = 2 * m + np.arange(n - m)
        E[:, j, j] = 1.0  # -lambda/2
        a = np.concatenate([r, -r, np.broadcast_to(-lam / 2.0, (L, n - m))], axis=1)
        return a, E

    def _at(self, idx: IntArray | None) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """(times, X in the basis B, weights) of the record subset `idx` (all if None)."""
        if idx is None:
            return self.t, self.Xb, None
        return self.t[idx], self.Xb[idx], _trapezoid_weights(idx)

    def values(self, lams: npt.ArrayLike, idx: IntArray | None = None) -> np.ndarray:
        """f at each lambda of `lams` (real or complex, one sign) on the record times `idx` (all if
        None), as one batched solve over (lambda, t)."""
        lams = np.atleast_1d(np.asarray(lams))
        t, Xb, w = self._at(idx)
        D = self._x_reg(lams, t) - Xb[None]
        per_t: np.ndarray = np.einsum("ltij,ltij->lt", D, D)  # no conjugate: analytic in lambda
        out: np.ndarray = per_t.sum(axis=1) if w is None else per_t @ w
        return out

    def x_reg(self, lam: float) -> np.ndarray:
        """X_reg(t; lam) on the record grid in the original coordinates, (T, m, n)."""
        out: np.ndarray = self.Phi @ self._x_reg(np.array([float(lam)]), self.t)[0] @ self.PsiT
        return out

    def _x_reg(self, lams: np.ndarray, t: np.ndarray) -> np.ndarray:
        """X_reg(t; lambda) in the basis B, (L, T, m, n): eq. (21)'s stable form."""
        m = self.m
        self.n_evaluations += len(lams)
        a, E = self._eig(lams)
        ar = a.real
        pos = ar > 1e-12 * np.maximum(np.max(np.abs(ar), axis=1, keepdims=True), 1e-300)
        F = np.swapaxes(E, 1, 2) @ self.F0
        P0e = F @ np.swapaxes(F, 1, 2)  # (L, N, N)
        for q in range(len(lams)):
            if pos[q].any():
                Pr = P0e[q].real
                mu = np.linalg.eigvalsh(Pr[pos[q]][:, pos[q]])[0]
                if mu <= 1e-7 * max(float(np.linalg.eigvalsh(Pr)[-1]), 1e-300):
                    raise _NotStable
        absa = np.where(pos, a, -a)
        pstar = np.where(pos, 2.0 * a, 0.0)
        z = 2.0 * t[None, :, None] * absa[:, None, :]  # (L, T, N)
        small = np.abs(z) <= 1e-12
        h = np.where(small, 1.0 - z / 2.0, -_expm1(-z) / np.where(small, 1.0, z))
        M = t[None, :, None] * h  # (1 - e^{-2t|a|}) / (2|a|)
        c = _exp(-0.5 * z)  # e^{-t|a|}
        d = np.where(pos[:, None, :], c * c, 1.0)
        N = a.shape[1]
        K = M[..., None] * P0e[:, None]  # (L, T, N, N)
        K.reshape(K.shape[0], K.shape[1], -1)[:, :, :: N + 1] += d
        D0 = P0e.copy()
        D0.reshape(len(lams), -1)[:, :: N + 1] -= pstar
        Er, EcT = E[:, :m], np.swapaxes(E[:, m:], 1, 2)
        L, T = c.shape[:2]
        # (L, T*m, N) @ (L, N, N): one matrix product per lambda, not T small ones (complex too)
        ErcD0 = ((Er[:, None] * c[:, :, None, :]).reshape(L, T * m, N) @ D0).reshape(L, T, m, N)
        W = np.linalg.solve(np.swapaxes(K, 2, 3), np.swapaxes(ErcD0, 2, 3))
        WTc = (np.swapaxes(W, 2, 3) * c[:, :, None, :]).reshape(L, T * m, N)
        out: np.ndarray = ((Er * pstar[:, None, :]) @ EcT)[:, None] + (WTc @ EcT).reshape(L, T, m, -1)
        return out

    def value_and_slope(self, lam: float, idx: IntArray | None = None) -> tuple[float, float]:
        """f(lambda) and f'(lambda) from one complex-step evaluation of eq. (21)'s closed form,
        f' = Im f(lambda + i h) / h: exact to rounding (no difference is taken). Measured against a
        forward-mode derivative written out by hand, it was both as accurate and cheaper."""
        h = STEP_H * max(1.0, abs(lam))
        v = self.values(np.array([complex(lam, h)]), idx)[0]
        return float(v.real), float(v.imag / h)


def _secant_min(
    fd: Callable[[float], tuple[float, float]],
    lo: float,
    hi: float,
    x0: float,
    x1: float,
    rtol: float,
    maxiter: int,
    at_x0: tuple[float, float] | None = None,
) -> tuple[float, float, float]:
    """Minimum of f in [lo, hi] by a secant on f' (fd(x) -> (f, f')), kept inside the bracket,
    which shrinks by the sign of f'. Stops when the next step is below rtol |x|, and returns that
    step's end with f there from the quadratic model (its error is third order in a step that
    small). `at_x0`: (f, f') at x0 when known. Returns (x, f(x), slope of f' at the end or nan)."""
    f0, d0 = fd(x0) if at_x0 is None else at_x0
    best = (x0, f0)
    if d0 > 0:
        hi = min(hi, x0)
    elif d0 < 0:
        lo = max(lo, x0)
    x = x1 if lo < x1 < hi else 0.5 * (lo + hi)
    kappa = np.nan
    for _ in range(maxiter):
        if x == x0:
            break
        f1, d1 = fd(x)
        if f1 <= best[1]:
            best = (x, f1)
        if d1 > 0:
            hi = min(hi, x)
        elif d1 < 0:
            lo = max(lo, x)
        kappa = (d1 - d0) / (x - x0)
        xn = x - d1 / kappa if kappa > 0 else 0.5 * (lo + hi)
        if not lo < xn < hi:
            xn = 0.5 * (lo + hi)
        x0, d0 = x, d1
        tol = rtol * max(abs(x), 1e-12)
        if abs(xn - x) <= tol and kappa > 0:
            fn = max(f1 + d1 * (xn - x) + 0.5 * kappa * (xn - x) ** 2, 0.0)  # f >= 0
            return (xn, fn, kappa) if fn <= best[1] else (best[0], best[1], kappa)
        if hi - lo <= tol:
            break
        x = xn
    return best[0], best[1], kappa


def _branch_fast(obj: RegularizedObjective, sign: float, L: float) -> tuple[float, float]:
    """(lambda, f(lambda)) of the branch `sign` on the full record grid: coarse grid on SUB_TIMES
    record times, secant on the first 12 and every 4th record time from the parabola through the best cell, then
    the secant on all record times from there (its first step uses the subsample's curvature,
    the subsample is weighted to stand for the whole grid)."""
    T = len(obj.t)
    sub = _subsample(T, 4, max(1, T // (SUB_TIMES - 4)))
    mid = _subsample(T, 12, 4)
    grid = sign * np.concatenate([[0.0], np.logspace(np.log10(L) - 4.0, np.log10(L), N_COARSE)])
    coarse = obj.values(grid, sub)
    i = int(np.argmin(coarse))
    lo, hi = sorted((grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]))
    # parabola through the best cell, in log|lambda| (the grid's own spacing) away from lambda = 0
    j = min(max(i, 2), len(grid) - 2)
    xs, ys = np.log(np.abs(grid[j - 1 : j + 2])), coarse[j - 1 : j + 2]
    try:
        p2, p1, _ = np.linalg.solve(np.vstack([xs**2, xs, np.ones(3)]).T, ys)
        x1 = sign * np.exp(-p1 / (2 * p2)) if p2 > 0 else grid[i]
    except np.linalg.LinAlgError:
        x1 = grid[i]
    if not lo < x1 < hi:
        x1 = grid[i] if grid[i] != 0.0 else 0.5 * (lo + hi)
    # the secant starts at the vertex; its first slope is taken over 1 % of lambda
    x0, x1 = x1, x1 * 1.01 if x1 * 1.01 < hi or sign < 0 else x1 * 0.99
    if len(mid) < 0.6 * T:
        x0, _, kap = _secant_min(lambda x: obj.value_and_slope(x, mid), lo, hi, x0, x1, MID_RTOL, 30)
        # the full grid's minimum lies near the subsample's: one Newton step with its curvature
        at_x0 = obj.value_and_slope(x0)
        d = at_x0[1]
        kap_full = kap if np.isfinite(kap) and kap > 0 else np.nan
        x1 = x0 - d / kap_full if np.isfinite(kap_full) else x0 * (1 + 1e-4)
        width = hi - lo
        lo, hi = (x0, hi + width) if d < 0 else (lo - width, x0)
        lo, hi = (max(lo, 0.0), hi) if sign > 0 else (lo, min(hi, 0.0))
    else:
        at_x0 = None
    x, f, _ = _secant_min(lambda x: obj.value_and_slope(x), lo, hi, x0, x1, FULL_RTOL, 30, at_x0)
    return x, f


def _branch_reference(
    Y: FloatArray, U0: FloatArray, V0: FloatArray, t: FloatArray, X: FloatArray, sign: float, L: float
) -> tuple[float, float, int]:
    """The branch searched with the factored closed form and bounded Brent (no derivative)."""
    pos = np.logspace(np.log10(L) - 4.0, np.log10(L), 30)
    grid = sign * np.concatenate([[0.0], pos])
    sub = np.unique(np.linspace(0, len(t) - 1, min(40, len(t))).round().astype(int))
    coarse = np.array([regularized_loss(Y, U0, V0, t[sub], X[sub], g) for g in grid])
    i = int(np.argmin(coarse))
    lo, hi = sorted((grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]))

    def f(lam: float) -> float:
        return regularized_loss(Y, U0, V0, t, X, lam)

    res = minimize_scalar(
        f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9 * max(1.0, abs(grid[i])), "maxiter": 100}
    )
    x, v = float(res.x), float(res.fun)
    vi = f(grid[i])
    if vi < v:
        x, v = float(grid[i]), vi
    return x, v, len(grid) + int(res.nfev) + 1


def lambda0_fit(Y: np.ndarray, U0: np.ndarray, V0: np.ndarray, t: np.ndarray, X: np.ndarray) -> Lambda0Fit:
    """argmin of sum_t ||X_reg(t; lambda0) - X(t)||^2 over lambda0 > 0 and over lambda0 < 0 (SPEC §2)."""
    t = np.asarray(t, float)
    X = np.asarray(X, float)
    ynorm = float(np.linalg.norm(Y))
    L = lambda0_search_bound(Y, U0, V0)
    obj = RegularizedObjective(Y, U0, V0, t, X)
    branches: dict[float, Lambda0Branch] = {}
    fast: dict[float, bool] = {}
    n_ref = 0
    for sign in (1.0, -1.0):
        try:
            x, v = _branch_fast(obj, sign, L)
            fast[sign] = True
        except _NotStable:
            x, v, nev = _branch_reference(Y, U0, V0, t, X, sign, L)
            n_ref += nev
            fast[sign] = False
        v = v if np.isfinite(v) else np.inf
        branches[sign] = Lambda0Branch(float(x), float(np.sqrt(v / len(t)) / ynorm), float(v))
    pos, neg = branches[1.0], branches[-1.0]
    best_sign = 1.0 if pos.loss <= neg.loss else -1.0
    best = branches[best_sign]
    X_reg = obj.x_reg(best.lambda0) if fast[best_sign] else regularized_flow(Y, U0, V0, best.lambda0, t).X
    D = X_reg - X  # the better branch's loss evaluated, not modelled
    loss = float(np.einsum("tij,tij->", D, D))
    if np.isfinite(loss):
        best = branches[best_sign] = Lambda0Branch(best.lambda0, float(np.sqrt(loss / len(t)) / ynorm), loss)
        pos, neg = branches[1.0], branches[-1.0]
    return Lambda0Fit(
        lambda0=best.lambda0,
        error=best.error,
        loss=best.loss,
        n_evaluations=obj.n_evaluations + n_ref + 1,
        pos=pos,
        neg=neg,
        X_reg=X_reg,
    )
