"""Data and initialisations: seeding, data_seed, Definitions 1 and 3, balanced Q0 = 0."""

import numpy as np
import pytest

from flowsweep.core import PointConfig, initial_state


def cfg(**kw):
    base = dict(model="asymmetric", m=3, n=5, k=9, eta=1e-2, steps=10, init_scale=0.4, seed=5)
    base.update(kw)
    return PointConfig(**base)


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(init="spectral", lambda0=-2.0),
        dict(init="balanced"),
        dict(model="symmetric", n=3, init="spectral"),
        dict(model="sigmoid", n=3, n_samples=30),
    ],
)
def test_bit_identical_and_seeded(kw):
    a, b = initial_state(cfg(**kw)), initial_state(cfg(**kw))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    c = initial_state(cfg(**{**kw, "seed": 6}))
    assert not np.array_equal(a["U0"], c["U0"]) and not np.array_equal(a["Y"], c["Y"])


def test_data_seed_fixes_Y_and_not_the_weights():
    a = initial_state(cfg(seed=1, data_seed=42))
    b = initial_state(cfg(seed=2, data_seed=42))
    assert np.array_equal(a["Y"], b["Y"]) and not np.array_equal(a["U0"], b["U0"])
    # data_seed None draws Y from the point's own seed (the same stream as data_seed == seed)
    assert np.array_equal(initial_state(cfg(seed=42))["Y"], a["Y"])
    # the weight stream does not depend on data_seed
    assert np.array_equal(initial_state(cfg(seed=1))["U0"], a["U0"])


def test_gaussian_scale():
    s = initial_state(cfg(k=4000, init_scale=0.3))
    assert s["U0"].std() == pytest.approx(0.3, rel=0.03)
    assert s["V0"].std() == pytest.approx(0.3, rel=0.03)


@pytest.mark.parametrize("lam", [0.0, 1.5, -40.0])
def test_asymmetric_spectral_definition_3(lam):
    s_ = 0.4
    st = initial_state(cfg(init="spectral", lambda0=lam, init_scale=s_))
    Y, U0, V0 = st["Y"], st["U0"], st["V0"]
    Phi, sig, PsiT = np.linalg.svd(Y, full_matrices=False)
    # X0 = Phi diag(s^2) Psi^T on the m components
    assert np.allclose(U0 @ V0.T, s_**2 * Phi @ PsiT, atol=1e-13)
    # u v = s^2 and u^2 - v^2 = lambda0 for every component, with an orthogonal G
    u2 = np.linalg.eigvalsh(U0 @ U0.T)
    v2 = np.linalg.eigvalsh(V0.T @ V0)[-3:]
    assert np.allclose(u2, u2[0]) and np.allclose(v2, v2[0])
    assert np.sqrt(u2[0] * v2[0]) == pytest.approx(s_**2, rel=1e-12)
    assert u2[0] - v2[0] == pytest.approx(lam, abs=1e-12 * max(1, abs(lam)))
    q = np.linalg.eigvalsh(U0.T @ U0 - V0.T @ V0)  # lambda0 (m times), 0 (k - m)
    expect = np.sort(np.r_[np.full(3, lam), np.zeros(6)])
    assert np.allclose(q, expect, atol=1e-12 * max(1, abs(lam)))


def test_symmetric_spectral_definition_1():
    st = initial_state(cfg(model="symmetric", n=3, init="spectral", init_scale=0.7))
    assert np.allclose(st["U0"] @ st["U0"].T, 0.49 * np.eye(3), atol=1e-14)
    assert np.allclose(st["Y"], st["Y"].T)


def test_balanced_has_zero_Q0():
    st = initial_state(cfg(init="balanced", init_scale=1.0, k=50))
    U0, V0 = st["U0"], st["V0"]
    assert np.linalg.norm(U0.T @ U0 - V0.T @ V0) <= 1e-12 * np.linalg.norm(U0) ** 2
    assert np.linalg.norm(V0) == pytest.approx(np.linalg.norm(U0), rel=1e-12)


def test_sigmoid_data():
    st = initial_state(cfg(model="sigmoid", m=4, n=4, n_samples=200))
    Y, A = st["Y"], st["A"]
    assert Y.shape == (200, 4) and A.shape == (200, 4)
    assert Y.min() > -0.01 and Y.max() < 1.01  # phi(A W*) + 1e-3 noise


# ---- the batch path draws the same numbers: seeds are the contract -------------------------


@pytest.mark.parametrize("stream", [0, 1])
def test_pcg64_states_are_numpys(stream):
    from flowsweep.core.data import pcg64_states

    seeds = [0, 1, 7, 12345, 2**31, 2**32 - 1, 2**32, 2**32 + 9, 2**64 - 1, 2**64, 2**96 + 5, 2**200 + 3]
    for group in (seeds, list(range(50))):  # mixed word counts, and the one-word fast path
        for s, (state, inc) in zip(group, pcg64_states(group, stream)):
            ref = np.random.PCG64(np.random.SeedSequence([s, stream])).state["state"]
            assert (state, inc) == (ref["state"], ref["inc"]), s


@pytest.mark.parametrize("write", ["memory", "setter"])
def test_seeded_streams_draw_what_data_rng_and_weight_rng_draw(write, monkeypatch):
    """Both ways of positioning the reused Generator: its state written into its memory (numpy's
    layouts of PCG64's 128-bit words, recognised on this machine) and PCG64.state's setter."""
    from flowsweep.core import data
    from flowsweep.core.data import DATA_STREAM, WEIGHT_STREAM, SeededStreams, data_rng, weight_rng

    if write == "setter":
        monkeypatch.setattr(data, "_state_writer", lambda bitgen: None)
    assert (SeededStreams([cfg()], DATA_STREAM)._writer is None) == (write == "setter")

    configs = [cfg(seed=s, data_seed=d) for s, d in ((0, None), (3, 11), (2**40, None), (5, 2**33))]
    for stream, ref in ((DATA_STREAM, data_rng), (WEIGHT_STREAM, weight_rng)):
        streams = SeededStreams(configs, stream)
        for b in (2, 0, 3, 1, 0):  # any order, any number of times: each call starts the stream anew
            got = streams.rng(b).standard_normal(40)
            assert np.array_equal(got, ref(configs[b]).standard_normal(40))
            # a draw of 32-bit integers leaves half a 64-bit draw buffered: the next start drops it
            streams.rng(b).integers(0, 10, size=3, dtype=np.uint32)
            got = streams.rng(b).integers(0, 2**32 - 1, size=5, dtype=np.uint32)
            assert np.array_equal(got, ref(configs[b]).integers(0, 2**32 - 1, size=5, dtype=np.uint32))


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(data_scale=0.5),
        dict(init="spectral", lambda0=-2.0),
        dict(init="balanced"),
        dict(y_singular_values=(1.0, 0.5, 0.0)),
        dict(model="symmetric", n=3),
        dict(model="symmetric", n=3, init="spectral", data_scale=2.0),
        dict(model="sigmoid", n=3, n_samples=30),
        dict(model="sigmoid", n=3, n_samples=30, init="balanced"),
    ],
)
def test_batch_initial_states_are_bit_identical(kw):
    from flowsweep.core.data import make_initial_state, make_initial_states

    configs = [
        cfg(**kw, seed=s, init_scale=sc, data_seed=d) for s, sc, d in ((0, 0.4, None), (9, 1.5, 2), (2**35, 0.1, None))
    ]
    stacked = make_initial_states(configs)
    for b, c in enumerate(configs):
        ref = make_initial_state(c)
        assert np.array_equal(stacked.Y[b], ref.Y) and np.array_equal(stacked.U0[b], ref.U0)
        for got, want in ((stacked.V0, ref.V0), (stacked.A, ref.A)):
            assert (got is None and want is None) or np.array_equal(got[b], want)


@pytest.mark.parametrize("model", ["asymmetric", "symmetric"])
def test_compiled_draws_of_many_streams_are_data_rng_and_weight_rng_draws(model):
    """The Gaussian starts of a batch (drawn by the compiled loop where numba is installed) are
    the per-point draws, bit for bit, over enough streams to pass through every ziggurat branch."""
    from flowsweep.core import compiled
    from flowsweep.core.data import _fused_draws, make_initial_state, make_initial_states

    if compiled.compiled_module("flowsweep.core._data_fused") is not None:
        assert _fused_draws() is not None  # the probe accepted numba's draws on this machine
    n = 5 if model == "symmetric" else 7
    configs = [cfg(model=model, m=5, n=n, k=40, seed=s, data_seed=None if s % 3 else s + 1) for s in range(300)]
    stacked = make_initial_states(configs)
    for b, c in enumerate(configs):
        ref = make_initial_state(c)
        assert np.array_equal(stacked.Y[b], ref.Y) and np.array_equal(stacked.U0[b], ref.U0)
        assert (stacked.V0 is None and ref.V0 is None) or np.array_equal(stacked.V0[b], ref.V0)
    # the factors as one array: [U0; V0] (U0 for symmetric), what reduce_factors would concatenate
    both = stacked.U0 if stacked.V0 is None else np.concatenate([stacked.U0, stacked.V0], axis=1)
    assert stacked.factors is not None and np.array_equal(stacked.factors, both)
