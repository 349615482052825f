"""Specialization at run time: models whose shape-determining inputs (a Reshape's target, reduction axes, Pad's
pads, TopK's K, Resize's sizes, ...) are graph inputs.

Generated code is static: such inputs must be known when the code is generated. When a model needs one that
was not given in ``constant_inputs``, ``InferenceSession`` (and so ``pysofie.backend``) defers generation to
``run``: the values given there for those inputs become constants of the code, which is generated, compiled and
cached per distinct set of values (a dict keyed by a digest of the values, on top of the content-addressed
library cache). Each new set of values costs one generation and compilation.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import Any, Callable, Optional

import numpy as np

from .errors import InvalidInputError, ModelLoadError

# "... '<tensor>' ... must be known at generation time" (ops/base.py and the operators' own messages)
GEN_TIME = re.compile(r"'([^']+)'[^']*must be known at generation time")


def graph_input_sources(model, names: list[str], graph_inputs: set) -> list[str]:
    """The graph inputs that the tensors `names` are computed from (themselves, for graph inputs)."""
    producer = {}

    def collect(graph):  # If branches too (names are unique across a model)
        for n in graph.node:
            for o in n.output:
                producer[o] = n
            for a in n.attribute:
                if a.type == a.GRAPH:
                    collect(a.g)

    collect(model.graph)
    # a value inside an If branch is named '<node>/then_branch/<name>' by the front end
    names = [re.split(r"/(?:then|else)_branch/", n)[-1] for n in names]
    out, seen, todo = [], set(), list(names)
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in graph_inputs:
            out.append(t)
        elif t in producer:
            todo += [i for i in producer[t].input if i]
    return out


def runtime_input_names(model) -> list[str]:
    """The model's graph inputs that are not initializers, in order."""
    init = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in init]


def needed_inputs(error: BaseException, model, exclude=()) -> list[str]:
    """The graph inputs that `error` (raised while generating code) says must be known at generation time."""
    names = GEN_TIME.findall(str(error))
    if not names:
        return []
    return [n for n in graph_input_sources(model, names, set(runtime_input_names(model))) if n not in exclude]


def as_onnx_model(model):
    """The onnx.ModelProto of an ONNX model given as a proto, serialized bytes or a .onnx path; else None."""
    try:
        import onnx
    except ImportError:  # pragma: no cover
        return None
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception:
            return None
    if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
        try:
            return onnx.load(os.fspath(model))
        except Exception:
            return None
    return None


def _digest(names: list[str], feed: dict) -> str:
    h = hashlib.sha256()
    for n in names:
        a = np.ascontiguousarray(feed[n])
        h.update(f"{n}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _public_shape(vi) -> list:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim]


def _ort_type(vi) -> str:
    if not vi.type.HasField("tensor_type"):
        return vi.type.WhichOneof("value") or "unknown"
    from .ir import DType
    try:
        return DType.from_onnx(vi.type.tensor_type.elem_type).ort_name
    except TypeError:
        return "unknown"


class Specializer:
    """Runs an ONNX model whose shape-determining inputs arrive at ``run``: one compiled session per distinct
    set of values of those inputs (see the module docstring).

    make_session(model, constant_inputs) builds a session (an InferenceSession) for the given constants."""

    def __init__(self, model, needed: list[str], make_session: Callable[[Any, dict], Any],
                 base_constants: Optional[dict] = None, source: str = ""):
        self.model = model
        self.needed = list(dict.fromkeys(needed))
        self.make_session = make_session
        self.base = dict(base_constants or {})
        self.source = source or f"model '{model.graph.name or 'model'}'"
        self.cache: dict[str, tuple[Any, tuple]] = {}
        self._lock = threading.Lock()
        self.input_names = [n for n in runtime_input_names(model) if n not in self.base]
        by_name = {i.name: i for i in model.graph.input}
        self._declared = by_name
        self.inputs = [(n, _public_shape(by_name[n]), _ort_type(by_name[n])) for n in self.input_names]
        self.outputs = [(o.name, _public_shape(o), _ort_type(o)) for o in model.graph.output]

    def session_for(self, feed: dict):
        """(session, names fixed): the compiled session for the values `feed` gives the needed inputs."""
        missing = [n for n in self.needed if n not in feed]
        if missing:
            raise InvalidInputError(f"{self.source}: missing input(s) {missing} (expected: {self.input_names})")
        key = _digest(self.needed, feed)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        with self._lock:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            fixed_names = list(self.needed)
            for _ in range(len(self.input_names) + 1):
                fixed = {n: np.asarray(feed[n]) for n in fixed_names}
                try:
                    sess = self.make_session(self.model, {**self.base, **fixed})
                    break
                except Exception as e:
                    more = needed_inputs(e, self.model, exclude=set(fixed_names) | set(self.base))
                    more = [n for n in more if n in feed]
                    if not more:
                        raise
                    fixed_names += more
            else:  # pragma: no cover (every round fixes at least one more input)
                raise ModelLoadError(f"{self.source}: cannot determine the inputs needed at generation time")
            if fixed_names != self.needed:  # the values of more inputs decide the code: key on them all
                self.needed = fixed_names
                key = _digest(self.needed, feed)
            entry = (sess, tuple(fixed_names))
            self.cache[key] = entry
            return entry

    def _check(self, name: str, a) -> None:
        """A value that decides the code must have the declared dtype and static dims."""
        vi = self._declared[name]
        if not vi.type.HasField("tensor_type"):
            return
        from .ir import DType
        a = np.asarray(a)
        try:
            dt = DType.from_onnx(vi.type.tensor_type.elem_type).np
        except TypeError:
            return
        if a.dtype != dt:
            raise InvalidInputError(f"{self.source}: input '{name}' must have dtype {np.dtype(dt)}, got {a.dtype}")
        if vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            if len(dims) != a.ndim or any(d.HasField("dim_value") and d.dim_value != n
                                          for d, n in zip(dims, a.shape)):
                raise InvalidInputError(f"{self.source}: input '{name}' must have shape "
                                        f"{_public_shape(vi)}, got {list(a.shape)}")

    def run(self, output_names, feed: dict) -> list:
        if not isinstance(feed, dict):
            raise InvalidInputError(f"{self.source}: inputs must be a dict {{name: array}}")
        unknown = [k for k in feed if k not in self.input_names]
        if unknown:
            raise InvalidInputError(f"{self.source}: unknown input(s) {unknown} (expected: {self.input_names})")
        missing = [n for n in self.needed if n not in feed]
        if missing:
            raise InvalidInputError(f"{self.source}: missing input(s) {missing} (expected: {self.input_names})")
        for n in self.needed:
            self._check(n, feed[n])
        sess, fixed = self.session_for(feed)
        rest = {k: v for k, v in feed.items() if k not in fixed}
        return sess.run(output_names, rest)


def plan(model, error: BaseException, constant_inputs=None) -> Optional[tuple[Any, list[str]]]:
    """(onnx model, needed inputs) when `error`, raised generating `model`, asks for graph inputs at generation
    time that were not given in constant_inputs; else None (the error stands)."""
    m = as_onnx_model(model)
    if m is None:
        return None
    needed = needed_inputs(error, m, exclude=set(constant_inputs or {}))
    return (m, needed) if needed else None
