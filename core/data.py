"""Data matrices and initialisations (SPEC §2), seeded and reproducible.

Two independent random streams: the data stream (Y, and A for `sigmoid`) is keyed by `data_seed`
(or `seed` when it is None), the weight stream (U0, V0, the spectral rotation G, the balanced
embedding W) by `seed`. Same config -> bit-identical arrays on the same machine.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from .compiled import compiled_module
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


# The two streams' SeedSequence entropy [seed, STREAM]: the seeds are the contract, so are these.
DATA_STREAM, WEIGHT_STREAM = 0, 1


def data_seed_of(config: PointConfig) -> int:
    return int(config.seed if config.data_seed is None else config.data_seed)


def data_rng(config: PointConfig) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([data_seed_of(config), DATA_STREAM]))


def weight_rng(config: PointConfig) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(config.seed), WEIGHT_STREAM]))


# ------------------------------------------------ the same streams, cheaply, for a batch -----
# Building a Generator costs ~12 us (SeedSequence's hashing and PCG64's seeding, in Python-level
# calls), about as much as a cheap point's whole simulation. `SeededStreams` computes the PCG64
# states of a batch's seeds at once (numpy's SeedSequence and PCG64 seeding, vectorised) and
# hands out ONE reused Generator set to each state in turn: the same draws, bit for bit
# (tests/core/test_data.py checks it against `data_rng`/`weight_rng`).

# numpy/random/bit_generator.pyx (SeedSequence) and pcg64.h (PCG64's 128-bit LCG)
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R, _XSHIFT, _POOL_SIZE = 0xCA01F9DD, 0x4973F715, 16, 4
_MASK32, _MASK64, _MASK128 = 0xFFFFFFFF, (1 << 64) - 1, (1 << 128) - 1
_PCG_MULT = (2549297995355413924 << 64) + 4865540595714422341


def _words(n: int) -> list[int]:
    """SeedSequence's uint32 words of a non-negative integer (little-endian; 0 is one word)."""
    out = [n & _MASK32]
    n >>= 32
    while n:
        out.append(n & _MASK32)
        n >>= 32
    return out


def _seed_sequence_state(entropy: np.ndarray) -> np.ndarray:
    """SeedSequence(e).generate_state(4, np.uint64) for every row e of `entropy` ((B, L) uint32,
    the assembled entropy words), as a (B, 4) uint64 array; numpy's algorithm, on columns."""
    B, L = entropy.shape
    h = [_INIT_A]  # the hash multiplier walks the same sequence for every row

    def hashmix(value: np.ndarray) -> np.ndarray:
        value = value ^ np.uint32(h[0])
        h[0] = (h[0] * _MULT_A) & _MASK32
        value = value * np.uint32(h[0])
        return value ^ (value >> np.uint32(_XSHIFT))

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r: np.ndarray = x * np.uint32(_MIX_MULT_L) - y * np.uint32(_MIX_MULT_R)
        out: np.ndarray = r ^ (r >> np.uint32(_XSHIFT))
        return out

    zero = np.zeros(B, dtype=np.uint32)
    pool = [hashmix(entropy[:, i] if i < L else zero) for i in range(_POOL_SIZE)]
    for src in range(_POOL_SIZE):
        for dst in range(_POOL_SIZE):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(_POOL_SIZE, L):
        for dst in range(_POOL_SIZE):
            pool[dst] = mix(pool[dst], hashmix(entropy[:, src]))
    out = np.empty((B, 8), dtype=np.uint32)
    hb = _INIT_B
    for dst in range(8):
        value = pool[dst % _POOL_SIZE] ^ np.uint32(hb)
        hb = (hb * _MULT_B) & _MASK32
        value = value * np.uint32(hb)
        out[:, dst] = value ^ (value >> np.uint32(_XSHIFT))
    return out.astype("<u4", copy=False).view("<u8").astype(np.uint64)


def pcg64_state_words(seeds: list[int], stream: int) -> np.ndarray:
    """PCG64(SeedSequence([seed, stream]))'s starting (state, inc) for every seed, as a (B, 4)
    uint64 array of words: state high, state low, inc high, inc low. What
    `np.random.default_rng(np.random.SeedSequence([seed, stream]))` starts from."""
    B = len(seeds)
    tail = _words(stream)
    seq = np.empty((B, 4), dtype=np.uint64)  # SeedSequence's 4 words: initstate hi, lo; initseq hi, lo
    if max(seeds, default=0) <= _MASK32:  # one word each (the usual case): no Python-level grouping
        entropy = np.column_stack([np.array(seeds, dtype=np.uint32)] + [np.full(B, w, np.uint32) for w in tail])
        seq[:] = _seed_sequence_state(entropy)
    else:
        words = [_words(int(s)) + tail for s in seeds]
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(words):
            by_len.setdefault(len(w), []).append(i)
        for idx in by_len.values():
            seq[idx] = _seed_sequence_state(np.array([words[i] for i in idx], dtype=np.uint32))
    # pcg64_set_seed: state = 0, inc = 2 initseq + 1; step; state += initstate; step (mod 2^128)
    one, s63 = np.uint64(1), np.uint64(63)
    inc_hi, inc_lo = (seq[:, 2] << one) | (seq[:, 3] >> s63), (seq[:, 3] << one) | one
    hi, lo = _add128(inc_hi, inc_lo, seq[:, 0], seq[:, 1])
    hi, lo = _mul128(hi, lo, np.uint64(_PCG_MULT >> 64), np.uint64(_PCG_MULT & _MASK64))
    hi, lo = _add128(hi, lo, inc_hi, inc_lo)
    return np.column_stack([hi, lo, inc_hi, inc_lo])


def _add128(a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.ndarray, b_lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a + b) mod 2^128 on uint64 (high, low) words."""
    lo = a_lo + b_lo
    return a_hi + b_hi + (lo < a_lo).astype(np.uint64), lo


def _mul128(a_hi: np.ndarray, a_lo: np.ndarray, b_hi: np.uint64, b_lo: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """(a b) mod 2^128 on uint64 (high, low) words: the high word of a_lo b_lo from 32-bit halves."""
    m32, s32 = np.uint64(_MASK32), np.uint64(32)
    a1, a0, b1, b0 = a_lo >> s32, a_lo & m32, b_lo >> s32, b_lo & m32
    p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
    mid = (p00 >> s32) + (p01 & m32) + (p10 & m32)
    carry = a1 * b1 + (p01 >> s32) + (p10 >> s32) + (mid >> s32)
    return carry + a_lo * b_hi + a_hi * b_lo, a_lo * b_lo


def pcg64_states(seeds: list[int], stream: int) -> list[tuple[int, int]]:
    """(state, inc) of PCG64(SeedSequence([seed, stream])) for every seed, as Python integers (the
    form of PCG64.state)."""
    return [
        ((s_hi << 64) | s_lo, (i_hi << 64) | i_lo)
        for s_hi, s_lo, i_hi, i_lo in pcg64_state_words(seeds, stream).tolist()
    ]


class _PCG64State(ctypes.Structure):
    """numpy's pcg64_state (numpy/random/src/pcg64/pcg64.h), at PCG64().ctypes.state_address."""

    _fields_ = [("pcg_state", ctypes.c_void_p), ("has_uint32", ctypes.c_int), ("uinteger", ctypes.c_uint32)]


def _state_writer(bitgen: np.random.PCG64) -> tuple[_PCG64State, np.ndarray, list[int]] | None:
    """Direct access to a PCG64's state: its pcg64_state, a uint64 view of its 128-bit (state,
    inc), and the order of pcg64_state_words' words in that memory; None when the layout is not
    one that this recognises (then the `state` setter is used). Found by setting a known state."""
    try:
        st = _PCG64State.from_address(bitgen.ctypes.state_address)
        if not st.pcg_state:
            return None
        mem = np.ctypeslib.as_array((ctypes.c_uint64 * 4).from_address(st.pcg_state))
    except (AttributeError, TypeError, ValueError):
        return None
    probe = [0x1111111111111111, 0x2222222222222222, 0x3333333333333333, 0x4444444444444445]  # hi, lo, hi, lo
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": (probe[0] << 64) | probe[1], "inc": (probe[2] << 64) | probe[3]},
        "has_uint32": 0,
        "uinteger": 0,
    }
    found = mem.tolist()
    if sorted(found) != sorted(probe):
        return None
    return st, mem, [probe.index(w) for w in found]  # mem[j] = words[order[j]]


class SeededStreams:
    """The data or weight stream of each config of a batch, one after another: `rng(b)` is the
    b-th config's Generator positioned at its start (`data_rng` / `weight_rng`), valid until the
    next call (one Generator is reused). The states are written straight into the generator's
    memory (the `state` setter costs ~3 us a call, as much as a cheap point's draws)."""

    def __init__(self, configs: list[PointConfig], stream: int) -> None:
        seeds = [data_seed_of(c) if stream == DATA_STREAM else int(c.seed) for c in configs]
        self._words = pcg64_state_words(seeds, stream)
        self._bitgen = np.random.PCG64()
        self._gen = np.random.Generator(self._bitgen)
        self._writer = _state_writer(self._bitgen)
        if self._writer is not None:
            self._words = np.ascontiguousarray(self._words[:, self._writer[2]])  # in memory order
            self._rows = list(self._words)
        self._pcg: dict[str, int] = {"state": 0, "inc": 0}
        self._full: dict[str, Any] = {"bit_generator": "PCG64", "state": self._pcg, "has_uint32": 0, "uinteger": 0}

    def rng(self, b: int) -> np.random.Generator:
        if self._writer is not None:
            st, mem, _ = self._writer
            mem[:] = self._rows[b]
            st.has_uint32 = 0  # no buffered half of a draw
            return self._gen
        s_hi, s_lo, i_hi, i_lo = (int(w) for w in self._words[b])
        self._pcg["state"], self._pcg["inc"] = (s_hi << 64) | s_lo, (i_hi << 64) | i_lo
        self._bitgen.state = self._full  # type: ignore[assignment]  # read, not kept: one dict for all
        return self._gen

    def fill_standard_normal(self, out: np.ndarray) -> None:
        """out[b] = the first out[b].size standard normals of stream b, for every b (what
        `rng(b).standard_normal(out=out[b])` draws), in one compiled loop where it is available."""
        fused = _fused_draws() if self._writer is not None and out.flags.c_contiguous else None
        if fused is None or self._writer is None:
            for b in range(len(out)):
                self.rng(b).standard_normal(out=out[b])
            return
        st, mem, _ = self._writer
        st.has_uint32 = 0  # standard normals take 64-bit draws: nothing is buffered after them
        fused.standard_normal_rows(self._gen, mem, self._words, out.reshape(len(out), -1))


_FUSED_DRAWS = "flowsweep.core._data_fused"
_fused_draws_checked: list[Any] = []  # [the compiled module, or None], once probed


def _fused_draws() -> Any:
    """The compiled draws (core/_data_fused.py) if numba is available and they draw numpy's numbers
    here (probed once on a few streams), else None (the per-point loop)."""
    if not _fused_draws_checked:
        fused = compiled_module(_FUSED_DRAWS)
        if fused is not None:
            bitgen = np.random.PCG64()
            writer = _state_writer(bitgen)
            seeds = [0, 7, 2**40 + 3]
            want = np.stack([np.random.default_rng([s, WEIGHT_STREAM]).standard_normal(500) for s in seeds])
            got = np.empty_like(want)
            if writer is not None:
                words = np.ascontiguousarray(pcg64_state_words(seeds, WEIGHT_STREAM)[:, writer[2]])
                fused.standard_normal_rows(np.random.Generator(bitgen), writer[1], words, got)
            if writer is None or not np.array_equal(got, want):
                fused = None
        _fused_draws_checked.append(fused)
    return _fused_draws_checked[0]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings for large |z|."""
    out: np.ndarray = expit(z)
    return out


def make_data(config: PointConfig, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Y (and A for sigmoid) from the data stream (`rng`: that stream, positioned at its start)."""
    rng = data_rng(config) if rng is None else rng
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


def make_weights(
    config: PointConfig, Y: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """U0, V0 (V0 None for symmetric) from the weight stream (`rng`: that stream, at its start)."""
    rng = weight_rng(config) if rng is None else rng
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


@dataclass
class InitialStates:
    """`make_initial_state` of a batch of configs sharing one shape key, stacked: Y (B, m, n)
    (B, N, d for sigmoid), U0 (B, m, k), V0 (B, n, k) or None (symmetric), A (B, N, d) or None."""

    Y: np.ndarray
    U0: np.ndarray
    V0: np.ndarray | None
    A: np.ndarray | None = None
    factors: np.ndarray | None = None  # [U0; V0] (B, m + n, k) as one array (U0, V0 its views), if drawn so


def make_initial_states(configs: list[PointConfig]) -> InitialStates:
    """The initial states of configs sharing one shape key, bit-identical to `make_initial_state`
    of each: the same streams (`SeededStreams`), Gaussian starts drawn straight into the stacks."""
    c0 = configs[0]
    B, m, n, k = len(configs), c0.m, c0.n, c0.k
    data, weights = SeededStreams(configs, DATA_STREAM), SeededStreams(configs, WEIGHT_STREAM)
    plain = c0.model in ("asymmetric", "symmetric") and c0.init == "gaussian"
    if not plain or any(c.y_singular_values is not None for c in configs):
        states = []
        for b, c in enumerate(configs):
            Y, A = make_data(c, data.rng(b))
            U0, V0 = make_weights(c, Y, weights.rng(b))
            states.append(InitialState(Y=Y, U0=U0, V0=V0, A=A))
        return InitialStates(
            Y=np.stack([s.Y for s in states]),
            U0=np.stack([s.U0 for s in states]),
            V0=None if states[0].V0 is None else np.stack([s.V0 for s in states if s.V0 is not None]),
            A=None if states[0].A is None else np.stack([s.A for s in states if s.A is not None]),
        )
    # make_data / make_weights' Gaussian branches: Y (symmetrised for symmetric), U0, V0 drawn
    # one after the other from their streams (one draw of m k + n k values is the same sequence)
    sym = c0.model == "symmetric"
    G = np.empty((B, m, m if sym else n))
    W = np.empty((B, (m if sym else m + n) * k))
    data.fill_standard_normal(G)
    weights.fill_standard_normal(W)
    data_scale = np.array([float(c.data_scale) for c in configs])[:, None, None]
    W *= np.array([float(c.init_scale) for c in configs])[:, None]  # s N(0, 1), in place: U0, V0 are views
    Y = (G + np.swapaxes(G, 1, 2)) / 2.0 * data_scale if sym else G * data_scale
    U0 = W[:, : m * k].reshape(B, m, k)
    V0 = None if sym else W[:, m * k :].reshape(B, n, k)
    return InitialStates(Y=Y, U0=U0, V0=V0, factors=W.reshape(B, -1, k))
