"""Normalizations, Softmax, pooling and reductions: one thread per output element or row; the row bodies and
reduction tables are the C++ back end's (backends/cpp/ops/norm.py, reduce.py)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ...cpp.ops.common import axis_extents, reduction_index
from ...cpp.ops.norm import layernorm_row, softmax_row
from ...cpp.ops.reduce import _REDUCE
from ..emitter import coords, float32_only, generates


@generates("BatchNormalization")
def gen_batchnorm(cx):
    x = cx.vin(0)
    T = cx.ctype(0)
    C = cpp_dim(x.shape[1]) if x.rank > 1 else "1"
    inner = cpp_dim(numel(x.shape[2:]))
    eps = float(cx.op.epsilon)
    cx.launch(cx.size(0), [
        f"const size_t c = (i / {inner}) % {C};",
        f"const {T} s = {cx.i(1)}[c] / std::sqrt({cx.i(4)}[c] + {T}({eps!r}));",
        f"{cx.o(0)}[i] = ({cx.i(0)}[i] - {cx.i(3)}[c]) * s + {cx.i(2)}[c];"])


def _softmax(log):
    def gen(cx):
        x = cx.vin(0)
        axis, coerce = cx.op.axis_for(cx.node)
        outer, n, inner = axis_extents(x.shape, axis, coerce)

        def body(w):
            w.line(f"const size_t o = i / {inner};")
            w.line(f"const size_t j = i % {inner};")
            softmax_row(cx, w, log)

        cx.launch(f"{outer} * {inner}", body)
    return gen


generates("Softmax")(_softmax(False))
generates("LogSoftmax")(_softmax(True))


@generates("LayerNormalization")
def gen_layernorm(cx):
    a = cx.op.axis_of(cx.node)

    def body(w):
        w.line("const size_t o = i;")
        layernorm_row(cx, w)

    cx.launch(cpp_dim(numel(cx.vin(0).shape[:a])), body)


# -- pooling --------------------------------------------------------------------------------------------------
@generates("MaxPool", "AveragePool", check=float32_only)
def gen_pool(cx):
    x = cx.vin(0)
    ks, strides, dil, pads, outs = cx.op.geometry(cx.node)
    nsp = len(ks)
    in_sp = [int(d) for d in x.shape[2:]]
    T = cx.ctype(0)
    is_max = cx.op.op_type == "MaxPool"
    include_pad = not is_max and bool(cx.op.count_include_pad)

    def body(w):
        vs = coords(w, [cpp_dim(d) for d in x.shape[:2]] + [str(o) for o in outs])
        w.line(f"const {T}* xp = {cx.i(0)} + ({vs[0]} * {cpp_dim(x.shape[1])} + {vs[1]}) * {numel(in_sp)};")
        w.line(f"{T} acc = {'-std::numeric_limits<' + T + '>::infinity()' if is_max else T + '(0)'};")
        if not is_max:
            w.line("size_t count = 0;")
        for d in range(nsp):
            w.open(f"for (int k{d} = 0; k{d} < {ks[d]}; ++k{d})")
            w.line(f"const long long p{d} = (long long)({vs[2 + d]}) * {strides[d]} + k{d} * {dil[d]} - {pads[d]};")
            if include_pad:
                # count_include_pad counts the padded window (up to the end padding), not beyond it
                w.line(f"if (p{d} >= {in_sp[d] + pads[nsp + d]}) continue;")
                w.line(f"const bool in{d} = p{d} >= 0 && p{d} < {in_sp[d]};")
            else:
                w.line(f"if (p{d} < 0 || p{d} >= {in_sp[d]}) continue;")
        idx = " + ".join(f"p{d} * {numel(in_sp[d + 1:])}" for d in range(nsp))
        if include_pad:
            w.line("++count;")
            with w.block(f"if ({' && '.join(f'in{d}' for d in range(nsp))})"):
                w.line(f"acc += xp[{idx}];")
        elif is_max:
            w.line(f"const {T} v = xp[{idx}];")
            w.line("acc = v > acc || v != v ? v : acc;")
        else:
            w.line(f"acc += xp[{idx}];")
            w.line("++count;")
        for _ in range(nsp):
            w.close()
        w.line(f"{cx.o(0)}[i] = {'acc' if is_max else f'count ? acc / {T}(count) : {T}(0)'};")

    cx.launch(cx.osize(0), body)


@generates("GlobalAveragePool", "GlobalMaxPool", check=float32_only)
def gen_global_pool(cx):
    x = cx.vin(0)
    T = cx.ctype(0)
    inner = cpp_dim(numel(x.shape[2:]))
    is_max = cx.op.op_type == "GlobalMaxPool"

    def body(w):
        w.line(f"const {T}* xp = {cx.i(0)} + i * {inner};")
        w.line(f"{T} acc = {'xp[0]' if is_max else T + '(0)'};")
        with w.loop("k", inner):
            w.line("acc = xp[k] > acc ? xp[k] : acc;" if is_max else "acc += xp[k];")
        w.line(f"{cx.o(0)}[i] = {'acc' if is_max else f'acc / {T}({inner})'};")

    cx.launch(cx.osize(0), body)


# -- reductions -----------------------------------------------------------------------------------------------
@generates(*_REDUCE)
def gen_reduce(cx):
    x = cx.vin(0)
    dt = x.dtype
    T = cx.ctype(0)
    t = cx.op.op_type
    axes = cx.op.reduced_axes(cx.node)
    X, Y = cx.i(0), cx.o(0)
    if not axes:
        f = {"ReduceSumSquare": "x * x", "ReduceLogSum": "std::log(x)"}.get(t, "x")
        cx.launch(cx.size(0), [f"const {T} x = {X}[i];", f"{Y}[i] = static_cast<{T}>({f});"])
        return
    A = "double" if dt.is_float else T
    kept = [k for k in range(x.rank) if k not in axes]
    n = cpp_dim(numel([x.shape[k] for k in axes]))
    index = reduction_index(x.shape, axes)
    init, upd, fin = _REDUCE[t]
    if dt.is_float:
        init = {"LOWEST": f"-std::numeric_limits<{A}>::infinity()",
                "HIGHEST": f"std::numeric_limits<{A}>::infinity()"}.get(init, init)
    init = {"LOWEST": f"std::numeric_limits<{A}>::lowest()",
            "HIGHEST": f"std::numeric_limits<{A}>::max()"}.get(init, init)
    unsigned = dt.name.startswith("UINT")
    absx = "x" if unsigned else ("std::abs(x)" if dt.is_float else "(x < 0 ? -x : x)")

    def body(w):
        kv = coords(w, [cpp_dim(x.shape[k]) for k in kept], "k")
        w.line(f"const {A} n = static_cast<{A}>({n});")
        w.line("(void)n;")
        w.line(f"{A} acc = {init};")
        rv = [f"r{j}" for j in range(len(axes))]
        for j, k in enumerate(axes):
            w.open(f"for (size_t {rv[j]} = 0; {rv[j]} < {cpp_dim(x.shape[k])}; ++{rv[j]})")
        w.line(f"const {A} x = {X}[{index(kv, rv)}];")
        w.line(upd.replace("ABS", absx))
        for _ in axes:
            w.close()
        w.line(f"{Y}[i] = static_cast<{T}>({fin});")

    cx.launch(cx.osize(0), body)
