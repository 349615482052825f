"""Dense, normalization, activation, reshaping, merging, embedding and preprocessing layers."""
from __future__ import annotations

import numpy as np

from ...ir import DType, Value
from .builder import _Ctx, _LayerProblem, _activation, _axes, _channels_first, _int_dims, _shape, _single


def _batchnorm(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    r = len(_shape(x))
    axes = _axes(cfg.get("axis", -1), r)
    k = 0
    gamma = beta = None
    if cfg.get("scale", True):
        gamma = ctx.weight(k, "gamma").astype(np.float64)
        k += 1
    if cfg.get("center", True):
        beta = ctx.weight(k, "beta").astype(np.float64)
        k += 1
    mean = ctx.weight(k, "moving_mean").astype(np.float64)
    var = ctx.weight(k + 1, "moving_variance").astype(np.float64)
    eps = float(cfg.get("epsilon", 1e-3))
    scale = 1.0 / np.sqrt(var + eps)
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale
    if beta is not None:
        shift = shift + beta
    bshape = [(_shape(x)[i] if i in axes else 1) for i in range(axes[0], r)]
    bshape = [int(v) for v in bshape]
    y = b.op("Mul", [x, b.const(scale.reshape(bshape))])
    return [b.op("Add", [y, b.const(shift.reshape(bshape))])]


def _layernorm(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    r = len(_shape(x))
    axes = _axes(cfg.get("axis", -1), r)
    if axes != list(range(axes[0], r)):
        raise _LayerProblem(f"normalization over axes {axes} that are not the trailing axes is not supported")
    if cfg.get("rms_scaling", False):
        raise _LayerProblem("rms_scaling is not supported")
    nshape = [int(d) for d in _int_dims(x, axes, "LayerNormalization")]
    k = 0
    if cfg.get("scale", True):
        gamma = ctx.weight(k, "gamma").reshape(nshape)
        k += 1
    else:
        gamma = np.ones(nshape, np.float32)
    beta = ctx.weight(k, "beta").reshape(nshape) if cfg.get("center", True) else np.zeros(nshape, np.float32)
    eps = float(cfg.get("epsilon", 1e-3))
    return [b.op("LayerNormalization", [x, b.const(gamma), b.const(beta)], axis=axes[0], epsilon=eps)]


def _dense(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    kernel = ctx.weight(0, "kernel")
    bias = ctx.weight(1, "bias") if cfg.get("use_bias", True) else None
    if len(_shape(x)) == 2:
        ins = [x, b.const(kernel)] + ([b.const(bias)] if bias is not None else [])
        y = b.op("Gemm", ins)
    else:
        y = b.op("MatMul", [x, b.const(kernel)])
        if bias is not None:
            y = b.op("Add", [y, b.const(bias)])
    return [_activation(b, y, cfg.get("activation"), ctx.major)]


def _act_layer(ctx: _Ctx, cfg, inputs, kw):
    return [_activation(ctx.b, _single(inputs), cfg.get("activation"), ctx.major)]


def _relu(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    mx = cfg.get("max_value")
    slope = float(cfg.get("negative_slope", 0.0) or 0.0)
    thr = float(cfg.get("threshold", 0.0) or 0.0)
    if thr != 0.0:
        raise _LayerProblem("a non-zero threshold is not supported")
    if mx is None:
        return [b.op("LeakyRelu", [x], alpha=slope) if slope else b.op("Relu", [x])]
    if slope:
        y = b.op("LeakyRelu", [x], alpha=slope)
        return [b.op("Clip", [y, b.const(np.float32(-np.inf)), b.const(np.float32(mx))])]
    return [b.op("Clip", [x, b.const(np.float32(0)), b.const(np.float32(mx))])]


def _leaky(ctx: _Ctx, cfg, inputs, kw):
    alpha = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return [ctx.b.op("LeakyRelu", [_single(inputs)], alpha=float(alpha))]


def _prelu(ctx: _Ctx, cfg, inputs, kw):
    # prelu(x) = relu(x) + alpha * (x - relu(x)), exact with the operators every backend has
    b = ctx.b
    x = _single(inputs)
    alpha = b.const(ctx.weight(0, "alpha"))
    r = b.op("Relu", [x])
    return [b.op("Add", [r, b.op("Mul", [alpha, b.op("Sub", [x, r])])])]


def _elu(ctx: _Ctx, cfg, inputs, kw):
    return [ctx.b.op("Elu", [_single(inputs)], alpha=float(cfg.get("alpha", 1.0)))]


def _softmax(ctx: _Ctx, cfg, inputs, kw):
    ax = cfg.get("axis", -1)
    if isinstance(ax, list):
        if len(ax) != 1:
            raise _LayerProblem("softmax over several axes is not supported")
        ax = ax[0]
    if kw.get("mask") is not None:
        raise _LayerProblem("a softmax mask is not supported")
    return [ctx.b.op("Softmax", [_single(inputs)], axis=int(ax))]


def _identity(ctx: _Ctx, cfg, inputs, kw):
    return [_single(inputs)]


def _flatten(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    r = len(_shape(x))
    if _channels_first(cfg) and r > 2:
        x = b.transpose(x, [0] + list(range(2, r)) + [1])
    return [b.op("Flatten", [x], axis=1)]


def _reshape(ctx: _Ctx, cfg, inputs, kw):
    return [ctx.b.reshape(_single(inputs), [0] + [int(v) for v in cfg["target_shape"]])]


def _permute(ctx: _Ctx, cfg, inputs, kw):
    return [ctx.b.transpose(_single(inputs), [0] + [int(v) for v in cfg["dims"]])]


def _repeat_vector(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    n = int(cfg["n"])
    u = b.unsqueeze(_single(inputs), [1])
    return [u if n == 1 else b.op("Concat", [u] * n, axis=1)]


def _concat(ctx: _Ctx, cfg, inputs, kw):
    xs = inputs if isinstance(inputs, list) else [inputs]
    return [ctx.b.op("Concat", xs, axis=int(cfg.get("axis", -1)))]


def _merge(kind: str):
    def conv(ctx: _Ctx, cfg, inputs, kw):
        b = ctx.b
        xs = inputs if isinstance(inputs, list) else [inputs]
        if not all(isinstance(x, Value) for x in xs):
            raise _LayerProblem(f"merges tensors only, got {[type(x).__name__ for x in xs]}")
        if kind == "Sub":
            if len(xs) != 2:
                raise _LayerProblem("Subtract needs exactly two inputs")
            return [b.op("Sub", xs)]
        op = {"Avg": "Add"}.get(kind, kind)
        y = xs[0]
        for x in xs[1:]:
            y = b.op(op, [y, x])
        if kind == "Avg":
            y = b.op("Mul", [y, b.const(np.float32(1.0 / len(xs)))])
        return [y]
    return conv


def _embedding(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    if x.dtype is not DType.INT64:
        x = b.op("Cast", [x], to=int(DType.INT64.onnx))
    return [b.op("Gather", [b.const(ctx.weight(0, "embeddings")), x], axis=0)]


def _rescaling(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    scale, offset = cfg.get("scale", 1.0), cfg.get("offset", 0.0)
    y = b.op("Mul", [x, b.const(np.asarray(scale, np.float32))])
    return [b.op("Add", [y, b.const(np.asarray(offset, np.float32))])]


def _normalization(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    r = len(_shape(x))
    if len(ctx.w) >= 2:
        mean, var = np.asarray(ctx.w[0], np.float64), np.asarray(ctx.w[1], np.float64)
    elif cfg.get("mean") is not None and cfg.get("variance") is not None:
        ax = cfg.get("axis", -1)
        axes = [] if ax is None else _axes(ax, r)
        bshape = [int(_int_dims(x, [i], "Normalization")[0]) if i in axes else 1 for i in range(r)]
        mean = np.broadcast_to(np.asarray(cfg["mean"], np.float64).reshape(-1 if axes else ()), bshape) \
            if axes else np.asarray(cfg["mean"], np.float64)
        var = np.broadcast_to(np.asarray(cfg["variance"], np.float64).reshape(-1 if axes else ()), bshape) \
            if axes else np.asarray(cfg["variance"], np.float64)
    else:
        raise _LayerProblem("the layer holds no mean and variance (not adapted)")
    std = np.maximum(np.sqrt(var), 1e-7)  # keras.backend.epsilon()
    if cfg.get("invert", False):
        return [b.op("Add", [b.op("Mul", [x, b.const(std)]), b.const(mean)])]
    return [b.op("Div", [b.op("Sub", [x, b.const(mean)]), b.const(std)])]
