"""Normalizations and Softmax."""
from __future__ import annotations

from .base import REQUIRED, Op, norm_axis, register


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

    def folds(self, node):
        # generation-time evaluation uses the latest opset, whose axis semantics differ before opset 13
        return not (0 < self.opset < 13)


@register()
class Softmax(SoftmaxBase):
    pass


@register()
class LogSoftmax(SoftmaxBase):
    pass


@register()
class Hardmax(SoftmaxBase):
    pass


# -- operator coverage: layer / instance / group / Lp / mean-variance normalization and LRN ---------------------
def _float_only(node, names=None) -> list[str]:
    p = []
    for v in node.inputs:
        if v is not None and v.dtype is not None and not v.dtype.is_float:
            p.append(f"{node.describe()}: input '{v.name}' has element type {v.dtype.name.lower()} "
                     "(float and double only)")
    return p


@register()
class LayerNormalization(Op):
    ATTRS = {"axis": -1, "epsilon": 1e-5, "stash_type": 1}
    INPUTS = ("X", "Scale", "B")
    OUTPUTS = ("Y", "Mean", "InvStdDev")

    def check(self, node):
        p = _float_only(node)
        if self.stash_type != 1:
            p.append(f"{node.describe()}: stash_type={self.stash_type} is not supported (1: float)")
        return p

    def axis_of(self, node):
        return norm_axis(self.axis, node.inputs[0].rank, node)

    def infer(self, node):
        x = node.inputs[0]
        a = self.axis_of(node)
        stat = tuple(x.shape[:a]) + (1,) * (x.rank - a)
        norm = list(x.shape[a:])
        for k in (1, 2):
            v = node.input(k)
            if v is None:
                continue
            dims = list(v.shape) if v.shape is not None else []
            if v.rank > x.rank - a or any(isinstance(d, int) and isinstance(n, int) and d != 1 and d != n
                                          for d, n in zip(dims[::-1], norm[::-1])):
                raise self.fail(node, f"'{v.name}' {v!r} does not broadcast to the normalized shape {norm}")
        return [(x.dtype, x.shape), (x.dtype, stat), (x.dtype, stat)][:len(node.outputs)]


@register()
class InstanceNormalization(Op):
    ATTRS = {"epsilon": 1e-5}
    INPUTS = ("input", "scale", "B")
    OUTPUTS = ("output",)

    def check(self, node):
        p = _float_only(node)
        if node.inputs[0].rank < 2:
            p.append(f"{node.describe()}: input must have rank >= 2")
        return p

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class GroupNormalization(Op):
    """Opset 18: scale and bias per group; opset 21: per channel."""
    ATTRS = {"epsilon": 1e-5, "num_groups": REQUIRED, "stash_type": 1}
    INPUTS = ("X", "scale", "bias")
    OUTPUTS = ("Y",)

    def check(self, node):
        p = _float_only(node)
        x = node.inputs[0]
        c = x.shape[1] if x.rank >= 2 else None
        if int(self.num_groups) < 1:
            p.append(f"{node.describe()}: num_groups={self.num_groups} must be at least 1")
        elif not isinstance(c, int):
            p.append(f"{node.describe()}: the channel dimension must be known")
        elif c % int(self.num_groups):
            p.append(f"{node.describe()}: {c} channels do not divide into {self.num_groups} groups")
        if self.stash_type != 1:
            p.append(f"{node.describe()}: stash_type={self.stash_type} is not supported (1: float)")
        return p

    def per_channel(self, node) -> bool:
        return not (0 < self.opset < 21)

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class LpNormalization(Op):
    ATTRS = {"axis": -1, "p": 2}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def check(self, node):
        p = _float_only(node)
        if self.p not in (1, 2):
            p.append(f"{node.describe()}: p={self.p} is not supported (1 or 2)")
        return p

    def infer(self, node):
        x = node.inputs[0]
        norm_axis(self.axis, x.rank, node)
        return [(x.dtype, x.shape)]


@register()
class MeanVarianceNormalization(Op):
    ATTRS = {"axes": [0, 2, 3]}
    INPUTS = ("X",)
    OUTPUTS = ("Y",)

    def check(self, node):
        return _float_only(node)

    def axes_of(self, node):
        return sorted({norm_axis(int(a), node.inputs[0].rank, node) for a in self.axes})

    def infer(self, node):
        x = node.inputs[0]
        self.axes_of(node)
        return [(x.dtype, x.shape)]


@register()
class LRN(Op):
    ATTRS = {"alpha": 1e-4, "beta": 0.75, "bias": 1.0, "size": REQUIRED}
    INPUTS = ("X",)
    OUTPUTS = ("Y",)

    def check(self, node):
        p = _float_only(node)
        if node.inputs[0].rank < 3:
            p.append(f"{node.describe()}: input must have rank >= 3 (N, C, D1, ...)")
        return p

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]
