"""PackGemmWeights: dense layers with a constant weight matrix get it packed at generation time for the
register-blocked AVX2/FMA kernel of backends/cpp/runtime/pysofie_gemm.h.

A float32 Gemm (any transA / transB / alpha / beta) or MatMul (A of any rank >= 1, rows of all leading
axes flattened) whose B is a constant 2-D matrix: B (alpha folded in) is cut into panels of 16 columns, k-major, the
last panel 8 wide when at most 8 columns remain, zero padded. A constant C that varies along columns only
(scalar, (N,), (1, N), (1, 1)) becomes a bias vector (beta folded in, zero padded to a multiple of 16) added in
the kernel's store, with the fused activation. Any other C is written into the output first and accumulated.

Which sizes: measured against OpenBLAS's sgemm (plus the separate bias/activation pass it needs) and the axpy
kernel for M <= 8, single thread on the development machine (Zen 3), timings interleaved: the packed kernel is
1.9-5x faster than OpenBLAS on the layers of the rootbench dense models (M 1..64, N and K 10..100), 1.3-2x faster
than the axpy kernel for M = 2..8 (level with it at M = 1), 1.1-1.5x faster than OpenBLAS at M x N x K =
128x256x256 .. 1024x512x512, and level with OpenBLAS (0.94-1.05x over repeated runs) on the large products
512x1024x1024, 64x2048x2048, 64x1024x4096. Reductions deeper than 2048 keep the BLAS (whose packing of A
starts to pay there).
"""
from __future__ import annotations

import numpy as np

from ....ir import DType, Graph
from ....passes.manager import Pass
from ....passes.rewrites import _clone_op, _const

NR = 16  # panel width of pysofie_gemm.h


def pack_panels(b: np.ndarray) -> np.ndarray:
    """(K, N) -> panels of NR columns (the last one NR/2 wide if it holds at most NR/2), k-major, zero padded."""
    K, N = b.shape
    parts = []
    for j in range(0, N, NR):
        nv = min(NR, N - j)
        wid = NR // 2 if nv <= NR // 2 else NR
        p = np.zeros((K, wid), np.float32)
        p[:, :nv] = b[:, j:j + nv]
        parts.append(p.reshape(-1))
    return np.ascontiguousarray(np.concatenate(parts))


def padded_bias(c: np.ndarray, n: int) -> np.ndarray:
    npad = (n + NR - 1) // NR * NR
    out = np.zeros(npad, np.float32)
    out[:n] = np.broadcast_to(c.reshape(-1) if c.size > 1 else c.reshape(()), (n,))
    return out


class PackGemmWeights(Pass):
    name = "pack-gemm-weights"

    def __init__(self, max_k: int = 2048):
        self.max_k = max_k

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n.op_type not in ("Gemm", "MatMul") or n.op.__dict__.get("packed_gemm") is not None:
                continue
            if len(n.outputs) != 1 or n.outputs[0].dtype is not DType.FLOAT:
                continue
            a, b = n.inputs[0], n.inputs[1]
            if a is None or b is None or a.dtype is not DType.FLOAT or b.dtype is not DType.FLOAT:
                continue
            if b.const is None or b.rank != 2 or b.const.dtype != np.float32:
                continue
            if n.op_type == "Gemm":
                changed |= self._gemm(graph, n)
            else:
                changed |= self._matmul(graph, n)
        return changed

    def _gemm(self, graph: Graph, n) -> bool:
        op = n.op
        a, b = n.inputs[0], n.inputs[1]
        if a.rank != 2:
            return False
        bm = np.asarray(b.const, np.float32)
        bm = bm.T if op.transB else bm
        K, N = (int(d) for d in bm.shape)
        if K == 0 or N == 0 or K > self.max_k:
            return False
        alpha = float(op.alpha)
        if not np.isfinite(alpha):  # inf * B has NaN where B is 0; onnxruntime scales the product instead
            return False
        packed = pack_panels((bm.astype(np.float64) * alpha).astype(np.float32) if alpha != 1.0 else bm)
        c = n.input(2)
        beta = float(op.beta)
        info = {"K": K, "N": N, "bias": False}
        new_c = c
        if c is not None and beta == 0.0:
            new_c = None
        elif c is not None and c.const is not None and c.rank <= 2 and (c.rank < 2 or c.shape[0] == 1) \
                and c.const.size in (1, N):
            cf = np.asarray(c.const, np.float64) * beta
            new_c = _const(graph, c.name + "_bias", padded_bias(cf.astype(np.float32), N))
            info["bias"] = True
        new = _clone_op(op)
        new.__dict__["packed_gemm"] = info
        n.op = new
        graph.set_input(n, 1, _const(graph, b.name + "_gemmpack", packed))
        if new_c is not c:
            if new_c is None:
                new.attrs["beta"] = 0.0
                graph.set_input(n, 2, None)
            else:
                graph.set_input(n, 2, new_c)
        return True

    def _matmul(self, graph: Graph, n) -> bool:
        a, b = n.inputs[0], n.inputs[1]
        if a.rank < 1:
            return False
        K, N = (int(d) for d in b.shape)
        if K == 0 or N == 0 or K > self.max_k:
            return False
        new = _clone_op(n.op)
        new.__dict__["packed_gemm"] = {"K": K, "N": N, "bias": False}
        n.op = new
        graph.set_input(n, 1, _const(graph, b.name + "_gemmpack", pack_panels(np.asarray(b.const, np.float32))))
        return True
