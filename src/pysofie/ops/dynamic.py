"""Operators whose output sizes the data decides at run time (see Op.runtime_sizes): Unique and
NonMaxSuppression. (NonZero, Compress with a run-time condition and TopK with a run-time K live with their
families.) Each names its run-time size with runtime_symbol and gives an upper bound, by which the generated
code sizes its buffers."""
from __future__ import annotations

from ..ir import DType
from ..ir.shapes import Sym, numel
from .base import Op, norm_axis, register, runtime_symbol
from .elementwise import ALL, check_types


@register()
class Unique(Op):
    ATTRS = {"axis": None, "sorted": 1}
    INPUTS = ("X",)
    OUTPUTS = ("Y", "indices", "inverse_indices", "counts")

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], ALL)

    def extent(self, node):
        x = node.inputs[0]
        return numel(x.shape) if self.axis is None else x.shape[norm_axis(self.axis, x.rank, node)]

    def runtime_sizes(self, node):
        return {runtime_symbol(node): self.extent(node)}

    def folds(self, node):
        return True

    def infer(self, node):
        x = node.inputs[0]
        r = Sym.var(runtime_symbol(node))
        if self.axis is None:
            y = (r,)
        else:
            a = norm_axis(self.axis, x.rank, node)
            y = tuple(x.shape[:a]) + (r,) + tuple(x.shape[a + 1:])
        return [(x.dtype, y), (DType.INT64, (r,)), (DType.INT64, (self.extent(node),)), (DType.INT64, (r,))]
