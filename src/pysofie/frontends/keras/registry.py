"""Keras layer class name -> converter."""
from __future__ import annotations

from typing import Callable

from .applications import APPLICATION_LAYERS
from .attention import _mha
from .builder import _Ctx, _LayerProblem, _int_dims, _shape, _single
from .conv import _conv, _conv_transpose, _crop, _depthwise, _global_pool, _pool, _upsample, _zero_pad
from .core import (_act_layer, _batchnorm, _concat, _dense, _elu, _embedding, _flatten, _identity, _layernorm, _leaky, _merge,
    _normalization, _permute, _prelu, _relu, _repeat_vector, _rescaling, _reshape, _softmax)
from .opnodes import OPS, is_op_node
from .recurrent import _bidirectional, _rnn


def _time_distributed(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x = _single(inputs)
    inner = cfg["layer"]
    icls = inner.get("class_name")
    if icls not in _LAYERS or icls in ("TimeDistributed", "Bidirectional"):
        raise _LayerProblem(f"TimeDistributed around {icls} is not supported")
    s = _shape(x)
    t = _int_dims(x, [1], "TimeDistributed")[0]
    rest = _int_dims(x, list(range(2, len(s))), "TimeDistributed")
    flat = b.reshape(x, [-1] + rest)
    ictx = _Ctx(b, ctx.w, ctx.major, ctx.name, icls)
    y = _LAYERS[icls](ictx, inner.get("config", {}), flat, {})[0]
    ys = _shape(y)
    orest = _int_dims(y, list(range(1, len(ys))), "TimeDistributed")
    return [b.reshape(y, [-1, t] + orest)]


_LAYERS: dict[str, Callable] = {
    "MultiHeadAttention": _mha,
    "Rescaling": _rescaling, "Normalization": _normalization, "TimeDistributed": _time_distributed,
    "Identity": lambda c, cfg, i, k: [_single(i)],
    "Dense": _dense,
    "Conv1D": _conv, "Conv2D": _conv, "Conv3D": _conv,
    "Convolution1D": _conv, "Convolution2D": _conv, "Convolution3D": _conv,
    "Conv1DTranspose": _conv_transpose, "Conv2DTranspose": _conv_transpose, "Conv3DTranspose": _conv_transpose,
    "DepthwiseConv1D": _depthwise, "DepthwiseConv2D": _depthwise,
    "SeparableConv1D": lambda c, cfg, i, k: _depthwise(c, cfg, i, k, separable=True),
    "SeparableConv2D": lambda c, cfg, i, k: _depthwise(c, cfg, i, k, separable=True),
    "MaxPooling1D": _pool("MaxPool"), "MaxPooling2D": _pool("MaxPool"), "MaxPooling3D": _pool("MaxPool"),
    "MaxPool1D": _pool("MaxPool"), "MaxPool2D": _pool("MaxPool"), "MaxPool3D": _pool("MaxPool"),
    "AveragePooling1D": _pool("AveragePool"), "AveragePooling2D": _pool("AveragePool"),
    "AveragePooling3D": _pool("AveragePool"),
    "AvgPool1D": _pool("AveragePool"), "AvgPool2D": _pool("AveragePool"), "AvgPool3D": _pool("AveragePool"),
    "GlobalAveragePooling1D": _global_pool("GlobalAveragePool"),
    "GlobalAveragePooling2D": _global_pool("GlobalAveragePool"),
    "GlobalAveragePooling3D": _global_pool("GlobalAveragePool"),
    "GlobalAvgPool1D": _global_pool("GlobalAveragePool"), "GlobalAvgPool2D": _global_pool("GlobalAveragePool"),
    "GlobalAvgPool3D": _global_pool("GlobalAveragePool"),
    "GlobalMaxPooling1D": _global_pool("GlobalMaxPool"), "GlobalMaxPooling2D": _global_pool("GlobalMaxPool"),
    "GlobalMaxPooling3D": _global_pool("GlobalMaxPool"),
    "GlobalMaxPool1D": _global_pool("GlobalMaxPool"), "GlobalMaxPool2D": _global_pool("GlobalMaxPool"),
    "GlobalMaxPool3D": _global_pool("GlobalMaxPool"),
    "BatchNormalization": _batchnorm,
    "LayerNormalization": _layernorm,
    "Activation": _act_layer,
    "ReLU": _relu, "LeakyReLU": _leaky, "PReLU": _prelu, "ELU": _elu, "Softmax": _softmax,
    "Dropout": _identity, "SpatialDropout1D": _identity, "SpatialDropout2D": _identity,
    "SpatialDropout3D": _identity, "GaussianNoise": _identity, "GaussianDropout": _identity,
    "AlphaDropout": _identity, "ActivityRegularization": _identity,
    "Flatten": _flatten, "Reshape": _reshape, "Permute": _permute, "RepeatVector": _repeat_vector,
    "Concatenate": _concat,
    "Add": _merge("Add"), "Subtract": _merge("Sub"), "Multiply": _merge("Mul"), "Average": _merge("Avg"),
    "Maximum": _merge("Max"), "Minimum": _merge("Min"),
    "SimpleRNN": _rnn, "GRU": _rnn, "LSTM": _rnn, "Bidirectional": _bidirectional,
    "Embedding": _embedding,
    "ZeroPadding1D": _zero_pad, "ZeroPadding2D": _zero_pad, "ZeroPadding3D": _zero_pad,
    "Cropping1D": _crop, "Cropping2D": _crop, "Cropping3D": _crop,
    "UpSampling1D": _upsample, "UpSampling2D": _upsample, "UpSampling3D": _upsample,
}
_LAYERS.update(APPLICATION_LAYERS)
_LAYERS.update({f"ops.{k}": v for k, v in OPS.items()})


def layer_key(layer: dict) -> str:
    """The converter's key for a layer of the configuration: its class name, or ops.<class name> for an operation
    node (whose class names, such as Add or Reshape, are also layer class names with another meaning)."""
    cls = layer.get("class_name", "?")
    return f"ops.{cls}" if is_op_node(layer) else cls
