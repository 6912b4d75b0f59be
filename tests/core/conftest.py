"""Fixtures of the core tests."""
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

# `from tests.core.reference import ...` also when pytest is started as `pytest` (not python -m)
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture
def rng(request):
    # a different but reproducible stream per test
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
