"""CudaInferenceSession: onnxruntime's interface over generated CUDA code (``providers=["CUDAExecutionProvider"]``).

Inputs are numpy arrays (copied to the device by the Session) or any object with ``__cuda_array_interface__``
(CuPy, PyTorch CUDA tensors), read in place without a copy. ``run`` returns numpy arrays; ``run_device`` writes
the outputs into caller-given device arrays. cuda_graphs=True replays a CUDA graph per size and set of pointers
(fewer kernel launches: small models)."""
from __future__ import annotations

import ctypes
import threading
import warnings
from typing import Optional

import numpy as np

from .api import generate_cuda_code
from .build.cuda import build_cuda_library, find_cublas, find_nvcc, gpu_count
from .build.library import weight_file_for
from .errors import CompileError, InvalidInputError, PysofieError
from .ir.shapes import Sym
from .session import InferenceSession, NodeArg, _public_dim

_lock = threading.Lock()


def cuda_available() -> bool:
    return gpu_count() > 0


def _provider_name(p) -> str:
    return p[0] if isinstance(p, (tuple, list)) else str(p)


def wants_cuda(providers) -> bool:
    """CUDAExecutionProvider comes before CPUExecutionProvider in the list (onnxruntime's order of preference)."""
    names = [_provider_name(p) for p in providers]
    if "CUDAExecutionProvider" not in names:
        return False
    return "CPUExecutionProvider" not in names or names.index("CUDAExecutionProvider") < names.index(
        "CPUExecutionProvider")


class _CudaArray:
    """What pysofie reads from a __cuda_array_interface__ object: pointer, shape, dtype (C-contiguous only)."""

    def __init__(self, obj, what: str):
        cai = obj.__cuda_array_interface__
        self.shape = tuple(int(d) for d in cai["shape"])
        self.dtype = np.dtype(cai["typestr"])
        self.ptr = int(cai["data"][0])
        st = cai.get("strides")
        if st is not None:
            expect, acc = [], self.dtype.itemsize
            for d in reversed(self.shape):
                expect.append(acc)
                acc *= d
            if tuple(st) != tuple(reversed(expect)) and int(np.prod(self.shape)) > 1:
                raise InvalidInputError(f"{what} must be a C-contiguous device array (strides {tuple(st)})")
        self.ndim = len(self.shape)


def compile_many_cuda(models, names=None, opt_level=None, **options) -> list:
    """CudaInferenceSessions of several models built into one shared library (one nvcc run)."""
    names = names or [None] * len(models)
    gms = [generate_cuda_code(m, name=n, namespace=f"pysofie_cuda_batch_{k}") for k, (m, n) in
           enumerate(zip(models, names))]
    lib = build_cuda_library(gms, opt_level=opt_level)
    return [CudaInferenceSession(None, _generated=gm, _library=lib, **options) for gm in gms]


class CudaInferenceSession(InferenceSession):
    """Compile a model to CUDA and run it on the GPU, as onnxruntime's CUDA execution provider."""

    def __init__(self, model, sess_options=None, providers=None, *, weights: Optional[str] = None,
                 input_shapes=None, name: Optional[str] = None, namespace: Optional[str] = None,
                 optimize: bool = True, opt_level=None, constant_inputs=None, cuda_graphs: bool = False,
                 epilogues: Optional[bool] = None, _generated=None, _library=None, **cpu_options):
        problem = None if cuda_available() else "no CUDA GPU is available"
        if problem is None:
            try:
                find_nvcc()
                find_cublas()
            except CompileError as e:
                problem = str(e)
        if problem is not None:
            # as onnxruntime: a warning, and the CPU execution provider
            warnings.warn(f"CUDAExecutionProvider is not available ({problem}); falling back to "
                          "CPUExecutionProvider", RuntimeWarning, stacklevel=2)
            self.__class__ = InferenceSession
            if _generated is not None or _library is not None:
                raise PysofieError("a CUDA model cannot run: " + problem)
            InferenceSession.__init__(self, model, sess_options, ["CPUExecutionProvider"], weights=weights,
                                      input_shapes=input_shapes, name=name, namespace=namespace, optimize=optimize,
                                      opt_level=opt_level, constant_inputs=constant_inputs, **cpu_options)
            return
        unknown = set(cpu_options) - {"native"}
        if unknown:
            raise TypeError(f"InferenceSession with CUDAExecutionProvider got unexpected keyword argument(s): "
                            f"{', '.join(sorted(unknown))}")
        weights = weights or "bin"
        from .options import SessionOptions
        self._options = SessionOptions.from_any(sess_options)
        self._graphs = int(bool(cuda_graphs))
        gm = _generated or generate_cuda_code(model, name=name, namespace=namespace, weights=weights,
                                              input_shapes=input_shapes, optimize=optimize,
                                              constant_inputs=constant_inputs)
        lib_path = _library or build_cuda_library([gm], opt_level=opt_level)
        self._open(gm, lib_path)
        if epilogues is not None:
            self.set_epilogues(epilogues)

    def _open(self, gm, lib_path: str) -> None:
        """Bind the model's entry points in the library at lib_path and create its Session."""
        self._graphs = getattr(self, "_graphs", 0)
        self._gm = gm
        # what the CPU session's onnxruntime interface reads (session.py)
        from .options import SessionOptions
        from .session import ModelMetadata
        self._lazy = None
        self._name = gm.name
        self._profile = None
        self._options = getattr(self, "_options", None) or SessionOptions()
        self._providers, self._provider_options = ["CUDAExecutionProvider"], [{}]
        self._meta = ModelMetadata(getattr(gm.emitter.graph, "metadata", None) or {}, gm.name)
        self._overridable = []
        self._threads = 1
        em = gm.emitter
        g = em.graph
        self._graph = g
        self._params = list(em.params)
        self._inputs = [NodeArg(v.name, [_public_dim(d) for d in v.shape], v.dtype.ort_name) for v in g.inputs]
        self._outputs = [NodeArg(v.name, [_public_dim(d) for d in v.shape], v.dtype.ort_name) for v in g.outputs]
        self._in_vals, self._out_vals = list(g.inputs), list(g.outputs)
        self._in_index = {v.name: k for k, v in enumerate(g.inputs)}
        self._out_index = {v.name: k for k, v in enumerate(g.outputs)}
        from .backends.cpp.capi import used_symbols
        self._used_syms = used_symbols(em)
        self._fast = None
        self._handle = None
        self._lib_path = lib_path
        with _lock:
            lib = ctypes.CDLL(lib_path)
        from .backends.cuda.capi import symbol_prefix
        p = symbol_prefix(gm)
        self._prefix = p
        self._lib = lib
        self._create = getattr(lib, f"{p}_create")
        self._create.restype = ctypes.c_void_p
        self._create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_size_t]
        self._crun = getattr(lib, f"{p}_run")
        self._crun.restype = ctypes.c_int
        self._crun.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_ubyte), ctypes.POINTER(ctypes.c_void_p),
                               ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self._destroy = getattr(lib, f"{p}_destroy")
        self._destroy.restype = None
        self._destroy.argtypes = [ctypes.c_void_p]
        err = ctypes.create_string_buffer(1024)
        sizes = (ctypes.c_int64 * max(1, len(self._params)))(*([1] * len(self._params)))
        handle = self._create(weight_file_for(gm).encode(), sizes, err, len(err))
        if not handle:
            raise PysofieError(f"model '{gm.name}': {err.value.decode(errors='replace')}")
        self._handle = handle

    def set_epilogues(self, on: bool) -> None:
        """cuBLASLt epilogues (a Gemm / MatMul's bias and activation inside the product, where ops/gemm.py's table
        has one) on or off; off, every product is a cuBLAS call followed by a bias / activation kernel. The
        default is on unless the environment has PYSOFIE_CUDA_EPILOGUES=0 when the session is made."""
        if self._epilogues_call(1 if on else 0) != int(bool(on)):
            raise PysofieError(f"model '{self._gm.name}': could not switch cuBLASLt epilogues")

    @property
    def epilogues(self) -> bool:
        """Whether cuBLASLt epilogues are on."""
        return self._epilogues_call(-1) == 1

    @property
    def epilogue_products(self) -> int:
        """How many matrix products this session ran as one cuBLASLt call with their epilogue (graph replays of
        infer_graph are not counted: the count is taken when the host issues the calls)."""
        fn = getattr(self._lib, f"{self._prefix}_epilogue_products")
        fn.restype = ctypes.c_longlong
        fn.argtypes = [ctypes.c_void_p]
        return int(fn(self._handle))

    def _epilogues_call(self, on: int) -> int:
        fn = getattr(self._lib, f"{self._prefix}_epilogues")
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
        return fn(self._handle, on)

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            self._destroy(h)
        self._handle = None

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider"]

    @property
    def header(self) -> str:
        """The generated CUDA header text."""
        return self._gm.header

    def _bind(self, feed: dict):
        """(pointers, device flags, size parameters) of the feed: device arrays as they are, numpy checked and
        converted by the CPU session's checks."""
        if not isinstance(feed, dict):
            raise InvalidInputError(f"model '{self._gm.name}': inputs must be a dict {{name: array}}")
        dev = {k: _CudaArray(a, f"model '{self._gm.name}': input '{k}'") for k, a in feed.items()
               if hasattr(a, "__cuda_array_interface__")}
        host = {k: (np.empty(d.shape, d.dtype) if k in dev else a) for k, a in feed.items()
                for d in [dev.get(k)]}
        arrays, env = self._check_inputs(host)  # names, dtypes, ranks, static dims and sizes (shapes only for dev)
        ptrs, flags = [], []
        for v, a in zip(self._in_vals, arrays):
            if v.name in dev:
                ptrs.append(dev[v.name].ptr)
                flags.append(1)
            else:
                ptrs.append(a.ctypes.data)
                flags.append(0)
        return arrays, ptrs, flags, env

    def _out_shapes(self, env):
        senv = {p: env.get(p, 1) for p in self._params}
        shapes = []
        for v in self._out_vals:
            shape = tuple(d.evaluate(senv) if isinstance(d, Sym) else d for d in v.shape)
            if any(d < 0 for d in shape):
                raise InvalidInputError(f"model '{self._gm.name}': output '{v.name}' would have shape {list(shape)}")
            shapes.append(shape)
        return shapes

    def _call(self, env, ptrs, flags, out_ptrs, out_flags):
        sizes = [env.get(p, 1) for p in self._params]
        c_sizes = (ctypes.c_int64 * max(1, len(sizes)))(*sizes)
        c_in = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        c_inf = (ctypes.c_ubyte * max(1, len(flags)))(*flags)
        c_out = (ctypes.c_void_p * max(1, len(out_ptrs)))(*out_ptrs)
        c_outf = (ctypes.c_ubyte * max(1, len(out_flags)))(*out_flags)
        err = ctypes.create_string_buffer(1024)
        if self._crun(self._handle, c_sizes, c_in, c_inf, c_out, c_outf, self._graphs, err, len(err)) != 0:
            raise PysofieError(f"model '{self._gm.name}': {err.value.decode(errors='replace')}")

    def _run_checked(self, input_feed) -> list[np.ndarray]:
        arrays, ptrs, flags, env = self._bind(input_feed)
        outs = [np.empty(s, v.dtype.np) for s, v in zip(self._out_shapes(env), self._out_vals)]
        self._call(env, ptrs, flags, [o.ctypes.data for o in outs], [0] * len(outs))
        return outs

    def time_device(self, input_feed: dict, outputs: dict, iters: int = 100, graphs: bool = False) -> float:
        """Seconds per run of the C++ ``infer`` on device arrays (all inputs and outputs device arrays), timed in
        C++ over `iters` back-to-back runs with one wait at the end: the benchmark's device-resident time."""
        arrays, ptrs, flags, env = self._bind(input_feed)
        if not all(flags):
            raise InvalidInputError("time_device needs every input as a device array")
        outs = [_CudaArray(outputs[v.name], f"output '{v.name}'").ptr for v in self._out_vals]
        sizes = [env.get(p, 1) for p in self._params]
        fn = getattr(self._lib, f"{self._prefix}_time_device")
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p),
                       ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        err = ctypes.create_string_buffer(1024)
        t = fn(self._handle, (ctypes.c_int64 * max(1, len(sizes)))(*sizes),
               (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs), (ctypes.c_void_p * max(1, len(outs)))(*outs),
               int(iters), int(bool(graphs)), err, len(err))
        if t < 0:
            raise PysofieError(f"model '{self._gm.name}': {err.value.decode(errors='replace')}")
        return t

    def run_device(self, input_feed: dict, outputs: dict) -> None:
        """Run with the outputs written into caller-given device arrays {output name: array with
        __cuda_array_interface__} (all outputs, C-contiguous, of the output's dtype and shape)."""
        arrays, ptrs, flags, env = self._bind(input_feed)
        shapes = self._out_shapes(env)
        out_ptrs = []
        for v, shape in zip(self._out_vals, shapes):
            if v.name not in outputs:
                raise InvalidInputError(f"model '{self._gm.name}': run_device needs a device array for output "
                                        f"'{v.name}'")
            o = _CudaArray(outputs[v.name], f"model '{self._gm.name}': output '{v.name}'")
            if o.shape != tuple(shape) or o.dtype != v.dtype.np:
                raise InvalidInputError(f"model '{self._gm.name}': output '{v.name}' needs shape {list(shape)} "
                                        f"and dtype {v.dtype.np}, got {list(o.shape)} {o.dtype}")
            out_ptrs.append(o.ptr)
        self._call(env, ptrs, flags, out_ptrs, [1] * len(out_ptrs))


