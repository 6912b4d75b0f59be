"""The optional compiled paths (numba): one switch, and the modules behind it.

On unless FLOWSWEEP_NUMBA=0; where numba is not installed every caller runs its numpy path."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType

USE_COMPILED = os.environ.get("FLOWSWEEP_NUMBA", "1") != "0"
_MODULES: dict[str, ModuleType | None] = {}  # compiled modules by name, None where numba is missing
_NUMBA_INSTALLED: bool | None = None  # found by compiled_expected
# The kernel modules: core's and core.dynamics' private modules. numba caches a kernel in __pycache__
# stamped by its own file only, yet inlines the kernels it calls from other files (the flow calls gd's
# products, every kernel core._simd): after an edit or a `git checkout` of one of those, the caller's
# cache would run the old code. One digest of all of them guards every cache.
_KERNEL_DIRS = (Path(__file__).parent, Path(__file__).parent / "dynamics")
_DIGEST_NAME = "flowsweep-kernels.sha256"
_caches_checked = False


def drop_stale_kernel_caches(dirs: tuple[Path, ...] = _KERNEL_DIRS) -> bool:
    """Delete numba's cached kernels (*.nbi, *.nbc in each dir's __pycache__) unless the digest of
    the dirs' private modules (_*.py) is the one they were cached under; record the digest. True
    when caches were dropped. Unwritable folders (numba then caches elsewhere) are left alone."""
    digest = hashlib.sha256()
    for d in dirs:
        for source in sorted(d.glob("_*.py")):
            digest.update(source.name.encode() + b"\0" + source.read_bytes())
    stamp = dirs[0] / "__pycache__" / _DIGEST_NAME
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass
    try:
        for d in dirs:
            for cached in [*d.glob("__pycache__/*.nbi"), *d.glob("__pycache__/*.nbc")]:
                cached.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:
        return False
    return True


def compiled_module(name: str) -> ModuleType | None:
    """The compiled module `name` (imports numba) if USE_COMPILED and numba is installed, else None."""
    if not USE_COMPILED:
        return None
    global _caches_checked
    if not _caches_checked:
        _caches_checked = True
        drop_stale_kernel_caches()
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
