"""Operator registry. Families are imported explicitly (never discovered by scanning folders)."""
from . import base
from . import conv, elementwise, gemm, norm, pool, shape  # noqa: F401  (registration side effects)
from .base import OPS, Op, lookup, register

__all__ = ["OPS", "Op", "lookup", "register", "base"]
