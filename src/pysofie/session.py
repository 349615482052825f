"""InferenceSession: onnxruntime's interface over generated, compiled C++ code."""
from __future__ import annotations

import ctypes
import threading
from typing import Optional, Sequence

import numpy as np

from .api import generate_code
from .build.library import NativeModel, build_library, weight_file_for
from .errors import InvalidInputError, PysofieError
from .ir.shapes import Sym, shape_symbols


class NodeArg:
    """Input/output description, like onnxruntime.NodeArg: .name, .shape (ints and str), .type."""

    def __init__(self, name: str, shape, type_: str):
        self.name = name
        self.shape = shape
        self.type = type_

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


def _public_dim(d):
    return d if isinstance(d, int) else repr(d)


class InferenceSession:
    """Compile a model to C++ and run it: ``InferenceSession(model).run(None, {name: array})``.

    model: path (.onnx, .h5, .keras, .pt), onnx.ModelProto, serialized ONNX bytes, or torch nn.Module.
    weights: "dat" (SOFIE text), "bin" (checksummed binary) or "embed" (in the code).
    opt_level / native: compiler optimization level and -march=native (PYSOFIE_OPT / PYSOFIE_NATIVE).
    weight_file: load the weights from this file (e.g. one written by pysofie.emit) instead of the ones
        generated with the code.
    constant_inputs: {input name: array}: those inputs become constants of the generated code (needed for
        inputs that determine shapes, such as a Reshape's target shape fed as a graph input).
    """

    def __init__(self, model, sess_options=None, providers=None, *, weights: str = "dat", input_shapes=None,
                 name: Optional[str] = None, namespace: Optional[str] = None, optimize: bool = True,
                 opt_level=None, native=None, weight_file: Optional[str] = None, constant_inputs=None,
                 _generated=None, _library=None, **kwargs):
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"InferenceSession got unexpected keyword argument(s): {unknown}")
        gm = _generated or generate_code(model, name=name, namespace=namespace, weights=weights,
                                         input_shapes=input_shapes, optimize=optimize,
                                         constant_inputs=constant_inputs)
        self._gm = gm
        em = gm.emitter
        self._graph = em.graph
        lib = _library or build_library([gm], opt_level=opt_level, native=native)
        self._native = NativeModel(lib, gm)
        self._params = list(em.params)
        g = self._graph
        self._inputs = [NodeArg(v.name, [_public_dim(d) for d in v.shape], v.dtype.ort_name) for v in g.inputs]
        self._outputs = [NodeArg(v.name, [_public_dim(d) for d in v.shape], v.dtype.ort_name) for v in g.outputs]
        self._in_vals = list(g.inputs)
        self._out_vals = list(g.outputs)
        self._in_index = {v.name: k for k, v in enumerate(g.inputs)}
        self._out_index = {v.name: k for k, v in enumerate(g.outputs)}
        self._lock = threading.Lock()
        self._err = ctypes.create_string_buffer(1024)
        self._errlen = len(self._err)
        self._run = self._native.run
        self._run_py = self._native.run_py
        # per-call state prepared once: pointer arrays filled in place, input specs for the fast check
        self._in_ptrs = (ctypes.c_void_p * max(1, len(g.inputs)))()
        self._out_ptrs = (ctypes.c_void_p * max(1, len(g.outputs)))()
        self._sizes = (ctypes.c_int64 * max(1, len(self._params)))()
        self._in_specs = []
        # An input whose data no node reads (CastLike's target_type, an unused input) may come with any size on
        # its symbolic axes, empty included, unless that size means something elsewhere in the graph.
        unread = {id(v) for v in g.inputs if id(v) not in em.runtime_reads}
        self._used_syms = set()
        for v in g.values():
            if id(v) not in unread and v.shape is not None:
                self._used_syms |= shape_symbols(v.shape)
        for v in g.inputs:
            static = tuple(d if isinstance(d, int) else -1 for d in v.shape)
            syms = []
            for ax, d in enumerate(v.shape):
                if isinstance(d, Sym) and not (d.symbols() & self._used_syms):
                    continue
                if isinstance(d, Sym):
                    names = [m for m in d.terms]
                    if len(names) == 1 and len(names[0]) == 1 and d.terms[names[0]] == 1:
                        syms.append((ax, names[0][0]))
            self._in_specs.append((v.name, v.dtype.np, static, tuple(syms)))
        self._static_out = None
        if all(isinstance(d, int) for v in g.outputs for d in v.shape):
            self._static_out = [(tuple(v.shape), v.dtype.np) for v in g.outputs]
        self._weight_path = weight_file if weight_file is not None else weight_file_for(gm)
        self._handle = None
        init_sizes = (ctypes.c_int64 * max(1, len(self._params)))(*([1] * len(self._params)))
        handle = self._native.create(self._weight_path.encode(), init_sizes, self._err, len(self._err))
        if not handle:
            raise PysofieError(self._err.value.decode(errors="replace"))
        self._handle = handle

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            self._native.destroy(h)
            self._handle = None

    # -- onnxruntime interface -------------------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_modelmeta(self):
        return {"name": self._gm.name, "namespace": self._gm.namespace}

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    @property
    def header(self) -> str:
        """The generated C++ header text."""
        return self._gm.header

    def run(self, output_names: Optional[Sequence[str]], input_feed: dict, run_options=None) -> list[np.ndarray]:
        fast = self._fast_inputs(input_feed)
        if fast is None:  # something unusual (a non-contiguous array, a list, a wrong input): the full check
            arrays, env = self._check_inputs(input_feed)
            arrays = tuple(arrays)
        else:
            arrays, env = fast
        if self._static_out is not None:
            outs = [np.empty(shape, dt) for shape, dt in self._static_out]
        else:
            outs = [np.empty(tuple(d.evaluate(env) if isinstance(d, Sym) else d for d in v.shape), v.dtype.np)
                    for v in self._out_vals]
        with self._lock:  # the size and pointer arrays are shared per session: fill them under the lock
            for k, p in enumerate(self._params):
                self._sizes[k] = env.get(p, 1)  # a size only an unread input has: irrelevant
            if self._run_py is not None:
                rc = self._run_py(self._handle, self._sizes, arrays, tuple(outs), self._err, self._errlen)
            else:
                for k, a in enumerate(arrays):
                    self._in_ptrs[k] = a.ctypes.data
                for k, o in enumerate(outs):
                    self._out_ptrs[k] = o.ctypes.data
                rc = self._run(self._handle, self._sizes, self._in_ptrs, self._out_ptrs, self._err, self._errlen)
            if rc != 0:
                raise PysofieError(f"model '{self._gm.name}': {self._err.value.decode(errors='replace')}")
        if output_names is None:
            return outs
        res = []
        for n in output_names:
            if n not in self._out_index:
                raise InvalidInputError(f"model '{self._gm.name}' has no output '{n}' "
                                        f"(outputs: {', '.join(self._out_index)})")
            res.append(outs[self._out_index[n]])
        return res

    def _fast_inputs(self, feed):
        """The hot path: every input a C-contiguous ndarray of the right dtype and shape. Returns (arrays,
        size parameters), or None to fall back to the full check (which also explains any error)."""
        if type(feed) is not dict or len(feed) != len(self._in_specs):
            return None
        env: dict[str, int] = {}
        arrays = []
        for name, dt, static, syms in self._in_specs:
            a = feed.get(name)
            if type(a) is not np.ndarray or a.dtype != dt or not a.flags.c_contiguous:
                return None
            shape = a.shape
            if len(shape) != len(static):
                return None
            for ax, d in enumerate(static):
                if d >= 0 and shape[ax] != d:
                    return None
            for ax, s in syms:
                n = shape[ax]
                if n < 1 or env.setdefault(s, n) != n:
                    return None
            arrays.append(a)
        return tuple(arrays), env

    def _check_inputs(self, feed: dict):
        name = self._gm.name
        if not isinstance(feed, dict):
            raise InvalidInputError(f"model '{name}': inputs must be a dict {{name: array}}")
        unknown = [k for k in feed if k not in self._in_index]
        missing = [v.name for v in self._in_vals if v.name not in feed]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown input(s) {unknown}")
            if missing:
                parts.append(f"missing input(s) {missing}")
            raise InvalidInputError(f"model '{name}': {'; '.join(parts)} (expected: {list(self._in_index)})")
        env: dict[str, int] = {}
        arrays = []
        for v in self._in_vals:
            a = feed[v.name]
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
                if a.dtype == np.float64 and v.dtype.np == np.float32:
                    a = a.astype(np.float32)
            if a.dtype != v.dtype.np:
                raise InvalidInputError(f"model '{name}': input '{v.name}' must have dtype {v.dtype.np}, got {a.dtype}")
            if a.ndim != len(v.shape):
                raise InvalidInputError(f"model '{name}': input '{v.name}' must have rank {len(v.shape)} "
                                        f"(shape {self._inputs[self._in_index[v.name]].shape}), got shape {list(a.shape)}")
            for ax, (d, n) in enumerate(zip(v.shape, a.shape)):
                if isinstance(d, Sym) and not (d.symbols() & self._used_syms):
                    continue  # (see __init__)
                if isinstance(d, Sym):
                    if len(d.terms) == 1 and list(d.terms.values())[0] == 1 and len(next(iter(d.terms))) == 1:
                        s = next(iter(d.terms))[0]
                        if s in env and env[s] != n:
                            raise InvalidInputError(
                                f"model '{name}': input '{v.name}' axis {ax} is '{s}'={env[s]} from another input, "
                                f"got {n}")
                        if n < 1:
                            raise InvalidInputError(f"model '{name}': input '{v.name}' axis {ax} ('{s}') must be >= 1")
                        env[s] = int(n)
                elif d != n:
                    raise InvalidInputError(f"model '{name}': input '{v.name}' must have shape "
                                            f"{self._inputs[self._in_index[v.name]].shape}, got {list(a.shape)}")
            arrays.append(np.ascontiguousarray(a))
        return arrays, env
