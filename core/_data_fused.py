"""The Gaussian starts' draws compiled by numba (optional): row b of `out` gets the first standard
normals of stream b, its PCG64 state written into the generator's memory (data.SeededStreams) inside
the loop instead of by two Python-level calls per point and stream. numba's
Generator.standard_normal is numpy's ziggurat on the same bit generator: the same draws, bit for
bit (probed before first use by data._fused_draws, tested in tests/core/test_data.py)."""

# mypy: ignore-errors

from numba import njit


@njit(cache=True, nogil=True)
def standard_normal_rows(gen, mem, words, out):
    """out[b, :] = the first out.shape[1] standard normals of `gen` started from state words[b]
    (mem: the uint64 view of gen's PCG64 state, words[b] in that memory's order)."""
    B, L = out.shape
    for b in range(B):
        for j in range(mem.shape[0]):
            mem[j] = words[b, j]
        for i in range(L):
            out[b, i] = gen.standard_normal()
