"""y_singular_values and data_scale (SPEC §2): Y = Phi diag(sigma) Psi^T, times data_scale."""

import numpy as np
import pytest

from flowsweep.core import PointConfig, initial_state, run_points, validate_config


def test_y_has_the_given_spectrum_and_scale():
    sv = (3.0, 1.0, 0.25)
    c = PointConfig(
        model="asymmetric", m=3, n=7, k=10, eta=0.01, steps=10, y_singular_values=sv, data_scale=2.0, seed=5
    )
    Y = initial_state(c)["Y"]
    assert np.allclose(np.linalg.svd(Y, compute_uv=False), 2.0 * np.array(sv), rtol=1e-13)
    # the singular vectors come from the data seed: another seed, another Y with the same spectrum
    Y2 = initial_state(PointConfig(**{**c.to_dict(), "seed": 6}))["Y"]
    assert np.allclose(np.linalg.svd(Y2, compute_uv=False), 2.0 * np.array(sv), rtol=1e-13)
    assert np.abs(Y - Y2).max() > 0.1
    # data_scale multiplies the Gaussian Y too, with the same draw
    g1 = initial_state(PointConfig(model="asymmetric", m=3, n=7, k=10, eta=0.01, steps=10, seed=5))["Y"]
    g3 = initial_state(PointConfig(model="asymmetric", m=3, n=7, k=10, eta=0.01, steps=10, seed=5, data_scale=3.0))["Y"]
    assert np.array_equal(3.0 * g1, g3)


def test_config_from_json_lists_is_canonical():
    c = PointConfig.from_dict(
        {"model": "asymmetric", "m": 2, "n": 3, "k": 4, "eta": 0.1, "steps": 1, "y_singular_values": [1.0, 0.5]}
    )
    assert c.y_singular_values == (1.0, 0.5)
    hash(c)


@pytest.mark.parametrize(
    "change,field",
    [
        ({"y_singular_values": (1.0, 2.0)}, "y_singular_values"),  # m = 3 values needed
        ({"y_singular_values": (1.0, -2.0, 1.0)}, "y_singular_values"),
        ({"y_singular_values": (1.0, float("nan"), 1.0)}, "y_singular_values"),
        ({"data_scale": 0.0}, "data_scale"),
        ({"data_scale": float("inf")}, "data_scale"),
        ({"model": "sigmoid", "n": 3, "data_scale": 2.0}, "data_scale"),
        ({"model": "symmetric", "n": 3, "y_singular_values": (1.0, 1.0, 1.0)}, "y_singular_values"),
    ],
)
def test_bad_spectrum_or_scale_names_the_field(change, field):
    c = PointConfig(**{**dict(model="asymmetric", m=3, n=5, k=6, eta=0.01, steps=10), **change})
    with pytest.raises(ValueError, match=f"^{field}: "):
        validate_config(c)


def test_under_parameterised_k_below_m_runs():
    """k < m keeps rank (eq. (5)): the error stalls above zero; no predicted rate."""
    c = PointConfig(
        model="asymmetric",
        m=4,
        n=6,
        k=2,
        eta=0.02,
        steps=2000,
        record_every=20,
        init_scale=0.3,
        seed=1,
        y_singular_values=(3.0, 2.0, 1.0, 0.5),
    )
    (r,) = run_points([c])
    assert r.status == "done"
    # the best rank-2 approximation leaves sqrt(1 + 0.25) / ||Y||
    floor = np.sqrt(1.0 + 0.25) / np.sqrt(9 + 4 + 1 + 0.25)
    assert r.metrics["final_error"] == pytest.approx(floor, rel=1e-3)
    assert r.metrics["rate_pred"] is None
