"""Optimization passes that rewrite the graph for speed. Each has a test against the unoptimized path
(tests/test_fusion.py).

- ``FoldBatchNorm``: Conv (constant weights) followed by an inference BatchNormalization becomes one Conv with
  rescaled weights and a bias.
- ``FuseBiasAdd``: Conv / ConvTranspose followed by the Add of a constant per-channel bias takes it as its bias.
- ``MatMulAddToGemm``: a 2-D MatMul by a constant followed by the Add of a constant bias becomes a Gemm.
- ``FuseActivation``: Relu / LeakyRelu / Sigmoid / Tanh right after a Conv, ConvTranspose or Gemm is applied by
  that node's generated code while its output is in cache (the node's op carries ``fused_act``), and the
  activation node disappears.
- ``PackConvWeights``: Conv weights packed for the indirect convolution kernel of runtime/pysofie_conv.h (no
  im2col; any stride, dilation, group, 1-3 spatial dims); pointwise stride-1 convolutions stay a BLAS call.
- ``FuseResidualAdd``: Conv + Add of a same-shaped tensor (+ activation), as in residual networks: added (then
  activated) by the Conv's output stage.
- ``PretransposeSmallGemm``: a Gemm with few rows (M <= SMALL_M) and a constant transposed B gets B transposed
  at generation time, so that the generated small-matrix kernel streams B row by row.
"""
from __future__ import annotations

import copy

import numpy as np

from ..ir import Graph, Value
from .manager import Pass

ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Tanh")
FUSES_ACTIVATION = ("Conv", "ConvTranspose", "Gemm")
SMALL_M = 8  # Gemm row counts up to this use the generated small-matrix kernel (backends/cpp/ops/gemm.py)


def _float(v: Value) -> bool:
    return v is not None and v.dtype is not None and v.dtype.is_float


def _single_internal_use(graph: Graph, v: Value) -> bool:
    """v is read by exactly one node and is not a graph output."""
    return len(v.uses) == 1 and not graph.is_output(v)


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


def _replace(graph: Graph, old_nodes: list, op, inputs: list, output: Value, name: str):
    """Remove old_nodes and put one node computing `output` where the first of them was."""
    index = min(graph.nodes.index(n) for n in old_nodes)
    for n in old_nodes:
        graph.remove_node(n)
    return graph.add_node(op, inputs, [output], name, index=index)


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
            alpha = float(act.op.alpha) if act.op_type == "LeakyRelu" else None
            op = _clone_op(prod.op)
            op.__dict__["fused_act"] = (act.op_type, alpha)
            _replace(graph, [prod, act], op, list(prod.inputs), act.outputs[0], prod.name)
            changed = True
        return changed


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
            from ..backends.cpp.ops.conv import ROWS_MAX_M, rows_chunks
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
        from ..backends.cpp.ops.conv import as3d, transpose_phases, transpose_subproblems
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


def neutral_passes() -> list:
    """Rewrites that hold for every target (no kernel choice, weights keep their ONNX layout)."""
    return [FoldBatchNorm(), FuseBiasAdd(), MatMulAddToGemm(), FuseActivation()]


def optimization_passes() -> list:
    # Every float Conv with constant weights runs the indirect kernel of runtime/pysofie_conv.h (faster than
    # im2col + OpenBLAS on every measured layer: benchmarks/README.md); pointwise stride-1 ones stay a BLAS call.
    from .gemm_pack import PackGemmWeights  # dense layers with constant weights (passes/gemm_pack.py)
    from .transformer import FuseDenseEpilogue, FuseGelu  # exporters' transformer graphs (passes/transformer.py)
    from .row_mlp import FuseRowMLP  # chains of dense layers over many rows, by blocks of rows (GNN MLPs)
    from .winograd import WinogradConv
    return [FoldBatchNorm(), FuseBiasAdd(), MatMulAddToGemm(), FuseGelu(), FuseActivation(), PretransposeSmallGemm(),
            WinogradConv(), PackConvWeights(), FuseResidualAdd(), PackGemmWeights(), FuseDenseEpilogue(),
            FuseRowMLP()]
