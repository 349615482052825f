"""Convolution, pooling, padding, cropping and upsampling layers (channels_last outside, ONNX's channels first
inside, with Transposes around)."""
from __future__ import annotations

import numpy as np

from ...ir import Value
from .builder import (INT64_MAX, _Builder, _Ctx, _LayerProblem, _activation, _channels_first, _from_cf, _pairs, _shape, _single,
    _spatial_axes, _to_cf, _tuple)


def _spatial_pads(x_cf: Value, kernel, strides, dil, padding: str, what: str):
    """(pads, auto_pad) for ONNX from Keras padding on a channels-first tensor."""
    nsp = len(kernel)
    if padding == "valid":
        return [0] * (2 * nsp), None
    if padding == "causal":
        if nsp != 1:
            raise _LayerProblem("causal padding exists only for 1-D convolutions")
        return [(kernel[0] - 1) * dil[0], 0], None
    if padding != "same":
        raise _LayerProblem(f"padding '{padding}' is not supported")
    s = _shape(x_cf)[2:]
    if not all(isinstance(d, int) for d in s):
        return None, "SAME_UPPER"
    before, after = [], []
    for i in range(nsp):
        n = int(s[i])
        out = -(-n // strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before + after, None


def _conv(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    nsp = len(_shape(x)) - 2
    k = _tuple(cfg["kernel_size"], nsp)
    s = _tuple(cfg.get("strides", 1), nsp)
    d = _tuple(cfg.get("dilation_rate", 1), nsp)
    groups = int(cfg.get("groups", 1) or 1)
    cf = _channels_first(cfg)
    kernel = ctx.weight(0, "kernel")
    w = np.transpose(kernel, [nsp + 1, nsp] + list(range(nsp)))  # (out, in/groups, *k)
    ins_cf = _to_cf(b, x, cf)
    pads, auto = _spatial_pads(ins_cf, k, s, d, cfg.get("padding", "valid"), "Conv")
    ins = [ins_cf, b.const(w)]
    if cfg.get("use_bias", True):
        ins.append(b.const(ctx.weight(1, "bias")))
    y = b.op("Conv", ins, kernel_shape=k, strides=s, dilations=d, group=groups, pads=pads, auto_pad=auto)
    y = _from_cf(b, y, cf)
    return [_activation(b, y, cfg.get("activation"), ctx.major)]


def _conv_transpose(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    nsp = len(_shape(x)) - 2
    k = _tuple(cfg["kernel_size"], nsp)
    s = _tuple(cfg.get("strides", 1), nsp)
    d = _tuple(cfg.get("dilation_rate", 1), nsp)
    if cfg.get("output_padding") is not None:
        raise _LayerProblem("output_padding is not supported")
    if int(cfg.get("groups", 1) or 1) != 1:
        raise _LayerProblem("grouped transposed convolution is not supported")
    cf = _channels_first(cfg)
    kernel = ctx.weight(0, "kernel")  # (*k, out, in)
    w = np.transpose(kernel, [nsp + 1, nsp] + list(range(nsp)))  # (in, out, *k)
    padding = cfg.get("padding", "valid")
    pads, outpad = [], []
    for i in range(nsp):
        keff = (k[i] - 1) * d[i] + 1
        if padding == "valid":
            pads.append((0, 0))
            outpad.append(max(s[i] - keff, 0))
        elif padding == "same":
            total = max(keff - s[i], 0)
            pads.append((total // 2, total - total // 2))
            outpad.append(max(s[i] - keff, 0))
        else:
            raise _LayerProblem(f"padding '{padding}' is not supported")
    ins = [_to_cf(b, x, cf), b.const(w)]
    if cfg.get("use_bias", True):
        ins.append(b.const(ctx.weight(1, "bias")))
    y = b.op("ConvTranspose", ins, kernel_shape=k, strides=s, dilations=d,
             pads=[p[0] for p in pads] + [p[1] for p in pads],
             output_padding=outpad if any(outpad) else None)
    y = _from_cf(b, y, cf)
    return [_activation(b, y, cfg.get("activation"), ctx.major)]


def _depthwise_w(dk: np.ndarray, nsp: int) -> np.ndarray:
    # (*k, in, dm) -> (in*dm, 1, *k); output channel c*dm + m as in TensorFlow
    cin, dm = dk.shape[nsp], dk.shape[nsp + 1]
    w = np.transpose(dk, [nsp, nsp + 1] + list(range(nsp)))
    return w.reshape((cin * dm, 1) + tuple(dk.shape[:nsp]))


def _depthwise(ctx: _Ctx, cfg, inputs, kw, separable: bool = False):
    b = ctx.b
    x = _single(inputs)
    nsp = len(_shape(x)) - 2
    k = _tuple(cfg["kernel_size"], nsp)
    s = _tuple(cfg.get("strides", 1), nsp)
    d = _tuple(cfg.get("dilation_rate", 1), nsp)
    cf = _channels_first(cfg)
    dk = ctx.weight(0, "depthwise_kernel")
    cin = dk.shape[nsp]
    xcf = _to_cf(b, x, cf)
    pads, auto = _spatial_pads(xcf, k, s, d, cfg.get("padding", "valid"), "DepthwiseConv")
    ins = [xcf, b.const(_depthwise_w(dk, nsp))]
    if not separable and cfg.get("use_bias", True):
        ins.append(b.const(ctx.weight(1, "bias")))
    y = b.op("Conv", ins, kernel_shape=k, strides=s, dilations=d, group=cin, pads=pads, auto_pad=auto)
    if separable:
        pk = ctx.weight(1, "pointwise_kernel")  # (1.., in*dm, out)
        pw = np.transpose(pk, [nsp + 1, nsp] + list(range(nsp)))
        ins = [y, b.const(pw)]
        if cfg.get("use_bias", True):
            ins.append(b.const(ctx.weight(2, "bias")))
        y = b.op("Conv", ins, kernel_shape=[1] * nsp)
    y = _from_cf(b, y, cf)
    return [_activation(b, y, cfg.get("activation"), ctx.major)]


def _pool(kind: str):
    def conv(ctx: _Ctx, cfg, inputs, kw):
        b = ctx.b
        x = _single(inputs)
        nsp = len(_shape(x)) - 2
        k = _tuple(cfg.get("pool_size", 2), nsp)
        s = _tuple(cfg.get("strides") or k, nsp)
        cf = _channels_first(cfg)
        xcf = _to_cf(b, x, cf)
        pads, auto = _spatial_pads(xcf, k, s, [1] * nsp, cfg.get("padding", "valid"), kind)
        attrs = dict(kernel_shape=k, strides=s, pads=pads, auto_pad=auto)
        if kind == "AveragePool":
            attrs["count_include_pad"] = 0
        y = b.op(kind, [xcf], **attrs)
        return [_from_cf(b, y, cf)]
    return conv


def _global_pool(kind: str):
    def conv(ctx: _Ctx, cfg, inputs, kw):
        b = ctx.b
        x = _single(inputs)
        cf = _channels_first(cfg)
        y = b.op(kind, [_to_cf(b, x, cf)])
        if cfg.get("keepdims", False):
            return [_from_cf(b, y, cf)]
        return [b.op("Flatten", [y], axis=1)]
    return conv


def _zero_pad(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    r = len(_shape(x))
    sp = _spatial_axes(x, cfg)
    pairs = _pairs(cfg["padding"], len(sp))
    begin = [0] * r
    end = [0] * r
    for a, (p0, p1) in zip(sp, pairs):
        begin[a], end[a] = p0, p1
    return [b.op("Pad", [x, b.i64(begin + end), b.const(np.float32(0))], mode="constant")]


def _crop(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    sp = _spatial_axes(x, cfg)
    pairs = _pairs(cfg["cropping"], len(sp))
    starts = [p[0] for p in pairs]
    ends = [(-p[1] if p[1] else INT64_MAX) for p in pairs]
    return [b.slice(x, starts, ends, sp)]


def _repeat_axis(b: _Builder, x: Value, axis: int, n: int) -> Value:
    """Repeat every element n times along axis (nearest-neighbour upsampling)."""
    if n == 1:
        return x
    s = _shape(x)
    u = b.unsqueeze(x, [axis + 1])
    c = b.op("Concat", [u] * n, axis=axis + 1)
    new = [0] * len(s)
    for i in range(1, len(s)):
        if not isinstance(s[i], int):
            raise _LayerProblem(f"needs a known size for axis {i}")
        new[i] = int(s[i])
    new[axis] = int(s[axis]) * n
    return b.reshape(c, new)


def _upsample(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    sp = _spatial_axes(x, cfg) if ctx.cls != "UpSampling1D" else [1]
    size = _tuple(cfg.get("size", 2), len(sp))
    interp = cfg.get("interpolation", "nearest")
    if interp == "nearest":
        for a, n in zip(sp, size):
            x = _repeat_axis(b, x, a, n)
        return [x]
    if interp != "bilinear":
        raise _LayerProblem(f"interpolation '{interp}' is not supported")
    cf = _channels_first(cfg)
    xcf = _to_cf(b, x, cf)
    scales = b.const(np.asarray([1.0, 1.0] + [float(v) for v in size], np.float32))
    y = b.op("Resize", [xcf, None, scales], mode="linear", coordinate_transformation_mode="half_pixel")
    return [_from_cf(b, y, cf)]
