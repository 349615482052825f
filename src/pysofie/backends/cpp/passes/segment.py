"""Message passing as exported from PyTorch Geometric (torch.onnx, scatter with reduce='sum' / 'mean'):

- ``ScatterElements(zeros [S, F...], Expand(Reshape(idx [E] -> [E, 1]), [E, F...]) | idx, updates [E, F...],
  axis=0, reduction='add')`` -> ``SegmentReduce(updates, idx, num_segments=S, reduction='sum')``
  (ops/gnn.py): one index read and checked per row instead of per element, and neither the [E, F] index tensor
  (Expand) nor the zeros are materialized. Negative indices keep ONNX's meaning (counted from the end).
- ``SegmentReduce(Gather(x, rows, axis=0), ids)`` whose gathered rows are read only there ->
  ``SegmentReduce(x, ids, rows)``: each message row is read from x where it lies, never copied into an [E, F]
  tensor (negative rows keep Gather's meaning).
- ``Slice`` that keeps every element (start 0, step 1, stop the axis's size: PyG's ``src.narrow`` to the
  index length) -> its input (no copy).
"""
from __future__ import annotations

import numpy as np

from ....ir import Graph
from ....ir.shapes import dims_equal
from ....passes.manager import Pass
from ....passes.rewrites import _clone_op, _replace, _single_internal_use


def _zeros(v) -> bool:
    """v is all zeros: a constant, or a ConstantOfShape of 0."""
    if v.const is not None:
        return not np.any(np.asarray(v.const))
    p = v.producer
    if p is None or p.op_type != "ConstantOfShape":
        return False
    val = p.op.value
    return val is None or not np.any(np.asarray(val))


def _row_index(v, rows):
    """The 1-D index (one per row) that v repeats along its trailing axes: v itself when 1-D, or
    Expand(Reshape(idx, [E, 1, ...]), [E, F, ...]) of a 1-D idx; else None."""
    if v.rank == 1:
        return v if dims_equal(v.shape[0], rows) else None
    p = v.producer
    if p is None or p.op_type != "Expand":
        return None
    r = p.inputs[0]
    if r.rank != v.rank or not all(d == 1 for d in r.shape[1:]) or not dims_equal(r.shape[0], rows):
        return None
    q = r.producer
    if q is None or q.op_type not in ("Reshape", "Unsqueeze"):
        return None
    idx = q.inputs[0]
    return idx if idx.rank == 1 and dims_equal(idx.shape[0], rows) else None


class ScatterAddToSegmentSum(Pass):
    name = "scatter-add-to-segment-sum"

    def __call__(self, graph: Graph) -> bool:
        from ....ops.gnn import SegmentReduce
        changed = False
        for n in list(graph.nodes):
            if n not in graph.nodes:
                continue
            if n.op_type == "Slice":
                changed |= self._identity_slice(graph, n)
                continue
            if n.op_type == "SegmentReduce":
                changed |= self._fuse_gather(graph, n)
                continue
            if n.op_type != "ScatterElements" or n.op.reduction != "add" or len(n.inputs) != 3:
                continue
            data, ind, upd = n.inputs
            if data is None or ind is None or upd is None or data.rank < 1:
                continue
            ax = n.op.axis + data.rank if n.op.axis < 0 else n.op.axis
            if ax != 0 or upd.rank != data.rank or tuple(ind.shape) != tuple(upd.shape) \
                    or not all(dims_equal(a, b) for a, b in zip(upd.shape[1:], data.shape[1:])) \
                    or upd.dtype is not data.dtype or not _zeros(data):
                continue
            idx = _row_index(ind, upd.shape[0])
            if idx is None:
                continue
            op = SegmentReduce(reduction="sum", num_segments=data.shape[0], what=f"{n.name}: indices",
                               negative="wrap")
            _replace(graph, [n], op, [upd, idx], n.outputs[0], n.name + "_segment_sum")
            changed = True
        return changed

    @staticmethod
    def _fuse_gather(graph, n) -> bool:
        data = n.inputs[0]
        g = data.producer
        if n.input(1) is None or n.input(2) is not None or g is None or g.op_type != "Gather" \
                or not _single_internal_use(graph, data):
            return False
        x, rows = g.inputs
        if x is None or rows is None or rows.rank != 1 or x.rank < 1 or x.rank != data.rank \
                or (g.op.axis + x.rank if g.op.axis < 0 else g.op.axis) != 0:
            return False
        op = _clone_op(n.op)
        op.attrs["rows_what"] = f"{g.name}: indices"
        y = n.outputs[0]
        index = graph.nodes.index(n)
        graph.remove_node(n)
        graph.remove_node(g)
        graph.add_node(op, [x, n.inputs[1], rows], [y], n.name, index=index - 1)
        return True

    @staticmethod
    def _identity_slice(graph, n) -> bool:
        x, y = n.inputs[0], n.outputs[0]
        if x is None or graph.is_output(y) or x.shape is None or y.shape is None or len(x.shape) != len(y.shape):
            return False
        try:
            params = n.op.params(n)
        except Exception:  # bounds the slice cannot resolve: left to the generated code's checks
            return False
        for (st, en, sp), d in zip(params, x.shape):
            if not (isinstance(st, int) and st == 0 and sp == 1 and dims_equal(en, d)):
                return False
        graph.replace_all_uses_with(y, x)
        graph.remove_node(n)
        return True
