"""BatchNormalization (inference) and Softmax."""
from __future__ import annotations

from ....ir import DType
from ....ir.shapes import cpp_dim, numel
from ..emitter import generates
from .common import axis_extents, lit, reduction_index, use_runtime_header


@generates("BatchNormalization")
def gen_batchnorm(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    N = cpp_dim(x.shape[0])
    C = cpp_dim(x.shape[1]) if x.rank > 1 else "1"
    inner = cpp_dim(numel(x.shape[2:]))
    eps = float(cx.op.epsilon)
    with w.loop("c", C):
        w.line(f"const {T} s = {cx.i(1)}[c] / std::sqrt({cx.i(4)}[c] + {lit(eps, T)});")
        w.line(f"const {T} b = {cx.i(2)}[c] - {cx.i(3)}[c] * s;")
        with w.loop("n", N):
            w.line(f"const size_t base = (n * {C} + c) * {inner};")
            with w.loop("i", inner):
                w.line(f"{cx.o(0)}[base + i] = {cx.i(0)}[base + i] * s + b;")


def softmax_loops(cx, log: bool = False) -> None:
    w = cx.w
    x = cx.vin(0)
    axis, coerce = cx.op.axis_for(cx.node)
    outer, n, inner = axis_extents(x.shape, axis, coerce)
    with w.loop("o", outer):
        with w.loop("j", inner):
            softmax_row(cx, w, log)


def softmax_row(cx, w, log: bool = False) -> None:
    """Softmax / LogSoftmax of the row at (o, j) (variables of the caller's loops or thread index)."""
    x = cx.vin(0)
    T = cx.ctype(0)
    axis, coerce = cx.op.axis_for(cx.node)
    outer, n, inner = axis_extents(x.shape, axis, coerce)
    X, Y = cx.i(0), cx.o(0)
    w.line(f"const size_t base = o * {n} * {inner} + j;")
    w.line(f"{T} mx = {X}[base];")
    with w.loop("k", n, "1"):
        w.line(f"mx = std::max(mx, {X}[base + k * {inner}]);")
    w.line(f"{T} sum = 0;")
    with w.loop("k", n):
        w.line(f"const {T} e = std::exp({X}[base + k * {inner}] - mx);")
        if not log:
            w.line(f"{Y}[base + k * {inner}] = e;")
        w.line("sum += e;")
    if log:
        w.line(f"const {T} lse = mx + std::log(sum);")
        with w.loop("k", n):
            w.line(f"{Y}[base + k * {inner}] = {X}[base + k * {inner}] - lse;")
    else:
        w.line(f"const {T} inv = {T}(1) / sum;")
        with w.loop("k", n):
            w.line(f"{Y}[base + k * {inner}] *= inv;")


def _rows_kernel(cx, rows: str, call: str) -> None:
    """call(r0, r1) of a runtime/pysofie_vmath.h row kernel over rows [0, rows), spread over the threads."""
    use_runtime_header(cx, "pysofie_vmath.h")
    cx.w.line(f"{cx.pool()}.run_range({rows}, 1, [&](long r0, long r1, int) {{ {call}; }});")


@generates("Softmax")
def gen_softmax(cx):
    x = cx.vin(0)
    axis, coerce = cx.op.axis_for(cx.node)
    outer, n, inner = axis_extents(x.shape, axis, coerce)
    if x.dtype is DType.FLOAT and inner == "1":  # rows of contiguous elements: the vectorized kernel
        _rows_kernel(cx, outer, f"pysofie_vm::softmax_rows({cx.i(0)}, {cx.o(0)}, r0, r1, {n})")
        return
    softmax_loops(cx, log=False)


@generates("LogSoftmax")
def gen_logsoftmax(cx):
    softmax_loops(cx, log=True)


@generates("Hardmax")
def gen_hardmax(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    axis, coerce = cx.op.axis_for(cx.node)
    outer, n, inner = axis_extents(x.shape, axis, coerce)
    X, Y = cx.i(0), cx.o(0)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const size_t base = o * {n} * {inner} + j;")
            w.line("size_t best = 0;")
            with w.loop("k", n):
                w.line(f"if ({X}[base + k * {inner}] > {X}[base + best * {inner}]) best = k;")
                w.line(f"{Y}[base + k * {inner}] = {T}(0);")
            w.line(f"{Y}[base + best * {inner}] = {T}(1);")


# -- operator coverage: normalizations (statistics accumulated in double) -------------------------------------
def _moments(w, count: str, read, T: str) -> None:
    """Declares mean and inv (1 / sqrt(var + eps) is left to the caller) from read(k) over k < count."""
    w.line("double sum = 0, sq = 0;")
    with w.loop("k", count):
        w.line(f"const double v = {read('k')};")
        w.line("sum += v;")
    w.line(f"const double mean = sum / double({count});")
    with w.loop("k", count):
        w.line(f"const double d = {read('k')} - mean;")
        w.line("sq += d * d;")
    w.line(f"const double var = sq / double({count});")


@generates("LayerNormalization")
def gen_layernorm(cx):
    x = cx.vin(0)
    a = cx.op.axis_of(cx.node)
    outer = cpp_dim(numel(x.shape[:a]))
    nshape = list(x.shape[a:])
    outs = cx.node.outputs

    def full(k):  # parameter input k spans the whole normalized shape
        v = cx.vin(k)
        return numel(v.shape) != 1 and len(v.shape) == len(nshape) and \
            all(str(p) == str(q) for p, q in zip(v.shape, nshape))
    if x.dtype is DType.FLOAT and all(v is None or v.dtype is DType.FLOAT for v in outs) \
            and full(1) and (not cx.has(2) or full(2)):
        # float, scale and bias over the whole normalized shape: the vectorized row kernel
        mean = cx.o(1) if len(outs) > 1 else "nullptr"
        inv = cx.o(2) if len(outs) > 2 else "nullptr"
        _rows_kernel(cx, outer, f"pysofie_vm::layernorm_rows({cx.i(0)}, {cx.i(1)}, "
                                f"{cx.i(2) if cx.has(2) else 'nullptr'}, {cx.o(0)}, r0, r1, "
                                f"{cpp_dim(numel(nshape))}, {lit(float(cx.op.epsilon), 'double')}, {mean}, {inv})")
        return
    with cx.w.loop("o", outer):
        layernorm_row(cx, cx.w)


def layernorm_row(cx, w) -> None:
    """LayerNormalization of row o (a variable of the caller's loop or thread index)."""
    from .common import broadcast_strides
    x = cx.vin(0)
    T = cx.ctype(0)
    a = cx.op.axis_of(cx.node)
    nshape = list(x.shape[a:])
    n = cpp_dim(numel(nshape))
    eps = float(cx.op.epsilon)
    X, Y = cx.i(0), cx.o(0)

    def pidx(k, var):
        """Index expression of parameter input k (scale/bias) broadcast to the normalized shape at flat j."""
        v = cx.vin(k)
        if numel(v.shape) == 1:
            return "0"
        if len(v.shape) == len(nshape) and all(str(p) == str(q) for p, q in zip(v.shape, nshape)):
            return var
        st = broadcast_strides(list(v.shape), nshape)
        terms = []
        rem = var
        dims = [cpp_dim(d) for d in nshape]
        # decompose the flat index into coordinates (innermost last)
        for q in range(len(nshape) - 1, -1, -1):
            if st[q] != "0":
                terms.append(f"(({rem}) % {dims[q]}) * {st[q]}")
            rem = f"({rem}) / {dims[q]}"
        return " + ".join(terms) if terms else "0"

    w.line(f"const {T}* xp = {X} + o * {n};")
    _moments(w, n, lambda k: f"xp[{k}]", T)
    w.line(f"const double inv = 1.0 / std::sqrt(var + {lit(eps, 'double')});")
    with w.loop("j", n):
        s = f"{cx.i(1)}[{pidx(1, 'j')}]"
        b = f" + {cx.i(2)}[{pidx(2, 'j')}]" if cx.has(2) else ""
        w.line(f"{Y}[o * {n} + j] = static_cast<{T}>((xp[j] - mean) * inv * {s}{b});")
    if len(cx.node.outputs) > 1:
        w.line(f"{cx.o(1)}[o] = static_cast<{cx.octype(1)}>(mean);")
    if len(cx.node.outputs) > 2:
        w.line(f"{cx.o(2)}[o] = static_cast<{cx.octype(2)}>(inv);")


@generates("InstanceNormalization")
def gen_instancenorm(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    N, C = cpp_dim(x.shape[0]), cpp_dim(x.shape[1])
    inner = cpp_dim(numel(x.shape[2:]))
    eps = float(cx.op.epsilon)
    X, Y = cx.i(0), cx.o(0)
    with w.loop("n", N):
        with w.loop("c", C):
            w.line(f"const size_t base = (n * {C} + c) * {inner};")
            _moments(w, inner, lambda k: f"{X}[base + {k}]", T)
            w.line(f"const double s = {cx.i(1)}[c] / std::sqrt(var + {lit(eps, 'double')});")
            with w.loop("k", inner):
                w.line(f"{Y}[base + k] = static_cast<{T}>(({X}[base + k] - mean) * s + {cx.i(2)}[c]);")


@generates("GroupNormalization")
def gen_groupnorm(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    G = int(cx.op.num_groups)
    C = int(x.shape[1])
    cg = C // G
    N = cpp_dim(x.shape[0])
    inner = cpp_dim(numel(x.shape[2:]))
    eps = float(cx.op.epsilon)
    X, Y = cx.i(0), cx.o(0)
    pi = "c" if cx.op.per_channel(cx.node) else "g"
    with w.loop("n", N):
        with w.loop("g", str(G)):
            w.line(f"const size_t base = (n * {C} + g * {cg}) * {inner};")
            _moments(w, f"{cg} * {inner}", lambda k: f"{X}[base + {k}]", T)
            w.line(f"const double inv = 1.0 / std::sqrt(var + {lit(eps, 'double')});")
            with w.loop("cc", str(cg)):
                w.line(f"const size_t c = g * {cg} + cc;")
                w.line("(void)c;")
                with w.loop("k", inner):
                    w.line(f"const size_t at = base + cc * {inner} + k;")
                    w.line(f"{Y}[at] = static_cast<{T}>(({X}[at] - mean) * inv * {cx.i(1)}[{pi}] + {cx.i(2)}[{pi}]);")


@generates("LpNormalization")
def gen_lpnorm(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(x.shape[:a]))
    n = cpp_dim(x.shape[a])
    inner = cpp_dim(numel(x.shape[a + 1:]))
    X, Y = cx.i(0), cx.o(0)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const size_t base = o * {n} * {inner} + j;")
            w.line("double acc = 0;")
            with w.loop("k", n):
                w.line(f"const double v = {X}[base + k * {inner}];")
                w.line("acc += v * v;" if cx.op.p == 2 else "acc += std::abs(v);")
            w.line(f"const double nrm = {'std::sqrt(acc)' if cx.op.p == 2 else 'acc'};")
            with w.loop("k", n):
                # a zero norm gives zeros (as onnx's backend test data), not NaN
                w.line(f"{Y}[base + k * {inner}] = nrm == 0.0 ? {T}(0) : "
                       f"static_cast<{T}>({X}[base + k * {inner}] / nrm);")


@generates("MeanVarianceNormalization")
def gen_mvn(cx):
    from .common import loop_nest
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    axes = cx.op.axes_of(cx.node)
    kept = [k for k in range(x.rank) if k not in axes]
    X, Y = cx.i(0), cx.o(0)
    rdims = [cpp_dim(x.shape[k]) for k in axes]
    cnt = cpp_dim(numel([x.shape[k] for k in axes]))

    index = reduction_index(x.shape, axes)

    def outer(kv):
        w.line("double sum = 0, sq = 0;")
        loop_nest(w, rdims, lambda rv: w.line(f"sum += {X}[{index(kv, rv)}];"), "r")
        w.line(f"const double mean = sum / double({cnt});")

        def acc(rv):
            w.line(f"const double d = {X}[{index(kv, rv)}] - mean;")
            w.line("sq += d * d;")
        loop_nest(w, rdims, acc, "r")
        # as the spec's function body: (X - mean) / (sqrt(var) + 1e-9)
        w.line(f"const double inv = 1.0 / (std::sqrt(sq / double({cnt})) + 1e-9);")
        loop_nest(w, rdims, lambda rv: w.line(
            f"{Y}[{index(kv, rv)}] = static_cast<{T}>(({X}[{index(kv, rv)}] - mean) * inv);"), "r")

    loop_nest(w, [cpp_dim(x.shape[k]) for k in kept], outer, "k")


@generates("LRN")
def gen_lrn(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    op = cx.op
    N, C = cpp_dim(x.shape[0]), cpp_dim(x.shape[1])
    inner = cpp_dim(numel(x.shape[2:]))
    size = int(op.size)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    X, Y = cx.i(0), cx.o(0)
    with w.loop("n", N):
        with w.loop("c", C):
            w.line(f"const size_t c0 = c >= {lo} ? c - {lo} : 0;" if lo else "const size_t c0 = c;")
            w.line(f"const size_t c1 = std::min<size_t>({C} - 1, c + {hi});")
            with w.loop("k", inner):
                w.line("double sq = 0;")
                with w.block("for (size_t q = c0; q <= c1; ++q)"):
                    w.line(f"const double v = {X}[(n * {C} + q) * {inner} + k];")
                    w.line("sq += v * v;")
                w.line(f"const size_t at = (n * {C} + c) * {inner} + k;")
                w.line(f"{Y}[at] = static_cast<{T}>({X}[at] / std::pow({lit(float(op.bias), 'double')} + "
                       f"{lit(float(op.alpha) / size, 'double')} * sq, {lit(float(op.beta), 'double')}));")


@generates("PysofieChannelLayerNorm")
def gen_channel_layernorm(cx):
    """passes/channel_norm.FuseChannelLayerNorm's node: runtime/pysofie_transpose.h's channel_layernorm."""
    x = cx.vin(0)
    N, C, P = cpp_dim(x.shape[0]), cpp_dim(x.shape[1]), cpp_dim(numel(x.shape[2:]))
    use_runtime_header(cx, "pysofie_transpose.h")
    bias = cx.i(2) if cx.has(2) else "nullptr"
    nhwc = "true" if cx.op.layout == "nhwc" else "false"
    buf, stride = cx.thread_scratch(x.shape[1] * 16, x.dtype, "cln")  # 16 pixels x C channels per thread
    cx.w.line(f"pysofie_tr::channel_layernorm({cx.i(0)}, {cx.i(1)}, {bias}, {cx.o(0)}, {N}, {C}, {P}, "
              f"{lit(float(cx.op.epsilon), 'double')}, {nhwc}, {buf}, {stride}, &{cx.pool()});")
