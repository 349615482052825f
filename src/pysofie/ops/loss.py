"""Loss functions: SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (reduction none / sum / mean,
optional class weights, ignore_index)."""
from __future__ import annotations

from ..ir import DType
from .base import Op, register
from .elementwise import FLOATS, check_types

_INDEX_TYPES = frozenset({DType.INT32, DType.INT64})


class _Loss(Op):
    ATTRS = {"ignore_index": None, "reduction": "mean"}

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], FLOATS)
        p += check_types(node, [node.inputs[1].dtype], _INDEX_TYPES, "label element type")
        w = node.input(2)
        if w is not None:
            p += check_types(node, [w.dtype], FLOATS, "weight element type")
        if self.reduction not in ("none", "sum", "mean"):
            p.append(f"{node.describe()}: reduction '{self.reduction}' is not supported (none, sum, mean)")
        return p

    def infer(self, node):
        x, lab = node.inputs[0], node.inputs[1]
        if x.rank < 2:
            raise self.fail(node, f"input must have rank >= 2 (N, C, ...), got shape {list(x.shape)}")
        want = (x.shape[0],) + tuple(x.shape[2:])
        if lab.rank != len(want):
            raise self.fail(node, f"labels shape {list(lab.shape)} does not match input shape {list(x.shape)}")
        w = node.input(2)
        if w is not None and w.rank != 1:
            raise self.fail(node, f"weights must be 1-D (C), got shape {list(w.shape)}")
        shape = want if self.reduction == "none" else ()
        return [(x.dtype, shape)]


@register()
class NegativeLogLikelihoodLoss(_Loss):
    INPUTS = ("input", "target", "weight")
    OUTPUTS = ("loss",)


@register()
class SoftmaxCrossEntropyLoss(_Loss):
    INPUTS = ("scores", "labels", "weights")
    OUTPUTS = ("output", "log_prob")

    def infer(self, node):
        out = super().infer(node)
        x = node.inputs[0]
        return out + [(x.dtype, x.shape)] * (len(node.outputs) - 1)
