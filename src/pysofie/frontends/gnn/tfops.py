"""Converters of TensorFlow ops, one small function per op type: (converter, tf op, input representations) ->
output representation(s). Host data (weights, shape arithmetic) is computed here with numpy; run-time data
becomes IR nodes with ONNX semantics (or the graph-network ops of ops/gnn.py)."""
from __future__ import annotations

import numpy as np

from ...errors import ShapeInferenceError
from ...ir import Value
from ...ir.shapes import Sym
from .convert import Counts, Iota, SegIds, _dim, host_array, host_numeric, is_host, resource_value
from .rewrites import layer_norm, per_node_products

CONVERTERS: dict = {}


def tf_op(*types):
    def deco(fn):
        for t in types:
            CONVERTERS[t] = fn
        return fn
    return deco


def _np_dtype(op, attr="T"):
    return np.dtype(op.get_attr(attr).as_numpy_dtype)


def _all_host(ins) -> bool:
    return all(is_host(x) for x in ins)


def _shape_of(c, x) -> np.ndarray:
    if isinstance(x, Value):
        return host_array(x.shape)
    if isinstance(x, Counts):
        return host_array([x.groups])
    if isinstance(x, SegIds):
        return host_array([x.length])
    if isinstance(x, Iota):
        return host_array([x.n])
    return host_array(np.asarray(x).shape)


# -- pass-through, constants, variables -----------------------------------------------------------------
@tf_op("Identity", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape", "CheckNumerics")
def _identity(c, op, ins):
    return ins[0]


@tf_op("IdentityN")
def _identity_n(c, op, ins):
    return list(ins)


@tf_op("Const")
def _const(c, op, ins):
    from tensorflow.python.framework import tensor_util
    return np.asarray(tensor_util.MakeNdarray(op.get_attr("value")))


@tf_op("ReadVariableOp")
def _read_variable(c, op, ins):
    kind, data = ins[0]
    if kind != "resource":
        raise ShapeInferenceError("ReadVariableOp of something that is not a variable")
    return resource_value(c, data, op.get_attr("dtype"))


@tf_op("NoOp")
def _noop(c, op, ins):
    return []


# -- shapes ---------------------------------------------------------------------------------------------
@tf_op("Shape")
def _shape(c, op, ins):
    s = _shape_of(c, ins[0])
    dt = _np_dtype(op, "out_type")
    return s if s.dtype == object else s.astype(dt)


@tf_op("Size")
def _size(c, op, ins):
    n = 1
    for d in _shape_of(c, ins[0]):
        n = n * d
    return host_array([n]).reshape(())


@tf_op("Rank")
def _rank(c, op, ins):
    return np.asarray(len(_shape_of(c, ins[0])), np.int32)


def _strided_slice_spec(op, rank, begin, end, strides):
    """A numpy index (slices, ints, Ellipsis, None) for a StridedSlice whose bounds are known."""
    bm, em = op.get_attr("begin_mask"), op.get_attr("end_mask")
    sm, nm, elm = op.get_attr("shrink_axis_mask"), op.get_attr("new_axis_mask"), op.get_attr("ellipsis_mask")
    spec = []
    for k in range(len(begin)):
        if elm >> k & 1:
            spec.append(Ellipsis)
        elif nm >> k & 1:
            spec.append(None)
        elif sm >> k & 1:
            spec.append(int(begin[k]))
        else:
            b = None if bm >> k & 1 else int(begin[k])
            e = None if em >> k & 1 else int(end[k])
            spec.append(slice(b, e, int(strides[k])))
    return spec


@tf_op("StridedSlice")
def _strided_slice(c, op, ins):
    x, b, e, s = ins
    if not all(host_numeric(v) for v in (b, e, s)):
        raise ShapeInferenceError("StridedSlice bounds must be known at generation time")
    if is_host(x):
        spec = _strided_slice_spec(op, x.ndim, b, e, s)
        return np.asarray(x[tuple(spec)])
    if isinstance(x, Counts) and x.value is not None:
        x = x.value
    v = c.val(x)
    spec = _strided_slice_spec(op, v.rank, b, e, s)
    if any(sp is None or sp is Ellipsis for sp in spec):
        raise ShapeInferenceError("StridedSlice with new_axis_mask or ellipsis_mask on run-time data")
    starts, ends, axes, steps, squeeze = [], [], [], [], []
    big = np.iinfo(np.int64).max
    for ax, sp in enumerate(spec):
        if isinstance(sp, int):
            starts.append(sp)
            ends.append(sp + 1 if sp != -1 else big)
            steps.append(1)
            axes.append(ax)
            squeeze.append(ax)
        elif sp != slice(None, None, 1) and sp != slice(None, None, None):
            st = 1 if sp.step is None else sp.step
            starts.append(sp.start if sp.start is not None else (0 if st > 0 else -1))
            ends.append(sp.stop if sp.stop is not None else (big if st > 0 else -big))
            steps.append(st)
            axes.append(ax)
    out = v
    if axes:
        arr = [np.asarray(a, np.int64) for a in (starts, ends, axes, steps)]
        out = c.emit("Slice", [out] + arr, op.name)
    if squeeze:
        out = c.emit("Squeeze", [out, np.asarray(squeeze, np.int64)], op.name + "_squeeze")
    return out


@tf_op("Pack")
def _pack(c, op, ins):
    axis = op.get_attr("axis")
    if _all_host(ins):
        if any(x.dtype == object for x in ins):
            return np.stack([np.asarray(x, dtype=object) for x in ins], axis=axis)
        return np.stack(ins, axis=axis)
    parts = [c.emit("Unsqueeze", [x, np.asarray([axis], np.int64)], op.name + "_u") for x in ins]
    return c.emit("Concat", parts, op.name, axis=axis)


@tf_op("ConcatV2")
def _concat(c, op, ins):
    axis = int(ins[-1])
    parts = ins[:-1]
    if _all_host(parts):
        if any(x.dtype == object for x in parts):
            return np.concatenate([np.asarray(x, dtype=object) for x in parts], axis=axis)
        return np.concatenate(parts, axis=axis)
    return c.emit("Concat", list(parts), op.name, axis=axis)


@tf_op("Reshape")
def _reshape(c, op, ins):
    x, shape = ins
    if not is_host(shape):
        raise ShapeInferenceError("Reshape's target shape must be known at generation time")
    if host_numeric(x):
        return x.reshape([int(d) for d in shape])
    return c.emit("Reshape", [x, shape.astype(np.int64) if shape.dtype != object else shape], op.name)


@tf_op("ExpandDims")
def _expand_dims(c, op, ins):
    x, axis = ins
    a = int(np.asarray(axis).reshape(-1)[0])
    if is_host(x):
        return np.expand_dims(x, a)
    return c.emit("Unsqueeze", [x, np.asarray([a], np.int64)], op.name)


@tf_op("Squeeze")
def _squeeze(c, op, ins):
    axes = list(op.get_attr("squeeze_dims"))
    x = ins[0]
    if is_host(x):
        return np.squeeze(x, axis=tuple(axes) if axes else None)
    return c.emit("Squeeze", [x] + ([np.asarray(axes, np.int64)] if axes else []), op.name)


@tf_op("Transpose")
def _transpose(c, op, ins):
    x, perm = ins
    if is_host(x):
        return np.transpose(x, [int(p) for p in perm])
    return c.emit("Transpose", [x], op.name, perm=[int(p) for p in perm])


@tf_op("Fill")
def _fill(c, op, ins):
    dims, value = ins
    if host_numeric(dims) and is_host(value):
        return np.full([int(d) for d in dims], value)
    return c.emit("Expand", [np.asarray(value).reshape(1), dims], op.name)


@tf_op("ZerosLike", "OnesLike")
def _like(c, op, ins):
    x = ins[0]
    fill = 0 if op.type == "ZerosLike" else 1
    dt = _np_dtype(op)
    s = _shape_of(c, x)
    if s.dtype != object:
        return np.full([int(d) for d in s], fill, dt)
    return c.emit("Expand", [np.asarray([fill], dt), s], op.name)


@tf_op("BroadcastTo")
def _broadcast_to(c, op, ins):
    x, shape = ins
    if is_host(x) and host_numeric(shape):
        return np.broadcast_to(x, [int(d) for d in shape]).copy()
    return c.emit("Expand", [x, shape], op.name)


@tf_op("Tile")
def _tile(c, op, ins):
    x, m = ins
    if is_host(x) and host_numeric(m):
        return np.tile(x, [int(d) for d in m])
    if not host_numeric(m):
        raise ShapeInferenceError("Tile multiples must be known at generation time")
    return c.emit("Tile", [x, m.astype(np.int64)], op.name)


@tf_op("Range")
def _range(c, op, ins):
    start, limit, delta = (np.asarray(x).reshape(()) if is_host(x) else x for x in ins)
    if all(host_numeric(x) for x in (start, limit, delta)):
        return np.arange(start, limit, delta).astype(_np_dtype(op, "Tidx"))
    if host_numeric(start) and host_numeric(delta) and int(start) == 0 and int(delta) == 1 and is_host(limit):
        return Iota(_dim(limit))
    raise ShapeInferenceError("tf.range with a size known only at run time")


@tf_op("Cast")
def _cast(c, op, ins):
    x = ins[0]
    dt = _np_dtype(op, "DstT")
    if isinstance(x, (Counts, SegIds, Iota)) and dt.kind in "iu":
        return x
    if is_host(x):
        return x if x.dtype == object and dt.kind in "iu" else x.astype(dt)
    from ...ir import DType
    return c.emit("Cast", [x], op.name, to=DType.from_numpy(dt).onnx)


# -- elementwise ----------------------------------------------------------------------------------------
_BINARY = {"AddV2": ("Add", np.add), "Add": ("Add", np.add), "BiasAdd": ("Add", np.add),
           "Sub": ("Sub", np.subtract), "Mul": ("Mul", np.multiply), "RealDiv": ("Div", np.divide),
           "Maximum": ("Max", np.maximum), "Minimum": ("Min", np.minimum), "Pow": ("Pow", np.power),
           "Greater": ("Greater", np.greater), "GreaterEqual": ("GreaterOrEqual", np.greater_equal),
           "Less": ("Less", np.less), "LessEqual": ("LessOrEqual", np.less_equal), "Equal": ("Equal", np.equal),
           "LogicalAnd": ("And", np.logical_and), "LogicalOr": ("Or", np.logical_or)}


@tf_op(*_BINARY)
def _binary(c, op, ins):
    onnx_type, fn = _BINARY[op.type]
    a, b = ins
    if op.type == "AddV2" and not _all_host(ins):
        ln = layer_norm(c, op)
        if ln is not None:
            x, scale, offset, eps = ln
            n = int(x.shape[-1]) if isinstance(x.shape[-1], int) else None
            if n is not None:
                dt = x.dtype.np
                scale = np.ones(n, dt) if scale is None else np.broadcast_to(scale, (n,)).astype(dt)
                offset = np.zeros(n, dt) if offset is None else np.broadcast_to(offset, (n,)).astype(dt)
                return c.emit("LayerNormalization", [x, scale, offset], op.name, axis=-1, epsilon=eps)
    if isinstance(a, Counts) or isinstance(b, Counts) or isinstance(a, SegIds) or isinstance(b, SegIds):
        a, b = c.val(a), c.val(b)
    if is_host(a) and is_host(b):
        if a.dtype == object or b.dtype == object:
            if op.type in ("AddV2", "Add", "Sub", "Mul"):
                return fn(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
            raise ShapeInferenceError(f"{op.type} on symbolic sizes")
        r = fn(a, b)
        return r.astype(a.dtype) if r.dtype != np.bool_ else r
    if op.type in ("Div", "FloorDiv") and not np.issubdtype(_np_dtype(op), np.floating):
        raise ShapeInferenceError("integer division at run time")
    return c.emit(onnx_type, [a, b], op.name)


@tf_op("DivNoNan")
def _div_no_nan(c, op, ins):
    a, b = ins
    zero = np.zeros((), _np_dtype(op))
    safe = c.emit("Where", [c.emit("Equal", [b, zero], op.name + "_iszero"), np.ones((), zero.dtype), b],
                  op.name + "_den")
    q = c.emit("Div", [a, safe], op.name + "_q")
    return c.emit("Where", [c.emit("Equal", [b, zero], op.name + "_iszero2"), zero, q], op.name)


@tf_op("SquaredDifference")
def _squared_difference(c, op, ins):
    if _all_host(ins):
        return np.square(ins[0] - ins[1])
    d = c.emit("Sub", list(ins), op.name + "_diff")
    return c.emit("Mul", [d, d], op.name)


_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt",
          "Neg": "Neg", "Abs": "Abs", "Softplus": "Softplus", "Softsign": "Softsign", "Erf": "Erf",
          "Reciprocal": "Reciprocal", "Inv": "Reciprocal", "Sin": "Sin", "Cos": "Cos", "Floor": "Floor",
          "Ceil": "Ceil", "Sign": "Sign", "Elu": "Elu", "Selu": "Selu", "LogicalNot": "Not", "Round": "Round",
          "Atan": "Atan", "Asinh": "Asinh", "Sinh": "Sinh", "Cosh": "Cosh", "Tan": "Tan"}


@tf_op(*_UNARY)
def _unary(c, op, ins):
    x = ins[0]
    if host_numeric(x):
        import tensorflow as tf
        return np.asarray(getattr(tf.raw_ops, op.type)(**{_first_arg(op.type): x}).numpy())
    return c.emit(_UNARY[op.type], [x], op.name)


def _first_arg(op_type: str) -> str:
    return "features" if op_type in ("Relu", "Elu", "Selu", "Softplus", "Softsign") else "x"


@tf_op("Rsqrt")
def _rsqrt(c, op, ins):
    if host_numeric(ins[0]):
        return (1 / np.sqrt(ins[0])).astype(ins[0].dtype)
    return c.emit("Reciprocal", [c.emit("Sqrt", [ins[0]], op.name + "_sqrt")], op.name)


@tf_op("Square")
def _square(c, op, ins):
    if host_numeric(ins[0]):
        return np.square(ins[0])
    return c.emit("Mul", [ins[0], ins[0]], op.name)


@tf_op("Log1p", "Expm1")
def _log1p(c, op, ins):
    one = np.ones((), _np_dtype(op))
    if op.type == "Log1p":
        return c.emit("Log", [c.emit("Add", [ins[0], one], op.name + "_p1")], op.name)
    return c.emit("Sub", [c.emit("Exp", [ins[0]], op.name + "_exp"), one], op.name)


@tf_op("Relu6")
def _relu6(c, op, ins):
    dt = _np_dtype(op)
    return c.emit("Clip", [ins[0], np.zeros((), dt), np.full((), 6, dt)], op.name)


@tf_op("LeakyRelu")
def _leaky_relu(c, op, ins):
    return c.emit("LeakyRelu", [ins[0]], op.name, alpha=float(op.get_attr("alpha")))


@tf_op("ClipByValue")
def _clip(c, op, ins):
    x, lo, hi = ins
    if _all_host(ins):
        return np.clip(x, lo, hi)
    return c.emit("Clip", [x, np.asarray(lo).reshape(()), np.asarray(hi).reshape(())], op.name)


@tf_op("Softmax", "LogSoftmax")
def _softmax(c, op, ins):
    return c.emit(op.type, [ins[0]], op.name, axis=-1)


@tf_op("Select", "SelectV2")
def _select(c, op, ins):
    cond, a, b = ins
    if _all_host(ins):
        return np.where(cond, a, b)
    return c.emit("Where", [cond, a, b], op.name)


@tf_op("AddN")
def _add_n(c, op, ins):
    if _all_host(ins):
        return sum(ins[1:], ins[0])
    return c.emit("Sum", list(ins), op.name)


# -- reductions and linear algebra ----------------------------------------------------------------------
_REDUCE = {"Sum": ("ReduceSum", np.sum), "Mean": ("ReduceMean", np.mean), "Max": ("ReduceMax", np.max),
           "Min": ("ReduceMin", np.min), "Prod": ("ReduceProd", np.prod)}


@tf_op(*_REDUCE)
def _reduce(c, op, ins):
    x, axes = ins
    keep = bool(op.get_attr("keep_dims"))
    onnx_type, fn = _REDUCE[op.type]
    if isinstance(x, Counts) and op.type == "Sum":
        return np.asarray(x.total, dtype=object) if isinstance(x.total, Sym) else np.asarray(x.total)
    ax = [int(a) for a in np.asarray(axes).reshape(-1)]
    if is_host(x):
        if x.dtype == object:
            if op.type not in ("Sum", "Prod") or x.ndim != 1:
                raise ShapeInferenceError(f"{op.type} over symbolic sizes")
            acc = 0 if op.type == "Sum" else 1
            for d in x:
                acc = acc + d if op.type == "Sum" else acc * d
            return np.asarray(acc, dtype=object)
        return np.asarray(fn(x, axis=tuple(ax), keepdims=keep)).astype(x.dtype)
    if not ax:
        return x
    return c.emit(onnx_type, [x], op.name, axes=ax, keepdims=int(keep))


@tf_op("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")
def _matmul(c, op, ins):
    a, b = ins
    ta = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
    tb = op.get_attr("transpose_b") if op.type == "MatMul" else op.get_attr("adj_y")

    def t(x, flag, tag):
        if not flag:
            return x
        if is_host(x):
            return np.ascontiguousarray(np.swapaxes(x, -1, -2))
        perm = list(range(c.val(x).rank))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        return c.emit("Transpose", [x], op.name + tag, perm=perm)

    a, b = t(a, ta, "_ta"), t(b, tb, "_tb")
    if _all_host([a, b]):
        return np.matmul(a, b)
    if host_numeric(b) and b.ndim == 2 and isinstance(a, Value):
        split = per_node_products(c, a, b, op.name)
        if split is not None:
            return split
    return c.emit("MatMul", [a, b], op.name)


@tf_op("GatherV2")
def _gather(c, op, ins):
    x, idx, axis = ins
    axis = int(np.asarray(axis).reshape(()))
    if op.get_attr("batch_dims") != 0:
        raise ShapeInferenceError("GatherV2 with batch_dims is not supported")
    if isinstance(idx, SegIds):
        if isinstance(x, Iota):
            return idx
        return c.repeat(x, _seg_counts(c, idx), axis, op.name) if idx.value is None else \
            c.emit("GatherRows", [x, idx.value], op.name, domain="pysofie", what="graph index")
    if is_host(x) and is_host(idx):
        return np.take(x, idx, axis=axis)
    if isinstance(idx, Value) and idx.is_input and axis == 0 and idx.rank == 1:
        return c.emit("GatherRows", [x, idx], op.name, domain="pysofie", what=f"input '{idx.name}'")
    return c.emit("Gather", [x, idx], op.name, axis=axis)


def _seg_counts(c, seg: SegIds):
    return host_array([seg.length])


_SEGMENT = {"UnsortedSegmentSum": "sum", "UnsortedSegmentMax": "max", "UnsortedSegmentMin": "min",
            "UnsortedSegmentProd": "prod"}


@tf_op(*_SEGMENT)
def _segment(c, op, ins):
    data, ids, num = ins
    if not is_host(num):
        raise ShapeInferenceError("the number of segments must be a size (of nodes, edges or graphs)")
    n = _dim(num)
    red = _SEGMENT[op.type]
    if isinstance(ids, SegIds):
        if ids.value is None:
            return c.emit("SegmentReduce", [data, None], op.name, domain="pysofie", reduction=red, num_segments=1,
                          what="graph index")
        return c.emit("SegmentReduce", [data, ids.value], op.name, domain="pysofie", reduction=red,
                      num_segments=n, what="graph index")
    what = f"input '{ids.name}'" if isinstance(ids, Value) and ids.is_input else "segment ids"
    if isinstance(ids, Value) and ids.rank != 1:
        raise ShapeInferenceError("segment ids must be 1-D")
    return c.emit("SegmentReduce", [data, ids], op.name, domain="pysofie", reduction=red, num_segments=n,
                  what=what)
