"""The passes of the CUDA target: the target-neutral rewrites, then ``FuseMatMulEpilogue`` (the CUDA kernels
read weights in their ONNX layout; bias and activation are applied in the matrix products' epilogues).

- ``FuseMatMulEpilogue``: a MatMul whose B is one matrix for the whole batch (the product the generator folds
  into one cuBLAS call), followed by the Add of a constant bias along its last axis, takes the bias as a third
  input; such a MatMul or a Gemm followed by an activation (Relu, LeakyRelu, Sigmoid, Tanh, Gelu) takes it as
  ``fused_act``. ops/gemm.py applies them in a cuBLASLt epilogue where its table ``EPILOGUES`` has one, else in
  one kernel after the cuBLAS product.
"""
from __future__ import annotations

import numpy as np

from ...ir import Graph
from ...ir.shapes import numel
from ...passes.manager import Pass
from ...passes.rewrites import ACTIVATIONS, _clone_op, _const, _float, _fuse_activation, _other, _replace, _sole_user


def _one_b(n) -> bool:
    """A float MatMul with one B matrix (rank >= 2, its batch axes all 1) for every row of A (a vector or a
    batch of matrices)."""
    if n.op_type != "MatMul" or len(n.outputs) != 1 or len(n.inputs) < 2:
        return False
    a, b = n.inputs[0], n.inputs[1]
    if a is None or b is None or a.rank < 1 or b.rank < 2 or numel(list(b.shape[:-2])) != 1:
        return False
    return _float(n.outputs[0])


class FuseMatMulEpilogue(Pass):
    name = "fuse-matmul-epilogue"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for mm in list(graph.nodes):
            if mm in graph.nodes and _one_b(mm) and len(mm.inputs) == 2 and mm.op.__dict__.get("fused_act") is None:
                changed |= self._bias(graph, mm)
        for n in list(graph.nodes):
            if n not in graph.nodes:
                continue
            if n.op_type == "Gemm" and n.op.__dict__.get("fused_act") is None and len(n.outputs) == 1:
                changed |= self._act(graph, n, ("Gelu",))  # the others: passes.rewrites.FuseActivation
            elif _one_b(n) and n.op.__dict__.get("fused_act") is None:
                changed |= self._act(graph, n, ACTIVATIONS + ("Gelu",))
        return changed

    @staticmethod
    def _bias(graph: Graph, mm) -> bool:
        y = mm.outputs[0]
        add = _sole_user(graph, y, "Add")
        if add is None or len(add.inputs) != 2:
            return False
        c = _other(add, y)
        if c is None or c.const is None or c.dtype is not y.dtype or c.rank > y.rank or c.rank < 1:
            return False
        N = y.shape[-1]
        if not isinstance(N, int) or int(c.shape[-1]) != N or any(int(d) != 1 for d in c.shape[:-1]):
            return False
        if tuple(add.outputs[0].shape) != tuple(y.shape) or add.outputs[0].dtype is not y.dtype:
            return False
        bias = _const(graph, c.name + "_bias", np.asarray(c.const).reshape(N))
        _replace(graph, [mm, add], _clone_op(mm.op), [mm.inputs[0], mm.inputs[1], bias], add.outputs[0], mm.name)
        return True

    @staticmethod
    def _act(graph: Graph, n, kinds) -> bool:
        y = n.outputs[0]
        act = _sole_user(graph, y)
        if act is None or act.op_type not in kinds or act.inputs[0] is not y or not _float(y):
            return False
        if act.outputs[0].dtype is not y.dtype:
            return False
        _fuse_activation(graph, n, act)
        return True


def optimization_passes() -> list:
    from ...passes.rewrites import neutral_passes
    return neutral_passes() + [FuseMatMulEpilogue()]
