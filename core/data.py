"""Data matrices and initialisations (SPEC §2), seeded and reproducible.

Two independent random streams: the data stream (Y, and A for `sigmoid`) is keyed by `data_seed`
(or `seed` when it is None), the weight stream (U0, V0, the spectral rotation G, the balanced
embedding W) by `seed`. Same config -> bit-identical arrays on the same machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from .types import PointConfig


@dataclass
class InitialState:
    """The exact arrays a point starts from. `A` is the sigmoid model's input matrix (N x d)."""

    Y: np.ndarray
    U0: np.ndarray
    V0: np.ndarray | None  # None for the symmetric model (X = U U^T)
    A: np.ndarray | None = None

    def as_dict(self, model: str) -> dict[str, np.ndarray]:
        V0 = self.U0 if self.V0 is None else self.V0
        out = {"Y": self.Y, "U0": self.U0, "V0": V0}
        if model == "sigmoid":
            if self.A is None or self.V0 is None:
                raise ValueError("InitialState.as_dict: the sigmoid model's state needs A and V0, got None")
            out["A"] = self.A
            out["W0"] = self.U0 @ self.V0.T
        return out


def data_rng(config: PointConfig) -> np.random.Generator:
    seed = config.seed if config.data_seed is None else config.data_seed
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0]))


def weight_rng(config: PointConfig) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(config.seed), 1]))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large |z|."""
    out: np.ndarray = expit(z)
    return out


def make_data(config: PointConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Y (and A for sigmoid) from the data stream."""
    rng = data_rng(config)
    m, n = config.m, config.n
    if config.model == "asymmetric":
        if config.y_singular_values is not None:  # Y = Phi diag(sigma) Psi^T, Phi, Psi Haar
            Phi = random_orthonormal_columns(rng, m, m)
            Psi = random_orthonormal_columns(rng, n, m)
            Y = (Phi * np.asarray(config.y_singular_values, float)) @ Psi.T
        else:
            Y = rng.standard_normal((m, n))
        return Y * config.data_scale, None
    if config.model == "symmetric":
        G = rng.standard_normal((m, m))
        return (G + G.T) / 2.0 * config.data_scale, None
    # sigmoid (paper §5): Y = phi(A W*) + 1e-3 N(0, 1), A in R^{N x d}
    N, d = config.n_samples, m
    A = rng.standard_normal((N, d))
    W_star = rng.standard_normal((d, d))
    Y = sigmoid(A @ W_star) + 1e-3 * rng.standard_normal((N, d))
    return Y, A


def haar_rows(rng: np.random.Generator, m: int, k: int) -> np.ndarray:
    """The first m rows of a Haar-distributed random orthogonal k x k matrix G (all that
    U0 = Phi [U_bar 0] G uses): an m x k matrix with orthonormal rows, from the QR of a Gaussian
    k x m matrix with the sign fix (O(k m^2) instead of O(k^3) for wide layers)."""
    return random_orthonormal_columns(rng, k, m).T


def random_orthonormal_columns(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """An n x m matrix with orthonormal columns: Q of the QR of a Gaussian n x m matrix, signs fixed."""
    Z = rng.standard_normal((n, m))
    Q, R = np.linalg.qr(Z)
    return Q * np.sign(np.diag(R))


def spectral_factors(s: float, lambda0: float) -> tuple[float, float]:
    """Definition 3 per component: u v = s^2 and u^2 - v^2 = lambda0 (stable for either sign)."""
    s2 = s * s
    root = np.hypot(lambda0, 2.0 * s2)  # sqrt(lambda0^2 + 4 s^4)
    if lambda0 >= 0:
        u2 = (lambda0 + root) / 2.0
        u = np.sqrt(u2)
        v = s2 / u if u > 0 else 0.0
    else:  # avoid cancellation: v^2 = (-lambda0 + root)/2
        v = np.sqrt((-lambda0 + root) / 2.0)
        u = s2 / v if v > 0 else 0.0
    return float(u), float(v)


def make_weights(config: PointConfig, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """U0, V0 (V0 None for symmetric) from the weight stream."""
    rng = weight_rng(config)
    m, n, k, s = config.m, config.n, config.k, config.init_scale
    model, init = config.model, config.init
    if model == "symmetric":
        if init == "spectral":  # Definition 1: U0 = Phi [s I 0] G, X0 = s^2 I
            Gm = haar_rows(rng, m, k)
            _, Phi = np.linalg.eigh(Y)
            return s * (Phi @ Gm), None
        return s * rng.standard_normal((m, k)), None
    if init == "spectral":  # Definition 3 (asymmetric only)
        Gm = haar_rows(rng, m, k)  # V_bar's entries beyond the m-th are 0
        Phi, _, PsiT = np.linalg.svd(Y)  # full SVD: Phi m x m, Psi n x n
        u, v = spectral_factors(s, config.lambda0)
        U0 = u * (Phi @ Gm)
        V0 = v * (PsiT.T[:, :m] @ Gm)
        return U0, V0
    U0 = s * rng.standard_normal((m, k))
    if init == "balanced":  # V0 = W U0 with W^T W = I  ->  Q0 = 0
        W = random_orthonormal_columns(rng, n, m)
        return U0, W @ U0
    return U0, s * rng.standard_normal((n, k))


def make_initial_state(config: PointConfig) -> InitialState:
    Y, A = make_data(config)
    U0, V0 = make_weights(config, Y)
    return InitialState(Y=Y, U0=U0, V0=V0, A=A)
