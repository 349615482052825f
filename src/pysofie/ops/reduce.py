"""Reductions (ReduceSum, ReduceMean, ... over a set of axes), ArgMax/ArgMin and CumSum."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from .base import Op, norm_axis, register
from .elementwise import BOOLS, FLOATS, NUMERIC, check_types


class Reduce(Op):
    """Reduce over `axes` (an attribute before opset 18 / 13 for ReduceSum, the optional second input after)."""
    ATTRS = {"axes": None, "keepdims": 1, "noop_with_empty_axes": 0}
    INPUTS = ("data", "axes")
    OUTPUTS = ("reduced",)
    TYPES = NUMERIC

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], self.TYPES)
        v = node.input(1)
        if v is not None and v.const is None:
            p.append(f"{node.describe()}: axes input '{v.name}' must be known at generation time")
        return p

    def runtime_inputs(self, node):
        return [0]

    def reduced_axes(self, node) -> list[int]:
        """Sorted, normalized axes to reduce; [] means: nothing (noop_with_empty_axes=1)."""
        x = node.inputs[0]
        if self.attrs.get("axes") is not None:
            axes = [int(a) for a in self.axes]
        elif node.input(1) is not None:
            axes = [int(a) for a in np.asarray(node.input(1).const).reshape(-1)]
        else:
            axes = []
        if not axes:
            return [] if self.noop_with_empty_axes else list(range(x.rank))
        return sorted({norm_axis(a, x.rank, node) for a in axes})

    def infer(self, node):
        x = node.inputs[0]
        axes = set(self.reduced_axes(node))
        if self.keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return [(x.dtype, shape)]


for _n, _t in [("ReduceSum", NUMERIC), ("ReduceMean", NUMERIC), ("ReduceProd", NUMERIC), ("ReduceMax", NUMERIC | BOOLS),
               ("ReduceMin", NUMERIC | BOOLS), ("ReduceSumSquare", NUMERIC), ("ReduceL1", NUMERIC),
               ("ReduceL2", NUMERIC),
               ("ReduceLogSum", FLOATS), ("ReduceLogSumExp", FLOATS)]:
    register(_n)(type(_n, (Reduce,), {"TYPES": _t}))


class ArgReduce(Op):
    ATTRS = {"axis": 0, "keepdims": 1, "select_last_index": 0}
    INPUTS = ("data",)
    OUTPUTS = ("reduced",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], NUMERIC)

    def infer(self, node):
        x = node.inputs[0]
        a = norm_axis(self.axis, x.rank, node)
        shape = list(x.shape)
        if self.keepdims:
            shape[a] = 1
        else:
            del shape[a]
        return [(DType.INT64, tuple(shape))]


@register()
class ArgMax(ArgReduce):
    pass


@register()
class ArgMin(ArgReduce):
    pass


@register()
class CumSum(Op):
    ATTRS = {"exclusive": 0, "reverse": 0}
    INPUTS = ("x", "axis")
    OUTPUTS = ("y",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], NUMERIC)
        if node.inputs[1].const is None:
            p.append(f"{node.describe()}: the axis input '{node.inputs[1].name}' must be known at generation time")
        return p

    def runtime_inputs(self, node):
        return [0]

    def axis_of(self, node) -> int:
        return norm_axis(int(np.asarray(node.inputs[1].const).reshape(-1)[0]), node.inputs[0].rank, node)

    def infer(self, node):
        x = node.inputs[0]
        self.axis_of(node)
        return [(x.dtype, x.shape)]
