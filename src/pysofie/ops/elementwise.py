"""Elementwise operators: unary maps, binary ops with numpy broadcasting, variadic reductions (Sum, Max...)."""
from __future__ import annotations

from ..ir import DType, Node
from ..errors import ShapeInferenceError
from ..ir.shapes import dim_div, dims_equal
from .base import Op, register


def broadcast_shapes(node: Node, shapes: list[tuple]) -> tuple:
    rank = max(len(s) for s in shapes)
    out = []
    for k in range(rank):
        dim = 1
        for s in shapes:
            j = k - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(dim, int) and dim == 1:
                dim = d
            elif not dims_equal(dim, d):
                raise ShapeInferenceError(
                    f"{node.describe()}: shapes {[list(map(str, s)) for s in shapes]} cannot be broadcast")
        out.append(dim)
    return tuple(out)


class Unary(Op):
    """y = f(x), same shape and dtype."""
    FLOAT_ONLY = True

    def check(self, node):
        dt = node.inputs[0].dtype
        if self.FLOAT_ONLY and dt is not None and not dt.is_float:
            return [f"{node.describe()}: element type {dt.name.lower()} is not supported (float types only)"]
        return []

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class Relu(Unary):
    FLOAT_ONLY = False


@register()
class LeakyRelu(Unary):
    ATTRS = {"alpha": 0.01}


@register()
class Sigmoid(Unary):
    pass


@register()
class Tanh(Unary):
    pass


@register()
class Identity(Unary):
    FLOAT_ONLY = False

    def fold_symbolic(self, node):
        return [node.inputs[0].sym] if node.inputs[0].sym is not None else None


class Binary(Op):
    """c = a (op) b with multidirectional (numpy) broadcasting."""
    INPUTS = ("A", "B")
    OUTPUTS = ("C",)
    RESULT_BOOL = False

    def infer(self, node):
        a, b = node.inputs[0], node.inputs[1]
        if a.dtype != b.dtype:
            raise self.fail(node, f"input types differ: {a.dtype.name.lower()} vs {b.dtype.name.lower()}")
        shape = broadcast_shapes(node, [a.shape, b.shape])
        return [(DType.BOOL if self.RESULT_BOOL else a.dtype, shape)]

    def sym_apply(self, x, y):
        return None

    def fold_symbolic(self, node):
        a, b = node.inputs[0], node.inputs[1]
        if a.sym is None and b.sym is None:
            return None
        if a.rank > 1 or b.rank > 1:
            return None

        def elems(v):
            if v.sym is not None:
                return list(v.sym)
            if v.const is not None:
                return [int(x) for x in v.const.reshape(-1)]
            return None

        ea, eb = elems(a), elems(b)
        if ea is None or eb is None:
            return None
        n = max(len(ea), len(eb))
        ea = ea * n if len(ea) == 1 else ea
        eb = eb * n if len(eb) == 1 else eb
        out = []
        for x, y in zip(ea, eb):
            r = self.sym_apply(x, y)
            if r is None:
                return None
            out.append(r)
        return [out]


@register()
class Add(Binary):
    def sym_apply(self, x, y):
        return x + y


@register()
class Sub(Binary):
    def sym_apply(self, x, y):
        return x - y


@register()
class Mul(Binary):
    def sym_apply(self, x, y):
        return x * y


@register()
class Div(Binary):
    def sym_apply(self, x, y):
        return dim_div(x, y)
