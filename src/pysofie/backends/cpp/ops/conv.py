"""Conv and ConvTranspose (1D/2D/3D, groups, dilations, pads) as im2col / col2im around a BLAS sgemm.

All spatial ranks run through the same 3-D helpers: a 1-D or 2-D convolution is a 3-D one whose leading
spatial extents are 1.
"""
from __future__ import annotations

from ....ir.shapes import cpp_dim
from ..emitter import generates

IM2COL = """\
// Unfold the receptive fields of one image (C x D x H x W) into columns: col[(c,kd,kh,kw)][(od,oh,ow)].
template <typename T>
inline void im2col3d(const T* x, long C, long D, long H, long W, long KD, long KH, long KW, long pd, long ph,
                     long pw, long sd, long sh, long sw, long dd, long dh, long dw, long OD, long OH, long OW,
                     T* col) {
   for (long c = 0; c < C; ++c)
      for (long kd = 0; kd < KD; ++kd)
         for (long kh = 0; kh < KH; ++kh)
            for (long kw = 0; kw < KW; ++kw) {
               T* out = col + (((c * KD + kd) * KH + kh) * KW + kw) * OD * OH * OW;
               for (long od = 0; od < OD; ++od) {
                  const long id = od * sd - pd + kd * dd;
                  for (long oh = 0; oh < OH; ++oh) {
                     const long ih = oh * sh - ph + kh * dh;
                     T* o = out + (od * OH + oh) * OW;
                     if (id < 0 || id >= D || ih < 0 || ih >= H) {
                        std::fill(o, o + OW, T(0));
                        continue;
                     }
                     const T* row = x + ((c * D + id) * H + ih) * W;
                     const long iw0 = kw * dw - pw;
                     if (sw == 1 && iw0 >= 0 && iw0 + OW <= W) {
                        std::copy(row + iw0, row + iw0 + OW, o);
                        continue;
                     }
                     for (long ow = 0; ow < OW; ++ow) {
                        const long iw = ow * sw + iw0;
                        o[ow] = (iw >= 0 && iw < W) ? row[iw] : T(0);
                     }
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
                     for (long iw = 0; iw < IW; ++iw) {
                        const long ow = iw * sw - pw + kw * dw;
                        if (ow >= 0 && ow < W) row[ow] += src[iw];
                     }
                  }
               }
            }
}
"""


def as3d(vals, fill):
    vals = list(vals)
    return [fill] * (3 - len(vals)) + vals


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
    X, W, Y = cx.i(0), cx.i(1), cx.o(0)
    pointwise = kvol == 1 and all(s == 1 for s in s3) and all(p == 0 for p in pads)
    if not pointwise:
        cx.helper("im2col3d", IM2COL)
        col = cx.scratch(Cg * kvol * out_sp, x.dtype, "col")
    N = cpp_dim(x.shape[0])
    from .gemm import gemm_call
    with w.loop("n", N):
        with w.loop("g", str(G)):
            w.line(f"const {T}* xg = {X} + (n * {C} + g * {Cg}) * {in_sp};")
            w.line(f"{T}* yg = {Y} + (n * {M} + g * {Mg}) * {out_sp};")
            if pointwise:
                src = "xg"
            else:
                w.line(f"im2col3d(xg, {Cg}, {ins[0]}, {ins[1]}, {ins[2]}, {k3[0]}, {k3[1]}, {k3[2]}, "
                       f"{p3[0]}, {p3[1]}, {p3[2]}, {s3[0]}, {s3[1]}, {s3[2]}, {d3[0]}, {d3[1]}, {d3[2]}, "
                       f"{outs[0]}, {outs[1]}, {outs[2]}, {col});")
                src = col
            beta = 0.0
            if cx.has(2):
                with w.loop("m", str(Mg)):
                    w.line(f"std::fill_n(yg + m * {out_sp}, {out_sp}, {cx.i(2)}[g * {Mg} + m]);")
                beta = 1.0
            w.line(gemm_call(T, False, False, Mg, out_sp, Cg * kvol, 1.0, f"{W} + g * {Mg * Cg * kvol}",
                             Cg * kvol, src, out_sp, beta, "yg", out_sp))


@generates("ConvTranspose")
def gen_conv_transpose(cx):
    op, w = cx.op, cx.w
    x, wt, y = cx.vin(0), cx.vin(1), cx.vout(0)
    T = cx.ctype(0)
    nsp = x.rank - 2
    ks, strides, dil, pads = op.geometry(cx.node)
    G = int(op.group)
    C = int(x.shape[1])
    Mg = int(wt.shape[1])
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
