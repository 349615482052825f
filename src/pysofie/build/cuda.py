"""The CUDA toolchain: nvcc (from the PATH or $NVCC), cuBLAS (the nvidia-cublas wheel or the toolkit), the GPU
architectures to build for, and compiling generated CUDA models into a cached shared library."""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile

from .. import __version__
from ..errors import CompileError
from .fs import atomic_write, cache_dir


def find_nvcc() -> str:
    cand = os.environ.get("NVCC") or shutil.which("nvcc")
    if not cand or not shutil.which(cand.split()[0]):
        raise CompileError("no CUDA compiler found: put nvcc on the PATH or set NVCC")
    return cand


@functools.lru_cache(maxsize=None)
def nvcc_version(nvcc: str) -> str:
    try:
        out = subprocess.run(nvcc.split() + ["--version"], capture_output=True, text=True, timeout=60)
    except Exception as e:
        raise CompileError(f"CUDA compiler '{nvcc}' does not run: {e}") from None
    lines = [ln for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
    return lines[-1] if lines else "unknown"


@functools.lru_cache(maxsize=None)
def find_cublas() -> tuple[str, str]:
    """(include dir with cublas_v2.h and cublasLt.h, lib dir with libcublas and libcublasLt, .so.13 or .so).
    PYSOFIE_CUBLAS_INCLUDE and PYSOFIE_CUBLAS_LIB override; else the nvidia-cublas wheel (pip install
    nvidia-cublas), else the toolkit."""
    inc, lib = os.environ.get("PYSOFIE_CUBLAS_INCLUDE"), os.environ.get("PYSOFIE_CUBLAS_LIB")
    if inc and lib:
        return inc, lib
    roots = []
    try:
        import nvidia  # namespace package of NVIDIA's wheels
        for base in nvidia.__path__:
            roots += [os.path.join(base, sub) for sub in ("cu13", "cublas")]
    except ImportError:
        pass
    try:
        roots.append(os.path.dirname(os.path.dirname(shutil.which(find_nvcc().split()[0]) or "")))
    except CompileError:
        pass
    for r in roots:
        i = os.path.join(r, "include")
        for libdir in (os.path.join(r, "lib"), os.path.join(r, "lib64")):
            if all(os.path.exists(os.path.join(i, h)) for h in ("cublas_v2.h", "cublasLt.h")) and all(
                    _lib_flag(libdir, n) for n in ("cublas", "cublasLt")):
                return i, libdir
    raise CompileError("cuBLAS not found: pip install nvidia-cublas, or set PYSOFIE_CUBLAS_INCLUDE and "
                       "PYSOFIE_CUBLAS_LIB")


def _lib_flag(libdir: str, name: str):
    """The linker flag for lib<name> in libdir (the wheel ships only the versioned .so.13), or None."""
    for f in (f"lib{name}.so.13", f"lib{name}.so"):
        if os.path.exists(os.path.join(libdir, f)):
            return f"-l:{f}"
    return None


def link_flags(libdir: str) -> list[str]:
    """Linking cuBLAS and cuBLASLt from libdir, found again at run time through the rpath."""
    return [f"-L{libdir}", _lib_flag(libdir, "cublasLt") or "-lcublasLt", _lib_flag(libdir, "cublas") or "-lcublas",
            "-Xlinker", f"-rpath,{libdir}"]


def _cuda_driver():
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def gpu_archs() -> tuple[str, ...]:
    """Compute capabilities to build for ("90", ...): PYSOFIE_CUDA_ARCHS (comma separated), else those of the GPUs
    present, else ("90",) (H100/H200), enough to compile-check without a GPU."""
    env = os.environ.get("PYSOFIE_CUDA_ARCHS")
    if env:
        return tuple(a.strip().replace("sm_", "") for a in env.split(",") if a.strip())
    drv = _cuda_driver()
    found = []
    if drv is not None and drv.cuInit(0) == 0:
        n = ctypes.c_int(0)
        if drv.cuDeviceGetCount(ctypes.byref(n)) == 0:
            for k in range(n.value):
                dev, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
                if drv.cuDeviceGet(ctypes.byref(dev), k) != 0:
                    continue
                drv.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
                drv.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
                found.append(f"{major.value}{minor.value}")
    return tuple(sorted(set(found))) or ("90",)


def gpu_count() -> int:
    """Number of CUDA devices the driver sees (0 without a driver or GPU)."""
    drv = _cuda_driver()
    if drv is None or drv.cuInit(0) != 0:
        return 0
    n = ctypes.c_int(0)
    return n.value if drv.cuDeviceGetCount(ctypes.byref(n)) == 0 else 0


def nvcc_flags(opt_level=None, archs=None) -> list[str]:
    lvl = str(opt_level if opt_level is not None else os.environ.get("PYSOFIE_OPT", "3"))
    flags = ["-std=c++17", f"-O{lvl}", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC,-fvisibility=hidden"]
    for a in archs or gpu_archs():
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return flags


def _run_nvcc(cmd: list[str], cwd: str, what: str) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).strip().splitlines()
        msg = "\n".join(lines[:40]) + (f"\n... ({len(lines) - 40} more lines)" if len(lines) > 40 else "")
        raise CompileError(f"compiling {what} failed (sources kept in {cwd}):\n$ {' '.join(cmd)}\n{msg}")


def compile_check(models: list, workdir: str, archs=("90",)) -> str:
    """nvcc -c of the models' headers in one translation unit (no GPU needed); returns the object's path."""
    nvcc = find_nvcc()
    inc, _ = find_cublas()
    os.makedirs(workdir, exist_ok=True)
    for m in models:
        atomic_write(os.path.join(workdir, m.header_file), m.header)
    src = os.path.join(workdir, "check.cu")
    atomic_write(src, "".join(f'#include "{m.header_file}"\n' for m in models))
    obj = os.path.join(workdir, "check.o")
    # warnings of generated code are errors here (the compile check of the tests)
    _run_nvcc(nvcc.split() + nvcc_flags(1, archs) + ["-Werror", "all-warnings", "-I", inc, "-c", src, "-o", obj],
              workdir, ", ".join(m.header_file for m in models))
    return obj


def build_cuda_library(models: list, *, opt_level=None) -> str:
    """Path of a shared library with the C entry points of CUDA `models`, compiled once per content hash (the
    key holds the nvcc version and the GPU architectures)."""
    from ..backends.cuda.capi import wrapper_source
    nvcc = find_nvcc()
    inc, libdir = find_cublas()
    flags = nvcc_flags(opt_level)
    wrapper = wrapper_source(models)
    h = hashlib.sha256()
    for part in [__version__, nvcc, nvcc_version(nvcc), " ".join(flags), inc, libdir, wrapper,
                 *[m.header for m in models]]:
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()
    lib_dir = os.path.join(cache_dir(), "cuda", key[:2], key)
    lib = os.path.join(lib_dir, "model.so")
    if os.path.exists(lib):
        return lib
    if len({m.namespace for m in models}) != len(models):
        raise ValueError("models compiled into one library need distinct namespaces")
    src = os.path.join(lib_dir, "src")
    for m in models:
        atomic_write(os.path.join(src, m.header_file), m.header)
    atomic_write(os.path.join(src, "pysofie_cuda_capi.cu"), wrapper)
    fd, tmp = tempfile.mkstemp(dir=lib_dir, prefix=".tmp-", suffix=".so")
    os.close(fd)
    cmd = nvcc.split() + flags + ["-shared", "-I", inc, "pysofie_cuda_capi.cu", "-o", tmp] + link_flags(libdir)
    try:
        _run_nvcc(cmd, src, "the CUDA models")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib
