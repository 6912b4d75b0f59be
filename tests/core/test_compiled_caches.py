"""numba stamps a cached kernel by its own file only, yet inlines kernels from other files:
core.compiled drops every kernel cache when any private module changed."""

from __future__ import annotations

from pathlib import Path

from flowsweep.core import compiled


def _tree(root: Path) -> tuple[Path, Path]:
    top, sub = root / "core", root / "core" / "dynamics"
    for d in (top, sub):
        (d / "__pycache__").mkdir(parents=True)
    (top / "_simd.py").write_text("LANES = 8\n")
    (sub / "_flow.py").write_text("from .._simd import LANES\n")
    (top / "public.py").write_text("x = 1\n")
    return top, sub


def _cache(d: Path, name: str) -> list[Path]:
    files = [d / "__pycache__" / f"{name}.nbi", d / "__pycache__" / f"{name}.py311.1.nbc"]
    for f in files:
        f.write_bytes(b"cached")
    return files


def test_caches_survive_while_the_kernel_sources_are_unchanged(tmp_path: Path) -> None:
    top, sub = _tree(tmp_path)
    compiled.drop_stale_kernel_caches((top, sub))  # records the digest
    files = _cache(sub, "_flow.step-10")
    (top / "public.py").write_text("x = 2\n")  # not a kernel module
    assert not compiled.drop_stale_kernel_caches((top, sub))
    assert all(f.exists() for f in files)


def test_an_edit_of_a_called_kernel_drops_the_callers_cache(tmp_path: Path) -> None:
    top, sub = _tree(tmp_path)
    compiled.drop_stale_kernel_caches((top, sub))
    flow_cache = _cache(sub, "_flow.step-10")
    simd_cache = _cache(top, "_simd.add-3")
    (top / "_simd.py").write_text("LANES = 4\n")  # the flow's own file is untouched
    assert compiled.drop_stale_kernel_caches((top, sub))
    assert not any(f.exists() for f in flow_cache + simd_cache)
    assert not compiled.drop_stale_kernel_caches((top, sub))  # the new digest is recorded


def test_caches_of_unknown_provenance_are_dropped(tmp_path: Path) -> None:
    top, sub = _tree(tmp_path)
    files = _cache(top, "_simd.add-3")  # cached before any digest was recorded
    assert compiled.drop_stale_kernel_caches((top, sub))
    assert not any(f.exists() for f in files)


def test_the_real_kernel_caches_carry_the_current_digest() -> None:
    compiled.compiled_module("flowsweep.core.linalg")  # the first call checks the caches
    assert not compiled.drop_stale_kernel_caches()
