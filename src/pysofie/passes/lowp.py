"""float16 / bfloat16 through operators that compute in float only.

pysofie holds float16 and bfloat16 as bit patterns (DType.is_lowp) and only Cast, CastLike and data movement
handle them directly. Any other node with such inputs is rewritten, while shapes are inferred, to compute in
float: each float16/bfloat16 input goes through Cast(to=float) (constants are converted right away, exactly),
and each output that the ONNX schema types like those inputs (same type parameter, e.g. T) comes back through
Cast(to=float16/bfloat16), rounded to nearest even once. That is how numpy computes elementwise float16 ops, and
what onnxruntime does for many of them on CPU; ops that accumulate (MatMul, Conv, reductions) are then more
accurate than a float16 accumulation would be.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..ir import DType, Graph, Node, Value

PROMOTABLE = (DType.FLOAT16, DType.BFLOAT16)
# conversions and data movement take the low-precision types as they are (backends/cpp/emitter.py LOWP_OPS)
KEEP = {"Cast", "CastLike", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Transpose",
        "Concat", "Slice", "Gather", "Shape", "Size"}


def _param(params, i: int):
    if i < len(params):
        return params[i]
    if params and params[-1].option == params[-1].option.Variadic:
        return params[-1]
    return None


def _typed_like(node: Node, inputs: list[int], low: DType) -> Optional[list[int]]:
    """Outputs typed like the given inputs according to the ONNX schema; None when there is no schema, or when
    another output could also be of the low-precision type (its type then depends on something else)."""
    import onnx.defs
    try:
        schema = onnx.defs.get_schema(node.op_type, node.op.opset or onnx.defs.onnx_opset_version(),
                                      node.op.domain or "")
    except Exception:
        return None
    tins = set()
    for i in inputs:
        p = _param(schema.inputs, i)
        if p is None:
            return None
        tins.add(p.type_str)
    allowed = {tc.type_param_str: set(tc.allowed_type_strs) for tc in schema.type_constraints}
    out = []
    for k in range(len(node.outputs)):
        p = _param(schema.outputs, k)
        if p is None:
            return None
        if p.type_str in tins:
            out.append(k)
        elif low.ort_name in allowed.get(p.type_str, {p.type_str}):
            return None
    return out


def promote(graph: Graph, node: Node) -> Optional[Callable[[], None]]:
    """Rewrite `node` to compute in float (see the module doc). Returns a function to call once the node's
    outputs have their types (after inference or folding), or None when the node is left as it is."""
    if node.op_type in KEEP or node.op.domain:
        return None
    ins = [v for v in node.inputs if v is not None]
    lowp = [i for i, v in enumerate(node.inputs) if v is not None and v.dtype in PROMOTABLE]
    if not lowp or any(v.dtype is not None and v.dtype.is_lowp and v.dtype not in PROMOTABLE for v in ins):
        return None
    if len({node.inputs[i].dtype for i in lowp}) != 1:
        return None
    low = node.inputs[lowp[0]].dtype
    back = _typed_like(node, lowp, low)
    if back is None:
        return None
    from ..ops.cast import Cast
    idx = graph.nodes.index(node)

    def cast(to: DType):
        op = Cast(to=to.onnx)
        op.opset = node.op.opset
        return op

    for i in lowp:
        v = node.inputs[i]
        if v.const is not None:
            fv = Value(f"{v.name}_float", const=v.const.astype("float32"))  # exact
        else:
            fv = Value(f"{v.name}_float", DType.FLOAT, v.shape)
            graph.add_node(cast(DType.FLOAT), [v], [fv], f"{node.name}_input{i}_to_float", index=idx)
            idx += 1
        graph.set_input(node, i, fv)
    pairs = []
    for k in back:
        ov = node.outputs[k]
        fv = Value(f"{ov.name}_float")
        fv.producer = node
        node.outputs[k] = fv
        graph.add_node(cast(low), [fv], [ov], f"{node.name}_output{k}_to_{low.name.lower()}", index=idx + 1)
        pairs.append((fv, ov))

    def finish() -> None:
        for fv, ov in pairs:
            if fv.dtype is not None and fv.shape is not None:
                ov.dtype, ov.shape = low, fv.shape
    return finish
