"""Shape and layout operators. Most are views or copies; several fold at generation time."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from ..ir.shapes import Sym, dim_div, dims_equal, numel
from .base import Op, norm_axis, register


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
        return [list(x.shape[s:e])]


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
        x = node.inputs[0]
        if self.starts is not None:
            starts, ends = list(self.starts), list(self.ends)
            axes = list(self.axes) if self.axes is not None else list(range(len(starts)))
            steps = [1] * len(starts)
        else:
            starts = [int(a) for a in self.const_input(node, 1, "starts").reshape(-1)]
            ends = self.shape_input(node, 2, "ends")  # may hold symbolic sizes: ends = Shape(y) (torch's scatter)
            axes = ([int(a) for a in self.const_input(node, 3, "axes").reshape(-1)] if node.input(3) is not None
                    else list(range(len(starts))))
            steps = ([int(a) for a in self.const_input(node, 4, "steps").reshape(-1)]
                     if node.input(4) is not None else [1] * len(starts))
        res = [(0, d, 1) for d in x.shape]
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            ax = norm_axis(ax, x.rank, node)
            d = x.shape[ax]
            if sp == 0:
                raise self.fail(node, "step 0")
            if isinstance(en, Sym):
                if st == 0 and sp == 1 and dims_equal(en, d):
                    res[ax] = (0, d, 1)
                    continue
                raise self.fail(node, f"slicing axis {ax} (size {d}) up to {en} is not supported")
            if isinstance(d, Sym):
                # only 'everything' or a prefix slice keep a symbolic size
                big = 2 ** 62
                if st == 0 and sp == 1 and en >= big // 4:
                    res[ax] = (0, d, 1)
                    continue
                raise self.fail(node, f"slicing the symbolic dimension {d} is not supported")
            if st < 0:
                st += d
            if en < 0:
                en += d
            if sp > 0:
                st, en = min(max(st, 0), d), min(max(en, 0), d)
            else:
                st, en = min(max(st, -1), d - 1), min(max(en, -1), d - 1)
            res[ax] = (st, en, sp)
        return res

    def infer(self, node):
        x = node.inputs[0]
        out = []
        for (st, en, sp) in self.params(node):
            if isinstance(en, Sym):
                out.append(en)
            else:
                n = (en - st + (sp - (1 if sp > 0 else -1))) // sp
                out.append(max(0, n))
        return [(x.dtype, tuple(out))]

    def fold_symbolic(self, node):
        x = node.inputs[0]
        if x.sym is None or x.rank != 1:
            return None
        (st, en, sp), = self.params(node)
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
