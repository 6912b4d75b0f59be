"""The paper's closed forms, written to stay finite and accurate for large t * |eigenvalue|.

One Riccati routine serves the symmetric model (eq. (5) -> (6)/(32), (41)) and the regularized
asymmetric flow (eq. (19) -> (21)): for A symmetric, dP/dt = A P + P A - P^2 has the solution
P = P* + D with P* = 2 max(A, 0) (the stable solution of the algebraic equation, projected
eigenwise) and D(t) = e^{-t|A|} D0 (I + M(t) D0)^{-1} e^{-t|A|}, M(t) = (I - e^{-2t|A|}) / (2|A|),
D0 = P0 - P* (Lemma 6 with the stabilising solution, as in eq. (40)-(41)). Every exponential
there decays, so nothing overflows; I + M D0 is assembled as diag(d) + M P0 with
d = e^{-2ta} (a > 0) or 1, without the cancellation of 1 - (1 - e^{-2ta}). That needs P0 > 0 on
the unstable eigenspace of A; otherwise (e.g. balanced starts, or k below that dimension) the
exact solution keeps rank(P) = rank(P0) and is computed from a rank-preserving factor
(`riccati_factored`), because rounding would otherwise seed the missing unstable directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .types import FloatArray


def _one_minus_exp_over(a: FloatArray, t: FloatArray) -> FloatArray:
    """(1 - e^{-2 t a}) / (2 a) for a >= 0, t >= 0, equal to t at a = 0; shape (T, N)."""
    z = 2.0 * np.multiply.outer(t, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(z > 1e-12, -np.expm1(-z) / np.where(z > 0, z, 1.0), 1.0 - z / 2.0)
    return t[:, None] * h


def riccati(
    A: FloatArray,
    P0: FloatArray,
    t: npt.ArrayLike,
    form: str = "stable",
    factor: FloatArray | None = None,
    block: tuple[slice, slice] | None = None,
) -> FloatArray:
    """Solution of dP/dt = A P + P A - P^2, P(0) = P0 (A symmetric, P0 >= 0) at times t; (T, N, N).

    form="stable": the decaying form around the stabilising solution (eq. (41) generalised); when
    P0 is (numerically) rank deficient on the unstable eigenspace of A it switches to "factored".
    form="factored": P = G G^T with a rank-preserving factor (see `riccati_factored`).
    form="literal": e^{tA} P0 (I + N(t) P0)^{-1} e^{tA}, N(t) = (e^{2tA} - I)/(2A), i.e. eq. (32)
    and eq. (21) as printed; it overflows once t * max(A) exceeds ~350.
    `factor`: optional F with F F^T = P0 (used by the factored form, more accurate than P0's roots).
    `block`: optional (rows, cols) index pair; only P[:, rows, cols] is formed and returned.
    """
    t = np.atleast_1d(np.asarray(t, dtype=float))

    def factored() -> FloatArray:
        P = riccati_factored(A, _psd_factor(P0) if factor is None else factor, t)
        return P if block is None else P[:, block[0], block[1]]

    if form == "factored":
        return factored()
    a: FloatArray
    E: FloatArray
    a, E = np.linalg.eigh(A)
    P0e = E.T @ P0 @ E
    Nn = len(a)
    if form == "literal":
        with np.errstate(over="ignore", invalid="ignore"):
            ex: FloatArray = np.exp(np.multiply.outer(t, a))  # e^{t a}
            z = 2.0 * np.multiply.outer(t, a)  # N = t expm1(2ta)/(2ta)
            Nd = np.where(np.abs(z) > 1e-12, np.expm1(z) / np.where(z != 0, z, 1.0), 1.0) * t[:, None]
            K = np.eye(Nn) + Nd[:, :, None] * P0e
            Pe = ex[:, :, None] * (P0e @ np.linalg.solve(K, ex[:, :, None] * np.eye(Nn)))
    elif form == "stable":
        pos = a > 1e-12 * max(float(np.max(np.abs(a))), 1e-300)  # numerically zero a acts as 0
        if pos.any():
            mu = np.linalg.eigvalsh(P0e[pos][:, pos])[0]
            # ||P0e||_2 is P0e's largest eigenvalue (P0e >= 0): cheaper than the SVD of norm(., 2)
            if mu <= 1e-7 * max(float(np.linalg.eigvalsh(P0e)[-1]), 1e-300):
                return factored()
        absa = np.abs(a)
        pstar: FloatArray = np.where(pos, 2.0 * a, 0.0)
        D0 = P0e - np.diag(pstar)
        c: FloatArray = np.exp(-np.multiply.outer(t, absa))  # e^{-t|a|}, (T, N)
        d = np.where(pos, c * c, 1.0)  # I - M P*
        M = _one_minus_exp_over(absa, t)  # (T, N)
        # I + M D0 = diag(d) + M P0e, with d added on the diagonal in place (no (T, N, N) identity)
        K = M[:, :, None] * P0e
        K.reshape(len(t), -1)[:, :: Nn + 1] += d
        # D = c D0 K^{-1} c; K is well conditioned because P0 > 0 on the unstable eigenspace
        if block is not None:  # E_r Pe E_c^T without forming all of P
            Er, Ec = E[block[0]], E[block[1]]
            nr, nc = Er.shape[0], Ec.shape[0]
            ErcD0 = ((Er[None] * c[:, None, :]).reshape(-1, Nn) @ D0).reshape(len(t), nr, Nn)
            if nr < nc:  # solve from the side with fewer right-hand sides
                W = np.linalg.solve(np.swapaxes(K, 1, 2), np.swapaxes(ErcD0, 1, 2))
                # W^T c E_c^T as one product over all times instead of T small ones
                WTc = np.swapaxes(W, 1, 2) * c[:, None, :]
                return (Er * pstar) @ Ec.T + (WTc.reshape(-1, Nn) @ Ec.T).reshape(len(t), nr, nc)
            return (Er * pstar) @ Ec.T + ErcD0 @ np.linalg.solve(K, c[:, :, None] * Ec.T[None])
        Kinv_c = np.linalg.solve(K, c[:, :, None] * np.eye(Nn))
        Pe = np.diag(pstar) + c[:, :, None] * (D0 @ Kinv_c)
    else:
        raise ValueError(f"form: must be 'stable', 'factored' or 'literal', got {form!r}")
    P = E @ Pe @ E.T
    P = (P + np.swapaxes(P, 1, 2)) / 2.0
    return P if block is None else P[:, block[0], block[1]]


def _psd_factor(P0: FloatArray, rtol: float = 1e-12) -> FloatArray:
    """F with F F^T = P0 and as many columns as P0's numerical rank."""
    w, V = np.linalg.eigh((P0 + P0.T) / 2.0)
    keep = w > rtol * max(w[-1], 1e-300)
    F: FloatArray = V[:, keep] * np.sqrt(w[keep])
    return F


# Largest t * max|a| handled in one go by the factored form; beyond it the solution restarts from
# the factor at the end of the span. This bounds the grading of the rows of [I; w^{1/2} R] (<= e^30)
# that Householder QR sees; measured: spans up to ~100 stay accurate to 1e-12, 150 loses components.
_FACTOR_SPAN = 30.0


def riccati_factored(A: FloatArray, R0: FloatArray, t: npt.ArrayLike) -> FloatArray:
    """dP/dt = A P + P A - P^2 with P0 = R0 R0^T, computed as P = G G^T with G of rank(R0) columns.

    With g = e^{tA}, w = (e^{2tA} - I)/(2A) and M = (I - e^{-2tA})/(2A) (eigenwise), the solution
    P = g R0 (I + R0^T w R0)^{-1} R0^T g equals M^{-1/2} Q_b Q_b^T M^{-1/2}, where Q_b is the lower
    block of the orthonormal factor of [I; w^{1/2} R0]. The rank never exceeds rank(R0), so a
    rank-deficient start cannot drift to the stabilising solution through rounding (the flow itself
    keeps rank(P) <= rank(R0)); times beyond t |a| = 300 restart from an earlier factor."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    a: FloatArray
    E: FloatArray
    a, E = np.linalg.eigh(A)
    Nn = len(a)
    R = E.T @ R0
    U_, s_, _ = np.linalg.svd(R, full_matrices=False)  # thin factor of numerical rank
    keep = s_ > 1e-12 * max(s_[0] if len(s_) else 0.0, 1e-300)
    R = U_[:, keep] * s_[keep]
    out = np.zeros((len(t), Nn, Nn))
    if R.shape[1] == 0:
        return out
    amax = max(float(np.max(np.abs(a))), 1e-300)
    span = _FACTOR_SPAN / amax
    order = np.argsort(t)
    t_base, Rb, j = 0.0, R, 0
    while j < len(order):
        sel = []
        while j < len(order) and t[order[j]] - t_base <= span:
            sel.append(order[j])
            j += 1
        if sel:
            G = _factor_at(a, Rb, t[sel] - t_base)
            out[sel] = G @ np.swapaxes(G, 1, 2)
        if j < len(order):  # restart further on
            Rb = _factor_at(a, Rb, np.array([span]))[0]
            t_base += span
    P = E @ out @ E.T
    return (P + np.swapaxes(P, 1, 2)) / 2.0


def _factor_at(a: FloatArray, R: FloatArray, tau: FloatArray) -> FloatArray:
    """G(tau) with G G^T = P(tau) when P(0) = R R^T (A diagonal = a); shape (T, N, r)."""
    Nn, r = R.shape
    z = 2.0 * np.multiply.outer(tau, a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nz = np.abs(z) > 1e-12
        safe = np.where(nz, z, 1.0)
        w = tau[:, None] * np.where(nz, np.expm1(z) / safe, 1.0)  # (e^{2ta} - 1)/(2a)
        M = tau[:, None] * np.where(nz, -np.expm1(-z) / safe, 1.0)  # (1 - e^{-2ta})/(2a)
    C = np.zeros((len(tau), r + Nn, r))
    C[:, :r, :] = np.eye(r)
    C[:, r:, :] = np.sqrt(w)[:, :, None] * R
    Q, _ = np.linalg.qr(C)
    with np.errstate(divide="ignore", invalid="ignore"):
        G = Q[:, r:, :] / np.sqrt(M)[:, :, None]
    G[tau == 0] = R
    return G


def riccati_symmetric(Y: FloatArray, X0: FloatArray, t: npt.ArrayLike, form: str = "stable") -> FloatArray:
    """X(t) of the symmetric flow eq. (5), dX/dt = 2YX + 2XY - 4X^2, for any X0 >= 0; (T, m, m).

    Z = 4X obeys dZ/dt = (2Y) Z + Z (2Y) - Z^2, so X = riccati(2Y, 4X0)/4. form="literal" is eq.
    (6)/(32), form="stable" is eq. (41) (the same solution, finite for all t)."""
    return riccati(2.0 * Y, 4.0 * X0, t, form=form) / 4.0


def riccati_symmetric_factor(Y: FloatArray, U0: FloatArray, t: npt.ArrayLike, form: str = "stable") -> FloatArray:
    """As `riccati_symmetric` with X0 = U0 U0^T given by its factor (P0 = (2 U0)(2 U0)^T)."""
    return riccati(2.0 * Y, 4.0 * (U0 @ U0.T), t, form=form, factor=2.0 * U0) / 4.0


def linear_flow(Y: FloatArray, X0: FloatArray, t: npt.ArrayLike) -> FloatArray:
    """Eq. (4): X(t) = Y + (X0 - Y) e^{-t}; (T, m, n)."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    decay: FloatArray = np.exp(-t)
    return Y + decay[:, None, None] * (X0 - Y)


def symmetric_spectral(sigma: FloatArray, sigma0: FloatArray, t: npt.ArrayLike) -> FloatArray:
    """Eq. (7) per eigenvalue: sigma_i(t) = sigma0 sigma e^{4t sigma} / (sigma + sigma0 (e^{4t sigma} - 1)),
    rewritten with decaying exponentials (sigma > 0) and expm1 (sigma -> 0 gives sigma0/(1 + 4t sigma0));
    shape (T, m)."""
    t = np.atleast_1d(np.asarray(t, dtype=float))[:, None]
    s = np.asarray(sigma, dtype=float)[None, :]
    s0 = np.asarray(sigma0, dtype=float)[None, :] * np.ones_like(s)
    z = 4.0 * t * np.abs(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(z > 1e-12, -np.expm1(-z) / np.where(z > 0, z, 1.0), 1.0)  # (1 - e^{-z})/z
        pos = s0 / (np.exp(-z) + s0 * 4.0 * t * h)  # sigma > 0: divide by e^{4t sigma}
        # sigma <= 0: e^{4ts}/(1 + s0 (e^{4ts} - 1)/s) with (e^{-z} - 1)/s = 4t h
        neg = s0 * np.exp(-z) / (1.0 + s0 * 4.0 * t * h)
    x: FloatArray = np.where(s > 0, pos, neg)
    return x


def asymmetric_spectral(sigma: FloatArray, x0: FloatArray, lambda0: npt.ArrayLike, t: npt.ArrayLike) -> FloatArray:
    """Eq. (15) per singular value, the solution of eq. (50) dx/dt = 2(sigma - x) sqrt(x^2 + lambda0^2/4).

    With rho = sqrt(4 sigma^2 + lambda0^2) and nu(t) = nu0 e^{-rho t}:
        x(t) = (sigma (1 - lambda0^2 nu^2) + lambda0^2 nu) / (1 - 4 sigma nu - lambda0^2 nu^2),
    which is eq. (15) divided by e^{2 rho t}, with nu = -2 C e^{-rho t} and C of eq. (51). nu0 is
    the small root of lambda0^2 (x0 - sigma) nu^2 + (4 sigma x0 + lambda0^2) nu + (sigma - x0) = 0,
    written without the division by lambda0^2 so that lambda0 = 0 gives the logistic solution
    x = sigma / (1 + (sigma/x0 - 1) e^{-2 sigma t}) and x0 = sigma stays at sigma. Shape (T, m)."""
    t = np.atleast_1d(np.asarray(t, dtype=float))[:, None]
    s = np.asarray(sigma, dtype=float)[None, :]
    x0 = np.asarray(x0, dtype=float)[None, :] * np.ones_like(s)
    lam = np.broadcast_to(np.asarray(lambda0, dtype=float), s.shape)
    l2 = lam * lam
    rho = np.sqrt(4.0 * s * s + l2)
    b = 4.0 * s * x0 + l2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nu0 = 2.0 * (x0 - s) / (b + np.sqrt(b * b + 4.0 * l2 * (x0 - s) ** 2))
        nu = nu0 * np.exp(-rho * t)
        x = (s * (1.0 - l2 * nu * nu) + l2 * nu) / (1.0 - 4.0 * s * nu - l2 * nu * nu)
        # lambda0 = 0 and x0 <= 0 (the root above is 0/0): dx/dt = 2 (sigma - x) |x| keeps x <= 0 and
        # y = -x solves dy/dt = -2 (sigma + y) y,
        # so x = -sigma |x0| e^{-2 sigma t} / (sigma + |x0| (1 - e^{-2 sigma t}))
        e2 = np.exp(-2.0 * s * t)
        x_neg = -s * np.abs(x0) * e2 / (s + np.abs(x0) * (1.0 - e2))
        x = np.where((l2 == 0) & (x0 <= 0) & (s > 0), x_neg, x)
        # rho = 0 (sigma = lambda0 = 0): dx/dt = -2 x |x|
        x = np.where(rho > 0, x, x0 / (1.0 + 2.0 * np.abs(x0) * t))
    out: FloatArray = x
    return out


def paper_constant_C(sigma: npt.ArrayLike, x0: float | FloatArray, lambda0: npt.ArrayLike) -> FloatArray:
    """Eq. (51) as printed: C = (sqrt(4 s^2 l^2 + 16 s^2 x0^2 + l^4 + 4 x0^2 l^2) - 4 s x0 - l^2) / (4 l^2 (s - x0))."""
    s, l = np.asarray(sigma, float), np.asarray(lambda0, float)
    root: FloatArray = np.sqrt(4 * s**2 * l**2 + 16 * s**2 * x0**2 + l**4 + 4 * x0**2 * l**2)
    C: FloatArray = (root - 4 * s * x0 - l**2) / (4 * l**2 * (s - x0))
    return C


def asymmetric_spectral_paper(
    sigma: npt.ArrayLike, x0: float | FloatArray, lambda0: npt.ArrayLike, t: npt.ArrayLike
) -> FloatArray:
    """Eq. (15) literally (growing exponentials), for cross-checking `asymmetric_spectral`."""
    t = np.atleast_1d(np.asarray(t, dtype=float))[:, None]
    s, l = np.asarray(sigma, float)[None], np.asarray(lambda0, float)
    C = paper_constant_C(sigma, x0, lambda0)[None]
    r = np.sqrt(4 * s**2 + l**2)
    E: FloatArray = np.exp(t * r)
    x: FloatArray = (s * E**2 - 2 * C * l**2 * E - 4 * s * l**2 * C**2) / (E**2 + 8 * s * C * E - 4 * l**2 * C**2)
    return x


def shifted_gram_A(Y: FloatArray, lambda0: float) -> FloatArray:
    """S~ = S_Y + (lambda0/2) J with S_Y = [[0, Y], [Y^T, 0]], J = diag(I_m, -I_n) (eq. (17), (21))."""
    m, n = Y.shape
    S = np.zeros((m + n, m + n))
    S[:m, m:] = Y
    S[m:, :m] = Y.T
    S[:m, :m] += 0.5 * lambda0 * np.eye(m)
    S[m:, m:] -= 0.5 * lambda0 * np.eye(n)
    return S


@dataclass
class RegularizedFlow:
    """Closed form of the regularized flow eq. (19) with Lambda_Q0 = lambda0 I (eq. (21))."""

    t: FloatArray
    X: FloatArray  # (T, m, n) top-right block of R R^T: X_reg(t; lambda0)
    P: FloatArray | None = None  # (T, m+n, m+n) R R^T when asked for (full=True)


def regularized_flow(
    Y: FloatArray,
    U0: FloatArray,
    V0: FloatArray,
    lambda0: float,
    t: npt.ArrayLike,
    form: str = "stable",
    full: bool = False,
) -> RegularizedFlow:
    """R = [U; V] obeys dR/dt = S~ R - R R^T R / 2, so P = R R^T obeys dP/dt = S~P + PS~ - P^2,
    P0 = R0 R0^T (independent of k). Valid for any R0."""
    m = Y.shape[0]
    R0 = np.vstack([U0, V0])
    t = np.atleast_1d(np.asarray(t, float))
    block = None if full else (slice(0, m), slice(m, None))
    P = riccati(shifted_gram_A(Y, lambda0), R0 @ R0.T, t, form=form, factor=R0, block=block)
    return RegularizedFlow(t=t, X=P[:, :m, m:], P=P) if full else RegularizedFlow(t=t, X=P)
