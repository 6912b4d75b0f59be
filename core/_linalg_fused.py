"""Eigenvalues (and vectors) of stacks of small symmetric matrices, compiled by numba (optional):
Householder reduction to tridiagonal form, then implicit QL (Numerical Recipes' tred2 and tqli).
LAPACK's dsyevd spends ~3 us on each 5 x 5 matrix of a stack (a cheap point has eleven, its
singular values' Gram matrices, and a few more in its metrics), about as much as the point's whole
gd run; this costs a fraction of that. Both are backward stable (eigenvalues to ~eps ||A||), so
the values agree with numpy.linalg's to rounding; numpy stays the reference
(tests/core/test_linalg_fused.py) and the FLOWSWEEP_NUMBA=0 path (core/linalg.py dispatches).
The singular values of a trajectory (core/run.py) have their own kernel, trajectory_singular_values:
each record's Gram matrix formed and diagonalized by Jacobi rotations in SIMD lanes (QL's
data-dependent steps do not vectorize), against numpy.linalg.svd in
tests/core/test_trajectory_singular_values.py.
"""

# mypy: ignore-errors

import math

import numpy as np
from numba import njit

from ._simd import (
    LANES,
    absolute,
    add,
    div,
    fma,
    fnma,
    lane,
    load,
    maximum,
    mul,
    splat,
    sqrt,
    store,
    sub,
    where_gt,
    zeros,
    zeros_lanes,
)

_EPS = 2.220446049250313e-16
_MAX_FLOAT = 1.7976931348623157e308
_MAX_QL_ITERATIONS = 60  # per eigenvalue; 2-3 are usual


@njit(cache=True, error_model="numpy", nogil=True)
def _tridiagonalize(a, d, e, vectors):
    """Householder reduction of the symmetric `a` (its lower triangle) to the tridiagonal matrix
    diag(d) + subdiagonal e[1:]; with `vectors`, `a` ends as the orthogonal Q of A = Q T Q^T."""
    n = a.shape[0]
    for i in range(n - 1, 0, -1):
        el = i - 1
        h = 0.0
        if el > 0:
            scale = 0.0
            for k in range(el + 1):
                scale += abs(a[i, k])
            if scale == 0.0:
                e[i] = a[i, el]
            else:
                for k in range(el + 1):
                    a[i, k] /= scale
                    h += a[i, k] * a[i, k]
                f = a[i, el]
                g = -np.sqrt(h) if f >= 0.0 else np.sqrt(h)
                e[i] = scale * g
                h -= f * g
                a[i, el] = f - g
                f = 0.0
                for j in range(el + 1):
                    if vectors:
                        a[j, i] = a[i, j] / h
                    g = 0.0
                    for k in range(j + 1):
                        g += a[j, k] * a[i, k]
                    for k in range(j + 1, el + 1):
                        g += a[k, j] * a[i, k]
                    e[j] = g / h
                    f += e[j] * a[i, j]
                hh = f / (h + h)
                for j in range(el + 1):
                    f = a[i, j]
                    g = e[j] - hh * f
                    e[j] = g
                    for k in range(j + 1):
                        a[j, k] -= f * e[k] + g * a[i, k]
        else:
            e[i] = a[i, el]
        d[i] = h
    e[0] = 0.0
    if not vectors:
        for i in range(n):
            d[i] = a[i, i]
        return
    d[0] = 0.0
    for i in range(n):  # accumulate the transformations
        if d[i] != 0.0:
            for j in range(i):
                g = 0.0
                for k in range(i):
                    g += a[i, k] * a[k, j]
                for k in range(i):
                    a[k, j] -= g * a[k, i]
        d[i] = a[i, i]
        a[i, i] = 1.0
        for j in range(i):
            a[j, i] = 0.0
            a[i, j] = 0.0


# Problems whose QL iterations run interleaved, one rotation of each in turn: a rotation's square
# root and divisions form one long dependency chain per problem, and the chains of a few
# independent problems overlap in the CPU (each problem's arithmetic, hence its result, unchanged).
_INTERLEAVED = 4
_INTERLEAVED_VECTORS = 2  # with eigenvectors, each rotation has N-wide work of its own to overlap
_SEARCH, _ROTATE, _DONE = 0, 1, 2  # where each problem is: looking for a split, in a sweep, done


@njit(cache=True, error_model="numpy", nogil=True)
def _tridiagonal_eigen(d, e, z, count, vectors, at, carry):
    """For q < count: the eigenvalues (into d[q], unsorted) of the symmetric tridiagonal matrix
    diag(d[q]) + subdiagonal e[q, 1:], by the implicit QL method with Wilkinson's shift; with
    `vectors`, the rotations are applied to the rows of z[q] (Q^T of _tridiagonalize in, the
    eigenvectors' transpose out). The problems take turns, one rotation each (see _INTERLEAVED); at (L, 5)
    int64 and carry (L, 4) hold each one's place: (l, iterations at l, m, i, _SEARCH/_ROTATE/_DONE)
    and the sweep's (s, c, p, g)."""
    n = d.shape[1]
    for q in range(count):
        for i in range(1, n):
            e[q, i - 1] = e[q, i]
        e[q, n - 1] = 0.0
        at[q, 0] = 0
        at[q, 1] = 0
        at[q, 4] = _SEARCH
    active = count
    while active > 0:
        for q in range(count):
            phase = at[q, 4]
            if phase == _ROTATE:  # one rotation of the sweep from m - 1 down to l
                el, m, i = at[q, 0], at[q, 2], at[q, 3]
                s, c, p, g = carry[q, 0], carry[q, 1], carry[q, 2], carry[q, 3]
                f = s * e[q, i]
                b = c * e[q, i]
                r = np.sqrt(f * f + g * g)
                e[q, i + 1] = r
                if r == 0.0:  # recover from underflow: deflate and start over
                    d[q, i + 1] -= p
                    e[q, m] = 0.0
                    at[q, 4] = _SEARCH
                    continue
                s = f / r
                c = g / r
                g = d[q, i + 1] - p
                r = (d[q, i] - g) * s + 2.0 * c * b
                p = s * r
                d[q, i + 1] = g + p
                g = c * r - b
                if vectors:  # columns i, i + 1 of the eigenvectors: rows of z[q], contiguous
                    for k in range(n):
                        f = z[q, i + 1, k]
                        z[q, i + 1, k] = s * z[q, i, k] + c * f
                        z[q, i, k] = c * z[q, i, k] - s * f
                if i == el:  # the sweep is done
                    d[q, el] -= p
                    e[q, el] = g
                    e[q, m] = 0.0
                    at[q, 4] = _SEARCH
                else:
                    at[q, 3] = i - 1
                    carry[q, 0], carry[q, 1], carry[q, 2], carry[q, 3] = s, c, p, g
            elif phase == _SEARCH:  # a negligible subdiagonal entry at m >= l; m == l: d[l] converged
                el = at[q, 0]
                m = el
                while m < n - 1:
                    dd = abs(d[q, m]) + abs(d[q, m + 1])
                    if abs(e[q, m]) <= _EPS * dd:
                        break
                    m += 1
                if m == el or at[q, 1] == _MAX_QL_ITERATIONS:
                    at[q, 0] = el + 1
                    at[q, 1] = 0
                    if el + 1 == n:
                        at[q, 4] = _DONE
                        active -= 1
                    continue
                at[q, 1] += 1
                # the squares stay finite: the callers scale the matrix to about 1 (np.hypot costs more)
                g = (d[q, el + 1] - d[q, el]) / (2.0 * e[q, el])
                r = np.sqrt(g * g + 1.0)
                carry[q, 3] = d[q, m] - d[q, el] + e[q, el] / (g + (r if g >= 0.0 else -r))
                carry[q, 0], carry[q, 1], carry[q, 2] = 1.0, 1.0, 0.0
                at[q, 2] = m
                at[q, 3] = m - 1
                at[q, 4] = _ROTATE


@njit(cache=True, error_model="numpy", nogil=True)
def _scaled_lower(A, W):
    """W's lower triangle = A's times a power of two (exact) that brings its largest entry to about
    1, so that no square below under- or overflows; returns that factor."""
    N = A.shape[0]
    big = 0.0
    for i in range(N):
        for j in range(i + 1):
            big = max(big, abs(A[i, j]))
    scale = math.ldexp(1.0, -math.frexp(big)[1]) if 0.0 < big < math.inf else 1.0
    for i in range(N):
        for j in range(i + 1):
            W[i, j] = A[i, j] * scale
    return scale


@njit(cache=True, error_model="numpy", nogil=True)
def _ascending(d, order):
    """order = the indices that sort d ascending (insertion sort: numba's sort costs more per call
    on a few values)."""
    for i in range(d.shape[0]):
        j = i
        while j > 0 and d[order[j - 1]] > d[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i


@njit(cache=True, error_model="numpy", nogil=True)
def _decompose(A, w, E, vectors):
    """w[b] = the eigenvalues of the symmetric A[b] (K, N, N), ascending; with `vectors`, E[b] its
    orthonormal eigenvectors (columns), each up to its sign. A few matrices at a time, their QL
    iterations interleaved."""
    K, N, _ = A.shape
    L = _INTERLEAVED_VECTORS if vectors else _INTERLEAVED
    W = np.empty((L, N, N))
    Z = np.empty((L, N, N))  # the eigenvectors, transposed
    e = np.empty((L, N))
    d = np.empty((L, N))
    scale = np.empty(L)
    at = np.empty((L, 5), dtype=np.int64)
    carry = np.empty((L, 4))
    order = np.empty(N, dtype=np.int64)
    for b0 in range(0, K, L):
        count = min(L, K - b0)
        for q in range(count):
            scale[q] = _scaled_lower(A[b0 + q], W[q])
            _tridiagonalize(W[q], d[q], e[q], vectors)
            if vectors:
                for r in range(N):
                    for i in range(N):
                        Z[q, i, r] = W[q, r, i]
        _tridiagonal_eigen(d, e, Z, count, vectors, at, carry)
        for q in range(count):
            _ascending(d[q], order)
            for i in range(N):
                w[b0 + q, i] = d[q, order[i]] / scale[q]
                if vectors:
                    for r in range(N):
                        E[b0 + q, r, i] = Z[q, order[i], r]


@njit(cache=True, error_model="numpy", nogil=True)
def eigvalsh(A, out):
    """out[b] = the eigenvalues of the symmetric A[b] (K, N, N), ascending (np.linalg.eigvalsh's
    values to rounding)."""
    _decompose(A, out, np.empty((0, 0, 0)), False)


@njit(cache=True, error_model="numpy", nogil=True)
def eigh(A, w, E):
    """w[b], E[b] = the eigenvalues (ascending) and orthonormal eigenvectors (columns) of the
    symmetric A[b] (K, N, N), as np.linalg.eigh's to rounding (each vector up to its sign)."""
    _decompose(A, w, E, True)


# Cyclic Jacobi sweeps until every lane's off-diagonal part is this small (sum of squares, relative
# to the diagonal's): its eigenvalues are then those of the diagonal to ~1e-16 ||G||, as QL's.
_JACOBI_OFF = 1e-33
_JACOBI_MAX_SWEEPS = 30  # 4-6 are usual at N = 5; NaN lanes count as converged
_JACOBI_GROUPS = 4  # matrices of LANES side by side, rotated in turn (see _jacobi_eigenvalues)
# Gram matrices whose largest entry lies in here are not scaled: the power of two would change no
# rounding (every step is homogeneous), only keep squares in range, which they are already.
_SAFE_LOW, _SAFE_HIGH = 2.0**-100, 2.0**100


@njit(cache=True, error_model="numpy", nogil=True)
def _lower(G, o, i, j):
    """Entry (i, j)'s lanes of the symmetric matrix at rows o.. of G, stored in its lower triangle."""
    return load(G, o + i, j) if i >= j else load(G, o + j, i)


@njit(cache=True, error_model="numpy", nogil=True)
def _set_lower(G, o, i, j, x):
    if i >= j:
        store(G, o + i, j, x)
    else:
        store(G, o + j, i, x)


@njit(cache=True, error_model="numpy", nogil=True)
def _rotate(G, o, p, q, busy):
    """The Jacobi rotation that zeroes entry (q, p) of the matrix at rows o.. of G, in the lanes where
    busy > 0 (the others stay exactly as they are)."""
    N = G.shape[1]
    one = splat(1.0)
    zero = zeros()
    apq = load(G, o + q, p)
    app = load(G, o + p, p)
    aqq = load(G, o + q, q)
    theta = div(sub(aqq, app), add(apq, apq))  # +-inf where apq = 0: t = 0
    t = div(one, add(absolute(theta), sqrt(fma(theta, theta, one))))
    t = where_gt(zero, theta, sub(zero, t), t)
    t = where_gt(absolute(apq), zero, t, zero)  # no rotation where apq is 0 (or NaN)
    t = where_gt(busy, zero, t, zero)  # t = 0: c = 1, s = tau = 0, every entry unchanged
    c = div(one, sqrt(fma(t, t, one)))
    s = mul(t, c)
    tau = div(s, add(one, c))
    store(G, o + p, p, fnma(t, apq, app))
    store(G, o + q, q, fma(t, apq, aqq))
    store(G, o + q, p, where_gt(busy, zero, zero, apq))
    for k in range(N):
        if k in (p, q):
            continue
        g = _lower(G, o, k, p)
        h = _lower(G, o, k, q)
        _set_lower(G, o, k, p, fnma(s, fma(g, tau, h), g))  # g - s (h + g tau)
        _set_lower(G, o, k, q, fma(s, fnma(h, tau, g), h))  # h + s (g - h tau)


@njit(cache=True, error_model="numpy", nogil=True)
def _jacobi_eigenvalues(G):
    """The eigenvalues of GROUPS x LANES symmetric N x N matrices side by side (G (GROUPS N, N, LANES),
    group g at rows g N.., lower triangles), left on their diagonals: cyclic Jacobi rotations
    (Numerical Recipes' jacobi), the same rotation sequence in every lane, so that each step is one
    vector instruction (QL's data-dependent shifts and deflations are not); a lane stops where its
    own matrix has converged, so that its values do not depend on its neighbours. A rotation is a
    chain of divisions and square roots: the groups' chains are independent and overlap in the CPU."""
    N = G.shape[1]
    groups = G.shape[0] // N
    one = splat(1.0)
    zero = zeros()
    tol = splat(_JACOBI_OFF)
    busy = zeros_lanes(groups, 1)  # 1 in the lanes not converged yet, else 0
    for _ in range(_JACOBI_MAX_SWEEPS):
        left = 0.0
        for g in range(groups):
            off = zeros()
            diag = zeros()
            for i in range(N):
                x = load(G, g * N + i, i)
                diag = fma(x, x, diag)
                for j in range(i):
                    x = load(G, g * N + i, j)
                    off = fma(x, x, off)
            mask = where_gt(off, mul(tol, diag), one, zero)
            store(busy, g, 0, mask)
            for q in range(LANES):
                left += lane(mask, q)
        if left == 0.0:
            return
        for p in range(N - 1):
            for q in range(p + 1, N):
                for g in range(groups):
                    _rotate(G, g * N, p, q, load(busy, g, 0))


@njit(cache=True, error_model="numpy", nogil=True)
def trajectory_singular_values(X, first, out):
    """out[b, t] = the singular values of X[b, t] (B, T, m, n), descending, for t <= first[b]; the
    later records repeat record first[b]'s (core/run.trajectory_singular_values). As
    run.singular_values: NaN read as 0 and +-inf as +-the largest float (np.nan_to_num), the square
    roots of the eigenvalues of the smaller Gram matrix, scaled by a power of two as _scaled_lower
    where needed; here _JACOBI_GROUPS x LANES matrices at a time (_jacobi_eigenvalues), with no
    (B, T, r, r) arrays and one pass over X."""
    B, T, m, n = X.shape
    wide = m <= n
    r = m if wide else n
    inner = n if wide else m
    slots = _JACOBI_GROUPS * LANES
    Xl = zeros_lanes(_JACOBI_GROUPS * r, inner)  # the records, one per lane (spare lanes: zero)
    G = zeros_lanes(_JACOBI_GROUPS * r, r)
    scale = np.ones(slots)
    at_b = np.zeros(slots, dtype=np.int64)
    at_t = np.zeros(slots, dtype=np.int64)
    w = np.empty(r)
    order = np.empty(r, dtype=np.int64)
    count = 0
    for b in range(B):
        for t in range(first[b] + 1):
            Xt = X[b, t]
            o, q = (count // LANES) * r, count % LANES
            for i in range(r):
                for k in range(inner):
                    x = Xt[i, k] if wide else Xt[k, i]
                    if not math.isfinite(x):  # as np.nan_to_num (run.singular_values)
                        x = 0.0 if math.isnan(x) else math.copysign(_MAX_FLOAT, x)
                    Xl[o + i, k, q] = x
            at_b[count] = b
            at_t[count] = t
            count += 1
            if count < slots and not (b == B - 1 and t == first[b]):
                continue
            for spare in range(count, slots):
                o, q = (spare // LANES) * r, spare % LANES
                for i in range(r):
                    for k in range(inner):
                        Xl[o + i, k, q] = 0.0
            for g in range(_JACOBI_GROUPS):
                o = g * r
                big = zeros()
                for i in range(r):  # the lower triangle, each entry summed over k in order
                    for j in range(i + 1):
                        acc = zeros()
                        for k in range(inner):
                            acc = fma(load(Xl, o + i, k), load(Xl, o + j, k), acc)
                        store(G, o + i, j, acc)
                        big = maximum(big, absolute(acc))
                for q in range(LANES):  # a power of two as _scaled_lower's where squares could leave range
                    top = lane(big, q)
                    s = 1.0
                    if not _SAFE_LOW <= top <= _SAFE_HIGH:
                        s = _scaled_lower(G[o : o + r, :, q], G[o : o + r, :, q])
                    scale[g * LANES + q] = s
            _jacobi_eigenvalues(G)
            for done in range(count):
                o, q = (done // LANES) * r, done % LANES
                for i in range(r):
                    w[i] = G[o + i, i, q]
                _ascending(w, order)
                for i in range(r):
                    out[at_b[done], at_t[done], i] = np.sqrt(max(w[order[r - 1 - i]] / scale[done], 0.0))
            count = 0
    for b in range(B):
        for t in range(first[b] + 1, T):
            for i in range(r):
                out[b, t, i] = out[b, first[b], i]
