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
    from flowsweep.core import compiled

    if request.param == "compiled":
        pytest.importorskip("numba")
    monkeypatch.setattr(compiled, "USE_COMPILED", request.param == "compiled")
    return request.param
