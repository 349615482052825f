"""Generators of the indexing and layout operators."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates
from .common import loop_nest, strides
from .elementwise import _lit, broadcast_map


def _flat(vs, st) -> str:
    terms = [v if s == "1" else f"{v} * {s}" for v, s in zip(vs, st) if s != "0"]
    return " + ".join(terms) if terms else "0"


def _sstrides(shape) -> list[str]:
    return [cpp_dim(s) for s in strides(list(shape))]


def _norm_index(w, var: str, expr: str, n: str, what: str) -> None:
    """long long var = expr, negative values counted from the end, checked against n."""
    w.line(f"long long {var} = static_cast<long long>({expr});")
    w.line(f"if ({var} < 0) {var} += static_cast<long long>({n});")
    w.line(f"if ({var} < 0 || {var} >= static_cast<long long>({n})) "
           f"throw std::out_of_range(\"{what}: index out of range\");")


@generates("Expand")
def gen_expand(cx):
    broadcast_map(cx, "a", [0], ["a"])


@generates("Tile")
def gen_tile(cx):
    w = cx.w
    x = cx.vin(0)
    st = _sstrides(x.shape)
    dims = cx.dims(0)
    w.line("size_t pos = 0;")
    loop_nest(w, cx.odims(0), lambda vs: w.line(
        f"{cx.o(0)}[pos++] = {cx.i(0)}[{_flat([f'({v} % {d})' for v, d in zip(vs, dims)], st)}];"))


@generates("Pad")
def gen_pad(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    op = cx.op
    pads = op.pads_of(cx.node)
    st = _sstrides(x.shape)
    dims = cx.dims(0)
    if cx.has(2):
        w.line(f"const {T} value = {cx.i(2)}[0];")
    else:
        w.line(f"const {T} value = static_cast<{T}>({_lit(op.value if op.value is not None else 0.0, 'double')});")
    w.line("(void)value;")
    w.line("size_t pos = 0;")
    mode = op.mode

    def body(vs):
        w.line("bool inside = true;")
        w.line("(void)inside;")
        srcs = []
        for k, (v, (b, _e)) in enumerate(zip(vs, pads)):
            if b == 0 and _e == 0:
                srcs.append(v)
                continue
            d = f"static_cast<long long>({dims[k]})"
            j = f"j{k}"
            w.line(f"long long {j} = static_cast<long long>({v}) - {b};")
            if mode == "constant":
                w.line(f"if ({j} < 0 || {j} >= {d}) inside = false;")
            elif mode == "edge":
                w.line(f"{j} = {j} < 0 ? 0 : ({j} >= {d} ? {d} - 1 : {j});")
            elif mode == "wrap":
                w.line(f"{j} = (({j} % {d}) + {d}) % {d};")
            else:  # reflect (mirror without repeating the edge), repeated for pads beyond the size
                with w.block(f"if ({d} == 1) {j} = 0; else while ({j} < 0 || {j} >= {d})"):
                    w.line(f"if ({j} < 0) {j} = -{j};")
                    w.line(f"if ({j} >= {d}) {j} = 2 * ({d} - 1) - {j};")
            srcs.append(f"static_cast<size_t>({j})")
        idx = _flat(srcs, st)
        if mode == "constant":
            w.line(f"{cx.o(0)}[pos++] = inside ? {cx.i(0)}[{idx}] : value;")
        else:
            w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[{idx}];")

    loop_nest(w, cx.odims(0), body)


@generates("GatherElements")
def gen_gather_elements(cx):
    w = cx.w
    x = cx.vin(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    st = _sstrides(x.shape)
    dims = cx.dims(0)
    w.line("size_t pos = 0;")

    def body(vs):
        _norm_index(w, "k", f"{cx.i(1)}[pos]", dims[a], "GatherElements")
        vv = list(vs)
        vv[a] = "static_cast<size_t>(k)"
        w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[{_flat(vv, st)}];")

    loop_nest(w, cx.dims(1), body)


@generates("GatherND")
def gen_gather_nd(cx):
    w = cx.w
    x, idx = cx.vin(0), cx.vin(1)
    b = int(cx.op.batch_dims)
    k = int(idx.shape[-1])
    B = cpp_dim(numel(idx.shape[:b]))
    M = cpp_dim(numel(idx.shape[b:-1]))
    S = cpp_dim(numel(x.shape[b + k:]))
    dbatch = cpp_dim(numel(x.shape[b:]))
    st = _sstrides(x.shape[b:])
    dims = cx.dims(0)[b:]
    with w.loop("bi", B):
        with w.loop("m", M):
            w.line(f"const int64_t* ix = {cx.i(1)} + (bi * {M} + m) * {k};")
            w.line(f"size_t off = bi * {dbatch};")
            for j in range(k):
                _norm_index(w, f"k{j}", f"ix[{j}]", dims[j], "GatherND")
                w.line(f"off += static_cast<size_t>(k{j}) * {st[j]};")
            w.line(f"std::copy_n({cx.i(0)} + off, {S}, {cx.o(0)} + (bi * {M} + m) * {S});")


def _reduce_stmt(red: str, dst: str, src: str, T: str) -> str:
    return {"none": f"{dst} = {src};",
            "add": f"{dst} = static_cast<{T}>({dst} + {src});",
            "mul": f"{dst} = static_cast<{T}>({dst} * {src});",
            "max": f"{dst} = std::max<{T}>({dst}, {src});",
            "min": f"{dst} = std::min<{T}>({dst}, {src});"}[red]


@generates("ScatterElements", "Scatter")
def gen_scatter_elements(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    st = _sstrides(x.shape)
    dims = cx.dims(0)
    w.line(f"std::copy_n({cx.i(0)}, {cx.size(0)}, {cx.o(0)});")
    w.line("size_t pos = 0;")

    def body(vs):
        _norm_index(w, "k", f"{cx.i(1)}[pos]", dims[a], "ScatterElements")
        vv = list(vs)
        vv[a] = "static_cast<size_t>(k)"
        w.line(_reduce_stmt(cx.op.reduction, f"{cx.o(0)}[{_flat(vv, st)}]", f"{cx.i(2)}[pos]", T))
        w.line("++pos;")

    loop_nest(w, cx.dims(1), body)


@generates("ScatterND")
def gen_scatter_nd(cx):
    w = cx.w
    x, idx = cx.vin(0), cx.vin(1)
    T = cx.ctype(0)
    k = int(idx.shape[-1])
    M = cpp_dim(numel(idx.shape[:-1]))
    S = cpp_dim(numel(x.shape[k:]))
    st = _sstrides(x.shape)
    dims = cx.dims(0)
    w.line(f"std::copy_n({cx.i(0)}, {cx.size(0)}, {cx.o(0)});")
    with w.loop("m", M):
        w.line(f"const int64_t* ix = {cx.i(1)} + m * {k};")
        w.line("size_t off = 0;")
        for j in range(k):
            _norm_index(w, f"k{j}", f"ix[{j}]", dims[j], "ScatterND")
            w.line(f"off += static_cast<size_t>(k{j}) * {st[j]};")
        with w.loop("s", S):
            w.line(_reduce_stmt(cx.op.reduction, f"{cx.o(0)}[off + s]", f"{cx.i(2)}[m * {S} + s]", T))


@generates("Split")
def gen_split(cx):
    w = cx.w
    x = cx.vin(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(x.shape[:a]))
    in_inner = cpp_dim(numel(x.shape[a:]))
    off = 0
    for k, (s, v) in enumerate(zip(cx.op.sizes(cx.node), cx.node.outputs)):
        inner = cpp_dim(numel(v.shape[a:]))
        start = cpp_dim(off * numel(x.shape[a + 1:])) if off else "0"
        with w.loop("o", outer):
            w.line(f"std::copy_n({cx.i(0)} + o * {in_inner} + {start}, {inner}, {cx.o(k)} + o * {inner});")
        off = off + s


@generates("TopK")
def gen_topk(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(x.shape[:a]))
    n = cpp_dim(x.shape[a])
    inner = cpp_dim(numel(x.shape[a + 1:]))
    K = cx.op.k_of(cx.node)
    from ....ir import DType
    if cx.has(1):  # K given at run time: checked, then the run-time size of the axis
        from ..names import c_string
        K = cpp_dim(K)
        msg = c_string(f"{cx.node.describe()}: K is negative or larger than the axis")
        w.line(f"if ({cx.i(1)}[0] < 0 || static_cast<size_t>({cx.i(1)}[0]) > size_t({n})) "
               f"throw std::runtime_error({msg});")
        w.line(f"{K} = static_cast<size_t>({cx.i(1)}[0]);")
    idx = cx.scratch(x.shape[a], DType.INT64, "order")
    cmp = ">" if cx.op.largest else "<"
    X = cx.i(0)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const {T}* p = {X} + o * {n} * {inner} + j;")
            with w.loop("t", n):
                w.line(f"{idx}[t] = static_cast<int64_t>(t);")
            # ties: the lower index first, as the spec asks; NaN counts as larger than any number (onnxruntime's
            # order), which also keeps the comparison a strict weak order that std::partial_sort needs
            nan_first = "nu" if cx.op.largest else "nv"
            w.line(f"std::partial_sort({idx}, {idx} + {K}, {idx} + {n}, [&](int64_t u, int64_t v) {{ "
                   f"const {T} pu = p[static_cast<size_t>(u) * {inner}], pv = p[static_cast<size_t>(v) * {inner}]; "
                   f"const bool nu = std::isnan(pu), nv = std::isnan(pv); "
                   f"if (nu || nv) return nu && nv ? u < v : {nan_first}; "
                   f"return pu {cmp} pv || (pu == pv && u < v); }});")
            with w.loop("t", str(K)):
                w.line(f"const size_t at = o * {K} * {inner} + t * {inner} + j;")
                w.line(f"{cx.o(0)}[at] = p[static_cast<size_t>({idx}[t]) * {inner}];")
                w.line(f"{cx.o(1)}[at] = {idx}[t];")


@generates("EyeLike")
def gen_eyelike(cx):
    w = cx.w
    T = cx.octype(0)
    r, c = cx.odims(0)
    k = int(cx.op.k)
    w.line(f"std::fill_n({cx.o(0)}, {cx.osize(0)}, {T}(0));")
    with w.loop("i", r):
        w.line(f"const long long j = static_cast<long long>(i) + ({k});")
        w.line(f"if (j >= 0 && j < static_cast<long long>({c})) {cx.o(0)}[i * {c} + static_cast<size_t>(j)] = {T}(1);")


@generates("OneHot")
def gen_onehot(cx):
    w = cx.w
    idx = cx.vin(0)
    depth = cx.op.depth_of(cx.node)
    a = cx.op.axis + idx.rank + 1 if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(idx.shape[:a]))
    inner = cpp_dim(numel(idx.shape[a:]))
    V = cx.i(2)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"long long k = static_cast<long long>({cx.i(0)}[o * {inner} + j]);")
            w.line(f"if (k < 0) k += {depth};")
            with w.loop("d", str(depth)):
                w.line(f"{cx.o(0)}[(o * {depth} + d) * {inner} + j] = "
                       f"static_cast<long long>(d) == k ? {V}[1] : {V}[0];")


@generates("Trilu")
def gen_trilu(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    k = cx.op.k_of(cx.node)
    B = cpp_dim(numel(x.shape[:-2]))
    R, C = cpp_dim(x.shape[-2]), cpp_dim(x.shape[-1])
    keep = ">=" if cx.op.upper else "<="
    with w.loop("b", B):
        with w.loop("i", R):
            with w.loop("j", C):
                w.line(f"const size_t at = (b * {R} + i) * {C} + j;")
                w.line(f"{cx.o(0)}[at] = static_cast<long long>(j) - static_cast<long long>(i) {keep} ({k}) ? "
                       f"{cx.i(0)}[at] : {T}(0);")


@generates("ReverseSequence")
def gen_reverse_sequence(cx):
    w = cx.w
    x = cx.vin(0)
    d0, d1 = cx.dims(0)[:2]
    inner = cpp_dim(numel(x.shape[2:]))
    tb = cx.op.time_axis == 0
    with w.loop("i0", d0):
        with w.loop("i1", d1):
            t, b = ("i0", "i1") if tb else ("i1", "i0")
            w.line(f"const long long len = static_cast<long long>({cx.i(1)}[{b}]);")
            w.line(f"const long long tt = static_cast<long long>({t}) < len ? len - 1 - static_cast<long long>({t}) "
                   f": static_cast<long long>({t});")
            src = f"(static_cast<size_t>(tt) * {d1} + i1)" if tb else f"(i0 * {d1} + static_cast<size_t>(tt))"
            w.line(f"std::copy_n({cx.i(0)} + {src} * {inner}, {inner}, {cx.o(0)} + (i0 * {d1} + i1) * {inner});")


@generates("DepthToSpace")
def gen_depth_to_space(cx):
    w = cx.w
    N, C, H, W = cx.dims(0)
    b = int(cx.op.blocksize)
    Co = cpp_dim(cx.vout(0).shape[1])
    crd = cx.op.mode == "CRD"
    w.line("size_t pos = 0;")

    def body(vs):
        n, c, y, x = vs
        ch = f"{c} * {b * b} + (({y} % {b}) * {b} + {x} % {b})" if crd else \
            f"(({y} % {b}) * {b} + {x} % {b}) * {Co} + {c}"
        w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[(({n} * {C} + {ch}) * {H} + {y} / {b}) * {W} + {x} / {b}];")

    loop_nest(w, cx.odims(0), lambda vs: body(vs), "i")


@generates("SpaceToDepth")
def gen_space_to_depth(cx):
    w = cx.w
    N, C, H, W = cx.dims(0)
    b = int(cx.op.blocksize)
    w.line("size_t pos = 0;")

    def body(vs):
        n, oc, y, x = vs
        if cx.op.mode == "CRD":
            w.line(f"const size_t c = {oc} / {b * b}, blk = {oc} % {b * b};")
        else:
            w.line(f"const size_t c = {oc} % {C}, blk = {oc} / {C};")
        w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[(({n} * {C} + c) * {H} + {y} * {b} + blk / {b}) * {W} + "
               f"{x} * {b} + blk % {b}];")

    loop_nest(w, cx.odims(0), body, "i")


def _qparams(cx, x):
    a = cx.op.per_axis(cx.node)
    if a is None:
        return "1", "1", "1", False
    return (cpp_dim(numel(x.shape[:a])), cpp_dim(x.shape[a]), cpp_dim(numel(x.shape[a + 1:])), True)


@generates("QuantizeLinear")
def gen_quantize(cx):
    w = cx.w
    x = cx.vin(0)
    Q = cx.octype(0)
    outer, n, inner, per = _qparams(cx, x)
    if not per:
        outer, n, inner = "1", "1", cx.size(0)
    S = cx.i(1)
    with w.loop("o", outer):
        with w.loop("c", n):
            w.line(f"const double s = {S}[{'c' if per else '0'}];")
            zp = f"double({cx.i(2)}[{'c' if per else '0'}])" if cx.has(2) else "0.0"
            w.line(f"const double zp = {zp};")
            with w.loop("j", inner):
                w.line(f"const size_t at = (o * {n} + c) * {inner} + j;")
                w.line(f"double q = std::nearbyint(double({cx.i(0)}[at]) / s) + zp;")
                w.line(f"q = std::min(std::max(q, double(std::numeric_limits<{Q}>::lowest())), "
                       f"double(std::numeric_limits<{Q}>::max()));")
                w.line(f"{cx.o(0)}[at] = static_cast<{Q}>(q);")


@generates("DequantizeLinear")
def gen_dequantize(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.octype(0)
    outer, n, inner, per = _qparams(cx, x)
    if not per:
        outer, n, inner = "1", "1", cx.size(0)
    with w.loop("o", outer):
        with w.loop("c", n):
            w.line(f"const {T} s = {cx.i(1)}[{'c' if per else '0'}];")
            zp = f"{cx.i(2)}[{'c' if per else '0'}]" if cx.has(2) else "0"
            w.line(f"const double zp = double({zp});")
            with w.loop("j", inner):
                w.line(f"const size_t at = (o * {n} + c) * {inner} + j;")
                w.line(f"{cx.o(0)}[at] = static_cast<{T}>((double({cx.i(0)}[at]) - zp) * s);")


@generates("ConstantOfShape")
def gen_constant_of_shape(cx):
    import numpy as np
    v = cx.op.value
    val = np.asarray(v).reshape(-1)[0] if v is not None else 0.0
    T = cx.octype(0)
    val = val.item() if hasattr(val, "item") else val
    lit = ("true" if val else "false") if T == "bool" else (
        _lit(val, T) if isinstance(val, float) else f"static_cast<{T}>({val!r})")
    cx.w.line(f"std::fill_n({cx.o(0)}, {cx.osize(0)}, {lit});")


@generates("Einsum")
def gen_einsum(cx):
    w = cx.w
    ops, out, sizes = cx.op.parse(cx.node)
    dt = cx.vin(0).dtype
    T = cx.ctype(0)
    A = "double" if dt.is_float else T
    summed = [c for c in dict.fromkeys(c for letters in ops for c in letters) if c not in out]
    var = {c: f"o{k}" for k, c in enumerate(out)}
    var.update({c: f"s{k}" for k, c in enumerate(summed)})
    reads = []
    for k, (letters, v) in enumerate(zip(ops, cx.node.inputs)):
        st = strides(list(v.shape))
        terms = []
        for c, d, s in zip(letters, v.shape, st):
            if isinstance(d, int) and d == 1 and not (isinstance(sizes[c], int) and sizes[c] == 1):
                continue  # broadcast
            sc = cpp_dim(s)
            terms.append(var[c] if sc == "1" else f"{var[c]} * {sc}")
        reads.append(f"{A}({cx.i(k)}[{' + '.join(terms) if terms else '0'}])")
    w.line("size_t pos = 0;")

    def outer(_vs):
        w.line(f"{A} acc = 0;")
        loop_nest(w, [cpp_dim(sizes[c]) for c in summed],
                  lambda _r: w.line(f"acc += {' * '.join(reads)};"), "s")
        w.line(f"{cx.o(0)}[pos++] = static_cast<{T}>(acc);")

    loop_nest(w, [cpp_dim(sizes[c]) for c in out], outer, "o")


def _table(name: str, ctype: str, vals) -> str:
    body = ", ".join(vals) if vals else "0"
    return f"static const {ctype} {name}[] = {{{body}}};"


@generates("Resize", "Upsample")
def gen_resize(cx):
    from ....ir.shapes import Sym
    w = cx.w
    op = cx.op
    x = cx.vin(0)
    T = cx.ctype(0)
    scales, roi, out = op._scales_sizes(cx.node)
    st = [cpp_dim(s) for s in strides(list(x.shape))]
    axes_taps = {}
    extrap = False
    runtime = {}
    for a, (n_in, n_out) in enumerate(zip(x.shape, out)):
        if isinstance(n_in, Sym) or isinstance(n_out, Sym):
            if scales[a] != 1.0 or (roi is not None and tuple(roi[a]) != (0.0, 1.0)):
                runtime[a] = (n_in, n_out)
            continue  # scale 1 on a symbolic axis (not cropped): the identity
        taps = op.axis_taps(n_in, n_out, scales[a], None if roi is None else roi[a])
        if n_in == n_out and all(t == [(i, 1.0)] for i, t in enumerate(taps)):
            continue
        axes_taps[a] = taps
        extrap = extrap or any(t is None for t in taps)
    simple = not runtime and all(t is None or len(t) == 1 for taps in axes_taps.values() for t in taps)
    extrap = extrap or bool(runtime and roi is not None)  # tf_crop_and_resize: in{a} tables of every axis
    for a, taps in axes_taps.items():
        m = max(len(t) for t in taps if t is not None) if any(t is not None for t in taps) else 1
        idx, wt, ok = [], [], []
        for t in taps:
            t = t or []
            ok.append("1" if taps and t else "0")
            t = t + [(0, 0.0)] * (m - len(t))
            idx += [str(i) for i, _ in t]
            wt += [repr(float(v)) for _, v in t]
        w.line(_table(f"idx{a}", "size_t", idx))
        if not simple:
            w.line(_table(f"wt{a}", "double", wt))
        if extrap:
            w.line(_table(f"in{a}", "bool", ["true" if o == "1" else "false" for o in ok]))
        axes_taps[a] = (taps, m)
    for a, (n_in, n_out) in runtime.items():
        axes_taps[a] = (None, resize_taps(cx, a, n_in, n_out, scales[a], None if roi is None else roi[a]))
    w.line("size_t pos = 0;")
    ev = float(op.extrapolation_value)

    def body(vs):
        if extrap:
            cond = " && ".join(f"in{a}[{vs[a]}]" for a in axes_taps)
            w.open(f"if (!({cond}))")
            w.line(f"{cx.o(0)}[pos++] = static_cast<{T}>({_lit(ev, 'double')});")
            w.line("continue;")
            w.close()
        if simple:
            terms = []
            for a in range(x.rank):
                i = f"idx{a}[{vs[a]}]" if a in axes_taps else vs[a]
                terms.append(i if st[a] == "1" else f"{i} * {st[a]}")
            w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[{' + '.join(terms) if terms else '0'}];")
            return
        w.line("double acc = 0;")
        tvars = {a: f"t{a}" for a in axes_taps}
        for a, (taps, m) in axes_taps.items():
            w.open(f"for (size_t t{a} = 0; t{a} < {m}; ++t{a})")
        terms, ws = [], []
        for a in range(x.rank):
            if a in axes_taps:
                m = axes_taps[a][1]
                i = f"idx{a}[{vs[a]} * {m} + {tvars[a]}]"
                ws.append(f"wt{a}[{vs[a]} * {m} + {tvars[a]}]")
            else:
                i = vs[a]
            terms.append(i if st[a] == "1" else f"{i} * {st[a]}")
        w.line(f"acc += {' * '.join(ws)} * double({cx.i(0)}[{' + '.join(terms) if terms else '0'}]);")
        for _ in axes_taps:
            w.close()
        w.line(f"{cx.o(0)}[pos++] = static_cast<{T}>(acc);")

    loop_nest(w, [cpp_dim(d) for d in out], body)


def resize_taps(cx, a, n_in, n_out, scale, roi) -> int:
    """Tables idx{a} / wt{a} of a symbolic axis (m taps per output position: 2 for nearest and linear, 4 for
    cubic), and in{a} (whether a position lies inside the crop) for tf_crop_and_resize, computed at run time as
    ops.index.Resize.axis_taps computes them. Returns m."""
    from ....ir import DType
    w, op = cx.w, cx.op
    cubic = op.mode == "cubic"
    m = 4 if cubic else 2
    idx = cx.scratch(m * n_out, DType.INT64, f"taps{a}")
    wt = cx.scratch(m * n_out, DType.DOUBLE, f"weights{a}")
    w.line(f"int64_t* idx{a} = {idx};")
    w.line(f"double* wt{a} = {wt};")
    ctm = op.coordinate_transformation_mode
    if ctm == "tf_crop_and_resize":
        ok = cx.scratch(n_out, DType.UINT8, f"inside{a}")
        w.line(f"uint8_t* in{a} = {ok};")
    with w.block(""):
        # scale None: sizes given (possibly symbolic), the scale is their ratio (as for sizes known at generation)
        sc = "n_out / n_in" if scale is None else repr(scale)
        w.line(f"const double n_in = double({cpp_dim(n_in)}), n_out = double({cpp_dim(n_out)}), "
               f"scale = {sc}, out_w = scale * n_in;")
        w.line("(void)n_out; (void)out_w;")
        with w.loop("x", cpp_dim(n_out)):
            if ctm == "tf_crop_and_resize":
                r0, r1 = (float(v) for v in roi)
                w.line(f"double xo = out_w == 1 ? ({r1!r} - {r0!r}) * (n_in - 1) / 2 "
                       f": double(x) * ({r1!r} - {r0!r}) * (n_in - 1) / (out_w - 1);")
                w.line(f"xo += {r0!r} * (n_in - 1);")
                w.line(f"in{a}[x] = !(xo < 0 || xo > n_in - 1);")
            else:
                xo = {"align_corners": "out_w == 1 ? 0.0 : double(x) * (n_in - 1) / (out_w - 1)",
                      "asymmetric": "double(x) / scale",
                      "pytorch_half_pixel": "out_w == 1 ? -0.5 : (double(x) + 0.5) / scale - 0.5",
                      "half_pixel": "(double(x) + 0.5) / scale - 0.5",
                      "half_pixel_symmetric": "n_in / 2 * (1 - n_out / out_w) + (double(x) + 0.5) / scale - 0.5"}[ctm]
                w.line(f"const double xo = {xo};")
            w.line("const double fl = std::floor(xo);")
            w.line("const bool whole = xo == fl;")
            # an integer position: taps around xo - 1 with ratio 1; else around floor(xo) with the fraction
            w.line("const double r = whole ? 1.0 : xo - fl;")
            w.line("const int64_t i0 = whole ? int64_t(xo) - 1 : int64_t(fl);")
            if op.mode == "nearest":
                c1 = {"round_prefer_floor": "r > 0.5", "round_prefer_ceil": "r >= 0.5", "floor": "false",
                      "ceil": "true"}[op.nearest_mode]
                w.line(f"const double c[2] = {{0, whole ? 1.0 : (({c1}) ? 1.0 : 0.0)}};")
                w.line("const double cw[2] = {1.0 - c[1], c[1]};")
            elif cubic:
                A = repr(float(op.cubic_coeff_a))
                w.line(f"const double A = {A}, s = 1.0 - r;")
                w.line("const double cw[4] = {((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A, "
                       "((A + 2) * r - (A + 3)) * r * r + 1, ((A + 2) * s - (A + 3)) * s * s + 1, "
                       "((A * (s + 1) - 5 * A) * (s + 1) + 8 * A) * (s + 1) - 4 * A};")
            else:
                w.line("const double cw[2] = {1.0 - r, r};")
            w.line("const int64_t last = int64_t(n_in) - 1;")
            w.line("double total = 0;")
            with w.loop("j", str(m)):
                w.line(f"const int64_t i = i0 - {m // 2 - 1} + int64_t(j);")
                outside = "i < 0 || i > last" if op.exclude_outside else "false"
                w.line(f"const double v = ({outside}) ? 0.0 : cw[j];")
                w.line(f"idx{a}[{m} * x + j] = i < 0 ? 0 : (i > last ? last : i);")
                w.line(f"wt{a}[{m} * x + j] = v;")
                w.line("total += v;")
            if op.exclude_outside:
                with w.loop("j", str(m)):
                    w.line(f"wt{a}[{m} * x + j] /= total;")
            else:
                w.line("(void)total;")
    return m


@generates("Range")
def gen_range(cx):
    if cx.op.at_run_time(cx.node):  # bounds computed from data: a run-time size without a bound
        from .dynamic import range_runtime
        return range_runtime(cx)
    # start/limit known at generation time, possibly symbolic (arange(seq)): the length is a size expression
    start, _limit, delta = cx.op.bounds(cx.node)
    T = cx.vout(0).dtype.ctype
    first = f"int64_t({cpp_dim(start)})" if not isinstance(start, float) else repr(start)
    with cx.w.loop("i", cx.osize(0)):
        cx.w.line(f"{cx.o(0)}[i] = static_cast<{T}>(static_cast<{T}>({first}) + "
                  f"static_cast<{T}>(i) * static_cast<{T}>({delta!r}));")
