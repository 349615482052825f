"""Graph-network operators (domain ``pysofie``): the message-passing primitives that ONNX spells only through
Gather/ScatterElements on full-size buffers.

- ``GatherRows(X[N, ...], indices[E]) -> [E, ...]``: rows of X picked by an index per edge (senders/receivers),
  every index range-checked; ``what`` names the index input in the error.
- ``SegmentReduce(data[E, ...], segment_ids[E]) -> [num_segments, ...]``: one pass over the rows, each added
  (max, min, multiplied, averaged) into its segment; segments that receive no row hold TensorFlow's value for an
  empty segment (0 for sum and mean, 1 for prod, the lowest / highest finite value for max / min). Without
  segment_ids every row goes to segment 0 (one graph).
- ``SegmentIds(counts[G]) -> [total]``: the segment (graph) index of every row from the number of rows per
  segment (a GraphsTuple's n_node / n_edge); counts are checked (non-negative, summing to ``total``).

Sizes such as ``num_segments`` and ``total`` are dims (ints or symbols: the number of nodes, edges, graphs).
"""
from __future__ import annotations

from ..ir import DType
from ..ir.shapes import Sym, dims_equal
from .base import REQUIRED, Op, register
from .elementwise import INT3264, NUMERIC, check_types

REDUCTIONS = ("sum", "mean", "max", "min", "prod")


def _dim(d):
    return d if isinstance(d, Sym) else int(d)


class _GnnOp(Op):
    def folds(self, node):
        return False  # no reference implementation: evaluated by the generated code only


@register("GatherRows", domain="pysofie")
class GatherRows(_GnnOp):
    """Y = X[indices] (+ base when given: a per-node product added to a per-edge one, see frontends/gnn)."""
    ATTRS = {"what": "indices"}
    INPUTS = ("X", "indices", "base")
    OUTPUTS = ("Y",)

    def check(self, node):
        return check_types(node, [node.inputs[1].dtype], INT3264)

    def infer(self, node):
        x, idx, base = node.inputs[0], node.inputs[1], node.input(2)
        if idx.rank != 1 or x.rank < 1:
            raise self.fail(node, f"expects X of rank >= 1 and 1-D indices, got {x.shape} and {idx.shape}")
        shape = (idx.shape[0],) + tuple(x.shape[1:])
        if base is not None and (base.dtype != x.dtype or len(base.shape) != len(shape)
                                 or not all(dims_equal(a, b) for a, b in zip(base.shape, shape))):
            raise self.fail(node, f"base {base.shape} does not match the gathered rows {shape}")
        return [(x.dtype, shape)]


@register("SegmentReduce", domain="pysofie")
class SegmentReduce(_GnnOp):
    # negative: "error" (TensorFlow's segment ops) or "wrap" (ONNX ScatterElements: -1 is the last segment)
    # rows (optional): data[rows[e]] is row e (a gather fused in: backends/cpp/passes/segment.py), negative rows
    # counted from the end as ONNX's Gather does; rows_what names that index in errors
    ATTRS = {"reduction": "sum", "num_segments": REQUIRED, "what": "segment_ids", "negative": "error",
             "rows_what": "rows"}
    INPUTS = ("data", "segment_ids", "rows")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], NUMERIC)
        for k in (1, 2):
            if node.input(k) is not None:
                p += check_types(node, [node.inputs[k].dtype], INT3264)
        if self.reduction not in REDUCTIONS:
            p.append(f"{node.describe()}: reduction '{self.reduction}' is not one of {REDUCTIONS}")
        if self.negative not in ("error", "wrap"):
            p.append(f"{node.describe()}: negative='{self.negative}' is not 'error' or 'wrap'")
        return p

    def infer(self, node):
        x, ids = node.inputs[0], node.input(1)
        if x.rank < 1:
            raise self.fail(node, "data must have rank >= 1")
        if ids is not None and (ids.rank != 1):
            raise self.fail(node, f"segment_ids must be 1-D, got shape {ids.shape}")
        rows = node.input(2)
        if rows is not None and (rows.rank != 1 or ids is None or not dims_equal(rows.shape[0], ids.shape[0])):
            raise self.fail(node, f"rows must be 1-D with one index per segment id, got {rows.shape}")
        if ids is None and not (isinstance(self.num_segments, int) and self.num_segments == 1):
            raise self.fail(node, "without segment_ids there is one segment")
        return [(x.dtype, (_dim(self.num_segments),) + tuple(x.shape[1:]))]


@register("SegmentIds", domain="pysofie")
class SegmentIds(_GnnOp):
    ATTRS = {"total": REQUIRED, "what": "counts", "rows": "rows"}
    INPUTS = ("counts",)
    OUTPUTS = ("ids",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], INT3264)

    def infer(self, node):
        c = node.inputs[0]
        if c.rank != 1:
            raise self.fail(node, f"counts must be 1-D, got shape {c.shape}")
        return [(DType.INT32 if c.dtype == DType.INT32 else DType.INT64, (_dim(self.total),))]


@register("RowMLP", domain="pysofie")
class RowMLP(_GnnOp):
    """A chain of dense layers run by blocks of rows (backends/cpp/passes/row_mlp.py): ``spec`` = {direct: p, gather: q,
    rows: r, adds: a (0 when absent), ks: [K of each direct input], layers: [{N, act}], ln_eps: float or None,
    whats: [index names]}. Inputs: X_1..X_p [M, K_i], tables T_1..T_q [*, N_1], indices I_1..I_q [M], rows
    R_1..R_r [1, N_1], addends A_1..A_a [M, N_1], packed W_1..W_p, bias_1 (padded), then (packed W, padded bias) of
    every further layer, then LayerNorm scale and bias when ln_eps is set, then for each layer index in wt (when
    present) that layer's weights as rows of W^T [N, K padded to 8] (read by the batch-of-one path).
    Layer 1 = act(sum_i X_i W_i + sum_j T_j[I_j] + sum_k R_k + sum_l A_l + bias_1); Y [M, N_last]."""
    ATTRS = {"spec": REQUIRED}
    INPUTS = ("inputs*",)
    OUTPUTS = ("Y",)

    def infer(self, node):
        s = self.spec
        p, q, a = s["direct"], s["gather"], s.get("adds", 0)
        if p + q + a < 1:
            raise self.fail(node, "needs a row input, a gathered table or an addend")
        rows = node.inputs[0].shape[0] if p else node.inputs[p + q].shape[0] if q else \
            node.inputs[p + 2 * q + s["rows"]].shape[0]
        return [(DType.FLOAT, (_dim(rows), int(s["layers"][-1]["N"])))]
