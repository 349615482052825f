"""Indexing and layout operators (Expand, Tile, Pad, Gather*/Scatter*, Split, TopK, OneHot, Einsum, Resize, ...)."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from ..ir.shapes import Sym, dims_equal, numel
from .base import Op, norm_axis, register
from .elementwise import ALL, FLOATS, INT3264, NUMERIC, broadcast_shapes, check_types

INDEX_TYPES = INT3264


def _ints(a) -> list[int]:
    return [int(x) for x in np.asarray(a).reshape(-1)]


def _static(node, op, shape, what="dimension"):
    for d in shape:
        if isinstance(d, Sym):
            raise op.fail(node, f"the {what} {d} must be known at generation time")


@register()
class Expand(Op):
    INPUTS = ("input", "shape")
    OUTPUTS = ("output",)

    def runtime_inputs(self, node):
        return [0]

    def infer(self, node):
        x = node.inputs[0]
        target = self.shape_input(node, 1)
        return [(x.dtype, broadcast_shapes(node, [x.shape, tuple(target)]))]


@register()
class Tile(Op):
    INPUTS = ("input", "repeats")
    OUTPUTS = ("output",)

    def runtime_inputs(self, node):
        return [0]

    def repeats(self, node):
        r = _ints(self.const_input(node, 1, "repeats"))
        if len(r) != node.inputs[0].rank or any(k < 0 for k in r):
            raise self.fail(node, f"repeats {r} do not match rank {node.inputs[0].rank}")
        return r

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, tuple(d * k for d, k in zip(x.shape, self.repeats(node))))]


@register()
class Pad(Op):
    """Pads as an attribute (opset < 11) or an input; modes constant, reflect, edge, wrap."""
    ATTRS = {"mode": "constant", "pads": None, "value": 0.0}
    INPUTS = ("data", "pads", "constant_value", "axes")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], ALL)
        if self.mode not in ("constant", "reflect", "edge", "wrap"):
            p.append(f"{node.describe()}: mode '{self.mode}' is not supported")
        return p

    def runtime_inputs(self, node):
        return [0] + ([2] if node.input(2) is not None else [])

    def pads_of(self, node) -> list[tuple[int, int]]:
        x = node.inputs[0]
        r = x.rank
        if node.input(1) is not None:
            raw = _ints(self.const_input(node, 1, "pads"))
        elif self.pads is not None:
            raw = [int(v) for v in self.pads]
        else:
            raise self.fail(node, "no pads")
        axes = list(range(r))
        if node.input(3) is not None:
            axes = [norm_axis(a, r, node) for a in _ints(self.const_input(node, 3, "axes"))]
        if len(raw) != 2 * len(axes):
            raise self.fail(node, f"{len(raw)} pads for {len(axes)} axes")
        res = [(0, 0)] * r
        for k, a in enumerate(axes):
            res[a] = (raw[k], raw[k + len(axes)])
        for a, (b, e) in enumerate(res):
            if (b or e) and isinstance(x.shape[a], Sym):
                raise self.fail(node, f"padding the symbolic dimension {x.shape[a]} is not supported")
        return res

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, tuple(d + b + e if (b or e) else d for d, (b, e) in zip(x.shape, self.pads_of(node))))]


@register()
class GatherElements(Op):
    ATTRS = {"axis": 0}
    INPUTS = ("data", "indices")
    OUTPUTS = ("output",)

    def check(self, node):
        return check_types(node, [node.inputs[1].dtype], INDEX_TYPES, "index type")

    def infer(self, node):
        x, idx = node.inputs[0], node.inputs[1]
        norm_axis(self.axis, x.rank, node)
        if idx.rank != x.rank:
            raise self.fail(node, "data and indices must have the same rank")
        return [(x.dtype, idx.shape)]


@register()
class GatherND(Op):
    ATTRS = {"batch_dims": 0}
    INPUTS = ("data", "indices")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[1].dtype], {DType.INT64}, "index type")
        if node.inputs[1].shape and isinstance(node.inputs[1].shape[-1], Sym):
            p.append(f"{node.describe()}: the last dimension of indices must be known")
        return p

    def infer(self, node):
        x, idx = node.inputs[0], node.inputs[1]
        b = int(self.batch_dims)
        k = idx.shape[-1]
        if b + k > x.rank:
            raise self.fail(node, "indices address more dimensions than the data has")
        return [(x.dtype, tuple(idx.shape[:-1]) + tuple(x.shape[b + k:]))]


REDUCTIONS = ("none", "add", "mul", "max", "min")


@register()
class ScatterElements(Op):
    ATTRS = {"axis": 0, "reduction": "none"}
    INPUTS = ("data", "indices", "updates")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[1].dtype], INDEX_TYPES, "index type")
        if self.reduction not in REDUCTIONS:
            p.append(f"{node.describe()}: reduction '{self.reduction}' is not supported")
        return p

    def infer(self, node):
        x = node.inputs[0]
        norm_axis(self.axis, x.rank, node)
        return [(x.dtype, x.shape)]


@register()
class Scatter(ScatterElements):
    """Deprecated alias of ScatterElements (opsets 9-10)."""


@register()
class ScatterND(Op):
    ATTRS = {"reduction": "none"}
    INPUTS = ("data", "indices", "updates")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[1].dtype], {DType.INT64}, "index type")
        if self.reduction not in REDUCTIONS:
            p.append(f"{node.describe()}: reduction '{self.reduction}' is not supported")
        if isinstance(node.inputs[1].shape[-1], Sym):
            p.append(f"{node.describe()}: the last dimension of indices must be known")
        return p

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class Split(Op):
    ATTRS = {"axis": 0, "split": None, "num_outputs": None}
    INPUTS = ("input", "split")
    OUTPUTS = ("outputs*",)

    def runtime_inputs(self, node):
        return [0]

    def sizes(self, node) -> list:
        x = node.inputs[0]
        a = norm_axis(self.axis, x.rank, node)
        d = x.shape[a]
        n = len(node.outputs)
        if node.input(1) is not None:
            s = _ints(self.const_input(node, 1, "split"))
        elif self.split is not None:
            s = [int(v) for v in self.split]
        else:
            if isinstance(d, Sym):
                raise self.fail(node, f"cannot split the symbolic dimension {d}")
            if self.num_outputs is not None:
                n = int(self.num_outputs)
                q = -(-d // n)
                s = [q] * (n - 1) + [d - q * (n - 1)]
            else:
                if d % n:
                    raise self.fail(node, f"dimension {d} does not split evenly into {n} outputs")
                s = [d // n] * n
        if len(s) != len(node.outputs) or not dims_equal(sum(s), d):
            raise self.fail(node, f"split {s} does not match dimension {d} and {len(node.outputs)} outputs")
        return s

    def infer(self, node):
        x = node.inputs[0]
        a = norm_axis(self.axis, x.rank, node)
        return [(x.dtype, tuple(x.shape[:a]) + (s,) + tuple(x.shape[a + 1:])) for s in self.sizes(node)]


@register()
class TopK(Op):
    ATTRS = {"axis": -1, "largest": 1, "sorted": 1, "k": None}
    INPUTS = ("X", "K")
    OUTPUTS = ("Values", "Indices")

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], NUMERIC)

    def runtime_inputs(self, node):
        return [0]

    def k_of(self, node) -> int:
        if node.input(1) is not None:
            return _ints(self.const_input(node, 1, "K"))[0]
        return int(self.k)

    def infer(self, node):
        x = node.inputs[0]
        a = norm_axis(self.axis, x.rank, node)
        k = self.k_of(node)
        if isinstance(x.shape[a], int) and not 0 <= k <= x.shape[a]:
            raise self.fail(node, f"K={k} exceeds the axis size {x.shape[a]}")
        shape = tuple(x.shape[:a]) + (k,) + tuple(x.shape[a + 1:])
        return [(x.dtype, shape), (DType.INT64, shape)]


@register()
class Range(Op):
    INPUTS = ("start", "limit", "delta")
    OUTPUTS = ("output",)

    def check(self, node):
        if any(v.const is None for v in node.inputs):
            return [f"{node.describe()}: Range needs start, limit and delta known at generation time (its "
                    "output size depends on their values)"]
        return []

    def infer(self, node):  # reached only when folding failed
        s, l, d = (np.asarray(v.const).reshape(()) for v in node.inputs)
        n = max(int(np.ceil((l - s) / d)), 0)
        return [(node.inputs[0].dtype, (n,))]


@register()
class NonZero(Op):
    OUTPUTS = ("Y",)

    def check(self, node):
        if node.inputs[0].const is None:
            return [f"{node.describe()}: NonZero's output size depends on the input data; it is supported only "
                    "when its input is known at generation time"]
        return []

    def infer(self, node):
        nz = np.nonzero(node.inputs[0].const)
        return [(DType.INT64, (node.inputs[0].rank, int(nz[0].size) if nz else 0))]


@register()
class EyeLike(Op):
    ATTRS = {"dtype": None, "k": 0}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def check(self, node):
        if node.inputs[0].rank != 2:
            return [f"{node.describe()}: input must be 2-D"]
        return []

    def runtime_inputs(self, node):
        return []

    def infer(self, node):
        x = node.inputs[0]
        dt = DType.from_onnx(int(self.dtype)) if self.dtype is not None else x.dtype
        return [(dt, x.shape)]


@register()
class OneHot(Op):
    ATTRS = {"axis": -1}
    INPUTS = ("indices", "depth", "values")
    OUTPUTS = ("output",)

    def runtime_inputs(self, node):
        return [0, 2]

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], NUMERIC, "index type")

    def depth_of(self, node) -> int:
        return int(np.asarray(self.const_input(node, 1, "depth")).reshape(-1)[0])

    def infer(self, node):
        idx = node.inputs[0]
        a = norm_axis(self.axis, idx.rank + 1, node)
        shape = list(idx.shape)
        shape.insert(a, self.depth_of(node))
        return [(node.inputs[2].dtype, tuple(shape))]


@register()
class Trilu(Op):
    ATTRS = {"upper": 1}
    INPUTS = ("input", "k")
    OUTPUTS = ("output",)

    def runtime_inputs(self, node):
        return [0]

    def k_of(self, node) -> int:
        return _ints(self.const_input(node, 1, "k"))[0] if node.input(1) is not None else 0

    def infer(self, node):
        x = node.inputs[0]
        if x.rank < 2:
            raise self.fail(node, "input must have rank >= 2")
        self.k_of(node)
        return [(x.dtype, x.shape)]


@register()
class ReverseSequence(Op):
    ATTRS = {"batch_axis": 1, "time_axis": 0}
    INPUTS = ("input", "sequence_lens")
    OUTPUTS = ("Y",)

    def infer(self, node):
        x = node.inputs[0]
        if {self.batch_axis, self.time_axis} != {0, 1}:
            raise self.fail(node, "batch_axis and time_axis must be 0 and 1")
        return [(x.dtype, x.shape)]


@register()
class DepthToSpace(Op):
    ATTRS = {"blocksize": None, "mode": "DCR"}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def check(self, node):
        p = []
        if self.mode not in ("DCR", "CRD"):
            p.append(f"{node.describe()}: mode '{self.mode}' is not supported")
        if node.inputs[0].rank != 4:
            p.append(f"{node.describe()}: input must be 4-D")
        return p

    def infer(self, node):
        n, c, h, w = node.inputs[0].shape
        b = int(self.blocksize)
        if not isinstance(c, int) or c % (b * b):
            raise self.fail(node, f"channels {c} not divisible by blocksize^2")
        return [(node.inputs[0].dtype, (n, c // (b * b), h * b, w * b))]


@register()
class SpaceToDepth(Op):
    ATTRS = {"blocksize": None}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def check(self, node):
        return [] if node.inputs[0].rank == 4 else [f"{node.describe()}: input must be 4-D"]

    def infer(self, node):
        n, c, h, w = node.inputs[0].shape
        b = int(self.blocksize)
        _static(node, self, (h, w))
        if h % b or w % b:
            raise self.fail(node, f"spatial size {h}x{w} not divisible by blocksize {b}")
        return [(node.inputs[0].dtype, (n, c * b * b, h // b, w // b))]


@register()
class QuantizeLinear(Op):
    ATTRS = {"axis": 1, "saturate": 1, "block_size": 0, "output_dtype": 0, "precision": 0}
    INPUTS = ("x", "y_scale", "y_zero_point")
    OUTPUTS = ("y",)
    OUT_TYPES = frozenset({DType.UINT8, DType.INT8, DType.UINT16, DType.INT16, DType.INT32})

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype, node.inputs[1].dtype], FLOATS)
        if self.block_size:
            p.append(f"{node.describe()}: blocked quantization (block_size) is not supported")
        try:
            p += check_types(node, [self.infer(node)[0][0]], self.OUT_TYPES, "quantized type")
        except TypeError as e:
            p.append(f"{node.describe()}: {e}")
        return p

    def out_dtype(self, node):
        if node.input(2) is not None:
            return node.inputs[2].dtype
        return DType.from_onnx(int(self.output_dtype)) if self.output_dtype else DType.UINT8

    def per_axis(self, node):
        """(axis or None): None when the scale is a scalar."""
        s = node.inputs[1]
        if numel(s.shape) == 1 and s.rank <= 1:
            return None
        return norm_axis(self.axis, node.inputs[0].rank, node)

    def infer(self, node):
        self.per_axis(node)
        return [(self.out_dtype(node), node.inputs[0].shape)]


@register()
class DequantizeLinear(Op):
    ATTRS = {"axis": 1, "block_size": 0, "output_dtype": 0}
    INPUTS = ("x", "x_scale", "x_zero_point")
    OUTPUTS = ("y",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], QuantizeLinear.OUT_TYPES, "quantized type")
        p += check_types(node, [node.inputs[1].dtype], FLOATS)
        if self.block_size:
            p.append(f"{node.describe()}: blocked quantization (block_size) is not supported")
        return p

    per_axis = QuantizeLinear.per_axis

    def infer(self, node):
        self.per_axis(node)
        return [(node.inputs[1].dtype, node.inputs[0].shape)]
