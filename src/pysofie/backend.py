"""pysofie as an ONNX backend (``onnx.backend.base.Backend``): prepare a model once, run it many times.

    import pysofie.backend as backend
    rep = backend.prepare(model, "CPU")
    outputs = rep.run([x])          # a tuple of numpy arrays, also indexable by output name

Only the CPU device is supported. Anything pysofie cannot compile raises
``pysofie.errors.UnsupportedOperatorError``, a ``NotImplementedError`` subclass naming the operator(s).

Inputs that determine shapes (a Reshape's target, axes, pads, Resize's sizes, a Loop's trip count, ...)
may arrive at ``run``: the code is then generated and compiled for the values given there, once per distinct
set of values (``pysofie.specialize``).

Many models prepared at once compile faster together: inside ``with deferred_compilation() as pool:``,
``prepare`` only generates code; the first ``run`` of any of them (or ``pool.compile()``) compiles everything
prepared so far into shared libraries of up to ``chunk`` models each.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Optional, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from .errors import InvalidInputError, ModelLoadError, UnsupportedOperatorError


class PysofieRep(BackendRep):
    """A compiled model: ``run(inputs)`` takes arrays in the order of the model's (non-initializer) inputs,
    or a dict {name: array}, and returns the outputs in the model's output order."""

    def __init__(self, session):
        self.session = session  # an InferenceSession, or a _Pending one inside deferred_compilation
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, inputs: Any, **kwargs: Any) -> tuple:
        if kwargs:
            raise TypeError(f"PysofieRep.run got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) != len(self.input_names):
                raise InvalidInputError(f"model has {len(self.input_names)} input(s) {self.input_names}, "
                                        f"got {len(inputs)} array(s)")
            feeds = {n: _array(a) for n, a in zip(self.input_names, inputs)}
        outs = self.session.run(None, feeds)
        return namedtupledict("Outputs", self.output_names)(*outs)


def _array(a):
    if isinstance(a, onnx.TensorProto):
        return onnx.numpy_helper.to_array(a)
    return a


def _as_model(model) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception as e:
            raise ModelLoadError(f"bytes given are not a serialized ONNX model ({e})") from None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelLoadError(f"{path}: no such file")
        try:
            return onnx.load(path)
        except Exception as e:
            raise ModelLoadError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    raise ModelLoadError(f"cannot read an ONNX model from an object of type {type(model).__name__}")


def _unsupported_types(model: onnx.ModelProto) -> None:
    from .conformance import screen
    why = screen(model)
    if why:
        ops = sorted({n.op_type for n in model.graph.node})
        where = f" (operators: {', '.join(ops)})" if ops else ""
        raise UnsupportedOperatorError([why + where], f"ONNX model '{model.graph.name or 'model'}'")


class _Pending:
    """A generated model waiting in a deferred_compilation pool: compiled (with the others) at its first run."""

    def __init__(self, pool: "DeferredCompilation", gm):
        from .session import NodeArg, _public_dim
        self.pool, self.gm, self.session, self.error = pool, gm, None, None
        g = gm.emitter.graph
        self._inputs = [NodeArg(v.name, [_public_dim(d) for d in v.shape], v.dtype.ort_name) for v in g.inputs]
        self._outputs = [NodeArg(v.name, [_public_dim(d) for d in v.shape], v.dtype.ort_name) for v in g.outputs]

    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def run(self, output_names, feed):
        if self.session is None and self.error is None:
            self.pool.compile()
        if self.error is not None:
            raise self.error
        return self.session.run(output_names, feed)


class DeferredCompilation:
    """Collects the models prepared while it is active and compiles them together (see the module docstring)."""

    def __init__(self, opt_level=None, native=None, chunk: int = 48):
        self.opt_level, self.native, self.chunk = opt_level, native, chunk
        self.pending: list[_Pending] = []
        self.serial = 0

    def add(self, model: onnx.ModelProto, kwargs: dict):
        from .api import generate_code
        from .errors import PysofieError
        from .session import InferenceSession
        from .specialize import plan
        known = {"weights", "input_shapes", "optimize", "constant_inputs"}
        if set(kwargs) - known:  # options that concern compilation or naming: compile on its own
            return InferenceSession(model, **kwargs)
        try:
            gm = generate_code(model, namespace=f"pysofie_batch_{self.serial}", weights=kwargs.get("weights", "bin"),
                               input_shapes=kwargs.get("input_shapes"), optimize=kwargs.get("optimize", True),
                               constant_inputs=kwargs.get("constant_inputs"))
        except PysofieError as e:
            if plan(model, e, kwargs.get("constant_inputs")) is None:
                raise
            # specialized at run (compiled then, on its own)
            return InferenceSession(model, opt_level=self.opt_level, native=self.native, **kwargs)
        self.serial += 1
        p = _Pending(self, gm)
        self.pending.append(p)
        return p

    def compile(self) -> None:
        """Compile every model prepared so far (errors are raised by each model's run)."""
        from .build.batch import sessions_for
        todo, self.pending = self.pending, []
        if not todo:
            return
        for p, s in zip(todo, sessions_for([p.gm for p in todo], opt_level=self.opt_level, native=self.native,
                                           chunk=self.chunk)):
            if isinstance(s, BaseException):
                p.error = s
            else:
                p.session = s


_active = threading.local()


@contextlib.contextmanager
def deferred_compilation(opt_level=None, native=None, chunk: int = 48):
    """``with deferred_compilation() as pool:``: models prepared inside compile together at the first run."""
    pool = DeferredCompilation(opt_level, native, chunk)
    prev = getattr(_active, "pool", None)
    _active.pool = pool
    try:
        yield pool
    finally:
        _active.pool = prev


class PysofieBackend(Backend):
    """onnx.backend.base.Backend over pysofie: the model becomes C++ code, compiled and loaded."""

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except (AttributeError, ValueError):
            return False

    @classmethod
    def _check_device(cls, device: str) -> None:
        if not cls.supports_device(device):
            raise ValueError(f"pysofie runs on the CPU only, not on device '{device}'")

    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs: Any) -> bool:
        """Whether pysofie supports every operator and type of the model (without compiling it)."""
        if not cls.supports_device(device):
            return False
        from .errors import PysofieError
        from .specialize import GEN_TIME, plan
        try:
            m = _as_model(model)
            from . import api
            from .conformance import screen
            if screen(m) is not None:
                return False
            problems = api.check(m)
        except PysofieError as e:  # inputs needed at generation time are specialized at run
            return plan(m, e) is not None
        except Exception:
            return False
        return not problems or (all(GEN_TIME.search(p) for p in problems)
                                and plan(m, UnsupportedOperatorError(problems)) is not None)

    @classmethod
    def prepare(cls, model, device: str = "CPU", **kwargs: Any) -> PysofieRep:
        """Convert, generate and compile the model. kwargs go to ``pysofie.InferenceSession`` (weights,
        opt_level, native, input_shapes, ...)."""
        cls._check_device(device)
        m = _as_model(model)
        try:
            super().prepare(m, device)  # onnx.checker, as every onnx backend does
        except onnx.checker.ValidationError as e:
            raise ModelLoadError(f"ONNX model '{m.graph.name or 'model'}' is not valid ONNX: {e}") from None
        _unsupported_types(m)
        pool = getattr(_active, "pool", None)
        if pool is not None:
            return PysofieRep(pool.add(m, kwargs))
        from .session import InferenceSession
        return PysofieRep(InferenceSession(m, **kwargs))

    @classmethod
    def run_model(cls, model, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Optional[Sequence[tuple[Any, tuple]]] = None, **kwargs: Any) -> tuple:
        """Run one node on the given inputs (a list aligned with node.input, or a dict by name).

        kwargs: opset_version (default: the current ONNX opset); the rest goes to prepare().
        """
        cls._check_device(device)
        opset = kwargs.pop("opset_version", None)
        if node.domain in ("", "ai.onnx"):
            if opset is not None:
                super().run_node(node, inputs, device, opset_version=opset)
            else:
                super().run_node(node, inputs, device)
        if isinstance(inputs, dict):
            feeds = {k: np.asarray(_array(v)) for k, v in inputs.items()}
        else:
            inputs = list(inputs)
            names = list(node.input)
            present = [n for n in names if n]
            if len(inputs) == len(present):
                names = present
            elif len(inputs) > len(names):
                raise InvalidInputError(f"node '{node.name or node.op_type}' has {len(names)} input(s), "
                                        f"got {len(inputs)} array(s)")
            feeds = {}
            for n, a in zip(names, inputs):
                if n:
                    feeds[n] = np.asarray(_array(a))
        vin = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
               for n, a in feeds.items()]
        vout = []
        for k, n in enumerate(o for o in node.output if o):
            if outputs_info is not None and k < len(outputs_info):
                dt, shape = outputs_info[k]
                vout.append(helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(dt)),
                                                          list(shape)))
            else:
                vout.append(helper.make_empty_tensor_value_info(n))
        graph = helper.make_graph([node], f"{node.op_type.lower() or 'node'}_run_node", vin, vout)
        imports = [helper.make_opsetid("", opset or onnx.defs.onnx_opset_version())]
        if node.domain not in ("", "ai.onnx"):
            imports.append(helper.make_opsetid(node.domain, 1))
        model = helper.make_model(graph, opset_imports=imports)
        _unsupported_types(model)
        from .session import InferenceSession
        rep = PysofieRep(InferenceSession(model, **kwargs))
        return rep.run(feeds)


prepare = PysofieBackend.prepare
run_model = PysofieBackend.run_model
run_node = PysofieBackend.run_node
supports_device = PysofieBackend.supports_device
is_compatible = PysofieBackend.is_compatible

__all__ = ["PysofieBackend", "PysofieRep", "DeferredCompilation", "deferred_compilation", "prepare", "run_model", "run_node", "supports_device", "is_compatible"]
