"""Image and spatial operators: GridSample, AffineGrid, CenterCropPad, Col2Im, LpPool, MaxUnpool, RoiAlign
(NonMaxSuppression is in dynamic.py). Sizes given as inputs
(AffineGrid's size, CenterCropPad's shape, Col2Im's image and block shapes) must be known at generation time."""
from __future__ import annotations

import numpy as np

from ..ir import DType
from ..ir.shapes import Sym
from .base import Op, norm_axis, register
from .elementwise import ALL, FLOATS, check_types
from .pool import Pool

_MODES = {"bilinear": "linear", "linear": "linear", "nearest": "nearest", "bicubic": "cubic", "cubic": "cubic"}


@register()
class GridSample(Op):
    ATTRS = {"align_corners": 0, "mode": None, "padding_mode": "zeros"}
    INPUTS = ("X", "grid")
    OUTPUTS = ("Y",)

    @property
    def kind(self) -> str:
        m = self.attrs["mode"] or ("bilinear" if 0 < self.opset < 20 else "linear")
        return _MODES.get(m, m)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype, node.inputs[1].dtype], FLOATS)
        if self.kind not in ("linear", "nearest", "cubic"):
            p.append(f"{node.describe()}: mode '{self.attrs['mode']}' is not supported")
        if self.padding_mode not in ("zeros", "border", "reflection"):
            p.append(f"{node.describe()}: padding_mode '{self.padding_mode}' is not supported")
        if any(isinstance(d, Sym) for d in node.inputs[0].shape[2:]):
            p.append(f"{node.describe()}: symbolic spatial sizes are not supported")
        return p

    def infer(self, node):
        x, g = node.inputs
        nsp = x.rank - 2
        if nsp not in (1, 2, 3) or g.rank != x.rank or g.shape[-1] != nsp:
            raise self.fail(node, f"X shape {list(x.shape)} and grid shape {list(g.shape)} do not fit "
                            "(X: [N, C, spatial...], grid: [N, out spatial..., rank(X) - 2])")
        return [(x.dtype, (x.shape[0], x.shape[1]) + tuple(g.shape[1:-1]))]


@register()
class AffineGrid(Op):
    ATTRS = {"align_corners": 0}
    INPUTS = ("theta", "size")
    OUTPUTS = ("grid",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], FLOATS)

    def runtime_inputs(self, node):
        return [0]

    def sizes(self, node) -> list[int]:
        size = self.shape_input(node, 1, "size")
        if len(size) not in (4, 5) or not all(isinstance(d, int) for d in size[2:]):
            raise self.fail(node, f"size must be [N, C, H, W] or [N, C, D, H, W] with known spatial sizes, "
                            f"got {size}")
        return size

    def infer(self, node):
        th = node.inputs[0]
        size = self.sizes(node)
        nsp = len(size) - 2
        if th.rank != 3 or th.shape[1] != nsp or th.shape[2] != nsp + 1:
            raise self.fail(node, f"theta shape {list(th.shape)} does not fit size {size}")
        return [(th.dtype, (th.shape[0],) + tuple(size[2:]) + (nsp,))]


@register()
class CenterCropPad(Op):
    ATTRS = {"axes": None}
    INPUTS = ("input_data", "shape")
    OUTPUTS = ("output_data",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], ALL)

    def runtime_inputs(self, node):
        return [0]

    def target(self, node) -> list:
        x = node.inputs[0]
        sh = [int(v) for v in np.asarray(self.const_input(node, 1, "target shape")).reshape(-1)]
        axes = [norm_axis(a, x.rank, node) for a in self.axes] if self.axes is not None else list(range(x.rank))
        if len(axes) != len(sh):
            raise self.fail(node, f"shape has {len(sh)} entries for {len(axes)} axes")
        out = list(x.shape)
        for a, s in zip(axes, sh):
            if s < 0:
                raise self.fail(node, f"negative target size {s}")
            if s != x.shape[a] and isinstance(x.shape[a], Sym):
                raise self.fail(node, f"axis {a} has a symbolic size and cannot be cropped or padded")
            out[a] = s
        return out

    def infer(self, node):
        return [(node.inputs[0].dtype, tuple(self.target(node)))]


@register()
class Col2Im(Op):
    ATTRS = {"dilations": None, "pads": None, "strides": None}
    INPUTS = ("input", "image_shape", "block_shape")
    OUTPUTS = ("output",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], FLOATS)

    def runtime_inputs(self, node):
        return [0]

    def geometry(self, node):
        x = node.inputs[0]
        img = [int(v) for v in np.asarray(self.const_input(node, 1, "image_shape")).reshape(-1)]
        blk = [int(v) for v in np.asarray(self.const_input(node, 2, "block_shape")).reshape(-1)]
        k = len(img)
        if len(blk) != k or x.rank != 3:
            raise self.fail(node, f"input {list(x.shape)}, image_shape {img} and block_shape {blk} do not fit")
        dil = list(self.dilations) if self.dilations else [1] * k
        st = list(self.strides) if self.strides else [1] * k
        pads = list(self.pads) if self.pads else [0] * (2 * k)
        nblocks = []
        for i in range(k):
            eff = dil[i] * (blk[i] - 1) + 1
            nblocks.append((img[i] + pads[i] + pads[k + i] - eff) // st[i] + 1)
        bs = int(np.prod(blk))
        if isinstance(x.shape[1], int) and x.shape[1] % bs:
            raise self.fail(node, f"input dim 1 ({x.shape[1]}) is not a multiple of the block size {bs}")
        if isinstance(x.shape[2], int) and x.shape[2] != int(np.prod(nblocks)):
            raise self.fail(node, f"input dim 2 ({x.shape[2]}) != number of blocks {int(np.prod(nblocks))}")
        return img, blk, dil, st, pads, nblocks

    def infer(self, node):
        x = node.inputs[0]
        img, blk, *_ = self.geometry(node)
        c = x.shape[1] // int(np.prod(blk)) if isinstance(x.shape[1], int) else None
        if c is None:
            raise self.fail(node, "the channel dimension must be known at generation time")
        return [(x.dtype, (x.shape[0], c) + tuple(img))]


@register()
class LpPool(Pool):
    ATTRS = dict(Pool.ATTRS, p=2)

    def check(self, node):
        p = super().check(node)
        if self.p <= 0:
            p.append(f"{node.describe()}: p={self.p} must be positive")
        return p


@register()
class MaxUnpool(Op):
    """Scatters X into zeros at the (flattened) positions of `I`, as computed by MaxPool; the result has the
    shape implied by kernel/strides/pads, placed in the leading corner of `output_shape` when that is given."""
    ATTRS = {"kernel_shape": None, "pads": None, "strides": None}
    INPUTS = ("X", "I", "output_shape")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], FLOATS)
        p += check_types(node, [node.inputs[1].dtype], frozenset({DType.INT64}), "index element type")
        if self.kernel_shape is None:
            p.append(f"{node.describe()}: the kernel_shape attribute is required")
        return p

    def runtime_inputs(self, node):
        return [0, 1]

    def shapes(self, node):
        """(inferred unpooled shape, output shape)."""
        x = node.inputs[0]
        ks = list(self.kernel_shape)
        k = len(ks)
        if x.rank != k + 2 or any(isinstance(d, Sym) for d in x.shape[2:]):
            raise self.fail(node, f"input shape {list(x.shape)} does not fit kernel_shape {ks} (spatial sizes "
                            "must be known at generation time)")
        st = list(self.strides) if self.strides else [1] * k
        pads = list(self.pads) if self.pads else [0] * (2 * k)
        inferred = list(x.shape[:2]) + [(x.shape[2 + i] - 1) * st[i] - pads[i] - pads[k + i] + ks[i]
                                        for i in range(k)]
        out = self.shape_input(node, 2, "output_shape")
        if out is None:
            return inferred, inferred
        if len(out) != x.rank:
            raise self.fail(node, f"output_shape {out} has the wrong rank")
        for a, b in zip(inferred[2:], out[2:]):
            if b < a:
                raise self.fail(node, f"output_shape {out} is smaller than the unpooled shape {inferred}")
        return inferred, list(x.shape[:2]) + list(out[2:])

    def infer(self, node):
        _, out = self.shapes(node)
        return [(node.inputs[0].dtype, tuple(out))]


@register()
class RoiAlign(Op):
    ATTRS = {"coordinate_transformation_mode": None, "mode": "avg", "output_height": 1, "output_width": 1,
             "sampling_ratio": 0, "spatial_scale": 1.0}
    INPUTS = ("X", "rois", "batch_indices")
    OUTPUTS = ("Y",)

    @property
    def half_pixel(self) -> bool:
        m = self.attrs["coordinate_transformation_mode"] or ("output_half_pixel" if 0 < self.opset < 16
                                                             else "half_pixel")
        return m == "half_pixel"

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype, node.inputs[1].dtype], FLOATS)
        p += check_types(node, [node.inputs[2].dtype], frozenset({DType.INT64, DType.INT32}),
                         "batch index element type")
        m = self.attrs["coordinate_transformation_mode"]
        if m not in (None, "half_pixel", "output_half_pixel"):
            p.append(f"{node.describe()}: coordinate_transformation_mode '{m}' is not supported")
        if self.mode not in ("avg", "max"):
            p.append(f"{node.describe()}: mode '{self.mode}' is not supported")
        return p

    def infer(self, node):
        x, r, b = node.inputs
        if x.rank != 4 or r.rank != 2 or r.shape[1] != 4 or b.rank != 1:
            raise self.fail(node, f"expected X [N, C, H, W], rois [R, 4], batch_indices [R]; got "
                            f"{list(x.shape)}, {list(r.shape)}, {list(b.shape)}")
        return [(x.dtype, (r.shape[0], x.shape[1], self.output_height, self.output_width))]
