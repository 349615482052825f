"""FuseRowMLP: a chain of dense layers over many rows (a GNN's edge, node and encoder MLPs) runs as one node that
takes a block of rows through every layer while the block is in cache (ops/gnn.py ``RowMLP``).

Layer by layer, each product streams its whole input and output through memory: four 100 x 100 layers over 20000
rows (8 MB per activation) run at ~70 GFLOP/s with the packed kernel (OpenBLAS's sgemm: ~75, without the bias and
ReLU pass it would still need) against ~92 at 4000 rows, on the development machine (Zen 4, one thread); by blocks
of 96 rows the chain keeps ~86-92 at every size and the time grows linearly with the rows.

One row (a batch of one at run time, or a row count fixed at 1): the generated code skips the blocks, tiles and
thread pool and runs one matrix-vector product per layer over the same packed weights (runtime/pysofie_gemv.h);
layers of at most NARROW columns also get their weights as rows of W^T for dot products.

What is fused, for a row count that is symbolic, 1, or at least MIN_ROWS:
- layers: float Gemm / MatMul whose constant B was packed (passes/gemm_pack.py), bias and activation in the
  store, each output read only by the next layer; then optionally a LayerNormalization over the last axis with
  constant scale / bias (a Sonnet MLP + LayerNorm);
- a first layer spelled as a sum (graph_nets blocks, after frontends/gnn/rewrites.per_node_products):
  ``act(X1 @ W1 + X2 @ W2 + ... + T1[idx1] + T2[idx2] + ... + row terms + constant bias)`` where the X are
  2-D row inputs (a Concat of several is split into its parts, each with its rows of W; the same tensor twice has
  its weights summed), T[idx] a GatherRows of per-node products (indices range-checked as GatherRows does), and
  row terms runtime [1, H] rows (per-graph products) added to every row, and A terms runtime [rows, H] read by
  other nodes too (a product computed once for several layers, passes/shared_products.py) added row by row. The
  concatenation, the adds and the activation pass are not materialized.
"""
from __future__ import annotations

import numpy as np

from ....ir import DType, Graph, Value
from ....ir.shapes import dims_equal
from ....passes.manager import Pass
from ....passes.rewrites import ACTIVATIONS, _const, _single_internal_use
from . import gemm_pack

MIN_ROWS = 512  # fixed row counts below this (small batches) keep the plain layers; 1 row: the GEMV chain
MAX_WIDTH = 256  # layer widths up to this: two blocks of rows of the widest layer on the stack (<= 192 KiB)
NARROW = 4  # layers this narrow get a W^T copy for the batch-of-one path (passes below)
LAYER_ACTS = (None, "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "GeluTanh")


def unpack_panels(p: np.ndarray, K: int, N: int) -> np.ndarray:
    """The inverse of gemm_pack.pack_panels: (K, N) from its panels."""
    NR = gemm_pack.NR
    out = np.zeros((K, N), np.float32)
    pos = 0
    for j in range(0, N, NR):
        nv = min(NR, N - j)
        wid = NR // 2 if nv <= NR // 2 else NR
        out[:, j:j + nv] = p[pos:pos + K * wid].reshape(K, wid)[:, :nv]
        pos += K * wid
    return out


def _act(op):
    a = op.__dict__.get("fused_act")
    return (a[0], None if a[1] is None else float(a[1])) if a else None


def _packed_layer(n) -> bool:
    """A float Gemm / MatMul with packed B, 2-D A, bias (if any) in the store, a supported fused activation."""
    if n.op_type not in ("Gemm", "MatMul") or len(n.outputs) != 1:
        return False
    info = n.op.__dict__.get("packed_gemm")
    if info is None or n.outputs[0].dtype is not DType.FLOAT or n.inputs[0].rank != 2:
        return False
    if n.op_type == "Gemm" and (bool(n.op.transA) or (n.input(2) is not None and not info["bias"])):
        return False
    if n.op_type == "MatMul" and len(n.inputs) > 2 and n.input(2) is not None and not info["bias"]:
        return False
    a = _act(n.op)
    return (a[0] if a else None) in LAYER_ACTS and 0 < info["N"] <= MAX_WIDTH


def _plain_product(graph, n) -> bool:
    """A packed layer without bias or activation whose output is read once (a term of a first-layer sum)."""
    info = n.op.__dict__.get("packed_gemm") if n is not None else None
    return n is not None and _packed_layer(n) and not info["bias"] and _act(n.op) is None \
        and _single_internal_use(graph, n.outputs[0])


class _Terms:
    def __init__(self, H: int):
        self.H = H
        self.direct: dict[str, list] = {}  # value name -> [value, W (K x H)]
        self.gather: list = []             # (table, indices, what)
        self.rows: list = []               # runtime [1, H]
        self.adds: list = []               # runtime [rows, H] read by other nodes too (shared_products.py)
        self.bias = np.zeros(H, np.float64)
        self.nodes: list = []              # the nodes the fused node replaces

    def add_direct(self, x: Value, w: np.ndarray) -> None:
        if x.name in self.direct:
            self.direct[x.name][1] = self.direct[x.name][1] + w
        else:
            self.direct[x.name] = [x, w]


def _collect(graph: Graph, v: Value, t: _Terms, rows) -> bool:
    """Adds the terms of the sum v (shape [rows, H]) to t; False when v is not such a sum."""
    p = v.producer
    if p is None:
        return False
    if p.op_type == "Add" and len(p.inputs) == 2 and all(u is not None for u in p.inputs):
        t.nodes.append(p)
        for u in p.inputs:
            if u.dtype is not DType.FLOAT:
                return False
            if u.const is not None:
                c = np.asarray(u.const, np.float64)
                if c.size not in (1, t.H) or (c.ndim >= 1 and c.shape[-1] not in (1, t.H)) or \
                        (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                    return False
                t.bias += np.broadcast_to(c.reshape(-1), (t.H,)) if c.size == t.H else float(c.reshape(-1)[0])
            elif u.rank == 2 and u.shape[0] == 1 and u.shape[1] == t.H and not dims_equal(rows, 1):
                t.rows.append(u)
            elif u.rank == 2 and dims_equal(u.shape[0], rows) and u.shape[1] == t.H:
                if not _single_internal_use(graph, u):
                    t.adds.append(u)  # a product computed once for several layers: added as it is
                elif not _collect(graph, u, t, rows):
                    return False
            else:
                return False
        return True
    if _plain_product(graph, p):
        info = p.op.__dict__["packed_gemm"]
        K, N = info["K"], info["N"]
        x = p.inputs[0]
        if N != t.H or not dims_equal(x.shape[0], rows) or p.inputs[1].const is None:
            return False
        t.nodes.append(p)
        w = unpack_panels(np.asarray(p.inputs[1].const, np.float32).reshape(-1), K, N)
        q = x.producer
        if q is not None and q.op_type == "Concat" and x.rank == 2 and int(q.op.axis) in (1, -1) \
                and all(u is not None and isinstance(u.shape[1], int) for u in q.inputs):
            k0 = 0
            for u in q.inputs:
                k1 = k0 + int(u.shape[1])
                if k1 > k0:
                    t.add_direct(u, w[k0:k1])
                k0 = k1
            return k0 == K
        t.add_direct(x, w)
        return True
    if p.op_type == "GatherRows" and p.inputs[0].dtype is DType.FLOAT and p.inputs[0].rank == 2 \
            and p.inputs[0].shape[1] == t.H and dims_equal(p.inputs[1].shape[0], rows):
        t.nodes.append(p)
        t.gather.append((p.inputs[0], p.inputs[1], p.op.what))
        base = p.input(2)
        if base is None:
            return True
        return _single_internal_use(graph, base) and _collect(graph, base, t, rows)
    return False


def _first_layer(graph: Graph, head) -> tuple | None:
    """(terms, activation) when the head layer's input is act(sum) or a sum as _collect reads it, else None."""
    a = head.inputs[0]
    if not _single_internal_use(graph, a) or a.producer is None:
        return None
    act, s, nodes = None, a, []
    if a.producer.op_type in ACTIVATIONS and a.dtype is DType.FLOAT:
        op = a.producer.op
        act = (a.producer.op_type, float(op.alpha) if a.producer.op_type == "LeakyRelu" else None)
        s = a.producer.inputs[0]
        nodes = [a.producer]
        if s is None or not _single_internal_use(graph, s):
            return None
    if s.producer is None or s.rank != 2 or not isinstance(s.shape[1], int) or not 0 < s.shape[1] <= MAX_WIDTH:
        return None
    t = _Terms(int(s.shape[1]))
    if not _collect(graph, s, t, s.shape[0]) or not (t.direct or t.gather or t.adds):
        return None
    t.nodes += nodes
    return t, act


def _split_concat_head(head) -> tuple | None:
    """(terms, activation) of a head layer whose input is a Concat of 2-D parts (read in place, each with its rows
    of the weight), else None."""
    x = head.inputs[0]
    q = x.producer
    if q is None or q.op_type != "Concat" or int(q.op.axis) not in (1, -1) or len(q.inputs) < 2 \
            or head.inputs[1].const is None \
            or not all(u is not None and u.rank == 2 and isinstance(u.shape[1], int) for u in q.inputs):
        return None
    info = head.op.__dict__["packed_gemm"]
    K, N = info["K"], info["N"]
    if sum(int(u.shape[1]) for u in q.inputs) != K:
        return None
    t = _Terms(N)
    w = unpack_panels(np.asarray(head.inputs[1].const, np.float32).reshape(-1), K, N)
    k0 = 0
    for u in q.inputs:
        k1 = k0 + int(u.shape[1])
        if k1 > k0:
            t.add_direct(u, w[k0:k1])
        k0 = k1
    b = head.input(2) if info["bias"] else None
    if b is not None:
        if b.const is None:
            return None
        t.bias += np.asarray(b.const, np.float64).reshape(-1)[:N]
    return t, _act(head.op)


class FuseRowMLP(Pass):
    name = "fuse-row-mlp"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n in graph.nodes and _packed_layer(n):
                changed |= self._fuse(graph, n)
        return changed

    def _fuse(self, graph: Graph, head) -> bool:
        a = head.inputs[0]
        rows = a.shape[0]
        if isinstance(rows, int) and 1 < rows < MIN_ROWS:
            return False
        if a.producer is not None and _packed_layer(a.producer) and _single_internal_use(graph, a):
            return False  # not the head of its chain
        chain = [head]
        while True:
            y = chain[-1].outputs[0]
            if not _single_internal_use(graph, y):
                break
            c, i = y.uses[0]
            if i != 0 or not _packed_layer(c) or c.op.__dict__["packed_gemm"]["K"] != chain[-1].op.__dict__[
                    "packed_gemm"]["N"]:
                break
            chain.append(c)
        tail = chain[-1]
        ln = self._layer_norm(graph, tail)
        first = _first_layer(graph, head)
        if first is None:
            first = _split_concat_head(head)
            if first is not None:  # the head itself becomes the first layer, its input's parts read in place
                first[0].nodes.append(head)
                chain = chain[1:]
        if len(chain) + (ln is not None) + (first is not None) < 2:
            return False
        spec = {"layers": [], "ln_eps": None, "whats": []}
        inputs: list = []
        if first is not None:
            t, act = first
            xs = list(t.direct.values())
            spec.update(direct=len(xs), gather=len(t.gather), rows=len(t.rows), adds=len(t.adds),
                        ks=[int(x.shape[1]) for x, _ in xs])
            inputs += [x for x, _ in xs] + [g[0] for g in t.gather] + [g[1] for g in t.gather] + t.rows + t.adds
            inputs += [_const(graph, f"{head.name}_rowmlp_w{k}", gemm_pack.pack_panels(np.ascontiguousarray(
                w.astype(np.float32)))) for k, (_, w) in enumerate(xs)]
            b0 = gemm_pack.padded_bias(t.bias.astype(np.float32), t.H)
            inputs.append(_const(graph, f"{head.name}_rowmlp_b0", b0))
            spec["whats"] = [g[2] for g in t.gather]
            spec["layers"].append({"N": t.H, "act": act})
            old = list(t.nodes)
        else:
            spec.update(direct=1, gather=0, rows=0, ks=[int(a.shape[1])])
            old = []
        for k, n in enumerate(chain):
            info = n.op.__dict__["packed_gemm"]
            if first is None and k == 0:
                inputs = [n.inputs[0], n.inputs[1]]
            else:
                inputs.append(n.inputs[1])
            b = n.input(2) if info["bias"] else None
            if b is None:
                zero = gemm_pack.padded_bias(np.zeros(1, np.float32), info["N"])
                b = _const(graph, f"{n.name}_rowmlp_zero_bias", zero)
            inputs.append(b)
            spec["layers"].append({"N": info["N"], "act": _act(n.op)})
        old += chain
        out = tail.outputs[0]
        if ln is not None:
            W = spec["layers"][-1]["N"]
            scale = ln.inputs[1]
            bias = ln.input(2) if ln.input(2) is not None else _const(graph, f"{ln.name}_rowmlp_zero",
                                                                      np.zeros(W, np.float32))
            inputs += [scale, bias]
            spec["ln_eps"] = float(ln.op.epsilon)
            old.append(ln)
            out = ln.outputs[0]
        # narrow layers (at most NARROW columns, e.g. a classifier's last) also as rows of W^T (N x K, K padded to 8):
        # the batch-of-one path reads them with dot products instead of 8- or 16-wide panels that are mostly zeros
        wt = []
        for k, n in enumerate(chain):
            info = n.op.__dict__["packed_gemm"]
            li = k + (first is not None)
            if info["N"] <= NARROW and n.inputs[1].const is not None:
                K, N = info["K"], info["N"]
                w = unpack_panels(np.asarray(n.inputs[1].const, np.float32).reshape(-1), K, N)
                t = np.zeros((N, (K + 7) // 8 * 8), np.float32)
                t[:, :K] = w.T
                inputs.append(_const(graph, f"{n.name}_rowmlp_wt", t))
                wt.append(li)
        spec["wt"] = wt
        # the fused node goes where its last part was: after every input's producer, before every reader
        order = {id(n): i for i, n in enumerate(graph.nodes)}
        last = max(old, key=lambda n: order[id(n)])
        index = order[id(last)] - sum(1 for n in old if order[id(n)] < order[id(last)])
        for n in old:
            graph.remove_node(n)
        from ....ops.gnn import RowMLP
        graph.add_node(RowMLP(spec=spec), inputs, [out], head.name + "_rowmlp", index=index)
        return True

    @staticmethod
    def _layer_norm(graph: Graph, last):
        y = last.outputs[0]
        if not _single_internal_use(graph, y):
            return None
        c, i = y.uses[0]
        if c.op_type != "LayerNormalization" or i != 0 or c.op.axis_of(c) != 1:
            return None
        if any(v is not None and v.uses for v in c.outputs[1:]) or any(graph.is_output(v) for v in c.outputs[1:]
                                                                      if v is not None):
            return None
        W = last.op.__dict__["packed_gemm"]["N"]
        for k in (1, 2):
            v = c.input(k)
            if v is None and k == 2:
                continue
            if v is None or v.const is None or v.dtype is not DType.FLOAT or int(np.asarray(v.const).size) != W \
                    or tuple(v.shape) not in ((W,), (1, W)):
                return None
        if c.outputs[0].dtype is not DType.FLOAT:
            return None
        return c
