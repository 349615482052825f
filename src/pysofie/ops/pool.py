"""Pooling: MaxPool, AveragePool (1D/2D/3D, pads, strides, dilations, ceil_mode), global pooling."""
from __future__ import annotations

from ..ir.shapes import Sym, ceildiv, dim_min, floordiv, nonneg
from .base import REQUIRED, Op, register
from .conv import auto_pads


class Pool(Op):
    ATTRS = {"auto_pad": "NOTSET", "ceil_mode": 0, "dilations": None, "kernel_shape": REQUIRED, "pads": None,
             "strides": None}

    def check(self, node):
        x = node.inputs[0]
        p = []
        if not x.dtype.is_float:
            p.append(f"{node.describe()}: element type {x.dtype.name.lower()} is not supported")
        if x.rank not in (3, 4, 5):
            p.append(f"{node.describe()}: only 1D, 2D and 3D pooling is supported (input rank {x.rank})")
        if any(isinstance(d, Sym) for d in x.shape[2:]) and self.auto_pad in ("SAME_UPPER", "SAME_LOWER") and \
                any(s != 1 for s in (self.strides or [])):
            p.append(f"{node.describe()}: auto_pad={self.auto_pad} with strides over a symbolic spatial size "
                     "is not supported")
        if len(node.outputs) > 1:
            p.append(f"{node.describe()}: the Indices output of MaxPool is not supported")
        return p

    def geometry(self, node):
        x = node.inputs[0]
        nsp = x.rank - 2
        ks = list(self.kernel_shape)
        strides = list(self.strides) if self.strides else [1] * nsp
        dil = list(self.dilations) if self.dilations else [1] * nsp
        pads = list(self.pads) if self.pads else [0] * (2 * nsp)
        if len(ks) != nsp:
            raise self.fail(node, f"kernel_shape {ks} does not match {nsp} spatial dims")
        outs = []
        for i in range(nsp):
            n = x.shape[2 + i]
            eff = (ks[i] - 1) * dil[i] + 1
            if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                pads[i], pads[nsp + i] = auto_pads(self.auto_pad, n, eff, strides[i])
                o = ceildiv(n, strides[i])
            elif self.auto_pad == "VALID":
                pads[i] = pads[nsp + i] = 0
                o = floordiv(n - eff, strides[i]) + 1
            else:
                span = n + pads[i] + pads[nsp + i] - eff
                if self.ceil_mode:
                    # the last window must start inside the input or left padding; the right pad is shorter
                    # than the kernel, so that removes at most one window
                    o = dim_min(ceildiv(span, strides[i]) + 1, ceildiv(n + pads[i], strides[i]))
                else:
                    o = floordiv(span, strides[i]) + 1
            if isinstance(o, int) and o <= 0:
                raise self.fail(node, f"output spatial size would be {o}")
            outs.append(o)
        return ks, strides, dil, pads, outs

    def guards(self, node):
        x = node.inputs[0]
        ks, _, dil, pads, _ = self.geometry(node)
        nsp = x.rank - 2
        out = []
        for i in range(nsp):
            span = x.shape[2 + i] + pads[i] + pads[nsp + i] - ((ks[i] - 1) * dil[i] + 1)
            if isinstance(span, Sym) and not nonneg(span):
                out.append((span, f"{node.describe()}: spatial axis {2 + i} is shorter than the window"))
        return out

    def infer(self, node):
        x = node.inputs[0]
        *_, outs = self.geometry(node)
        return [(x.dtype, tuple(x.shape[:2]) + tuple(outs))]


@register()
class MaxPool(Pool):
    ATTRS = dict(Pool.ATTRS, storage_order=0)


@register()
class AveragePool(Pool):
    ATTRS = dict(Pool.ATTRS, count_include_pad=0)


class GlobalPool(Op):
    def check(self, node):
        x = node.inputs[0]
        if not x.dtype.is_float:
            return [f"{node.describe()}: element type {x.dtype.name.lower()} is not supported"]
        if x.rank < 3:
            return [f"{node.describe()}: input rank must be >= 3"]
        return []

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, tuple(x.shape[:2]) + (1,) * (x.rank - 2))]


@register()
class GlobalAveragePool(GlobalPool):
    pass


@register()
class GlobalMaxPool(GlobalPool):
    pass
