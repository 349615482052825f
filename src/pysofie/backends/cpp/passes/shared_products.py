"""ShareRowProducts: a partial product that several dense layers compute with the same input and the same weights
is computed once.

A float MatMul ``concat([x_1, ..., x_p], axis=1) @ W`` with constant W equals ``sum_i x_i @ W_i`` (W_i: the rows of W
that meet x_i). When the same (x_i, W_i) -- the same runtime value, byte-identical weights -- appears in two or more
such products (or as a plain ``x_i @ W_i``), that product is computed once and added where it is needed:

- graph_nets' encode-process-decode core reads ``concat(encoded, latent)`` for edges, nodes and globals at every
  processing step with the same (shared) weights: the products of the encoded part with the first layers' weights
  -- edge rows, the per-node products gathered per edge (frontends/gnn/rewrites.per_node_products), node rows,
  per-graph rows -- are the same at every step;
- any model that feeds one tensor, concatenated with others, into copies of a layer.

A layer keeps the product of its remaining parts (a Concat of them) plus an Add of each shared product; the
RowMLP pass (row_mlp.py) reads those Adds as terms of its first layer's sum, so nothing extra is materialized
there. Only parts with at least MIN_K features are shared (below that the product costs about what reading it
back does). Runs before MatMul + bias become Gemm (the first layers are still plain MatMuls).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ....ir import DType, Graph, Value
from ....passes.manager import Pass

MIN_K = 8


def _concat_parts(v: Value) -> list:
    """The 2-D row blocks whose axis-1 concatenation is v (nested Concats flattened), or [v]."""
    q = v.producer
    if q is None or q.op_type != "Concat" or v.rank != 2 or int(q.op.axis) not in (1, -1) or not q.inputs \
            or not all(u is not None and u.rank == 2 and isinstance(u.shape[1], int) for u in q.inputs):
        return [v]
    out = []
    for u in q.inputs:
        if int(u.shape[1]) > 0:
            out += _concat_parts(u)
    return out


def _candidate(n) -> list | None:
    """[(part, rows of W)] of a float 2-D MatMul with a constant 2-D weight, else None."""
    if n.op_type != "MatMul" or len(n.inputs) != 2 or len(n.outputs) != 1 or n.op.__dict__.get("packed_gemm") \
            or n.op.__dict__.get("fused_act"):
        return None
    a, b = n.inputs
    if a is None or b is None or b.const is None or a.dtype is not DType.FLOAT or a.rank != 2 or b.rank != 2 \
            or n.outputs[0].dtype is not DType.FLOAT or a.const is not None:
        return None
    w = np.asarray(b.const, np.float32)
    parts = _concat_parts(a)
    if sum(int(u.shape[1]) for u in parts) != w.shape[0]:
        return None
    out, k0 = [], 0
    for u in parts:
        k1 = k0 + int(u.shape[1])
        out.append((u, w[k0:k1]))
        k0 = k1
    return out


def _key(v: Value, w: np.ndarray) -> tuple:
    return v.name, w.shape, hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest()


class _Names:
    """Fresh value names (the graph's, plus those handed out but not yet in it)."""

    def __init__(self, graph: Graph):
        self.taken = {v.name for v in graph.values()}

    def __call__(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def value(self, base: str, shape) -> Value:
        return Value(self(base), DType.FLOAT, shape)

    def const(self, base: str, data: np.ndarray) -> Value:
        return Value(self(base), const=np.ascontiguousarray(data, np.float32))


class ShareRowProducts(Pass):
    name = "share-row-products"

    def __call__(self, graph: Graph) -> bool:
        from ....ops.elementwise import Add
        from ....ops.gemm import MatMul
        from ....ops.shape import Concat
        cands = []
        for n in graph.nodes:
            parts = _candidate(n)
            if parts is not None:
                cands.append((n, parts))
        # only products over a concatenation can share a part; a plain x @ W only with one of those (weights are
        # hashed for these alone: a model without such concatenations pays nothing)
        split = {u.name for _, parts in cands if len(parts) > 1 for u, _ in parts}
        cands = [(n, parts) for n, parts in cands if len(parts) > 1 or parts[0][0].name in split]
        keyed = []
        users: dict[tuple, set] = {}
        for n, parts in cands:
            keys = [_key(u, w) if w.shape[0] >= MIN_K else None for u, w in parts]
            keyed.append((n, parts, keys))
            for k in keys:
                if k is not None:
                    users.setdefault(k, set()).add(id(n))
        shared = {k for k, s in users.items() if len(s) >= 2}
        if not shared:
            return False
        products: dict[tuple, Value] = {}
        for n, parts, keys in keyed:  # a plain x @ W_i that already exists is the product
            if len(parts) == 1 and keys[0] in shared and keys[0] not in products and n.inputs[0] is parts[0][0]:
                products[keys[0]] = n.outputs[0]
        changed = False
        names = _Names(graph)
        for n, parts, keys in keyed:
            if not any(k in shared for k in keys):
                continue
            y = n.outputs[0]
            if len(parts) == 1:
                p = products.get(keys[0])
                if p is not None and p is not y and n.inputs[0] is parts[0][0] and not graph.is_output(y):
                    # the same product twice
                    graph.replace_all_uses_with(y, p)
                    graph.remove_node(n)
                    changed = True
                continue
            index = graph.nodes.index(n)
            graph.remove_node(n)
            new = []  # (op, inputs, output, name)
            terms = []
            for (u, w), k in zip(parts, keys):
                if k in shared:
                    if k not in products:
                        wv = names.const(f"{n.name}_shared_w", w)
                        pv = names.value(f"{u.name}_times_{n.name}", (u.shape[0], y.shape[1]))
                        new.append((MatMul(), [u, wv], pv, pv.name))
                        products[k] = pv
                    terms.append(products[k])
            rest = [(u, w) for (u, w), k in zip(parts, keys) if k not in shared]
            if rest:
                if len(rest) == 1:
                    x = rest[0][0]
                else:
                    x = names.value(f"{n.name}_rest", (y.shape[0], sum(int(u.shape[1]) for u, _ in rest)))
                    new.append((Concat(axis=1), [u for u, _ in rest], x, x.name))
                wv = names.const(f"{n.name}_rest_w", np.concatenate([w for _, w in rest]))
                r = names.value(f"{n.name}_rest_mm", y.shape)
                new.append((MatMul(), [x, wv], r, r.name))
                terms.insert(0, r)
            acc = terms[0]
            for j, t in enumerate(terms[1:]):
                out = y if j == len(terms) - 2 else names.value(f"{n.name}_sum{j}", y.shape)
                new.append((Add(), [acc, t], out, out.name))
                acc = out
            for op, ins, o, name in new:
                op.opset = n.op.opset
                graph.add_node(op, ins, [o], names(name + "_node"), index=index)
                index += 1
            changed = True
        if changed:
            graph.toposort()
        return changed


class ShareConstants(Pass):
    """Constants with the same dtype, shape and bytes become one Value, stored, loaded and cached once. A model
    that calls one module at every step of a loop (graph_nets' encode-process-decode: the core, decoder and output
    transform at every processing step) is traced into a copy of its weights per call, and each copy is packed for
    its own layer: 7.3 of the GNN benchmark model's 9.7 MB of weights were such copies, a working set 4x larger
    than the model's for the caches at every call (the benchmark model at (50, 100): ~20 % less time). Runs last
    (after the passes that pack weights); values are only merged, never modified. Like ShareRowProducts, this makes
    the generated code depend on which weights are byte-identical: a weight file written for another instance of
    the model, whose copies differ, does not fit it. Constants under MIN_BYTES (scalars, shapes, bias vectors, which
    are often all zeros before training) are left alone: weight matrices that are equal byte for byte are copies."""
    name = "share-constants"
    MIN_BYTES = 4096

    def __call__(self, graph: Graph) -> bool:
        first: dict[tuple, Value] = {}
        changed = False
        for v in graph.constants():
            a = v.const
            if v.is_input or graph.is_output(v) or a.nbytes < self.MIN_BYTES:
                continue
            a = np.ascontiguousarray(a)
            key = (a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).digest())
            keep = first.setdefault(key, v)
            if keep is not v and np.array_equal(keep.const, a):
                graph.replace_all_uses_with(v, keep)
                changed = True
        return changed
