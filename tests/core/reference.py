"""Independent reference solutions for the core tests (plain solve_ivp, not core's integrator)."""

import numpy as np
from scipy.integrate import solve_ivp


def ode_reference(f, y0, t, rtol=1e-13, atol=1e-15):
    """An independent high-accuracy solve (not core's integrator) sampled at t."""
    sol = solve_ivp(f, (0.0, float(t[-1])), y0, method="DOP853", t_eval=t, rtol=rtol, atol=atol)
    assert sol.status == 0, sol.message
    return sol.y.T


def regularized_reference(Y, U0, V0, lam, t):
    """Eq. (19): U' = (Y - UV^T)V - U(Q - lam I)/2, V' = (Y - UV^T)^T U + V(Q - lam I)/2, by ODE solve.
    Returns X(t) = U V^T and Q(t) = U^T U - V^T V."""
    m, k = U0.shape
    n = V0.shape[0]

    def f(_, y):
        U = y[: m * k].reshape(m, k)
        V = y[m * k :].reshape(n, k)
        R = Y - U @ V.T
        Qd = U.T @ U - V.T @ V - lam * np.eye(k)
        return np.concatenate([(R @ V - 0.5 * U @ Qd).ravel(), (R.T @ U + 0.5 * V @ Qd).ravel()])

    ys = ode_reference(f, np.concatenate([U0.ravel(), V0.ravel()]), t)
    U = ys[:, : m * k].reshape(len(t), m, k)
    V = ys[:, m * k :].reshape(len(t), n, k)
    return U @ V.transpose(0, 2, 1), U.transpose(0, 2, 1) @ U - V.transpose(0, 2, 1) @ V


def rel_max(A, B, scale):
    return float(np.max(np.linalg.norm(A - B, axis=(-2, -1))) / scale)
