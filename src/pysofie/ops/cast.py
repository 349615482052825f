"""Type conversions: Cast and CastLike, between every element type pysofie knows (ir/dtypes.py).

Semantics (ONNX Cast, opsets 6-25): narrowing to float16 / bfloat16 / float8 / float4 rounds to nearest even;
float8 honours ``saturate`` (opset 19+: out-of-range and Inf go to the largest finite value, otherwise to Inf or
NaN as the type has them); float4e2m1 always saturates; to int4/uint4/int2/uint2 from a float truncates toward
zero and keeps the low bits (NaN/Inf give 0), from an integer keeps the low bits; to float8e8m0 (opset 24+)
rounds the float's exponent by ``round_mode`` (up, down, nearest) as onnx's reference does. STRING is not
supported.
"""
from __future__ import annotations

from onnx import TensorProto

from ..ir import DType
from .base import Op, register


def _type_name(code: int) -> str:
    return TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)


ROUND_MODES = ("up", "down", "nearest")


def _round_mode(op) -> str:
    m = op.round_mode
    return "up" if m is None else m.decode() if isinstance(m, bytes) else str(m)


def _problems(op, node, code) -> list[str]:
    p = []
    if code is not None:
        try:
            DType.from_onnx(int(code))
        except TypeError:
            p.append(f"{node.describe()}: cast to element type {_type_name(int(code))} is not supported")
    if _round_mode(op) not in ROUND_MODES:
        p.append(f"{node.describe()}: round_mode '{_round_mode(op)}' is not one of {', '.join(ROUND_MODES)}")
    return p


@register()
class Cast(Op):
    ATTRS = {"to": None, "saturate": 1, "round_mode": None}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def check(self, node):
        if self.to is None:
            return [f"{node.describe()}: attribute 'to' is missing"]
        return _problems(self, node, self.to)

    def rounding(self) -> str:
        return _round_mode(self)

    def infer(self, node):
        return [(DType.from_onnx(int(self.to)), node.inputs[0].shape)]

    def fold_symbolic(self, node):
        x = node.inputs[0]
        if x.sym is not None and DType.from_onnx(int(self.to)) in (DType.INT64, DType.INT32):
            return [list(x.sym)]
        return None


@register()
class CastLike(Op):
    ATTRS = {"saturate": 1, "round_mode": None}
    INPUTS = ("input", "target_type")
    OUTPUTS = ("output",)

    def check(self, node):
        return _problems(self, node, None)

    def rounding(self) -> str:
        return _round_mode(self)

    def runtime_inputs(self, node):
        return [0]

    def infer(self, node):
        return [(node.inputs[1].dtype, node.inputs[0].shape)]
