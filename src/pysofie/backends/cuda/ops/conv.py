"""Conv (1-3 spatial dims): im2col of a chunk of images + one strided-batched cuBLAS product into the NCHW output
(pointwise stride-1 convolutions skip the im2col), then bias and activation in one epilogue kernel. Grouped
convolutions and ConvTranspose: a direct kernel, one thread per output element."""
from __future__ import annotations

from ....ir.shapes import cpp_dim
from ...cpp.ops.conv import act_expr, fused_act
from ..emitter import coords, float32_only, generates

IM2COL_FLOATS = 1 << 25  # the im2col buffer holds at most this many floats (128 MB): images are taken in chunks


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _check(node):
    p = float32_only(node)
    x = node.inputs[0]
    if not all(isinstance(d, int) for d in x.shape[1:]):
        p.append(f"{node.op_type}: symbolic channel or spatial sizes have no CUDA kernel, node '{node.name}'")
    return p


def _geometry(cx):
    x, y = cx.vin(0), cx.vout(0)
    ks, strides, dil, pads = cx.op.geometry(cx.node)
    nsp = x.rank - 2
    return (list(ks), list(strides), list(dil), list(pads[:nsp]), [int(d) for d in x.shape[2:]],
            [int(d) for d in y.shape[2:]])


def _bias_act(cx, M: int, OS: int) -> None:
    act = fused_act(cx.op)
    if not cx.has(2) and act is None:
        return
    T = cx.octype(0)

    def body(w):
        w.line(f"{T} v = {cx.o(0)}[i];")
        if cx.has(2):
            w.line(f"v += {cx.i(2)}[(i / {OS}) % {M}];")
        if act is not None:
            w.line(f"v = {act_expr(act, 'v', T)};")
        w.line(f"{cx.o(0)}[i] = v;")

    cx.launch(cx.osize(0), body)


@generates("Conv", check=_check)
def gen_conv(cx):
    ks, strides, dil, pads, in_sp, out_sp = _geometry(cx)
    G = int(cx.op.group)
    C = int(cx.vin(0).shape[1])
    M = int(cx.vout(0).shape[1])
    if G != 1:
        _direct(cx, transpose=False)
        return
    N = cpp_dim(cx.vin(0).shape[0])
    IS, OS, kvol = _prod(in_sp), _prod(out_sp), _prod(ks)
    X, W, Y = cx.i(0), cx.i(1), cx.o(0)
    w = cx.w
    if kvol == 1 and all(s == 1 for s in strides) and not any(pads) and in_sp == out_sp:
        # Y_n [M, OS] = W [M, C] X_n [C, OS] for every image n: column major, Y_n^T = X_n^T W^T
        w.line(f"pysofie_cuda::sgemm_cm_batched(blas, false, false, {OS}, {M}, {C}, {X}, {OS}, {C * IS}LL, {W}, "
               f"{C}, 0LL, {Y}, {OS}, {M * OS}LL, {N});")
        _bias_act(cx, M, OS)
        return
    K = C * kvol
    nb_max = max(1, IM2COL_FLOATS // (K * OS))
    cols = cx.scratch(f"std::min<size_t>({N}, {nb_max}) * {K * OS}", name="cols")
    with w.block(f"for (size_t n0 = 0; n0 < {N}; n0 += {nb_max})"):
        w.line(f"const size_t nb = std::min<size_t>({nb_max}, {N} - n0);")

        def im2col(kw):  # cols[image][c, taps][output position]
            kw.line(f"const size_t iq = i % {K * OS};")
            _im2col_body(kw, cx, ks, strides, dil, pads, in_sp, out_sp, C, K, OS, cols)

        cx.launch(f"nb * {K * OS}", im2col, extra=(("size_t n0", "n0"),))
        # Y_n [M, OS] = W [M, K] cols_n [K, OS]
        w.line(f"pysofie_cuda::sgemm_cm_batched(blas, false, false, {OS}, {M}, {K}, {cols}, {OS}, {K * OS}LL, {W}, "
               f"{K}, 0LL, {Y} + n0 * {M * OS}, {OS}, {M * OS}LL, nb);")
    _bias_act(cx, M, OS)


def _im2col_body(kw, cx, ks, strides, dil, pads, in_sp, out_sp, C, K, OS, cols):
    nsp = len(ks)
    v = coords(kw, [str(C), *map(str, ks), *map(str, out_sp)], "q", flat="iq")
    c, taps, outs = v[0], v[1:1 + nsp], v[1 + nsp:]
    conds, idx = [], []
    for d in range(nsp):
        kw.line(f"const long long p{d} = (long long)({outs[d]}) * {strides[d]} + (long long)({taps[d]}) * "
                f"{dil[d]} - {pads[d]};")
        conds.append(f"p{d} >= 0 && p{d} < {in_sp[d]}")
        idx.append(f"p{d} * {_prod(in_sp[d + 1:])}" if _prod(in_sp[d + 1:]) != 1 else f"p{d}")
    IS = _prod(in_sp)
    kw.line(f"{cols}[i] = ({' && '.join(conds)}) ? "
            f"{cx.i(0)}[((n0 + i / {K * OS}) * {C} + {c}) * {IS} + {' + '.join(idx)}] : 0.f;")


@generates("ConvTranspose", check=_check)
def gen_conv_transpose(cx):
    _direct(cx, transpose=True)


def _direct(cx, transpose: bool) -> None:
    """One thread per output element: the sum over its group's input channels and the kernel taps (for
    ConvTranspose, the taps whose input position lands on this output: a gather, no atomics)."""
    ks, strides, dil, pads, in_sp, out_sp = _geometry(cx)
    nsp = len(ks)
    G = int(cx.op.group)
    x, y = cx.vin(0), cx.vout(0)
    C, M = int(x.shape[1]), int(y.shape[1])
    Cg, Mg = C // G, M // G
    IS, kvol = _prod(in_sp), _prod(ks)
    T = cx.octype(0)
    act = fused_act(cx.op)

    def body(w):
        v = coords(w, [cpp_dim(y.shape[0]), str(M), *map(str, out_sp)], "o")
        n, m, outs = v[0], v[1], v[2:]
        w.line(f"const size_t g = {m} / {Mg};")
        w.line(f"{T} acc = {cx.i(2) + '[' + m + ']' if cx.has(2) else T + '(0)'};")
        with w.loop("c", str(Cg)):
            w.line(f"const size_t ci = g * {Cg} + c;")
            w.line(f"const {T}* xp = {cx.i(0)} + ({n} * {C} + ci) * {IS};")
            if transpose:  # W [C, Mg, taps]
                w.line(f"const {T}* wp = {cx.i(1)} + (ci * {Mg} + {m} % {Mg}) * {kvol};")
            else:  # W [M, Cg, taps]
                w.line(f"const {T}* wp = {cx.i(1)} + ({m} * {Cg} + c) * {kvol};")
            for d in range(nsp):
                w.open(f"for (int k{d} = 0; k{d} < {ks[d]}; ++k{d})")
                if transpose:
                    w.line(f"const long long t{d} = (long long)({outs[d]}) + {pads[d]} - k{d} * {dil[d]};")
                    w.line(f"if (t{d} < 0 || t{d} % {strides[d]} != 0) continue;")
                    w.line(f"const long long p{d} = t{d} / {strides[d]};")
                else:
                    w.line(f"const long long p{d} = (long long)({outs[d]}) * {strides[d]} + k{d} * {dil[d]} - "
                           f"{pads[d]};")
                w.line(f"if (p{d} < 0 || p{d} >= {in_sp[d]}) continue;")
            xi = " + ".join(f"p{d} * {_prod(in_sp[d + 1:])}" for d in range(nsp))
            wi = " + ".join(f"k{d} * {_prod(ks[d + 1:])}" for d in range(nsp))
            w.line(f"acc += xp[{xi}] * wp[{wi}];")
            for _ in range(nsp):
                w.close()
        if act is not None:
            w.line(f"acc = {act_expr(act, 'acc', T)};")
        w.line(f"{cx.o(0)}[i] = acc;")

    cx.launch(cx.osize(0), body)
