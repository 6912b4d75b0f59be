"""The reduction of the factors compiled by numba (optional; base.reduce_factors dispatches): each
point's Gram matrix G = R0 R0^T of R0 = [U0; V0] and its Cholesky factor, row by row in one pass
(the Cholesky-Banachiewicz order needs row i of G only once rows < i of L are known), instead of
numpy's batched matmul and cholesky, whose per-matrix calls cost more than the flops of a cheap
point's 15 x 50 factors. Same result to rounding (the dots are summed in LANES partial sums)."""

# mypy: ignore-errors

import math

import numpy as np
from numba import njit

from .._simd import LANES, fma, lane, load_at, zeros


@njit(cache=True, nogil=True, error_model="numpy")
def gram_cholesky(R0, r, L, ok):
    """L[b] = the lower triangular Cholesky factor of G = A A^T, A = R0[b].reshape(r, k) (R0: (B,
    r * k) C-contiguous); ok[b] = False where a pivot is not positive (G singular to rounding, or
    not finite: L[b] is then unusable)."""
    B, rk = R0.shape
    k = rk // r
    kv = k - k % LANES
    for b in range(B):
        a = R0[b]
        Lb = L[b]
        good = True
        for i in range(r):
            for j in range(i + 1):
                acc = zeros()
                for q in range(0, kv, LANES):
                    acc = fma(load_at(a, i * k + q), load_at(a, j * k + q), acc)
                s = 0.0
                for q in range(LANES):
                    s += lane(acc, q)
                for q in range(kv, k):
                    s += a[i * k + q] * a[j * k + q]
                for p in range(j):  # G[i, j] - sum_{p < j} L[i, p] L[j, p]
                    s -= Lb[i, p] * Lb[j, p]
                if j < i:
                    Lb[i, j] = s / Lb[j, j]
                elif s > 0.0 and math.isfinite(s):
                    Lb[i, i] = math.sqrt(s)
                else:
                    good = False
                    Lb[i, i] = np.nan
            for j in range(i + 1, r):
                Lb[i, j] = 0.0
        ok[b] = good
