"""Public API: shapes, metric keys, statuses, ordering, validation messages."""

import json
import math

import numpy as np
import pytest

from flowsweep.core import (
    CORE_VERSION,
    METRIC_FIELDS,
    Curves,
    PointConfig,
    PointResult,
    initial_state,
    run_point,
    run_points,
    validate_config,
)


def cfg(**kw):
    base = dict(model="asymmetric", m=3, n=5, k=12, eta=1e-2, steps=200, record_every=10, init_scale=0.5)
    base.update(kw)
    return PointConfig(**base)


def _no_nan(metrics):
    for k, v in metrics.items():
        assert v is None or (isinstance(v, (int, float)) and math.isfinite(v)), (k, v)


@pytest.mark.parametrize("model,n", [("asymmetric", 5), ("symmetric", 3), ("sigmoid", 3)])
@pytest.mark.parametrize("integrator", ["gd", "flow"])
def test_run_points_all_models(model, n, integrator):
    c = cfg(model=model, n=n, integrator=integrator, n_samples=50, eta=1e-3 if model == "sigmoid" else 1e-2)
    (r,) = run_points([c])
    assert isinstance(r, PointResult) and r.status == "done", r.error
    assert set(r.metrics) == set(METRIC_FIELDS)
    _no_nan(r.metrics)
    assert r.metrics["final_error"] is not None and r.metrics["final_error_linear"] is not None
    assert (r.metrics["q0_norm"] is None) == (model == "symmetric")
    cv = r.curves
    assert isinstance(cv, Curves)
    T = c.steps // c.record_every + 1
    assert cv.t.shape == (T,) and cv.error.shape == (T,) and cv.error_linear.shape == (T,)
    assert cv.singular_values.shape == (T, min(c.m, c.n))
    assert np.allclose(cv.t, c.eta * np.arange(0, c.steps + 1, c.record_every))
    assert np.all(np.diff(cv.singular_values, axis=1) <= 1e-12)  # descending
    json.dumps(cv.to_dict())
    assert r.wall_seconds > 0


def test_order_and_failed_points_do_not_raise():
    good = cfg(seed=1)
    bad = cfg(init="spectral", k=2)  # spectral needs k >= m
    other = cfg(model="symmetric", n=3, seed=2)
    res = run_points([good, bad, other])
    assert [r.config for r in res] == [good, bad, other]
    assert [r.status for r in res] == ["done", "failed", "done"]
    assert res[1].error.startswith("k:")
    assert set(res[1].metrics) == set(METRIC_FIELDS)


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(init="spectral", k=2), "k"),
        (dict(model="symmetric", n=3, lambda0=1.0), "lambda0"),
        (dict(model="sigmoid", n=3, init="spectral"), "init"),
        (dict(model="symmetric", n=4), "n"),
        (dict(tol=1.5), "tol"),
        (dict(eta=0.0), "eta"),
        (dict(model="nope"), "model"),
        (dict(m=6, n=5), "n"),
        (dict(steps=0), "steps"),
        (dict(init_scale=float("nan")), "init_scale"),
        (dict(m=True), "m"),  # a bool is not an integer here
        (dict(k=12.0), "k"),
        (dict(seed=-1), "seed"),
        (dict(eta=float("inf")), "eta"),
        (dict(lambda0=False), "lambda0"),
        (dict(tol="0.1"), "tol"),
    ],
)
def test_validate_config_names_field(kw, field):
    with pytest.raises(ValueError, match=rf"^{field}: "):
        validate_config(cfg(**kw))


def test_validate_config_takes_numpy_scalars():
    validate_config(
        cfg(m=np.int64(3), k=np.int32(12), eta=np.float64(1e-2), init_scale=np.float32(0.5), seed=np.uint8(4))
    )


def test_initial_state_is_what_run_uses():
    c = cfg(k=40, init_scale=0.3)
    s1, s2 = initial_state(c), initial_state(c)
    for key in ("Y", "U0", "V0"):
        assert np.array_equal(s1[key], s2[key])
    r = run_point(c)
    X0 = s1["U0"] @ s1["V0"].T
    e0 = np.linalg.norm(s1["Y"] - X0) / np.linalg.norm(s1["Y"])
    assert r.curves.error[0] == pytest.approx(e0, rel=1e-12)
    assert r.metrics["q0_norm"] == pytest.approx(
        np.linalg.norm(s1["U0"].T @ s1["U0"] - s1["V0"].T @ s1["V0"]), rel=1e-10
    )
    sig = initial_state(cfg(model="sigmoid", n=3, n_samples=20))
    assert set(sig) == {"Y", "U0", "V0", "A", "W0"}
    assert sig["A"].shape == (20, 3) and sig["Y"].shape == (20, 3)
    assert np.array_equal(sig["W0"], sig["U0"] @ sig["V0"].T)


def test_core_version_is_a_string():
    assert isinstance(CORE_VERSION, str) and CORE_VERSION


def test_random_valid_configs_never_fail_or_leak_nan():
    rng = np.random.default_rng(7)
    configs = []
    for i in range(30):
        model = str(rng.choice(["asymmetric", "symmetric", "sigmoid"]))
        init = str(rng.choice(["gaussian", "spectral", "balanced"]))
        if (model, init) in {("symmetric", "balanced"), ("sigmoid", "spectral")}:
            init = "gaussian"
        m = int(rng.integers(1, 6))
        n = int(rng.integers(m, 8)) if model == "asymmetric" else m
        k = int(rng.integers(m if init == "spectral" else 1, 25))
        configs.append(
            PointConfig(
                model=model,
                m=m,
                n=n,
                k=k,
                init=init,
                integrator=str(rng.choice(["gd", "flow"])),
                eta=float(10 ** rng.uniform(-4, -1.5)),
                steps=int(rng.integers(1, 300)),
                record_every=int(rng.integers(1, 40)),
                init_scale=float(10 ** rng.uniform(-3, 0.3)),
                lambda0=0.0 if model == "symmetric" else float(rng.choice([0.0, rng.uniform(-5, 5)])),
                seed=i,
                tol=float(rng.uniform(0.01, 0.9)),
                fit_lambda0=bool(rng.integers(2)),
                n_samples=int(rng.integers(5, 40)),
            )
        )
    for c, r in zip(configs, run_points(configs)):
        assert r.status in ("done", "diverged"), (c, r.error)
        _no_nan(r.metrics)
        for name in ("t", "error", "error_linear", "singular_values"):
            assert np.all(np.isfinite(getattr(r.curves, name))), (c, name)
        json.dumps(r.curves.to_dict())
