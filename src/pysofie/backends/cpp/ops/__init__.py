"""C++ generators per operator family (imported explicitly: registration happens on import)."""
from . import conv, elementwise, gemm, norm, pool, shape  # noqa: F401
