"""Shape and layout operators. Most are views or copies; several fold at generation time."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from ..ir.shapes import Sym, ceildiv, dim_div, dims_equal, floordiv, le, lt, nonneg, numel, tensor_dim
from .base import REQUIRED, Op, norm_axis, register


class View(Op):
    """Output holds the input's elements in the same order (Reshape, Flatten, Squeeze, Unsqueeze)."""
    INPUTS = ("data",)
    OUTPUTS = ("reshaped",)

    def runtime_inputs(self, node):
        return [0]

    def fold_symbolic(self, node):
        x = node.inputs[0]
        if x.sym is not None and len(node.outputs[0].shape or ()) <= 1:
            return [list(x.sym)]
        return None


@register()
class Reshape(View):
    ATTRS = {"allowzero": 0, "shape": None}
    INPUTS = ("data", "shape")

    def infer(self, node):
        x = node.inputs[0]
        target = list(self.shape) if node.input(1) is None else self.shape_input(node, 1)
        if target is None:
            raise self.fail(node, "no target shape")
        out = []
        neg = None
        for i, d in enumerate(target):
            if isinstance(d, int) and d == -1:
                if neg is not None:
                    raise self.fail(node, "more than one -1 in the target shape")
                neg = i
                out.append(1)
            elif isinstance(d, int) and d == 0 and not self.allowzero:
                if i >= x.rank:
                    raise self.fail(node, f"0 at position {i} but the input has rank {x.rank}")
                out.append(x.shape[i])
            else:
                out.append(d)
        total = numel(x.shape)
        if neg is not None:
            known = numel(out)
            q = dim_div(total, known)
            if q is None:
                raise self.fail(node, f"cannot reshape {list(map(str, x.shape))} into {list(map(str, target))}")
            out[neg] = q
        elif not dims_equal(numel(out), total):
            raise self.fail(node, f"cannot reshape {list(map(str, x.shape))} into {list(map(str, target))}")
        return [(x.dtype, tuple(out))]


@register()
class Flatten(View):
    ATTRS = {"axis": 1}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def infer(self, node):
        x = node.inputs[0]
        axis = self.axis + x.rank if self.axis < 0 else self.axis
        if not 0 <= axis <= x.rank:
            raise self.fail(node, f"axis {self.axis} out of range for rank {x.rank}")
        return [(x.dtype, (numel(x.shape[:axis]), numel(x.shape[axis:])))]


def _axes(op, node, idx):
    if op.attrs.get("axes") is not None:
        return [int(a) for a in op.attrs["axes"]]
    v = node.input(idx)
    if v is None:
        return None
    return [int(a) for a in op.const_input(node, idx, "axes").reshape(-1)]


@register()
class Squeeze(View):
    ATTRS = {"axes": None}
    INPUTS = ("data", "axes")
    OUTPUTS = ("squeezed",)

    def infer(self, node):
        x = node.inputs[0]
        axes = _axes(self, node, 1)
        if axes is None:
            axes = [i for i, d in enumerate(x.shape) if isinstance(d, int) and d == 1]
        axes = {norm_axis(a, x.rank, node) for a in axes}
        for a in axes:
            if not (isinstance(x.shape[a], int) and x.shape[a] == 1):
                raise self.fail(node, f"cannot squeeze axis {a} of size {x.shape[a]}")
        return [(x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes))]


@register()
class Unsqueeze(View):
    ATTRS = {"axes": None}
    INPUTS = ("data", "axes")
    OUTPUTS = ("expanded",)

    def infer(self, node):
        x = node.inputs[0]
        axes = _axes(self, node, 1)
        if axes is None:
            raise self.fail(node, "axes missing")
        r = x.rank + len(axes)
        axes = sorted(norm_axis(a, r, node) for a in axes)
        out = list(x.shape)
        for a in axes:
            out.insert(a, 1)
        return [(x.dtype, tuple(out))]


@register()
class Transpose(Op):
    ATTRS = {"perm": None}
    INPUTS = ("data",)
    OUTPUTS = ("transposed",)

    def permutation(self, node):
        r = node.inputs[0].rank
        perm = list(self.perm) if self.perm is not None else list(range(r))[::-1]
        if sorted(perm) != list(range(r)):
            raise self.fail(node, f"perm {perm} is not a permutation of {r} axes")
        return perm

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, tuple(x.shape[p] for p in self.permutation(node)))]


@register()
class Concat(Op):
    ATTRS = {"axis": 0}
    INPUTS = ("inputs*",)
    OUTPUTS = ("concat_result",)

    def infer(self, node):
        xs = [v for v in node.inputs if v is not None]
        r = xs[0].rank
        axis = norm_axis(self.axis, r, node)
        out = list(xs[0].shape)
        for v in xs[1:]:
            if v.rank != r or v.dtype != xs[0].dtype:
                raise self.fail(node, f"inputs differ in rank or type: {xs[0]!r} vs {v!r}")
            for i in range(r):
                if i != axis and not dims_equal(v.shape[i], out[i]):
                    raise self.fail(node, f"inputs differ in dimension {i}: {xs[0]!r} vs {v!r}")
            out[axis] = out[axis] + v.shape[axis]
        return [(xs[0].dtype, tuple(out))]

    def fold_symbolic(self, node):
        xs = [v for v in node.inputs if v is not None]
        if xs[0].rank != 1 or not any(v.sym is not None for v in xs):
            return None
        elems = []
        for v in xs:
            if v.sym is not None:
                elems += list(v.sym)
            elif v.const is not None:
                elems += [int(a) for a in v.const.reshape(-1)]
            else:
                return None
        return [elems]


@register()
class Shape(Op):
    ATTRS = {"start": 0, "end": None}
    INPUTS = ("data",)
    OUTPUTS = ("shape",)

    def _range(self, r):
        start = self.start + r if self.start < 0 else self.start
        end = r if self.end is None else (self.end + r if self.end < 0 else self.end)
        return max(0, min(start, r)), max(0, min(end, r))

    def infer(self, node):
        s, e = self._range(node.inputs[0].rank)
        return [(DType.INT64, (max(0, e - s),))]

    def folds(self, node):
        return False  # handled by fold_symbolic / static folding below

    def fold_symbolic(self, node):
        x = node.inputs[0]
        s, e = self._range(x.rank)
        return [[tensor_dim(d) for d in x.shape[s:e]]]  # extents: never negative


@register()
class Size(Op):
    INPUTS = ("data",)
    OUTPUTS = ("size",)

    def infer(self, node):
        return [(DType.INT64, ())]

    def folds(self, node):
        return False

    def fold_symbolic(self, node):
        return [[numel(node.inputs[0].shape)]]


@register()
class Gather(Op):
    ATTRS = {"axis": 0}
    INPUTS = ("data", "indices")
    OUTPUTS = ("output",)

    def infer(self, node):
        x, idx = node.inputs[0], node.inputs[1]
        axis = norm_axis(self.axis, x.rank, node)
        if idx.dtype not in (DType.INT64, DType.INT32):
            raise self.fail(node, f"indices must be int32/int64, got {idx.dtype.name.lower()}")
        return [(x.dtype, tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1:]))]

    def fold_symbolic(self, node):
        x, idx = node.inputs[0], node.inputs[1]
        if x.sym is None or idx.const is None or x.rank != 1:
            return None
        n = len(x.sym)
        vals = [x.sym[int(i) + n if int(i) < 0 else int(i)] for i in idx.const.reshape(-1)]
        return [vals]


@register()
class Slice(Op):
    ATTRS = {"starts": None, "ends": None, "axes": None}  # attributes: opset < 10
    INPUTS = ("data", "starts", "ends", "axes", "steps")
    OUTPUTS = ("output",)

    def runtime_inputs(self, node):
        return [0]

    def params(self, node):
        """Per-axis (start, stop, step) resolved against the (static or symbolic) input shape."""
        return self._resolve(node)[0]

    def guards(self, node):
        return self._resolve(node)[1]

    def _resolve(self, node):
        """(per-axis (start, stop, step), guards). Bounds may be symbolic (``x[:, :seq]`` with seq from a Shape);
        a symbolic bound that cannot be shown to lie inside the axis is assumed to, and that assumption
        becomes a guard the generated code checks at run time."""
        x = node.inputs[0]
        if self.starts is not None:
            starts, ends = list(self.starts), list(self.ends)
            axes = list(self.axes) if self.axes is not None else list(range(len(starts)))
            steps = [1] * len(starts)
        else:
            starts = self.shape_input(node, 1, "starts")
            ends = self.shape_input(node, 2, "ends")
            axes = ([int(a) for a in self.const_input(node, 3, "axes").reshape(-1)] if node.input(3) is not None
                    else list(range(len(starts))))
            steps = ([int(a) for a in self.const_input(node, 4, "steps").reshape(-1)]
                     if node.input(4) is not None else [1] * len(starts))
        res = [(0, d, 1) for d in x.shape]
        guards = []
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = norm_axis(ax, x.rank, node)
            d = x.shape[ax]
            if sp == 0:
                raise self.fail(node, "step 0")
            if isinstance(d, Sym) or isinstance(st, Sym) or isinstance(en, Sym):
                if sp < 0:
                    raise self.fail(node, f"a negative step over the symbolic bounds {st}:{en} of axis {ax} "
                                          f"(size {d}) is not supported")
                st, en = (self._sym_bound(node, b, d, ax, guards) for b in (st, en))
                span = en - st
                if isinstance(span, Sym) and not nonneg(span):
                    # an empty slice would be a zero-size tensor: assumed not to happen, checked at run time
                    guards.append((span, f"{node.describe()}: slice {st}:{en} of axis {ax} would be empty"))
                n = ceildiv(span, sp) if isinstance(span, Sym) else max(-(-span // sp), 0)
                res[ax] = (st, st + sp * n if sp != 1 else st + n, sp)
                continue
            if st < 0:
                st += d
            if en < 0:
                en += d
            if sp > 0:
                st, en = min(max(st, 0), d), min(max(en, 0), d)
            else:
                st, en = min(max(st, -1), d - 1), min(max(en, -1), d - 1)
            res[ax] = (st, en, sp)
        return res, guards

    def _sym_bound(self, node, b, d, ax, guards):
        """A slice bound clamped to [0, d] for a symbolic bound or axis size."""
        if isinstance(b, int) and b >= 2 ** 60:
            return d
        if isinstance(b, int) and b <= -2 ** 60:
            return 0
        if lt(b, 0):  # counts from the end
            b = b + d
        elif not nonneg(b):
            raise self.fail(node, f"slice bound {b} of axis {ax} may be negative or not: not supported")
        if le(b, d) is False:
            return d
        if not le(b, d):
            guards.append((d - b, f"{node.describe()}: slice bound {b} must not exceed the size {d} of axis {ax}"))
        if not nonneg(b):
            guards.append((b, f"{node.describe()}: slice bound {b} of axis {ax} must not be negative"))
        return b

    def infer(self, node):
        x = node.inputs[0]
        out = []
        for (st, en, sp) in self.params(node):
            if isinstance(en, Sym) or isinstance(st, Sym):
                out.append(floordiv(en - st, sp) if sp != 1 else en - st)
            else:
                n = (en - st + (sp - (1 if sp > 0 else -1))) // sp
                out.append(max(0, n))
        return [(x.dtype, tuple(out))]

    def fold_symbolic(self, node):
        x = node.inputs[0]
        if x.sym is None or x.rank != 1:
            return None
        (st, en, sp), = self.params(node)
        if isinstance(st, Sym) or isinstance(en, Sym):
            return None
        return [list(x.sym)[st:en:sp]]


@register()
class ConstantOfShape(Op):
    ATTRS = {"value": None}
    INPUTS = ("input",)
    OUTPUTS = ("output",)

    def infer(self, node):
        shape = self.shape_input(node, 0)
        val = np.asarray(self.value) if self.value is not None else np.zeros(1, np.float32)
        return [(DType.from_numpy(val.dtype), tuple(shape))]


# ConstantOfShape reads no data at run time: its shape is known at generation time (possibly symbolic)
ConstantOfShape.runtime_inputs = lambda self, node: []


@register("SymbolicValue", domain="pysofie")
class SymbolicValue(Op):
    """A small integer tensor whose elements are size expressions: the folded result of shape arithmetic that
    run-time code reads (``batch_index * seq`` in an attention-mask computation). The generated code writes it
    from the size parameters; the Shape/Gather/Concat chain that computed it is gone."""
    ATTRS = {"values": REQUIRED, "dtype": REQUIRED, "shape": REQUIRED}
    INPUTS = ()
    OUTPUTS = ("Y",)

    def infer(self, node):
        return [(self.dtype, tuple(self.shape))]

    def fold_symbolic(self, node):
        return [list(self.values)]

    def folds(self, node):
        return False
