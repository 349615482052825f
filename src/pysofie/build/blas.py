"""BLAS discovery. The default is scipy-openblas32 from pip (symbols prefixed ``scipy_``)."""
from __future__ import annotations

import dataclasses
import functools
import os
import shlex


@dataclasses.dataclass(frozen=True)
class BlasInfo:
    name: str
    cflags: tuple[str, ...]  # what compiling generated code needs (the sgemm symbol name)
    libs: tuple[str, ...]  # what linking needs, including an rpath so the program finds the library at run time

    def describe(self) -> str:
        return f"{self.name}: cflags {' '.join(self.cflags)}; libs {' '.join(self.libs)}"


@functools.lru_cache(maxsize=None)
def find_blas() -> BlasInfo:
    """PYSOFIE_BLAS_LIBS (+ PYSOFIE_SGEMM, default cblas_sgemm) override; else scipy-openblas32."""
    libs = os.environ.get("PYSOFIE_BLAS_LIBS")
    if libs:
        sym = os.environ.get("PYSOFIE_SGEMM", "cblas_sgemm")
        return BlasInfo("custom", (f"-DPYSOFIE_SGEMM={sym}",), tuple(shlex.split(libs)))
    try:
        import scipy_openblas32 as sob
    except ImportError as e:
        raise RuntimeError("pysofie needs a BLAS: install scipy-openblas32 (pip install scipy-openblas32) or set "
                           "PYSOFIE_BLAS_LIBS to the link flags of another CBLAS") from e
    libdir = sob.get_lib_dir()
    lib = sob.get_library()  # "scipy_openblas"
    return BlasInfo("scipy-openblas32 " + getattr(sob, "__version__", ""),
                    ("-DPYSOFIE_SGEMM=scipy_cblas_sgemm",),
                    (f"-L{libdir}", f"-l{lib}", f"-Wl,-rpath,{libdir}"))


_blas_threads = [None]


def set_blas_threads(n: int) -> None:
    """Threads of scipy-openblas32 (process-wide: pysofie is its only user) for the products that generated code
    leaves to the BLAS: the same count as the session's own pool, the last session created deciding. A custom
    BLAS (PYSOFIE_BLAS_LIBS) is left as it is."""
    if os.environ.get("PYSOFIE_BLAS_LIBS") or _blas_threads[0] == n:
        return
    try:
        import ctypes
        import glob

        import scipy_openblas32 as sob
        libs = sorted(glob.glob(os.path.join(sob.get_lib_dir(), f"lib{sob.get_library()}*.so*")))
        if not libs:
            return
        fn = getattr(ctypes.CDLL(libs[0]), "scipy_openblas_set_num_threads", None)
    except (ImportError, OSError):
        return
    if fn is not None:
        fn.argtypes = [ctypes.c_int]
        fn.restype = None
        fn(int(n))
        _blas_threads[0] = n
