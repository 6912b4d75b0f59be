"""Fixtures of the core tests."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    # a different but reproducible stream per test
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
