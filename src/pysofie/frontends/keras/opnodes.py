"""Keras 3 operation nodes: a ``keras.ops`` function applied to symbolic tensors in a functional model becomes a
"layer" of its own in the file (module ``keras.src.ops.numpy`` / ``keras.src.ops.nn``; class names such as Add,
Multiply, TrueDivide, Clip, Mean). Python numbers are operands as well as tensors (``x + 3.0``, ``2.0 - x``,
``x * (1 / 6)``: the hard-sigmoid blocks of MobileNetV3). Arguments are in the node's config (recent Keras) or in
its positional arguments (older Keras 3)."""
from __future__ import annotations

from numbers import Number

import numpy as np

from ...ir import DType, Value
from .builder import _Builder, _Ctx, _LayerProblem, _shape

OPS_MODULES = ("keras.src.ops", "keras.ops")


def _operands(inputs) -> list:
    return list(inputs) if isinstance(inputs, list) else [inputs]


def _tensor(inputs) -> tuple[Value, list]:
    """The first operand, which must be a tensor, and the others (numbers, lists...)."""
    xs = _operands(inputs)
    if not xs or not isinstance(xs[0], Value):
        raise _LayerProblem(f"expects a tensor as first operand, got {xs[0]!r}" if xs else "has no operand")
    return xs[0], xs[1:]


def _arg(cfg: dict, rest: list, kw: dict, name: str, pos: int, default=None):
    """An op argument: from the config (recent Keras), the call's keywords, or its positional arguments."""
    if name in cfg:
        return cfg[name]
    if name in kw:
        return kw[name]
    if pos < len(rest):
        return rest[pos]
    return default


def _is_number(x) -> bool:
    return isinstance(x, (Number, np.number)) or (
        isinstance(x, list) and all(_is_number(v) for v in x))


def _common_dtype(xs: list, force_float: bool = False) -> DType:
    """Keras' result type: a float tensor's type; a Python float with integer tensors gives float32."""
    tensors = [x for x in xs if isinstance(x, Value)]
    for x in tensors:
        if x.dtype is not None and x.dtype.is_float:
            return x.dtype
    has_float_number = any(_is_number(x) and np.asarray(x).dtype.kind == "f" for x in xs)
    if force_float or has_float_number or not tensors or tensors[0].dtype is None:
        return DType.FLOAT
    return tensors[0].dtype


def _as_values(b: _Builder, xs: list, dt: DType) -> list[Value]:
    out = []
    for x in xs:
        if isinstance(x, Value):
            out.append(x if x.dtype is dt else b.op("Cast", [x], to=int(dt.onnx)))
        elif _is_number(x):
            out.append(b.const(np.asarray(x, dtype=dt.np), dtype=None))
        else:
            raise _LayerProblem(f"operand {x!r} is neither a tensor nor a number")
    return out


def _binary(onnx_op: str, force_float: bool = False):
    def conv(ctx: _Ctx, cfg, inputs, kw):
        xs = _operands(inputs)
        if len(xs) != 2:
            raise _LayerProblem(f"expects two operands, got {len(xs)}")
        if not any(isinstance(x, Value) for x in xs):
            raise _LayerProblem("has no tensor operand")
        dt = _common_dtype(xs, force_float)
        return [ctx.b.op(onnx_op, _as_values(ctx.b, xs, dt))]
    return conv


def _unary(build):
    def conv(ctx: _Ctx, cfg, inputs, kw):
        x, rest = _tensor(inputs)
        return [build(ctx.b, x, cfg, rest, kw)]
    return conv


def _hard_sigmoid(b: _Builder, x: Value) -> Value:
    return b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)  # keras: relu6(x + 3) / 6


def _clip(b: _Builder, x: Value, cfg, rest, kw) -> Value:
    lo, hi = _arg(cfg, rest, kw, "x_min", 0), _arg(cfg, rest, kw, "x_max", 1)
    if not (_is_number(lo) and _is_number(hi)):
        raise _LayerProblem("clip bounds must be numbers")
    dt = x.dtype or DType.FLOAT
    return b.op("Clip", [x, b.const(np.asarray(lo, dt.np), dtype=None), b.const(np.asarray(hi, dt.np), dtype=None)])


def _reduce(onnx_op: str):
    def build(b: _Builder, x: Value, cfg, rest, kw) -> Value:
        axis = _arg(cfg, rest, kw, "axis", 0)
        keep = bool(_arg(cfg, rest, kw, "keepdims", 1, False))
        axes = list(range(len(_shape(x)))) if axis is None else (
            [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)])
        return b.op(onnx_op, [x], axes=axes, keepdims=int(keep))
    return _unary(build)


def _reshape(b: _Builder, x: Value, cfg, rest, kw) -> Value:
    shape = _arg(cfg, rest, kw, "newshape", 0)
    if shape is None:
        shape = _arg(cfg, rest, kw, "new_shape", 0)
    if not (isinstance(shape, (list, tuple)) and all(isinstance(d, int) for d in shape)) or 0 in shape:
        raise _LayerProblem(f"reshape to {shape!r} is not supported (a list of sizes, -1 for one of them)")
    return b.reshape(x, list(shape))


def _transpose(b: _Builder, x: Value, cfg, rest, kw) -> Value:
    axes = _arg(cfg, rest, kw, "axes", 0)
    r = len(_shape(x))
    perm = list(range(r))[::-1] if axes is None else [int(a) % r for a in axes]
    return b.transpose(x, perm)


def _axis_list(cfg, rest, kw, name="axis") -> list[int]:
    axis = _arg(cfg, rest, kw, name, 0)
    if axis is None:
        raise _LayerProblem(f"needs '{name}'")
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)]


def _expand_dims(b: _Builder, x: Value, cfg, rest, kw) -> Value:
    r = len(_shape(x)) + 1
    return b.unsqueeze(x, [a % r for a in _axis_list(cfg, rest, kw)])


def _squeeze(b: _Builder, x: Value, cfg, rest, kw) -> Value:
    axis = _arg(cfg, rest, kw, "axis", 0)
    if axis is None:
        return b.op("Squeeze", [x])
    return b.squeeze(x, _axis_list(cfg, rest, kw))


def _softmax(b: _Builder, x: Value, cfg, rest, kw) -> Value:
    return b.op("Softmax", [x], axis=int(_arg(cfg, rest, kw, "axis", 0, -1)))


def _concatenate(ctx: _Ctx, cfg, inputs, kw):
    xs = _operands(inputs)
    if len(xs) == 1 and isinstance(xs[0], list):
        xs = xs[0]
    if not xs or not all(isinstance(x, Value) for x in xs):
        raise _LayerProblem("concatenates tensors only")
    return [ctx.b.op("Concat", xs, axis=int(cfg.get("axis", kw.get("axis", 0))))]


def _matmul(ctx: _Ctx, cfg, inputs, kw):
    xs = _operands(inputs)
    if len(xs) != 2 or not all(isinstance(x, Value) for x in xs):
        raise _LayerProblem("expects two tensors")
    return [ctx.b.op("MatMul", xs)]


def _simple(onnx_op: str, **attrs):
    return _unary(lambda b, x, cfg, rest, kw: b.op(onnx_op, [x], **attrs))


# class name in the file -> converter. Names as Keras 3 writes them for keras.ops.numpy / keras.ops.nn.
OPS = {
    "Add": _binary("Add"), "Subtract": _binary("Sub"), "Multiply": _binary("Mul"),
    "Divide": _binary("Div", force_float=True), "TrueDivide": _binary("Div", force_float=True),
    "Power": _binary("Pow"), "Maximum": _binary("Max"), "Minimum": _binary("Min"),
    "Matmul": _matmul, "Concatenate": _concatenate,
    "Absolute": _simple("Abs"), "Abs": _simple("Abs"), "Negative": _simple("Neg"), "Sqrt": _simple("Sqrt"),
    "Square": _unary(lambda b, x, cfg, rest, kw: b.op("Mul", [x, x])),
    "Exp": _simple("Exp"), "Log": _simple("Log"), "Tanh": _simple("Tanh"), "Floor": _simple("Floor"),
    "Ceil": _simple("Ceil"), "Reciprocal": _simple("Reciprocal"), "Sin": _simple("Sin"), "Cos": _simple("Cos"),
    "Erf": _simple("Erf"), "Sign": _simple("Sign"),
    "Sigmoid": _simple("Sigmoid"), "Relu": _simple("Relu"), "Softplus": _simple("Softplus"),
    "Softsign": _simple("Softsign"),
    "Relu6": _unary(lambda b, x, cfg, rest, kw: _clip(b, x, {"x_min": 0.0, "x_max": 6.0}, [], {})),
    "Silu": _unary(lambda b, x, cfg, rest, kw: b.op("Mul", [x, b.op("Sigmoid", [x])])),
    "Swish": _unary(lambda b, x, cfg, rest, kw: b.op("Mul", [x, b.op("Sigmoid", [x])])),
    "HardSigmoid": _unary(lambda b, x, cfg, rest, kw: _hard_sigmoid(b, x)),
    "HardSilu": _unary(lambda b, x, cfg, rest, kw: b.op("Mul", [x, _hard_sigmoid(b, x)])),
    "HardSwish": _unary(lambda b, x, cfg, rest, kw: b.op("Mul", [x, _hard_sigmoid(b, x)])),
    "Softmax": _unary(_softmax), "Clip": _unary(_clip),
    "Mean": _reduce("ReduceMean"), "Sum": _reduce("ReduceSum"), "Max": _reduce("ReduceMax"),
    "Min": _reduce("ReduceMin"), "Prod": _reduce("ReduceProd"),
    "Reshape": _unary(_reshape), "Transpose": _unary(_transpose), "ExpandDims": _unary(_expand_dims),
    "Squeeze": _unary(_squeeze),
}


def is_op_node(layer: dict) -> bool:
    """An operation node: by its module (.keras files), or in a Keras 3 legacy .h5 file, which keeps no module,
    by a configuration without the 'trainable' flag that every layer's configuration has, called the Keras 3 way
    (Keras 2 files, whose calls are lists, have no operation nodes)."""
    module = layer.get("module")
    if module:
        return str(module).startswith(OPS_MODULES)
    cfg = layer.get("config")
    calls = layer.get("inbound_nodes") or []
    return (layer.get("class_name") in OPS and isinstance(cfg, dict) and "trainable" not in cfg
            and bool(calls) and all(isinstance(c, dict) for c in calls))
