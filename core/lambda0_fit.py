"""The paper's Fig. 2 fit: lambda0 minimising sum_t ||X_reg(t; lambda0) - X(t)||^2, one minimum per sign.

Shared factorizations. In the basis B = diag(Phi, Psi) of Y's singular vectors (Y = Phi Sigma Psi^T,
Psi full), S~ = S_Y + (lambda/2) J of eq. (21) is block diagonal for every lambda: a 2x2 block
[[lambda/2, sigma_i], [sigma_i, -lambda/2]] per singular value (eigenvalues +-r_i,
r_i = sqrt(sigma_i^2 + lambda^2/4), eigenvectors a rotation by theta_i with cos 2theta_i =
lambda/(2 r_i)) and -lambda/2 on the n - m directions of Psi that Y does not reach. So one SVD of Y
and one Gram matrix P0 = R0 R0^T in that basis serve every lambda (no eigendecomposition per lambda,
nothing of size k). An evaluation at L lambdas and T' record times is eq. (21)'s stable form with one
(m + n) x (m + n) Cholesky per (lambda, t), all L T' of them at once with the batch as the last axis
(`_shifted_cholesky_solve`: numpy's batched LAPACK calls cost ~3 us per 15 x 15 matrix in overhead).
With numba (unless FLOWSWEEP_NUMBA=0) core/_lambda0_fused.py runs the same evaluation compiled, eight
(lambda, record) pairs per SIMD vector, never forming X_reg where only the loss is wanted, and the
factorizations and the whole search below in one call (`_fit_compiled`: the same steps as `_search`, no
Python between them). The fit's error curve ||Y - X_reg(t)|| / ||Y|| is computed in the basis B (the
Frobenius norm does not change); X_reg goes back to the original basis only when asked for.

The search, both branches (lambda > 0, lambda < 0) in every evaluation, each a few batched calls:
1. a log grid of 10 |lambda| per sign (and 0) on ~17 record times picks a cell per branch, and one Newton
   step from the parabola through it, on the same records (derivatives from a three-point stencil);
2. Newton steps on a subsample (the first 12 records, then every 6th, Simpson weights: its minimum is
   within ~2e-4 of the full grid's) until the step is below SUB_RTOL (often just one);
3. Newton on the full record grid with the full grid's own three-point stencil: its step lands inside
   the stencil (< FULL_STENCIL |lambda|), which leaves ~1e-8, and X_reg and the loss there are the
   quadratic interpolation in lambda of the stencil's three X_reg (< 1e-11 relative).
A branch whose f' points out of it at lambda = 0 has its minimum there: it reports lambda0 = +-END x
the smallest grid |lambda| (~1e-13 L), which keeps the branch's sign. Where P0 is not
positive definite on the unstable eigenspace of S~ (balanced starts, k < m + n), the stable form does
not apply and the branch is searched with `closed_forms.regularized_flow` (rank-preserving factored
form) and bounded Brent instead, as before.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from .closed_forms import regularized_flow
from .compiled import compiled_module
from .types import FloatArray, IntArray

N_COARSE = 10  # log-spaced |lambda| per branch (plus lambda = 0)
SUB_TIMES = 17  # record times the coarse search scores
STENCIL = 1e-4  # half-width of the three-point stencils, relative to |lambda|
# The subsample's Newton stops once its step is below SUB_RTOL |lambda| (Newton's error at the step's
# end is ~step^2): the full grid's Newton decides the accuracy, and from there it usually needs one
# step (measured: stopping at 3e-3 costs one more subsample evaluation than it saves on the full grid)
SUB_RTOL = 2e-2
FULL_STENCIL = 2e-4  # the full grid's stencil; its Newton step, once within it, leaves ~4e-8 relative
MAX_ITER = 40
# a branch whose minimum is at lambda0 = 0 reports END x the smallest grid |lambda|, keeping its sign
END = 1e-9
CHUNK_RECORDS = 640  # (lambda, t) pairs per Cholesky batch, which bounds the fit's memory


@dataclass
class Lambda0Branch:
    lambda0: float
    error: float  # sqrt(mean_t ||X_reg(t; lambda0) - X(t)||^2) / ||Y||
    loss: float  # sum_t ||X_reg(t; lambda0) - X(t)||^2


@dataclass
class Lambda0Fit:
    """Both branches and the better one (`lambda0`, `error`, `loss`); `error_curve` is
    ||Y - X_reg(t; lambda0)||_F / ||Y|| on the record grid (the curve `error_regularized_fit`), and
    `X_reg` X_reg(t; lambda0) itself, (T, m, n), formed when first asked for (the curve needs no
    change of basis: the Frobenius norm is the same in the basis B)."""

    lambda0: float
    error: float
    loss: float
    n_evaluations: int  # closed-form evaluations of eq. (21), any number of record times each
    pos: Lambda0Branch
    neg: Lambda0Branch
    error_curve: np.ndarray
    x_reg_of: Callable[[], np.ndarray] = field(repr=False, compare=False)  # X_reg, computed
    n_records: int = 0  # (lambda, record time) pairs evaluated, the fit's cost in solves

    @functools.cached_property
    def X_reg(self) -> np.ndarray:
        return self.x_reg_of()


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
    return _bound(float(np.linalg.norm(U0, 2)) ** 2, float(np.linalg.norm(V0, 2)) ** 2, float(np.linalg.norm(Y, 2)))


def _bound(u2: float, v2: float, sigma_max: float) -> float:
    return float(4.0 * (u2 + v2 + sigma_max) + 1.0)  # core/_lambda0_fused.fit: the same operations


def _coarse_grid(L: float) -> FloatArray:
    """0 and N_COARSE |lambda| log-spaced over [1e-4 L, L], each L 10^(4 (i - N_COARSE + 1)/(N_COARSE - 1))
    through libm's pow, as core/_lambda0_fused.coarse_grid computes it (the same numbers)."""
    e = N_COARSE - 1
    return np.array([0.0] + [L * math.pow(10.0, 4.0 * (i - e) / e) for i in range(N_COARSE)])


@functools.lru_cache(maxsize=64)
def _plan(T: int) -> tuple[IntArray, FloatArray, IntArray, FloatArray, bool]:
    """The search's record subsamples for T records: the coarse records and their weights, the
    subsample and its weights, and whether the subsample is (nearly) the whole grid."""
    sub = _subsample(T, 4, max(1, T // (SUB_TIMES - 4)))
    mid = _subsample(T, 12, 6)
    return sub, _sum_weights(sub), mid, _sum_weights(mid), bool(len(mid) >= 0.6 * T)


class _NotStable(Exception):
    """P0 is not positive definite on the unstable eigenspace of S~ (use the factored form)."""


@functools.lru_cache(maxsize=64)
def _subsample(T: int, n_dense: int, stride: int) -> IntArray:
    """The first n_dense record indices (the fast transient lives there), then every stride-th, and
    the last."""
    idx: IntArray = np.unique(np.concatenate([np.arange(min(n_dense, T)), np.arange(0, T, stride), [T - 1]]))
    idx.flags.writeable = False  # cached
    return idx


def _sum_weights(idx: IntArray) -> FloatArray:
    """The weights of `_sum_weights_of` (cached: the search asks for the same few subsamples)."""
    return _sum_weights_of(tuple(np.asarray(idx).tolist()))


@functools.lru_cache(maxsize=64)
def _sum_weights_of(idx: tuple[int, ...]) -> FloatArray:
    """Weights w with sum_j w_j g(idx_j) ~ sum_{i = idx_0}^{idx_-1} g(i) for smooth g: Simpson's rule
    in the record index over runs of equal gaps (trapezoid where a run is odd), plus half of each end
    (the sum counts both ends fully); all 1 (the sum itself) when no record is left out."""
    w = np.zeros(len(idx))
    if len(idx) == 1 or idx[-1] - idx[0] == len(idx) - 1:
        w += 1.0
        w.flags.writeable = False
        return w
    i = 0
    while i < len(idx) - 1:
        h = float(idx[i + 1] - idx[i])
        if i + 2 < len(idx) and idx[i + 2] - idx[i + 1] == idx[i + 1] - idx[i]:
            w[i : i + 3] += (h / 3.0, 4.0 * h / 3.0, h / 3.0)
            i += 2
        else:
            w[i : i + 2] += h / 2.0
            i += 1
    w[[0, -1]] += 0.5
    w.flags.writeable = False
    return w


def _shifted_cholesky_solve(P: FloatArray, g: FloatArray, R: FloatArray) -> FloatArray:
    """(diag(g) + P)^{-1} R for a batch, in R's place: P (N, N, L) symmetric >= 0, g (N, L, T) > 0 (so
    the matrix is positive definite), R (N, r, L, T) C-contiguous; the batch (L, T) is the last axes.
    Left-looking Cholesky with each column formed when it is needed (its lower part only): O(N) numpy
    calls over the whole batch instead of one LAPACK call per matrix (numpy's batched calls cost ~3 us
    per 15 x 15 matrix)."""
    N, nl, nt = g.shape
    B = nl * nt
    Rf = R.reshape(N, -1, B)
    assert np.shares_memory(Rf, R)
    Lf = np.empty((N, N, B))
    inv = np.empty((N, B))
    col = np.empty((N, nl, nt))
    for j in range(N):
        c = col[j:]
        if j:
            np.subtract(P[j:, j, :, None], np.einsum("ikb,kb->ib", Lf[j:, :j], Lf[j, :j]).reshape(N - j, nl, nt), out=c)
        else:
            c[...] = P[:, 0, :, None]
        c[0] += g[j]
        cf = c.reshape(N - j, B)
        np.power(cf[0], -0.5, out=inv[j])
        np.multiply(cf, inv[j], out=Lf[j:, j])
    y = Rf  # forward substitution in place: row j of R is last read when y[j] is written
    y[0] *= inv[0]
    for j in range(1, N):
        y[j] -= np.einsum("kb,krb->rb", Lf[j, :j], y[:j])
        y[j] *= inv[j]
    x = y  # back substitution in place too
    x[N - 1] *= inv[N - 1]
    for j in range(N - 2, -1, -1):
        x[j] -= np.einsum("kb,krb->rb", Lf[j + 1 :, j], x[j + 1 :])
        x[j] *= inv[j]
    return x.reshape(R.shape)


class RegularizedObjective:
    """f(lambda) = sum_t ||X_reg(t; lambda) - X(t)||^2 on the record grid, with shared factorizations."""

    def __init__(self, Y: np.ndarray, U0: np.ndarray, V0: np.ndarray, t: np.ndarray, X: np.ndarray):
        m, n = Y.shape
        self.m, self.n = m, n
        self.fused = compiled_module("flowsweep.core._lambda0_fused")  # None: the numpy path
        self.t = np.asarray(t, float)
        X = np.asarray(X, float)
        T = len(self.t)
        if self.fused is not None:  # the same factorizations and products, one compiled call
            sig, Phi, PsiT, self.P0b, p0_max, u2, v2, self.Xb = self.fused.setup(
                np.ascontiguousarray(Y, float), np.ascontiguousarray(U0, float), np.ascontiguousarray(V0, float), X
            )
        else:
            Phi, sig, PsiT = np.linalg.svd(Y)  # Psi full: n x n
            R0 = np.vstack([Phi.T @ U0, PsiT @ V0])  # R0 in the basis B
            self.P0b = R0 @ R0.T
            p0_max = max(float(np.linalg.eigvalsh(self.P0b)[-1]), 1e-300)
            # ||U0||_2^2 and ||V0||_2^2: the largest eigenvalues of Phi^T U0 U0^T Phi and Psi^T V0 V0^T Psi
            u2, v2 = (float(np.linalg.eigvalsh(B)[-1]) for B in (self.P0b[:m, :m], self.P0b[m:, m:]))
            # X(t) in the basis B, (m, n, T) with the batch last: two products, not T small ones (what
            # np.tensordot(Phi, np.tensordot(PsiT, X, (1, 2)), (0, 2)) computes, without its overhead)
            XPsi = np.dot(PsiT, X.transpose(2, 0, 1).reshape(n, T * m)).reshape(n, T, m)
            self.Xb = np.dot(Phi.T, XPsi.transpose(2, 0, 1).reshape(m, n * T)).reshape(m, n, T)
        self.sigma, self.Phi, self.PsiT = sig, Phi, PsiT
        self.p0_max = float(p0_max)  # ||P0||_2, every basis
        self.u2, self.v2 = float(u2), float(v2)
        self.records = np.arange(T)
        self.n_evaluations = 0
        self.n_records = 0

    def search_bound(self) -> float:
        """`lambda0_search_bound` from P0's blocks (no SVD of the k columns)."""
        return _bound(self.u2, self.v2, float(self.sigma[0]) if len(self.sigma) else 0.0)

    def _spectrum(
        self, lams: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, np.ndarray, np.ndarray]:
        """S~(lambda) in the basis B, closed form in lambda: eigenvalues a (L, N) = +r_i, -r_i (i < m),
        then -lambda/2 (n - m times); the rotation (cos, sin) (L, m); P0 in the eigenbasis (L, N, N);
        the unstable directions a > 0 (L, N); which lambdas have P0 > 0 on them (L,)."""
        m, n, s = self.m, self.n, self.sigma[None, :]
        lam = lams[:, None]
        r = np.sqrt(s * s + lam * lam / 4.0)
        # cos^2 = (2r + lam)/(4r), sin^2 = sigma^2/(r (2r + lam)), or the other way for lam < 0: no cancellation
        up = lam >= 0
        c2 = np.where(up, (2 * r + lam) / (4 * r), s * s / (r * (2 * r - lam)))
        s2 = np.where(up, s * s / (r * (2 * r + lam)), (2 * r - lam) / (4 * r))
        cs, sn = np.sqrt(c2), np.sqrt(s2)
        N, L = m + n, len(lams)
        E = np.zeros((L, N, N))
        i = np.arange(m)
        E[:, i, i], E[:, m + i, i] = cs, sn  # eigenvalue +r_i
        E[:, i, m + i], E[:, m + i, m + i] = -sn, cs  # eigenvalue -r_i
        j = 2 * m + np.arange(n - m)
        E[:, j, j] = 1.0  # -lambda/2
        a = np.concatenate([r, -r, np.broadcast_to(-lam / 2.0, (L, n - m))], axis=1)
        P0e = np.swapaxes(E, 1, 2) @ self.P0b @ E
        pos = a > 1e-12 * np.maximum(np.max(np.abs(a), axis=1, keepdims=True), 1e-300)
        stable = np.ones(L, bool)
        for group in (lams > 0, lams < 0, lams == 0):  # one unstable eigenspace per sign (sigma_i > 0)
            sel = np.flatnonzero(group)
            if len(sel) == 0:
                continue
            pattern = pos[sel[0]]
            if not (pos[sel] == pattern).all():  # some sigma_i = 0: one lambda at a time
                for q in sel:
                    stable[q] = self._stable_on(P0e[q : q + 1], pos[q])[0]
            else:
                stable[sel] = self._stable_on(P0e[sel], pattern)
        return a, cs, sn, P0e, pos, stable

    def _stable_on(self, P0e: FloatArray, pattern: np.ndarray) -> np.ndarray:
        """P0 > 0 on the unstable eigenspace `pattern` of S~, relative to ||P0||."""
        if not pattern.any():
            return np.ones(len(P0e), bool)
        block = P0e[:, pattern][:, :, pattern]
        out: np.ndarray = np.linalg.eigvalsh(block)[:, 0] > 1e-7 * self.p0_max
        return out

    def _evaluate(
        self, lams: FloatArray, idx: IntArray | None, want_X: bool
    ) -> tuple[FloatArray, FloatArray | None, np.ndarray]:
        """||X_reg(t; lambda) - X(t)||^2 per (lambda, record time of idx) (L, T'), X_reg(t; lambda) in
        the basis B (m, n, L, T') if want_X, and which lambdas are stable (the others' values are
        meaningless): the compiled kernel (core/_lambda0_fused.py) when numba runs, else numpy."""
        L, Tp = len(lams), len(self.t) if idx is None else len(idx)
        self.n_evaluations += L
        self.n_records += L * Tp
        if self.fused is None:
            X, stable = self._x_block_numpy(lams, idx)
            D = X - (self.Xb if idx is None else self.Xb[:, :, idx])[:, :, None]
            per: FloatArray = np.einsum("ijlt,ijlt->lt", D, D)
            return per, (X if want_X else None), stable
        per = np.empty((L, Tp))
        X = np.empty((self.m, self.n, L, Tp) if want_X else (0, 0, 0, 0))
        stable = np.empty(L, bool)
        rec = self.records if idx is None else np.asarray(idx, np.int64)
        self.fused.records(lams, self.sigma, self.P0b, 1e-7 * self.p0_max, self.t, rec, self.Xb, per, X, want_X, stable)
        return per, (X if want_X else None), stable

    def _x_block(self, lams: FloatArray, idx: IntArray | None) -> tuple[FloatArray, np.ndarray]:
        """X_reg(t; lambda) in the basis B, (m, n, L, T') on the record times idx (all if None), and
        which lambdas are stable."""
        _, X, stable = self._evaluate(lams, idx, True)
        assert X is not None
        return X, stable

    def _x_block_numpy(self, lams: FloatArray, idx: IntArray | None) -> tuple[FloatArray, np.ndarray]:
        """`_x_block` in numpy.

        Eq. (21)'s stable form in the eigenbasis of S~: P = P* + c D0 K^{-1} c with c = e^{-t|a|},
        K = diag(d) + M P0, M = (1 - e^{-2t|a|})/(2|a|), d = e^{-2ta} (a > 0) or 1, P* = 2 max(a, 0),
        D0 = P0 - P*. For t > 0, K = M G with G = diag(d/M) + P0 symmetric positive definite, so
        X = Er P* Ec^T + (Er c D0) G^{-1} (M^{-1} c Ec^T), where Er, Ec are the rows of the eigenvectors
        on Phi and Psi (two nonzeros per row: cheap elementwise). No difference is taken: as t -> 0,
        G^{-1} M^{-1} -> I and P -> P0."""
        m, n = self.m, self.n
        N = m + n
        t_all = self.t if idx is None else self.t[idx]
        L = len(lams)
        a, cs, sn, P0e, pos, stable = self._spectrum(lams)
        out = np.empty((m, n, L, len(t_all)))
        # t = 0 (the first records, times ascending): P = P0 exactly, for every lambda
        nz = int(np.searchsorted(t_all, 0.0, side="right"))
        out[:, :, :, :nz] = self.P0b[:m, m:, None, None]
        t = t_all[nz:]
        if len(t) == 0:
            return out, stable
        absa = np.abs(a).T[:, :, None]  # (N, L, 1): the batch (L, T) last from here on
        z = absa * t  # t |a|, (N, L, T)
        c = np.exp(-z)
        h = np.where(z > 1e-12, -np.expm1(-2.0 * z) / np.where(z > 1e-12, 2.0 * z, 1.0), 1.0 - z)
        M = t * h  # (1 - e^{-2z}) / (2|a|)
        g = np.where(pos.T[:, :, None], c * c, 1.0) / M  # d / M
        P0l = np.ascontiguousarray(np.moveaxis(P0e, 0, -1))  # (N, N, L)
        pstar = np.where(pos, 2.0 * a, 0.0)  # (L, N)
        D0 = P0e.copy()
        ii = np.arange(N)
        D0[:, ii, ii] -= pstar
        D0l = np.ascontiguousarray(np.moveaxis(D0, 0, -1))[..., None]
        csl, snl = cs.T[:, :, None], sn.T[:, :, None]  # (m, L, 1)
        # (Er c D0)^T[k, i] = cos_i c_i D0[k, i] - sin_i c_{m+i} D0[k, m+i]
        At = D0l[:, :m] * (csl * c[:m])[None] - D0l[:, m : 2 * m] * (snl * c[m : 2 * m])[None]
        # G^{-1} (Er c D0)^T in At's place, (N, m, L, T), a few lambdas at a time: the factors take
        # 8 (m + n)^2 bytes per (lambda, t), ~0.7 MB per chunk
        per_chunk = max(1, CHUNK_RECORDS // len(t))
        with np.errstate(invalid="ignore", divide="ignore"):  # unstable lambdas: NaN, and reported so
            for k in range(0, L, per_chunk):
                sl = slice(k, k + per_chunk)
                _shifted_cholesky_solve(P0l[:, :, sl], g[:, sl], At[:, :, sl])
        Z = At
        q = c / M
        XD = out[:, :, :, nz:]
        XD[:, :m] = np.swapaxes((snl * q[:m])[:, None] * Z[:m] + (csl * q[m : 2 * m])[:, None] * Z[m : 2 * m], 0, 1)
        XD[:, m:] = np.swapaxes(q[2 * m :, None] * Z[2 * m :], 0, 1)
        i = np.arange(m)
        XD[i, i] += (cs * sn * (pstar[:, :m] - pstar[:, m : 2 * m])).T[:, :, None]  # Er P* Ec^T
        stable &= np.isfinite(XD).all(axis=(0, 1, 3))
        return out, stable

    def per_record(self, lams: npt.ArrayLike, idx: IntArray | None = None) -> tuple[FloatArray, np.ndarray]:
        """||X_reg(t; lambda) - X(t)||^2 per (lambda, record time of idx), (L, T'), and stability (L,)."""
        per, _, stable = self._evaluate(np.atleast_1d(np.asarray(lams, float)), idx, False)
        return per, stable

    def values(self, lams: npt.ArrayLike, idx: IntArray | None = None) -> FloatArray:
        """f at each lambda of `lams` (any signs) on the record times `idx` (all if None; a subsample
        is weighted to stand for the whole grid). Raises _NotStable if any lambda needs the factored form."""
        per, stable = self.per_record(lams, idx)
        if not stable.all():
            raise _NotStable
        out: FloatArray = per.sum(axis=1) if idx is None else per @ _sum_weights(idx)
        return out

    def x_reg(self, lam: float) -> np.ndarray:
        """X_reg(t; lam) on the record grid in the original coordinates, (T, m, n)."""
        Xr, stable = self._x_block(np.array([float(lam)]), None)
        if not stable[0]:
            raise _NotStable
        return self.original_basis(Xr[:, :, 0])

    def original_basis(self, Xb: FloatArray) -> FloatArray:
        """X(t) (m, n, T) in the basis B back in the original coordinates, (T, m, n)."""
        return original_basis(self.Phi, self.PsiT, Xb)


def original_basis(Phi: FloatArray, PsiT: FloatArray, Xb: FloatArray) -> FloatArray:
    """X(t) (m, n, T) in the basis B (Y's singular vectors Phi, Psi) back in the original
    coordinates, (T, m, n): Phi Xb(t) Psi^T for every t, as two products (np.tensordot's, directly)."""
    m, n, T = Xb.shape
    PhiX = np.dot(Phi, Xb.reshape(m, n * T)).reshape(m, n, T)
    out = np.dot(PhiX.transpose(0, 2, 1).reshape(m * T, n), PsiT).reshape(m, T, n)
    return np.ascontiguousarray(out.transpose(1, 0, 2))


@dataclass
class _Branch:
    """One branch's search state: the bracket [lo, hi] (|lambda| grows with sign), the iterate x."""

    sign: float
    lo: float
    hi: float
    x: float
    curvature: float = np.nan
    done: bool = False
    stable: bool = True
    end: float = 0.0  # the branch's end, just inside lambda = 0
    f: float = np.inf  # the loss at x, once done
    X: FloatArray | None = None  # X_reg(t; x) in the basis B, (m, n, T), once done
    e2: FloatArray | None = None  # ||X_reg(t; x) - Y||_F^2 per record, once done (else from X)


def _stencil(x: float, rel: float, floor: float) -> FloatArray:
    """x - h, x, x + h with h = rel max(|x|, floor)."""
    h = rel * max(abs(x), floor)
    return np.array([x - h, x, x + h])


def _bisect(lo: float, hi: float) -> float:
    """The middle of a bracket of one sign in log|lambda| (it spans decades), else its mean."""
    if lo > 0 and np.isfinite(hi):
        return float(np.sqrt(lo * hi))
    if hi < 0 and np.isfinite(lo):
        return float(-np.sqrt(lo * hi))
    return 0.5 * (lo + hi)


def _newton_step(b: _Branch, x: float, d1: float, rtol: float) -> None:
    """Newton on f' (curvature b.curvature) inside the bracket, which shrinks by the sign of f';
    bisection when the step leaves the bracket. Done when the step is below rtol |x| (b.x is then the
    step's end: Newton's error there is second order in the step) or the bracket is that narrow."""
    if d1 > 0:
        b.hi = min(b.hi, x)
    elif d1 < 0:
        b.lo = max(b.lo, x)
    kappa = b.curvature
    xn = x - d1 / kappa if kappa > 0 else np.nan
    if not b.lo < xn < b.hi:
        towards_zero = (d1 > 0) == (x > 0)
        if towards_zero and 0.0 in (b.lo, b.hi):  # try the branch's end; if f' points out of the
            if x == b.end:  # branch there too, the minimum is at its end (lambda0 -> 0 on that side)
                b.x, b.done = x, True
                return
            xn = b.end
        elif np.isfinite(b.lo) and np.isfinite(b.hi):
            xn = _bisect(b.lo, b.hi)
        else:  # the full grid's stage starts unbracketed: at most a factor 2 towards the open end
            xn = x * 0.5 if towards_zero else x * 2.0
    b.x = xn
    if (abs(xn - x) <= rtol * abs(x) and kappa > 0) or b.hi - b.lo <= rtol * max(abs(x), 1e-12):
        b.done = True


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


def _search(obj: RegularizedObjective, L: float) -> dict[float, _Branch]:
    """Both branches' minima of f on the full record grid (see the module's docstring)."""
    T = len(obj.t)
    floor = 1e-4 * L  # the coarse grid's smallest |lambda| > 0: the stencils' scale near lambda = 0
    branches = {s: _Branch(s, -np.inf, np.inf, 0.0, end=s * END * floor) for s in (1.0, -1.0)}

    def evaluate(lams_by: dict[float, FloatArray], idx: IntArray | None) -> dict[float, FloatArray]:
        """One batched evaluation of every live branch's lambdas; a branch that meets a lambda where
        P0 is not positive on the unstable eigenspace is handed to the factored form."""
        live = [s for s in lams_by if branches[s].stable]
        if not live:
            return {}
        lams = np.concatenate([lams_by[s] for s in live])
        per, stable = obj.per_record(lams, idx)
        vals = per.sum(axis=1) if idx is None else per @ _sum_weights(idx)
        out, k = {}, 0
        for s in live:
            n = len(lams_by[s])
            if stable[k : k + n].all():
                out[s] = vals[k : k + n]
            else:
                branches[s].stable = False
            k += n
        return out

    # coarse log grid on a subsample; lambda = 0 belongs to both branches' grids
    sub = _subsample(T, 4, max(1, T // (SUB_TIMES - 4)))
    grid = _coarse_grid(L)
    per, stable = obj.per_record(np.concatenate([grid, -grid[1:]]), sub)
    vals = per @ _sum_weights(sub)
    for s, sel in ((1.0, np.arange(len(grid))), (-1.0, np.r_[0, len(grid) : 2 * len(grid) - 1])):
        b, g, v = branches[s], s * grid, vals[sel]
        b.stable = bool(stable[sel].all())
        i = int(np.argmin(v))
        b.lo, b.hi = sorted((g[max(i - 1, 0)], g[min(i + 1, len(g) - 1)]))
        # parabola through the best cell, in log|lambda| (the grid's own spacing) away from lambda = 0
        j = min(max(i, 2), len(g) - 2)
        xs, ys = np.log(np.abs(g[j - 1 : j + 2])), v[j - 1 : j + 2]
        try:
            p2, p1, _ = np.linalg.solve(np.vstack([xs**2, xs, np.ones(3)]).T, ys)
            x1 = s * np.exp(-p1 / (2 * p2)) if p2 > 0 else g[i]
        except np.linalg.LinAlgError:
            x1 = g[i]
        b.x = x1 if b.lo < x1 < b.hi else (g[i] if g[i] != 0.0 else 0.5 * (b.lo + b.hi))

    # Newton with three-point stencils, both branches in each evaluation: one step on the coarse
    # records (cheap; the start can be far off), then on a subsample weighted to stand for the whole
    # grid (or on the whole grid when it is short) until the step is small
    mid = _subsample(T, 12, 6)
    idx = mid if len(mid) < 0.6 * T else None
    cells = {s: (b.lo, b.hi) for s, b in branches.items()}
    for it in range(MAX_ITER):
        xs_by = {s: _stencil(b.x, STENCIL, floor) for s, b in branches.items() if b.stable and not b.done}
        if not xs_by:
            break
        if it > 0 and idx is None:  # a short grid: straight to the full grid below
            break
        records, rtol = (sub, 0.0) if it == 0 else (idx, SUB_RTOL)
        for s, (fm, f0, fp) in evaluate(xs_by, records).items():
            b, x, h = branches[s], xs_by[s][1], xs_by[s][2] - xs_by[s][1]
            d2 = (fp - 2.0 * f0 + fm) / (h * h)
            b.curvature = d2 if d2 > 0 else np.nan
            _newton_step(b, x, (fp - fm) / (2.0 * h), rtol)
            if it == 0:  # the coarse records' slope says little about the other records' bracket
                b.lo, b.hi = cells[s]
                b.x = b.x if b.lo < b.x < b.hi else x
    # the full grid: Newton with three-point stencils (the full grid's own slope and curvature) from the
    # subsample's minimum. A step within the stencil is the last: X_reg and the loss there are the
    # quadratic interpolation in lambda of the stencil's three X_reg (error ~ h^3, < 1e-11 relative).
    if idx is not None:
        for b in branches.values():
            b.done, b.lo, b.hi = False, (0.0 if b.sign > 0 else -np.inf), (np.inf if b.sign > 0 else 0.0)
    for _ in range(MAX_ITER):
        xs_by = {s: _stencil(b.x, FULL_STENCIL, floor) for s, b in branches.items() if b.stable and not b.done}
        if not xs_by:
            break
        lams = np.concatenate(list(xs_by.values()))
        per, Xr, stable = obj._evaluate(lams, None, True)
        assert Xr is not None
        f3 = per.sum(axis=1)
        for k, (s, xs) in enumerate(xs_by.items()):
            b = branches[s]
            if not stable[3 * k : 3 * k + 3].all():
                b.stable = False
                continue
            Xs = Xr[:, :, 3 * k : 3 * k + 3]
            fm, f0, fp = f3[3 * k : 3 * k + 3]
            x, h = float(xs[1]), float(xs[2] - xs[1])
            d1, d2 = (fp - fm) / (2.0 * h), (fp - 2.0 * f0 + fm) / (h * h)
            b.curvature = d2 if d2 > 0 else np.nan
            _newton_step(b, x, d1, 0.0)
            u = (b.x - x) / h
            if d2 > 0 and abs(u) <= 1.0:  # Lagrange weights of x - h, x, x + h at b.x
                b.X = np.einsum("ijlt,l->ijt", Xs, [0.5 * u * (u - 1.0), 1.0 - u * u, 0.5 * u * (u + 1.0)])
                D = b.X - obj.Xb
                b.f = float(np.einsum("ijt,ijt->", D, D))
                b.done = True
    for b in branches.values():  # not converged within MAX_ITER (or a collapsed bracket): evaluate x
        if b.stable and b.X is None:
            Xr, stable = obj._x_block(np.array([b.x]), None)
            b.stable, b.X = bool(stable[0]), Xr[:, :, 0]
            D = b.X - obj.Xb
            b.f = float(np.einsum("ijt,ijt->", D, D))
    return branches


def _fit_compiled(
    fused: ModuleType, Y: FloatArray, U0: FloatArray, V0: FloatArray, t: FloatArray, X: FloatArray
) -> tuple[dict[float, _Branch], float, FloatArray, FloatArray, FloatArray, int, int]:
    """`RegularizedObjective`'s factorizations and `_search` in one call of the compiled kernel
    (core/_lambda0_fused.fit: the same steps, with no Python between them): the branches, the search
    bound L, sigma, Phi, Psi^T, and the evaluations and (lambda, record) pairs counted."""
    sub, w_sub, mid, w_mid, mid_is_full = _plan(len(t))
    consts = np.array([STENCIL, SUB_RTOL, FULL_STENCIL, MAX_ITER, END, N_COARSE])
    sigma, Phi, PsiT, L, st, f, Xo, e2, counts = fused.fit(
        np.ascontiguousarray(Y, float), np.ascontiguousarray(U0, float), np.ascontiguousarray(V0, float), t,
        np.ascontiguousarray(X), sub, w_sub, mid, w_mid, mid_is_full, consts,
    )  # fmt: skip
    out = {}
    fs = f.tolist()
    for k, (s, row) in enumerate(zip((1.0, -1.0), st.tolist(), strict=True)):
        lo, hi, x, curvature, done, end, stable = row
        b = _Branch(s, lo, hi, x, curvature, bool(done), bool(stable), end)
        if b.stable:
            b.f, b.X, b.e2 = fs[k], Xo[k], e2[k]
        out[s] = b
    n_evaluations, n_records = counts.tolist()
    return out, float(L), sigma, Phi, PsiT, n_evaluations, n_records


def lambda0_fit(Y: np.ndarray, U0: np.ndarray, V0: np.ndarray, t: np.ndarray, X: np.ndarray) -> Lambda0Fit:
    """argmin of sum_t ||X_reg(t; lambda0) - X(t)||^2 over lambda0 > 0 and over lambda0 < 0 (SPEC §2)."""
    t = np.asarray(t, float)
    X = np.asarray(X, float)
    ynorm = float(np.linalg.norm(Y))
    fused = compiled_module("flowsweep.core._lambda0_fused")
    if fused is not None:
        found, L, sigma, Phi, PsiT, n_evaluations, n_records = _fit_compiled(fused, Y, U0, V0, t, X)
    else:
        obj = RegularizedObjective(Y, U0, V0, t, X)
        L = obj.search_bound()
        found = _search(obj, L)
        sigma, Phi, PsiT, n_evaluations, n_records = obj.sigma, obj.Phi, obj.PsiT, obj.n_evaluations, obj.n_records
    branches: dict[float, Lambda0Branch] = {}
    n_ref = 0
    for sign, b in found.items():
        if b.stable:
            x, v = b.x, b.f
        else:
            x, v, nev = _branch_reference(Y, U0, V0, t, X, sign, L)
            n_ref += nev
        v = v if np.isfinite(v) else np.inf
        branches[sign] = Lambda0Branch(float(x), float(np.sqrt(v / len(t)) / ynorm), float(v))
    pos, neg = branches[1.0], branches[-1.0]
    best_sign = 1.0 if pos.loss <= neg.loss else -1.0
    best = branches[best_sign]
    Xb = found[best_sign].X
    x_reg_of: Callable[[], np.ndarray]
    if found[best_sign].stable and Xb is not None:
        e2 = found[best_sign].e2
        if e2 is None:  # X_reg - Y in the basis B, where Y is diag(sigma)
            D = Xb.copy()
            i = np.arange(len(sigma))
            D[i, i] -= sigma[:, None]
            e2 = np.einsum("ijt,ijt->t", D, D)
        curve = np.sqrt(e2) / ynorm
        x_reg_of = functools.partial(original_basis, Phi, PsiT, Xb)
    else:  # the factored form's loss, evaluated
        X_reg = regularized_flow(Y, U0, V0, best.lambda0, t).X
        D = X_reg - X
        loss = float(np.einsum("tij,tij->", D, D))
        if np.isfinite(loss):
            best = branches[best_sign] = Lambda0Branch(best.lambda0, float(np.sqrt(loss / len(t)) / ynorm), loss)
            pos, neg = branches[1.0], branches[-1.0]
        curve = np.linalg.norm(Y - X_reg, axis=(1, 2)) / ynorm
        x_reg_of = functools.partial(np.asarray, X_reg)
    return Lambda0Fit(
        lambda0=best.lambda0,
        error=best.error,
        loss=best.loss,
        n_evaluations=n_evaluations + n_ref,
        pos=pos,
        neg=neg,
        error_curve=curve,
        x_reg_of=x_reg_of,
        n_records=n_records,
    )
