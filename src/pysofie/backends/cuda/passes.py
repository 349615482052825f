"""The passes of the CUDA target: only target-neutral rewrites (the CUDA kernels read weights in their ONNX
layout; bias and activation are applied in the matrix products' epilogues)."""
from __future__ import annotations


def optimization_passes() -> list:
    from ...passes.rewrites import neutral_passes
    return neutral_passes()
