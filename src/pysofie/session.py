"""InferenceSession: onnxruntime's interface over generated, compiled C++ code."""
from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import sys
import threading
import time
from typing import Optional, Sequence

import numpy as np

from .api import DEFAULT_WEIGHTS, generate_code
from .build.blas import set_blas_threads
from .build.library import NativeModel, build_library, weight_file_for
from .errors import InvalidInputError, PysofieError
from .backends.cpp.capi import input_specs, used_symbols
from .ir.dtypes import DType
from .ir.shapes import Sym
from .options import SessionOptions, normalize_providers
from .ortvalue import IOBinding, OrtValue

log = logging.getLogger("pysofie")


class NodeArg:
    """Input/output description, like onnxruntime.NodeArg: .name, .shape (ints and str), .type."""

    def __init__(self, name: str, shape, type_: str):
        self.name = name
        self.shape = shape
        self.type = type_

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


class ModelMetadata:
    """What the model says about itself, like onnxruntime.ModelMetadata."""

    def __init__(self, meta: dict, name: str):
        self.producer_name: str = meta.get("producer_name", "")
        self.graph_name: str = meta.get("graph_name", name)
        self.graph_description: str = meta.get("graph_description", "")
        self.domain: str = meta.get("domain", "")
        self.description: str = meta.get("description", "")
        self.custom_metadata_map: dict[str, str] = dict(meta.get("custom_metadata_map", {}))
        self.version: int = int(meta.get("version", 2 ** 63 - 1))

    def __repr__(self) -> str:
        return (f"ModelMetadata(producer_name={self.producer_name!r}, graph_name={self.graph_name!r}, "
                f"version={self.version})")


def _ort_type(onnx_type: int) -> str:
    try:
        return DType.from_onnx(onnx_type).ort_name
    except TypeError:
        return "tensor(unknown)"


def resolve_threads(n: Optional[int]) -> int:
    """The intra-op thread count of a session: n; None -> $PYSOFIE_NUM_THREADS or 1; 0 -> the usable CPUs."""
    src = "intra_op_num_threads"
    if n is None:
        env = os.environ.get("PYSOFIE_NUM_THREADS", "").strip()
        if not env:
            return 1
        src = "PYSOFIE_NUM_THREADS"
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"PYSOFIE_NUM_THREADS must be an integer >= 0, not {env!r}") from None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{src} must be an integer >= 0 (0: every usable CPU), not {n!r}")
    if n == 0:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(n)


def _public_dim(d):
    return d if isinstance(d, int) else repr(d)


@contextlib.contextmanager
def _log_level(level):
    """The ``pysofie`` logger at `level` (SessionOptions.log_severity_level) while a session is built; messages
    go to stderr if nothing else is configured to show them, as onnxruntime's log does."""
    if level is None:
        yield
        return
    old = log.level
    handler = None
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("pysofie %(levelname)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(old)
        if handler is not None:
            log.removeHandler(handler)


class InferenceSession:
    """Compile a model to C++ and run it: ``InferenceSession(model).run(None, {name: array})``.

    model: path (.onnx, .h5, .keras, .pt), onnx.ModelProto, serialized ONNX bytes, or torch nn.Module.
    sess_options: pysofie.SessionOptions or onnxruntime's (read by attribute name; see pysofie/options.py for
        what each option does here). providers / provider_options: checked as onnxruntime checks them; pysofie
        runs on the CPU, so another provider gives onnxruntime's warning and the CPU.
    weights: "bin" (checksummed binary; the default, as for pysofie.emit and the command line: fast to write and
        read), "dat" (SOFIE's text format; the default when weight_file ends in .dat) or "embed" (in the code).
    optimize: run the graph optimizations (None: SessionOptions.graph_optimization_level decides; default yes).
    weights: also "root" (SOFIE's .root file, read with TFile: needs ROOT); a .root weight_file with weights "bin"
        is read with uproot instead.
    opt_level / native: compiler optimization level and -march=native (PYSOFIE_OPT / PYSOFIE_NATIVE).
    weight_file: load the weights from this file (e.g. one written by pysofie.emit) instead of the ones
        generated with the code.
    constant_inputs: {input name: array}: those inputs become constants of the generated code (needed for
        inputs that determine shapes, such as a Reshape's target shape fed as a graph input). An ONNX model
        needing such an input that is not given here is specialized at ``run`` instead: the code is generated
        and compiled for the values given there, once per distinct set of values (see pysofie.specialize).
    intra_op_num_threads: threads that run the model's kernels (a pool that lives with the session); None: the
        SessionOptions' value, else the environment variable PYSOFIE_NUM_THREADS, else 1; 0: every CPU this
        process may use.
    example_graph: a graph_nets GraphsTuple: model is a graph_nets model (GraphNetwork, GraphIndependent, or a
        callable on a GraphsTuple); inputs nodes, edges, globals, senders, receivers (n_node, n_edge).
    """

    def __new__(cls, model=None, sess_options=None, providers=None, **kwargs):
        # providers=["CUDAExecutionProvider", ...]: the CUDA back end when a GPU is there (cuda_session.py)
        if cls is InferenceSession and providers:
            from .cuda_session import CudaInferenceSession, wants_cuda
            if wants_cuda(providers):
                cls = CudaInferenceSession
        return super().__new__(cls)

    def __init__(self, model, sess_options=None, providers=None, provider_options=None, *,
                 weights: Optional[str] = None, input_shapes=None, name: Optional[str] = None,
                 namespace: Optional[str] = None, optimize: Optional[bool] = None, opt_level=None, native=None,
                 weight_file: Optional[str] = None, constant_inputs=None, intra_op_num_threads: Optional[int] = None,
                 example_graph=None, _generated=None, _library=None, **kwargs):
        if kwargs:
            unknown = ", ".join(sorted(kwargs))
            raise TypeError(f"InferenceSession got unexpected keyword argument(s): {unknown}")
        t_start = time.perf_counter()
        self._options = SessionOptions.from_any(sess_options)
        self._providers, self._provider_options = normalize_providers(providers, provider_options)
        graph_opt, level = self._options.optimization()
        optimize = graph_opt if optimize is None else optimize
        opt_level = level if opt_level is None else opt_level
        # threads of the compiled Session: None (or SessionOptions' default 0) = $PYSOFIE_NUM_THREADS or 1;
        # an explicit intra_op_num_threads=0: every usable CPU. Checked before the (long) compilation.
        self._threads = resolve_threads(intra_op_num_threads if intra_op_num_threads is not None
                                        else self._options.threads())
        self._profile = [] if self._options.enable_profiling else None
        self._profile_start = int(t_start * 1e9)  # perf_counter's clock, as onnxruntime's (monotonic) start time
        self._profile_lock = threading.Lock()
        if weights is None:
            weights = "dat" if weight_file is not None and str(weight_file).endswith(".dat") else DEFAULT_WEIGHTS
        # a .root weight file (SOFIE's) for code that does not read ROOT files: converted once, with uproot
        root_weights = weight_file is not None and str(weight_file).endswith(".root") and weights == "bin"
        if root_weights and _generated is None:
            from .backends.cpp.root_weights import onnx_with_root_weights
            swapped = onnx_with_root_weights(model, str(weight_file), name)
            if swapped is not None:  # an ONNX model: its initializers take the file's values
                (model, name), weight_file, root_weights = swapped, None, False
        self._lazy = None
        with _log_level(self._options.logging_level()):
            try:
                gm = _generated or generate_code(model, name=name, namespace=namespace, weights=weights,
                                                 input_shapes=input_shapes, optimize=optimize,
                                                 constant_inputs=constant_inputs, example_graph=example_graph)
            except PysofieError as e:
                from .specialize import plan
                p = plan(model, e, constant_inputs)
                if p is None:
                    raise
                self._init_lazy(p, dict(name=name, namespace=namespace, weights=weights, input_shapes=input_shapes,
                                        optimize=optimize, opt_level=opt_level, native=native,
                                        weight_file=weight_file, sess_options=self._options,
                                        intra_op_num_threads=intra_op_num_threads), constant_inputs)
                return
            lib = _library or build_library([gm], opt_level=opt_level, native=native)
            log.debug("model '%s': session ready in %.2f s", gm.name, time.perf_counter() - t_start)
        self._gm = gm
        self._name = gm.name
        if root_weights:
            from .backends.cpp.root_weights import bin_file_from_root
            weight_file = bin_file_from_root(str(weight_file), gm)
        self._build_options = dict(weights=weights, opt_level=opt_level, native=native, weight_file=weight_file,
                                   intra_op_num_threads=intra_op_num_threads)
        em = gm.emitter
        self._graph = em.graph
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
        self._rt = dict(getattr(em, "rt_sizes", {}))  # sizes the data decides: {symbol: upper bound}
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
            msg = err.value.decode(errors="replace")
            from .errors import WeightFileError
            raise (WeightFileError if "weight file" in msg else PysofieError)(msg)
        self._handle = handle
        if self._threads != 1:
            self._native.set_threads(handle, self._threads)
        set_blas_threads(self._threads)
        if self._native.py_runner is not None:
            # run_fast(feed): the hot path in C (see backends/cpp/capi.py); it owns the session from now on
            self._fast = self._native.py_runner(handle, tuple(v.name for v in g.inputs),
                                                tuple(v.dtype.np for v in g.inputs),
                                                tuple(v.dtype.np for v in g.outputs), (PysofieError, InvalidInputError), gm.name)
            py_run = getattr(self._native, "py_run", None)
            if py_run is not None and self._profile is None and type(self).run is InferenceSession.run:
                # run(None, feed) without a Python frame: a C builtin that calls run_fast, else this class's run
                self.run = py_run(self._fast, InferenceSession.run.__get__(self))
        meta = getattr(g, "metadata", None) or {}
        self._meta = ModelMetadata(meta, gm.name)
        self._overridable = [NodeArg(n, shape, _ort_type(dt)) for n, dt, shape in meta.get("overridable_initializers", [])]
        self._profile_event("session_initialization", t_start)

    def _init_lazy(self, p, kwargs: dict, constant_inputs) -> None:
        """No code yet: the shape-determining inputs `needed` arrive at run (pysofie.specialize)."""
        from .specialize import Specializer, runtime_input_names
        model, needed = p
        base = dict(constant_inputs or {})
        shapes = kwargs.pop("input_shapes")
        names = [n for n in runtime_input_names(model) if n not in base]

        def make_session(m, consts):
            kw = dict(kwargs)
            if shapes is not None:  # given for the inputs left at run: drop those now fixed
                kw["input_shapes"] = [s for n, s in zip(names, shapes) if n not in consts]
            return InferenceSession(m, constant_inputs=consts, **kw)

        self._lazy = lz = Specializer(model, needed, make_session, base,
                                      source=f"model '{kwargs['name'] or model.graph.name or 'model'}'")
        self._gm = None
        self._name = kwargs["name"] or model.graph.name or "model"
        from .frontends.onnx import model_metadata
        self._meta = ModelMetadata(model_metadata(model), self._name)
        self._overridable = []
        self._handle = None
        self._fast = None
        self._inputs = [NodeArg(n, shape, t) for n, shape, t in lz.inputs]
        self._outputs = [NodeArg(n, shape, t) for n, shape, t in lz.outputs]
        self._out_index = {o.name: k for k, o in enumerate(self._outputs)}

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h and getattr(self, "_fast", None) is None:  # else run_fast owns the session and frees it with itself
            self._native.destroy(h)
        self._handle = None

    # -- pickling (session_state.py): the model's IR, the options and the code hash; unpickling goes through the cache
    def __getstate__(self):
        if self._lazy is not None:
            raise PysofieError(f"model '{self._name}': a session whose code waits for the values of "
                               f"{self._lazy.needed} cannot be pickled; give them as constant_inputs")
        from .session_state import session_state
        return session_state(self)

    def __setstate__(self, state):
        from .session_state import restore_session
        restore_session(self, state)

    # -- onnxruntime interface -------------------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        return list(self._outputs)

    def get_modelmeta(self) -> ModelMetadata:
        return self._meta

    def get_overridable_initializers(self) -> list[NodeArg]:
        """Initializers the model also lists as graph inputs (onnxruntime lets a run feed them). pysofie compiles
        them as constants: they are listed here, and a run that feeds one is told so."""
        return list(self._overridable)

    @property
    def intra_op_num_threads(self) -> int:
        """Threads the model's kernels run on."""
        return self._threads

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict]:
        return dict(zip(self._providers, (dict(o) for o in self._provider_options)))

    def set_providers(self, providers=None, provider_options=None) -> None:
        """As onnxruntime: the same argument checks and warnings; pysofie always runs on the CPU."""
        self._providers, self._provider_options = normalize_providers(providers, provider_options)

    def disable_fallback(self) -> None:
        pass  # the CPU is the only provider: nothing to fall back from

    def enable_fallback(self) -> None:
        pass

    def get_session_options(self) -> SessionOptions:
        return SessionOptions.from_any(self._options)

    @property
    def header(self) -> str:
        """The generated C++ header text."""
        if self._gm is None:
            raise PysofieError(f"{self._lazy.source}: no code is generated before run() gives the inputs "
                               f"{self._lazy.needed}, on whose values it depends")
        return self._gm.header

    # -- profiling (SessionOptions.enable_profiling) ----------------------------------------------------
    def _profile_event(self, name: str, t0: float, **args) -> None:
        if self._profile is None:
            return
        t1 = time.perf_counter()
        ev = {"cat": "Session", "pid": os.getpid(), "tid": threading.get_ident() & 0x7FFFFFFF,
              "dur": int((t1 - t0) * 1e6), "ts": int((t0 * 1e9 - self._profile_start) / 1e3), "ph": "X",
              "name": name, "args": {k: str(v) for k, v in args.items()}}
        with self._profile_lock:
            if self._profile is not None:  # end_profiling() may have run meanwhile
                self._profile.append(ev)

    def get_profiling_start_time_ns(self) -> int:
        return self._profile_start if self._profile is not None else 0

    def end_profiling(self) -> str:
        """Write the events recorded since the session was built (one per run) as a Chrome trace JSON file named
        after SessionOptions.profile_file_prefix and return its path; '' when profiling is off, as onnxruntime."""
        if self._profile is None:
            return ""
        from .build.fs import atomic_write
        with self._profile_lock:
            events, self._profile = self._profile, None
        path = f"{self._options.profile_file_prefix}_{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
        atomic_write(path, json.dumps(events, indent=0).encode())
        return path

    # -- running ---------------------------------------------------------------------------------------
    def _output_indices(self, output_names) -> Optional[list[int]]:
        """Indices of the requested outputs; None for all of them (None or [], as onnxruntime)."""
        if isinstance(output_names, (str, bytes)):
            raise TypeError(f"run(): output_names must be a list of output names or None, not the string "
                            f"{output_names!r} (onnxruntime raises TypeError too); use [{output_names!r}]")
        if not output_names:
            return None
        idx = []
        for n in output_names:
            if n not in self._out_index:
                raise InvalidInputError(f"model '{self._name}' has no output '{n}' "
                                        f"(outputs: {', '.join(self._out_index)})")
            idx.append(self._out_index[n])
        return idx

    def _reject_overridden(self, feed) -> None:
        if self._overridable and isinstance(feed, dict):
            given = [a.name for a in self._overridable if a.name in feed]
            if given:
                raise InvalidInputError(
                    f"model '{self._name}': {given} are initializers, compiled into the generated code as "
                    "constants; pysofie cannot override them at run time (remove them from the model's "
                    "initializers to make them inputs)")

    def run(self, output_names: Optional[Sequence[str]], input_feed: dict, run_options=None) -> list[np.ndarray]:
        idx = None if output_names is None else self._output_indices(output_names)
        if self._profile is not None:
            return self._profiled_run(idx, input_feed)
        fast = self._fast
        outs = fast(input_feed) if fast is not None else None
        if outs is None:  # no C hot path, or something unusual (a list, a wrong input): the path with full checks
            self._reject_overridden(input_feed)
            outs = self._run_checked(input_feed)
        if idx is None:
            return outs
        return [outs[k] for k in idx]

    def _profiled_run(self, idx, input_feed) -> list[np.ndarray]:
        t0 = time.perf_counter()
        self._reject_overridden(input_feed)
        outs = self._run_checked(input_feed) if self._fast is None else self._fast(input_feed)
        if outs is None:
            outs = self._run_checked(input_feed)
        self._profile_event("model_run", t0)
        return outs if idx is None else [outs[k] for k in idx]

    def run_async(self, output_names, input_feed: dict, callback, user_data, run_options=None) -> None:
        """As onnxruntime: run on another thread, then ``callback(outputs, user_data, error message or '')``."""
        def work():
            try:
                outs = self.run(output_names, input_feed, run_options)
            except Exception as e:  # reported to the callback, as onnxruntime reports a failed run
                callback([], user_data, f"{type(e).__name__}: {e}")
                return
            callback(outs, user_data, "")
        threading.Thread(target=work, name=f"pysofie-run-{self._name}", daemon=True).start()

    def run_with_ort_values(self, output_names, input_dict_ort_values: dict, run_options=None) -> list[OrtValue]:
        if not isinstance(input_dict_ort_values, dict):
            raise InvalidInputError(f"model '{self._name}': inputs must be a dict {{name: OrtValue}}")
        feed = {}
        for k, v in input_dict_ort_values.items():
            if not isinstance(v, OrtValue):
                raise TypeError(f"run_with_ort_values: input '{k}' is a {type(v).__name__}, not an OrtValue "
                                "(make one with OrtValue.ortvalue_from_numpy)")
            feed[k] = v.numpy()
        return [OrtValue(a) for a in self.run(output_names, feed, run_options)]

    def io_binding(self) -> IOBinding:
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: IOBinding, run_options=None) -> None:
        """Run on the inputs bound to `iobinding`; outputs bound to caller memory are written there in place."""
        name = self._name
        if not iobinding._outputs:
            raise InvalidInputError(f"model '{name}': run_with_iobinding: at least one output should be bound")
        into = {}
        for n, arr in iobinding._outputs.items():
            if n not in self._out_index:
                raise InvalidInputError(f"model '{name}' has no output '{n}' (outputs: {', '.join(self._out_index)})")
            if arr is not None:
                into[self._out_index[n]] = arr
        self._reject_overridden(iobinding._inputs)
        t0 = time.perf_counter() if self._profile is not None else 0.0
        outs = self._run_checked(dict(iobinding._inputs), into)
        if self._profile is not None:
            self._profile_event("model_run", t0)
        iobinding._results = [outs[self._out_index[n]] for n in iobinding._outputs]

    def _run_checked(self, input_feed, into: Optional[dict] = None) -> list[np.ndarray]:
        """Checks and converts the inputs (errors name the input), allocates the outputs (or uses the arrays of
        `into`, {output index: array}, written in place) and runs the model through ctypes. Every per-call buffer
        is local, and the C side serializes the calls to one session."""
        if self._lazy is not None:
            return self._lazy.run(None, input_feed)
        fast = self._fast_inputs(input_feed) if self._fast is None else None  # run_fast already declined
        arrays, env = fast if fast is not None else self._check_inputs(input_feed)
        sizes = [env.get(p, 1) for p in self._params]  # a size only an unread input has: irrelevant
        if self._rt:
            return self._run_rt(arrays, sizes)
        if self._static_out is not None:
            shapes = self._static_out
        else:
            senv = dict(zip(self._params, sizes))
            shapes = []
            for v in self._out_vals:
                shape = tuple(d.evaluate(senv) if isinstance(d, Sym) else d for d in v.shape)
                if any(d < 0 for d in shape):
                    raise InvalidInputError(f"model '{self._name}': output '{v.name}' would have shape "
                                            f"{list(shape)} for sizes {senv}")
                shapes.append((shape, v.dtype.np))
        outs = []
        for k, (shape, dt) in enumerate(shapes):
            given = into.get(k) if into else None
            if given is None:
                outs.append(np.empty(shape, dt))
                continue
            oname = self._out_vals[k].name
            if given.dtype != dt or tuple(given.shape) != tuple(shape):
                raise InvalidInputError(f"model '{self._name}': output '{oname}' is {np.dtype(dt)} {list(shape)}, "
                                        f"the memory bound to it is {given.dtype} {list(given.shape)}")
            if not (given.flags.c_contiguous and given.flags.aligned and given.flags.writeable):
                raise InvalidInputError(f"model '{self._name}': the memory bound to output '{oname}' must be "
                                        "C-contiguous, aligned and writeable")
            outs.append(given)
        c_sizes = (ctypes.c_int64 * max(1, len(sizes)))(*sizes)
        ins = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        out_ptrs = (ctypes.c_void_p * max(1, len(outs)))(*[o.ctypes.data for o in outs])
        err = ctypes.create_string_buffer(1024)
        self._raise_on(self._run(self._handle, c_sizes, ins, out_ptrs, err, len(err)), err)
        return outs

    def _raise_on(self, rc: int, err) -> None:
        """The C entry points' return code: 2 is std::out_of_range (an index in the inputs, such as a sender or
        receiver of a graph, is out of range), any other non-zero another C++ exception."""
        if rc == 2:
            raise InvalidInputError(f"model '{self._name}': {err.value.decode(errors='replace')}")
        if rc != 0:
            raise PysofieError(f"model '{self._name}': {err.value.decode(errors='replace')}")

    def _run_rt(self, arrays, sizes) -> list[np.ndarray]:
        """Runs a model with sizes the data decides: outputs are allocated for their upper bounds, written with
        their true (contiguous) shapes, and returned as views of that length. Outputs whose size has no bound
        before the run (a Range over computed values) come back in vectors the C side allocates; they are copied
        into arrays of their true shapes and freed."""
        from .ir.shapes import numel
        em = self._gm.emitter
        senv = dict(zip(self._params, sizes))
        bufs = []
        for k, v in enumerate(self._out_vals):
            if self._native.run_grown is not None and em.grown_output(k):
                bufs.append(None)
                continue
            n = em.bounded(numel(v.shape))
            n = n.evaluate(senv) if isinstance(n, Sym) else int(n)
            bufs.append(np.empty(max(0, n), v.dtype.np))
        c_sizes = (ctypes.c_int64 * max(1, len(sizes)))(*sizes)
        ins = (ctypes.c_void_p * max(1, len(arrays)))(*[a.ctypes.data for a in arrays])
        out_ptrs = (ctypes.c_void_p * max(1, len(bufs)))(*[0 if b is None else b.ctypes.data for b in bufs])
        rt = (ctypes.c_int64 * len(self._rt))()
        err = ctypes.create_string_buffer(1024)
        if self._native.run_grown is None:
            self._raise_on(self._native.run_rt(self._handle, c_sizes, ins, out_ptrs, rt, err, len(err)), err)
            handle = None
        else:
            handle, data = ctypes.c_void_p(), (ctypes.c_void_p * max(1, len(bufs)))()
            self._raise_on(self._native.run_grown(self._handle, c_sizes, ins, out_ptrs, rt, ctypes.byref(handle),
                                                  data, err, len(err)), err)
        try:
            senv.update(zip(self._rt, (int(x) for x in rt)))
            outs = []
            for k, (v, b) in enumerate(zip(self._out_vals, bufs)):
                shape = tuple(d.evaluate(senv) if isinstance(d, Sym) else d for d in v.shape)
                if b is None:
                    a = np.empty(shape, v.dtype.np)
                    if a.nbytes:
                        ctypes.memmove(a.ctypes.data, data[k], a.nbytes)
                    outs.append(a)
                else:
                    outs.append(b[:int(np.prod(shape, dtype=np.int64))].reshape(shape))
        finally:
            if handle is not None and handle.value:
                self._native.free_grown(handle)
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
                if env.setdefault(s, n) != n:
                    return None
            arrays.append(a)
        return tuple(arrays), env

    def _check_inputs(self, feed: dict):
        name = self._name
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
                        env[s] = int(n)
                elif d != n:
                    raise InvalidInputError(f"model '{name}': input '{v.name}' must have shape "
                                            f"{self._inputs[self._in_index[v.name]].shape}, got {list(a.shape)}")
            a = np.ascontiguousarray(a)
            arrays.append(a if a.flags.aligned else a.copy())
        return arrays, env
