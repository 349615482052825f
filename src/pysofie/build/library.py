"""Build (or fetch from the cache) a shared library holding one or more generated models, and load it."""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import sysconfig
import threading
import time

from .. import __version__
from ..backends.cpp import GeneratedModel
from ..backends.cpp.capi import source_name, symbol_prefix, wrapper_source
from .blas import find_blas
from .compiler import compile_shared, compiler_info, find_cxx, opt_flags
from .fs import atomic_write, cache_dir

_lock = threading.Lock()
log = logging.getLogger("pysofie")
PROGRESS_AFTER_S = 1.0  # a compile that runs longer is announced at INFO level (the CLI shows INFO)


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def python_flags() -> list[str]:
    """Flags for the Python fast-call entry point (run_fast), when this interpreter's and numpy's headers are
    installed and PYSOFIE_PYTHON_ABI is not 0. Without them the library has only the ctypes entry points."""
    if os.environ.get("PYSOFIE_PYTHON_ABI", "1") == "0":
        return []
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return []  # run_fast reads the feed dict with borrowed references, which needs the GIL
    inc = sysconfig.get_paths().get("include")
    try:
        import numpy
        np_inc = numpy.get_include()
    except (ImportError, AttributeError):
        return []
    if not (inc and os.path.exists(os.path.join(inc, "Python.h"))
            and os.path.exists(os.path.join(np_inc, "numpy", "arrayobject.h"))):
        return []
    # -isystem: warnings of these headers are not ours
    return ["-DPYSOFIE_PYTHON", "-isystem", inc, "-isystem", np_inc]


def _python_abi() -> str:
    """What code compiled against Python's and numpy's headers depends on (part of the cache key)."""
    import numpy
    cfg = sysconfig.get_config_var
    return f"{cfg('EXT_SUFFIX')} numpy {numpy.__version__}"


def build_library(models: list[GeneratedModel], *, opt_level=None, native=None, extra_flags=()) -> str:
    """Path of a shared library with the C entry points of `models`, compiled once per content hash."""
    blas = find_blas()
    cxx = find_cxx()
    # Hidden visibility: only the C entry points (marked default) leave the library. Otherwise inline functions
    # and their static tables are exported, and since batches reuse namespaces (pysofie_batch_0, ...), one
    # library loaded in the same process would bind to another's definitions (STB_GNU_UNIQUE symbols).
    pyflags = python_flags()
    flags = (opt_flags(opt_level, native) + ["-pthread", "-fvisibility=hidden", "-fvisibility-inlines-hidden"]
             + list(blas.cflags) + pyflags + list(extra_flags))
    libs = list(blas.libs)
    if any(m.weights_mode == "root" for m in models):  # the constructor reads the weights with ROOT's TFile
        from ..backends.cpp.root_weights import root_build_flags
        root_cflags, root_libs = root_build_flags()
        flags += list(root_cflags)
        libs += list(root_libs)
    wrapper = wrapper_source(models)
    key = _digest(__version__, cxx, compiler_info(cxx), " ".join(flags), " ".join(libs), wrapper,
                  _python_abi() if pyflags else "", *[m.header for m in models])
    lib_dir = os.path.join(cache_dir(), "lib", key[:2], key)
    # The file name is the content hash too: two libraries never share a name, so a process (or a Dask worker,
    # or ROOT) that loads one library never sees another one written over it
    lib = os.path.join(lib_dir, library_file_name(key))
    names = ", ".join(f"'{m.name}'" for m in models)
    if os.path.exists(lib):
        log.debug("model %s: compiled library found in the cache (%s)", names, lib)
        return lib
    src = os.path.join(lib_dir, "src")
    if len({m.namespace for m in models}) != len(models):
        raise ValueError("models compiled into one library need distinct namespaces")
    for m in models:
        atomic_write(os.path.join(src, source_name(m)), m.header)
    atomic_write(os.path.join(src, "pysofie_capi.cpp"), wrapper)
    from ..custom import CustomOp
    user_code = any(isinstance(n.op, CustomOp) for m in models for n in m.emitter.graph.nodes)
    what = f"{cxx} {' '.join(f for f in flags if f.startswith(('-O', '-march')))}"
    log.debug("model %s: compiling (%s)", names, what)
    announced = threading.Timer(PROGRESS_AFTER_S, log.info, (f"compiling model {names} ({what})...",))
    announced.daemon = True
    t0 = time.perf_counter()
    announced.start()
    try:
        compile_shared(["pysofie_capi.cpp"], lib, flags, libs, cwd=src, user_code=user_code)
    finally:
        announced.cancel()
    dt = time.perf_counter() - t0
    log.log(logging.INFO if dt > PROGRESS_AFTER_S else logging.DEBUG, "model %s: compiled in %.1f s", names, dt)
    return lib


def library_file_name(key: str) -> str:
    """The shared library's file name for a cache key: unique per content (dlopen and ROOT key on the path)."""
    return f"libpysofie_{key[:32]}.so"


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
        # With Python's and numpy's headers: {p}_py_runner(session, input names, input dtypes, output dtypes,
        # error class, model name) -> the run_fast builtin, which then owns the session (see capi.py)
        self.py_runner = None
        try:
            with _lock:
                pylib = ctypes.PyDLL(lib_path)
            self.py_runner = getattr(pylib, f"{p}_py_runner")
        except (AttributeError, OSError):
            pass  # built without those headers: the ctypes path is used
        self.py_run = None  # {p}_py_run(run_fast, fallback) -> a C InferenceSession.run (see capi.py)
        if self.py_runner is not None:
            self.py_runner.restype = ctypes.py_object
            self.py_runner.argtypes = [ctypes.c_void_p] + [ctypes.py_object] * 5
            self.py_run = getattr(pylib, f"{p}_py_run", None)  # absent from libraries built before it existed
            if self.py_run is not None:
                self.py_run.restype = ctypes.py_object
                self.py_run.argtypes = [ctypes.py_object, ctypes.py_object]
        self.run_rt = None  # models with sizes decided by the data at run time (see capi.py)
        self.run_grown = self.free_grown = None  # ... and outputs sized by the run, with no bound before it
        from ..backends.cpp.capi import _grown_outputs
        if _grown_outputs(model.emitter):
            self.run_grown = getattr(lib, f"{p}_run_grown")
            self.run_grown.restype = ctypes.c_int
            self.run_grown.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                                       ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p),
                                       ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p),
                                       ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
            self.free_grown = getattr(lib, f"{p}_free_grown")
            self.free_grown.restype = None
            self.free_grown.argtypes = [ctypes.c_void_p]
        elif getattr(model.emitter, "rt_sizes", None):
            self.run_rt = getattr(lib, f"{p}_run_rt")
            self.run_rt.restype = ctypes.c_int
            self.run_rt.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p),
                                    ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64),
                                    ctypes.c_char_p, ctypes.c_size_t]
        self.set_threads = getattr(lib, f"{p}_set_threads")
        self.set_threads.restype = None
        self.set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.destroy = getattr(lib, f"{p}_destroy")
        self.destroy.restype = None
        self.destroy.argtypes = [ctypes.c_void_p]
