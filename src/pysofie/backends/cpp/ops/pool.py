"""MaxPool, AveragePool (through one 3-D window loop) and global pooling."""
from __future__ import annotations

from ....ir.shapes import Sym, cpp_dim, is_static, numel
from ..emitter import generates
from .conv import as3d


@generates("MaxPool", "AveragePool")
def gen_pool(cx):
    op, w = cx.op, cx.w
    x, y = cx.vin(0), cx.vout(0)
    T = cx.ctype(0)
    nsp = x.rank - 2
    ks, strides, dil, pads, _ = op.geometry(cx.node)
    ins, outs = as3d(x.shape[2:], 1), as3d(y.shape[2:], 1)
    k3, s3, d3 = as3d(ks, 1), as3d(strides, 1), as3d(dil, 1)
    pb, pe = as3d(pads[:nsp], 0), as3d(pads[nsp:], 0)
    is_max = op.op_type == "MaxPool"
    include_pad = (not is_max) and bool(op.count_include_pad)
    NC = cpp_dim(numel(x.shape[:2]))
    in_sp, out_sp = ins[0] * ins[1] * ins[2], outs[0] * outs[1] * outs[2]
    X, Y = cx.i(0), cx.o(0)
    if is_max and ins[0] == 1 and k3[0] == 1 and d3[1] == 1 and d3[2] == 1 and is_static(ins + outs):
        return max_pool_2d(cx, T, NC, ins, outs, k3, s3, pb)
    # signed extents: a window index may be negative (symbolic sizes are size_t in C++)
    ins = [_signed(d) for d in ins]
    hi = [_signed(d + e) for d, e in zip(as3d(x.shape[2:], 1), pe)]
    outs = [_signed(d) for d in outs]
    with w.loop("nc", NC):
        w.line(f"const {T}* xp = {X} + nc * {in_sp};")
        w.line(f"{T}* yp = {Y} + nc * {out_sp};")
        with w.block(f"for (long od = 0; od < {outs[0]}; ++od)"):
            with w.block(f"for (long oh = 0; oh < {outs[1]}; ++oh)"):
                with w.block(f"for (long ow = 0; ow < {outs[2]}; ++ow)"):
                    init = f"-std::numeric_limits<{T}>::infinity()" if is_max else f"{T}(0)"
                    w.line(f"{T} acc = {init};")
                    w.line("long count = 0;")
                    for a, (o, k) in enumerate(zip(("od", "oh", "ow"), ("kd", "kh", "kw"))):
                        w.open(f"for (long {k} = 0; {k} < {k3[a]}; ++{k})")
                        w.line(f"const long i{a} = {o} * {s3[a]} - {pb[a]} + {k} * {d3[a]};")
                        if include_pad:
                            w.line(f"if (i{a} >= {hi[a]}) continue;")
                            w.line(f"if (i{a} < -{pb[a]}) continue;")
                            w.line(f"const bool in{a} = i{a} >= 0 && i{a} < {ins[a]};")
                        else:
                            w.line(f"if (i{a} < 0 || i{a} >= {ins[a]}) continue;")
                    if include_pad:
                        w.line("++count;")
                        w.line("if (!(in0 && in1 && in2)) continue;")
                    else:
                        w.line("++count;")
                    w.line(f"const {T} v = xp[(i0 * {ins[1]} + i1) * {ins[2]} + i2];")
                    w.line("acc = pysofie_rt::max_nan(acc, v);" if is_max else "acc += v;")
                    for _ in range(3):
                        w.close()
                    idx = f"(od * {outs[1]} + oh) * {outs[2]} + ow"
                    if is_max:
                        w.line(f"yp[{idx}] = acc;")
                    else:
                        w.line(f"yp[{idx}] = count ? acc / {T}(count) : {T}(0);")


def _signed(d) -> str:
    return str(d) if not isinstance(d, Sym) else f"long({cpp_dim(d)})"


@generates("GlobalAveragePool", "GlobalMaxPool")
def gen_global_pool(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    NC = cpp_dim(numel(x.shape[:2]))
    S = cpp_dim(numel(x.shape[2:]))
    is_max = cx.op.op_type == "GlobalMaxPool"
    with w.loop("nc", NC):
        w.line(f"const {T}* xp = {cx.i(0)} + nc * {S};")
        w.line(f"{T} acc = xp[0];")
        with w.loop("i", S, "1"):
            w.line("acc = pysofie_rt::max_nan(acc, xp[i]);" if is_max else "acc += xp[i];")
        w.line(f"{cx.o(0)}[nc] = acc;" if is_max else f"{cx.o(0)}[nc] = acc / {T}({S});")


def max_pool_2d(cx, T, NC, ins, outs, k3, s3, pb):
    """1-D / 2-D MaxPool without dilation, separably: per output row, the maximum of the window's input rows
    (clipped to the image) into a padded row buffer (a contiguous, vectorizable loop), then the maximum along the
    row for each output column."""
    w = cx.w
    H, W = ins[1], ins[2]
    OH, OW = outs[1], outs[2]
    KH, KW = k3[1], k3[2]
    sh, sw = s3[1], s3[2]
    pw = pb[2]
    Wt = max(pw + W, (OW - 1) * sw + KW)
    tmp = cx.scratch(Wt, cx.vin(0).dtype, "rowmax")
    low = (f"(std::numeric_limits<{T}>::has_infinity ? -std::numeric_limits<{T}>::infinity() : "
           f"std::numeric_limits<{T}>::lowest())")
    w.line(f"const {T} lowest = {low};")
    with w.loop("nc", NC):
        w.line(f"const {T}* xp = {cx.i(0)} + nc * {H * W};")
        w.line(f"{T}* yp = {cx.o(0)} + nc * {OH * OW};")
        with w.block(f"for (long oh = 0; oh < {OH}; ++oh)"):
            w.line(f"const long ih0 = oh * {sh} - {pb[1]};")
            w.line(f"const long kh0 = std::max<long>(0, -ih0), kh1 = std::min<long>({KH}, {H} - ih0);")
            w.line(f"std::fill({tmp}, {tmp} + {Wt}, lowest);")
            with w.block("for (long kh = kh0; kh < kh1; ++kh)"):
                w.line(f"const {T}* row = xp + (ih0 + kh) * {W};")
                w.line(f"{T}* t = {tmp} + {pw};")
                w.line(f"for (long j = 0; j < {W}; ++j) t[j] = pysofie_rt::max_nan(t[j], row[j]);")
            with w.block(f"for (long ow = 0; ow < {OW}; ++ow)"):
                w.line(f"const {T}* t = {tmp} + ow * {sw};")
                w.line(f"{T} acc = t[0];")
                w.line(f"for (long kw = 1; kw < {KW}; ++kw) acc = pysofie_rt::max_nan(acc, t[kw]);")
                w.line(f"yp[oh * {OW} + ow] = acc;")
