"""TensorFlow graph (traced from a graph_nets model) -> pysofie IR.

Every TensorFlow tensor becomes one of:
- an IR ``Value`` (data computed at run time),
- a numpy array, "host" data known at generation time (weights, constants, and shape arithmetic: an object
  array whose elements may be symbolic dims such as the number of nodes),
- ``Iota(n)`` (``tf.range(n)`` for a symbolic n: the graph index 0..G-1),
- ``Counts`` (a GraphsTuple's ``n_node`` / ``n_edge`` given as an input: run-time data summing to a known dim),
- ``SegIds`` (the graph index of every node or edge: ``repeat(range(G), n_node)``; ``None`` data when there is
  one graph).

Only the ops the outputs depend on are converted; ops that are not supported are all listed at once.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from ...errors import ModelLoadError, ShapeInferenceError, UnsupportedOperatorError
from ...ir import DType, Graph, Value
from ...ir.shapes import Dim, Sym
from ...ops import lookup
from .trace import Traced, read_resource

N_NODES, N_EDGES, N_GRAPHS = "n_nodes", "n_edges", "n_graphs"


@dataclasses.dataclass(frozen=True)
class Iota:
    n: Dim


@dataclasses.dataclass(frozen=True)
class Counts:
    value: Value
    total: Dim
    groups: Dim
    what: str
    rows: str


@dataclasses.dataclass(frozen=True)
class SegIds:
    value: Optional[Value]  # None: one graph, every row in segment 0
    length: Dim
    groups: Dim


def is_host(x) -> bool:
    return isinstance(x, np.ndarray)


def host_numeric(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype != object


def _dim(x) -> Dim:
    """A host scalar as a dim (int or Sym)."""
    x = np.asarray(x).reshape(-1)
    if x.size != 1:
        raise ShapeInferenceError(f"expected a scalar size, got {x.size} values")
    v = x[0]
    return v if isinstance(v, Sym) else int(v)


def host_array(elems, like_dtype=np.int64) -> np.ndarray:
    """An int array, object-typed when some element is symbolic."""
    elems = list(elems)
    if any(isinstance(e, Sym) for e in elems):
        a = np.empty(len(elems), dtype=object)
        for k, e in enumerate(elems):
            a[k] = e
        return a
    return np.asarray([int(e) for e in elems], dtype=like_dtype)


class Converter:
    def __init__(self, traced: Traced, name: str, source: str):
        self.t = traced
        self.graph = Graph(name)
        self.graph.source = source
        self.source = source
        self.env: dict[str, Any] = {}
        self._values: dict[int, Value] = {}  # id(host array) -> its constant Value
        self._keep: list = []  # the host arrays in _values, alive so that their ids stay unique
        self._names: set[str] = set()
        self._seg_cache: dict[int, SegIds] = {}
        self.problems: list[str] = []

    # -- building IR -----------------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        base = base.replace(":", "_")
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def emit(self, op_type: str, inputs: list, name: str, *, domain: str = "", n_out: int = 1, **attrs):
        cls = lookup(op_type, domain)
        op = cls(**attrs)
        ins = [None if x is None else self.val(x) for x in inputs]
        outs = [Value(self.fresh(f"{name}_out{k}" if n_out > 1 else name)) for k in range(n_out)]
        node = self.graph.add_node(op, ins, outs, self.fresh(f"{name}_node"))
        problems = op.check(node)
        if problems:
            raise UnsupportedOperatorError(problems, self.source)
        for v, (dt, shape) in zip(outs, op.infer(node)):
            v.dtype, v.shape = dt, tuple(shape)
        syms = op.fold_symbolic(node)
        if syms is not None:
            for v, elems in zip(outs, syms):
                v.sym = list(elems)
        return outs[0] if n_out == 1 else outs

    def val(self, x) -> Value:
        """The IR value of a tensor representation (host data becomes a constant)."""
        if isinstance(x, Value):
            return x
        if isinstance(x, np.ndarray):
            got = self._values.get(id(x))
            if got is not None:
                return got
            if x.dtype == object:
                v = Value(self.fresh("shape"), DType.INT64, x.shape)
                elems = list(x.reshape(-1))
                if x.ndim != 1:
                    raise ShapeInferenceError("a symbolic shape tensor must be 1-D")
                v.sym = [e if isinstance(e, Sym) else int(e) for e in elems]
                # the IR folds shape tensors through their producer; give it one: Concat of the elements
                parts = []
                for e in elems:
                    if isinstance(e, Sym):
                        parts.append(self._sym_scalar(e))
                    else:
                        parts.append(Value(self.fresh("c"), const=np.asarray([int(e)], np.int64)))
                v = self.emit("Concat", parts, "shape", axis=0)
            else:
                v = Value(self.fresh("const"), const=np.ascontiguousarray(x))
            self._values[id(x)] = v
            self._keep.append(x)
            return v
        if isinstance(x, SegIds):
            if x.value is None:
                return self.val(np.zeros(1, np.int32)) if x.length == 1 else self._zeros_ids(x.length)
            return x.value
        if isinstance(x, Counts):
            return x.value
        raise ShapeInferenceError(f"cannot use {type(x).__name__} as a tensor here")

    def _sym_scalar(self, d: Sym) -> Value:
        """A [1] int64 value holding a symbolic dim: Shape of an input axis of that size."""
        for v in self.graph.inputs:
            for ax, dd in enumerate(v.shape):
                if isinstance(dd, Sym) and dd == d:
                    s = self.emit("Shape", [v], "dim", start=ax, end=ax + 1)
                    return s
        raise ShapeInferenceError(f"the size {d} is not the size of an input axis")

    def _zeros_ids(self, n: Dim) -> Value:
        shape = host_array([n])
        return self.emit("Expand", [np.zeros(1, np.int32), shape], "zero_ids")

    # -- inputs ----------------------------------------------------------------------------------------
    def add_inputs(self) -> None:
        t = self.t
        N, E = Sym.var(N_NODES), Sym.var(N_EDGES)
        G: Dim = Sym.var(N_GRAPHS) if t.several else 1
        first = {"nodes": N, "edges": E, "senders": E, "receivers": E, "globals": G, "n_node": G, "n_edge": G}
        values = {}
        for field, ph, example in t.inputs:
            shape = (first[field],) + tuple(int(d) for d in example.shape[1:])
            v = self.graph.add_input(Value(field, DType.from_numpy(example.dtype), shape))
            self._names.add(field)
            values[field] = v
            self.env[ph.name] = v
        for field, total, rows in (("n_node", N, "nodes"), ("n_edge", E, "edges")):
            if field in values:
                ph = next(p for f, p, _ in t.inputs if f == field)
                self.env[ph.name] = Counts(values[field], total, G, f"input '{field}'", rows)
        used = [N_NODES, N_EDGES] + ([N_GRAPHS] if t.several else [])
        self.graph.size_params = [p for p in used if any(
            isinstance(d, Sym) and p in d.symbols() for v in self.graph.inputs for d in v.shape)]
        self.graph.zero_size_params = set(self.graph.size_params)

    # -- the walk --------------------------------------------------------------------------------------
    def needed_ops(self, outputs) -> set:
        seen_t: set = set()
        ops: set = set()
        stack = [t for t in outputs if t is not None]
        while stack:
            t = stack.pop()
            if t.name in seen_t or t.name in self.env:
                continue
            seen_t.add(t.name)
            rep = self.t.repeats.get(t.name)
            if rep is not None:
                ops.add(t.op.name)
                stack += [rep[0], rep[1]]
                continue
            ops.add(t.op.name)
            stack += list(t.op.inputs)
        return ops

    def run(self):
        from . import tfops  # noqa: F401  (registers the op converters)
        self.add_inputs()
        outs = [(n, t) for n, t in self.t.outputs if t is not None]
        needed = self.needed_ops([t for _, t in outs])
        failed: set = set()
        for op in self.t.tfgraph.get_operations():
            if op.name not in needed:
                continue
            if all(o.name in self.env for o in op.outputs) and op.outputs:
                continue
            if any(i.name in failed for i in op.inputs):
                failed.update(o.name for o in op.outputs)
                continue
            try:
                self.convert_op(op)
            except UnsupportedOperatorError as e:
                self.problems += e.problems
                failed.update(o.name for o in op.outputs)
            except ShapeInferenceError as e:
                self.problems.append(f"TensorFlow op '{op.name}' ({op.type}): {e}")
                failed.update(o.name for o in op.outputs)
        if self.problems:
            raise UnsupportedOperatorError(sorted(set(self.problems)), self.source)
        self.set_outputs(outs)
        return self.graph

    def convert_op(self, op) -> None:
        from .tfops import CONVERTERS
        for o in op.outputs:
            rep = self.t.repeats.get(o.name)
            if rep is not None:
                tensor, repeats, axis = rep
                self.env[o.name] = self.repeat(self.env[tensor.name], self.env[repeats.name], axis, op.name)
        if all(o.name in self.env for o in op.outputs) and op.outputs:
            return
        if op.type == "Placeholder":
            self.env[op.outputs[0].name] = self.captured(op)
            return
        fn = CONVERTERS.get(op.type)
        if fn is None:
            raise UnsupportedOperatorError([f"TensorFlow op '{op.name}' ({op.type}) is not supported"], self.source)
        ins = [self.env[i.name] for i in op.inputs]
        res = fn(self, op, ins)
        if not isinstance(res, (list, tuple)):
            res = [res]
        for o, r in zip(op.outputs, res):
            self.env[o.name] = _normalize(r)

    def captured(self, op):
        kind, data = self.t.captured.get(op.outputs[0].name, (None, None))
        if kind is None:
            raise UnsupportedOperatorError([f"TensorFlow placeholder '{op.name}' is neither an input nor a "
                                            "captured variable or constant"], self.source)
        return (kind, data)

    # -- graph_nets' repeat ----------------------------------------------------------------------------
    def seg_ids(self, counts) -> SegIds:
        """The graph index of each row for counts: a host [n] (one graph) or run-time Counts."""
        if isinstance(counts, Counts):
            got = self._seg_cache.get(id(counts.value))
            if got is None:
                ids = self.emit("SegmentIds", [counts.value], f"{counts.rows}_graph_index", domain="pysofie",
                                total=counts.total, what=counts.what, rows=counts.rows)
                got = self._seg_cache[id(counts.value)] = SegIds(ids, counts.total, counts.groups)
            return got
        if is_host(counts) and counts.size == 1:
            return SegIds(None, _dim(counts), 1)
        if host_numeric(counts):
            ids = np.repeat(np.arange(counts.size, dtype=np.int32), counts.reshape(-1))
            return SegIds(self.val(ids), int(ids.size), int(counts.size))
        raise ShapeInferenceError("repeat counts must be n_node / n_edge or known at generation time")

    def repeat(self, x, repeats, axis: int, name: str):
        if axis != 0:
            raise ShapeInferenceError("tf.repeat is supported along axis 0 only")
        seg = self.seg_ids(repeats)
        if isinstance(x, Iota) or (host_numeric(x) and x.ndim == 1 and np.array_equal(x, np.arange(x.size))):
            return seg  # repeat(range(G), counts): the graph index of every row
        if seg.value is None:  # one graph: broadcast the single row
            v = self.val(x)
            if v.shape[0] != 1:
                raise ShapeInferenceError(f"repeat of {v.shape[0]} rows by one count")
            return self.emit("Expand", [v, host_array([seg.length] + [1] * (v.rank - 1))], name)
        return self.emit("GatherRows", [x, seg.value], name, domain="pysofie", what="graph index")

    # -- outputs ---------------------------------------------------------------------------------------
    def set_outputs(self, outs) -> None:
        used: set = set()
        for name, t in outs:
            r = self.env[t.name]
            v = self.val(r) if not isinstance(r, Value) else r
            if v.is_input or v.const is not None or id(v) in used:
                v = self.emit("Identity", [v], name)
            used.add(id(v))
            old = v.name
            if old != name:
                self._names.discard(old)
                if name in self._names and name not in {i.name for i in self.graph.inputs}:
                    raise ModelLoadError(f"{self.source}: output name '{name}' clashes with another tensor")
                v.name = name
                self._names.add(name)
            self.graph.outputs.append(v)
        # graphs in, graphs out: the generated Session also takes SOFIE's GNN_Data (backends/cpp/gnn_shim.py)
        self.graph.gnn_shim = True


def _normalize(r):
    """numpy scalars, Python numbers and lone dims become (0-d) arrays."""
    if isinstance(r, Sym):
        a = np.empty((), dtype=object)
        a[()] = r
        return a
    if isinstance(r, (np.generic, int, float, bool)):
        return np.asarray(r)
    if isinstance(r, np.ndarray) and r.dtype == object and all(not isinstance(e, Sym) for e in r.reshape(-1)):
        return r.astype(np.int64)
    return r


def graph_from_traced(traced: Traced, name: str, source: str) -> Graph:
    conv = Converter(traced, name, source)
    return conv.run()


def resource_value(conv: Converter, handle, dtype) -> np.ndarray:
    return read_resource(handle, dtype)
