"""The optional compiled paths (numba): one switch, and the modules behind it.

On unless FLOWSWEEP_NUMBA=0; where numba is not installed every caller runs its numpy path."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

USE_COMPILED = os.environ.get("FLOWSWEEP_NUMBA", "1") != "0"
_MODULES: dict[str, ModuleType | None] = {}  # compiled modules by name, None where numba is missing
_NUMBA_INSTALLED: bool | None = None  # found by compiled_expected


def compiled_module(name: str) -> ModuleType | None:
    """The compiled module `name` (imports numba) if USE_COMPILED and numba is installed, else None."""
    if not USE_COMPILED:
        return None
    if name not in _MODULES:
        try:
            _MODULES[name] = importlib.import_module(name)
        except ImportError:
            _MODULES[name] = None
    return _MODULES[name]


def compiled_expected() -> bool:
    """Whether the compiled paths will run (USE_COMPILED and numba installed), without importing
    numba (for the cost model, in processes that never run a point)."""
    global _NUMBA_INSTALLED
    if not USE_COMPILED:
        return False
    if _NUMBA_INSTALLED is None:
        _NUMBA_INSTALLED = importlib.util.find_spec("numba") is not None
    return _NUMBA_INSTALLED


def required_module(name: str, what: str) -> ModuleType:
    """compiled_module(name) where the caller has already chosen the compiled path."""
    module = compiled_module(name)
    if module is None:
        raise RuntimeError(f"{what} needs numba")
    return module
