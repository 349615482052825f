"""Keras front end: ``.h5`` (Keras 2 / tf.keras HDF5, Keras 3 legacy HDF5) and ``.keras`` (Keras 3 zip) -> IR.

The files are read with h5py, zipfile and json only: neither TensorFlow nor Keras is imported. Sequential and
Functional models (several inputs and outputs, shared layers) are supported. The IR follows ONNX semantics; every
tensor keeps Keras' own layout (channels_last), so the model's inputs and outputs look exactly as in Keras.
Layers that ONNX defines channels first (convolutions, pooling, resizing) are wrapped in Transposes, and weights
are rearranged at load time. The batch dimension becomes the size parameter ``N``.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import Any, Callable, Optional

import numpy as np

from ..errors import ModelLoadError, ShapeInferenceError, UnsupportedOperatorError
from ..ir import DType, Graph, Value
from ..ir.shapes import Sym
from ..ops import lookup
from ..passes.infer import InferShapesAndFold

INT64_MAX = np.iinfo(np.int64).max


class _LayerProblem(Exception):
    """A layer configuration that cannot be converted; collected and reported all at once."""


# ---------------------------------------------------------------------------------------------------------------
# file reading
# ---------------------------------------------------------------------------------------------------------------
def _as_str(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray) and x.dtype.kind in "SO" and x.shape == ():
        return _as_str(x.item())
    return str(x)


class _Weights:
    """A layer's weights in ``layer.weights`` order, whatever the file format."""

    def __init__(self, h5file, kind: str):
        self.f = h5file
        self.kind = kind  # "legacy" (model_weights/<layer>/weight_names) or "v3" (layers/<group>/vars/<k>)
        self.v3_groups: dict[str, Any] = {}
        if kind == "v3" and "layers" in self.f and hasattr(self.f["layers"], "items"):
            for gname, grp in self.f["layers"].items():
                nm = grp["vars"].attrs.get("name") if "vars" in grp else None
                if nm is not None:
                    self.v3_groups[_as_str(nm)] = grp

    def bind_v3_fallback(self, layer_specs: list[tuple[str, str]]) -> None:
        """Older Keras 3 files lack the 'name' attribute: groups are named snake_case(class) with a counter."""
        if self.kind != "v3" or "layers" not in self.f:
            return
        counts: dict[str, int] = {}
        for lname, cls in layer_specs:
            if lname in self.v3_groups:
                continue
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
            base = re.sub(r"_+", "_", base)
            k = counts.get(base, 0)
            counts[base] = k + 1
            gname = base if k == 0 else f"{base}_{k}"
            if gname in self.f["layers"]:
                self.v3_groups[lname] = self.f["layers"][gname]

    def child(self, layer: str):
        """The weights of a nested model."""
        if self.kind == "legacy":
            root = self.f["model_weights"] if "model_weights" in self.f else self.f
            if layer not in root:
                return _LegacyScoped(None, [])
            grp = root[layer]
            return _LegacyScoped(grp, [_as_str(n) for n in grp.attrs.get("weight_names", [])])
        grp = self.v3_groups.get(layer)
        return _Weights(grp if grp is not None else {}, "v3")

    def get(self, layer: str) -> list[np.ndarray]:
        if self.kind == "legacy":
            root = self.f["model_weights"] if "model_weights" in self.f else self.f
            if layer not in root:
                return []
            grp = root[layer]
            names = [_as_str(n) for n in grp.attrs.get("weight_names", [])]
            return [np.asarray(grp[n]) for n in names]
        grp = self.v3_groups.get(layer)
        if grp is None:
            return []
        return _collect_v3(grp)


class _LegacyScoped:
    """Weights of a nested model in a legacy HDF5 file: the layer's weight names, as paths with its name."""

    def __init__(self, grp, names: list[str]):
        self.grp = grp
        self.names = names

    def _mine(self, layer: str) -> list[str]:
        return [n for n in self.names if layer in n.split("/")[:-1]]

    def bind_v3_fallback(self, specs) -> None:
        pass

    def child(self, layer: str):
        return _LegacyScoped(self.grp, self._mine(layer))

    def get(self, layer: str) -> list[np.ndarray]:
        return [np.asarray(self.grp[n]) for n in self._mine(layer)]


def _collect_v3(grp) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    if "vars" in grp:
        keys = sorted(grp["vars"].keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        out += [np.asarray(grp["vars"][k]) for k in keys]
    subs = [k for k in grp.keys() if k != "vars" and hasattr(grp[k], "keys")]
    order = {"forward_layer": 0, "backward_layer": 1, "cell": -1,
             "query_dense": 0, "key_dense": 1, "value_dense": 2, "output_dense": 3}
    for k in sorted(subs, key=lambda s: (order.get(s, 2), s)):
        out += _collect_v3(grp[k])
    return out


def _read_file(path: str):
    """(model config dict, _Weights, keras major version, open handles to close)."""
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a directory, not a Keras model file")
    try:
        import h5py
    except ImportError as e:  # pragma: no cover
        raise ModelLoadError(f"{path}: reading Keras files needs h5py ({e})") from None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                if "config.json" not in names:
                    raise ModelLoadError(f"{path}: a zip file without config.json is not a Keras 3 model")
                config = json.loads(z.read("config.json"))
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
                wdata = z.read("model.weights.h5") if "model.weights.h5" in names else None
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(f"{path}: not a readable Keras model ({type(e).__name__}: {e})") from None
        if wdata is None:
            raise ModelLoadError(f"{path}: the Keras archive holds no model.weights.h5 "
                                 "(weights stored in another form are not supported)")
        try:
            f = h5py.File(io.BytesIO(wdata), "r")
        except Exception as e:
            raise ModelLoadError(f"{path}: model.weights.h5 in the archive is not readable ({e})") from None
        version = str(meta.get("keras_version", "3"))
        return config, _Weights(f, "v3"), _major(version), [f]
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable HDF5/Keras file ({type(e).__name__}: {e})") from None
    try:
        raw = f.attrs.get("model_config")
        if raw is None:
            f.close()
            raise ModelLoadError(f"{path}: the HDF5 file has no 'model_config' attribute (a weights-only file, or "
                                 "not a Keras model)")
        config = json.loads(_as_str(raw))
    except ModelLoadError:
        raise
    except Exception as e:
        f.close()
        raise ModelLoadError(f"{path}: the model configuration cannot be read ({e})") from None
    version = _as_str(f.attrs.get("keras_version", b"2"))
    if "model_weights" in f and "keras_version" in f["model_weights"].attrs:
        version = _as_str(f["model_weights"].attrs["keras_version"])
    return config, _Weights(f, "legacy"), _major(version), [f]


def _major(version: str) -> int:
    m = re.match(r"\s*(\d+)", version)
    return int(m.group(1)) if m else 3


# ---------------------------------------------------------------------------------------------------------------
# IR building
# ---------------------------------------------------------------------------------------------------------------
class _Builder:
    def __init__(self, graph: Graph):
        self.g = graph
        self.count = 0
        self.names: set[str] = set()
        self.layer = ""  # current Keras layer, for node names and messages

    def fresh(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "v"
        name = base
        while name in self.names:
            self.count += 1
            name = f"{base}_{self.count}"
        self.names.add(name)
        return name

    def const(self, arr, dtype=np.float32) -> Value:
        arr = np.asarray(arr)
        if arr.dtype.kind == "f" and dtype is not None:
            arr = arr.astype(dtype)
        return Value(self.fresh(f"{self.layer}_const"), const=np.ascontiguousarray(arr))

    def i64(self, vals) -> Value:
        return Value(self.fresh(f"{self.layer}_shape"), const=np.asarray(vals, dtype=np.int64))

    def op(self, op_type: str, inputs: list, n_out: int = 1, **attrs):
        from .onnx import Unsupported
        cls = lookup(op_type)
        if cls is None:
            op = Unsupported(op_type, "", f"operator not available (needed by Keras layer '{self.layer}')")
        else:
            op = cls(**{k: v for k, v in attrs.items() if v is not None})
        outs = [Value(self.fresh(f"{self.layer}_{op_type}")) for _ in range(n_out)]
        node = self.g.add_node(op, inputs, outs, self.fresh(f"{self.layer}/{op_type}"))
        if cls is not None and all(v is None or (v.dtype is not None and v.shape is not None) for v in inputs):
            try:
                issues = op.check(node)
                if not issues:
                    for v, (dt, shape) in zip(outs, op.infer(node)):
                        v.dtype, v.shape = dt, tuple(shape)
                else:
                    _WHY[id(outs[0])] = "; ".join(issues)
            except Exception as e:  # kept for the message of whoever needs the shape
                _WHY[id(outs[0])] = str(e)
        elif cls is None:
            _WHY[id(outs[0])] = f"operator {op_type} is not available"
        return outs[0] if n_out == 1 else outs

    # small conveniences ------------------------------------------------------------------------------------
    def transpose(self, x: Value, perm) -> Value:
        perm = list(perm)
        if perm == list(range(len(perm))):
            return x
        return self.op("Transpose", [x], perm=perm)

    def reshape(self, x: Value, shape) -> Value:
        return self.op("Reshape", [x, self.i64(shape)])

    def unsqueeze(self, x: Value, axes) -> Value:
        return self.op("Unsqueeze", [x, self.i64(axes)])

    def squeeze(self, x: Value, axes) -> Value:
        return self.op("Squeeze", [x, self.i64(axes)])

    def slice(self, x: Value, starts, ends, axes, steps=None) -> Value:
        ins = [x, self.i64(starts), self.i64(ends), self.i64(axes)]
        if steps is not None:
            ins.append(self.i64(steps))
        return self.op("Slice", ins)


_WHY: dict[int, str] = {}  # id(Value) -> why its shape could not be inferred (during one conversion)


def _shape(x: Value) -> tuple:
    if x.shape is None:
        why = _WHY.get(id(x), "an earlier operator is not supported")
        raise _LayerProblem(f"the shape of '{x.name}' cannot be inferred ({why})")
    return x.shape


def _int_dims(x: Value, axes, what: str) -> list[int]:
    s = _shape(x)
    out = []
    for a in axes:
        if not isinstance(s[a], int):
            raise _LayerProblem(f"{what} needs a known size for axis {a} (got {s[a]})")
        out.append(int(s[a]))
    return out


def _tuple(v, n: int) -> list[int]:
    if isinstance(v, (list, tuple)):
        v = list(v)
        if len(v) == 1 and n > 1:
            v = v * n
        return [int(x) for x in v]
    return [int(v)] * n


# ---------------------------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------------------------
def _activation(b: _Builder, x: Value, act, major: int) -> Value:
    if act is None:
        return x
    if isinstance(act, dict):  # serialized function or object
        cfg = act.get("config")
        name = act.get("class_name", "")
        if name in ("function", "__function__") or isinstance(cfg, str):
            act = cfg if isinstance(cfg, str) else name
        else:
            act = name
    name = str(act).lower()
    if name in ("linear", "none", ""):
        return x
    if name == "relu":
        return b.op("Relu", [x])
    if name == "sigmoid":
        return b.op("Sigmoid", [x])
    if name == "tanh":
        return b.op("Tanh", [x])
    if name == "softmax":
        return b.op("Softmax", [x], axis=-1)
    if name == "log_softmax":
        return b.op("LogSoftmax", [x], axis=-1)
    if name == "elu":
        return b.op("Elu", [x], alpha=1.0)
    if name == "selu":
        return b.op("Selu", [x], alpha=1.6732632423543772, gamma=1.0507009873554805)
    if name in ("swish", "silu"):
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    if name == "gelu":
        return b.op("Gelu", [x], approximate="none")
    if name == "softplus":
        return b.op("Softplus", [x])
    if name == "softsign":
        return b.op("Softsign", [x])
    if name == "hard_sigmoid":
        if major >= 3:
            return b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
        return b.op("HardSigmoid", [x], alpha=0.2, beta=0.5)
    if name in ("hard_silu", "hard_swish"):
        return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)])
    if name == "leaky_relu":
        return b.op("LeakyRelu", [x], alpha=0.2)
    if name == "relu6":
        return b.op("Clip", [x, b.const(np.float32(0)), b.const(np.float32(6))])
    if name == "exponential":
        return b.op("Exp", [x])
    if name == "mish":
        return b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])])
    raise _LayerProblem(f"activation '{act}' is not supported")


_RNN_ACTS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}


def _rnn_act(name, major: int) -> tuple[str, Optional[float], Optional[float]]:
    name = str(name).lower()
    if name in _RNN_ACTS:
        return _RNN_ACTS[name], None, None
    if name == "hard_sigmoid":
        return ("HardSigmoid", 1.0 / 6.0, 0.5) if major >= 3 else ("HardSigmoid", 0.2, 0.5)
    if name == "linear":
        return "Affine", 1.0, 0.0
    raise _LayerProblem(f"recurrent activation '{name}' is not supported")


# ---------------------------------------------------------------------------------------------------------------
# layer conversions: fn(ctx, layer config, inputs, kwargs) -> list of output Values
# ---------------------------------------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, b: _Builder, weights: list[np.ndarray], major: int, name: str, cls: str):
        self.b = b
        self.w = weights
        self.major = major
        self.name = name
        self.cls = cls

    def weight(self, k: int, what: str) -> np.ndarray:
        if k >= len(self.w):
            raise _LayerProblem(f"weight '{what}' (#{k}) is missing from the file ({len(self.w)} found)")
        return np.asarray(self.w[k])


def _single(inputs) -> Value:
    if isinstance(inputs, list):
        if len(inputs) != 1:
            raise _LayerProblem(f"expects one input, got {len(inputs)}")
        return inputs[0]
    return inputs


def _channels_first(cfg) -> bool:
    return cfg.get("data_format", "channels_last") == "channels_first"


def _to_cf(b: _Builder, x: Value, cf: bool) -> Value:
    r = len(_shape(x))
    return x if cf else b.transpose(x, [0, r - 1] + list(range(1, r - 1)))


def _from_cf(b: _Builder, y: Value, cf: bool) -> Value:
    r = len(_shape(y))
    return y if cf else b.transpose(y, [0] + list(range(2, r)) + [1])


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


def _axes(cfg_axis, rank: int) -> list[int]:
    ax = cfg_axis if isinstance(cfg_axis, list) else [cfg_axis]
    return sorted(a % rank for a in ax)


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


def _pairs(v, n: int) -> list[tuple[int, int]]:
    if isinstance(v, int):
        return [(v, v)] * n
    v = list(v)
    if n == 1 and len(v) == 2 and all(isinstance(e, int) for e in v):
        return [(int(v[0]), int(v[1]))]
    out = []
    for e in v:
        if isinstance(e, int):
            out.append((e, e))
        else:
            out.append((int(e[0]), int(e[1])))
    if len(out) == 1 and n > 1:
        out = out * n
    return out


def _spatial_axes(x: Value, cfg) -> list[int]:
    r = len(_shape(x))
    return list(range(2, r)) if _channels_first(cfg) else list(range(1, r - 1))


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


# -- recurrent layers -------------------------------------------------------------------------------------------
_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def _rnn_core(ctx: _Ctx, cls: str, cfg, x: Value, weights: list[np.ndarray], reverse: bool,
              init: list[Value]) -> tuple[Value, list[Value]]:
    """Run one direction. Returns (Y as [batch, time, units] in time order, final states [batch, units])."""
    b = ctx.b
    if cfg.get("stateful", False):
        raise _LayerProblem("stateful recurrent layers are not supported")
    bias = None
    units = int(cfg["units"])
    g = _GATES[cls]
    if len(weights) < 2:
        raise _LayerProblem(f"expected kernel and recurrent kernel weights, found {len(weights)}")
    kernel, rec = np.asarray(weights[0]), np.asarray(weights[1])
    if cfg.get("use_bias", True):
        if len(weights) < 3:
            raise _LayerProblem("the bias weight is missing from the file")
        bias = np.asarray(weights[2])

    def reorder(m: np.ndarray) -> np.ndarray:  # last axis holds the gates
        if cls != "LSTM":
            return m
        i, f, c, o = np.split(m, 4, axis=-1)
        return np.concatenate([i, o, f, c], axis=-1)

    W = reorder(kernel).T[None]  # [1, g*units, input]
    R = reorder(rec).T[None]
    attrs: dict[str, Any] = {"hidden_size": units}
    if cls == "GRU":
        reset_after = cfg.get("reset_after", True)
        attrs["linear_before_reset"] = 1 if reset_after else 0
        if bias is not None:
            if reset_after:
                bias = np.asarray(bias).reshape(2, g * units)
                B = np.concatenate([bias[0], bias[1]])
            else:
                B = np.concatenate([bias.reshape(-1), np.zeros(g * units, bias.dtype)])
    elif bias is not None:
        B = np.concatenate([reorder(bias.reshape(-1)), np.zeros(g * units, bias.dtype)])
    act = cfg.get("activation", "tanh")
    if cls == "SimpleRNN":
        a, al, be = _rnn_act(act, ctx.major)
        acts, alphas, betas = [a], [al], [be]
    else:
        rec_act = cfg.get("recurrent_activation", "sigmoid")
        names = [rec_act, act] + ([act] if cls == "LSTM" else [])
        trip = [_rnn_act(n, ctx.major) for n in names]
        acts = [t[0] for t in trip]
        alphas = [t[1] for t in trip]
        betas = [t[2] for t in trip]
    defaults = {"SimpleRNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[cls]
    if acts != defaults:
        attrs["activations"] = acts
        if any(v is not None for v in alphas):
            attrs["activation_alpha"] = [float(v) if v is not None else 0.0 for v in alphas]
            attrs["activation_beta"] = [float(v) if v is not None else 0.0 for v in betas]
    if reverse:
        attrs["direction"] = "reverse"
    xt = b.transpose(x, [1, 0, 2])  # [time, batch, input]
    op = {"SimpleRNN": "RNN", "GRU": "GRU", "LSTM": "LSTM"}[cls]
    ins: list[Optional[Value]] = [xt, b.const(W), b.const(R), b.const(B[None]) if bias is not None else None, None]
    n_states = 2 if cls == "LSTM" else 1
    if init:
        if len(init) != n_states:
            raise _LayerProblem(f"expected {n_states} initial state tensor(s), got {len(init)}")
        ins.append(b.unsqueeze(init[0], [0]))
        if cls == "LSTM":
            ins.append(b.unsqueeze(init[1], [0]))
    while ins and ins[-1] is None:
        ins.pop()
    outs = b.op(op, ins, n_out=1 + n_states, **attrs)
    y = b.transpose(b.squeeze(outs[0], [1]), [1, 0, 2])  # [batch, time, units]
    states = [b.squeeze(s, [0]) for s in outs[1:]]
    return y, states


def _reverse_time(b: _Builder, y: Value) -> Value:
    return b.slice(y, [-1], [-INT64_MAX], [1], [-1])


def _init_states(inputs, kw) -> tuple[Value, list[Value]]:
    init = []
    if isinstance(inputs, list):
        x, init = inputs[0], list(inputs[1:])
    else:
        x = inputs
    st = kw.get("initial_state")
    if st is not None:
        init = st if isinstance(st, list) else [st]
    if kw.get("mask") is not None:
        raise _LayerProblem("masking is not supported")
    return x, init


def _rnn(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x, init = _init_states(inputs, kw)
    back = bool(cfg.get("go_backwards", False))
    y, states = _rnn_core(ctx, ctx.cls, cfg, x, ctx.w, back, init)
    if cfg.get("return_sequences", False):
        out = _reverse_time(b, y) if back else y
    else:
        out = states[0]
    return [out] + (states if cfg.get("return_state", False) else [])


def _bidirectional(ctx: _Ctx, cfg, inputs, kw):
    b = ctx.b
    x, init = _init_states(inputs, kw)
    inner = cfg["layer"]
    icls = inner.get("class_name")
    if icls not in _GATES:
        raise _LayerProblem(f"Bidirectional around {icls} is not supported")
    icfg = inner["config"]
    bcfg = (cfg.get("backward_layer") or {}).get("config", icfg)
    half = len(ctx.w) // 2
    n_states = 2 if icls == "LSTM" else 1
    fi, bi = (init[:n_states], init[n_states:]) if init else ([], [])
    fy, fs = _rnn_core(ctx, icls, icfg, x, ctx.w[:half], bool(icfg.get("go_backwards", False)), fi)
    by, bs = _rnn_core(ctx, icls, bcfg, x, ctx.w[half:], not bool(icfg.get("go_backwards", False)), bi)
    if icfg.get("return_sequences", False):
        fo, bo = fy, by
    else:
        fo, bo = fs[0], bs[0]
    mode = cfg.get("merge_mode", "concat")
    if mode == "concat":
        outs = [b.op("Concat", [fo, bo], axis=-1)]
    elif mode == "sum":
        outs = [b.op("Add", [fo, bo])]
    elif mode == "mul":
        outs = [b.op("Mul", [fo, bo])]
    elif mode == "ave":
        outs = [b.op("Mul", [b.op("Add", [fo, bo]), b.const(np.float32(0.5))])]
    elif mode is None:
        outs = [fo, bo]
    else:
        raise _LayerProblem(f"merge_mode '{mode}' is not supported")
    if icfg.get("return_state", False):
        outs += fs + bs
    return outs


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


def _mha(ctx: _Ctx, cfg, inputs, kw):
    """MultiHeadAttention over the sequence axis (rank-3 inputs), lowered to MatMul and Softmax."""
    b = ctx.b
    if not isinstance(inputs, list) or len(inputs) < 2:
        raise _LayerProblem("expects query and value inputs")
    q, v = inputs[0], inputs[1]
    k = inputs[2] if len(inputs) > 2 and inputs[2] is not None else kw.get("key") or v
    if kw.get("attention_mask") is not None or kw.get("query_mask") is not None or \
            kw.get("value_mask") is not None or kw.get("key_mask") is not None:
        raise _LayerProblem("attention masks are not supported")
    if kw.get("return_attention_scores", False):
        raise _LayerProblem("return_attention_scores=True is not supported")
    if cfg.get("use_gate", False) or cfg.get("sliding_window") is not None:
        raise _LayerProblem("gated or sliding-window attention is not supported")
    axes = cfg.get("attention_axes")
    if any(len(_shape(t)) != 3 for t in (q, k, v)) or axes not in (None, [1], 1, [-2]):
        raise _LayerProblem("only attention over the sequence axis of [batch, time, features] inputs is "
                            "supported")
    if cfg.get("output_shape") not in (None, []) and not isinstance(cfg.get("output_shape"), int) and \
            len(cfg.get("output_shape")) != 1:
        raise _LayerProblem("a multi-dimensional output_shape is not supported")
    heads, kd = int(cfg["num_heads"]), int(cfg["key_dim"])
    vd = int(cfg.get("value_dim") or kd)
    bias = cfg.get("use_bias", True)
    step = 2 if bias else 1
    w = [ctx.weight(i, n) for i, n in enumerate(
        ["query kernel", "query bias", "key kernel", "key bias", "value kernel", "value bias", "output kernel",
         "output bias"][:: (1 if bias else 2)])]
    wq, wk, wv, wo = w[0], w[step], w[2 * step], w[3 * step]
    bq, bk, bv, bo = (w[1], w[3], w[5], w[7]) if bias else (None,) * 4
    scale = 1.0 / np.sqrt(float(kd))

    def project(x, kernel, bvec, width, s=1.0):
        y = b.op("MatMul", [x, b.const(kernel.reshape(kernel.shape[0], -1) * s)])
        if bvec is not None:
            y = b.op("Add", [y, b.const(bvec.reshape(-1) * s)])
        return b.reshape(y, [0, -1, heads, width])

    qh = b.transpose(project(q, wq, bq, kd, scale), [0, 2, 1, 3])  # [N, H, Tq, K]
    kh = b.transpose(project(k, wk, bk, kd), [0, 2, 3, 1])  # [N, H, K, Tk]
    vh = b.transpose(project(v, wv, bv, vd), [0, 2, 1, 3])  # [N, H, Tk, V]
    scores = b.op("MatMul", [qh, kh])
    if kw.get("use_causal_mask", False):
        tq = _int_dims(q, [1], "causal mask")[0]
        tk = _int_dims(k, [1], "causal mask")[0]
        allowed = np.arange(tq)[:, None] >= np.arange(tk)[None, :]
        scores = b.op("Add", [scores, b.const(np.where(allowed, 0.0, -1e9).astype(np.float32))])
    probs = b.op("Softmax", [scores], axis=-1)
    ctxv = b.transpose(b.op("MatMul", [probs, vh]), [0, 2, 1, 3])  # [N, Tq, H, V]
    flat = b.reshape(ctxv, [0, -1, heads * vd])
    y = b.op("MatMul", [flat, b.const(wo.reshape(heads * vd, -1))])
    if bo is not None:
        y = b.op("Add", [y, b.const(bo)])
    return [y]


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


# ---------------------------------------------------------------------------------------------------------------
# model structure
# ---------------------------------------------------------------------------------------------------------------
_NP_DTYPES = {"float32": DType.FLOAT, "float64": DType.DOUBLE, "int32": DType.INT32, "int64": DType.INT64,
              "int8": DType.INT8, "uint8": DType.UINT8, "int16": DType.INT16, "bool": DType.BOOL}


def _input_dtype(cfg) -> DType:
    dt = cfg.get("dtype", "float32")
    if isinstance(dt, dict):
        dt = (dt.get("config") or {}).get("name", "float32")
    dt = str(dt)
    if dt not in _NP_DTYPES:
        raise _LayerProblem(f"input dtype '{dt}' is not supported")
    return _NP_DTYPES[dt]


def _layer_list(config: dict) -> tuple[str, list[dict], dict]:
    cls = config.get("class_name")
    cfg = config.get("config")
    if cls not in ("Sequential", "Functional", "Model"):
        raise ModelLoadError(f"model class '{cls}' is not supported (only Sequential and Functional models)")
    if isinstance(cfg, list):  # Keras 2.2 Sequential: the config is the list of layers
        cfg = {"layers": cfg, "name": "sequential"}
    if not isinstance(cfg, dict) or "layers" not in cfg:
        raise ModelLoadError("the model configuration has no layer list")
    return cls, cfg["layers"], cfg


def _ref_parse_v3(arg, resolve):
    """Replace Keras 3 serialized tensors (recursively) by Values via resolve((layer, node, tensor))."""
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__":
            hist = arg["config"]["keras_history"]
            return resolve((hist[0], int(hist[1]), int(hist[2])))
        return {k: _ref_parse_v3(v, resolve) for k, v in arg.items()}
    if isinstance(arg, list):
        return [_ref_parse_v3(v, resolve) for v in arg]
    return arg


def _is_v2_ref(x) -> bool:
    return isinstance(x, list) and len(x) >= 3 and isinstance(x[0], str) and isinstance(x[1], int) \
        and isinstance(x[2], int)


def _ref_parse_v2(arg, resolve):
    if _is_v2_ref(arg):
        return resolve((arg[0], arg[1], arg[2]))
    if isinstance(arg, list):
        return [_ref_parse_v2(v, resolve) for v in arg]
    if isinstance(arg, dict):
        return {k: _ref_parse_v2(v, resolve) for k, v in arg.items()}
    return arg


class _Missing(Exception):
    pass


def _io_refs(spec) -> list[tuple[str, int, int]]:
    if spec is None:
        return []
    if isinstance(spec, dict):
        return [r for v in spec.values() for r in _io_refs(v)]
    if _is_v2_ref(spec):
        return [(spec[0], spec[1], spec[2])]
    return [r for v in spec for r in _io_refs(v)]


def graph_from_keras(path: str, *, name: Optional[str] = None, input_shapes=None) -> Graph:
    """Read a Keras model file. ``input_shapes`` (optional, one per model input, in the model's input order)
    replaces the shapes in the file, e.g. to fix the batch size; a str entry is a symbolic size."""
    path = os.fspath(path)
    config, weights, major, handles = _read_file(path)
    try:
        _WHY.clear()
        return _convert(path, config, weights, major, name, input_shapes)
    finally:
        _WHY.clear()
        for h in handles:
            try:
                h.close()
            except Exception:
                pass


_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _scan(layers: list, unknown: list, classes: set, masked: list) -> None:
    for k, L in enumerate(layers):
        lcls = L.get("class_name", "?")
        cfg = L.get("config") or {}
        lname = L.get("name") or cfg.get("name") or f"layer_{k}"
        classes.add(lcls)
        if lcls in _MODEL_CLASSES:
            try:
                _, sub, _ = _layer_list({"class_name": lcls, "config": cfg})
            except ModelLoadError as e:
                unknown.append(f"{lname} ({lcls}): {e}")
            else:
                _scan(sub, unknown, classes, masked)
        elif lcls != "InputLayer" and lcls not in _LAYERS:
            unknown.append(f"{lname} ({lcls}): layer not supported")
        if lcls == "Embedding" and cfg.get("mask_zero", False):
            masked.append(lname)


_MASK_USERS = {"SimpleRNN", "GRU", "LSTM", "Bidirectional", "GlobalAveragePooling1D", "GlobalMaxPooling1D",
               "GlobalAvgPool1D", "GlobalMaxPool1D"}


def _convert(path: str, config: dict, weights: _Weights, major: int, name: Optional[str],
             input_shapes=None) -> Graph:
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: the model configuration is not a JSON object")
    try:
        mcls, layers, mcfg = _layer_list(config)
    except ModelLoadError as e:
        raise ModelLoadError(f"{path}: {e}") from None
    stem = os.path.splitext(os.path.basename(path))[0]
    graph = Graph(name or stem or mcfg.get("name", "model"))
    graph.source = path
    b = _Builder(graph)

    # every layer must be known: report all unknown ones at once (nested models included)
    unknown: list[str] = []
    classes: set[str] = set()
    masked: list[str] = []
    _scan(layers, unknown, classes, masked)
    # masks (Embedding(mask_zero=True)) change what recurrent layers and 1-D pooling compute
    if classes & _MASK_USERS:
        unknown += [f"{n} (Embedding): mask_zero=True (masking of later layers) is not supported" for n in masked]
    if unknown:
        raise UnsupportedOperatorError(unknown, path)
    # the model's inputs, in order, for input_shapes
    if mcls == "Sequential":
        input_order = [None]
    else:
        input_order = [r[0] for r in _io_refs(mcfg.get("input_layers"))]
    given: dict = {}
    if input_shapes is not None:
        shapes = list(input_shapes)
        if len(shapes) != len(input_order):
            raise ModelLoadError(f"{path}: {len(shapes)} input shape(s) given but the model has "
                                 f"{len(input_order)} input(s)")
        given = dict(zip(input_order, shapes))

    problems: list[str] = []
    batch = Sym.var("N")
    graph.size_params.append("N")

    def make_input(lname: str, cfg: dict, shape=None, key=None) -> Value:
        shp = shape if shape is not None else (cfg.get("batch_shape") or cfg.get("batch_input_shape"))
        if shp is None:
            raise ModelLoadError(f"{path}: input '{lname}' has no shape in the configuration")
        user = given.get(key)
        if user is not None:
            user = list(user)
            if len(user) != len(shp):
                raise ModelLoadError(f"{path}: input '{lname}' has rank {len(shp)} but the shape given is "
                                     f"{tuple(user)}")
            for ax, (u, d) in enumerate(zip(user, shp)):
                if d is not None and not isinstance(u, str) and int(u) != int(d):
                    raise ModelLoadError(f"{path}: input '{lname}' axis {ax} has size {d} in the model, "
                                         f"{u} given")
            shp = [None if isinstance(u, str) else int(u) for u in user]
            names = [u if isinstance(u, str) else None for u in user]
        else:
            names = [None] * len(shp)
        dims: list = []
        for ax, d in enumerate(shp):
            if names[ax] is not None:
                sname = re.sub(r"[^A-Za-z0-9_]", "_", names[ax])
                if sname not in graph.size_params:
                    graph.size_params.append(sname)
                dims.append(Sym.var(sname))
            elif ax == 0 and d is None:
                dims.append(batch)
            elif d is None:
                sname = re.sub(r"[^A-Za-z0-9_]", "_", f"{lname}_dim{ax}")
                if sname not in graph.size_params:
                    graph.size_params.append(sname)
                dims.append(Sym.var(sname))
            else:
                dims.append(int(d))
        try:
            dt = _input_dtype(cfg)
        except _LayerProblem as e:
            raise ModelLoadError(f"{path}: input '{lname}': {e}") from None
        b.names.add(lname)
        v = Value(lname, dt, tuple(dims))
        graph.add_input(v)
        return v

    def run_layer(lname: str, lcls: str, lcfg: dict, inputs, kw, wts, prefix: str) -> Optional[list[Value]]:
        b.layer = re.sub(r"[^A-Za-z0-9_]", "_", prefix + lname)
        try:
            if lcls in _MODEL_CLASSES:  # a nested model: its layers run on the inputs given here
                scls, slayers, scfg = _layer_list({"class_name": lcls, "config": lcfg})
                ins = inputs if isinstance(inputs, list) else [inputs]
                res = build_model(scls, slayers, scfg, wts.child(lname), ins, f"{prefix}{lname}_")
                return None if res is None else [v for _, v in res]
            ctx = _Ctx(b, wts.get(lname), major, lname, lcls)
            return _LAYERS[lcls](ctx, lcfg, inputs, kw)
        except (_LayerProblem, ShapeInferenceError, ModelLoadError) as e:
            problems.append(f"{lname} ({lcls}): {e}")
        return None

    def build_model(mcls: str, layers: list, mcfg: dict, wts, provided: Optional[list], prefix: str = ""):
        """Layers of one (possibly nested) model: [(output name, Value)], or None after a problem."""
        wts.bind_v3_fallback([(L.get("name") or (L.get("config") or {}).get("name") or f"layer_{k}",
                               L.get("class_name", "?")) for k, L in enumerate(layers)])
        outputs: list[tuple[str, Value]] = []
        if mcls == "Sequential":
            first = layers[0] if layers else None
            if first is None:
                raise ModelLoadError(f"{path}: the Sequential model '{mcfg.get('name')}' has no layers")
            rest = layers[1:] if first.get("class_name") == "InputLayer" else layers
            if provided is not None:
                if len(provided) != 1:
                    problems.append(f"{mcfg.get('name')} (Sequential): called with {len(provided)} inputs")
                    return None
                x = provided[0]
            elif first.get("class_name") == "InputLayer":
                icfg = first["config"]
                x = make_input(icfg.get("name", "input"), icfg, key=None)
            else:
                fcfg = first.get("config", {})
                shp = fcfg.get("batch_input_shape") or fcfg.get("batch_shape") or mcfg.get("build_input_shape")
                if shp is None:
                    raise ModelLoadError(f"{path}: the Sequential model declares no input shape")
                x = make_input(f"{fcfg.get('name', 'layer')}_input", fcfg, shp, key=None)
            cur: Value = x
            last = mcfg.get("name", "output") if provided is not None else "output"
            for L in rest:
                lcfg = L.get("config", {})
                lname = lcfg.get("name") or L.get("name")
                if provided is None:
                    last = lname
                res = run_layer(lname, L["class_name"], lcfg, cur, {}, wts, prefix)
                if res is None:
                    return None
                cur = res[0]
            return [(last, cur)]

        tensors: dict[tuple[str, int], list[Value]] = {}
        pending: list[tuple[str, str, dict, int, Any]] = []
        in_order = [r[0] for r in _io_refs(mcfg.get("input_layers"))]
        for L in layers:
            lcls = L["class_name"]
            lcfg = L.get("config", {})
            lname = L.get("name") or lcfg.get("name")
            if lcls == "InputLayer":
                if provided is None:
                    tensors[(lname, 0)] = [make_input(lname, lcfg, key=lname)]
                else:
                    if lname not in in_order or len(provided) != len(in_order):
                        problems.append(f"{mcfg.get('name')} ({mcls}): its inputs do not match the call")
                        return None
                    tensors[(lname, 0)] = [provided[in_order.index(lname)]]
                continue
            for k, node in enumerate(L.get("inbound_nodes", [])):
                pending.append((lname, lcls, lcfg, k, node))

        failed: set[tuple[str, int]] = set()

        # a nested functional model's node 0 is its own construction call, left out of the configuration
        skip: dict[str, int] = {}
        for L in layers:
            c = L.get("class_name")
            if c in ("Functional", "Model") or (c == "Sequential" and major < 3 and (
                    (L.get("config") or {}).get("layers") or [{}])[0].get("class_name") == "InputLayer"):
                skip[L.get("name") or (L.get("config") or {}).get("name")] = 1

        def resolve(ref):
            key = (ref[0], ref[1] - skip.get(ref[0], 0))
            if key in failed:
                raise _Missing("failed")
            if key not in tensors:
                raise _Missing("pending")
            outs = tensors[key]
            if ref[2] >= len(outs):
                raise _Missing("failed")
            return outs[ref[2]]

        progressed = True
        while pending and progressed:
            progressed = False
            rest = []
            for item in pending:
                lname, lcls, lcfg, k, node = item
                try:
                    if isinstance(node, dict):  # Keras 3
                        args = _ref_parse_v3(node.get("args", []), resolve)
                        kw = _ref_parse_v3(node.get("kwargs", {}), resolve)
                        inputs = args[0] if len(args) == 1 else list(args)
                    else:  # Keras 2: a list of [layer, node, tensor, kwargs]
                        ins = [resolve((r[0], int(r[1]), int(r[2]))) for r in node]
                        kw = {}
                        if node and len(node[0]) > 3 and isinstance(node[0][3], dict):
                            kw = _ref_parse_v2(node[0][3], resolve)
                        inputs = ins[0] if len(ins) == 1 else ins
                except _Missing as e:
                    if str(e) == "failed":
                        failed.add((lname, k))
                        progressed = True
                    else:
                        rest.append(item)
                    continue
                res = run_layer(lname, lcls, lcfg, inputs, kw, wts, prefix)
                if res is None:
                    failed.add((lname, k))
                else:
                    tensors[(lname, k)] = res
                progressed = True
            pending = rest
        if pending and not problems:
            problems.append(f"layers {sorted({p[0] for p in pending})} cannot be connected (a cycle or a "
                            "reference to a missing layer)")
        used: dict[str, int] = {}
        for ref in _io_refs(mcfg.get("output_layers")):
            v = tensors.get((ref[0], ref[1] - skip.get(ref[0], 0)))
            if v is None or ref[2] >= len(v):
                if not problems:
                    problems.append(f"model output {list(ref)} is not produced by any layer")
                return None
            oname = ref[0]
            n = used.get(oname, 0)
            used[oname] = n + 1
            outputs.append((oname if n == 0 else f"{oname}_{n}", v[ref[2]]))
        if provided is None and in_order:  # inputs in the model's declared order
            byname = {v.name: v for v in graph.inputs}
            if all(n in byname for n in in_order):
                graph.inputs = [byname[n] for n in in_order] + [v for v in graph.inputs if v.name not in in_order]
        return outputs

    outputs = build_model(mcls, layers, mcfg, weights, None) or []
    if problems or not outputs:
        raise UnsupportedOperatorError(problems or ["the model has no outputs"], path)

    b.layer = "output"
    for oname, v in outputs:
        if v.is_input or v.is_const or any(o is v for o in graph.outputs) or v.producer is None:
            v = b.op("Identity", [v])
        b.names.discard(v.name)
        oname = b.fresh(oname) if oname in b.names else oname
        b.names.add(oname)
        v.name = oname
        graph.outputs.append(v)
    # drop inputs the outputs do not depend on? Keras keeps them: keep them too.
    graph.size_params = [s for s in graph.size_params if any(
        isinstance(d, Sym) and s in d.symbols() for v in graph.inputs for d in v.shape)]
    InferShapesAndFold()(graph)
    return graph
