"""Passes that choose kernels of the C++ (CPU) back end: weight packing for runtime/pysofie_gemm.h and
pysofie_conv.h, Winograd, small-matrix Gemm, residual and dense-epilogue fusion. Target-neutral rewrites stay in
pysofie/passes/ (which never imports from backends/)."""
from .fusion import optimization_passes

__all__ = ["optimization_passes"]
