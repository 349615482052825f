"""Compiling generated code: compiler and BLAS discovery, flags, a content-hash cache, atomic writes, loading."""
from .blas import BlasInfo, find_blas
from .compiler import compile_shared, compiler_info, find_cxx, opt_flags
from .fs import atomic_write, cache_dir

__all__ = ["BlasInfo", "find_blas", "compile_shared", "compiler_info", "find_cxx", "opt_flags", "atomic_write",
           "cache_dir"]
