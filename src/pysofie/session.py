"""InferenceSession: onnxruntime's interface over generated, compiled C++ code."""
from __future__ import annotations

import ctypes
from typing import Optional, Sequence

import numpy as np

from .api import generate_code
from .build.library import NativeModel, build_library, weight_file_for
from .errors import InvalidInputError, PysofieError
from .backends.cpp.capi import input_specs, used_symbols
from .ir.shapes import Sym


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
    weights: "bin" (checksummed binary; the default: fast to write and read), "dat" (SOFIE text, what
        pysofie.emit writes by default; the default when weight_file ends in .dat) or "embed" (in the code).
    opt_level / native: compiler optimization level and -march=native (PYSOFIE_OPT / PYSOFIE_NATIVE).
    weight_file: load the weights from this file (e.g. one written by pysofie.emit) instead of the ones
        generated with the code.
    constant_inputs: {input name: array}: those inputs become constants of the generated code (needed for
        inputs that determine shapes, such as a Reshape's target shape fed as a graph input).
    example_graph: a graph_nets GraphsTuple: model is a graph_nets model (GraphNetwork, GraphIndependent, or a
        callable on a GraphsTuple); inputs nodes, edges, globals, senders, receivers (n_node, n_edge).
    """

    def __init__(self, model, sess_options=None, providers=None, *, weights: Optional[str] = None, input_shapes=None,
                 name: Optional[str] = None, namespace: Optional[str] = None, optimize: bool = True,
                 opt_level=None, native=None, weight_file: Optional[str] = None, constant_inputs=None,
                 example_graph=None, _generated=None, _library=None, **kwargs):
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"InferenceSession got unexpected keyword argument(s): {unknown}")
        if weights is None:
            weights = "dat" if weight_file is not None and str(weight_file).endswith(".dat") else "bin"
        gm = _generated or generate_code(model, name=name, namespace=namespace, weights=weights,
                                         input_shapes=input_shapes, optimize=optimize,
                                         constant_inputs=constant_inputs, example_graph=example_graph)
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
        self._run = self._native.run
        self._in_specs = input_specs(em)  # (name, dtype, static dims, ((axis, size symbol), ...)) per input
        self._used_syms = used_symbols(em)
        self._zero_ok = set(getattr(g, "zero_size_params", ()))
        self._static_out = None
        if all(isinstance(d, int) for v in g.outputs for d in v.shape):
            self._static_out = [(tuple(v.shape), v.dtype.np) for v in g.outputs]
        self._weight_path = weight_file if weight_file is not None else weight_file_for(gm)
        self._handle = None
        self._fast = None
        err = ctypes.create_string_buffer(1024)
        init_sizes = (ctypes.c_int64 * max(1, len(self._params)))(*([1] * len(self._params)))
        handle = self._native.create(self._weight_path.encode(), init_sizes, err, len(err))
        if not handle:
            raise PysofieError(err.value.decode(errors="replace"))
        self._handle = handle
        if self._native.py_runner is not None:
            # run_fast(feed): the hot path in C (see backends/cpp/capi.py); it owns the session from now on
            self._fast = self._native.py_runner(handle, tuple(v.name for v in g.inputs),
                                                tuple(v.dtype.np for v in g.inputs),
                                                tuple(v.dtype.np for v in g.outputs),
                                                (PysofieError, InvalidInputError), gm.name)

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h and getattr(self, "_fast", None) is None:  # else run_fast owns the session and frees it with itself
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
        fast = self._fast
        outs = fast(input_feed) if fast is not None else None
        if outs is None:  # no C hot path, or something unusual (a list, a wrong input): the path with full checks
            outs = self._run_checked(input_feed)
        if output_names is None:
            return outs
        res = []
        for n in output_names:
            if n not in self._out_index:
                raise InvalidInputError(f"model '{self._gm.name}' has no output '{n}' "
                                        f"(outputs: {', '.join(self._out_index)})")
            res.append(outs[self._out_index[n]])
        return res

    def _run_checked(self, input_feed) -> list[np.ndarray]:
        """Checks and converts the inputs (errors name the input), allocates the outputs and runs the model through
        ctypes. Every per-call buffer is local, and the C side serializes the calls to one session."""
        fast = self._fast_inputs(input_feed) if self._fast is None else None  # run_fast already declined
        arrays, env = fast if fast is not None else self._check_inputs(input_feed)
        sizes = [env.get(p, 1) for p in self._params]  # a size only an unread input has: irrelevant
        if self._static_out is not None:
            outs = [np.empty(shape, dt) for shape, dt in self._static_out]
        else:
            senv = dict(zip(self._params, sizes))
            outs = []
            for v in self._out_vals:
                shape = tuple(d.evaluate(senv) if isinstance(d, Sym) else d for d in v.shape)
                if any(d < 0 for d in shape):
                    raise InvalidInputError(f"model '{self._gm.name}': output '{v.name}' would have shape "
                                            f"{list(shape)} for sizes {senv}")
                outs.append(np.empty(shape, v.dtype.np))
        c_sizes = (ctypes.c_int64 * max(1, len(sizes)))(*sizes)
        ins = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        out_ptrs = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        err = ctypes.create_string_buffer(1024)
        rc = self._run(self._handle, c_sizes, ins, out_ptrs, err, len(err))
        if rc == 2:  # std::out_of_range: an index in the inputs (a sender, receiver, count) is out of range
            raise InvalidInputError(f"model '{self._gm.name}': {err.value.decode(errors='replace')}")
        if rc != 0:
            raise PysofieError(f"model '{self._gm.name}': {err.value.decode(errors='replace')}")
        return outs

    def _fast_inputs(self, feed):
        """The hot path of a library without run_fast: every input a C-contiguous, aligned ndarray of the right
        dtype and shape. Returns (arrays, size parameters), or None to fall back to the full check (which also
        explains any error)."""
        if type(feed) is not dict or len(feed) != len(self._in_specs):
            return None
        env: dict[str, int] = {}
        arrays = []
        for name, dt, static, syms in self._in_specs:
            a = feed.get(name)
            if type(a) is not np.ndarray or a.dtype != dt or not (a.flags.c_contiguous and a.flags.aligned):
                return None
            shape = a.shape
            if len(shape) != len(static):
                return None
            for ax, d in enumerate(static):
                if d >= 0 and shape[ax] != d:
                    return None
            for ax, s in syms:
                n = shape[ax]
                if n < (0 if s in self._zero_ok else 1) or env.setdefault(s, n) != n:
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
                        if n < (0 if s in self._zero_ok else 1):
                            raise InvalidInputError(f"model '{name}': input '{v.name}' axis {ax} ('{s}') must be >= 1")
                        env[s] = int(n)
                elif d != n:
                    raise InvalidInputError(f"model '{name}': input '{v.name}' must have shape "
                                            f"{self._inputs[self._in_index[v.name]].shape}, got {list(a.shape)}")
            a = np.ascontiguousarray(a)
            arrays.append(a if a.flags.aligned else a.copy())
        return arrays, env
