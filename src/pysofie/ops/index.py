"""Indexing and layout operators (Expand, Tile, Pad, Gather*/Scatter*, Split, TopK, OneHot, Einsum, Resize, ...)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..ir import DType
from ..ir.shapes import Sym, ceildiv, dim_div, dims_equal, floordiv, nonneg, numel
from .base import REQUIRED, Op, norm_axis, register, runtime_symbol
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
        return res

    def guards(self, node):
        x = node.inputs[0]
        return [(d + b + e, f"{node.describe()}: negative pads ({b}, {e}) remove more than the axis {a} holds")
                for a, (d, (b, e)) in enumerate(zip(x.shape, self.pads_of(node)))
                if isinstance(d, Sym) and not nonneg(d + b + e)]

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
        if not node.inputs[1].shape or isinstance(node.inputs[1].shape[-1], Sym):
            p.append(f"{node.describe()}: indices must have rank >= 1 and a known last dimension")
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
        if not node.inputs[1].shape or isinstance(node.inputs[1].shape[-1], Sym):
            p.append(f"{node.describe()}: indices must have rank >= 1 and a known last dimension")
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
        if self.num_outputs is not None and int(self.num_outputs) != n:
            raise self.fail(node, f"num_outputs={self.num_outputs}, but the node has {n} outputs")
        if node.input(1) is not None:
            s = _ints(self.const_input(node, 1, "split"))
        elif self.split is not None:
            s = [int(v) for v in self.split]
        elif isinstance(d, Sym):
            # a symbolic axis: equal parts (the last one shorter with num_outputs), see guards()
            n = int(self.num_outputs) if self.num_outputs is not None else n
            q = dim_div(d, n)
            if q is None:
                q = ceildiv(d, n) if self.num_outputs is not None else floordiv(d, n)
            s = [q] * (n - 1) + [d - q * (n - 1)]
        else:
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

    def guards(self, node):
        x = node.inputs[0]
        d = x.shape[norm_axis(self.axis, x.rank, node)]
        out = []
        if isinstance(d, Sym) and node.input(1) is None and self.split is None:
            sizes = self.sizes(node)
            last = sizes[-1]
            if self.num_outputs is None and not dims_equal(last, sizes[0]):  # must split evenly
                out.append((sizes[0] - last, f"{node.describe()}: axis size {d} does not split evenly"))
            if not nonneg(last):
                out.append((last, f"{node.describe()}: axis size {d} is too small for {len(sizes)} parts"))
        return out


@register()
class TopK(Op):
    ATTRS = {"axis": -1, "largest": 1, "sorted": 1, "k": None}
    INPUTS = ("X", "K")
    OUTPUTS = ("Values", "Indices")

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], NUMERIC)

    def _runtime_k(self, node) -> bool:
        """K computed at run time (not a constant, nor folded from shapes): a run-time size up to the axis."""
        v = node.input(1)
        return v is not None and v.const is None and v.sym is None

    def runtime_inputs(self, node):
        return [0, 1] if self._runtime_k(node) else [0]

    def runtime_sizes(self, node):
        if not self._runtime_k(node):
            return {}
        x = node.inputs[0]
        return {runtime_symbol(node): x.shape[norm_axis(self.axis, x.rank, node)]}

    def k_of(self, node):
        if self._runtime_k(node):
            return Sym.var(runtime_symbol(node))
        if node.input(1) is not None:
            return _ints(self.const_input(node, 1, "K"))[0]
        return int(self.k)

    def infer(self, node):
        x = node.inputs[0]
        a = norm_axis(self.axis, x.rank, node)
        k = self.k_of(node)
        if isinstance(k, Sym):
            shape = tuple(x.shape[:a]) + (k,) + tuple(x.shape[a + 1:])
            return [(x.dtype, shape), (DType.INT64, shape)]
        if isinstance(x.shape[a], int) and not 0 <= k <= x.shape[a]:
            raise self.fail(node, f"K={k} exceeds the axis size {x.shape[a]}")
        shape = tuple(x.shape[:a]) + (k,) + tuple(x.shape[a + 1:])
        return [(x.dtype, shape), (DType.INT64, shape)]


@register()
class Range(Op):
    """start, limit and delta known at generation time (possibly size expressions: arange(seq)) give a length
    known then; any of them computed at run time from data (Range(0, ReduceMax(x), 1)) gives a run-time size
    with no bound before the run: the generated code computes it first and grows the buffers."""
    INPUTS = ("start", "limit", "delta")
    OUTPUTS = ("output",)

    @staticmethod
    def at_run_time(node) -> bool:
        """Whether the length is decided at run time: an input is data, or delta is a size expression."""
        return any(v.const is None and (v.sym is None or k == 2) for k, v in enumerate(node.inputs))

    def bounds(self, node):
        """(start, limit, delta) as dims/numbers; start and limit may be symbolic (arange(seq))."""
        def scalar(v):
            vals = list(v.sym) if v.sym is not None else np.asarray(v.const).reshape(-1)
            if len(vals) != 1:
                raise self.fail(node, f"input '{v.name}' must be a scalar, it has shape {list(v.shape)}")
            if v.sym is not None:
                return vals[0]
            return int(vals[0]) if v.dtype.is_int else float(vals[0])
        return scalar(node.inputs[0]), scalar(node.inputs[1]), scalar(node.inputs[2])

    def _span(self, node):
        s, l, d = self.bounds(node)
        return l - s if d > 0 else s - l

    def guards(self, node):
        if self.at_run_time(node):
            return []
        s, l, _ = self.bounds(node)
        span = self._span(node) if isinstance(s, Sym) or isinstance(l, Sym) else 0
        if isinstance(span, Sym) and not nonneg(span):  # an empty range would be a zero-size tensor
            return [(span, f"{node.describe()}: the range from {s} to {l} would be empty")]
        return []

    def runtime_inputs(self, node):
        # the inputs computed from data; constants and size expressions are written into the code
        return [k for k, v in enumerate(node.inputs) if v.const is None and v.sym is None]

    def runtime_sizes(self, node):
        return {runtime_symbol(node): None} if self.at_run_time(node) else {}

    def infer(self, node):  # reached only when folding failed
        if self.at_run_time(node):
            return [(node.inputs[0].dtype, (Sym.var(runtime_symbol(node)),))]
        s, l, d = self.bounds(node)
        if isinstance(s, Sym) or isinstance(l, Sym):
            if not isinstance(d, int) or d == 0:
                raise self.fail(node, f"a Range of symbolic length needs a nonzero integer delta, got {d}")
            n = ceildiv(self._span(node), abs(d))
        else:
            if d == 0:
                raise self.fail(node, "delta is 0: the Range never ends")
            n = max(int(np.ceil((l - s) / d)), 0)
        return [(node.inputs[0].dtype, (n,))]


@register()
class NonZero(Op):
    OUTPUTS = ("Y",)

    def infer(self, node):
        x = node.inputs[0]
        if x.const is None:  # the count is decided at run time (runtime_sizes), at most numel(X)
            return [(DType.INT64, (x.rank, Sym.var(runtime_symbol(node))))]
        nz = np.nonzero(x.const)
        return [(DType.INT64, (x.rank, int(nz[0].size) if nz else 0))]

    def runtime_sizes(self, node):
        x = node.inputs[0]
        return {} if x.const is not None else {runtime_symbol(node): numel(x.shape)}


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
        x, lens = node.inputs[0], node.inputs[1]
        if {self.batch_axis, self.time_axis} != {0, 1}:
            raise self.fail(node, "batch_axis and time_axis must be 0 and 1")
        if x.rank < 2:
            raise self.fail(node, f"input has rank {x.rank}: at least 2 (time and batch) is needed")
        if lens.rank != 1 or not lens.dtype.is_int:
            raise self.fail(node, f"sequence_lens must be a 1-D integer tensor, got {lens.dtype.name.lower()} "
                                  f"of shape {list(lens.shape)}")
        if not dims_equal(lens.shape[0], x.shape[self.batch_axis]):
            raise self.fail(node, f"sequence_lens has {lens.shape[0]} values for a batch of "
                                  f"{x.shape[self.batch_axis]}")
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
    ATTRS = {"blocksize": None, "mode": "DCR"}  # mode from opset 28
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def check(self, node):
        p = [] if node.inputs[0].rank == 4 else [f"{node.describe()}: input must be 4-D"]
        if self.mode not in ("DCR", "CRD"):
            p.append(f"{node.describe()}: mode '{self.mode}' is not supported")
        return p

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


# -- Einsum ----------------------------------------------------------------------------------------------------
@register()
class Einsum(Op):
    """General tensor contraction: output letters outside, summed letters inside; '...' broadcasts."""
    ATTRS = {"equation": REQUIRED}
    INPUTS = ("Inputs*",)
    OUTPUTS = ("Output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], NUMERIC)
        if any(v.dtype != node.inputs[0].dtype for v in node.inputs):
            p.append(f"{node.describe()}: inputs have different element types")
        return p

    def parse(self, node):
        """([letters per input], output letters, {letter: size}); '...' becomes private letters."""
        eq = str(self.equation).replace(" ", "")
        lhs, _, rhs = eq.partition("->")
        terms = lhs.split(",")
        if len(terms) != len(node.inputs):
            raise self.fail(node, f"equation '{eq}' names {len(terms)} inputs, the node has {len(node.inputs)}")
        ell_rank = 0
        for t, v in zip(terms, node.inputs):
            if "..." in t:
                ell_rank = max(ell_rank, v.rank - (len(t) - 3))
        ell = [chr(0x3b1 + k) for k in range(ell_rank)]  # greek letters never clash with the equation's
        ops = []
        for t, v in zip(terms, node.inputs):
            if "..." in t:
                a, b = t.split("...")
                n = v.rank - len(a) - len(b)
                letters = list(a) + ell[ell_rank - n:] + list(b)
            else:
                letters = list(t)
            if len(letters) != v.rank:
                raise self.fail(node, f"term '{t}' does not match input rank {v.rank}")
            ops.append(letters)
        if "->" in eq:
            out = list(rhs.replace("...", "\0"))
            out = [c for part in out for c in (ell if part == "\0" else [part])]
        else:
            counts = {}
            for letters in ops:
                for c in letters:
                    counts[c] = counts.get(c, 0) + 1
            out = ell + sorted(c for c, n in counts.items() if n == 1 and c not in ell)
        sizes: dict = {}
        for letters, v in zip(ops, node.inputs):
            for c, d in zip(letters, v.shape):
                if c not in sizes or (isinstance(sizes[c], int) and sizes[c] == 1):
                    sizes[c] = d
                elif not (isinstance(d, int) and d == 1) and not dims_equal(sizes[c], d):
                    raise self.fail(node, f"letter '{c}' has sizes {sizes[c]} and {d}")
        for c in out:
            if c not in sizes:
                raise self.fail(node, f"output letter '{c}' appears in no input")
        return ops, out, sizes

    def infer(self, node):
        _ops, out, sizes = self.parse(node)
        return [(node.inputs[0].dtype, tuple(sizes[c] for c in out))]


# -- Resize / Upsample -----------------------------------------------------------------------------------------
_CTM = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_crop_and_resize")
_NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@register()
class Resize(Op):
    """Resize with nearest / linear / cubic modes. The sampling positions and weights of each axis are computed
    at generation time (as in the spec's reference) and become tables in the generated code."""
    ATTRS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
             "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0, "axes": None,
             "keep_aspect_ratio_policy": "stretch"}
    INPUTS = ("X", "roi", "scales", "sizes")
    OUTPUTS = ("Y",)

    @classmethod
    def from_onnx(cls, attrs, opset):
        if opset < 11:  # Resize-10 samples like Upsample: asymmetric coordinates, nearest rounds down
            attrs = dict(attrs, coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return super().from_onnx(attrs, opset)

    def runtime_inputs(self, node):
        return [0]

    def folds(self, node):
        # generation-time evaluation uses the latest Resize, whose inputs differ before opset 11
        return type(self).__name__ == "Resize" and not (0 < self.opset < 11)

    def check(self, node):
        mode = str(self.mode)
        p = check_types(node, [node.inputs[0].dtype], NUMERIC if mode == "nearest" else FLOATS)
        if mode not in ("nearest", "linear", "cubic", "bilinear"):
            p.append(f"{node.describe()}: mode '{mode}' is not supported")
        if self.coordinate_transformation_mode not in _CTM:
            p.append(f"{node.describe()}: coordinate_transformation_mode '{self.coordinate_transformation_mode}' "
                     "is not supported")
        if self.nearest_mode not in _NEAREST:
            p.append(f"{node.describe()}: nearest_mode '{self.nearest_mode}' is not supported")
        if self.antialias:
            p.append(f"{node.describe()}: antialias=1 is not supported")
        if self.keep_aspect_ratio_policy not in ("stretch", "not_larger", "not_smaller"):
            p.append(f"{node.describe()}: keep_aspect_ratio_policy '{self.keep_aspect_ratio_policy}' is not supported")
        return p

    def _scales_sizes(self, node):
        """(scales, roi or None) per axis of X and the output shape."""
        x = node.inputs[0]
        r = x.rank
        opset = self.opset or 99
        sc_idx = 1 if opset < 11 or type(self).__name__ == "Upsample" else 2
        axes = [norm_axis(a, r, node) for a in self.axes] if self.axes is not None else list(range(r))
        scales = sizes = None
        if getattr(self, "_attr_scales", None) is not None:
            scales = [float(s) for s in self._attr_scales]
        elif node.input(sc_idx) is not None and numel(node.input(sc_idx).shape) != 0:
            scales = [float(s) for s in np.asarray(self.const_input(node, sc_idx, "scales")).reshape(-1)]
        if sc_idx == 2 and node.input(3) is not None and numel(node.input(3).shape) != 0:
            sizes = self.shape_input(node, 3, "sizes")  # ints, or size expressions (Shape(x) * 2)
        if scales is None and sizes is None:
            raise self.fail(node, "neither scales nor sizes is given")
        full_scale = [1.0] * r
        out = list(x.shape)
        if sizes is not None:
            if len(sizes) != len(axes):
                raise self.fail(node, f"{len(sizes)} sizes for {len(axes)} axes")
            if any(isinstance(d, Sym) for a, d in zip(axes, sizes)) or \
                    any(isinstance(x.shape[a], Sym) for a in axes):
                # a symbolic extent or size: the axis' scale (None) is n_out / n_in, computed at run time
                if self.keep_aspect_ratio_policy != "stretch":
                    raise self.fail(node, f"keep_aspect_ratio_policy '{self.keep_aspect_ratio_policy}' needs sizes "
                                          "and resized dimensions known at generation time")
                for a, d in zip(axes, sizes):
                    if not dims_equal(d, x.shape[a]):
                        self._check_symbolic_mode(node, x.shape[a])
                        full_scale[a], out[a] = None, d
            elif self.keep_aspect_ratio_policy == "stretch":
                for a, s in zip(axes, sizes):
                    full_scale[a] = s / x.shape[a]
                    out[a] = s
            else:
                ratios = [s / x.shape[a] for a, s in zip(axes, sizes)]
                sc = min(ratios) if self.keep_aspect_ratio_policy == "not_larger" else max(ratios)
                for a in axes:
                    full_scale[a] = sc
                    out[a] = int(np.floor(sc * x.shape[a] + 0.5))
        else:
            if len(scales) != len(axes):
                raise self.fail(node, f"{len(scales)} scales for {len(axes)} axes")
            for a, s in zip(axes, scales):
                full_scale[a] = s
                if s == 1.0:
                    continue
                if isinstance(x.shape[a], Sym):
                    out[a] = self._symbolic_size(node, x.shape[a], s)
                    continue
                out[a] = int(np.floor(x.shape[a] * s))
        roi = None
        if self.coordinate_transformation_mode == "tf_crop_and_resize":
            raw = [float(v) for v in np.asarray(self.const_input(node, 1, "roi")).reshape(-1)]
            n = len(axes)
            if len(raw) != 2 * n:
                raise self.fail(node, f"roi has {len(raw)} values for {n} axes")
            roi = [(0.0, 1.0)] * r
            for k, a in enumerate(axes):
                roi[a] = (raw[k], raw[k + n])
        return full_scale, roi, out

    def infer(self, node):
        _s, _roi, out = self._scales_sizes(node)
        return [(node.inputs[0].dtype, tuple(out))]

    # a symbolic axis is sampled by positions and weights computed at run time (backends: resize_taps), in every
    # mode and coordinate transformation
    SYMBOLIC_MODES = ("nearest", "linear", "bilinear", "cubic")

    def _check_symbolic_mode(self, node, n):
        if self.mode not in self.SYMBOLIC_MODES:
            raise self.fail(node, f"resizing the symbolic dimension {n} needs mode nearest, linear or cubic")

    def _symbolic_size(self, node, n, scale: float):
        """floor(n * scale) for a symbolic n: exact for a scale that is a ratio of small integers."""
        from fractions import Fraction
        self._check_symbolic_mode(node, n)
        f = Fraction(scale).limit_denominator(1024)
        if float(f) != scale or f <= 0:
            raise self.fail(node, f"scale {scale} of the symbolic dimension {n} is not a ratio of small integers")
        return floordiv(n * f.numerator, f.denominator)

    def coeffs(self, ratio: float, scale: float) -> list[float]:
        mode = "linear" if self.mode == "bilinear" else self.mode
        if mode == "nearest":
            if float(ratio).is_integer():
                return [0.0, 1.0]
            nm = self.nearest_mode
            if nm == "round_prefer_floor":
                return [float(ratio <= 0.5), float(ratio > 0.5)]
            if nm == "round_prefer_ceil":
                return [float(ratio < 0.5), float(ratio >= 0.5)]
            return [1.0, 0.0] if nm == "floor" else [0.0, 1.0]
        if mode == "linear":
            return [1.0 - ratio, ratio]
        A = float(self.cubic_coeff_a)
        r, s = ratio, 1.0 - ratio
        return [((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A,
                ((A + 2) * r - (A + 3)) * r * r + 1,
                ((A + 2) * s - (A + 3)) * s * s + 1,
                ((A * (s + 1) - 5 * A) * (s + 1) + 8 * A) * (s + 1) - 4 * A]

    def axis_taps(self, n_in: int, n_out: int, scale: float, roi) -> list[Optional[list[tuple[int, float]]]]:
        """Per output index of one axis: [(input index, weight)], or None where tf_crop_and_resize
        extrapolates."""
        ctm = self.coordinate_transformation_mode
        out_w = scale * n_in
        res = []
        for x in range(n_out):
            if ctm == "align_corners":
                xo = 0.0 if out_w == 1 else x * (n_in - 1) / (out_w - 1)
            elif ctm == "asymmetric":
                xo = x / scale
            elif ctm == "tf_crop_and_resize":
                xo = ((roi[1] - roi[0]) * (n_in - 1) / 2 if out_w == 1
                      else x * (roi[1] - roi[0]) * (n_in - 1) / (out_w - 1))
                xo += roi[0] * (n_in - 1)
                if xo < 0 or xo > n_in - 1:
                    res.append(None)
                    continue
            elif ctm == "pytorch_half_pixel":
                xo = -0.5 if out_w == 1 else (x + 0.5) / scale - 0.5
            elif ctm == "half_pixel":
                xo = (x + 0.5) / scale - 0.5
            else:  # half_pixel_symmetric
                offset = n_in / 2 * (1 - n_out / out_w)
                xo = offset + (x + 0.5) / scale - 0.5
            xo = float(xo)
            ratio = 1.0 if xo.is_integer() else xo - np.floor(xo)
            c = self.coeffs(ratio, scale)
            n = len(c)
            pad = -(-n // 2)
            xp = xo + pad
            # the n nearest positions of the edge-padded axis, ties to the lower one
            base = int(np.floor(xp))
            cand = range(max(0, base - n - 1), min(n_in + 2 * pad, base + n + 2))
            idx = sorted(sorted(cand, key=lambda i: (abs(xp - i), i))[:n])
            taps = [(i - pad, w) for i, w in zip(idx, c)]
            if self.exclude_outside:
                taps = [(i, w if 0 <= i < n_in else 0.0) for i, w in taps]
                tot = sum(w for _, w in taps)
                taps = [(i, w / tot) for i, w in taps]
            merged: dict[int, float] = {}
            for i, w in taps:
                j = min(max(i, 0), n_in - 1)
                merged[j] = merged.get(j, 0.0) + w
            res.append([(i, w) for i, w in merged.items() if w != 0.0])
        return res


@register()
class Upsample(Resize):
    """Deprecated (opsets 7-9): Resize-10 semantics, scales as an attribute (7) or an input (9)."""
    ATTRS = dict(Resize.ATTRS, scales=None)
    INPUTS = ("X", "scales")

    @classmethod
    def from_onnx(cls, attrs, opset):
        op = super().from_onnx(attrs, 10)
        op.opset = opset
        return op

    def __init__(self, **attrs):
        super().__init__(**attrs)
        self._attr_scales = self.attrs.get("scales")
