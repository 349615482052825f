"""Shared pieces of the Keras converters: the IR builder, shape helpers, activations, layout helpers."""
from __future__ import annotations

import re

from typing import Optional
import numpy as np

from ...ir import Graph, Value
from ...ops import lookup


INT64_MAX = np.iinfo(np.int64).max


class _LayerProblem(Exception):
    """A layer configuration that cannot be converted; collected and reported all at once."""


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
        from ..onnx import Unsupported
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


def _axes(cfg_axis, rank: int) -> list[int]:
    ax = cfg_axis if isinstance(cfg_axis, list) else [cfg_axis]
    return sorted(a % rank for a in ax)


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
