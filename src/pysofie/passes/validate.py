"""Validation between the front ends and the passes: nothing out of the specification reaches a pass, a generator or
the compiler.

Two layers, both table driven and both listing every problem at once (InvalidModelError.problems):

- ``onnx_problems(model)``: what only the ONNX file shows. Graph structure (no outputs, a name defined twice, two
  initializers with one name), and per node the operator's schema from ``onnx.defs``: attribute types and required
  attributes, the number of inputs and outputs, required inputs given as absent.
- ``attribute_problems(graph)``: value ranges of the IR operators' attributes, per family (kernel sizes, strides and
  dilations > 0, pads >= 0 with one begin and one end per axis, group >= 1, enumerations...), for every front end.
- ``type_problems(node)``: once its inputs' element types are known, the schema's type variables (an initializer
  of type int64 where the spec wants the type of a float input is refused here, not by the C++ compiler).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional

import numpy as np

from ..errors import InvalidModelError
from ..ir import Graph, Node

# -- ONNX structure and schemas ------------------------------------------------------------------------------------


def _schema(op_type: str, domain: str, opset: int):
    import onnx
    if domain not in ("", "ai.onnx"):
        return None
    try:
        return onnx.defs.get_schema(op_type, opset or onnx.defs.onnx_opset_version(), "")
    except Exception:  # unknown operator (reported as unsupported elsewhere) or too old an opset
        return None


def _attr_type_name(t: int) -> str:
    import onnx
    try:
        return onnx.AttributeProto.AttributeType.Name(t)
    except ValueError:
        return f"type {t}"


def _text_problems(g) -> list[str]:
    """Names and strings that a damaged file holds as bytes (not valid UTF-8): protobuf hands them over as bytes."""
    out = []

    def text(x, what: str) -> None:
        if not isinstance(x, str):
            out.append(f"{what} {x[:40]!r} is not valid UTF-8 text")

    text(g.name, "the graph name")
    for v in list(g.input) + list(g.output) + list(g.value_info):
        text(v.name, "the tensor name")
        if v.type.HasField("tensor_type"):
            for d in v.type.tensor_type.shape.dim:
                text(d.dim_param, f"a dimension name of '{v.name!s}'")
    for t in g.initializer:
        text(t.name, "the initializer name")
    for n in g.node:
        for x in [n.name, n.op_type, n.domain, *n.input, *n.output]:
            text(x, f"in a node ({n.op_type!s}), the name")
        for a in n.attribute:
            text(a.name, "an attribute name")
    return out


def onnx_problems(model, opset: int, source: str) -> list[str]:
    import onnx
    g = model.graph
    problems: list[str] = _text_problems(g)
    if problems:
        return problems
    if not g.output:
        problems.append("the graph has no outputs")
    defined: dict[str, str] = {}

    def define(name: str, what: str) -> None:
        if not name:
            return
        if name in defined:
            problems.append(f"'{name}' is defined twice ({defined[name]} and {what})")
        else:
            defined[name] = what

    seen_init: set[str] = set()
    for init in g.initializer:
        if init.name in seen_init:
            problems.append(f"two initializers are named '{init.name}'")
        seen_init.add(init.name)
    for i in g.input:
        define(i.name, "a graph input")
    for name in seen_init:
        if name not in defined:
            define(name, "an initializer")
    for idx, n in enumerate(g.node):
        nname = n.name or f"{n.op_type}_{idx}"
        where = f"node '{nname}' ({n.op_type})"
        for o in n.output:
            define(o, f"an output of {where}")
        schema = _schema(n.op_type, n.domain, opset)
        if schema is None:
            continue
        for a in n.attribute:
            if a.ref_attr_name:
                continue
            spec = schema.attributes.get(a.name)
            if spec is None:
                continue  # unknown attributes are reported by the operator class
            if a.type != int(spec.type):
                problems.append(f"{where}: attribute '{a.name}' is {_attr_type_name(a.type)}, the specification "
                                f"says {_attr_type_name(int(spec.type))}")
        given = {a.name for a in n.attribute}
        for k, spec in schema.attributes.items():
            if spec.required and k not in given:
                problems.append(f"{where}: required attribute '{k}' is missing")
        nin = len(n.input)
        last = max((k + 1 for k, x in enumerate(n.input) if x), default=0)
        if schema.max_input < 2 ** 31 - 1 and nin > schema.max_input:
            problems.append(f"{where}: {nin} inputs, the specification allows at most {schema.max_input}")
        if last < schema.min_input:
            problems.append(f"{where}: {last} inputs, the specification requires at least {schema.min_input}")
        for k, x in enumerate(n.input):
            if x or not schema.inputs:
                continue
            formal = schema.inputs[min(k, len(schema.inputs) - 1)]
            if formal.option == onnx.defs.OpSchema.FormalParameterOption.Single:
                problems.append(f"{where}: required input {k} ('{formal.name}') is given as absent")
        nout = len(n.output)
        if schema.max_output < 2 ** 31 - 1 and nout > schema.max_output:
            problems.append(f"{where}: {nout} outputs, the specification allows at most {schema.max_output}")
    return problems


# -- attribute ranges by operator family ---------------------------------------------------------------------------

def _is_int(x) -> bool:
    return isinstance(x, (numbers.Integral, np.integer))


def _ints(v) -> Optional[list]:
    """v as a list of ints, or None when it is not a sequence of integers."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if not isinstance(v, (list, tuple)) or not all(_is_int(x) for x in v):
        return None
    return [int(x) for x in v]


Rule = Callable[[Any], Optional[str]]


def ints_where(pred: Callable[[int], bool], what: str) -> Rule:
    def rule(v):
        xs = _ints(v)
        if xs is None:
            return "must be a list of integers"
        if not all(pred(x) for x in xs):
            return f"must have {what}"
        return None
    return rule


def int_where(pred: Callable[[int], bool], what: str) -> Rule:
    def rule(v):
        if not _is_int(v):
            return "must be an integer"
        return None if pred(int(v)) else f"must be {what}"
    return rule


def one_of(*choices: str) -> Rule:
    def rule(v):
        if not isinstance(v, str):
            return "must be a string"
        return None if v in choices or v.upper() in choices or v.lower() in choices else \
            f"must be one of {', '.join(choices)}"
    return rule


def number() -> Rule:
    def rule(v):
        return None if isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, bool) else \
            "must be a number"
    return rule


def strings() -> Rule:
    def rule(v):
        return None if isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v) else \
            "must be a list of strings"
    return rule


# window sizes, strides and pads beyond 2^24 are refused: no real model has them, and the index tables that code
# generation builds for them would not fit in memory
LIMIT = 1 << 24
POSITIVE = ints_where(lambda x: 0 < x <= LIMIT, f"every element > 0 and <= {LIMIT}")
NON_NEGATIVE = ints_where(lambda x: 0 <= x <= LIMIT, f"every element >= 0 and <= {LIMIT}")
AUTO_PAD = one_of("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
WINDOW = {"kernel_shape": POSITIVE, "strides": POSITIVE, "dilations": POSITIVE, "pads": NON_NEGATIVE,
          "auto_pad": AUTO_PAD}
RNN = {"hidden_size": int_where(lambda x: x >= 1, ">= 1"), "direction": one_of("forward", "reverse", "bidirectional"),
       "activations": strings(), "activation_alpha": None, "activation_beta": None, "clip": number(),
       "layout": int_where(lambda x: x in (0, 1), "0 or 1")}
GROUP = int_where(lambda x: x >= 1, ">= 1")

# op type -> {attribute: rule}. Attributes absent here are checked by their schema type only.
RULES: dict[str, dict[str, Optional[Rule]]] = {
    **{t: dict(WINDOW, group=GROUP) for t in ("Conv", "ConvInteger", "QLinearConv", "DeformConv")},
    "ConvTranspose": dict(WINDOW, group=GROUP, output_padding=NON_NEGATIVE, output_shape=POSITIVE),
    **{t: dict(WINDOW, ceil_mode=int_where(lambda x: x in (0, 1), "0 or 1"))
       for t in ("MaxPool", "AveragePool", "LpPool")},
    "MaxUnpool": {"kernel_shape": POSITIVE, "strides": POSITIVE, "pads": NON_NEGATIVE},
    "LRN": {"size": int_where(lambda x: x >= 1, ">= 1"), "alpha": number(), "beta": number(), "bias": number()},
    "DepthToSpace": {"blocksize": int_where(lambda x: x >= 1, ">= 1"), "mode": one_of("DCR", "CRD")},
    "SpaceToDepth": {"blocksize": int_where(lambda x: x >= 1, ">= 1")},
    "LSTM": dict(RNN, input_forget=int_where(lambda x: x in (0, 1), "0 or 1")),
    "GRU": dict(RNN, linear_before_reset=int_where(lambda x: x in (0, 1), "0 or 1")),
    "RNN": RNN,
    **{t: {"epsilon": number()} for t in ("BatchNormalization", "InstanceNormalization", "LayerNormalization",
                                          "GroupNormalization")},
    "Gemm": {"alpha": number(), "beta": number(), "transA": int_where(lambda x: x in (0, 1), "0 or 1"),
             "transB": int_where(lambda x: x in (0, 1), "0 or 1")},
    "LpNormalization": {"p": int_where(lambda x: x in (1, 2), "1 or 2")},
}


def _window_lengths(op, attrs: dict) -> list[str]:
    """kernel_shape, strides and dilations: one entry per spatial axis; pads: a begin and an end per axis."""
    out = []
    ks = _ints(attrs.get("kernel_shape")) if attrs.get("kernel_shape") is not None else None
    pads = _ints(attrs.get("pads")) if attrs.get("pads") is not None else None
    if pads is not None and len(pads) % 2:
        out.append(f"attribute 'pads' must have an even number of entries (begins, then ends), not {len(pads)}")
    if ks is not None:
        for k in ("strides", "dilations", "output_padding"):
            v = _ints(attrs.get(k)) if attrs.get(k) is not None else None
            if v is not None and len(v) != len(ks):
                out.append(f"attribute '{k}' has {len(v)} entries but kernel_shape has {len(ks)}")
        if pads is not None and len(pads) != 2 * len(ks):
            out.append(f"attribute 'pads' has {len(pads)} entries, {2 * len(ks)} expected for kernel_shape {ks}")
    return out


WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "ConvInteger": 1, "QLinearConv": 3, "DeformConv": 1}


def _kernel_matches_weight(node: Node, attrs: dict) -> list[str]:
    """kernel_shape, when given, is the weight's spatial shape (onnxruntime refuses a model where they differ)."""
    k = WEIGHT_INPUT.get(node.op.op_type)
    ks = _ints(attrs.get("kernel_shape")) if attrs.get("kernel_shape") is not None else None
    w = node.input(k) if k is not None else None
    if ks is None or w is None or w.shape is None or not all(isinstance(d, int) for d in w.shape[2:]):
        return []
    if list(w.shape[2:]) != ks:
        return [f"attribute kernel_shape={ks} differs from the spatial shape {list(w.shape[2:])} of weight '{w.name}'"]
    return []


def node_attribute_problems(node: Node) -> list[str]:
    op = node.op
    rules = RULES.get(op.op_type)
    attrs = getattr(op, "attrs", {}) or {}
    if not rules or op.domain not in ("", "ai.onnx"):
        return []
    out = []
    for k, rule in rules.items():
        v = attrs.get(k)
        if v is None or rule is None:
            continue
        msg = rule(v)
        if msg:
            shown = repr(list(v) if isinstance(v, (tuple, np.ndarray)) else v)
            out.append(f"attribute {k}={shown[:80]} {msg}")
    if "kernel_shape" in rules:
        out += _window_lengths(op, attrs)
        if not out:
            out += _kernel_matches_weight(node, attrs)
    return [f"{node.describe()}: {m}" for m in out]


def attribute_problems(graph: Graph) -> list[str]:
    problems = []
    for n in graph.nodes:
        problems += node_attribute_problems(n)
    return problems


def validate(graph: Graph) -> None:
    """Raise InvalidModelError listing every attribute of the graph's operators that is out of range."""
    problems = attribute_problems(graph)
    if problems:
        raise InvalidModelError(problems, graph.source)


# -- element types against the schema's type constraints -----------------------------------------------------------

def type_problems(node: Node) -> list[str]:
    """The node's input element types against its schema's type variables: inputs bound to one variable (X and W of a
    Conv: T) must have one type, so an initializer of another type than its use is refused here and not by the
    compiler. (The allowed sets themselves are not enforced: pysofie computes some operators on more types than
    the specification lists, and each operator's check() refuses the types it cannot compute on.) [] for operators
    without an ONNX schema."""
    op = node.op
    schema = _schema(op.op_type, op.domain, getattr(op, "opset", 0))
    if schema is None or not schema.inputs:
        return []
    variables = {tc.type_param_str for tc in schema.type_constraints}
    bound: dict[str, tuple] = {}
    out = []
    for i, v in enumerate(node.inputs):
        if v is None or v.dtype is None:
            continue
        formal = schema.inputs[min(i, len(schema.inputs) - 1)]
        if i >= len(schema.inputs) and not (formal.option.name == "Variadic" and formal.is_homogeneous):
            continue
        tvar = formal.type_str
        if tvar not in variables:
            continue
        prev = bound.get(tvar)
        if prev is None:
            bound[tvar] = (v.dtype, i)
        elif prev[0] is not v.dtype:
            out.append(f"{node.describe()}: input {i} ('{v.name}') has element type {v.dtype.name.lower()} but "
                       f"input {prev[1]} has {prev[0].name.lower()}: the specification wants one type ({tvar})")
    return out
