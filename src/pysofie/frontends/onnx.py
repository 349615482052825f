"""ONNX front end: ModelProto -> IR Graph, for opsets 7 to current."""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import InvalidModelError, ModelLoadError, ShapeInferenceError, UnsupportedOperatorError
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


def unsupported_element_types(g: onnx.GraphProto, where: str = "") -> list[str]:
    """Every tensor of the graph (inputs, outputs, value_info, initializers, tensor attributes and Cast targets,
    subgraphs included) whose element type pysofie has no DType for (STRING, complex...), one line each."""
    known = {d.onnx for d in DType}
    name_of = _type_name
    problems: list[str] = []
    for kind, vis in (("graph input", g.input), ("graph output", g.output), ("intermediate tensor", g.value_info)):
        for vi in vis:
            if vi.type.HasField("tensor_type"):
                et = vi.type.tensor_type.elem_type
                if et and et not in known:
                    problems.append(f"{where}{kind} '{vi.name}': element type {name_of(et)} is not supported")
    for t in g.initializer:
        if t.data_type not in known:
            problems.append(f"{where}initializer '{t.name}': element type {name_of(t.data_type)} is not supported")
    for k, n in enumerate(g.node):
        nname = n.name or f"{n.op_type}_{k}"
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type not in known:
                problems.append(f"{where}node '{nname}' ({n.op_type}): attribute '{a.name}' has element type "
                                f"{name_of(a.t.data_type)}, which is not supported")
            elif n.op_type == "Cast" and a.name == "to" and a.i not in known:
                problems.append(f"{where}node '{nname}' (Cast): cast to element type {name_of(a.i)} is not supported")
            elif a.type == onnx.AttributeProto.GRAPH:
                problems += unsupported_element_types(a.g, f"{where}node '{nname}' {a.name}: ")
    return problems


def _type_name(code: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(code)
    except ValueError:
        return str(code)


def model_metadata(model: onnx.ModelProto) -> dict:
    """What onnxruntime's ModelMetadata and get_overridable_initializers report for this model."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    overridable = []
    for inp in g.input:
        if inp.name in inits:
            t = inits[inp.name]
            overridable.append((inp.name, int(t.data_type), [int(d) for d in t.dims]))
    return {"producer_name": model.producer_name, "graph_name": g.name, "graph_description": g.doc_string,
            "domain": model.domain, "description": model.doc_string,
            "custom_metadata_map": {p.key: p.value for p in model.metadata_props},
            # onnxruntime reports INT64_MAX when the model has no version
            "version": int(model.model_version) if model.HasField("model_version") else int(np.iinfo(np.int64).max),
            "overridable_initializers": overridable}


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
    bad_types = unsupported_element_types(g)
    if bad_types:
        raise UnsupportedOperatorError(bad_types, source)
    graph = Graph(name or g.name or "model")
    graph.source = source
    graph.metadata = model_metadata(model)
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
        try:
            dt = DType.from_onnx(tt.elem_type)
        except TypeError as e:  # a valid element type pysofie does not run (strings, complex), or none at all
            raise ModelLoadError(f"{source}: input '{inp.name}': {e}") from None
        dims: list = []
        if given is not None:
            declared = len(tt.shape.dim) if tt.HasField("shape") else None
            if declared is not None and len(given[k]) != declared:
                raise ModelLoadError(f"{source}: input shape #{k + 1} {tuple(given[k])} given for input '{inp.name}' "
                                     f"has rank {len(given[k])}, but the model declares rank {declared}")
            dims = [int(d) if not isinstance(d, str) else Sym.var(_symbol_name(d)) for d in given[k]]
        else:
            for ax, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value >= 0:  # 0: a zero-size axis
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
            if n.op_type in ("Scan", "Loop") and n.domain in ("", "ai.onnx") and (opset >= 9 or n.op_type == "Loop"):
                why = unroll(n, attrs, scope, nname, outs)
                if why is None:
                    continue
                graph.add_node(Unsupported(n.op_type, n.domain, why), [get(scope, x, nname) for x in n.input],
                               outs, nname)
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

    static_shapes: dict[str, list] = {}
    if any(n.op_type in ("Scan", "Loop") for n in g.node):
        static_shapes.update(_static_shapes(model, constant_inputs))

    def node(op_type: str, inputs: list, out: Value, name: str, opset_: int = 0, **attrs) -> Value:
        op = lookup(op_type).from_onnx(attrs, opset_ or max(opset, 13))
        graph.add_node(op, inputs, [out], name)
        return out

    def const(name: str, arr) -> Value:
        return Value(name, const=np.asarray(arr))

    def run_body(body, bound: dict, scope: dict, prefix: str) -> list:
        """Adds one copy of a loop body: `bound` maps its input names to Values; returns its output Values."""
        sub = dict(scope)
        sub.update(bound)
        for init in body.initializer:
            sub[init.name] = Value(prefix + init.name, const=np.array(numpy_helper.to_array(init)))
        add_nodes(body.node, sub, prefix=prefix)
        missing = [o.name for o in body.output if o.name not in sub]
        if missing:
            raise ModelLoadError(f"{source}: loop body '{body.name}' does not produce {missing}")
        return [sub[o.name] for o in body.output]

    def stack(parts: list, axis: int, out: Value, nname: str) -> None:
        """Concatenates per-iteration slices along a new axis into `out`."""
        if not parts:
            raise ShapeInferenceError(f"{source}: node '{nname}' runs no iteration, so its scan outputs have no "
                                      "element type; not supported")
        ups = [node("Unsqueeze", [p, const(f"{nname}/axes", [axis])], Value(f"{nname}/up{k}"), f"{nname}/up{k}")
               for k, p in enumerate(parts)]
        node("Concat", ups, out, f"{nname}/stack", axis=axis)

    def unroll(n, attrs: dict, scope: dict, nname: str, outs: list):
        """Scan (opset 9+) with a scan length known at generation time, and Loop with a trip count known then
        (a condition computed at run time: up to MAX_DATA_COND_TRIPS of them), become their iterations one after
        the other. Returns why not, or None when done."""
        body = attrs.get("body")
        if body is None:
            return "no body"
        bin_ = [i.name for i in body.input]
        if n.op_type == "Scan":
            m = int(attrs.get("num_scan_inputs", 0))
            if not 1 <= m <= len(n.input):
                return f"num_scan_inputs={m} with {len(n.input)} inputs"
            ins = [get(scope, x, nname) for x in n.input]
            ns = len(ins) - m
            nk = len(body.output) - ns
            if nk < 0 or len(bin_) != ns + m:
                return (f"its body takes {len(bin_)} inputs and gives {len(body.output)} outputs, for {ns} states "
                        f"and {m} scan inputs")
            in_axes = list(attrs.get("scan_input_axes") or [0] * m)
            in_dirs = list(attrs.get("scan_input_directions") or [0] * m)
            out_axes = list(attrs.get("scan_output_axes") or [0] * nk)
            out_dirs = list(attrs.get("scan_output_directions") or [0] * nk)
            if (len(in_axes), len(in_dirs), len(out_axes), len(out_dirs)) != (m, m, nk, nk):
                return "scan_input_axes/directions need one value per scan input, scan_output_axes/directions one " \
                       "per scan output"
            lengths = set()
            for j in range(m):
                shape = static_shapes.get(n.input[ns + j])
                if not shape or any(d is None for d in shape):
                    return f"the length of scan input '{n.input[ns + j]}' must be known at generation time"
                lengths.add(shape[in_axes[j] % len(shape)])
            if len(lengths) != 1:
                return f"scan inputs of different lengths {sorted(lengths)}"
            L = lengths.pop()
            states = ins[:ns]
            per_iter: list[list] = [[] for _ in range(nk)]
            for t in range(L):
                bound = dict(zip(bin_[:ns], states))
                for j in range(m):
                    x = ins[ns + j]
                    shape = static_shapes[n.input[ns + j]]
                    idx = L - 1 - t if in_dirs[j] else t
                    bound[bin_[ns + j]] = node("Gather", [x, const(f"{nname}/t{t}_{j}", np.int64(idx))],
                                               Value(f"{nname}/it{t}/in{j}"), f"{nname}/it{t}/slice{j}",
                                               axis=in_axes[j] % len(shape))
                res = run_body(body, bound, scope, f"{nname}/it{t}/")
                states = res[:ns]
                for k in range(nk):
                    per_iter[k].append(res[ns + k])
            for k in range(ns):
                node("Identity", [states[k]], outs[k], f"{nname}/state{k}")
            for k in range(nk):
                parts = per_iter[k][::-1] if out_dirs[k] else per_iter[k]
                stack(parts, out_axes[k], outs[ns + k], f"{nname}/out{k}")
            return None
        # Loop: M, cond, carried...
        M = get(scope, n.input[0], nname) if len(n.input) > 0 else None
        cond = get(scope, n.input[1], nname) if len(n.input) > 1 else None
        carried = [get(scope, x, nname) for x in n.input[2:]]
        if M is None:
            return "a Loop without a trip count (ended by its condition only) is not supported"
        if M.const is None or (cond is not None and cond.const is None):
            try:  # computed from constants by the nodes so far (a Range's expansion): fold them now
                InferShapesAndFold()(graph)
            except Exception:  # reported by the final inference
                pass
        if M.const is None:
            raise ShapeInferenceError(f"node '{nname}' (Loop): input '{n.input[0]}' (trip count) must be known at "
                                      "generation time")
        trips = int(np.asarray(M.const).reshape(-1)[0])
        if cond is not None and cond.const is not None and not bool(np.asarray(cond.const).reshape(-1)[0]):
            trips = 0
        # the body's condition output must stay true: its condition input passed through, or a true constant
        cond_out = body.output[0].name
        producers = {o: b for b in body.node for o in b.output}
        src = cond_out
        while src in producers and producers[src].op_type == "Identity":
            src = producers[src].input[0]
        const_true = False
        if src in producers and producers[src].op_type == "Constant":
            try:
                cattrs = {a.name: attribute_value(a) for a in producers[src].attribute}
                const_true = bool(_constant_value(cattrs, source, nname).reshape(-1)[0])
            except Exception:
                const_true = False
        # a condition computed by the body, or given at run: the iterations are unrolled up to the trip count, each
        # after the first one that stops keeps the states as they were (Where), and the scan outputs keep the
        # slices of the iterations that ran (Compress: a run-time length up to the trip count)
        body_cond = src != bin_[1] and not const_true
        given_cond = cond is not None and cond.const is None and trips > 0
        if given_cond and not body_cond and trips > MAX_DATA_COND_TRIPS:  # too long to unroll: specialize on it
            raise ShapeInferenceError(f"node '{nname}' (Loop): input '{n.input[1]}' (condition) must be known at "
                                      "generation time")
        data_cond = body_cond or given_cond
        if data_cond and trips > MAX_DATA_COND_TRIPS:
            return (f"the loop stops on a condition computed at run time and its trip count {trips} is above "
                    f"{MAX_DATA_COND_TRIPS}, the most iterations unrolled for such a loop")
        nc = len(carried)
        nk = len(body.output) - 1 - nc
        per_iter = [[] for _ in range(nk)]
        states = carried
        true = const(f"{nname}/true", np.array(True))
        scalar = const(f"{nname}/scalar", np.array([], np.int64))
        # alive: whether iteration t runs (a bool scalar Value; None: it surely does)
        alive = None if cond is None or cond.const is not None else \
            node("Reshape", [cond, scalar], Value(f"{nname}/cond0"), f"{nname}/cond0")
        ran = []
        for t in range(trips):
            bound = {bin_[0]: const(f"{nname}/i{t}", np.array(t, np.int64)), bin_[1]: true}
            bound.update(zip(bin_[2:], states))
            res = run_body(body, bound, scope, f"{nname}/it{t}/")
            if alive is None:
                states = res[1:1 + nc]
            else:  # a stopped loop keeps its states
                states = [node("Where", [alive, new, old], Value(f"{nname}/it{t}/keep{k}"), f"{nname}/it{t}/keep{k}")
                          for k, (new, old) in enumerate(zip(res[1:1 + nc], states))]
            ran.append(alive)
            if data_cond:
                c = node("Reshape", [res[0], scalar], Value(f"{nname}/it{t}/cond"), f"{nname}/it{t}/cond")
                alive = c if alive is None else node("And", [alive, c], Value(f"{nname}/it{t}/alive"),
                                                     f"{nname}/it{t}/alive")
            for k in range(nk):
                per_iter[k].append(res[1 + nc + k])
        for k in range(nc):
            node("Identity", [states[k]], outs[k], f"{nname}/state{k}")
        mask = None
        if data_cond and nk:
            flags = [node("Reshape", [true if r is None else r, const(f"{nname}/one", np.array([1], np.int64))],
                          Value(f"{nname}/ran{t}"), f"{nname}/ran{t}") for t, r in enumerate(ran)]
            mask = node("Concat", flags, Value(f"{nname}/ran"), f"{nname}/ran", axis=0)
        for k in range(nk):
            if mask is None:
                stack(per_iter[k], 0, outs[nc + k], f"{nname}/out{k}")
                continue
            stacked = Value(f"{nname}/all{k}")
            stack(per_iter[k], 0, stacked, f"{nname}/out{k}")
            node("Compress", [stacked, mask], outs[nc + k], f"{nname}/kept{k}", axis=0)
        return None

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


# A Loop stopped by a condition computed at run time is unrolled up to its trip count: at most this many iterations
MAX_DATA_COND_TRIPS = 64


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


def _static_shapes(model: onnx.ModelProto, constant_inputs) -> dict[str, list]:
    """Static tensor shapes from onnx's shape inference (for unrolling Scan), {} where it cannot run."""
    try:
        m = model
        if constant_inputs:
            m = onnx.ModelProto()
            m.CopyFrom(model)
            for k, arr in dict(constant_inputs).items():
                m.graph.initializer.append(numpy_helper.from_array(np.asarray(arr), k))
        inferred = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    return out
