"""Skips for the CUDA tests: nvcc and cuBLAS's headers for compiling, a GPU for running."""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=None)
def toolchain_problem():
    from pysofie.build.cuda import find_cublas, find_nvcc
    from pysofie.errors import CompileError
    try:
        find_nvcc()
        find_cublas()
    except CompileError as e:
        return str(e)
    return None


def need_toolchain():
    p = toolchain_problem()
    if p:
        pytest.skip(f"CUDA toolchain missing: {p}")


def need_gpu():
    from pysofie.build.cuda import gpu_count
    if gpu_count() == 0:
        pytest.skip("no CUDA GPU")
    need_toolchain()
