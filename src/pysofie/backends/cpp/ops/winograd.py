"""Winograd convolution F(m x m, r x r) (weights transformed by backends/cpp/passes/winograd.py): per block of
output tiles, the input transform, the n^2 products by runtime/pysofie_conv.h's indirect kernel, and the output
transform with bias, residual and activation. AVX2 transforms on 8 tiles of a tile row at a time (m = 2 or 4), or
one tile at a time (scalar transforms: targets without AVX2, and narrow outputs with many channels)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim
from .common import use_runtime_header
from .conv import acc_floats, act_expr, act_lambda, fused_act

WINO_BUDGET = 1 << 19  # floats of transformed input + products per block of tiles (~2 MiB)
# ... where the transformed weights are small (under WINO_SMALL_U floats, they stay in L2 whatever the block): blocks
# whose transformed input and products stay in L2 too (measured: the 90 -> 45 channel 4x4 ConvTranspose of
# ConvTModel_G4 ~20 % faster than with 2 MiB blocks; ResNet-18's larger layers slower with small blocks)
WINO_BUDGET_SMALL = 1 << 17
WINO_SMALL_U = 1 << 18


def _lincomb(coefs, terms) -> str:
    parts = []
    for c, t in zip(coefs, terms):
        if abs(c) < 1e-12:
            continue
        if abs(c - 1.0) < 1e-12:
            parts.append(f"+ {t}")
        elif abs(c + 1.0) < 1e-12:
            parts.append(f"- {t}")
        else:
            parts.append(f"+ {float(c)!r}f * {t}")
    if not parts:
        return "0.f"
    e = " ".join(parts)
    return e[2:] if e.startswith("+ ") else "-" + e[2:]


def winograd_conv(cx, wino, ins, outs, pads):
    """F(m x m, r x r) Winograd convolution (passes.winograd): per block of output tiles, transform the input
    patches (B^T d B), multiply each of the n^2 transformed planes by the pre-transformed weights (indirect
    kernel), transform back (A^T . A) and write the m x m outputs with bias and activation."""
    from ..passes.winograd import winograd_matrices
    w = cx.w
    m, r, M, C = wino["m"], wino["r"], wino["M"], wino["C"]
    AT, _, BT = winograd_matrices(m, r)
    n = m + r - 1
    A2 = n * n
    H, W = ins[1], ins[2]
    OH, OW = outs[1], outs[2]
    pt, pl = pads[0], pads[1]
    TH, TW = -(-OH // m), -(-OW // m)
    T = TH * TW
    N0 = cx.vin(0).shape[0]
    budget = WINO_BUDGET_SMALL if A2 * C * wino["Mp"] < WINO_SMALL_U else WINO_BUDGET
    TB = max(16, budget // (A2 * (C + M)))
    TB = min(T * (N0 if isinstance(N0, int) else 1), TB)
    act = fused_act(cx.op)
    residual = bool(cx.op.__dict__.get("residual"))
    buf = cx.scratch(A2 * (C + M) * TB, cx.vin(0).dtype, "wino")
    from ....ir import DType
    use_runtime_header(cx, "pysofie_conv.h")
    Mp = wino["Mp"]
    acc = cx.thread_scratch(acc_floats(TB, Mp), cx.vin(0).dtype, "acc")
    tabs = cx.scratch(TB + C, DType.INT32, "tables")
    if wino.get("mode") == "tiles":  # narrow outputs (few tiles per row): the tile-major path on every target
        winograd_tiles(cx, m, n, AT, BT, C, M, Mp, ins, outs, pads, TH, TW, TB, acc, buf, tabs, act, threaded=True)
        return
    # AVX2 version: 8 tiles of a tile row per vector (an image padded once; stride-2 patches by deinterleaving)
    TWv = -(-TW // 8) * 8
    RB = max(1, min(TH, budget // (A2 * (C + M) * TWv)))
    Hq, Wq = m * TH + n, m * TWv + n + 16
    vbuf = cx.scratch(C * Hq * Wq + A2 * (C + M) * RB * TWv, cx.vin(0).dtype, "winov")
    vacc = cx.thread_scratch(acc_floats(RB * TWv, Mp), cx.vin(0).dtype, "accv")
    vtabs = cx.scratch(RB * TWv + C, DType.INT32, "tablesv")
    w.line("#if defined(__AVX2__) && defined(__FMA__)")
    winograd_vector(cx, m, n, AT, BT, C, M, Mp, ins, outs, pads, TH, TW, TWv, RB, Hq, Wq, vbuf, vacc, vtabs, act)
    w.line("#else")
    winograd_tiles(cx, m, n, AT, BT, C, M, Mp, ins, outs, pads, TH, TW, TB, acc, buf, tabs, act, threaded=False)
    w.line("#endif")


def winograd_tiles(cx, m, n, AT, BT, C, M, Mp, ins, outs, pads, TH, TW, TB, acc, buf, tabs, act, threaded):
    """Winograd by blocks of TB tiles (of all the images of the batch), one patch at a time (scalar transforms):
    the path of targets without AVX2, and of narrow outputs (passes.winograd: mode "tiles"), where the products
    dominate. threaded: the transforms spread over the channels, the products over the n^2 planes, on the Session's pool (acc per thread)."""
    w = cx.w
    A2 = n * n
    H, W = ins[1], ins[2]
    OH, OW = outs[1], outs[2]
    pt, pl = pads[0], pads[1]
    T = TH * TW
    residual = bool(cx.op.__dict__.get("residual"))
    X, U, Y = cx.i(0), cx.i(1), cx.o(0)
    N = cpp_dim(cx.vin(0).shape[0])
    pool = cx.pool() if threaded else None
    w.line(f"int32_t* pos = {tabs};")
    w.line(f"int32_t* off = {tabs} + {TB};")
    with w.block(""):  # the tiles of all the images of the batch, in blocks of TB (the weights read per block)
        w.line(f"const long ntiles = long({N}) * {T};")
        with w.block(f"for (long t0 = 0; t0 < ntiles; t0 += {TB})"):
            w.line(f"const long nt = std::min<long>({TB}, ntiles - t0);")
            w.line(f"float* V = {buf};")
            w.line(f"float* P = {buf} + {A2 * C} * nt;")
            # input transform
            if pool:
                w.open(f"{pool}.run_range({C}, 1, [&](long c0, long c1, int)")
            with w.block(f"for (long c = {'c0' if pool else 0}; c < {'c1' if pool else C}; ++c)"):
                with w.block("for (long tt = 0; tt < nt; ++tt)"):
                    w.line(f"const long b = (t0 + tt) / {T}, t = (t0 + tt) % {T};")
                    w.line(f"const float* xc = {X} + (b * {C} + c) * {H * W};")
                    w.line(f"const long ih0 = (t / {TW}) * {m} - {pt}, iw0 = (t % {TW}) * {m} - {pl};")
                    w.line(f"float d[{n}][{n}];")
                    with w.block(f"if (ih0 >= 0 && iw0 >= 0 && ih0 + {n} <= {H} && iw0 + {n} <= {W})"):
                        with w.block(f"for (long i = 0; i < {n}; ++i)"):
                            w.line(f"for (long j = 0; j < {n}; ++j) d[i][j] = xc[(ih0 + i) * {W} + iw0 + j];")
                    with w.block("else"):
                        with w.block(f"for (long i = 0; i < {n}; ++i)"):
                            with w.block(f"for (long j = 0; j < {n}; ++j)"):
                                w.line("const long ih = ih0 + i, iw = iw0 + j;")
                                w.line(f"d[i][j] = (ih >= 0 && ih < {H} && iw >= 0 && iw < {W}) ? xc[ih * {W} + iw] "
                                       ": 0.f;")
                    _input_transform(w, BT, n, C, "float", _lincomb, lambda k, j: f"d[{k}][{j}]",
                                     lambda xi, e: f"V[(c * {A2} + {xi}) * nt + tt] = {e};")
            if pool:
                w.close("});")
            _winograd_products(w, C, M, Mp, A2, U, acc[0], pool, acc[1])
            # output transform
            if pool:
                w.open(f"{pool}.run_range({M}, 1, [&](long m0, long m1, int)")
            with w.block(f"for (long mc = {'m0' if pool else 0}; mc < {'m1' if pool else M}; ++mc)"):
                if cx.has(2):
                    w.line(f"const float bm = {cx.i(2)}[mc];")
                with w.block("for (long tt = 0; tt < nt; ++tt)"):
                    w.line(f"const long b = (t0 + tt) / {T}, t = (t0 + tt) % {T};")
                    w.line(f"float* ym = {Y} + (b * {M} + mc) * {OH * OW};")
                    if residual:
                        w.line(f"const float* rm = {cx.i(3)} + (b * {M} + mc) * {OH * OW};")
                    w.line(f"const long oh0 = (t / {TW}) * {m}, ow0 = (t % {TW}) * {m};")
                    _output_columns(w, AT, m, n, "float", _lincomb, lambda xi: f"P[(mc * {A2} + {xi}) * nt + tt]")
                    for i in range(m):
                        for j in range(m):
                            e = _lincomb(AT[j], [f"u{i}_{k}" for k in range(n)])
                            if cx.has(2):
                                e = f"({e}) + bm"
                            val = f"v{i}_{j}"
                            w.line(f"const float {val} = {e};")
                            if residual:  # read only where the output exists (inside the store's condition)
                                val = f"({val} + rm[(oh0 + {i}) * {OW} + ow0 + {j}])"
                            res = act_expr(act, val, "float") if act is not None else val
                            cond = []
                            if OH % m:
                                cond.append(f"oh0 + {i} < {OH}")
                            if OW % m:
                                cond.append(f"ow0 + {j} < {OW}")
                            store = f"ym[(oh0 + {i}) * {OW} + ow0 + {j}] = {res};"
                            w.line(f"if ({' && '.join(cond)}) {store}" if cond else store)
            if pool:
                w.close("});")


def _input_transform(w, BT, n, C, T, lincomb, d, store) -> None:
    """V = B^T d B for one patch: s = B^T d (columns), then the rows of s by B; store(xi, expr) writes V[xi]."""
    for i in range(n):
        for j in range(n):
            w.line(f"const {T} s{i}_{j} = {lincomb(BT[i], [d(k, j) for k in range(n)])};")
    for i in range(n):
        for j in range(n):
            w.line(store(i * n + j, lincomb(BT[j], [f's{i}_{k}' for k in range(n)])))


def _output_columns(w, AT, m, n, T, lincomb, load) -> None:
    """First half of Y = A^T P A for one tile: q = the n x n products (load(xi) reads P[xi]), u = A^T q."""
    for i in range(n):
        for j in range(n):
            w.line(f"const {T} q{i}_{j} = {load(i * n + j)};")
    for i in range(m):
        for j in range(n):
            w.line(f"const {T} u{i}_{j} = {lincomb(AT[i], [f'q{k}_{j}' for k in range(n)])};")


def _winograd_products(w, C, M, Mp, A2, U, acc, pool=None, stride=None) -> None:
    """The n^2 products P[.][xi][.] (M x nt) = U[xi] (M x C) * V[.][xi][.] (C x nt) by the indirect kernel, V laid
    out [c][xi][tt] and P [m][xi][tt] (the transforms of a channel walk one contiguous region, not n^2 streams):
    output position tt reads V[c][xi][tt] at xi * nt + pos[tt] + off[c] = tt + c * n^2 * nt. With a pool, one
    product per task (acc per thread)."""
    w.line("for (long tt = 0; tt < nt; ++tt) pos[tt] = int32_t(tt);")
    w.line(f"for (long c = 0; c < {C}; ++c) off[c] = int32_t(c * {A2} * nt);")
    head = (f"{pool}.run({A2}, [&](long xi, int tid)" if pool else f"for (long xi = 0; xi < {A2}; ++xi)")
    w.open(head)
    a = f"{acc} + tid * {stride}" if pool else acc
    w.line(f"pysofie_conv::conv_indirect(nt, pos, nullptr, V + xi * nt, {C}, off, {U} + xi * {Mp * C}, "
           f"{M}, {Mp}, nullptr, P + xi * nt, {A2} * nt, {a}, pysofie_conv::ActNone{{}});")
    w.close("});" if pool else "}")


def _vlincomb(coefs, terms) -> str:
    """sum_k coefs[k] * terms[k] over __m256 values, as intrinsics (zero coefficients skipped)."""
    e = None
    for c, t in zip(coefs, terms):
        if abs(c) < 1e-12:
            continue
        if e is None:
            if abs(c - 1.0) < 1e-12:
                e = t
            elif abs(c + 1.0) < 1e-12:
                e = f"_mm256_sub_ps(_mm256_setzero_ps(), {t})"
            else:
                e = f"_mm256_mul_ps(_mm256_set1_ps({float(c)!r}f), {t})"
        elif abs(c - 1.0) < 1e-12:
            e = f"_mm256_add_ps({e}, {t})"
        elif abs(c + 1.0) < 1e-12:
            e = f"_mm256_sub_ps({e}, {t})"
        else:
            e = f"_mm256_fmadd_ps(_mm256_set1_ps({float(c)!r}f), {t}, {e})"
    return e or "_mm256_setzero_ps()"


def winograd_vector(cx, m, n, AT, BT, C, M, Mp, ins, outs, pads, TH, TW, TWv, RB, Hq, Wq, buf, acc, tabs, act):
    """The AVX2 body of winograd_conv (m = 2 or 4): input and output transforms on 8 tiles of a tile row at a time.
    m = 2: the patches' columns by deinterleaving pairs; m = 4: by 4 x 4 transposes within the 128-bit lanes, which
    leave the 8 tiles in the order 0 2 4 6 1 3 5 7 on the lanes (the products do not care; the output transform's
    transposes restore the order)."""
    assert m in (2, 4)
    residual = bool(cx.op.__dict__.get("residual"))
    w = cx.w
    A2 = n * n
    H, W = ins[1], ins[2]
    OH, OW = outs[1], outs[2]
    pt, pl = pads[0], pads[1]
    X, U, Y = cx.i(0), cx.i(1), cx.o(0)
    N = cpp_dim(cx.vin(0).shape[0])
    pool = cx.pool()
    w.line(f"float* xq = {buf};")
    w.line(f"float* V = {buf} + {C * Hq * Wq};")
    w.line(f"int32_t* pos = {tabs};")
    w.line(f"int32_t* off = {tabs} + {RB * TWv};")
    w.line(f"const auto act = {act_lambda(act)};")
    w.line("(void)act;")
    with w.loop("b", N):
        w.line(f"const float* xb = {X} + b * {C * H * W};")
        w.line(f"float* yb = {Y} + b * {M * OH * OW};")
        w.line(f"pysofie_conv::pad_image({pool}, xb, {C}, 1, {H}, {W}, 0, {pt}, {pl}, 1, {Hq}, {Wq}, xq);")
        with w.block(f"for (long ty0 = 0; ty0 < {TH}; ty0 += {RB})"):
            w.line(f"const long ty1 = std::min<long>({TH}, ty0 + {RB});")
            w.line(f"const long nt = (ty1 - ty0) * {TWv};")
            w.line("float* P = V + " + str(A2 * C) + " * nt;")
            # input transform, the channels spread over the threads
            w.open(f"{pool}.run_range({C}, 1, [&](long c0, long c1, int)")
            with w.block("for (long c = c0; c < c1; ++c)"):
                with w.block("for (long ty = ty0; ty < ty1; ++ty)"):
                    with w.block(f"for (long tx0 = 0; tx0 < {TWv}; tx0 += 8)"):
                        w.line(f"const long tt = (ty - ty0) * {TWv} + tx0;")
                        w.line(f"const float* base = xq + (c * {Hq} + {m} * ty) * {Wq} + {m} * tx0;")
                        if m == 4:
                            _load_patches4(w, n, Wq)
                        else:
                            for i in range(n):
                                for jj in range(0, n, 2):
                                    w.line(f"const __m256 l{i}_{jj} = _mm256_loadu_ps(base + {i * Wq + jj}), "
                                           f"h{i}_{jj} = _mm256_loadu_ps(base + {i * Wq + jj + 8});")
                                    w.line(f"const __m256 d{i}_{jj} = _mm256_castpd_ps(_mm256_permute4x64_pd("
                                           f"_mm256_castps_pd(_mm256_shuffle_ps(l{i}_{jj}, h{i}_{jj}, 0x88)), "
                                           "0xD8));")
                                    if jj + 1 < n:
                                        w.line(f"const __m256 d{i}_{jj + 1} = _mm256_castpd_ps(_mm256_permute4x64_pd("
                                               f"_mm256_castps_pd(_mm256_shuffle_ps(l{i}_{jj}, h{i}_{jj}, 0xDD)), "
                                               "0xD8));")
                        _input_transform(w, BT, n, C, "__m256", _vlincomb, lambda k, j: f"d{k}_{j}",
                                         lambda xi, e: f"_mm256_storeu_ps(V + (c * {A2} + {xi}) * nt + tt, {e});")
            w.close("});")
            _winograd_products(w, C, M, Mp, A2, U, acc[0], pool, acc[1])
            # output transform, bias, activation; m output rows of 8m columns per 8 tiles
            w.open(f"{pool}.run_range({M}, 1, [&](long m0, long m1, int)")
            with w.block("for (long mc = m0; mc < m1; ++mc)"):
                w.line(f"float* ym = yb + mc * {OH * OW};")
                if residual:
                    w.line(f"const float* rm = {cx.i(3)} + (b * {M} + mc) * {OH * OW};")
                w.line(f"const __m256 bm = _mm256_set1_ps({cx.i(2) + '[mc]' if cx.has(2) else '0.f'});")
                with w.block("for (long ty = ty0; ty < ty1; ++ty)"):
                    with w.block(f"for (long tx0 = 0; tx0 < {TWv}; tx0 += 8)"):
                        w.line(f"const float* pq = P + mc * {A2} * nt + (ty - ty0) * {TWv} + tx0;")
                        _output_columns(w, AT, m, n, "__m256", _vlincomb,
                                        lambda xi: f"_mm256_loadu_ps(pq + {xi} * nt)")
                        for i in range(m):
                            for j in range(m):
                                e = _vlincomb(AT[j], [f"u{i}_{k}" for k in range(n)])
                                w.line(f"const __m256 v{i}_{j} = _mm256_add_ps({e}, bm);")
                        _store_rows(w, m, OH, OW, residual)
            w.close("});")


def _transpose4(w, r, o, need=4) -> None:
    """o[k] (lanes) = r[0..3][k] within each 128-bit lane of the __m256 values named r (4 x 4 transposes), for the
    first `need` outputs k."""
    w.line(f"const __m256 {o}t0 = _mm256_unpacklo_ps({r[0]}, {r[1]}), {o}t2 = _mm256_unpacklo_ps({r[2]}, {r[3]});")
    if need > 2:
        w.line(f"const __m256 {o}t1 = _mm256_unpackhi_ps({r[0]}, {r[1]}), "
               f"{o}t3 = _mm256_unpackhi_ps({r[2]}, {r[3]});")
    for k in range(need):
        a, b = (f"{o}t0", f"{o}t2") if k < 2 else (f"{o}t1", f"{o}t3")
        w.line(f"__m256 {o}{k} = _mm256_shuffle_ps({a}, {b}, {'0x44' if k % 2 == 0 else '0xEE'});")


def _load_patches4(w, n, Wq) -> None:
    """d{i}_{j} (i, j < n <= 8): element (i, j) of the n x n patches of 8 tiles (stride 4) starting at base, the
    tiles on the lanes in the order 0 2 4 6 1 3 5 7: per patch row, the 32 floats from base and from base + 4 by
    lane-wise 4 x 4 transposes (columns 0-3, then 4-7)."""
    w.line("__m256 " + ", ".join(f"d{i}_{j}" for i in range(n) for j in range(n)) + ";")
    for i in range(n):
        with w.block(""):
            for h, sh in ((0, 0), (1, 4)):
                w.line(f"const __m256 a{h}0 = _mm256_loadu_ps(base + {i * Wq + sh}), "
                       f"a{h}1 = _mm256_loadu_ps(base + {i * Wq + sh + 8}), "
                       f"a{h}2 = _mm256_loadu_ps(base + {i * Wq + sh + 16}), "
                       f"a{h}3 = _mm256_loadu_ps(base + {i * Wq + sh + 24});")
                _transpose4(w, [f"a{h}{k}" for k in range(4)], f"e{h}", 4 if h == 0 else n - 4)
            for j in range(n):  # columns 0-3 from the first transposes, 4-7 from the second
                w.line(f"d{i}_{j} = e{j // 4}{j % 4};")


def _store_rows(w, m, OH, OW, residual) -> None:
    """The m x m outputs v{i}_{j} of 8 tiles as m rows of 8m floats in memory order (m = 2: lanes interleaved by
    unpack + permute; m = 4, lanes in the order 0 2 4 6 1 3 5 7: lane-wise 4 x 4 transposes); residual,
    activation, then the row's valid columns."""
    nf = 8 * m
    w.line(f"const long ow0 = {m} * tx0;")
    for i in range(m):
        with w.block(f"if ({m} * ty + {i} < {OH})"):
            if m == 4:
                _transpose4(w, [f"v{i}_{j}" for j in range(4)], "o")
            else:
                w.line(f"const __m256 lo = _mm256_unpacklo_ps(v{i}_0, v{i}_1), "
                       f"hi = _mm256_unpackhi_ps(v{i}_0, v{i}_1);")
                w.line("const __m256 o0 = _mm256_permute2f128_ps(lo, hi, 0x20), "
                       "o1 = _mm256_permute2f128_ps(lo, hi, 0x31);")
            w.line(f"float* yr = ym + ({m} * ty + {i}) * {OW} + ow0;")
            if residual:
                w.line(f"const float* rr = rm + ({m} * ty + {i}) * {OW} + ow0;")
            with w.block(f"if (ow0 + {nf} <= {OW})"):
                for k in range(m):
                    v = f"_mm256_add_ps(o{k}, _mm256_loadu_ps(rr + {8 * k}))" if residual else f"o{k}"
                    w.line(f"_mm256_storeu_ps(yr + {8 * k}, act.vec({v}));")
            with w.block(f"else if (ow0 < {OW})"):  # the last columns: the activation still on vectors
                w.line(f"alignas(32) float t[{nf}];")
                w.line(f"const long nv = std::min<long>({nf}, {OW} - ow0);")
                for k in range(m):
                    w.line(f"_mm256_store_ps(t + {8 * k}, o{k});")
                if residual:
                    w.line("for (long j = 0; j < nv; ++j) t[j] += rr[j];")
                w.line(f"for (long k = 0; k < {nf}; k += 8) _mm256_store_ps(t + k, act.vec(_mm256_load_ps(t + k)));")
                w.line("std::copy(t, t + nv, yr);")
