"""ConvNeXt's layout changes folded into their neighbours (runtime/pysofie_transpose.h), tests/test_channel_norm.py.

ConvNeXt blocks run the depthwise convolution in NCHW, permute to NHWC for a LayerNorm over the channels and the
dense layers, then permute back for the residual Add (``x + (gamma * y).permute(0, 3, 1, 2)``). Two rewrites:

- ``FuseChannelLayerNorm``: Transpose(NC... -> N...C) + LayerNormalization over the last axis becomes one
  PysofieChannelLayerNorm reading NCHW (the statistics of 8 pixels at once on vector lanes), writing NHWC, or
  NCHW when a Transpose back follows (the stem's LayerNorm: no copy at all).
- ``FuseScaleTransposeAdd``: [Mul by a per-channel constant] + Transpose(N...C -> NC...) + Add of an NCHW tensor
  of the same shape becomes one PysofieScaleTransposeAdd (8 x 8 register transposes, the two roundings of the Mul
  and the Add kept).
"""
from __future__ import annotations

from ....ir import DType, Graph, Value
from ....passes.manager import Pass
from ....passes.rewrites import _replace, _single_internal_use, _sole_user


def _op_classes():
    from ....ops.base import Op

    class ChannelLayerNorm(Op):
        """Y = LayerNorm over axis 1 of X (N, C, spatial...), scale and bias of C; Y laid out (N, spatial..., C)
        ("nhwc") or as X ("nchw")."""
        op_type = "PysofieChannelLayerNorm"
        domain = "pysofie"
        ATTRS = {"epsilon": 1e-5, "layout": "nhwc"}
        INPUTS = ("X", "Scale", "B")
        OUTPUTS = ("Y",)

        def infer(self, node):
            x = node.inputs[0]
            shape = x.shape if self.layout == "nchw" else (x.shape[0],) + tuple(x.shape[2:]) + (x.shape[1],)
            return [(x.dtype, tuple(shape))]

        def folds(self, node) -> bool:
            return False

    class ScaleTransposeAdd(Op):
        """Y (N, C, spatial...) = R + transpose(G * F): F (N, spatial..., C), G of C or none."""
        op_type = "PysofieScaleTransposeAdd"
        domain = "pysofie"
        ATTRS = {}
        INPUTS = ("F", "G", "R")
        OUTPUTS = ("Y",)

        def infer(self, node):
            r = node.inputs[2]
            return [(r.dtype, tuple(r.shape))]

        def folds(self, node) -> bool:
            return False

    return ChannelLayerNorm, ScaleTransposeAdd


_CLASSES = None


def _classes():
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _op_classes()
    return _CLASSES


def _static_f32(v: Value) -> bool:
    return v is not None and v.dtype is DType.FLOAT and v.shape is not None and v.rank >= 3 \
        and all(isinstance(d, int) for d in v.shape)


def _perm(node, perm) -> bool:
    return node is not None and node.op_type == "Transpose" and list(node.op.permutation(node)) == list(perm)


def _to_last(r: int) -> list:
    return [0] + list(range(2, r)) + [1]


def _to_second(r: int) -> list:
    return [0, r - 1] + list(range(1, r - 1))


def _channel_vector(v: Value, C: int) -> bool:
    return v is not None and v.const is not None and v.dtype is DType.FLOAT and tuple(v.shape) == (C,)


class FuseChannelLayerNorm(Pass):
    name = "fuse-channel-layernorm"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n in graph.nodes and n.op_type == "LayerNormalization":
                changed |= self._fuse(graph, n)
        return changed

    @staticmethod
    def _fuse(graph: Graph, ln) -> bool:
        t = ln.inputs[0]
        tr = t.producer
        if not _static_f32(t) or tr is None or not _single_internal_use(graph, t):
            return False
        r = t.rank
        if not _perm(tr, _to_last(r)) or ln.op.axis_of(ln) != r - 1:
            return False
        if any(o is not None and (o.uses or graph.is_output(o)) for o in ln.outputs[1:]):
            return False
        x = tr.inputs[0]
        C = x.shape[1]
        scale, bias = ln.inputs[1], ln.input(2)
        if not _channel_vector(scale, C) or (bias is not None and not _channel_vector(bias, C)):
            return False
        out, removed, layout = ln.outputs[0], [tr, ln], "nhwc"
        back = _sole_user(graph, out, "Transpose")
        if back is not None and _perm(back, _to_second(r)):
            out, layout = back.outputs[0], "nchw"
            removed.append(back)
        op = _classes()[0](epsilon=float(ln.op.epsilon), layout=layout)
        _replace(graph, removed, op, [x, scale, bias], out, ln.name, at_last=True)
        return True


class FuseScaleTransposeAdd(Pass):
    name = "fuse-scale-transpose-add"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n in graph.nodes and n.op_type == "Add":
                changed |= self._fuse(graph, n)
        return changed

    @staticmethod
    def _fuse(graph: Graph, add) -> bool:
        y = add.outputs[0]
        if not _static_f32(y):
            return False
        r = y.rank
        for k in (0, 1):
            t, res = add.inputs[k], add.inputs[1 - k]
            tr = t.producer
            if t is res or not _perm(tr, _to_second(r)) or not _single_internal_use(graph, t) \
                    or not _static_f32(res) or tuple(res.shape) != tuple(y.shape) or tuple(t.shape) != tuple(y.shape):
                continue
            f, g, removed = tr.inputs[0], None, [tr, add]
            mul = f.producer
            if mul is not None and mul.op_type == "Mul" and _single_internal_use(graph, f):
                for j in (0, 1):
                    if _channel_vector(mul.inputs[j], y.shape[1]) and tuple(mul.inputs[1 - j].shape) == tuple(f.shape):
                        f, g = mul.inputs[1 - j], mul.inputs[j]
                        removed.insert(0, mul)
                        break
            _replace(graph, removed, _classes()[1](), [f, g, res], y, add.name, at_last=True)
            return True
        return False
