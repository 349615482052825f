"""Convolutions: Conv and ConvTranspose in 1, 2 and 3 spatial dimensions."""
from __future__ import annotations

from ..ir.shapes import Sym, floordiv
from .base import Op, register


def _spatial_attrs(op, node, nsp):
    ks = list(op.kernel_shape) if op.kernel_shape else None
    strides = list(op.strides) if op.strides else [1] * nsp
    dil = list(op.dilations) if op.dilations else [1] * nsp
    pads = list(op.pads) if op.pads else [0] * (2 * nsp)
    for name, val, n in (("strides", strides, nsp), ("dilations", dil, nsp), ("pads", pads, 2 * nsp)):
        if len(val) != n:
            raise op.fail(node, f"attribute {name}={val} must have {n} values")
    return ks, strides, dil, pads


def _static_weight_shape(op, node) -> None:
    """The kernels need the weight's sizes at generation (a weight given as a model input included)."""
    w = node.inputs[1]
    if w.shape is not None and not all(isinstance(d, int) for d in w.shape):
        raise op.fail(node, f"weight '{w.name}' has shape {list(w.shape)}: its sizes must be known, not run-time sizes")


def auto_pads(auto_pad: str, in_size: int, eff_kernel: int, stride: int) -> tuple[int, int]:
    """(begin, end) padding for auto_pad SAME_UPPER / SAME_LOWER."""
    if stride == 1:  # the output keeps the input's length, whatever it is (also a symbolic one)
        total = max(0, eff_kernel - 1)
    else:
        out = -(-in_size // stride)
        total = max(0, (out - 1) * stride + eff_kernel - in_size)
    small, big = total // 2, total - total // 2
    return (small, big) if auto_pad == "SAME_UPPER" else (big, small)


class ConvBase(Op):
    def check(self, node):
        p = []
        x = node.inputs[0]
        if not x.dtype.is_float:
            p.append(f"{node.describe()}: element type {x.dtype.name.lower()} is not supported")
        if x.rank not in (3, 4, 5):
            p.append(f"{node.describe()}: only 1D, 2D and 3D convolutions are supported (input rank {x.rank})")
        if self.auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
            p.append(f"{node.describe()}: auto_pad='{self.auto_pad}' is not a valid value")
        if any(isinstance(d, Sym) for d in x.shape[2:]):
            # a symbolic length takes the general path; padding that depends on the length does not fit it
            if self.auto_pad in ("SAME_UPPER", "SAME_LOWER") and (
                    self.op_type == "ConvTranspose" or any(s != 1 for s in (self.strides or []))):
                p.append(f"{node.describe()}: auto_pad={self.auto_pad} with strides over a symbolic spatial size "
                         "is not supported")
            if self.op_type == "ConvTranspose" and self.output_shape:
                p.append(f"{node.describe()}: output_shape over a symbolic spatial size is not supported")
        if node.inputs[1].const is None and not node.inputs[1].shape:
            p.append(f"{node.describe()}: weight shape unknown")
        return p

    def geometry(self, node):
        """Resolved kernel, strides, dilations, pads (begin..., end...) for the static spatial input."""
        x, w = node.inputs[0], node.inputs[1]
        nsp = x.rank - 2
        ks, strides, dil, pads = _spatial_attrs(self, node, nsp)
        ks = ks or list(w.shape[2:])
        if len(ks) != nsp:
            raise self.fail(node, f"kernel_shape {ks} does not match {nsp} spatial dims")
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * nsp)
            for i in range(nsp):
                eff = (ks[i] - 1) * dil[i] + 1
                if self.op_type == "ConvTranspose":
                    # output = input * stride; pads chosen so that holds
                    total = max(0, strides[i] * (x.shape[2 + i] - 1) + ((ks[i] - 1) * dil[i] + 1)
                                + self._outpad(nsp)[i] - x.shape[2 + i] * strides[i])
                    b = total // 2 if self.auto_pad == "SAME_UPPER" else total - total // 2
                    pads[i], pads[nsp + i] = b, total - b
                else:
                    pads[i], pads[nsp + i] = auto_pads(self.auto_pad, x.shape[2 + i], eff, strides[i])
        elif self.auto_pad == "VALID":
            pads = [0] * (2 * nsp)
        return ks, strides, dil, pads

    def _outpad(self, nsp):
        return [0] * nsp


@register()
class Conv(ConvBase):
    ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "pads": None,
             "strides": None}
    INPUTS = ("X", "W", "B")

    def infer(self, node):
        x, w = node.inputs[0], node.inputs[1]
        _static_weight_shape(self, node)
        ks, strides, dil, pads = self.geometry(node)
        nsp = x.rank - 2
        if x.shape[1] != w.shape[1] * self.group:
            raise self.fail(node, f"input channels {x.shape[1]} != weight channels {w.shape[1]} x group {self.group}")
        if w.shape[0] % self.group:
            raise self.fail(node, f"output channels {w.shape[0]} not divisible by group {self.group}")
        out = [x.shape[0], w.shape[0]]
        for span, stride in self._spans(node):
            o = floordiv(span, stride) + 1
            if isinstance(o, int) and o <= 0:
                raise self.fail(node, f"output spatial size would be {o}")
            out.append(o)
        return [(x.dtype, tuple(out))]

    def _spans(self, node):
        """(padded input length - effective kernel extent, stride) per spatial axis."""
        x = node.inputs[0]
        ks, strides, dil, pads = self.geometry(node)
        nsp = x.rank - 2
        return [(x.shape[2 + i] + pads[i] + pads[nsp + i] - ((ks[i] - 1) * dil[i] + 1), strides[i])
                for i in range(nsp)]

    def guards(self, node):
        return [(span, f"{node.describe()}: spatial axis {2 + i} is shorter than the kernel")
                for i, (span, _) in enumerate(self._spans(node)) if isinstance(span, Sym)]


@register()
class ConvTranspose(ConvBase):
    ATTRS = {"auto_pad": "NOTSET", "dilations": None, "group": 1, "kernel_shape": None, "output_padding": None,
             "output_shape": None, "pads": None, "strides": None}
    INPUTS = ("X", "W", "B")

    def _outpad(self, nsp):
        return list(self.output_padding) if self.output_padding else [0] * nsp

    def geometry(self, node):
        x = node.inputs[0]
        nsp = x.rank - 2
        ks, strides, dil, pads = super().geometry(node)
        if self.output_shape:
            # explicit output shape: derive the total padding, split as the spec says (the begin pad gets the
            # larger half unless auto_pad is SAME_UPPER)
            osh = list(self.output_shape)[-nsp:]
            op = self._outpad(nsp)
            pads = [0] * (2 * nsp)
            for i in range(nsp):
                # a negative total (output larger than the input covers) leaves extra positions at the end
                total = strides[i] * (x.shape[2 + i] - 1) + op[i] + ((ks[i] - 1) * dil[i] + 1) - osh[i]
                half = total // 2
                if total < 0:  # as onnxruntime: no begin pad, the extra outputs at the end get only the bias
                    pads[i], pads[nsp + i] = 0, total
                elif self.auto_pad == "SAME_UPPER":
                    pads[i], pads[nsp + i] = half, total - half
                else:
                    pads[i], pads[nsp + i] = total - half, half
        return ks, strides, dil, pads

    def infer(self, node):
        x, w = node.inputs[0], node.inputs[1]
        _static_weight_shape(self, node)
        ks, strides, dil, pads = self.geometry(node)
        nsp = x.rank - 2
        if x.shape[1] != w.shape[0]:
            raise self.fail(node, f"input channels {x.shape[1]} != weight dim 0 {w.shape[0]}")
        if isinstance(w.shape[0], int) and w.shape[0] % self.group:
            raise self.fail(node, f"input channels {w.shape[0]} not divisible by group {self.group}")
        op = self._outpad(nsp)
        out = [x.shape[0], w.shape[1] * self.group]
        for i in range(nsp):
            o = strides[i] * (x.shape[2 + i] - 1) + op[i] + ((ks[i] - 1) * dil[i] + 1) - pads[i] - pads[nsp + i]
            if isinstance(o, int) and o <= 0:
                raise self.fail(node, f"output spatial size would be {o}")
            out.append(o)
        return [(x.dtype, tuple(out))]


