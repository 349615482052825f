"""The Layer subclasses that ``keras.applications`` defines for its models (keras/src/applications/*.py):
ConvNeXt's LayerScale and StochasticDepth, Inception-ResNet-v2's CustomScaleLayer. (Its other models use only
built-in layers and operation nodes, see opnodes.py.)"""
from __future__ import annotations

import numpy as np

from .builder import _Ctx, _LayerProblem, _int_dims, _shape, _single


def _layer_scale(ctx: _Ctx, cfg, inputs, kw):
    """x * gamma, gamma one weight per channel (the last axis)."""
    x = _single(inputs)
    c = _int_dims(x, [len(_shape(x)) - 1], "LayerScale")[0]
    gamma = ctx.weight(0, "gamma").reshape(-1)
    if gamma.size != c:
        raise _LayerProblem(f"gamma has {gamma.size} values for {c} channels")
    return [ctx.b.op("Mul", [x, ctx.b.const(gamma.astype(np.float32))])]


def _stochastic_depth(ctx: _Ctx, cfg, inputs, kw):
    """Drops whole residual paths in training only: the identity at inference."""
    return [_single(inputs)]


def _custom_scale(ctx: _Ctx, cfg, inputs, kw):
    """inputs[0] + inputs[1] * scale."""
    if not isinstance(inputs, list) or len(inputs) != 2:
        raise _LayerProblem("expects two inputs")
    scale = cfg.get("scale")
    if not isinstance(scale, (int, float)):
        raise _LayerProblem(f"scale {scale!r} is not a number")
    b = ctx.b
    return [b.op("Add", [inputs[0], b.op("Mul", [inputs[1], b.const(np.float32(scale))])])]


APPLICATION_LAYERS = {"LayerScale": _layer_scale, "StochasticDepth": _stochastic_depth,
                      "CustomScaleLayer": _custom_scale}
