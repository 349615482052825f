"""Build (or fetch from the cache) a shared library holding one or more generated models, and load it."""
from __future__ import annotations

import ctypes
import hashlib
import os
import sysconfig
import threading

from .. import __version__
from ..backends.cpp import GeneratedModel
from ..backends.cpp.capi import source_name, symbol_prefix, wrapper_source
from .blas import find_blas
from .compiler import compile_shared, compiler_info, find_cxx, opt_flags
from .fs import atomic_write, cache_dir

_lock = threading.Lock()


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def python_flags() -> list[str]:
    """Flags for the Python fast-call entry point, when this interpreter's headers are installed."""
    inc = sysconfig.get_paths().get("include")
    if inc and os.path.exists(os.path.join(inc, "Python.h")) and os.environ.get("PYSOFIE_PYTHON_ABI", "1") != "0":
        return ["-DPYSOFIE_PYTHON", f"-I{inc}"]
    return []


def build_library(models: list[GeneratedModel], *, opt_level=None, native=None, extra_flags=()) -> str:
    """Path of a shared library with the C entry points of `models`, compiled once per content hash."""
    blas = find_blas()
    cxx = find_cxx()
    # Hidden visibility: only the C entry points (marked default) leave the library. Otherwise inline functions
    # and their static tables are exported, and since batches reuse namespaces (pysofie_batch_0, ...), one
    # library loaded in the same process would bind to another's definitions (STB_GNU_UNIQUE symbols).
    flags = (opt_flags(opt_level, native) + ["-fvisibility=hidden", "-fvisibility-inlines-hidden"]
             + list(blas.cflags) + python_flags() + list(extra_flags))
    wrapper = wrapper_source(models)
    key = _digest(__version__, cxx, compiler_info(cxx), " ".join(flags), " ".join(blas.libs), wrapper,
                  *[m.header for m in models])
    lib_dir = os.path.join(cache_dir(), "lib", key[:2], key)
    lib = os.path.join(lib_dir, "model.so")
    if os.path.exists(lib):
        return lib
    src = os.path.join(lib_dir, "src")
    if len({m.namespace for m in models}) != len(models):
        raise ValueError("models compiled into one library need distinct namespaces")
    for m in models:
        atomic_write(os.path.join(src, source_name(m)), m.header)
    atomic_write(os.path.join(src, "pysofie_capi.cpp"), wrapper)
    compile_shared(["pysofie_capi.cpp"], lib, flags, list(blas.libs), cwd=src)
    return lib


def weight_file_for(model: GeneratedModel) -> str:
    """Path of the model's weight file in the cache (content-addressed, written atomically)."""
    if model.weight_data is None:
        return ""
    key = _digest(model.weight_data)
    path = os.path.join(cache_dir(), "weights", key[:2], f"{key}.{model.weights_mode}")
    if not os.path.exists(path):
        atomic_write(path, model.weight_data)
    return path


class NativeModel:
    """ctypes bindings to one model's entry points in a loaded library."""

    def __init__(self, lib_path: str, model: GeneratedModel):
        with _lock:
            lib = ctypes.CDLL(lib_path)
        p = symbol_prefix(model)
        self.lib = lib
        self.create = getattr(lib, f"{p}_create")
        self.create.restype = ctypes.c_void_p
        self.create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_size_t]
        self.run = getattr(lib, f"{p}_run")
        self.run.restype = ctypes.c_int
        self.run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p),
                             ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
        self.run_py = None
        try:
            with _lock:
                pylib = ctypes.PyDLL(lib_path)
            self.run_py = getattr(pylib, f"{p}_run_py")
        except (AttributeError, OSError):
            pass  # built without Python's headers: the ctypes path is used
        if self.run_py is not None:
            self.run_py.restype = ctypes.c_int
            self.run_py.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.py_object,
                                    ctypes.py_object, ctypes.c_char_p, ctypes.c_size_t]
        self.destroy = getattr(lib, f"{p}_destroy")
        self.destroy.restype = None
        self.destroy.argtypes = [ctypes.c_void_p]
