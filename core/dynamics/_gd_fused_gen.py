"""Writes `_gd_fused.py`, the compiled (numba) gd loop of the asymmetric model, from one template.

    python -m flowsweep.core.dynamics._gd_fused_gen      # rewrites core/dynamics/_gd_fused.py

Why generated: the kernel keeps LANES points side by side, one per SIMD lane (lane axis last and
contiguous, core/_simd.py loads it as one vector), and every matrix product of a step runs in
register tiles of several outputs whose accumulators are written out here one by one (numba has
no loop unrolling to ask for); tests/core/test_gd_fused.py checks the file is this script's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Register tiles of ROWS x COLS outputs. Every output is its own chain of FMAs over the reduction
# index, summed in order (as the numpy loop's matmuls). With 2 outputs per tile (before) a vector
# FMA waited for the previous one of its chain (~4 cycles, ~2.3 measured); a 4 x 4 tile keeps 16
# chains in flight and loads 8 vectors per 16 FMAs (a 1 x 8 row: 9 per 8; measured at Fig. 1's
# shape: 4 x 4 ran the step in ~0.8x the time of 1 x 8 and 2 x 4). Rows and columns that do not
# fill a tile take blocks of 2, then 1.
ROWS = 4
COLS = 4


def _sections(size: str, width: int) -> list[tuple[int, str, str]]:
    """(block, start, stop): range(size) in blocks of `width`, then at most one block of each
    smaller power of two."""

    def cut(b: int) -> str:
        return size if b == 1 else f"{size} - {size} % {b}"

    out = [(width, "0", cut(width))]
    b = width // 2
    while b >= 1:
        out.append((b, cut(2 * b), cut(b)))
        b //= 2
    return out


def _product(
    rows: str, cols: str, terms: list[tuple[str, str, str, str]], finish: str, upper: bool = False
) -> list[str]:
    """Loops over the outputs (i, j) of a product, i < rows, j < cols, in register tiles of at
    most ROWS x COLS outputs, each output t summed in order from 0: for each term
    (red, A, B, op), over k < red, t = fma(A(i, k), B(j, k), t) (op "+") or fnma (op "-").

    A and B are `load` arguments formatted with {i} or {j} and {k}; `finish` is the statement
    that writes output (i, j) from its accumulator {t}. `upper`: a symmetric product (A = B),
    only the tiles that reach the diagonal or above it (`finish` writes (j, i) too)."""
    lines: list[str] = []
    for cb, c0, c1 in _sections(cols, COLS):
        for rb, r0, r1 in _sections(rows, ROWS):
            tile = [(i, j) for i in range(rb) for j in range(cb)]
            lines.append(f"    for a in range({r0}, {r1}, {rb}):")
            lines.append(f"        for c in range({c0}, {c1}, {cb}):")
            if upper:
                lines.append(f"            if c + {cb - 1} < a:")
                lines.append("                continue")
            lines.append("            " + "; ".join(f"t{i}_{j} = zeros()" for i, j in tile))
            for red, A, B, op in terms:
                fn = "fma" if op == "+" else "fnma"
                lines.append(f"            for k in range({red}):")
                lines.append(
                    "                " + "; ".join(f"x{i} = load({A.format(i=f'a + {i}', k='k')})" for i in range(rb))
                )
                lines.append(
                    "                " + "; ".join(f"y{j} = load({B.format(j=f'c + {j}', k='k')})" for j in range(cb))
                )
                lines.append("                " + "; ".join(f"t{i}_{j} = {fn}(x{i}, y{j}, t{i}_{j})" for i, j in tile))
            for i, j in tile:
                lines.append("            " + finish.format(i=f"a + {i}", j=f"c + {j}", t=f"t{i}_{j}"))
    return lines


def source() -> str:
    x_terms = [("r", "U, {i}, {k}", "V, {j}, {k}", "+")]
    r_finish = "z = sub(load(sY, {i}, {j}), {t}); store(R, {i}, {j}, z); s = fma(z, z, s)"
    residual = _product("m", "n", x_terms, "store(X, {i}, {j}, {t}); " + r_finish)
    residual_only = _product("m", "n", x_terms, r_finish)  # X only where something is recorded
    grad_u = _product("m", "r", [("n", "R, {i}, {k}", "V, {k}, {j}", "+")], "store(dU, {i}, {j}, {t})")
    grad_v = _product(
        "n", "r", [("m", "R, {k}, {i}", "U, {k}, {j}", "+")], "store(V, {i}, {j}, add(load(V, {i}, {j}), {t}))"
    )
    # the flow's right-hand side (eq. (2), core/dynamics/_flow_dop853.py): the same products, stored
    flow_v = _product("n", "r", [("m", "R, {k}, {i}", "U, {k}, {j}", "+")], "store(dV, {i}, {j}, {t})")
    # Q is symmetric to the bit (fma(x, y, t) = fma(y, x, t)): the upper tiles, mirrored
    gram = _product(
        "r",
        "r",
        [("m", "U, {k}, {i}", "U, {k}, {j}", "+"), ("n", "V, {k}, {i}", "V, {k}, {j}", "-")],
        "store(Q, {i}, {j}, {t}); store(Q, {j}, {i}, {t})",
        upper=True,
    )
    body = "\n".join(
        [
            HEADER,
            "",
            "",
            DECORATOR,
            "def _residual(U, V, sY, X, R, r2):",
            '    """X = U V^T, R = sY - X (s-scaled), r2 = ||R||^2 of every lane."""',
            "    m, r, _ = U.shape",
            "    n = V.shape[0]",
            "    s = zeros()",
            *residual,
            "    for q in range(LANES):",
            "        r2[q] = lane(s, q)",
            "",
            "",
            DECORATOR,
            "def _residual_only(U, V, sY, R, r2):",
            '    """_residual without X (a step where no lane records, leaves or diverges)."""',
            "    m, r, _ = U.shape",
            "    n = V.shape[0]",
            "    s = zeros()",
            *residual_only,
            "    for q in range(LANES):",
            "        r2[q] = lane(s, q)",
            "",
            "",
            DECORATOR,
            "def _update(U, V, R, dU):",
            '    """The Euler step: U += R V, V += R^T U (both from the old factors)."""',
            "    m, r, _ = U.shape",
            "    n = V.shape[0]",
            *grad_u,
            *grad_v,
            "    for a in range(m):",
            "        for c in range(r):",
            "            store(U, a, c, add(load(U, a, c), load(dU, a, c)))",
            "",
            "",
            DECORATOR,
            "def _grads(U, V, R, dU, dV):",
            '    """dU = R V, dV = R^T U: the flow (eq. (2)) at U, V with residual R."""',
            "    m, r, _ = U.shape",
            "    n = V.shape[0]",
            *grad_u,
            *flow_v,
            "",
            "",
            DECORATOR,
            "def _gram(U, V, Q):",
            '    """Q = U^T U - V^T V of every lane, (r, r, LANES)."""',
            "    m, r, _ = U.shape",
            "    n = V.shape[0]",
            *gram,
            "",
            "",
            DECORATOR,
            "def _drift2(Q, Q0, d2):",
            '    """d2 = ||Q - Q0||_F^2 of every lane (Q, Q0 symmetric): the diagonal plus twice the',
            "    upper triangle, summed in 4 interleaved chains (one chain of r^2 additions waited ~4",
            '    cycles for each)."""',
            "    r = Q.shape[0]",
            "    sd = zeros(); s0 = zeros(); s1 = zeros(); s2 = zeros(); s3 = zeros()",
            "    for a in range(r):",
            "        z = sub(load(Q, a, a), load(Q0, a, a))",
            "        sd = fma(z, z, sd)",
            "        c = a + 1",
            "        while c + 4 <= r:",
            "            z0 = sub(load(Q, a, c), load(Q0, a, c))",
            "            z1 = sub(load(Q, a, c + 1), load(Q0, a, c + 1))",
            "            z2 = sub(load(Q, a, c + 2), load(Q0, a, c + 2))",
            "            z3 = sub(load(Q, a, c + 3), load(Q0, a, c + 3))",
            "            s0 = fma(z0, z0, s0); s1 = fma(z1, z1, s1); s2 = fma(z2, z2, s2); s3 = fma(z3, z3, s3)",
            "            c += 4",
            "        while c < r:",
            "            z = sub(load(Q, a, c), load(Q0, a, c))",
            "            s0 = fma(z, z, s0)",
            "            c += 1",
            "    s = fma(splat(2.0), add(add(s0, s1), add(s2, s3)), sd)",
            "    for q in range(LANES):",
            "        d2[q] = lane(s, q)",
            "",
            "",
            LOOP,
        ]
    )
    return body


HEADER = '''"""GENERATED by _gd_fused_gen.py (python -m flowsweep.core.dynamics._gd_fused_gen): do not edit.

The gd loop of the asymmetric model compiled by numba, LANES points side by side (one per SIMD
lane, the lane axis last). Same steps, checks and records as gd_linear's numpy loop.
"""

# ruff: noqa: E702, E501
# mypy: ignore-errors
# fmt: off

import numpy as np
from numba import njit

from .._simd import LANES, add, fma, fnma, lane, load, splat, store, sub, zeros, zeros_lanes'''

DECORATOR = '@njit(cache=True, error_model="numpy", nogil=True)'

LOOP = (
    DECORATOR
    + '''
def gd_fused(U0, V0, sY0, tol2, thr2, frz2, eta, steps, record_every, window, freeze_steps, period,
             order, X_rec, r2_rec, d2_rec, r2_final, U_final, V_final, ttt, div, iterations):
    """gd of every point of the batch (factors sqrt(s)-scaled, sY0 = s Y): the points queue for
    LANES lanes in `order` (a permutation of the batch); a lane whose point is done takes the
    next one at the next step that is a multiple of `period` (so that the lanes' records fall on
    the same steps and one `_gram` call serves them all). Per point, as gd_linear's numpy loop:
    windows of squared residuals ending every `window` steps, at records and at the last step;
    divergence (first bad iteration, factors zeroed at the window end), time to tol (first
    iteration with r2 <= tol2 before any divergence), the stop at machine precision (r2 <= frz2
    over whole windows for `freeze_steps` steps after tol was reached): the point leaves, its
    later records repeat it. Returns the number of steps of the lanes (LANES * that / sum of
    iterations: lane use)."""
    B, m, r = U0.shape
    n = V0.shape[1]
    T = X_rec.shape[1]
    L = LANES
    U = zeros_lanes(m, r)
    V = zeros_lanes(n, r)
    sY = zeros_lanes(m, n)
    X = zeros_lanes(m, n)
    R = zeros_lanes(m, n)
    dU = zeros_lanes(m, r)
    Q0 = zeros_lanes(r, r)
    Q = zeros_lanes(r, r)
    r2 = np.zeros(L)
    d2 = np.zeros(L)
    pt = np.full(L, -1, dtype=np.int64)  # the point in each lane, -1 idle
    g0 = np.zeros(L, dtype=np.int64)  # the step g of its iteration 0
    rec = np.zeros(L, dtype=np.int64)  # its next record
    w0 = np.zeros(L, dtype=np.int64)  # its current window: steps g0 + 1 .. g (w = g - w0)
    idle = np.iinfo(np.int64).max
    ev = np.full(L, idle, dtype=np.int64)  # the step of its next window end, record or last step
    next_ev = idle  # the first of them: X is only needed there
    # a step of a lane is quiet (nothing to note) while lo < r2 <= hi: below hi no divergence
    # (nor, while all_below, r2 > frz2); above lo no time to tol (-inf once it is decided)
    lo = np.full(L, -np.inf)
    hi = np.full(L, np.inf)
    first_bad = np.full(L, -1, dtype=np.int64)  # first bad iteration in the window
    all_below = np.ones(L, dtype=np.bool_)  # r2 <= frz2 over the whole window
    below = np.zeros(L, dtype=np.int64)  # steps of whole windows below frz2 in a row
    act = np.zeros(L, dtype=np.int64)
    nxt = 0
    busy = 0
    g = 0
    refill = 0  # the next step at which idle lanes take points (a multiple of period)
    while True:
        if g == refill:  # idle lanes take the next points
            refill += period
            loaded = False
            for q in range(L):
                if pt[q] < 0 and nxt < B:
                    p = order[nxt]
                    nxt += 1
                    busy += 1
                    pt[q] = p
                    g0[q] = g
                    rec[q] = 0
                    w0[q] = g - 1
                    ev[q] = g  # iteration 0 is a record
                    first_bad[q] = -1
                    all_below[q] = True
                    below[q] = 0
                    lo[q] = tol2[p] if np.isnan(ttt[p]) else -np.inf
                    hi[q] = min(thr2[p], frz2[p])
                    for a in range(m):
                        for c in range(r):
                            U[a, c, q] = U0[p, a, c]
                    for a in range(n):
                        for c in range(r):
                            V[a, c, q] = V0[p, a, c]
                    for a in range(m):
                        for c in range(n):
                            sY[a, c, q] = sY0[p, a, c]
                    loaded = True
            if loaded:  # Q0 by the same code as every later Q (the drift starts at 0 exactly)
                next_ev = g
                _gram(U, V, Q)
                for q in range(L):
                    if pt[q] >= 0 and g0[q] == g:
                        for a in range(r):
                            for c in range(r):
                                Q0[a, c, q] = Q[a, c, q]
        if busy == 0:
            if nxt >= B:
                break
            g = refill  # every lane waits for the next points: skip to them
            continue
        if g == next_ev:
            _residual(U, V, sY, X, R, r2)
        else:
            _residual_only(U, V, sY, R, r2)
        any_event = False
        for q in range(L):
            act[q] = 0
            e2 = r2[q]
            if lo[q] < e2 and e2 <= hi[q] and g != ev[q]:
                continue  # idle lanes too (lo = -inf, hi = inf, r2 = 0, ev = idle)
            p = pt[q]
            i = g - g0[q]
            if not (e2 <= thr2[p]):  # catches nan and inf too
                if first_bad[q] < 0:
                    first_bad[q] = i
            elif first_bad[q] < 0 and e2 <= tol2[p] and np.isnan(ttt[p]):
                ttt[p] = i * eta
            if not (e2 <= frz2[p]):
                all_below[q] = False
            if g != ev[q]:
                lo[q] = tol2[p] if first_bad[q] < 0 and np.isnan(ttt[p]) else -np.inf
                hi[q] = min(thr2[p], frz2[p]) if all_below[q] else thr2[p]
                continue
            any_event = True
            is_rec = rec[q] < T and i == rec[q] * record_every
            gone = False
            if first_bad[q] >= 0:  # diverged: factors and X zero from here on
                div[p] = first_bad[q]
                gone = True
                for a in range(m):
                    for c in range(r):
                        U[a, c, q] = 0.0
                    for c in range(n):
                        X[a, c, q] = 0.0
                for a in range(n):
                    for c in range(r):
                        V[a, c, q] = 0.0
            if all_below[q]:
                below[q] += g - w0[q]
            else:
                below[q] = 0
            if below[q] >= freeze_steps and not np.isnan(ttt[p]):
                gone = True
            w0[q] = g
            first_bad[q] = -1
            all_below[q] = True
            # act: bit 1 record this step, bit 2 leave (gone, or the last step), bit 4 stay
            act[q] = (1 if is_rec else 0) + (2 if gone or i == steps else 4)
        if not any_event:
            _update(U, V, R, dU)
            g += 1
            continue
        need_gram = False
        for q in range(L):
            if act[q] & 1 or (act[q] & 2 and g - g0[q] != steps):
                need_gram = True
        if need_gram:
            _gram(U, V, Q)
            _drift2(Q, Q0, d2)
        for q in range(L):
            p = pt[q]
            if act[q] == 0:
                continue
            i = g - g0[q]
            stop = rec[q] + (act[q] & 1)
            if act[q] & 2 and i != steps:  # a point that leaves early repeats its state to the end
                stop = T
                iterations[p] = i
            d2q = d2[q]
            for t in range(rec[q], stop):
                for a in range(m):
                    for c in range(n):
                        X_rec[p, t, a, c] = X[a, c, q]
                r2_rec[p, t] = r2[q]
                d2_rec[p, t] = d2q
            rec[q] = stop
            if act[q] & 2:  # the point leaves its lane
                r2_final[p] = r2[q]
                for a in range(m):
                    for c in range(r):
                        U_final[p, a, c] = U[a, c, q]
                        U[a, c, q] = 0.0
                    for c in range(n):
                        sY[a, c, q] = 0.0
                for a in range(n):
                    for c in range(r):
                        V_final[p, a, c] = V[a, c, q]
                        V[a, c, q] = 0.0
                pt[q] = -1
                busy -= 1
                lo[q] = -np.inf
                hi[q] = np.inf
                ev[q] = idle
            else:  # the next window end, record or last step
                e = min(w0[q] + window, g0[q] + steps)
                if rec[q] < T:
                    e = min(e, g0[q] + rec[q] * record_every)
                ev[q] = e
                lo[q] = tol2[p] if np.isnan(ttt[p]) else -np.inf
                hi[q] = min(thr2[p], frz2[p])
        next_ev = idle
        for q in range(L):
            next_ev = min(next_ev, ev[q])
        _update(U, V, R, dU)
        g += 1
    return g
'''
)


def main() -> None:
    out = Path(__file__).with_name("_gd_fused.py")
    out.write_text(source())
    sys.stdout.write(f"wrote {out}\n")


if __name__ == "__main__":
    main()
