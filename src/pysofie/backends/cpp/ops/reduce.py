"""Reductions, ArgMax/ArgMin and CumSum: loops over kept axes outside, reduced axes inside."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates
from .common import axis_extents, loop_nest, reduction_index

# op -> (accumulator init, update of acc with x, final expression of acc and count n)
_REDUCE = {
    "ReduceSum": ("0", "acc += x;", "acc"),
    "ReduceMean": ("0", "acc += x;", "acc / n"),
    "ReduceProd": ("1", "acc *= x;", "acc"),
    "ReduceSumSquare": ("0", "acc += x * x;", "acc"),
    "ReduceL1": ("0", "acc += ABS;", "acc"),
    "ReduceL2": ("0", "acc += x * x;", "std::sqrt(acc)"),
    "ReduceLogSum": ("0", "acc += x;", "std::log(acc)"),
    "ReduceMax": ("LOWEST", "acc = pysofie_rt::max_nan<decltype(acc)>(acc, x);", "acc"),
    "ReduceMin": ("HIGHEST", "acc = pysofie_rt::min_nan<decltype(acc)>(acc, x);", "acc"),
}


@generates(*_REDUCE, "ReduceLogSumExp")
def gen_reduce(cx):
    w = cx.w
    x = cx.vin(0)
    dt = x.dtype
    T = cx.ctype(0)
    t = cx.op.op_type
    axes = cx.op.reduced_axes(cx.node)
    X, Y = cx.i(0), cx.o(0)
    if not axes:
        # noop_with_empty_axes: each element is its own reduction (onnxruntime and onnx's reference agree that
        # ReduceSumSquare squares and ReduceLogSum takes the log, the others pass the input through)
        f = {"ReduceSumSquare": "x * x", "ReduceLogSum": "std::log(x)"}.get(t, "x")
        with w.loop("i", cx.size(0)):
            w.line(f"const {T} x = {X}[i];")
            w.line(f"{Y}[i] = static_cast<{T}>({f});")
        return
    # accumulate floats in double, integers in their own type (as numpy does)
    A = "double" if dt.is_float else T
    kept = [k for k in range(x.rank) if k not in axes]
    n = cpp_dim(numel([x.shape[k] for k in axes]))
    w.line(f"const {A} n = static_cast<{A}>({n});")
    w.line("(void)n;")
    w.line("size_t pos = 0;")
    unsigned = dt.name.startswith("UINT")

    index = reduction_index(x.shape, axes)

    def outer(kv):
        if t == "ReduceLogSumExp":
            w.line(f"{A} mx = -std::numeric_limits<{A}>::infinity();")
            loop_nest(w, [cpp_dim(x.shape[k]) for k in axes],
                      lambda rv: w.line(f"mx = std::max<{A}>(mx, {X}[{index(kv, rv)}]);"), "r")
            w.line("if (!std::isfinite(mx)) mx = 0;")
            w.line(f"{A} acc = 0;")
            loop_nest(w, [cpp_dim(x.shape[k]) for k in axes],
                      lambda rv: w.line(f"acc += std::exp({A}({X}[{index(kv, rv)}]) - mx);"), "r")
            w.line(f"{Y}[pos++] = static_cast<{T}>(std::log(acc) + mx);")
            return
        init, upd, fin = _REDUCE[t]
        init = {"LOWEST": f"std::numeric_limits<{A}>::lowest()",
                "HIGHEST": f"std::numeric_limits<{A}>::max()"}.get(init, init)
        if dt.is_float:
            init = {"LOWEST": f"-std::numeric_limits<{A}>::infinity()"}.get(_REDUCE[t][0], init)
            init = {"HIGHEST": f"std::numeric_limits<{A}>::infinity()"}.get(_REDUCE[t][0], init)
        absx = "x" if unsigned else ("std::abs(x)" if dt.is_float else "(x < 0 ? -x : x)")
        w.line(f"{A} acc = {init};")

        def body(rv):
            w.line(f"const {A} x = {X}[{index(kv, rv)}];")
            w.line(upd.replace("ABS", absx))

        loop_nest(w, [cpp_dim(x.shape[k]) for k in axes], body, "r")
        w.line(f"{Y}[pos++] = static_cast<{T}>({fin});")

    loop_nest(w, [cpp_dim(x.shape[k]) for k in kept], outer, "k")


@generates("ArgMax", "ArgMin")
def gen_argreduce(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(x.shape[:a]))
    n = cpp_dim(x.shape[a])
    inner = cpp_dim(numel(x.shape[a + 1:]))
    cmp = ">" if cx.op.op_type == "ArgMax" else "<"
    if cx.op.select_last_index:
        cmp += "="
    X, Y = cx.i(0), cx.o(0)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const {T}* p = {X} + o * {n} * {inner} + j;")
            w.line(f"{T} best = p[0];")
            w.line("int64_t arg = 0;")
            with w.loop("k", n, "1"):
                with w.block(f"if (p[k * {inner}] {cmp} best)"):
                    w.line(f"best = p[k * {inner}];")
                    w.line("arg = static_cast<int64_t>(k);")
            w.line(f"{Y}[o * {inner} + j] = arg;")


# running sums and products along an axis: (identity, combining operator)
SCANS = {"CumSum": ("0", "+"), "CumProd": ("1", "*")}


@generates(*SCANS)
def gen_scan(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    identity, op = SCANS[cx.op.op_type]
    outer, n, inner = axis_extents(x.shape, cx.op.axis_of(cx.node))
    X, Y = cx.i(0), cx.o(0)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const size_t base = o * {n} * {inner} + j;")
            w.line(f"{T} acc = {identity};")
            with w.loop("t", n):
                idx = f"({n} - 1 - t)" if cx.op.reverse else "t"
                w.line(f"const size_t at = base + {idx} * {inner};")
                if cx.op.exclusive:
                    w.line(f"{Y}[at] = acc;")
                    w.line(f"acc = static_cast<{T}>(acc {op} {X}[at]);")
                else:
                    w.line(f"acc = static_cast<{T}>(acc {op} {X}[at]);")
                    w.line(f"{Y}[at] = acc;")
