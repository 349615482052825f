"""Target-neutral graph rewrites (no kernel choice; weights keep their ONNX layout), used by every back end.
Each has a test against the unoptimized path (tests/test_fusion.py).

- ``FoldBatchNorm``: Conv (constant weights) followed by an inference BatchNormalization becomes one Conv with
  rescaled weights and a bias.
- ``FuseBiasAdd``: Conv / ConvTranspose followed by the Add of a constant per-channel bias takes it as its bias.
- ``MatMulAddToGemm``: a 2-D MatMul by a constant followed by the Add of a constant bias becomes a Gemm.
- ``FuseActivation``: Relu / LeakyRelu / Sigmoid / Tanh right after a Conv, ConvTranspose or Gemm is applied by
  that node's generated code while its output is in cache (the node's op carries ``fused_act``), and the
  activation node disappears.

The passes that choose a target's kernels (weight packing, Winograd, ...) belong to that target's back end
(backends/<target>/passes).
"""
from __future__ import annotations

import copy

import numpy as np

from ..ir import Graph, Value
from .manager import Pass

ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh")
FUSES_ACTIVATION = ("Conv", "ConvTranspose", "Gemm")


def _float(v: Value) -> bool:
    return v is not None and v.dtype is not None and v.dtype.is_float


def _single_internal_use(graph: Graph, v: Value) -> bool:
    """v is read by exactly one node and is not a graph output."""
    return len(v.uses) == 1 and not graph.is_output(v)


def _sole_user(graph: Graph, v: Value, op_type: str | None = None):
    """The only node reading v (of op_type, when given), v being no graph output; else None."""
    if not _single_internal_use(graph, v):
        return None
    n = v.uses[0][0] if isinstance(v.uses[0], tuple) else v.uses[0]
    return n if op_type is None or n.op_type == op_type else None


def _other(node, v: Value):
    """The operand of a two-input node that is not v (None when v is not one of them or both are v)."""
    a, b = node.inputs[0], node.inputs[1]
    if a is v and b is not v:
        return b
    if b is v and a is not v:
        return a
    return None


def _clone_op(op):
    new = copy.copy(op)
    new.__dict__["attrs"] = dict(op.attrs)
    return new


def _const(graph: Graph, base: str, data: np.ndarray) -> Value:
    taken = {v.name for v in graph.values()}
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return Value(name, const=np.ascontiguousarray(data))


def _replace(graph: Graph, old_nodes: list, op, inputs: list, output: Value, name: str, at_last: bool = False):
    """Remove old_nodes and put one node computing `output` where the first of them was (at_last: where the last
    of them was, for a node that also reads values computed between them)."""
    at = [graph.nodes.index(n) for n in old_nodes]
    index = max(at) - (len(at) - 1) if at_last else min(at)
    for n in old_nodes:
        graph.remove_node(n)
    return graph.add_node(op, inputs, [output], name, index=index)


def _fuse_activation(graph: Graph, n, act) -> None:
    """Replace n and the activation node act that reads its output by a copy of n's op whose `fused_act` is
    (kind, alpha): Gelu as "Gelu" or "GeluTanh" (its `approximate`), LeakyRelu with its alpha, others by name."""
    if act.op_type == "Gelu":
        kind = ("GeluTanh" if getattr(act.op, "approximate", "none") == "tanh" else "Gelu", None)
    else:
        kind = (act.op_type, float(act.op.alpha) if act.op_type == "LeakyRelu" else None)
    op = _clone_op(n.op)
    op.__dict__["fused_act"] = kind
    _replace(graph, [n, act], op, list(n.inputs), act.outputs[0], n.name)


def _adds_after(graph: Graph, producer_type: str):
    """(Add, its operand made by a `producer_type` node, the other operand, that node) for every two-input Add
    still in the graph, trying both operand orders; stops trying an Add once it has been replaced."""
    for add in list(graph.nodes):
        if add.op_type != "Add" or len(add.inputs) != 2:
            continue
        for k in (0, 1):
            if add not in graph.nodes:
                break
            v, other = add.inputs[k], add.inputs[1 - k]
            prod = v.producer if v is not None else None
            if prod is not None and prod.op_type == producer_type and other is not None:
                yield add, v, other, prod


class FoldBatchNorm(Pass):
    name = "fold-batchnorm"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for bn in list(graph.nodes):
            if bn.op_type != "BatchNormalization" or bn not in graph.nodes:
                continue
            if bn.op.training_mode or len(bn.outputs) != 1 or bn.op.spatial == 0:
                continue
            x = bn.inputs[0]
            conv = x.producer
            if conv is None or conv.op_type != "Conv" or not _single_internal_use(graph, x):
                continue
            if conv.op.__dict__.get("packed") is not None or conv.op.__dict__.get("winograd") is not None:
                continue  # weights already rearranged for a kernel
            params = bn.inputs[1:5]
            w = conv.inputs[1]
            b = conv.input(2)
            if any(p is None or p.const is None for p in params) or w.const is None or (b is not None and
                                                                                          b.const is None):
                continue
            if not _float(w) or len(conv.outputs) != 1:
                continue
            scale, beta, mean, var = (np.asarray(p.const, np.float64).reshape(-1) for p in params)
            m = w.shape[0]
            if any(a.size not in (1, m) for a in (scale, beta, mean, var)):
                continue
            s = scale / np.sqrt(var + float(bn.op.epsilon))
            s = np.broadcast_to(s, (m,))
            bias0 = np.zeros(m) if b is None else np.asarray(b.const, np.float64).reshape(-1)
            dt = w.const.dtype
            new_w = (w.const.astype(np.float64) * s.reshape((m,) + (1,) * (w.rank - 1))).astype(dt)
            new_b = ((bias0 - mean) * s + beta).astype(dt)
            wv = _const(graph, w.name + "_bnfold", new_w)
            bv = _const(graph, (b.name if b is not None else w.name) + "_bnfold_bias", np.broadcast_to(new_b, (m,)))
            _replace(graph, [conv, bn], _clone_op(conv.op), [conv.inputs[0], wv, bv], bn.outputs[0], conv.name)
            changed = True
        return changed


class MatMulAddToGemm(Pass):
    name = "matmul-add-to-gemm"

    def __call__(self, graph: Graph) -> bool:
        from ..ops.gemm import Gemm
        changed = False
        for add, mmv, c, mm in _adds_after(graph, "MatMul"):
            if c.const is None:
                continue
            a, b = mm.inputs[0], mm.inputs[1]
            if a.rank != 2 or b.rank != 2 or not _float(a) or not _single_internal_use(graph, mmv):
                continue
            if c.dtype is not a.dtype or c.rank > 2 or tuple(add.outputs[0].shape) != tuple(mmv.shape):
                continue
            op = Gemm(alpha=1.0, beta=1.0, transA=0, transB=0)
            op.opset = mm.op.opset
            _replace(graph, [mm, add], op, [a, b, c], add.outputs[0], mm.name)
            changed = True
        return changed


class FuseBiasAdd(Pass):
    """Conv / ConvTranspose followed by the Add of a constant per-channel bias (shape (M,1,..,1) or
    (1,M,1,..,1), as TensorFlow exports write it): the bias joins the convolution's own."""
    name = "fuse-bias-add"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for add in list(graph.nodes):
            if add.op_type != "Add" or add not in graph.nodes or len(add.inputs) != 2:
                continue
            for k in (0, 1):
                y, c = add.inputs[k], add.inputs[1 - k]
                conv = y.producer if y is not None else None
                if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or c is None or c.const is None:
                    continue
                if conv.op.__dict__.get("fused_act") or not _single_internal_use(graph, y) or not _float(y):
                    continue
                if c.dtype is not y.dtype or tuple(add.outputs[0].shape) != tuple(y.shape):
                    continue
                mch = y.shape[1]
                cs = list(c.shape)
                # channel axis of y is 1: c right-aligned against y's rank
                if len(cs) > y.rank or not isinstance(mch, int):
                    continue
                full = [1] * (y.rank - len(cs)) + cs
                if full[1] != mch or any(d != 1 for i, d in enumerate(full) if i != 1):
                    continue
                old = conv.input(2)
                if old is not None and old.const is None:
                    continue
                b = np.asarray(c.const).reshape(-1).astype(np.float64)
                if old is not None:
                    b = b + np.asarray(old.const, np.float64).reshape(-1)
                bv = _const(graph, c.name + "_bias", b.astype(c.const.dtype))
                _replace(graph, [conv, add], _clone_op(conv.op), [conv.inputs[0], conv.inputs[1], bv],
                         add.outputs[0], conv.name)
                changed = True
                break
        return changed


class FuseActivation(Pass):
    name = "fuse-activation"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for act in list(graph.nodes):
            if act.op_type not in ACTIVATIONS or act not in graph.nodes:
                continue
            x = act.inputs[0]
            prod = x.producer if x is not None else None
            if prod is None or prod.op_type not in FUSES_ACTIVATION or len(prod.outputs) != 1:
                continue
            if prod.op.__dict__.get("fused_act") is not None or not _single_internal_use(graph, x):
                continue
            if not _float(x) or act.outputs[0].dtype is not x.dtype:
                continue
            _fuse_activation(graph, prod, act)
            changed = True
        return changed


def neutral_passes() -> list:
    """Rewrites that hold for every target (no kernel choice, weights keep their ONNX layout)."""
    return [FoldBatchNorm(), FuseBiasAdd(), MatMulAddToGemm(), FuseActivation()]
