"""Conv and ConvTranspose (1D/2D/3D, groups, dilations, pads) as im2col / col2im around a BLAS sgemm.

All spatial ranks run through the same 3-D helpers: a 1-D or 2-D convolution is a 3-D one whose leading
spatial extents are 1.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ....ir.shapes import cpp_dim
from ..emitter import generates
from .common import lit, use_runtime_header

IM2COL = """\
// Unfold the receptive fields of one image (C x D x H x W) into columns for the output positions p0 .. p0+np-1
// (flattened od, oh, ow): col[(c,kd,kh,kw)][p - p0], a (C*KD*KH*KW) x np matrix. Done a tile of output
// positions at a time, the columns stay in cache for the matrix product that reads them.
template <typename T>
inline void im2col3d_tile(const T* x, long C, long D, long H, long W, long KD, long KH, long KW, long pd, long ph,
                          long pw, long sd, long sh, long sw, long dd, long dh, long dw, long OH, long OW, long p0,
                          long np, T* col) {
   const long OHW = OH * OW;
   T* o = col;
   for (long c = 0; c < C; ++c)
      for (long kd = 0; kd < KD; ++kd)
         for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw, o += np) {
               long od = p0 / OHW, oh = (p0 / OW) % OH, ow = p0 % OW;
               for (long done = 0; done < np;) {
                  const long seg = std::min(OW - ow, np - done);
                  T* dst = o + done;
                  const long id = od * sd - pd + kd * dd, ih = oh * sh - ph + kh * dh;
                  if (id < 0 || id >= D || ih < 0 || ih >= H) {
                     std::fill(dst, dst + seg, T(0));
                  } else {
                     const T* row = x + ((c * D + id) * H + ih) * W;
                     const long iw0 = ow * sw - pw + kw * dw;  // input column of dst[0]
                     // dst[t] reads row[iw0 + t * sw] where 0 <= iw0 + t * sw < W, else 0
                     long lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
                     long hi = iw0 < W ? (W - iw0 + sw - 1) / sw : 0;
                     lo = std::min(lo, seg);
                     hi = std::max(lo, std::min(hi, seg));
                     std::fill(dst, dst + lo, T(0));
                     if (sw == 1) {
                        std::copy(row + iw0 + lo, row + iw0 + hi, dst + lo);
                     } else {
                        for (long t = lo; t < hi; ++t) dst[t] = row[iw0 + t * sw];
                     }
                     std::fill(dst + hi, dst + seg, T(0));
                  }
                  done += seg;
                  ow = 0;
                  if (++oh == OH) {
                     oh = 0;
                     ++od;
                  }
               }
            }
}
"""

COL2IM = """\
// Scatter-add columns back into an image: the adjoint of im2col3d (used by ConvTranspose).
template <typename T>
inline void col2im3d(const T* col, long C, long D, long H, long W, long KD, long KH, long KW, long pd, long ph,
                     long pw, long sd, long sh, long sw, long dd, long dh, long dw, long ID, long IH, long IW,
                     T* y) {
   for (long c = 0; c < C; ++c)
      for (long kd = 0; kd < KD; ++kd)
         for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw) {
               const T* in = col + (((c * KD + kd) * KH + kh) * KW + kw) * ID * IH * IW;
               for (long i_d = 0; i_d < ID; ++i_d) {
                  const long od = i_d * sd - pd + kd * dd;
                  if (od < 0 || od >= D) continue;
                  for (long ih = 0; ih < IH; ++ih) {
                     const long oh = ih * sh - ph + kh * dh;
                     if (oh < 0 || oh >= H) continue;
                     T* row = y + ((c * D + od) * H + oh) * W;
                     const T* src = in + (i_d * IH + ih) * IW;
                     // iw in [lo, hi) lands inside the row: 0 <= iw * sw + ow0 < W
                     const long ow0 = kw * dw - pw;
                     const long lo = std::min(IW, ow0 >= 0 ? 0 : (-ow0 + sw - 1) / sw);
                     const long hi = std::max(lo, std::min(IW, ow0 < W ? (W - ow0 + sw - 1) / sw : 0));
                     if (sw == 1) {
                        for (long iw = lo; iw < hi; ++iw) row[iw + ow0] += src[iw];
                     } else {
                        for (long iw = lo; iw < hi; ++iw) row[iw * sw + ow0] += src[iw];
                     }
                  }
               }
            }
}
"""


def as3d(vals, fill):
    vals = list(vals)
    return [fill] * (3 - len(vals)) + vals


# Columns of the unfolded input held at once: ~2 MiB of floats, so that the tile stays in cache between the
# unfolding and the matrix product (a whole-image im2col of a large layer is hundreds of MB of memory traffic).
COL_BUDGET = 1 << 19


def col_tile(K: int, out_sp: int) -> int:
    """Output positions per im2col tile for a reduction length K."""
    t = max(256, COL_BUDGET // max(1, K))
    t -= t % 16
    return out_sp if isinstance(out_sp, int) and t >= out_sp else t  # a symbolic out_sp: tiles of t


def act_expr(act, v: str, T: str) -> str:
    """C++ expression of a fused activation (set by passes.fusion) applied to the variable v."""
    kind, alpha = act
    if kind == "Relu":
        return f"std::max({v}, {T}(0))"
    if kind == "LeakyRelu":
        return f"({v} < {T}(0) ? {lit(alpha, T)} * {v} : {v})"
    if kind == "Sigmoid":
        return f"{T}(1) / ({T}(1) + std::exp(-{v}))"
    if kind == "Tanh":
        return f"std::tanh({v})"
    if kind == "Gelu":
        return f"{T}(0.5) * {v} * ({T}(1) + std::erf({v} * {T}(0.70710678118654752)))"
    if kind == "GeluTanh":
        return (f"{T}(0.5) * {v} * ({T}(1) + std::tanh({T}(0.79788456080286536) * ({v} + {T}(0.044715) * {v} * {v} "
                f"* {v})))")
    raise ValueError(f"unknown fused activation {kind}")


def fused_act(op):
    return op.__dict__.get("fused_act")


def epilogue(w, T: str, rows, row_len, ld: str, base: str, bias: str | None, act, col0: str = "0") -> None:
    """y[r * ld + col0 + j] = act(y[...] + bias[r]) for r < rows, j < row_len; nothing when there is neither."""
    if bias is None and act is None:
        return
    with w.loop("r", str(rows)):
        w.line(f"{T}* yr = {base} + r * {ld} + {col0};")
        if bias is not None:
            w.line(f"const {T} br = {bias}[r];")
        with w.loop("j", str(row_len)):
            v = "(yr[j] + br)" if bias is not None else "yr[j]"
            if act is None:
                w.line(f"yr[j] = {v};")
            else:
                w.line(f"const {T} v = {v};")
                w.line(f"yr[j] = {act_expr(act, 'v', T)};")


@generates("Conv")
def gen_conv(cx):
    op, w = cx.op, cx.w
    x, wt, y = cx.vin(0), cx.vin(1), cx.vout(0)
    T = cx.ctype(0)
    nsp = x.rank - 2
    ks, strides, dil, pads = op.geometry(cx.node)
    G = int(op.group)
    C, M = int(x.shape[1]), int(wt.shape[0])
    Cg, Mg = C // G, M // G
    ins = as3d(x.shape[2:], 1)
    outs = as3d(y.shape[2:], 1)
    k3, s3, d3 = as3d(ks, 1), as3d(strides, 1), as3d(dil, 1)
    p3 = as3d(pads[:nsp], 0)
    in_sp = ins[0] * ins[1] * ins[2]
    out_sp = outs[0] * outs[1] * outs[2]
    kvol = k3[0] * k3[1] * k3[2]
    K = Cg * kvol
    X, W, Y = cx.i(0), cx.i(1), cx.o(0)
    act = fused_act(op)
    residual = bool(op.__dict__.get("residual"))  # passes.fusion.FuseResidualAdd: input 3 is added before act
    pointwise = kvol == 1 and all(s == 1 for s in s3) and all(p == 0 for p in pads)
    packed = op.__dict__.get("packed")
    if packed is not None:  # the weight input is the packed array (passes.fusion.PackConvWeights)
        M = packed["M"]
        Mg = M // G
    wino = op.__dict__.get("winograd")
    if wino is not None:
        from .winograd import winograd_conv
        return winograd_conv(cx, wino, ins, outs, pads)
    N = cpp_dim(x.shape[0])
    from .gemm import gemm_call
    if packed is not None and packed.get("rows") and depthwise_eligible(cx, G, Cg, Mg, nsp, s3, d3, residual):
        return depthwise_conv(cx, ins, outs, k3, pads, G)
    bias = f"{cx.i(2)} + g * {Mg}" if cx.has(2) else None
    if packed is not None and packed.get("rows"):
        tabs = rows_conv(cx, Cg, ins, outs, k3, s3, d3, pads, nsp, Mg)
        indirect_tables(cx, tabs[2], tabs[4], k3, d3, Cg)
    elif packed is not None:
        tabs = indirect_conv(cx, Cg, ins, outs, k3, s3, d3, pads, nsp, Mg)
        indirect_tables(cx, tabs[3], tabs[6], k3, d3, Cg, pos=tabs[2], s3=s3, outs=outs)
    with w.loop("n", N):
        with w.loop("g", str(G)):
            w.line(f"const {T}* xg = {X} + (n * {C} + g * {Cg}) * {in_sp};")
            w.line(f"{T}* yg = {Y} + (n * {M} + g * {Mg}) * {out_sp};")
            if bias is not None:
                w.line(f"const {T}* bg = {bias};")
            if packed is not None and packed.get("rows"):
                xp, row, off, K, (Dp, Hp, Wp), pb, slack = tabs
                pool = cx.pool()
                w.line(f"pysofie_conv::pad_image({pool}, xg, {Cg}, {ins[0]}, {ins[1]}, {ins[2]}, {pb[0]}, {pb[1]}, "
                       f"{pb[2]}, {Dp}, {Hp}, {Wp}, {xp});")
                w.line(f"std::fill({xp} + {Cg * Dp * Hp * Wp}, {xp} + {Cg * Dp * Hp * Wp + slack}, 0.f);")
                for c0, MR in rows_chunks(Mg):  # chunks of up to 4 channels, weights [K][MR] each
                    w.line(f"pysofie_conv::conv_rows<{MR}, {ROWS_NV[MR]}>({outs[0]}, {outs[1]}, {outs[2]}, {s3[0]}, "
                           f"{s3[1]}, {Hp}, {Wp}, {xp}, {K}, {off}, {W} + g * {K * Mg} + {K * c0}, "
                           f"{f'bg + {c0}' if bias else 'nullptr'}, yg + {c0 * out_sp}, {row[0]}, {act_lambda(act)}, "
                           f"&{pool}, {row[1]});")
            elif packed is not None:
                xp, acc, pos, off, Mp, K, (Dp, Hp, Wp), P, pb = tabs
                pool = cx.pool()
                if xp is not None:
                    w.line(f"pysofie_conv::pad_image({pool}, xg, {Cg}, {ins[0]}, {ins[1]}, {ins[2]}, {pb[0]}, "
                           f"{pb[1]}, {pb[2]}, {Dp}, {Hp}, {Wp}, {xp});")
                res = f"{cx.i(3)} + (n * {M} + g * {Mg}) * {out_sp}" if residual else "nullptr"
                w.line(f"pysofie_conv::conv_indirect({P}, {pos}, nullptr, {xp or 'xg'}, {K}, {off}, "
                       f"{W} + g * {Mp * K}, {Mg}, {Mp}, {'bg' if bias else 'nullptr'}, yg, {P}, {acc[0]}, "
                       f"{act_lambda(act)}, {res}, &{pool}, {acc[1]});")
            elif pointwise:
                w.line(gemm_call(T, False, False, Mg, out_sp, Cg, 1.0, f"{W} + g * {Mg * Cg}", Cg, "xg", out_sp, 0.0,
                                 "yg", out_sp))
                epilogue(w, T, Mg, out_sp, str(out_sp), "yg", "bg" if bias else None, act)
            else:
                conv_tiles(cx, T, x, Cg, K, ins, outs, k3, p3, s3, d3, out_sp, W, Mg, bias, act)




def depthwise_eligible(cx, G, Cg, Mg, nsp, s3, d3, residual) -> bool:
    """One input and one output channel per group, 2-D (or 1-D), unit strides and dilations: depthwise2d."""
    return (G > 1 and Cg == 1 and Mg == 1 and nsp in (1, 2) and all(v == 1 for v in s3 + d3) and not residual
            and cx.vin(0).dtype.ctype == "float")


def depthwise_conv(cx, ins, outs, k3, pads, G):
    """Depthwise convolution by runtime/pysofie_depthwise.h's depthwise8 (AVX2: 8 channels per task, on the vector
    lanes) or depthwise2d (one channel per task); the weights (packed by PackConvWeights for the row kernel:
    [G][KH * KW] when Mg = 1) are read as they are."""
    w = cx.w
    use_runtime_header(cx, "pysofie_depthwise.h")
    nsp = cx.vin(0).rank - 2
    H, W = ins[1], ins[2]
    OH, OW = outs[1], outs[2]
    KH, KW = k3[1], k3[2]
    pt, pl = (pads[0], pads[1]) if nsp == 2 else (0, pads[0])
    Wq = -(-OW // 16) * 16 + KW - 1
    Hp = OH + KH - 1
    X, Wt, Y = cx.i(0), cx.i(1), cx.o(0)
    act = act_lambda(fused_act(cx.op))
    N = cpp_dim(cx.vin(0).shape[0])
    pool = cx.pool()
    if KW in DEPTHWISE8_KW:  # AVX2: 8 channels on the vector lanes (depthwise8)
        Wp8 = -(-OW // 8) * 8 + KW - 1
        x8 = cx.thread_scratch(Hp * Wp8 * 8, cx.vin(0).dtype, "x8")
        w8 = cx.thread_scratch(KH * KW * 8, cx.vin(0).dtype, "w8")
        CB = -(-G // 8)
        w.line("#if defined(__AVX2__) && defined(__FMA__)")
        with w.block(""):
            w.open(f"{pool}.run(long({N}) * {CB}, [&](long t, int tid)")
            w.line(f"const long n = t / {CB}, c0 = (t % {CB}) * 8;")
            w.line(f"pysofie_conv::depthwise8<{KW}>({X} + (n * {G} + c0) * {H * W}, std::min<long>(8, {G} - c0), "
                   f"{H}, {W}, {KH}, {pt}, {pl}, {OH}, {OW}, {Wt} + c0 * {KH * KW}, "
                   f"{cx.i(2) + ' + c0' if cx.has(2) else 'nullptr'}, {Y} + (n * {G} + c0) * {OH * OW}, "
                   f"{x8[0]} + tid * {x8[1]}, {w8[0]} + tid * {w8[1]}, {act});")
            w.close("});")
        w.line("#else")
    xp = cx.thread_scratch(Hp * Wq, cx.vin(0).dtype, "xpad")
    bias = f"{cx.i(2)} + c" if cx.has(2) else "nullptr"
    with w.block(""):
        w.open(f"{pool}.run(long({N}) * {G}, [&](long t, int tid)")
        w.line(f"const long c = t % {G};")
        w.line(f"pysofie_conv::depthwise2d({X} + t * {H * W}, {H}, {W}, {KH}, {KW}, {pt}, {pl}, {OH}, {OW}, "
               f"{Wt} + c * {KH * KW}, {bias}, {Y} + t * {OH * OW}, {xp[0]} + tid * {xp[1]}, {Wq}, {act});")
        w.close("});")
    if KW in DEPTHWISE8_KW:
        w.line("#endif")


DEPTHWISE8_KW = (3, 5, 7, 9, 11)  # kernel widths with an instance of depthwise8


def acc_floats(P: int, Mp: int) -> int:
    """Accumulator scratch of conv_indirect (runtime/pysofie_conv.h: acc_size) for P positions."""
    return min(64 * 6, (P + 5) // 6 * 6) * Mp


def act_lambda(act) -> str:
    """The fused activation as a functor of runtime/pysofie_conv.h (scalar and 8-lane calls)."""
    if act is None:
        return "pysofie_conv::ActNone{}"
    kind, alpha = act
    if kind in ("Relu", "Sigmoid", "Tanh", "Gelu", "GeluTanh"):
        return f"pysofie_conv::Act{kind}{{}}"
    if kind == "LeakyRelu":
        return f"pysofie_conv::ActLeakyRelu{{{lit(alpha, 'float')}}}"
    return f"pysofie_conv::act_scalar([](float v) {{ return {act_expr(act, 'v', 'float')}; }})"


def transpose_phases(ins, outs, k3, s3, d3, pb3):
    """ConvTranspose as stride-1 correlations, one per output phase: output o (per spatial dim) receives input
    i = b(o) - t from kernel tap k, where r = (o + pad) mod s, b(o) = (o + pad - r) / s, and the taps of phase r
    are the k with k * d = r (mod s), t = (k * d - r) / s. Returns, per dim, the phases as (r, first output o0,
    count, [(k, t)...], b(o0)), and the begin pads / padded extents of the input that make every read in
    bounds."""
    dims, L, ext = [], [], []
    for a in range(3):
        s, d, pb, I, O, K = s3[a], d3[a], pb3[a], ins[a], outs[a], k3[a]
        phases = []
        for r in range(s):
            o0 = next((o for o in range(min(O, s)) if (o + pb) % s == r), None)
            if o0 is None:
                continue
            n = (O - 1 - o0) // s + 1
            taps = [(k, (k * d - r) // s) for k in range(K) if (k * d) % s == r]
            phases.append((r, o0, n, taps, (o0 + pb - r) // s))
        lo = min(b - max((t for _, t in taps), default=0) for _, _, _, taps, b in phases)
        hi = max(b + n - 1 for _, _, n, _, b in phases)
        left = max(0, -lo)
        dims.append(phases)
        L.append(left)
        ext.append(left + max(I, hi + 1))
    return dims, L, ext


def transpose_subproblems(dims):
    """The phase combinations of transpose_phases (product over the spatial dims), in packing order."""
    import itertools
    return list(itertools.product(*dims))


def indirect_conv(cx, Cg, ins, outs, k3, s3, d3, pads, nsp, Mg):
    """Conv with weights packed by passes.fusion.PackConvWeights, without im2col: the image is copied once into
    a zero-padded buffer (unless there is no padding), and runtime/pysofie_conv.h's conv_indirect reads output
    position q's receptive field at pos[q] + off[k] (tables filled here: they hold the strides and dilations)."""
    use_runtime_header(cx, "pysofie_conv.h")
    NC = 16
    Mp = (Mg + NC - 1) // NC * NC
    kvol = k3[0] * k3[1] * k3[2]
    K = Cg * kvol
    pb, pe = as3d(pads[:nsp], 0), as3d(pads[nsp:], 0)
    Dp, Hp, Wp = (ins[a] + pb[a] + pe[a] for a in range(3))
    P = outs[0] * outs[1] * outs[2]
    padded = any(pb) or any(pe)
    img = Cg * Dp * Hp * Wp
    if img >= 2 ** 31:
        raise cx.op.fail(cx.node, "padded image of more than 2^31 elements")
    xp = cx.scratch(img, cx.vin(0).dtype, "xpad") if padded else None
    acc = cx.thread_scratch(acc_floats(P, Mp), cx.vin(0).dtype, "acc")
    from ....ir import DType
    pos = cx.scratch(P, DType.INT32, "pos")
    off = cx.scratch(max(1, K), DType.INT32, "off")
    return xp, acc, pos, off, Mp, K, (Dp, Hp, Wp), P, pb


# output channels per group up to which the row kernel (vectors along output rows, in chunks of at most 4
# channels) beats the 16-channel one, which would compute 16 - Mg channels of zeros
ROWS_MAX_M = 8
ROWS_NV = {1: 12, 2: 6, 3: 4, 4: 3}  # AVX vectors per channel of the row kernel: 12 accumulators


def rows_chunks(Mg: int) -> list:
    """(first channel, channel count) of the row kernel's passes: 4 channels each, the rest in the last one."""
    return [(c0, min(4, Mg - c0)) for c0 in range(0, Mg, 4)]


def rows_conv(cx, Cg, ins, outs, k3, s3, d3, pads, nsp, Mg):
    """Scratch of the row kernel (conv_rows, for convolutions with few output channels and unit stride along
    the last axis): padded image with slack for the last vector, one row of outputs per channel, offsets."""
    from ....ir import DType
    use_runtime_header(cx, "pysofie_conv.h")
    NV = max(ROWS_NV[mr] for _, mr in rows_chunks(Mg))
    K = Cg * k3[0] * k3[1] * k3[2]
    pb, pe = as3d(pads[:nsp], 0), as3d(pads[nsp:], 0)
    Dp, Hp, Wp = (ins[a] + pb[a] + pe[a] for a in range(3))
    img = Cg * Dp * Hp * Wp
    if img >= 2 ** 31:
        raise cx.op.fail(cx.node, "padded image of more than 2^31 elements")
    T = cx.vin(0).dtype
    xp = cx.scratch(img + 8 * NV, T, "xpad")
    run = outs[1] * Wp if s3[1] == 1 else outs[2]  # conv_rows: a whole plane at once when the row stride is 1
    rowlen = max(mr * ((run + 8 * ROWS_NV[mr] - 1) // (8 * ROWS_NV[mr]) * 8 * ROWS_NV[mr])
                 for _, mr in rows_chunks(Mg))
    row = cx.thread_scratch(rowlen, T, "row")
    off = cx.scratch(max(1, K), DType.INT32, "off")
    return xp, row, off, K, (Dp, Hp, Wp), pb, 8 * NV


def indirect_tables(cx, off, ext, k3, d3, Cg, pos=None, s3=None, outs=None):
    """Fill the offset tables (once per call, before the batch/group loops): off[k] of every reduction index
    (channel, kernel offsets) in the padded image of extents ext, and, for indirect_conv, pos[q] of every output
    position (the row kernel has no pos)."""
    w = cx.w
    Dp, Hp, Wp = ext
    with w.block(""):
        w.line("int32_t* o = " + off + ";")
        w.line(f"for (int32_t c = 0; c < {Cg}; ++c) for (int32_t a = 0; a < {k3[0]}; ++a) "
               f"for (int32_t b = 0; b < {k3[1]}; ++b) for (int32_t e = 0; e < {k3[2]}; ++e) "
               f"*o++ = ((c * {Dp} + a * {d3[0]}) * {Hp} + b * {d3[1]}) * {Wp} + e * {d3[2]};")
        if pos is not None:
            w.line("int32_t* q = " + pos + ";")
            w.line(f"for (int32_t a = 0; a < {outs[0]}; ++a) for (int32_t b = 0; b < {outs[1]}; ++b) "
                   f"for (int32_t e = 0; e < {outs[2]}; ++e) "
                   f"*q++ = ((a * {s3[0]}) * {Hp} + b * {s3[1]}) * {Wp} + e * {s3[2]};")


def conv_tiles(cx, T, x, Cg, K, ins, outs, k3, p3, s3, d3, out_sp, W, Mg, bias, act):
    """Tiles of output positions: unfold (im2col) a tile, multiply, then bias + activation while it is hot."""
    from .gemm import gemm_call
    w = cx.w
    cx.helper("im2col3d_tile", IM2COL)
    tile = col_tile(K, out_sp)
    col = cx.scratch(K * tile, x.dtype, "col")
    with w.block(f"for (long p0 = 0; p0 < {out_sp}; p0 += {tile})"):
        w.line(f"const long np = std::min<long>({tile}, {out_sp} - p0);")
        w.line(f"im2col3d_tile(xg, {Cg}, {ins[0]}, {ins[1]}, {ins[2]}, {k3[0]}, {k3[1]}, {k3[2]}, "
               f"{p3[0]}, {p3[1]}, {p3[2]}, {s3[0]}, {s3[1]}, {s3[2]}, {d3[0]}, {d3[1]}, {d3[2]}, "
               f"{outs[1]}, {outs[2]}, p0, np, {col});")
        w.line(gemm_call(T, False, False, Mg, "np", K, 1.0, f"{W} + g * {Mg * K}", K, col, "np", 0.0,
                         "yg + p0", out_sp))
        epilogue(w, T, Mg, "size_t(np)", str(out_sp), "yg", "bg" if bias else None, act, col0="p0")


@generates("ConvTranspose")
def gen_conv_transpose(cx):
    op, w = cx.op, cx.w
    x, wt, y = cx.vin(0), cx.vin(1), cx.vout(0)
    T = cx.ctype(0)
    nsp = x.rank - 2
    ks, strides, dil, pads = op.geometry(cx.node)
    G = int(op.group)
    C = int(x.shape[1])
    packed = op.__dict__.get("packed")
    Mg = packed["Mg"] if packed is not None else int(wt.shape[1])
    M = Mg * G
    Cg = C // G
    ins = as3d(x.shape[2:], 1)
    outs = as3d(y.shape[2:], 1)
    k3, s3, d3 = as3d(ks, 1), as3d(strides, 1), as3d(dil, 1)
    p3 = as3d(pads[:nsp], 0)
    in_sp = ins[0] * ins[1] * ins[2]
    out_sp = outs[0] * outs[1] * outs[2]
    kvol = k3[0] * k3[1] * k3[2]
    X, W, Y = cx.i(0), cx.i(1), cx.o(0)
    if packed is not None and packed.get("gemm"):
        return gemm_conv_transpose(cx, ins, outs, k3, s3, d3, p3, C, Cg, G, M, Mg)
    if packed is not None:
        return packed_conv_transpose(cx, ins, outs, k3, s3, d3, p3, C, Cg, G, M, Mg)
    cx.helper("col2im3d", COL2IM)
    col = cx.scratch(Mg * kvol * in_sp, x.dtype, "col")
    N = cpp_dim(x.shape[0])
    from .gemm import gemm_call
    with w.loop("n", N):
        with w.loop("g", str(G)):
            w.line(f"const {T}* xg = {X} + (n * {C} + g * {Cg}) * {in_sp};")
            w.line(f"{T}* yg = {Y} + (n * {M} + g * {Mg}) * {out_sp};")
            if cx.has(2):
                with w.loop("m", str(Mg)):
                    w.line(f"std::fill_n(yg + m * {out_sp}, {out_sp}, {cx.i(2)}[g * {Mg} + m]);")
            else:
                w.line(f"std::fill_n(yg, {Mg * out_sp}, {T}(0));")
            # col = W_g^T * X_g : (Mg*K) x in_sp
            w.line(gemm_call(T, True, False, Mg * kvol, in_sp, Cg, 1.0, f"{W} + g * {Cg * Mg * kvol}", Mg * kvol,
                             "xg", in_sp, 0.0, col, in_sp))
            w.line(f"col2im3d({col}, {Mg}, {outs[0]}, {outs[1]}, {outs[2]}, {k3[0]}, {k3[1]}, {k3[2]}, "
                   f"{p3[0]}, {p3[1]}, {p3[2]}, {s3[0]}, {s3[1]}, {s3[2]}, {d3[0]}, {d3[1]}, {d3[2]}, "
                   f"{ins[0]}, {ins[1]}, {ins[2]}, yg);")
            act = fused_act(op)
            if act is not None:
                epilogue(w, T, 1, Mg * out_sp, "0", "yg", None, act)


@contextlib.contextmanager
def _images_and_groups(cx, C, Cg, G, M, Mg, in_sp, out_sp):
    """Loops over the batch (n) and the groups (g) of a float convolution, with xg / yg pointing at the group's
    input and output channels."""
    w = cx.w
    with w.loop("n", cpp_dim(cx.vin(0).shape[0])):
        with w.loop("g", str(G)):
            w.line(f"const float* xg = {cx.i(0)} + (n * {C} + g * {Cg}) * {in_sp};")
            w.line(f"float* yg = {cx.o(0)} + (n * {M} + g * {Mg}) * {out_sp};")
            yield


def packed_conv_transpose(cx, ins, outs, k3, s3, d3, p3, C, Cg, G, M, Mg):
    """ConvTranspose with weights packed per output phase (passes.fusion.PackConvWeights): each phase is a
    stride-1 correlation of the padded input run by conv_indirect, writing its outputs through an index table."""
    from ....ir import DType
    w = cx.w
    use_runtime_header(cx, "pysofie_conv.h")
    NC = 16
    Mp = (Mg + NC - 1) // NC * NC
    dims, L, (Dp, Hp, Wp) = transpose_phases(ins, outs, k3, s3, d3, p3)
    subs = transpose_subproblems(dims)
    in_sp = ins[0] * ins[1] * ins[2]
    out_sp = outs[0] * outs[1] * outs[2]
    img = Cg * Dp * Hp * Wp
    if img >= 2 ** 31:
        raise cx.op.fail(cx.node, "padded image of more than 2^31 elements")
    T = cx.vin(0).dtype
    xp = cx.scratch(img, T, "xpad")
    sizes = [(ph[0][2] * ph[1][2] * ph[2][2], Cg * len(ph[0][3]) * len(ph[1][3]) * len(ph[2][3])) for ph in subs]
    acc = cx.thread_scratch(max(acc_floats(P, Mp) for P, _ in sizes), T, "acc")
    tab = cx.scratch(sum(2 * P + max(1, K) for P, K in sizes), DType.INT32, "tables")
    # the tables of every phase: output index, input base, reduction offsets
    places = []
    at, woff = 0, 0
    with w.block(""):
        w.line(f"int32_t* q = {tab};")
        for ph, (P, K) in zip(subs, sizes):
            (_, o0, n0, t0, b0), (_, o1, n1, t1, b1), (_, o2, n2, t2, b2) = ph
            places.append((at, at + P, at + 2 * P, woff, P, K))
            at += 2 * P + max(1, K)
            woff += G * Mp * K
            w.line(f"for (int32_t a = 0; a < {n0}; ++a) for (int32_t b = 0; b < {n1}; ++b) "
                   f"for (int32_t e = 0; e < {n2}; ++e) *q++ = (({o0} + a * {s3[0]}) * {outs[1]} + {o1} + b * {s3[1]})"
                   f" * {outs[2]} + {o2} + e * {s3[2]};")
            w.line(f"for (int32_t a = 0; a < {n0}; ++a) for (int32_t b = 0; b < {n1}; ++b) "
                   f"for (int32_t e = 0; e < {n2}; ++e) *q++ = (({b0 + L[0]} + a) * {Hp} + {b1 + L[1]} + b) * {Wp}"
                   f" + {b2 + L[2]} + e;")
            taps = [-((td * Hp + th) * Wp + tw) for _, td in t0 for _, th in t1 for _, tw in t2]
            if taps:
                w.line(f"static const int32_t taps{len(places)}[] = {{{', '.join(map(str, taps))}}};")
                w.line(f"for (int32_t c = 0; c < {Cg}; ++c) for (int32_t t = 0; t < {len(taps)}; ++t) "
                       f"*q++ = c * {Dp * Hp * Wp} + taps{len(places)}[t];")
            else:
                w.line("*q++ = 0;")
    act = fused_act(cx.op)
    W = cx.i(1)
    with _images_and_groups(cx, C, Cg, G, M, Mg, in_sp, out_sp):
        pool = cx.pool()
        w.line(f"pysofie_conv::pad_image({pool}, xg, {Cg}, {ins[0]}, {ins[1]}, {ins[2]}, {L[0]}, {L[1]}, {L[2]}, "
               f"{Dp}, {Hp}, {Wp}, {xp});")
        bias = f"{cx.i(2)} + g * {Mg}" if cx.has(2) else "nullptr"
        for yi, pi, oi, wo, P, K in places:
            w.line(f"pysofie_conv::conv_indirect({P}, {tab} + {pi}, {tab} + {yi}, {xp}, {K}, {tab} + {oi}, "
                   f"{W} + {wo} + g * {Mp * K}, {Mg}, {Mp}, {bias}, yg, {out_sp}, {acc[0]}, {act_lambda(act)}, "
                   f"nullptr, &{pool}, {acc[1]});")


def gemm_conv_transpose(cx, ins, outs, k3, s3, d3, p3, C, Cg, G, M, Mg):
    """ConvTranspose of a small image (passes.fusion.PackConvWeights chose it): colT[i][tap][m] = sum_c x[c][i] *
    W[c][m][tap] by the packed matrix kernel of runtime/pysofie_gemm.h, then each (input position, tap) row is
    added to its output position in a [m / 16][o][16] buffer, which conv's store_band writes out (bias,
    activation, transposed to channels-first)."""
    w = cx.w
    use_runtime_header(cx, "pysofie_conv.h")
    use_runtime_header(cx, "pysofie_gemm.h")
    Mp = (Mg + 15) // 16 * 16
    kvol = k3[0] * k3[1] * k3[2]
    Nc = kvol * Mg  # columns [tap][channel]
    from ..passes.gemm_pack import pack_panels
    wsize = pack_panels(np.zeros((1, Nc), np.float32)).size  # packed floats per input channel
    in_sp = ins[0] * ins[1] * ins[2]
    out_sp = outs[0] * outs[1] * outs[2]
    T = cx.vin(0).dtype
    colT = cx.scratch(in_sp * Nc, T, "colT")
    yT = cx.scratch(Mp * out_sp, T, "yT")
    xT = cx.scratch(in_sp * Cg, T, "xT")
    act = fused_act(cx.op)
    W = cx.i(1)
    with _images_and_groups(cx, C, Cg, G, M, Mg, in_sp, out_sp):
        # the image channels-last first, so that the matrix kernel reads its rows contiguously
        w.line(f"for (long c = 0; c < {Cg}; ++c) for (long i = 0; i < {in_sp}; ++i) {xT}[i * {Cg} + c] = "
               f"xg[c * {in_sp} + i];")
        w.line(f"pysofie_gemm::gemm_packed({in_sp}, {Nc}, {Cg}, {xT}, {Cg}, 1, {W} + g * {Cg * wsize}, {colT}, {Nc}, "
               f"false, nullptr, pysofie_gemm::NONE, 0.f, &{cx.pool()});")
        w.line(f"std::fill({yT}, {yT} + {Mp * out_sp}, 0.f);")
        with w.block(f"for (long a = 0; a < {ins[0]}; ++a) for (long b = 0; b < {ins[1]}; ++b) "
                     f"for (long e = 0; e < {ins[2]}; ++e)"):
            w.line(f"const float* ci = {colT} + ((a * {ins[1]} + b) * {ins[2]} + e) * {Nc};")
            with w.block(f"for (long kd = 0; kd < {k3[0]}; ++kd)"):
                w.line(f"const long od = a * {s3[0]} - {p3[0]} + kd * {d3[0]};")
                w.line(f"if (od < 0 || od >= {outs[0]}) continue;")
                with w.block(f"for (long kh = 0; kh < {k3[1]}; ++kh)"):
                    w.line(f"const long oh = b * {s3[1]} - {p3[1]} + kh * {d3[1]};")
                    w.line(f"if (oh < 0 || oh >= {outs[1]}) continue;")
                    with w.block(f"for (long kw = 0; kw < {k3[2]}; ++kw)"):
                        w.line(f"const long ow = e * {s3[2]} - {p3[2]} + kw * {d3[2]};")
                        w.line(f"if (ow < 0 || ow >= {outs[2]}) continue;")
                        w.line(f"const float* __restrict src = ci + ((kd * {k3[1]} + kh) * {k3[2]} + kw) * {Mg};")
                        w.line(f"float* __restrict dst = {yT} + ((od * {outs[1]} + oh) * {outs[2]} + ow) * 16;")
                        with w.block(f"for (long mb = 0; mb < {Mg // 16}; ++mb)"):
                            w.line(f"for (long c = 0; c < 16; ++c) dst[mb * {out_sp * 16} + c] += src[mb * 16 + c];")
                        if Mg % 16:
                            w.line(f"for (long c = 0; c < {Mg % 16}; ++c) dst[{Mg // 16 * out_sp * 16} + c] += "
                                   f"src[{Mg // 16 * 16} + c];")
        bias = f"{cx.i(2)} + g * {Mg}" if cx.has(2) else "nullptr"
        w.line(f"pysofie_conv::store_band({yT}, {out_sp * 16}, 0, {out_sp}, nullptr, {Mg}, {bias}, yg, {out_sp}, "
               f"{act_lambda(act)});")
