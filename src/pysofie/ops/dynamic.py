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


@register()
class NonMaxSuppression(Op):
    """Selected boxes as rows (batch, class, box): their number is a run-time size, at most batches * classes *
    boxes. Constant inputs fold at generation time."""
    ATTRS = {"center_point_box": 0}
    INPUTS = ("boxes", "scores", "max_output_boxes_per_class", "iou_threshold", "score_threshold")
    OUTPUTS = ("selected_indices",)

    def check(self, node):
        b, s = node.inputs[0], node.inputs[1]
        problems = check_types(node, [b.dtype, s.dtype], {DType.FLOAT, DType.DOUBLE})
        if b.dtype is not s.dtype:
            problems.append(f"{node.describe()}: boxes and scores must have the same type")
        if int(self.center_point_box) not in (0, 1):
            problems.append(f"{node.describe()}: center_point_box must be 0 or 1")
        return problems

    def runtime_inputs(self, node):
        return [i for i, v in enumerate(node.inputs) if v is not None]

    def runtime_sizes(self, node):
        b, s = node.inputs[0], node.inputs[1]
        return {runtime_symbol(node): numel((b.shape[0], s.shape[1], b.shape[1]))}

    def infer(self, node):
        b, s = node.inputs[0], node.inputs[1]
        if b.rank != 3 or s.rank != 3 or not isinstance(b.shape[2], int) or b.shape[2] != 4:
            raise self.fail(node, f"expected boxes [B, N, 4] and scores [B, C, N], got {list(b.shape)}, "
                            f"{list(s.shape)}")
        return [(DType.INT64, (Sym.var(runtime_symbol(node)), 3))]
