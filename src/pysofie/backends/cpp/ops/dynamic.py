"""Generators of operators whose output size the data decides at run time (Op.runtime_sizes): the node
function receives the run-time size as a reference and sets it; buffers are sized by its upper bound."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ....ops.base import runtime_symbol
from ..emitter import generates
from ..names import c_string


@generates("NonZero")
def gen_nonzero(cx):
    w = cx.w
    x = cx.vin(0)
    X, Y = cx.i(0), cx.o(0)
    R = runtime_symbol(cx.node)
    n = cx.size(0)
    dims = [cpp_dim(d) for d in x.shape]
    w.line("size_t count = 0;")
    with w.loop("i", n):
        w.line(f"if ({X}[i]) ++count;")
    w.line(f"{R} = count;")
    if not dims:  # a scalar: shape [0, count], nothing to write
        return
    w.line("size_t j = 0;")
    with w.loop("i", n):
        with w.block(f"if ({X}[i])"):
            w.line("size_t rest = i;")
            for d in range(len(dims) - 1, -1, -1):
                w.line(f"{Y}[{d} * count + j] = static_cast<int64_t>(rest % {dims[d]});")
                if d:
                    w.line(f"rest /= {dims[d]};")
            w.line("++j;")


def compress_runtime(cx):
    """Compress with a condition computed at run time: the kept count is the run-time size. A condition shorter
    than the axis keeps nothing past its end; a longer one is an error (as in onnxruntime)."""
    from ....ops.base import norm_axis
    w = cx.w
    x = cx.vin(0)
    X, C, Y = cx.i(0), cx.i(1), cx.o(0)
    R = runtime_symbol(cx.node)
    clen = cpp_dim(cx.vin(1).shape[0])
    if cx.op.axis is None:
        outer, n, inner = "1", cx.size(0), "1"
    else:
        a = norm_axis(cx.op.axis, x.rank)
        outer = cpp_dim(numel(x.shape[:a]))
        n = cpp_dim(x.shape[a])
        inner = cpp_dim(numel(x.shape[a + 1:]))
    msg = c_string(f"{cx.node.describe()}: the condition is longer than the compressed axis")
    w.line(f"if (size_t({clen}) > size_t({n})) throw std::runtime_error({msg});")
    w.line(f"const size_t m = std::min<size_t>({clen}, {n});")
    w.line("size_t count = 0;")
    with w.loop("k", "m"):
        w.line(f"if ({C}[k]) ++count;")
    w.line(f"{R} = count;")
    w.line("size_t at = 0;")
    with w.loop("o", outer):
        with w.loop("k", "m"):
            with w.block(f"if ({C}[k])"):
                w.line(f"std::copy_n({X} + (o * {n} + k) * {inner}, {inner}, {Y} + at);")
                w.line(f"at += {inner};")


@generates("Unique")
def gen_unique(cx):
    """Slices along the axis (elements when flattened) are stably sorted, equal neighbours grouped; groups are
    numbered in sorted order (sorted=1) or in order of first occurrence."""
    from ....ir import DType
    from ....ops.base import norm_axis
    w = cx.w
    x = cx.vin(0)
    X = cx.i(0)
    nout = len(cx.node.outputs)
    Y, IDX, INV, CNT = (cx.o(k) if k < nout else None for k in range(4))
    R = runtime_symbol(cx.node)
    ext = cx.op.extent(cx.node)
    if cx.op.axis is None:
        outer, n, inner = "1", cx.size(0), "1"
    else:
        a = norm_axis(cx.op.axis, x.rank)
        outer, n, inner = cpp_dim(numel(x.shape[:a])), cpp_dim(x.shape[a]), cpp_dim(numel(x.shape[a + 1:]))
    ord_, gid, first, rank = (cx.scratch(ext, DType.INT64, nm) for nm in ("order", "group", "first", "rank"))
    w.line(f"const size_t n = {n};")
    w.line(f"auto less = [&](int64_t u, int64_t v) {{")
    with w.indented():
        with w.loop("o", outer):
            with w.loop("i", inner):
                w.line(f"const auto a = {X}[(o * n + static_cast<size_t>(u)) * {inner} + i];")
                w.line(f"const auto b = {X}[(o * n + static_cast<size_t>(v)) * {inner} + i];")
                w.line("if (a < b) return true;")
                w.line("if (b < a) return false;")
        w.line("return false;")
    w.line("};")
    with w.loop("k", "n"):
        w.line(f"{ord_}[k] = static_cast<int64_t>(k);")
    w.line(f"std::stable_sort({ord_}, {ord_} + n, less);")
    w.line("size_t groups = 0;")
    with w.loop("t", "n"):
        with w.block(f"if (t == 0 || less({ord_}[t - 1], {ord_}[t]))"):
            w.line(f"{first}[groups++] = {ord_}[t];")
        w.line(f"{gid}[{ord_}[t]] = static_cast<int64_t>(groups - 1);")
    w.line(f"{R} = groups;")
    if int(cx.op.sorted):
        with w.loop("g", "groups"):
            w.line(f"{rank}[g] = static_cast<int64_t>(g);")
    else:  # numbered by first occurrence
        w.line("size_t next = 0;")
        with w.loop("k", "n"):
            w.line(f"const size_t g = static_cast<size_t>({gid}[k]);")
            w.line(f"if (static_cast<size_t>({first}[g]) == k) {rank}[g] = static_cast<int64_t>(next++);")
    with w.loop("g", "groups"):
        w.line(f"const size_t u = static_cast<size_t>({rank}[g]);")
        if IDX:
            w.line(f"{IDX}[u] = {first}[g];")
        if CNT:
            w.line(f"{CNT}[u] = 0;")
        with w.loop("o", outer):
            w.line(f"std::copy_n({X} + (o * n + static_cast<size_t>({first}[g])) * {inner}, {inner}, "
                   f"{Y} + (o * groups + u) * {inner});")
    if INV or CNT:
        with w.loop("k", "n"):
            w.line(f"const int64_t u = {rank}[static_cast<size_t>({gid}[k])];")
            if INV:
                w.line(f"{INV}[k] = u;")
            if CNT:
                w.line(f"++{CNT}[static_cast<size_t>(u)];")


@generates("NonMaxSuppression")
def gen_nms(cx):
    """Per batch and class: candidates above the score threshold by descending score (lower box index first on
    ties), each kept unless its IoU with a box kept before exceeds the threshold, up to the maximum count."""
    from ....ir import DType
    w = cx.w
    b, s = cx.vin(0), cx.vin(1)
    T = cx.ctype(0)
    B, S, O = cx.i(0), cx.i(1), cx.o(0)
    R = runtime_symbol(cx.node)
    nb, nbox = cpp_dim(b.shape[0]), cpp_dim(b.shape[1])
    ncls = cpp_dim(s.shape[1])
    cand = cx.scratch(b.shape[1], DType.INT64, "cand")
    kept = cx.scratch(b.shape[1], DType.INT64, "kept")
    w.line(f"const int64_t max_out = {f'std::max<int64_t>({cx.i(2)}[0], 0)' if cx.has(2) else '0'};")
    w.line(f"const {T} iou_thr = {f'{cx.i(3)}[0]' if cx.has(3) else f'{T}(0)'};")
    w.line(f"[[maybe_unused]] const {T} score_thr = {f'{cx.i(4)}[0]' if cx.has(4) else f'{T}(0)'};")
    if int(cx.op.center_point_box) == 0:  # [y1, x1, y2, x2], corners in any order
        w.line(f"auto corners = [&](const {T}* p, {T}& y0, {T}& x0, {T}& y1, {T}& x1) {{ "
               "y0 = std::min(p[0], p[2]); y1 = std::max(p[0], p[2]); "
               "x0 = std::min(p[1], p[3]); x1 = std::max(p[1], p[3]); };")
    else:  # [x_center, y_center, width, height]
        w.line(f"auto corners = [&](const {T}* p, {T}& y0, {T}& x0, {T}& y1, {T}& x1) {{ "
               "x0 = p[0] - p[2] / 2; x1 = p[0] + p[2] / 2; y0 = p[1] - p[3] / 2; y1 = p[1] + p[3] / 2; };")
    w.line(f"auto suppress = [&](const {T}* p, const {T}* q) {{")
    with w.indented():
        w.line(f"{T} ay0, ax0, ay1, ax1, by0, bx0, by1, bx1;")
        w.line("corners(p, ay0, ax0, ay1, ax1);")
        w.line("corners(q, by0, bx0, by1, bx1);")
        w.line(f"const {T} ix0 = std::max(ax0, bx0), ix1 = std::min(ax1, bx1);")
        w.line("if (ix1 <= ix0) return false;")
        w.line(f"const {T} iy0 = std::max(ay0, by0), iy1 = std::min(ay1, by1);")
        w.line("if (iy1 <= iy0) return false;")
        w.line(f"const {T} inter = (ix1 - ix0) * (iy1 - iy0);")
        w.line(f"const {T} a1 = (ax1 - ax0) * (ay1 - ay0), a2 = (bx1 - bx0) * (by1 - by0);")
        w.line(f"const {T} uni = a1 + a2 - inter;")
        w.line(f"if (inter <= 0 || a1 <= 0 || a2 <= 0 || uni <= 0) return false;")
        w.line("return inter / uni > iou_thr;")
    w.line("};")
    w.line("size_t count = 0;")
    with w.loop("bi", nb):
        w.line(f"const {T}* bb = {B} + bi * {nbox} * 4;")
        with w.loop("c", ncls):
            w.line(f"const {T}* sc = {S} + (bi * {ncls} + c) * {nbox};")
            w.line("size_t nc = 0;")
            with w.loop("k", nbox):
                cond = "sc[k] > score_thr" if cx.has(4) else "true"
                w.line(f"if ({cond}) {cand}[nc++] = static_cast<int64_t>(k);")
            w.line(f"std::stable_sort({cand}, {cand} + nc, [&](int64_t u, int64_t v) {{ return sc[u] > sc[v]; }});")
            w.line("size_t nk = 0;")
            with w.loop("t", "nc"):
                w.line("if (static_cast<int64_t>(nk) >= max_out) break;")
                w.line(f"const int64_t k = {cand}[t];")
                w.line("bool keep = true;")
                with w.loop("j", "nk"):
                    w.line(f"if (suppress(bb + k * 4, bb + {kept}[j] * 4)) {{ keep = false; break; }}")
                w.line("if (!keep) continue;")
                w.line(f"{kept}[nk++] = k;")
                w.line(f"{O}[count * 3] = static_cast<int64_t>(bi);")
                w.line(f"{O}[count * 3 + 1] = static_cast<int64_t>(c);")
                w.line(f"{O}[count * 3 + 2] = k;")
                w.line("++count;")
    w.line(f"{R} = count;")


def range_runtime(cx):
    """Range whose start, limit or delta is computed at run time: a size with no bound known before the run. Its
    size phase computes the length as onnxruntime does (ceil of the difference over delta, in double), so that
    the Session grows the buffers; the node then writes start + i * delta (the spec's formula)."""
    import numpy as np
    from .common import lit
    T = cx.vout(0).dtype.ctype
    R = runtime_symbol(cx.node)

    def scalar(k: int) -> str:
        v = cx.vin(k)
        if cx.has(k):
            return f"{cx.i(k)}[0]"
        if v.sym is not None:
            return f"static_cast<{T}>(int64_t({cpp_dim(v.sym[0])}))"
        c = np.asarray(v.const).reshape(())
        return f"static_cast<{T}>({lit(c) if v.dtype.is_float else f'int64_t({int(c)})'})"

    first, last, step = (cx.unique(nm) for nm in ("first", "last", "step"))  # not a spec (parameter) name
    sw = cx.size_writer()
    zero = c_string(f"{cx.node.describe()}: delta is zero")
    huge = c_string(f"{cx.node.describe()}: the range's length is not a number or too large")
    sw.line(f"const {T} {first} = {scalar(0)}, {last} = {scalar(1)}, {step} = {scalar(2)};")
    sw.line(f"if ({step} == {T}(0)) throw std::invalid_argument({zero});")
    sw.line(f"const double n = std::ceil((double({last}) - double({first})) / double({step}));")
    sw.line(f"if (!(n <= 4.0e18)) throw std::invalid_argument({huge});")
    sw.line(f"{R} = n > 0 ? static_cast<size_t>(n) : 0;")
    w = cx.w
    w.line(f"const {T} {first} = {scalar(0)}, {step} = {scalar(2)};")
    with w.loop("i", R):
        w.line(f"{cx.o(0)}[i] = static_cast<{T}>({first} + static_cast<{T}>(i) * {step});")
