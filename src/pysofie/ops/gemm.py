"""Matrix products: Gemm and MatMul (numpy matmul semantics, batched with broadcasting)."""
from __future__ import annotations

from ..ir.shapes import dims_equal
from .base import Op, register
from .elementwise import broadcast_shapes


@register()
class Gemm(Op):
    ATTRS = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0, "broadcast": None}
    INPUTS = ("A", "B", "C")

    def check(self, node):
        if not node.inputs[0].dtype.is_float:
            return [f"{node.describe()}: element type {node.inputs[0].dtype.name.lower()} is not supported"]
        return []

    def mnk(self, node):
        a, b = node.inputs[0].shape, node.inputs[1].shape
        if len(a) != 2 or len(b) != 2:
            raise self.fail(node, f"A and B must be 2-D, got ranks {len(a)} and {len(b)}")
        m, k = (a[1], a[0]) if self.transA else (a[0], a[1])
        kb, n = (b[1], b[0]) if self.transB else (b[0], b[1])
        if not dims_equal(k, kb):
            raise self.fail(node, f"inner dimensions differ: {k} vs {kb}")
        return m, n, k

    def infer(self, node):
        m, n, _ = self.mnk(node)
        c = node.input(2)
        if c is not None:
            broadcast_shapes(node, [c.shape, (m, n)])
        return [(node.inputs[0].dtype, (m, n))]


@register()
class MatMul(Op):
    INPUTS = ("A", "B")

    def check(self, node):
        if not node.inputs[0].dtype.is_float:
            return [f"{node.describe()}: element type {node.inputs[0].dtype.name.lower()} is not supported"]
        return []

    def infer(self, node):
        a, b = node.inputs[0].shape, node.inputs[1].shape
        if not a or not b:
            raise self.fail(node, "MatMul inputs must have rank >= 1")
        a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
        b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
        if not dims_equal(a2[-1], b2[-2]):
            raise self.fail(node, f"inner dimensions differ: {a2[-1]} vs {b2[-2]}")
        batch = broadcast_shapes(node, [a2[:-2], b2[:-2]])
        out = tuple(batch) + (a2[-2], b2[-1])
        if len(a) == 1:
            out = out[:-2] + out[-1:]
        if len(b) == 1:
            out = out[:-1]
        return [(node.inputs[0].dtype, out)]
