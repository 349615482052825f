"""Rewrites while converting, where the TensorFlow graph spells a known computation the long way:
- Sonnet's LayerNorm (tf.nn.moments + tf.nn.batch_normalization) -> one LayerNormalization;
- a first layer over concat(edge, node[receiver], node[sender], global) -> per-node / per-graph products
  gathered per edge (the products are computed once per node or graph instead of once per edge).
"""
from __future__ import annotations

import numpy as np

from ...ir import Value
from .convert import host_numeric


def _producer(t, *types):
    return t.op if t.op.type in types else None


def layer_norm(c, op):
    """tf.nn.moments + tf.nn.batch_normalization over the last axis (Sonnet's LayerNorm) ending in this AddV2:
    (x, scale, offset, epsilon) with host scale / offset (None when absent), else None."""
    def operand(t):
        return c.env.get(t.name)

    def mul_of(t, x_name):
        m = _producer(t, "Mul")
        if m is None:
            return None
        a, b = m.inputs
        if a.name == x_name:
            return b
        if b.name == x_name:
            return a
        return None

    left, right = op.inputs
    for xm, rest in ((left, right), (right, left)):
        m = _producer(xm, "Mul")
        if m is None:
            continue
        for x_t, inv_t in ((m.inputs[0], m.inputs[1]), (m.inputs[1], m.inputs[0])):
            # inv = rsqrt(var + eps) [* scale]
            scale = None
            r = _producer(inv_t, "Rsqrt")
            if r is None:
                sm = _producer(inv_t, "Mul")
                if sm is None:
                    continue
                for rr, sc in ((sm.inputs[0], sm.inputs[1]), (sm.inputs[1], sm.inputs[0])):
                    if _producer(rr, "Rsqrt") is not None and host_numeric(operand(sc)):
                        r, scale = rr.op, operand(sc)
                        break
                if r is None:
                    continue
            add = _producer(r.inputs[0], "AddV2", "Add")
            if add is None or not host_numeric(operand(add.inputs[1])):
                continue
            eps = float(np.asarray(operand(add.inputs[1])).reshape(-1)[0])
            var = _producer(add.inputs[0], "Mean")
            sq = var is not None and _producer(var.inputs[0], "SquaredDifference")
            if not sq or sq.inputs[0].name != x_t.name:
                continue
            mean_t = sq.inputs[1]
            if mean_t.op.type == "StopGradient":
                mean_t = mean_t.op.inputs[0]
            mean = _producer(mean_t, "Mean")
            if mean is None or mean.inputs[0].name != x_t.name:
                continue
            x = operand(x_t)
            if not isinstance(x, Value):
                continue
            for red in (mean, var):
                axes = [int(a) % x.rank for a in np.asarray(operand(red.inputs[1])).reshape(-1)]
                if axes != [x.rank - 1] or not red.get_attr("keep_dims"):
                    break
            else:
                # rest = offset - mean * inv, or -(mean * inv)
                offset = None
                sub = _producer(rest, "Sub")
                if sub is not None and host_numeric(operand(sub.inputs[0])) and \
                        mul_of(sub.inputs[1], mean_t.name) is not None:
                    offset = operand(sub.inputs[0])
                elif not (_producer(rest, "Neg") is not None and mul_of(rest.op.inputs[0], mean_t.name) is not None
                          or _producer(rest, "Mul") is not None and any(
                              i.op.type == "Neg" and i.op.inputs[0].name == mean_t.name for i in rest.op.inputs)):
                    continue  # -(mean * inv) or (-mean) * inv without an offset
                return x, scale, offset, eps
    return None


def per_node_products(c, a: Value, w: np.ndarray, name: str):
    """concat([e, x[idx], ..., u broadcast]) @ W as e @ W_e + (x @ W_x)[idx] + ... + u @ W_u: the products of
    gathered node rows (broadcast global rows) are computed once per node (graph), not once per edge (node).
    None when `a` is not such a concatenation."""
    node = a.producer
    if node is None or node.op_type != "Concat" or a.rank != 2 or node.op.axis not in (1, -1):
        return None
    parts = node.inputs
    if any(not isinstance(p.shape[1], int) for p in parts):
        return None

    def kind(p):
        q = p.producer
        if q is not None and q.op_type == "GatherRows" and q.input(2) is None:
            return "gather"
        if q is not None and q.op_type == "Expand" and q.inputs[0].rank == 2 and q.inputs[0].shape[0] == 1:
            return "broadcast"
        return "direct"

    kinds = [kind(p) for p in parts]
    if all(k == "direct" for k in kinds):
        return None
    offsets = np.cumsum([0] + [int(p.shape[1]) for p in parts])
    if offsets[-1] != w.shape[0]:
        return None
    rows = {k: np.ascontiguousarray(w[offsets[i]:offsets[i + 1]]) for i, k in enumerate(range(len(parts)))}
    direct = [i for i, k in enumerate(kinds) if k == "direct"]
    out = None
    if direct:
        x = parts[direct[0]] if len(direct) == 1 else c.emit("Concat", [parts[i] for i in direct], name + "_direct",
                                                             axis=1)
        wd = np.ascontiguousarray(np.concatenate([rows[i] for i in direct], axis=0))
        out = c.emit("MatMul", [x, wd], name + "_direct_mm")
    for i, k in enumerate(kinds):
        if k != "gather":
            continue
        g = parts[i].producer
        per_node = c.emit("MatMul", [g.inputs[0], rows[i]], name + f"_per_node{i}")
        ins = [per_node, g.inputs[1]] + ([out] if out is not None else [])
        out = c.emit("GatherRows", ins, name + f"_gathered{i}", domain="pysofie", what=g.op.what)
    for i, k in enumerate(kinds):
        if k == "broadcast":
            row = c.emit("MatMul", [parts[i].producer.inputs[0], rows[i]], name + f"_per_graph{i}")
            out = c.emit("Add", [out, row], name + f"_plus{i}")
    return out
