"""Passes for the graphs that exporters write for transformers (tests/test_transformer_paths.py).

- ``FuseGelu``: the elementwise chains of GELU, x * 0.5 * (1 + erf(x / sqrt 2)) and the tanh approximation
  0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))), in the orders torch.onnx.export writes them,
  become one Gelu node (approximate "none" / "tanh").
- ``FuseAttention``: MatMul(Q, K^T), scale, Where / Add masks, Softmax and MatMul(., V) of every head, with the
  Transposes around them, become one PysofieAttention node (runtime/pysofie_attn.h).
- ``FuseRMSNorm``: the elementwise chain of an RMS norm becomes one RMSNormalization node.
- ``FuseDenseEpilogue``: a dense layer run by the packed matrix kernel (a MatMul of any rank, or a Gemm, by a
  constant matrix: passes/gemm_pack.py) takes the Add of a constant bias over its last axis, then a following
  activation (Relu, LeakyRelu, Sigmoid, Tanh, Gelu), into the kernel's store (``fused_act``); both nodes go.
"""
from __future__ import annotations

import math

import numpy as np

from ....ir import Graph, Value
from ....passes.manager import Pass
from ....passes.rewrites import (_clone_op, _const, _float, _fuse_activation, _other, _replace, _single_internal_use,
                                 _sole_user)

DENSE_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu")


def _scalar(v: Value):
    """The value of a constant with one element, else None."""
    if v is None or v.const is None or np.asarray(v.const).size != 1:
        return None
    return float(np.asarray(v.const).reshape(-1)[0])



def _near(x, target, tol=1e-5):
    return x is not None and abs(x - target) <= tol * max(1.0, abs(target))


class FuseGelu(Pass):
    name = "fuse-gelu"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n not in graph.nodes:
                continue
            if n.op_type == "Erf":
                changed |= self._erf(graph, n)
            elif n.op_type == "Tanh":
                changed |= self._tanh(graph, n)
        return changed

    def _tail(self, graph, x: Value, t: Value):
        """After erf / tanh output t: Add(t, 1), then Mul by x and by 0.5 in either order. Returns (nodes, output)
        or None."""
        add = _sole_user(graph, t, "Add")
        if add is None or not _near(_scalar(_other(add, t)), 1.0):
            return None
        s = add.outputs[0]
        m1 = _sole_user(graph, s, "Mul")
        if m1 is None:
            return None
        o = _other(m1, s)
        if o is x:  # x * (1 + t), then * 0.5
            m2 = _sole_user(graph, m1.outputs[0], "Mul")
            if m2 is None or not _near(_scalar(_other(m2, m1.outputs[0])), 0.5):
                return None
            return [add, m1, m2], m2.outputs[0]
        if _near(_scalar(o), 0.5):  # (1 + t) * 0.5, then * x
            m2 = _sole_user(graph, m1.outputs[0], "Mul")
            if m2 is None or _other(m2, m1.outputs[0]) is not x:
                return None
            return [add, m1, m2], m2.outputs[0]
        if o is not None and o.producer is not None and o.producer.op_type == "Mul":  # (0.5 * x) * (1 + t)
            h = o.producer
            if _other(h, x) is not None and _near(_scalar(_other(h, x)), 0.5) and _single_internal_use(graph, o):
                return [h, add, m1], m1.outputs[0]
        return None

    def _erf(self, graph, erf) -> bool:
        u = erf.inputs[0]
        scale = u.producer if u is not None else None
        if scale is None or not _single_internal_use(graph, u):
            return False
        if scale.op_type == "Div" and _near(_scalar(scale.inputs[1]), math.sqrt(2.0)):
            x = scale.inputs[0]
        elif scale.op_type == "Mul":
            x = next((a for a in scale.inputs if a is not None and _near(_scalar(_other(scale, a)),
                                                                         1 / math.sqrt(2.0))), None)
        else:
            return False
        if x is None or not _float(x):
            return False
        tail = self._tail(graph, x, erf.outputs[0])
        if tail is None:
            return False
        return self._gelu(graph, [scale, erf] + tail[0], x, tail[1], "none")

    def _tanh(self, graph, tanh) -> bool:
        # u = c * (x + 0.044715 * x^3), x^3 as x * (x * x) or Pow(x, 3)
        u = tanh.inputs[0]
        mc = u.producer if u is not None else None
        if mc is None or mc.op_type != "Mul" or not _single_internal_use(graph, u):
            return False
        inner = next((a for a in mc.inputs if a is not None and _near(_scalar(_other(mc, a)),
                                                                      math.sqrt(2 / math.pi), 1e-4)), None)
        add = inner.producer if inner is not None else None
        if add is None or add.op_type != "Add" or not _single_internal_use(graph, inner):
            return False
        for k in (0, 1):
            x, cube = add.inputs[k], add.inputs[1 - k]
            mk = cube.producer if cube is not None else None
            if mk is None or mk.op_type != "Mul" or not _single_internal_use(graph, cube):
                continue
            x3 = next((a for a in mk.inputs if a is not None and _near(_scalar(_other(mk, a)), 0.044715, 1e-4)),
                      None)
            chain = self._cube(graph, x, x3)
            if chain is None:
                continue
            tail = self._tail(graph, x, tanh.outputs[0])
            if tail is None:
                return False
            return self._gelu(graph, chain + [mk, add, mc, tanh] + tail[0], x, tail[1], "tanh")
        return False

    @staticmethod
    def _cube(graph, x: Value, x3: Value):
        """Nodes computing x3 = x^3 from x alone (Pow(x, 3), x * (x * x), (x * x) * x), or None."""
        p = x3.producer if x3 is not None else None
        if p is None or not _single_internal_use(graph, x3):
            return None
        if p.op_type == "Pow" and p.inputs[0] is x and _near(_scalar(p.inputs[1]), 3.0):
            return [p]
        if p.op_type != "Mul":
            return None
        a, b = p.inputs[0], p.inputs[1]
        sq = b if a is x else a if b is x else None
        q = sq.producer if sq is not None else None
        if q is not None and q.op_type == "Mul" and q.inputs[0] is x and q.inputs[1] is x \
                and _single_internal_use(graph, sq):
            return [q, p]
        return None

    @staticmethod
    def _gelu(graph, nodes, x: Value, out: Value, approximate: str) -> bool:
        from ....ops.elementwise import Gelu
        if out.dtype is not x.dtype or tuple(out.shape) != tuple(x.shape):
            return False
        op = Gelu(approximate=approximate)
        op.opset = 20
        _replace(graph, nodes, op, [x], out, nodes[-1].name)
        return True


class FuseDenseEpilogue(Pass):
    name = "fuse-dense-epilogue"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n not in graph.nodes or n.op_type not in ("MatMul", "Gemm"):
                continue
            info = n.op.__dict__.get("packed_gemm")
            if info is None or len(n.outputs) != 1 or n.op.__dict__.get("fused_act") is not None:
                continue
            y = n.outputs[0]
            if n.op_type == "MatMul" and not info["bias"]:
                changed |= self._bias(graph, n, info, y)
            elif n.op_type == "Gemm":
                changed |= self._act(graph, n, y, ("Gelu",))  # the others: passes.fusion.FuseActivation
        # activations after the bias, so that both go into the store
        for n in list(graph.nodes):
            if n in graph.nodes and n.op_type == "MatMul" and n.op.__dict__.get("packed_gemm") is not None \
                    and n.op.__dict__.get("fused_act") is None:
                changed |= self._act(graph, n, n.outputs[0], DENSE_ACTIVATIONS)
        return changed

    @staticmethod
    def _bias(graph, mm, info, y: Value) -> bool:
        from .gemm_pack import padded_bias
        add = _sole_user(graph, y, "Add")
        if add is None or y.rank < 1 or not _float(y):
            return False
        c = _other(add, y)
        N = info["N"]
        if c is None or c.const is None or c.dtype is not y.dtype or c.rank > y.rank:
            return False
        if any(int(d) != 1 for d in c.shape[:-1]) or (c.rank and int(c.shape[-1]) not in (1, N)):
            return False
        if tuple(add.outputs[0].shape) != tuple(y.shape):
            return False
        vec = np.broadcast_to(np.asarray(c.const, np.float32).reshape(-1), (N,))
        op = _clone_op(mm.op)
        op.__dict__["packed_gemm"] = dict(info, bias=True)
        bias = _const(graph, c.name + "_bias", padded_bias(vec, N))
        _replace(graph, [mm, add], op, [mm.inputs[0], mm.inputs[1], bias], add.outputs[0], mm.name)
        return True

    @staticmethod
    def _act(graph, n, y: Value, kinds) -> bool:
        if not _single_internal_use(graph, y) or not _float(y):
            return False
        act = y.uses[0][0] if isinstance(y.uses[0], tuple) else y.uses[0]
        if act.op_type not in kinds or act.outputs[0].dtype is not y.dtype or act.inputs[0] is not y:
            return False
        _fuse_activation(graph, n, act)
        return True


# -- attention ----------------------------------------------------------------------------------------------
def _attention_op_class():
    from ....ops.base import Op

    class FusedAttention(Op):
        """Y = softmax(masks(scale * Q K^T)) V over the last two axes of each (batch, head), created by
        FuseAttention. Layouts: "bshd" (batch, sequence, head, element: the tensor before an exporter's
        Transpose) or "bhsd". Inputs: Q, K, V, additive mask (float, broadcast to (B, H, S, T)) or none, Where
        condition (bool, broadcast likewise; true: the score becomes `fill`) or none. With `heads` set, Q, K and
        V are (B, S, W) tensors (one fused projection's output, or Q another such tensor) read from element q_off /
        k_off / v_off of each row: `heads` heads of dk (Q, K) and dv (V) elements. causal = c >= 0: the keys j > i + c
        of query row i are masked (a constant Where condition with fill -inf as the last mask, not passed: the
        kernel skips those keys)."""
        op_type = "PysofieAttention"
        domain = "pysofie"
        ATTRS = {"q_layout": "bhsd", "k_layout": "bhsd", "v_layout": "bhsd", "y_layout": "bhsd", "scale": 1.0,
                 "fill": 0.0, "where_first": 1, "causal": -1, "heads": 0, "dk": 0, "dv": 0, "q_off": 0, "k_off": 0, "v_off": 0}
        INPUTS = ("Q", "K", "V", "mask", "cond")
        OUTPUTS = ("Y",)

        def dims(self, node) -> dict:
            q, k, v = (node.inputs[i].shape for i in range(3))
            if self.heads:  # Q, K, V are slices of the last axis of (B, S, W) tensors ("bshd" rows of W)
                return dict(B=q[0], H=self.heads, S=q[1], T=k[1], D=self.dk, Dv=self.dv)
            B, S, H, D = (q[0], q[1], q[2], q[3]) if self.q_layout == "bshd" else (q[0], q[2], q[1], q[3])
            T = k[1] if self.k_layout == "bshd" else k[2]
            Dv = v[3]
            return dict(B=B, H=H, S=S, T=T, D=D, Dv=Dv)

        def infer(self, node):
            d = self.dims(node)
            shape = (d["B"], d["S"], d["H"], d["Dv"]) if self.y_layout == "bshd" else \
                (d["B"], d["H"], d["S"], d["Dv"])
            return [(node.inputs[0].dtype, shape)]

        def folds(self, node) -> bool:
            return False

    return FusedAttention


_ATTN_CLS = None


def attention_op(**attrs):
    global _ATTN_CLS
    if _ATTN_CLS is None:
        _ATTN_CLS = _attention_op_class()
    return _ATTN_CLS(**attrs)


def _only_user(graph: Graph, v: Value):
    if v is None or not _single_internal_use(graph, v):
        return None
    return v.uses[0][0] if isinstance(v.uses[0], tuple) else v.uses[0]


def _is_f32(v: Value) -> bool:
    from ....ir import DType
    return v is not None and v.dtype is DType.FLOAT


def _broadcasts(v: Value, full) -> bool:
    """v's shape broadcasts (right-aligned, dims 1 or equal) to the 4-D `full` without growing it."""
    if v.rank > 4:
        return False
    shape = [1] * (4 - v.rank) + list(v.shape)
    return all((isinstance(a, int) and a == 1) or str(a) == str(b) for a, b in zip(shape, full))


def _causal_offset(cond: Value, fill: float, full, last: bool) -> int:
    """c >= 0 when the Where condition `cond` is a constant that hides exactly the keys j > i + c of every query
    row i (the same for every batch and head) with fill -inf, as the last mask (`last`: nothing is added after
    it, so those scores stay -inf and their probabilities are exactly 0); else -1."""
    if cond is None or cond.const is None or not last or not (math.isinf(fill) and fill < 0):
        return -1
    S, T = full[2], full[3]
    c = np.asarray(cond.const).astype(bool)
    c = c.reshape((1,) * (4 - c.ndim) + c.shape)
    if c.shape[2] != S or c.shape[3] != T:
        return -1
    if any(not np.array_equal(c[b, h], c[0, 0]) for b in range(c.shape[0]) for h in range(c.shape[1])):
        return -1
    off = int(np.count_nonzero(~c[0, 0, 0])) - 1  # row 0 keeps the keys 0..off
    if off < 0 or off >= T - 1:
        return -1  # no key kept in row 0, or nothing hidden
    i, j = np.indices((S, T))
    return off if np.array_equal(c[0, 0], j > i + off) else -1


class FuseAttention(Pass):
    """MatMul(Q, K^T) [* or / scalar] [Where(cond, fill, s)] [+ mask] -> Softmax(last axis) -> MatMul(., V), as
    exporters write attention (4-D (batch, head, sequence, element) tensors), becomes one PysofieAttention node
    run by runtime/pysofie_attn.h; Transposes that make the heads axis (perm 0,2,1,3 on Q, V and the output,
    0,2,3,1 on K) are folded into its strides when nothing else reads their outputs; so are a fused q/k/v
    projection's Split (last axis) and the head Reshapes after it (the kernel reads the slices in place). A constant
    causal condition becomes the node's `causal` offset (the kernel skips the keys it hides)."""
    name = "fuse-attention"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n in graph.nodes and n.op_type == "Softmax":
                changed |= self._fuse(graph, n)
        return changed

    @staticmethod
    def _perm(node, perm) -> bool:
        return node is not None and node.op_type == "Transpose" and list(node.op.perm or []) == list(perm)

    def _fuse(self, graph: Graph, sm) -> bool:
        x = sm.inputs[0]
        if not _is_f32(x) or x.rank != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
            return False
        axis, _ = sm.op.axis_for(sm)
        if axis != 3:
            return False
        full = list(x.shape)
        removed, add, cond, fill, scale, order = [sm], None, None, 0.0, 1.0, []
        v = x
        while True:  # back from the softmax's input to the product
            p = v.producer
            if p is None or not _single_internal_use(graph, v) or tuple(p.outputs[0].shape) != tuple(full):
                return False
            if p.op_type == "MatMul":
                break
            if p.op_type == "Add" and add is None and not order[-1:] == ["scale"]:
                k = next((k for k in (0, 1) if p.inputs[k] is not v and tuple(p.inputs[1 - k].shape) == tuple(full)
                          and p.inputs[1 - k].producer is not None), None)
                if k is None or not _is_f32(p.inputs[k]) or not _broadcasts(p.inputs[k], full):
                    return False
                add, v = p.inputs[k], p.inputs[1 - k]
                order.append("add")
            elif p.op_type == "Where" and cond is None and not order[-1:] == ["scale"]:
                c, f, s = p.inputs
                from ....ir import DType
                if c is None or c.dtype is not DType.BOOL or not _broadcasts(c, full) or _scalar(f) is None \
                        or tuple(s.shape) != tuple(full):
                    return False
                cond, fill, v = c, _scalar(f), s
                order.append("where")
            elif p.op_type in ("Div", "Mul") and not order[-1:] == ["scale"] and "scale" not in order:
                k = 1 if p.op_type == "Div" else next((k for k in (0, 1) if _scalar(p.inputs[k]) is not None), None)
                if k is None or _scalar(p.inputs[k]) is None or _scalar(p.inputs[k]) == 0.0:
                    return False
                c = _scalar(p.inputs[k])
                scale, v = (1.0 / c if p.op_type == "Div" else c), p.inputs[1 - k]
                order.append("scale")
            else:
                return False
            removed.append(p)
        if order and "scale" in order and order[-1] != "scale":
            return False  # the scale must come right after the product
        mm1 = v.producer
        qh, kt = mm1.inputs
        mm2 = _only_user(graph, sm.outputs[0])
        if mm2 is None or mm2.op_type != "MatMul" or mm2.inputs[0] is not sm.outputs[0]:
            return False
        vh = mm2.inputs[1]
        if not all(_is_f32(t) and t.rank == 4 for t in (qh, kt, vh)):
            return False
        B, H, S, D = qh.shape
        if str(kt.shape[0]) != str(B) or str(vh.shape[0]) != str(B) or kt.shape[1] != H or vh.shape[1] != H \
                or kt.shape[2] != D or str(vh.shape[2]) != str(kt.shape[3]) or not isinstance(H, int) \
                or not isinstance(D, int) or not isinstance(vh.shape[3], int):
            return False
        removed += [mm1, mm2]
        attrs = dict(scale=float(scale), fill=float(fill), where_first=int("where" in order and (
            "add" not in order or order.index("where") > order.index("add"))))  # order runs backwards
        attrs["causal"] = _causal_offset(cond, fill, full, add is None or attrs["where_first"] == 0)
        if attrs["causal"] >= 0:
            cond = None  # the kernel skips the keys it hides instead of reading it
        srcs = []
        for t, name, perm in ((qh, "q", (0, 2, 1, 3)), (kt, "k", (0, 2, 3, 1)), (vh, "v", (0, 2, 1, 3))):
            p = t.producer
            if self._perm(p, perm) and _single_internal_use(graph, t):
                srcs.append(p.inputs[0])
                removed.append(p)
                attrs[name + "_layout"] = "bshd"
            elif name == "k" and self._perm(p, (0, 1, 3, 2)) and _single_internal_use(graph, t):
                srcs.append(p.inputs[0])
                removed.append(p)
                attrs["k_layout"] = "bhsd"
            elif name == "k":
                return False  # K^T given as such: its elements are not contiguous along the head size
            else:
                srcs.append(t)
                attrs[name + "_layout"] = "bhsd"
        if all(attrs[n + "_layout"] == "bshd" for n in "qkv"):
            self._fold_split(graph, srcs, removed, attrs, H, D, vh.shape[3])
        out = mm2.outputs[0]
        tr = _only_user(graph, out)
        if self._perm(tr, (0, 2, 1, 3)):
            removed.append(tr)
            out = tr.outputs[0]
            attrs["y_layout"] = "bshd"
        else:
            attrs["y_layout"] = "bhsd"
        _replace_last(graph, removed, attention_op(**attrs), srcs + [add, cond], out, sm.name)
        return True


    @staticmethod
    def _fold_split(graph: Graph, srcs: list, removed: list, attrs: dict, H, D, Dv) -> None:
        """Q, K and V (B, S, H, d) as Reshapes of the outputs of one Split of a (B, S, W) tensor along its last
        axis (a fused q/k/v projection), nothing else reading them: the attention reads the slices in place
        (offsets into rows of W), the Split and Reshapes go."""
        reshapes = [t.producer for t in srcs]
        if any(r is None or r.op_type != "Reshape" for r in reshapes):
            return
        parts = [r.inputs[0] for r in reshapes]
        sp = parts[0].producer
        if sp is None or sp.op_type != "Split" or any(p.producer is not sp for p in parts) \
                or len({id(p) for p in parts}) != 3 or len(sp.outputs) != 3:
            return
        x = sp.inputs[0]
        if not _is_f32(x) or x.rank != 3 or not all(isinstance(o.shape[2], int) for o in sp.outputs) \
                or not isinstance(x.shape[2], int):
            return
        if any(not _single_internal_use(graph, t) for t in srcs + parts):
            return
        for o in sp.outputs:  # a split of the last axis only
            if o.rank != 3 or str(o.shape[0]) != str(x.shape[0]) or str(o.shape[1]) != str(x.shape[1]):
                return
        offs, acc = {}, 0
        for o in sp.outputs:
            offs[id(o)] = acc
            acc += o.shape[2]
        if acc != x.shape[2]:
            return
        for t, p, d in zip(srcs, parts, (D, D, Dv)):
            if t.rank != 4 or str(t.shape[0]) != str(x.shape[0]) or str(t.shape[1]) != str(x.shape[1]) \
                    or t.shape[2] != H or t.shape[3] != d or p.shape[2] != H * d:
                return
        for n, p in zip("qkv", parts):
            attrs[n + "_off"] = offs[id(p)]
        attrs.update(heads=int(H), dk=int(D), dv=int(Dv))
        removed += reshapes + [sp]
        srcs[:] = [x, x, x]


def _replace_last(graph: Graph, removed: list, op, inputs: list, out: Value, name: str) -> None:
    """Remove `removed` and put one node computing `out` where the last of them was (after every producer of
    their inputs)."""
    last = max(graph.nodes.index(n) for n in removed)
    after = graph.nodes[last + 1] if last + 1 < len(graph.nodes) else None
    for n in removed:
        graph.remove_node(n)
    index = graph.nodes.index(after) if after is not None else None
    graph.add_node(op, inputs, [out], name, index=index)


class FuseRMSNorm(Pass):
    """x * 1 / sqrt(mean(x^2 over the last axis) + eps) [* w], as exporters write T5's / LLaMA's RMS norm
    (Pow(x, 2) or x * x, ReduceMean keepdims, Add eps, Sqrt, then Div(1, .) or Reciprocal and Mul by x, or Div(x,
    .)), then an optional Mul by a constant weight over the last axis, becomes one RMSNormalization node (its
    vectorized row kernel: backends/cpp/ops/transformer.py)."""
    name = "fuse-rmsnorm"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n in graph.nodes and n.op_type == "ReduceMean":
                changed |= self._fuse(graph, n)
        return changed

    @staticmethod
    def _axes(rm):
        axes = rm.op.attrs.get("axes")
        if axes is None and len(rm.inputs) > 1 and rm.inputs[1] is not None and rm.inputs[1].const is not None:
            axes = [int(a) for a in np.asarray(rm.inputs[1].const).reshape(-1)]
        return axes

    def _fuse(self, graph: Graph, rm) -> bool:
        sq = rm.inputs[0]
        p = sq.producer if sq is not None else None
        if p is None or not _single_internal_use(graph, sq) or not _is_f32(sq) or sq.rank < 1:
            return False
        if p.op_type == "Pow" and _near(_scalar(p.inputs[1]), 2.0):
            x = p.inputs[0]
        elif p.op_type == "Mul" and p.inputs[0] is p.inputs[1]:
            x = p.inputs[0]
        else:
            return False
        r = x.rank
        axes = self._axes(rm)
        if axes is None or [a % r for a in axes] != [r - 1] or int(rm.op.attrs.get("keepdims", 1)) != 1 \
                or not isinstance(x.shape[-1], int):
            return False
        add = _sole_user(graph, rm.outputs[0], "Add")
        eps = _scalar(_other(add, rm.outputs[0])) if add is not None else None
        if eps is None or eps < 0:
            return False
        sqrt = _sole_user(graph, add.outputs[0], "Sqrt")
        if sqrt is None:
            return False
        s = sqrt.outputs[0]
        nxt = _only_user(graph, s)
        removed = [p, rm, add, sqrt]
        if nxt is not None and nxt.op_type == "Div" and nxt.inputs[1] is s and nxt.inputs[0] is x:
            removed.append(nxt)
            y = nxt.outputs[0]
        else:
            if nxt is not None and nxt.op_type == "Div" and nxt.inputs[1] is s and _near(_scalar(nxt.inputs[0]), 1.0):
                pass
            elif nxt is None or nxt.op_type != "Reciprocal":
                return False
            removed.append(nxt)
            mul = _sole_user(graph, nxt.outputs[0], "Mul")
            if mul is None or _other(mul, nxt.outputs[0]) is not x:
                return False
            removed.append(mul)
            y = mul.outputs[0]
        if tuple(y.shape) != tuple(x.shape):
            return False
        N = int(x.shape[-1])
        weight = None
        wm = _sole_user(graph, y, "Mul")
        if wm is not None:
            c = _other(wm, y)
            if c is not None and c.const is not None and _is_f32(c) and c.rank <= r \
                    and all(int(d) == 1 for d in c.shape[:-1]) and c.rank >= 1 and int(c.shape[-1]) == N \
                    and tuple(wm.outputs[0].shape) == tuple(x.shape):
                weight = _const(graph, c.name + "_rms", np.asarray(c.const, np.float32).reshape(N))
                removed.append(wm)
                y = wm.outputs[0]
        if weight is None:
            weight = _const(graph, rm.name + "_rms_ones", np.ones(N, np.float32))
        from ....ops.transformer import RMSNormalization
        op = RMSNormalization(axis=-1, epsilon=float(eps))
        op.opset = 23
        _replace_last(graph, removed, op, [x, weight], y, rm.name)
        return True
