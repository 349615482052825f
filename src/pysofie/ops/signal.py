"""Signal processing: DFT, STFT, the window generators (Hann, Hamming, Blackman), MelWeightMatrix, CumProd and
Compress. Window sizes, DFT lengths and Compress conditions determine output shapes, so they must be known at
generation time."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from ..ir.shapes import Sym, floordiv, numel
from .base import Op, norm_axis, register, runtime_symbol
from .elementwise import ALL, FLOATS, check_types
from .reduce import CumSum


def _scalar(op: Op, node, i: int, what: str) -> int | None:
    c = op.const_input(node, i, what)
    if c is None:
        return None
    c = np.asarray(c).reshape(-1)
    if c.size != 1:
        raise op.fail(node, f"{what} must be a scalar, got {c.size} values")
    return int(c[0])


@register()
class CumProd(CumSum):
    """Running product: CumSum's attributes, axis input and shapes."""


@register()
class Compress(Op):
    ATTRS = {"axis": None}
    INPUTS = ("input", "condition")
    OUTPUTS = ("output",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], ALL)

    def runtime_inputs(self, node):
        return [0] if node.inputs[1].const is not None else [0, 1]

    def _extent(self, node):
        x = node.inputs[0]
        return numel(x.shape) if self.axis is None else x.shape[norm_axis(self.axis, x.rank, node)]

    def runtime_sizes(self, node):
        """A condition computed at run time: the kept count is decided then, at most the axis' extent."""
        if node.inputs[1].const is not None:
            return {}
        return {runtime_symbol(node): self._extent(node)}

    def selected(self, node) -> list[int]:
        """Indices kept along the axis (or of the flattened input)."""
        c = self.const_input(node, 1, "the condition decides the output size")
        c = np.asarray(c).reshape(-1).astype(bool)
        x = node.inputs[0]
        if self.axis is None:
            n = numel(x.shape)
        else:
            n = x.shape[norm_axis(self.axis, x.rank, node)]
        if not isinstance(n, int):
            raise self.fail(node, "the compressed axis must have a size known at generation time")
        if c.size > n:
            raise self.fail(node, f"condition has {c.size} entries, more than the {n} along the axis")
        return [int(k) for k in np.nonzero(c)[0]]

    def infer(self, node):
        x = node.inputs[0]
        c = node.inputs[1]
        if c.rank != 1:
            raise self.fail(node, f"condition must be 1-D, got rank {c.rank}")
        k = len(self.selected(node)) if c.const is not None else Sym.var(runtime_symbol(node))
        if self.axis is None:
            return [(x.dtype, (k,))]
        a = norm_axis(self.axis, x.rank, node)
        shape = list(x.shape)
        shape[a] = k
        return [(x.dtype, tuple(shape))]


class _Window(Op):
    ATTRS = {"output_datatype": 1, "periodic": 1}
    INPUTS = ("size",)
    OUTPUTS = ("output",)

    def check(self, node):
        try:
            DType.from_onnx(self.output_datatype)
        except TypeError as e:
            return [f"{node.describe()}: {e}"]
        return []

    def runtime_inputs(self, node):
        return []

    def infer(self, node):
        n = _scalar(self, node, 0, "window size")
        if n < 0:
            raise self.fail(node, f"window size {n} is negative")
        return [(DType.from_onnx(self.output_datatype), (n,))]


@register()
class HannWindow(_Window):
    COEF = (0.5, -0.5, 0.0)


@register()
class HammingWindow(_Window):
    COEF = (25.0 / 46.0, -(1.0 - 25.0 / 46.0), 0.0)


@register()
class BlackmanWindow(_Window):
    COEF = (0.42, -0.5, 0.08)


@register()
class MelWeightMatrix(Op):
    ATTRS = {"output_datatype": 1}
    INPUTS = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")
    OUTPUTS = ("output",)

    def runtime_inputs(self, node):
        return []

    def infer(self, node):
        bins = _scalar(self, node, 0, "num_mel_bins")
        dft = _scalar(self, node, 1, "dft_length")
        for i in (2, 3, 4):
            self.const_input(node, i)
        try:
            dt = DType.from_onnx(self.output_datatype)
        except TypeError as e:
            raise self.fail(node, str(e))
        return [(dt, (dft // 2 + 1, bins))]


@register()
class DFT(Op):
    """Naive O(n^2) DFT along one axis with twiddles in double. Opset 17: axis attribute; 20: axis input.
    inverse=1 with onesided=1 is the real inverse of a one-sided spectrum (output last dim 1), as numpy's irfft."""
    ATTRS = {"axis": None, "inverse": 0, "onesided": 0}
    INPUTS = ("input", "dft_length", "axis_input")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], FLOATS)
        return p

    def runtime_inputs(self, node):
        return [0]

    def params(self, node) -> tuple[int, int, int]:
        """(axis, input length along it, dft length)."""
        x = node.inputs[0]
        if node.input(2) is not None:
            axis = _scalar(self, node, 2, "axis")
        elif self.attrs.get("axis") is not None:
            axis = int(self.axis)
        else:
            axis = 1 if 0 < self.opset < 20 else -2
        if x.rank < 2 or not isinstance(x.shape[-1], int) or x.shape[-1] not in (1, 2):
            raise self.fail(node, f"input must end with a dimension of 1 (real) or 2 (complex), got shape "
                            f"{list(x.shape)}")
        a = norm_axis(axis, x.rank, node)
        if a == x.rank - 1:
            raise self.fail(node, "the DFT axis cannot be the last (real/imaginary) dimension")
        n = x.shape[a]
        if node.input(1) is not None:
            length = _scalar(self, node, 1, "dft_length")
        elif self.inverse and self.onesided and isinstance(n, int):
            length = 2 * (n - 1)  # a real inverse DFT of a one-sided spectrum (numpy's irfft)
        else:
            length = n
        if isinstance(length, Sym) or not isinstance(n, int):
            raise self.fail(node, "the transformed axis must have a size known at generation time")
        if length <= 0:
            raise self.fail(node, f"dft_length {length} must be positive")
        return a, n, length

    def infer(self, node):
        x = node.inputs[0]
        a, n, length = self.params(node)
        shape = list(x.shape)
        if self.inverse and self.onesided:
            # real inverse of a one-sided (Hermitian) spectrum: real output of dft_length samples
            shape[a] = length
            shape[-1] = 1
        else:
            shape[a] = length // 2 + 1 if self.onesided else length
            shape[-1] = 2
        return [(x.dtype, tuple(shape))]


@register()
class STFT(Op):
    ATTRS = {"onesided": 1}
    INPUTS = ("signal", "frame_step", "window", "frame_length")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], FLOATS)
        w = node.input(2)
        if w is not None:
            p += check_types(node, [w.dtype], FLOATS, "window element type")
        return p

    def runtime_inputs(self, node):
        return [0] + ([2] if node.input(2) is not None else [])

    def params(self, node) -> tuple[int, int, int]:
        """(frame_step, frame_length, number of frames)."""
        x = node.inputs[0]
        if x.rank != 3 or x.shape[2] not in (1, 2):
            raise self.fail(node, f"signal must be [batch, length, 1 or 2], got {list(x.shape)}")
        step = _scalar(self, node, 1, "frame_step")
        w = node.input(2)
        if node.input(3) is not None:
            flen = _scalar(self, node, 3, "frame_length")
        elif w is not None:
            flen = w.shape[0]
        else:
            raise self.fail(node, "either a window or a frame_length is required")
        if w is not None and (w.rank != 1 or w.shape[0] != flen):
            raise self.fail(node, f"window shape {list(w.shape)} does not match frame_length {flen}")
        n = x.shape[1]
        if not isinstance(flen, int):
            raise self.fail(node, "the frame length must be known at generation time")
        if isinstance(n, Sym):  # a symbolic signal length: the frame count is a size expression (see guards)
            if step <= 0 or flen <= 0:
                raise self.fail(node, f"invalid frame_step {step} / frame_length {flen}")
            return step, flen, floordiv(n - flen, step) + 1
        if step <= 0 or flen <= 0 or flen > n:
            raise self.fail(node, f"invalid frame_step {step} / frame_length {flen} for signal length {n}")
        return step, flen, 1 + (n - flen) // step

    def guards(self, node):
        n = node.inputs[0].shape[1] if node.inputs[0].rank == 3 else 0
        if not isinstance(n, Sym):
            return []
        _, flen, _ = self.params(node)
        return [(n - flen, f"{node.describe()}: the signal is shorter than the frame length {flen}")]

    def infer(self, node):
        x = node.inputs[0]
        step, flen, frames = self.params(node)
        bins = flen // 2 + 1 if self.onesided else flen
        return [(x.dtype, (x.shape[0], frames, bins, 2))]
