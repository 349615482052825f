"""``PruneGatheredRows``: compute only the row a Gather keeps (a classification token).

BERT's pooler and ViT's head read one token of the last layer (``x[:, 0]``: a Gather of one index along the
sequence axis). Every node between that token and the last attention works row by row along that axis (dense
layers, activations, residual Adds, LayerNormalization, RMSNormalization, the attention's queries), so only the
kept row of each is needed: the pass rewrites those nodes to compute that one row (the axis becomes 1 long) and
puts a one-row Gather where a full tensor is still needed elsewhere (the attention's keys and values read the
full projection; its queries become one row of it). Every kept value is computed by the same operations on the
same inputs as before; only the order in which a one-row product sums its terms may differ (the matrix kernel's
tiles of one or two rows keep partial sums), i.e. floating-point reassociation.

A value is reduced only when every node reading it is reduced too (or is the Gather), and it is no graph output.
"""
from __future__ import annotations

import numpy as np

from ....ir import Graph, Value
from ....passes.manager import Pass

UNARY = ("Relu", "LeakyRelu", "Gelu", "Tanh", "Sigmoid", "Erf", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal",
         "Identity", "Softplus", "Elu", "HardSigmoid", "Mish", "Cast")
BINARY = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where")


def _int_shape(v: Value) -> bool:
    return v is not None and v.shape is not None and all(isinstance(d, int) for d in v.shape)


def _row_axes(graph: Graph, n, a: int):
    """For node n whose (first) output is needed only at one index of axis a: per input, the axis along which
    that input is then needed at the same index (None: needed whole, e.g. a weight or a broadcast operand), or
    None when n does not work row by row along a."""
    out = n.outputs[0]
    if any(o is not None and o is not out and (o.uses or graph.is_output(o)) for o in n.outputs):
        return None
    t = n.op_type
    if t in UNARY:
        return [a] + [None] * (len(n.inputs) - 1)
    if t in BINARY:
        r = out.rank
        axes = []
        for v in n.inputs:
            ai = a - (r - v.rank)
            axes.append(None if ai < 0 or v.shape[ai] == 1 else ai)
        return axes
    if t in ("LayerNormalization", "RMSNormalization", "Softmax", "LogSoftmax"):
        x = n.inputs[0]
        ax = n.op.axis % x.rank if t != "Softmax" or n.op.axis is not None else x.rank - 1
        if t in ("LayerNormalization", "RMSNormalization") and ax <= a:
            return None  # the normalized axes include a
        if t in ("Softmax", "LogSoftmax") and (ax == a or 0 < getattr(n.op, "opset", 0) < 13):
            return None
        return [a] + [None] * (len(n.inputs) - 1)
    if t == "MatMul":
        A, B = n.inputs
        if A.rank < 2 or B.rank != 2 or a >= A.rank - 1:
            return None
        return [a, None]
    if t == "Gemm":
        C = n.input(2)
        if a != 0 or n.op.transA or (C is not None and C.rank == 2 and C.shape[0] != 1):
            return None
        return [0, None, None][:len(n.inputs)]
    if t == "Reshape":
        x = n.inputs[0]
        if not (_int_shape(x) and _int_shape(out)) or tuple(x.shape[:a + 1]) != tuple(out.shape[:a + 1]):
            return None
        return [a, None]
    if t == "PysofieAttention":
        op = n.op
        if int(op.causal) >= 0 or a != (1 if op.y_layout == "bshd" else 2):
            return None
        qa = 1 if int(op.heads) or op.q_layout == "bshd" else 2
        axes = [qa, None, None]
        for v in n.inputs[3:]:  # masks broadcast to (B, H, S, T): their S axis
            ai = None if v is None else 2 - (4 - v.rank)
            axes.append(None if v is None or ai < 0 or v.shape[ai] == 1 else ai)
        return axes
    return None


class PruneGatheredRows(Pass):
    name = "prune-gathered-rows"

    def __call__(self, graph: Graph) -> bool:
        for g in list(graph.nodes):
            if g in graph.nodes and g.op_type == "Gather" and self._prune(graph, g):
                return True  # one at a time: the graph has changed under the loop
        return False

    def _prune(self, graph: Graph, g) -> bool:
        x, idx = g.inputs
        if idx is None or idx.const is None or np.asarray(idx.const).size != 1 or not _int_shape(x) \
                or x.dtype is None or not x.dtype.is_float or x.rank < 2:
            return False
        a = g.op.axis % x.rank
        k = int(np.asarray(idx.const).reshape(-1)[0])
        n_a = x.shape[a]
        k = k + n_a if k < 0 else k
        if a == x.rank - 1 or n_a <= 1 or not 0 <= k < n_a:
            return False
        # need[(id(node), input)] = axis along which that input is needed at index k only; absent: needed whole
        need = {(id(g), 0): a}
        rows = {}  # id(value) -> (value, axis): values needed only at index k of axis
        order = list(graph.nodes)
        pos = {id(n): i for i, n in enumerate(order)}
        for n in reversed(order[:pos[id(g)]]):
            if not n.outputs or n.outputs[0] is None:
                continue
            out = n.outputs[0]
            if graph.is_output(out) or not out.uses:
                continue
            axes = {need.get((id(m), i)) for m, i in out.uses}
            if len(axes) != 1 or None in axes:
                continue
            (ax,) = axes
            per_input = _row_axes(graph, n, ax)
            if per_input is None:
                continue
            rows[id(out)] = (out, ax)
            for i, ai in enumerate(per_input):
                if ai is not None and n.inputs[i] is not None:
                    need[(id(n), i)] = ai
        if not any(v.producer is not None and v.producer.op_type in ("MatMul", "Gemm", "PysofieAttention")
                   for v, _ in rows.values()):
            return False  # nothing worth the rewrite
        self._rewrite(graph, g, rows, need, k)
        for n in list(graph.nodes):
            if n.op_type == "PysofieAttention":
                _split_query_projection(graph, n)
        return True

    @staticmethod
    def _rewrite(graph: Graph, g, rows: dict, need: dict, k: int) -> None:
        from ....ops.base import lookup
        taken = {v.name for v in graph.values()}

        def fresh(base: str) -> str:
            name, j = base, 1
            while name in taken:
                name, j = f"{base}_{j}", j + 1
            taken.add(name)
            return name

        new = {}  # id(old value) -> its row value
        cache = {}  # (id(value), axis) -> a one-row Gather of a value needed whole elsewhere

        def row_of(v: Value, ax: int, before) -> Value:
            if id(v) in new:
                return new[id(v)]
            if v.const is not None:
                return Value(fresh(v.name + "_row"), const=np.take(np.asarray(v.const), [k], axis=ax))
            key = (id(v), ax)
            if key not in cache:
                shape = list(v.shape)
                shape[ax] = 1
                out = Value(fresh(v.name + "_row"), v.dtype, shape)
                ind = Value(fresh(v.name + "_row_index"), const=np.array([k], np.int64))
                graph.add_node(lookup("Gather")(axis=ax), [v, ind], [out], fresh(v.name + "/row_gather"),
                               index=graph.nodes.index(before))
                cache[key] = out
            return cache[key]

        for n in list(graph.nodes):
            if n is g or not n.outputs or n.outputs[0] is None or id(n.outputs[0]) not in rows:
                continue
            out, ax = rows[id(n.outputs[0])]
            ins = []
            for i, v in enumerate(n.inputs):
                ai = need.get((id(n), i))
                ins.append(v if v is None or ai is None else row_of(v, ai, n))
            if n.op_type == "Reshape":
                shape = list(out.shape)
                shape[ax] = 1
                ins[1] = Value(fresh(n.inputs[1].name + "_row"), const=np.array(shape, np.int64))
            shape = list(out.shape)
            shape[ax] = 1
            o = Value(fresh(out.name + "_row"), out.dtype, shape)
            at = graph.nodes.index(n)
            graph.remove_node(n)
            graph.add_node(n.op, ins, [o], n.name, index=at)
            new[id(out)] = o
        # the Gather now picks index 0 of the one-row tensor
        x, idx = g.inputs
        graph.set_input(g, 0, new[id(x)])
        graph.set_input(g, 1, Value(fresh(idx.name + "_row"), const=np.zeros_like(np.asarray(idx.const))))


def _split_query_projection(graph: Graph, att) -> None:
    """The attention's queries reduced to one row of a fused q/k/v projection (B, S, W) = x W (+ b) whose keys and
    values are read whole: the projection splits into the query columns for that row only and the key / value
    columns for every row (the query columns of the other rows are not computed)."""
    from ....ops.base import lookup
    from ....passes.rewrites import _clone_op, _const
    op = att.op
    q, k, v = att.inputs[:3]
    if not int(op.heads) or k is not v or q is k:
        return
    gq = q.producer
    if gq is None or gq.op_type != "Gather" or gq.inputs[0] is not k or len(k.uses) != 3 or graph.is_output(k) \
            or graph.is_output(q) or len(q.uses) != 1:
        return
    ax = gq.op.axis % k.rank
    if ax != 1 or k.rank != 3:
        return
    p, bias, mm = k.producer, None, k.producer
    if p is not None and p.op_type == "Add":
        j = next((j for j in (0, 1) if p.inputs[j].const is not None and p.inputs[j].rank == 1), None)
        if j is None or len(p.inputs[1 - j].uses) != 1 or graph.is_output(p.inputs[1 - j]):
            return
        bias, mm = p.inputs[j], p.inputs[1 - j].producer
    if mm is None or mm.op_type != "MatMul" or mm.inputs[1].const is None or mm.inputs[1].rank != 2:
        return
    x, wv = mm.inputs
    W = np.asarray(wv.const)
    H, dk, dv = int(op.heads), int(op.dk), int(op.dv)
    qs = np.arange(int(op.q_off), int(op.q_off) + H * dk)
    kvs = np.concatenate([np.arange(int(op.k_off), int(op.k_off) + H * dk),
                          np.arange(int(op.v_off), int(op.v_off) + H * dv)])
    if W.shape[1] != k.shape[2] or (bias is not None and bias.shape[0] != W.shape[1]):
        return
    taken = {v_.name for v_ in graph.values()}

    def fresh(base):
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    at = graph.nodes.index(mm)
    new_nodes = []

    def dense(src, cols, label, rows_shape):
        w = _const(graph, fresh(wv.name + label), W[:, cols])
        taken.add(w.name)
        out = Value(fresh(k.name + label), k.dtype, rows_shape[:2] + (len(cols),))
        if bias is None:
            new_nodes.append((_clone_op(mm.op), [src, w], out, mm.name + label))
            return out
        mid = Value(fresh(k.name + label + "_mm"), k.dtype, out.shape)
        b = _const(graph, fresh(bias.name + label), np.asarray(bias.const)[cols])
        taken.add(b.name)
        new_nodes.append((_clone_op(mm.op), [src, w], mid, mm.name + label))
        new_nodes.append((_clone_op(p.op), [mid, b], out, p.name + label))
        return out

    xr = Value(fresh(x.name + "_row"), x.dtype, (x.shape[0], 1) + tuple(x.shape[2:]))
    ind = Value(fresh(x.name + "_row_index"), const=np.asarray(gq.inputs[1].const).copy())
    new_nodes.insert(0, (lookup("Gather")(axis=1), [x, ind], xr, gq.name))
    qv = dense(xr, qs, "_q", tuple(xr.shape))
    kv = dense(x, kvs, "_kv", tuple(k.shape))
    new_op = _clone_op(op)
    new_op.attrs.update(q_off=0, k_off=0, v_off=H * dk)
    removed = [gq, mm] + ([p] if bias is not None else [])
    ai = graph.nodes.index(att)
    for n in removed:
        graph.remove_node(n)
    graph.remove_node(att)
    for i, (o, ins, out, name) in enumerate(new_nodes):
        graph.add_node(o, ins, [out], name, index=at + i)
    ai = ai - len(removed) + len(new_nodes)
    graph.add_node(new_op, [qv, kv, kv] + list(att.inputs[3:]), list(att.outputs), att.name, index=ai)
