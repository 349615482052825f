"""Winograd convolution F(m x m, r x r) for 2-D stride-1 convolutions with square kernels (3x3, 4x4, 5x5; m = 4
for 3x3 and 4x4 where the output rows fill groups of 8 tiles of 4, else 2), and stride-1 ConvTranspose through
the equivalent Conv.

The transforms come from the modified Toom-Cook construction: with n = m + r - 1 evaluation points (finite ones
plus infinity), a 1-D correlation y_i = sum_k g_k d_{i+k} (i < m) equals A^T [(G g) * (B^T d)], where
G (n x r) and H (n x m) evaluate polynomials of degree r-1 and m-1 at the points, V is the n x n
Vandermonde matrix with infinity, B^T = V^{-T} and A^T = H^T. In 2-D: Y = A^T [(G g G^T) * (B^T d B)] A.

``WinogradConv`` transforms the (constant) weights at generation time, U[xi][M][C] = (G g G^T)[xi], and marks
the op (``winograd``: m, r, mode) so that the C++ generator (backends/cpp/ops/winograd.py) emits the input
transform, the n^2 matrix products by the indirect kernel, and the output transform with bias, residual and
activation.
"""
from __future__ import annotations

import functools

import numpy as np

from ....ir import Graph
from ....passes.manager import Pass
from ....ops.base import lookup
from ....passes.rewrites import _clone_op, _const, _replace

# finite points per n; infinity is the last
POINTS = {4: [0.0, 1.0, -1.0], 5: [0.0, 1.0, -1.0, 0.5], 6: [0.0, 1.0, -1.0, 2.0, -2.0],
          7: [0.0, 1.0, -1.0, 2.0, -2.0, 0.5]}


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int, r: int):
    """(AT (m x n), G (n x r), BT (n x n)) in float64, checked against a direct correlation."""
    n = m + r - 1
    pts = POINTS[n]

    def evalmat(deg):  # n x deg: rows = points, then the leading coefficient ("infinity")
        e = np.zeros((n, deg))
        for j, a in enumerate(pts):
            e[j] = [a ** k for k in range(deg)]
        e[n - 1, deg - 1] = 1.0
        return e

    G, H, V = evalmat(r), evalmat(m), evalmat(n)
    BT = np.linalg.inv(V).T
    AT = H.T
    # scale each row of B^T by its largest entry and G's rows by the same factors (U = G g G^T then carries the
    # products of the factors): the input transform, run for every tile, gets more coefficients of +-1
    D = np.abs(BT).max(axis=1)
    BT = BT / D[:, None]
    G = G * D[:, None]
    rng = np.random.default_rng(0)
    g, d = rng.standard_normal(r), rng.standard_normal(n)
    direct = np.array([sum(g[k] * d[i + k] for k in range(r)) for i in range(m)])
    assert np.allclose(AT @ ((G @ g) * (BT @ d)), direct, atol=1e-9), "Winograd transform construction failed"
    return AT, G, BT


def tile_size(r: int) -> int:
    """Output tile edge m for a kernel edge r (n = m + r - 1 transform points), where F(4x4) is not chosen."""
    return 2


def _fills(ow: int, m: int, slack: float) -> bool:
    """The tile rows of an output ow wide, padded to groups of 8 tiles of m columns, waste at most `slack`."""
    tw = -(-ow // m)
    return -(-tw // 8) * 8 <= slack * tw


def eligible(node):
    """(mode, m) of a Conv node, or None: mode "rows": the AVX2 transforms on 8 tiles of a tile row at once;
    "tiles": one tile at a time, for narrow outputs with many channels; m: the output tile edge."""
    op = node.op
    if node.op_type != "Conv" or op.__dict__.get("packed") or op.__dict__.get("winograd"):
        return None
    x, w = node.inputs[0], node.inputs[1]
    if w.const is None or w.const.dtype != np.float32 or x.dtype is not w.dtype or x.rank != 4:
        return None
    if not all(isinstance(d, int) for d in x.shape[2:]):
        return None  # a symbolic spatial size: the general path
    if int(op.group) != 1:
        return None
    ks, strides, dil, pads = op.geometry(node)
    if ks[0] != ks[1] or ks[0] not in (3, 4, 5) or any(s != 1 for s in strides) or any(d != 1 for d in dil):
        return None
    y = node.outputs[0]
    if len(y.shape) != 4 or not isinstance(y.shape[3], int):
        return None
    return choose(int(w.shape[0]), int(w.shape[1]), ks[0], y.shape[3])


def choose(M: int, C: int, r: int, ow: int):
    """(mode, m) for an r x r stride-1 convolution of C -> M channels and outputs ow wide, or None."""
    # small channel counts: the transforms cost more than the products they save (measured: 5x5 layers of
    # 8 -> 16 and 16 -> 32 channels ran slower than the direct kernel, 32 -> 64 faster)
    if r not in (3, 4, 5) or M < 16 or C < 32:
        return None
    # the vectorized transforms take tile rows in groups of 8 tiles: narrow outputs (e.g. 7 columns = 4 tiles
    # padded to 8) would waste more products than Winograd saves. F(4x4, 4x4) saves 5.2x, F(4x4, 3x3) 4x,
    # F(2x2, 5x5) 2.8x, F(2x2, 4x4) 2.6x, F(2x2, 3x3) 2.25x
    if r in (3, 4) and _fills(ow, 4, 1.15 if r == 3 else 1.3):
        return "rows", 4
    if _fills(ow, tile_size(r), 1.15 if r == 3 else 1.3):
        return "rows", tile_size(r)
    # one tile at a time: scalar transforms, worth it where the products dominate them (many channels)
    if r == 3 and min(M, C) >= TILES_MIN_CHANNELS:
        return "tiles", tile_size(r)
    return None


TILES_MIN_CHANNELS = 256


def transpose_as_conv(graph: Graph, n):
    """A 2-D ConvTranspose of stride 1 (no dilation, group or output padding; constant float weights) whose
    equivalent Conv -- weights with input and output channels swapped and the kernel flipped, pads k - 1 - p --
    would run Winograd: replaced by that Conv (same output, bias and fused activation). Returns the new node or
    None."""
    op = n.op
    x, w, y = n.inputs[0], n.inputs[1], n.outputs[0]
    if op.__dict__.get("packed") or op.__dict__.get("residual") or int(op.group) != 1 or x.rank != 4:
        return None
    if w.const is None or w.const.dtype != np.float32 or x.dtype is not w.dtype or len(n.outputs) != 1:
        return None
    if not all(isinstance(d, int) for d in list(x.shape[2:]) + list(y.shape[2:])):
        return None
    ks, strides, dil, pads = op.geometry(n)
    k = ks[0]
    if ks[0] != ks[1] or any(s != 1 for s in strides) or any(d != 1 for d in dil):
        return None
    if any(p < 0 or p > k - 1 for p in pads):
        return None
    for i in range(2):  # the output the pads give (no output_padding / output_shape beyond them)
        if y.shape[2 + i] != x.shape[2 + i] + k - 1 - pads[i] - pads[2 + i]:
            return None
    M, C = int(w.shape[1]), int(w.shape[0])
    if choose(M, C, k, y.shape[3]) is None:
        return None
    wc = np.ascontiguousarray(w.const.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])
    conv = lookup("Conv")(kernel_shape=list(ks), pads=[k - 1 - p for p in pads], strides=[1, 1],
                          dilations=[1, 1], group=1)
    conv.__dict__["fused_act"] = op.__dict__.get("fused_act")
    inputs = [x, _const(graph, w.name + "_as_conv", wc)] + list(n.inputs[2:3])
    return _replace(graph, [n], conv, inputs, y, n.name)


class WinogradConv(Pass):
    name = "winograd-conv"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for n in list(graph.nodes):
            if n.op_type == "ConvTranspose":
                n = transpose_as_conv(graph, n)
                if n is None:
                    continue
                changed = True
            choice = eligible(n)
            if choice is None:
                continue
            mode, m = choice
            w = n.inputs[1]
            r = int(w.shape[2])
            AT, G, BT = winograd_matrices(m, r)
            a = m + r - 1
            M, C = int(w.shape[0]), int(w.shape[1])
            g64 = w.const.astype(np.float64)
            U = np.einsum("ik,mckl,jl->ijmc", G, g64, G).reshape(a * a, M, C).astype(np.float32)
            # packed for the indirect kernel of runtime/pysofie_conv.h: [xi][Mpad / NC][C][NC]
            NC = 16
            Mp = (M + NC - 1) // NC * NC
            Up = np.zeros((a * a, Mp, C), np.float32)
            Up[:, :M, :] = U
            Up = Up.reshape(a * a, Mp // NC, NC, C).transpose(0, 1, 3, 2).reshape(-1)
            ks, _, _, _ = n.op.geometry(n)
            op = _clone_op(n.op)
            op.attrs["kernel_shape"] = list(ks)
            op.__dict__["winograd"] = {"m": m, "r": r, "M": M, "C": C, "Mp": Mp, "mode": mode}
            n.op = op
            graph.set_input(n, 1, _const(graph, w.name + "_winograd", Up))
            changed = True
        return changed
