"""Image and spatial generators: GridSample (nearest / linear / cubic over 1 to 3 spatial dims), AffineGrid,
CenterCropPad, Col2Im and LpPool."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates
from .common import lit, strides
from .conv import as3d

_GS_HELPER = r"""
// GridSample support: coordinates in double; pad 0 zeros, 1 border, 2 reflection
inline double gs_reflect(double x, double lo, double hi) {
  const double rng = hi - lo;
  if (x < lo) {
    const double dx = lo - x;
    const long n = static_cast<long>(dx / rng);
    const double r = dx - double(n) * rng;
    return n % 2 == 0 ? lo + r : hi - r;
  }
  if (x > hi) {
    const double dx = x - hi;
    const long n = static_cast<long>(dx / rng);
    const double r = dx - double(n) * rng;
    return n % 2 == 0 ? hi - r : lo + r;
  }
  return x;
}
// index along one dim of size d: false when it reads a zero (zeros padding, outside)
inline bool gs_index(long i, long d, int pad, double lo, double hi, long& out) {
  if (pad == 0) {
    out = i;
    return i >= 0 && i < d;
  }
  if (pad == 1) {
    out = i < 0 ? 0 : (i > d - 1 ? d - 1 : i);
    return true;
  }
  out = static_cast<long>(gs_reflect(double(i), lo, hi));
  return true;
}
inline void gs_cubic(double x, double* c) {
  const double a = -0.75;
  x = std::abs(x);
  c[0] = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a;
  c[1] = ((a + 2) * x - (a + 3)) * x * x + 1;
  c[2] = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1;
  c[3] = ((a * (2 - x) - 5 * a) * (2 - x) + 8 * a) * (2 - x) - 4 * a;
}
// one output value: img has D spatial dims `dims`; g holds the normalized coordinates in dim order
// mode 0 nearest, 1 linear, 2 cubic
template <typename T>
inline double gs_sample(const T* img, const long* dims, int D, const double* g, int mode, int pad, bool align) {
  double x[3], lo[3], hi[3];
  for (int i = 0; i < D; ++i) {
    const double d = double(dims[i]);
    x[i] = align ? (g[i] + 1) / 2.0 * (d - 1) : ((g[i] + 1) * d - 1) / 2.0;
    lo[i] = align ? 0.0 : -0.5;
    hi[i] = align ? d - 1 : d - 0.5;
    if (mode == 0) x[i] = std::nearbyint(x[i]);
    if (x[i] < lo[i] || x[i] > hi[i]) {
      if (pad == 1) x[i] = x[i] < 0 ? 0 : (x[i] > d - 1 ? d - 1 : x[i]);
      else if (pad == 2) x[i] = gs_reflect(x[i], lo[i], hi[i]);
    }
  }
  if (mode == 0) {
    long off = 0;
    for (int i = 0; i < D; ++i) {
      long k;
      if (!gs_index(static_cast<long>(x[i]), dims[i], pad, lo[i], hi[i], k)) return 0.0;
      off = off * dims[i] + k;
    }
    return double(img[off]);
  }
  const int K = mode == 1 ? 2 : 4;
  long base[3];
  double wts[3][4];
  for (int i = 0; i < D; ++i) {
    const double f = std::floor(x[i]);
    const double t = x[i] - f;
    if (mode == 1) {
      base[i] = static_cast<long>(f);
      wts[i][0] = 1 - t;
      wts[i][1] = t;
    } else {
      base[i] = static_cast<long>(f) - 1;
      gs_cubic(t, wts[i]);
    }
  }
  long corners = 1;
  for (int i = 0; i < D; ++i) corners *= K;
  double acc = 0;
  for (long c = 0; c < corners; ++c) {
    long rem = c, off = 0;
    double wt = 1;
    bool inside = true;
    long sel[3];
    for (int i = D - 1; i >= 0; --i) {
      sel[i] = rem % K;
      rem /= K;
    }
    for (int i = 0; i < D; ++i) {
      long k;
      if (!gs_index(base[i] + sel[i], dims[i], pad, lo[i], hi[i], k)) inside = false;
      off = off * dims[i] + k;
      wt *= wts[i][sel[i]];
    }
    if (inside) acc += wt * double(img[off]);
  }
  return acc;
}
"""


@generates("GridSample")
def gen_grid_sample(cx):
    w = cx.w
    x, y = cx.vin(0), cx.vout(0)
    T, G = cx.ctype(0), cx.ctype(1)
    cx.helper("gridsample", _GS_HELPER)
    D = x.rank - 2
    mode = {"nearest": 0, "linear": 1, "cubic": 2}[cx.op.kind]
    pad = {"zeros": 0, "border": 1, "reflection": 2}[cx.op.padding_mode]
    insp = cpp_dim(numel(x.shape[2:]))
    outsp = cpp_dim(numel(y.shape[2:]))
    X, Gr, Y = cx.i(0), cx.i(1), cx.o(0)
    w.line(f"static const long dims[{D}] = {{{', '.join(str(d) for d in x.shape[2:])}}};")
    with w.loop("n", cpp_dim(x.shape[0])):
        with w.loop("p", outsp):
            w.line(f"const {G}* gp = {Gr} + (n * {outsp} + p) * {D};")
            # the grid lists coordinates innermost dim first (x, y, z)
            w.line(f"const double gc[{D}] = {{{', '.join(f'double(gp[{D - 1 - i}])' for i in range(D))}}};")
            with w.loop("c", cpp_dim(x.shape[1])):
                w.line(f"const size_t nc = n * {cpp_dim(x.shape[1])} + c;")
                w.line(f"{Y}[nc * {outsp} + p] = static_cast<{T}>(gs_sample({X} + nc * {insp}, dims, {D}, gc, "
                       f"{mode}, {pad}, {'true' if cx.op.align_corners else 'false'}));")


@generates("AffineGrid")
def gen_affine_grid(cx):
    w = cx.w
    th = cx.vin(0)
    T = cx.ctype(0)
    size = cx.op.sizes(cx.node)
    sp = size[2:]
    D = len(sp)
    align = bool(cx.op.align_corners)
    TH, Y = cx.i(0), cx.o(0)
    total = int(numel(sp))
    st = strides(sp)

    def coord(i, n):  # normalized base coordinate of index i along a dim of size n
        if align:
            return f"(-1.0 + 2.0 * double({i}) / double({n - 1}))" if n > 1 else "-1.0"
        return f"(-1.0 + (2.0 * double({i}) + 1.0) / double({n}))"

    with w.loop("n", cpp_dim(th.shape[0])):
        w.line(f"const {T}* t = {TH} + n * {D * (D + 1)};")
        with w.loop("p", str(total)):
            # base = (x, y[, z], 1) with x along the last spatial dim
            for k in range(D):
                idx = f"((p / {st[k]}) % {sp[k]})"
                w.line(f"const double b{D - 1 - k} = {coord(idx, sp[k])};")
            with w.loop("r", str(D)):
                terms = " + ".join(f"double(t[r * {D + 1} + {j}]) * b{j}" for j in range(D))
                w.line(f"{Y}[(n * {total} + p) * {D} + r] = static_cast<{T}>({terms} + double(t[r * {D + 1} + {D}]));")


@generates("CenterCropPad")
def gen_center_crop_pad(cx):
    w = cx.w
    x, y = cx.vin(0), cx.vout(0)
    T = cx.ctype(0)
    X, Y = cx.i(0), cx.o(0)
    ist = strides(list(x.shape))
    ost = strides(list(y.shape))
    w.line("size_t src = 0;")
    with w.loop("p", cx.osize(0)):
        w.line("bool inside = true;")
        w.line("src = 0;")
        for k in range(y.rank):
            din, dout = x.shape[k], y.shape[k]
            w.line(f"long i{k} = long((p / {cpp_dim(ost[k])}) % {cpp_dim(dout)});")
            if din != dout:
                if dout < din:
                    w.line(f"i{k} += {(din - dout) // 2};")
                else:
                    w.line(f"i{k} -= {(dout - din) // 2};")
                    w.line(f"if (i{k} < 0 || i{k} >= {din}) inside = false;")
            w.line(f"src += size_t(i{k}) * {cpp_dim(ist[k])};")
        w.line(f"{Y}[p] = inside ? {X}[src] : {T}(0);")


@generates("Col2Im")
def gen_col2im(cx):
    w = cx.w
    y = cx.vout(0)
    T = cx.ctype(0)
    img, blk, dil, st, pads, nb = cx.op.geometry(cx.node)
    k = len(img)
    X, Y = cx.i(0), cx.o(0)
    bsize = int(numel(blk))
    L = int(numel(nb))
    isz = int(numel(img))
    bst, lst, ist = strides(blk), strides(nb), strides(img)
    C = y.shape[1]
    with w.loop("i", cx.osize(0)):
        w.line(f"{Y}[i] = {T}(0);")
    with w.loop("nc", cpp_dim(numel(y.shape[:2]))):
        w.line(f"const size_t c = nc % {C}, n = nc / {C};")
        with w.loop("b", str(bsize)):
            with w.loop("l", str(L)):
                w.line("bool inside = true;")
                w.line("long off = 0;")
                for d in range(k):
                    w.line(f"const long p{d} = long((l / {lst[d]}) % {nb[d]}) * {st[d]} - {pads[d]} + "
                           f"long((b / {bst[d]}) % {blk[d]}) * {dil[d]};")
                    w.line(f"if (p{d} < 0 || p{d} >= {img[d]}) inside = false;")
                    w.line(f"off += p{d} * {ist[d]};")
                w.line(f"if (inside) {Y}[nc * {isz} + size_t(off)] += "
                       f"{X}[(n * {C * bsize} + c * {bsize} + b) * {L} + l];")


@generates("LpPool")
def gen_lp_pool(cx):
    op, w = cx.op, cx.w
    x, y = cx.vin(0), cx.vout(0)
    T = cx.ctype(0)
    nsp = x.rank - 2
    ks, strd, dil, pads, _ = op.geometry(cx.node)
    ins, outs = as3d(x.shape[2:], 1), as3d(y.shape[2:], 1)
    k3, s3, d3 = as3d(ks, 1), as3d(strd, 1), as3d(dil, 1)
    pb = as3d(pads[:nsp], 0)
    p = float(op.p)
    NC = cpp_dim(numel(x.shape[:2]))
    in_sp, out_sp = ins[0] * ins[1] * ins[2], outs[0] * outs[1] * outs[2]
    X, Y = cx.i(0), cx.o(0)
    pw = "v * v" if p == 2 else f"std::pow(std::abs(v), {lit(p, 'double')})"
    fin = "std::sqrt(acc)" if p == 2 else f"std::pow(acc, {lit(1.0 / p, 'double')})"
    with w.loop("nc", NC):
        w.line(f"const {T}* xp = {X} + nc * {in_sp};")
        w.line(f"{T}* yp = {Y} + nc * {out_sp};")
        with w.block(f"for (long od = 0; od < {outs[0]}; ++od)"):
            with w.block(f"for (long oh = 0; oh < {outs[1]}; ++oh)"):
                with w.block(f"for (long ow = 0; ow < {outs[2]}; ++ow)"):
                    w.line("double acc = 0;")
                    for a, (o, kk) in enumerate(zip(("od", "oh", "ow"), ("kd", "kh", "kw"))):
                        w.open(f"for (long {kk} = 0; {kk} < {k3[a]}; ++{kk})")
                        w.line(f"const long i{a} = {o} * {s3[a]} - {pb[a]} + {kk} * {d3[a]};")
                        w.line(f"if (i{a} < 0 || i{a} >= {ins[a]}) continue;")
                    w.line(f"const double v = double(xp[(i0 * {ins[1]} + i1) * {ins[2]} + i2]);")
                    w.line(f"acc += {pw};")
                    for _ in range(3):
                        w.close()
                    w.line(f"yp[(od * {outs[1]} + oh) * {outs[2]} + ow] = static_cast<{T}>({fin});")


@generates("MaxUnpool")
def gen_max_unpool(cx):
    w = cx.w
    inferred, out = cx.op.shapes(cx.node)
    X, I, Y = cx.i(0), cx.i(1), cx.o(0)
    T = cx.ctype(0)
    ist, ost = strides(inferred), strides(out)
    total = cpp_dim(numel(inferred))
    with w.loop("i", cx.osize(0)):
        w.line(f"{Y}[i] = {T}(0);")
    with w.loop("i", cx.size(0)):
        w.line(f"const int64_t at = {I}[i];")
        w.line(f"if (at < 0 || size_t(at) >= size_t({total})) continue;  // outside the unpooled tensor")
        w.line("size_t rem = size_t(at), dst = 0;")
        for k in range(len(inferred)):
            w.line(f"dst += (rem / {cpp_dim(ist[k])}) * {cpp_dim(ost[k])};")
            w.line(f"rem %= {cpp_dim(ist[k])};")
        w.line(f"{Y}[dst] = {X}[i];")


@generates("RoiAlign")
def gen_roi_align(cx):
    w = cx.w
    op = cx.op
    x = cx.vin(0)
    T, R = cx.ctype(0), cx.ctype(1)
    C, H, W = (cpp_dim(d) for d in x.shape[1:])
    N = cpp_dim(x.shape[0])
    oh, ow = int(op.output_height), int(op.output_width)
    X, RO, B, Y = cx.i(0), cx.i(1), cx.i(2), cx.o(0)
    off = 0.5 if op.half_pixel else 0.0
    sr = int(op.sampling_ratio)
    is_max = op.mode == "max"
    with w.loop("r", cpp_dim(cx.vin(1).shape[0])):
        w.line(f"const {R}* roi = {RO} + r * 4;")
        w.line(f"const long bi = long({B}[r]);")
        w.line(f"const double scale = {lit(float(op.spatial_scale), 'double')};")
        w.line(f"const double x0 = double(roi[0]) * scale - {off}, y0 = double(roi[1]) * scale - {off};")
        w.line(f"double rw = double(roi[2]) * scale - {off} - x0, rh = double(roi[3]) * scale - {off} - y0;")
        if not op.half_pixel:
            w.line("rw = std::max(rw, 1.0);")
            w.line("rh = std::max(rh, 1.0);")
        w.line(f"const double bh = rh / {oh}.0, bw = rw / {ow}.0;")
        if sr > 0:
            w.line(f"const long gh = {sr}, gw = {sr};")
        else:
            w.line(f"const long gh = long(std::ceil(rh / {oh}.0)), gw = long(std::ceil(rw / {ow}.0));")
        w.line("const double count = double(std::max<long>(gh * gw, 1));")
        w.line("(void)count;")
        with w.loop("c", C):
            w.line(f"{T}* yp = {Y} + (r * {C} + c) * {oh * ow};")
            w.line(f"const {T}* xp = {X} + (size_t(bi) * {C} + c) * {H} * {W};")
            with w.block(f"if (bi < 0 || bi >= long({N}))"):
                w.line(f"for (size_t k = 0; k < {oh * ow}; ++k) yp[k] = std::numeric_limits<{T}>::quiet_NaN();")
                w.line("continue;")
            with w.loop("ph", str(oh)):
                with w.loop("pw", str(ow)):
                    w.line("double acc = 0;")
                    w.line("bool first = true;")
                    w.line("(void)first;")
                    with w.block("for (long iy = 0; iy < gh; ++iy)"):
                        w.line("double yy = y0 + double(ph) * bh + (double(iy) + 0.5) * bh / double(gh);")
                        with w.block("for (long ix = 0; ix < gw; ++ix)"):
                            w.line("double xx = x0 + double(pw) * bw + (double(ix) + 0.5) * bw / double(gw);")
                            w.line("double v = 0;")
                            with w.block(f"if (!(yy < -1.0 || yy > double({H}) || xx < -1.0 || xx > double({W})))"):
                                w.line("yy = std::max(yy, 0.0);")
                                w.line("xx = std::max(xx, 0.0);")
                                w.line("long yl = long(yy), xl = long(xx), yh, xh;")
                                w.line(f"if (yl >= long({H}) - 1) {{ yh = yl = long({H}) - 1; yy = double(yl); }} "
                                       "else { yh = yl + 1; }")
                                w.line(f"if (xl >= long({W}) - 1) {{ xh = xl = long({W}) - 1; xx = double(xl); }} "
                                       "else { xh = xl + 1; }")
                                w.line("const double ly = yy - double(yl), lx = xx - double(xl);")
                                w.line("const double hy = 1 - ly, hx = 1 - lx;")
                                w.line(f"const double v1 = hy * hx * double(xp[yl * long({W}) + xl]);")
                                w.line(f"const double v2 = hy * lx * double(xp[yl * long({W}) + xh]);")
                                w.line(f"const double v3 = ly * hx * double(xp[yh * long({W}) + xl]);")
                                w.line(f"const double v4 = ly * lx * double(xp[yh * long({W}) + xh]);")
                                if is_max:
                                    w.line("v = std::max(std::max(v1, v2), std::max(v3, v4));")
                                else:
                                    w.line("v = v1 + v2 + v3 + v4;")
                            if is_max:
                                w.line("acc = first ? v : std::max(acc, v);")
                                w.line("first = false;")
                            else:
                                w.line("acc += v;")
                    fin = "acc" if is_max else "acc / count"
                    w.line(f"yp[ph * {ow} + pw] = static_cast<{T}>({fin});")
