"""Fixtures of the core tests."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    # a different but reproducible stream per test
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


@pytest.fixture(params=["compiled", "numpy"])
def path(request, monkeypatch):
    """Both ways of core's optional compiled kernels (numba; skipped without it) and numpy's."""
    from flowsweep.core.dynamics import gd_linear

    if request.param == "compiled":
        pytest.importorskip("numba")
    monkeypatch.setattr(gd_linear, "USE_COMPILED", request.param == "compiled")
    return request.param
