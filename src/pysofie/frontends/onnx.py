"""ONNX front end: ModelProto -> IR Graph, for opsets 7 to current."""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InvalidModelError, ModelLoadError, UnsupportedOperatorError
from ..ir import DType, Graph, Value
from ..ir.shapes import Sym
from ..ops import lookup
from ..ops.base import Op
from ..passes.infer import InferShapesAndFold
from ..passes.validate import attribute_problems, onnx_problems


class Unsupported(Op):
    """Placeholder for a node whose operator is unknown: reported by the inference walk."""
    op_type = "Unsupported"
    CHECK_NEEDS_INPUTS = False

    def __init__(self, op_type: str, domain: str, reason: str = ""):
        super().__init__()
        self.orig = op_type
        self.orig_domain = domain
        self.reason = reason

    def check(self, node):
        dom = f" (domain '{self.orig_domain}')" if self.orig_domain else ""
        why = self.reason or "operator not supported"
        return [f"{self.orig}{dom}: {why}, node '{node.name}'"]


def graph_from_onnx_file(path: str, *, name: str | None = None, input_shapes=None, constant_inputs=None) -> Graph:
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a directory, not an ONNX model file")
    try:
        model = onnx.load(path)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ModelLoadError(f"{path}: not an ONNX model (no graph in the file; truncated or another format?)")
    stem = os.path.splitext(os.path.basename(path))[0]
    return graph_from_onnx(model, name=name or stem, source=path, input_shapes=input_shapes,
                           constant_inputs=constant_inputs)


def attribute_value(attr: onnx.AttributeProto) -> Any:
    if attr.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type == onnx.AttributeProto.GRAPH:
        return attr.g
    v = helper.get_attribute_value(attr)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


def _symbol_name(raw: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", raw)
    if not s or s[0].isdigit():
        s = "d_" + s
    return s


def graph_from_onnx(model: onnx.ModelProto, *, name: str | None = None, source: str = "",
                    input_shapes=None, constant_inputs=None) -> Graph:
    """constant_inputs: {input name: array} turns those graph inputs into constants. Generated code is static:
    inputs that determine shapes (a Reshape's target, a Reduce's axes) must be known when it is generated."""
    g = model.graph
    source = source or f"ONNX model '{g.name or 'model'}'"
    opset = 0
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset == 0:
        opset = onnx.defs.onnx_opset_version()
    invalid = onnx_problems(model, opset, source)
    if invalid:
        raise InvalidModelError(invalid, source)
    graph = Graph(name or g.name or "model")
    graph.source = source
    values: dict[str, Value] = {}

    for init in g.initializer:
        try:
            arr = numpy_helper.to_array(init, base_dir=os.path.dirname(source) if os.path.exists(source) else "")
            values[init.name] = Value(init.name, const=np.array(arr))
        except Exception as e:
            raise ModelLoadError(f"{source}: initializer '{init.name}' cannot be read ({e})") from None

    sym_names: dict[str, str] = {}
    given = list(input_shapes) if input_shapes else None
    constant_inputs = dict(constant_inputs or {})
    known = {i.name for i in g.input}
    unknown = [n for n in constant_inputs if n not in known]
    if unknown:
        raise ModelLoadError(f"{source}: constant_inputs names {unknown}, which are not inputs of the model")
    for n, arr in constant_inputs.items():
        values[n] = Value(n, const=np.asarray(arr))
    real_inputs = [i for i in g.input if i.name not in values]
    if given is not None and len(given) != len(real_inputs):
        raise ModelLoadError(f"{source}: {len(given)} input shape(s) given but the model has {len(real_inputs)} inputs")
    for k, inp in enumerate(real_inputs):
        tt = inp.type.tensor_type
        if not inp.type.HasField("tensor_type"):
            raise ModelLoadError(f"{source}: input '{inp.name}' is not a tensor (sequences and maps are not supported)")
        dt = DType.from_onnx(tt.elem_type)
        dims: list = []
        if given is not None:
            dims = [int(d) if not isinstance(d, str) else Sym.var(_symbol_name(d)) for d in given[k]]
        else:
            for ax, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                else:
                    raw = d.dim_param if d.HasField("dim_param") and d.dim_param else (
                        "N" if ax == 0 else f"{inp.name}_dim{ax}")
                    if raw not in sym_names:  # distinct dim_params stay distinct symbols ("a-b" and "a_b")
                        base = cand = _symbol_name(raw)
                        while cand in sym_names.values():
                            cand += "_"
                        sym_names[raw] = cand
                    dims.append(Sym.var(sym_names[raw]))
        v = Value(inp.name, dt, tuple(dims))
        values[inp.name] = v
        graph.add_input(v)
    # size parameters in order of first appearance
    for v in graph.inputs:
        for d in v.shape:
            if isinstance(d, Sym):
                for s in sorted(d.symbols()):
                    if s not in graph.size_params:
                        graph.size_params.append(s)

    def get(scope: dict, name: str, node_name: str) -> Value | None:
        if name == "":
            return None
        if name not in scope:
            raise ModelLoadError(f"{source}: node '{node_name}' reads '{name}', which no node produces")
        return scope[name]

    node_names: set[str] = set()

    def add_nodes(nodes, scope: dict, prefix: str = "") -> None:
        """Add `nodes` (the main graph's, or an If branch's: `scope` then also holds the outer names)."""
        # outputs first, so that a model whose nodes are not in topological order still links
        for n in nodes:
            if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx")):
                for o in n.output:
                    if o and (o not in scope or prefix):
                        scope[o] = Value(prefix + o)
        for idx, n in enumerate(nodes):
            nname = prefix + (n.name or f"{n.op_type}_{idx}")
            while nname in node_names:
                nname += "_"
            node_names.add(nname)
            attrs = {a.name: attribute_value(a) for a in n.attribute}
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                scope[n.output[0]] = Value(prefix + n.output[0], const=_constant_value(attrs, source, nname))
                continue
            outs = [scope[o] if o else Value(f"{nname}_unused_{k}") for k, o in enumerate(n.output)]
            if n.op_type == "If" and n.domain in ("", "ai.onnx"):
                add_if(n, attrs, scope, nname, outs)
                continue
            cls = lookup(n.op_type, n.domain)
            if cls is None:
                op = Unsupported(n.op_type, n.domain)
            else:
                try:
                    op = cls.from_onnx(attrs, opset)
                except Exception as e:
                    op = Unsupported(n.op_type, n.domain, str(e).split(": ", 1)[-1])
            graph.add_node(op, [get(scope, x, nname) for x in n.input], outs, nname)

    def add_if(n, attrs: dict, scope: dict, nname: str, outs: list) -> None:
        """Both branches become part of the graph; an If node selects between their outputs (see ops/control)."""
        branch_outs = []
        for key in ("then_branch", "else_branch"):
            sub = attrs.get(key)
            if sub is None:
                raise ModelLoadError(f"{source}: If node '{nname}' has no {key}")
            sub_scope = dict(scope)
            for init in sub.initializer:
                sub_scope[init.name] = Value(f"{nname}/{key}/{init.name}", const=np.array(numpy_helper.to_array(init)))
            add_nodes(sub.node, sub_scope, prefix=f"{nname}/{key}/")
            res = []
            for o in sub.output:
                if o.name not in sub_scope:
                    raise ModelLoadError(f"{source}: {key} of If node '{nname}' does not produce its output '{o.name}'")
                res.append(sub_scope[o.name])
            branch_outs.append(res)
        then_outs, else_outs = branch_outs
        if not (len(then_outs) == len(else_outs) == len(outs)):
            graph.add_node(Unsupported("If", "", "branches with different numbers of outputs"),
                           [get(scope, n.input[0], nname)], outs, nname)
            return
        graph.add_node(lookup("If")(), [get(scope, n.input[0], nname)] + then_outs + else_outs, outs, nname)

    add_nodes(g.node, values)

    for o in g.output:
        if o.name not in values:
            raise ModelLoadError(f"{source}: graph output '{o.name}' is not produced by any node")
        graph.outputs.append(values[o.name])
    invalid = attribute_problems(graph)
    if invalid:
        raise InvalidModelError(invalid, source)
    InferShapesAndFold(check_types=True)(graph)
    return graph


def _constant_value(attrs: dict, source: str, node_name: str) -> np.ndarray:
    if "value" in attrs:
        return np.array(attrs["value"])
    for key, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dt)
    for key, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dt)
    raise UnsupportedOperatorError([f"Constant: this form of Constant is not supported, node '{node_name}'"], source)
