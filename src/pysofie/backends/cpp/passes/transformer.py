"""Passes for the graphs that exporters write for transformers (tests/test_transformer_paths.py).

- ``FuseGelu``: the elementwise chains of GELU, x * 0.5 * (1 + erf(x / sqrt 2)) and the tanh approximation
  0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3))), in the orders torch.onnx.export writes them,
  become one Gelu node (approximate "none" / "tanh").
- ``FuseDenseEpilogue``: a dense layer run by the packed matrix kernel (a MatMul of any rank, or a Gemm, by a
  constant matrix: passes/gemm_pack.py) takes the Add of a constant bias over its last axis, then a following
  activation (Relu, LeakyRelu, Sigmoid, Tanh, Gelu), into the kernel's store (``fused_act``); both nodes go.
"""
from __future__ import annotations

import math

import numpy as np

from ....ir import Graph, Value
from ....passes.manager import Pass
from ....passes.rewrites import _clone_op, _const, _float, _replace, _single_internal_use

DENSE_ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh", "Gelu")


def _scalar(v: Value):
    """The value of a constant with one element, else None."""
    if v is None or v.const is None or np.asarray(v.const).size != 1:
        return None
    return float(np.asarray(v.const).reshape(-1)[0])


def _sole_user(graph: Graph, v: Value, op_type: str):
    """The only node reading v, when it is of op_type and v is no graph output."""
    if not _single_internal_use(graph, v):
        return None
    n = v.uses[0][0] if isinstance(v.uses[0], tuple) else v.uses[0]
    return n if n.op_type == op_type else None


def _other(node, v: Value):
    """The operand of a two-input node that is not v (None when v is not one of them or both are v)."""
    a, b = node.inputs[0], node.inputs[1]
    if a is v and b is not v:
        return b
    if b is v and a is not v:
        return a
    return None


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
        if act.op_type == "Gelu":
            kind = ("GeluTanh" if act.op.approximate == "tanh" else "Gelu", None)
        else:
            kind = (act.op_type, float(act.op.alpha) if act.op_type == "LeakyRelu" else None)
        op = _clone_op(n.op)
        op.__dict__["fused_act"] = kind
        _replace(graph, [n, act], op, list(n.inputs), act.outputs[0], n.name)
        return True
