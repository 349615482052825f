"""Passes that choose the C++ back end's kernels, after the target-neutral rewrites of passes/rewrites.py. Each
has a test against the unoptimized path (tests/test_fusion.py).

- ``PackConvWeights``: Conv weights packed for the indirect convolution kernel of runtime/pysofie_conv.h (no
  im2col; any stride, dilation, group, 1-3 spatial dims); pointwise stride-1 convolutions stay a BLAS call.
- ``FuseResidualAdd``: Conv + Add of a same-shaped tensor (+ activation), as in residual networks: added (then
  activated) by the Conv's output stage.
- ``PretransposeSmallGemm``: a Gemm with few rows (M <= SMALL_M) and a constant transposed B gets B transposed
  at generation time, so that the generated small-matrix kernel streams B row by row.
"""
from __future__ import annotations

import numpy as np

from ....ir import Graph
from ....passes.manager import Pass
from ....passes.rewrites import (ACTIVATIONS, FoldBatchNorm, FuseActivation, FuseBiasAdd, MatMulAddToGemm,
                                 _adds_after, _clone_op, _const, _float, _single_internal_use)
from ..ops.gemm import SMALL_M  # Gemm row counts up to this use the generated small-matrix kernel


class FuseResidualAdd(Pass):
    """Conv (weights packed for the indirect or the Winograd kernel, no fused activation) whose output only feeds
    an Add with another tensor of the same shape (a residual connection), optionally followed by Relu / LeakyRelu /
    Sigmoid / Tanh: the Conv reads that tensor as a 4th input (``residual``) and adds it, then the activation, as
    it writes its output. The fused node takes the Add's place in the node order (the residual may be computed
    after the Conv)."""
    name = "fuse-residual-add"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for add, y, res, conv in _adds_after(graph, "Conv"):
            op0 = conv.op.__dict__
            packed = op0.get("packed")
            if not ((packed is not None and not packed.get("rows")) or op0.get("winograd") is not None):
                continue
            if op0.get("fused_act") is not None or op0.get("residual") or not _single_internal_use(graph, y):
                continue
            if res is y or res.const is not None or res.dtype is not y.dtype or tuple(res.shape) != tuple(y.shape):
                continue
            if len(conv.outputs) != 1 or tuple(add.outputs[0].shape) != tuple(y.shape):
                continue
            out, old, act = add.outputs[0], [conv, add], None
            nxt = out.uses[0][0] if len(out.uses) == 1 and not graph.is_output(out) else None
            if nxt is not None and nxt.op_type in ACTIVATIONS and nxt.inputs[0] is out:
                act = (nxt.op_type, float(nxt.op.alpha) if nxt.op_type == "LeakyRelu" else None)
                out = nxt.outputs[0]
                old.append(nxt)
            op = _clone_op(conv.op)
            op.__dict__["residual"] = True
            op.__dict__["fused_act"] = act
            inputs = list(conv.inputs) + [None] * (3 - len(conv.inputs)) + [res]
            index = max(graph.nodes.index(n) for n in old) - (len(old) - 1)
            for n in old:
                graph.remove_node(n)
            graph.add_node(op, inputs, [out], conv.name, index=index)
            changed = True
        return changed


class PretransposeSmallGemm(Pass):
    name = "pretranspose-small-gemm"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n.op_type != "Gemm" or not n.op.transB or n.op.transA:
                continue
            b = n.inputs[1]
            m = n.inputs[0].shape[0]
            if b.const is None or b.rank != 2 or not isinstance(m, int) or m > SMALL_M or not _float(b):
                continue
            bt = _const(graph, b.name + "_T", np.ascontiguousarray(b.const.T))
            op = _clone_op(n.op)
            op.attrs["transB"] = 0
            n.op = op
            graph.set_input(n, 1, bt)
            changed = True
        return changed


class PackConvWeights(Pass):
    """Float Conv weights (constant) rearranged at generation time into panels of NC output channels, k-major
    ([group][Mpad / NC][Cg * kernel volume][NC]), as the indirect convolution kernel of runtime/pysofie_conv.h
    reads them; zero rows pad each group to a multiple of NC. The op records the original output channel count
    (``packed``) and its kernel shape. Pointwise stride-1 convolutions (a plain matrix product) stay with the
    BLAS unless ``pointwise=True``. Groups of at most ROWS_MAX_M output channels with unit stride along the last
    axis are packed for the row kernel instead (``packed["rows"]``): per group, chunks of up to 4 channels, each
    [Cg * kernel volume][chunk channels]."""
    name = "pack-conv-weights"
    NC = 16

    def __init__(self, pointwise: bool = False):
        self.pointwise = pointwise

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n.op_type == "ConvTranspose" and n.op.__dict__.get("packed") is None:
                changed |= self._transpose(graph, n)
                continue
            if n.op_type != "Conv" or n.op.__dict__.get("packed") is not None:
                continue
            if n.op.__dict__.get("winograd") is not None:
                continue
            w = n.inputs[1]
            if w.const is None or w.const.dtype != np.float32 or n.inputs[0].dtype is not w.dtype:
                continue
            if not all(isinstance(d, int) for d in n.inputs[0].shape[2:]):
                continue  # a symbolic spatial size: the general im2col path
            ks, strides, _, pads = n.op.geometry(n)
            if (not self.pointwise and int(np.prod(ks)) == 1 and all(st == 1 for st in strides)
                    and not any(pads)):
                continue
            G = int(n.op.group)
            M = int(w.shape[0])
            Mg, K = M // G, int(np.prod(w.shape[1:]))
            from ..ops.conv import ROWS_MAX_M, rows_chunks
            if Mg <= ROWS_MAX_M and strides[-1] == 1:  # few output channels: the row kernel, [G][chunk][K][MR]
                wg = w.const.reshape(G, Mg, K)
                packed = np.concatenate([wg[g, c0:c0 + mr].T.reshape(-1) for g in range(G)
                                         for c0, mr in rows_chunks(Mg)])
                info = {"M": M, "nc": 4, "rows": True}
            else:
                NC = self.NC
                Mp = (Mg + NC - 1) // NC * NC
                a = np.zeros((G, Mp, K), np.float32)
                a[:, :Mg, :] = w.const.reshape(G, Mg, K)
                packed = a.reshape(G, Mp // NC, NC, K).transpose(0, 1, 3, 2).reshape(-1)
                info = {"M": M, "nc": NC}
            op = _clone_op(n.op)
            op.attrs["kernel_shape"] = list(ks)
            op.__dict__["packed"] = info
            n.op = op
            graph.set_input(n, 1, _const(graph, w.name + "_packed", packed))
            changed = True
        return changed

    def _transpose(self, graph: Graph, n) -> bool:
        """ConvTranspose: one packed weight block per output phase (backends/cpp/ops/conv.py:
        transpose_phases), [phase][group][Mpad / NC][Cg * phase taps][NC], concatenated; or, when the phases would
        waste more than 10 % on border taps, the weights of a matrix product (``packed["gemm"]``)."""
        from ..ops.conv import as3d, transpose_phases, transpose_subproblems
        w, x, y = n.inputs[1], n.inputs[0], n.outputs[0]
        if w.const is None or w.const.dtype != np.float32 or x.dtype is not w.dtype:
            return False
        if not all(isinstance(d, int) for d in x.shape[1:]) or not all(isinstance(d, int) for d in y.shape[1:]):
            return False
        nsp = x.rank - 2
        ks, strides, dil, pads = n.op.geometry(n)
        G = int(n.op.group)
        C, Mg = int(w.shape[0]), int(w.shape[1])
        Cg = C // G
        NC = self.NC
        Mp = (Mg + NC - 1) // NC * NC
        k3 = as3d(ks, 1)
        dims, _, _ = transpose_phases(as3d(x.shape[2:], 1), as3d(y.shape[2:], 1), k3, as3d(strides, 1),
                                      as3d(dil, 1), as3d(pads[:nsp], 0))
        wt = w.const.reshape(G, Cg, Mg, *k3)
        subs = transpose_subproblems(dims)
        kvol = int(np.prod(k3))
        in_sp = int(np.prod(x.shape[2:]))
        phase_work = sum(ph[0][2] * ph[1][2] * ph[2][2] * len(ph[0][3]) * len(ph[1][3]) * len(ph[2][3])
                         for ph in subs)
        if phase_work > 1.1 * in_sp * kvol:
            # small images: the phases would multiply many padding zeros at the borders; one matrix product per
            # input position (columns ordered [tap][channel]) and a scatter-add instead
            from .gemm_pack import pack_panels
            wg = np.ascontiguousarray(wt.reshape(G, Cg, Mg, kvol).transpose(0, 1, 3, 2))
            packed = np.concatenate([pack_panels(wg[g].reshape(Cg, kvol * Mg)) for g in range(G)])
            op = _clone_op(n.op)
            op.attrs["kernel_shape"] = list(ks)
            op.__dict__["packed"] = {"M": Mg * G, "Mg": Mg, "nc": NC, "gemm": True}
            n.op = op
            graph.set_input(n, 1, _const(graph, w.name + "_packed", packed))
            return True
        parts = []
        for ph in subs:
            kd = [k for k, _ in ph[0][3]]
            kh = [k for k, _ in ph[1][3]]
            kw = [k for k, _ in ph[2][3]]
            sub = wt[:, :, :, kd][:, :, :, :, kh][:, :, :, :, :, kw]  # G, Cg, Mg, taps...
            K = Cg * len(kd) * len(kh) * len(kw)
            a = np.zeros((G, Mp, K), np.float32)
            a[:, :Mg, :] = sub.transpose(0, 2, 1, 3, 4, 5).reshape(G, Mg, K)
            parts.append(a.reshape(G, Mp // NC, NC, K).transpose(0, 1, 3, 2).reshape(-1))
        packed = np.concatenate(parts) if parts else np.zeros(1, np.float32)
        op = _clone_op(n.op)
        op.attrs["kernel_shape"] = list(ks)
        op.__dict__["packed"] = {"M": Mg * G, "Mg": Mg, "nc": NC}
        n.op = op
        graph.set_input(n, 1, _const(graph, w.name + "_packed", packed))
        return True


def optimization_passes() -> list:
    # Every float Conv with constant weights runs the indirect kernel of runtime/pysofie_conv.h (faster than
    # im2col + OpenBLAS on every measured layer: benchmarks/README.md); pointwise stride-1 ones stay a BLAS call.
    from .gemm_pack import PackGemmWeights  # dense layers with constant weights (passes/gemm_pack.py)
    from .transformer import FuseAttention, FuseDenseEpilogue, FuseGelu, FuseRMSNorm  # passes/transformer.py
    from .row_mlp import FuseRowMLP  # chains of dense layers over many rows, by blocks of rows (GNN MLPs)
    from .shared_products import ShareConstants, ShareRowProducts  # products / weights alike: computed, kept once
    from .segment import ScatterAddToSegmentSum  # PyG's scatter-add exports: one pass over the rows
    from .winograd import WinogradConv
    from .row_prune import PruneGatheredRows  # only the token a Gather keeps (BERT's pooler, ViT's head)
    from .channel_norm import FuseChannelLayerNorm, FuseScaleTransposeAdd  # ConvNeXt's permutes folded in
    return [ShareRowProducts(), ScatterAddToSegmentSum(), FoldBatchNorm(), FuseBiasAdd(), MatMulAddToGemm(), FuseGelu(),
            FuseAttention(), FuseRMSNorm(), PruneGatheredRows(), FuseChannelLayerNorm(), FuseScaleTransposeAdd(),
            FuseActivation(), PretransposeSmallGemm(), WinogradConv(), PackConvWeights(), FuseResidualAdd(),
            PackGemmWeights(), FuseDenseEpilogue(), FuseRowMLP(), ShareConstants()]
