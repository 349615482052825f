"""Control flow. An If node reads its condition and the outputs of both branches, which the front end has
turned into ordinary nodes of the graph: with a constant condition the ResolveConstantIf pass forwards the
chosen branch and dead-code elimination drops the other; otherwise both branches run (they are pure) and the
node selects, which needs both to produce the same shapes."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from ..ir.shapes import dims_equal, numel
from .base import Op, register


@register()
class If(Op):
    INPUTS = ("cond", "branch*")
    OUTPUTS = ("output",)

    @classmethod
    def from_onnx(cls, attrs, opset):
        op = cls()  # the branches are already part of the graph (frontends/onnx.py)
        op.opset = opset
        return op

    def branches(self, node):
        n = len(node.outputs)
        return node.inputs[1:1 + n], node.inputs[1 + n:1 + 2 * n]

    def constant_condition(self, node):
        c = node.inputs[0].const
        return None if c is None else bool(np.asarray(c).reshape(-1)[0])

    def check(self, node):
        c = node.inputs[0]
        if c.dtype is not DType.BOOL or not dims_equal(numel(c.shape), 1):
            return [f"{node.describe()}: the condition must be a single bool, got {c!r}"]
        return []

    def folds(self, node):
        return False  # ResolveConstantIf forwards the chosen branch instead

    def infer(self, node):
        then_outs, else_outs = self.branches(node)
        chosen = self.constant_condition(node)
        if chosen is not None:
            return [(v.dtype, v.shape) for v in (then_outs if chosen else else_outs)]
        res = []
        for k, (t, e) in enumerate(zip(then_outs, else_outs)):
            if t.dtype != e.dtype or len(t.shape) != len(e.shape) or not all(
                    dims_equal(a, b) for a, b in zip(t.shape, e.shape)):
                raise self.fail(node, f"output {k}: the branches give {t!r} and {e!r}; with a condition known only "
                                      "at run time both must have the same type and shape")
            res.append((t.dtype, t.shape))
        return res
