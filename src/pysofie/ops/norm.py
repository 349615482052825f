"""Normalizations and Softmax."""
from __future__ import annotations

from .base import Op, norm_axis, register


@register()
class BatchNormalization(Op):
    ATTRS = {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0, "spatial": None, "is_test": None,
             "consumed_inputs": None}
    INPUTS = ("X", "scale", "B", "input_mean", "input_var")

    def check(self, node):
        p = []
        if self.training_mode:
            p.append(f"{node.describe()}: training_mode=1 is not supported (inference only)")
        if len(node.outputs) > 1:
            p.append(f"{node.describe()}: running mean/var outputs (training) are not supported")
        if not node.inputs[0].dtype.is_float:
            p.append(f"{node.describe()}: element type {node.inputs[0].dtype.name.lower()} is not supported")
        if self.spatial == 0:
            p.append(f"{node.describe()}: spatial=0 is not supported")
        return p

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


class SoftmaxBase(Op):
    ATTRS = {"axis": -1}
    OUTPUTS = ("output",)
    INPUTS = ("input",)

    def check(self, node):
        if not node.inputs[0].dtype.is_float:
            return [f"{node.describe()}: element type {node.inputs[0].dtype.name.lower()} is not supported"]
        return []

    def axis_for(self, node):
        """(axis, coerce_2d): before opset 13 Softmax flattens to 2-D at `axis` (default 1)."""
        x = node.inputs[0]
        return norm_axis(self.axis, x.rank, node), 0 < self.opset < 13

    @classmethod
    def from_onnx(cls, attrs, opset):
        if opset < 13 and "axis" not in attrs:
            attrs = dict(attrs, axis=1)  # the default before opset 13
        return super().from_onnx(attrs, opset)

    def infer(self, node):
        x = node.inputs[0]
        self.axis_for(node)
        return [(x.dtype, x.shape)]


@register()
class Softmax(SoftmaxBase):
    pass
