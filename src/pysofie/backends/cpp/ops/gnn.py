"""Generators of the graph-network operators (ops/gnn.py): gathers and segment reductions in one pass over the
rows (O(N + E)), every index checked (std::out_of_range naming the input, never a write outside a buffer)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates
from ..names import c_string


def _index_check(w, var: str, expr: str, n: str, what: str, unit: str, wrap: bool = False) -> None:
    """long long var = expr, checked against [0, n) with a message naming the input, the value and the row;
    wrap: a negative index counts from the end first (ONNX's Gather / Scatter)."""
    if wrap:
        w.line(f"const long long {var}_raw = static_cast<long long>({expr});")
        w.line(f"const long long {var} = {var}_raw < 0 ? {var}_raw + static_cast<long long>({n}) : {var}_raw;")
    else:
        w.line(f"const long long {var} = static_cast<long long>({expr});")
    with w.block(f"if ({var} < 0 || {var} >= static_cast<long long>({n}))"):
        w.line(f"throw std::out_of_range(std::string({c_string(what + ': index ')}) + std::to_string({var}) + "
               f"\" is out of range for \" + std::to_string({n}) + {c_string(' ' + unit + ' (at position ')} + "
               "std::to_string(e) + \")\");")


@generates("GatherRows")
def gen_gather_rows(cx):
    w = cx.w
    x = cx.vin(0)
    F = cpp_dim(numel(x.shape[1:]))
    n = cpp_dim(x.shape[0])
    with w.loop("e", cx.dims(1)[0]):
        _index_check(w, "k", f"{cx.i(1)}[e]", n, cx.op.what, "rows")
        if cx.has(2):
            w.line(f"const auto* __restrict src = {cx.i(0)} + static_cast<size_t>(k) * {F};")
            w.line(f"const auto* __restrict add = {cx.i(2)} + e * {F};")
            w.line(f"auto* __restrict dst = {cx.o(0)} + e * {F};")
            with w.loop("f", F):
                w.line("dst[f] = add[f] + src[f];")
        else:
            w.line(f"std::copy_n({cx.i(0)} + static_cast<size_t>(k) * {F}, {F}, {cx.o(0)} + e * {F});")


_INIT = {"sum": "T(0)", "mean": "T(0)", "prod": "T(1)",
         "max": "std::numeric_limits<T>::lowest()", "min": "std::numeric_limits<T>::max()"}
_ACC = {"sum": "dst[f] += src[f];", "mean": "dst[f] += src[f];", "prod": "dst[f] *= src[f];",
        "max": "dst[f] = dst[f] < src[f] ? src[f] : dst[f];", "min": "dst[f] = src[f] < dst[f] ? src[f] : dst[f];"}


@generates("SegmentReduce")
def gen_segment_reduce(cx):
    w = cx.w
    x = cx.vin(0)
    red = cx.op.reduction
    F = cpp_dim(numel(x.shape[1:]))
    S = cx.odims(0)[0]
    E = cx.dims(2)[0] if cx.has(2) else cx.dims(0)[0]
    w.line(f"using T = {cx.ctype(0)};")
    w.line(f"std::fill_n({cx.o(0)}, {cx.osize(0)}, {_INIT[red]});")
    count = cx.scratch(cx.vout(0).shape[0], cx.vout(0).dtype, "count") if red == "mean" else None
    if count:
        w.line(f"std::fill_n({count}, {S}, T(0));")
    with w.loop("e", E):
        if cx.has(1):
            _index_check(w, "k", f"{cx.i(1)}[e]", S, cx.op.what, "segments", wrap=cx.op.negative == "wrap")
        else:
            w.line("const long long k = 0;")
        if cx.has(2):  # a gather fused in: row e is data[rows[e]]
            _index_check(w, "g", f"{cx.i(2)}[e]", cx.dims(0)[0], cx.op.rows_what, "rows", wrap=True)
            w.line(f"const T* __restrict src = {cx.i(0)} + static_cast<size_t>(g) * {F};")
        else:
            w.line(f"const T* __restrict src = {cx.i(0)} + e * {F};")
        w.line(f"T* __restrict dst = {cx.o(0)} + static_cast<size_t>(k) * {F};")
        with w.loop("f", F):
            w.line(_ACC[red])
        if count:
            w.line(f"{count}[k] += T(1);")
    if count:
        with w.loop("s", S):
            w.line(f"const T c = {count}[s] > T(1) ? {count}[s] : T(1);")
            with w.loop("f", F):
                w.line(f"{cx.o(0)}[s * {F} + f] /= c;")


@generates("SegmentIds")
def gen_segment_ids(cx):
    w = cx.w
    what, rows = cx.op.what, cx.op.rows
    total = cx.osize(0)
    G = cx.dims(0)[0]
    w.line("size_t pos = 0;")
    with w.loop("g", G):
        w.line(f"const long long c = static_cast<long long>({cx.i(0)}[g]);")
        with w.block(f"if (c < 0 || static_cast<size_t>(c) > {total} - pos)"):
            w.line(f"throw std::out_of_range(std::string({c_string(what + ': count ')}) + std::to_string(c) + "
                   f"\" of graph \" + std::to_string(g) + {c_string(' is negative or exceeds the ' + rows)} + "
                   f"\" (\" + std::to_string({total}) + \" in all)\");")
        w.line(f"std::fill_n({cx.o(0)} + pos, static_cast<size_t>(c), static_cast<{cx.octype(0)}>(g));")
        w.line("pos += static_cast<size_t>(c);")
    with w.block(f"if (pos != {total})"):
        w.line(f"throw std::out_of_range(std::string({c_string(what + ' sums to ')}) + std::to_string(pos) + "
               f"{c_string(' but there are ')} + std::to_string({total}) + {c_string(' ' + rows)});")


ROW_BLOCK = 96  # rows per block: a multiple of the kernel's 6-row tiles; two blocks of width <= 128 stay in L2
ROW_GRAIN = 24  # fewest rows per thread task (a few hundred rows still spread over the threads)


@generates("RowMLP")
def gen_row_mlp(cx):
    """Every block of ROW_BLOCK rows goes through all the layers (and the LayerNorm) in two stack buffers."""
    from .common import lit, use_runtime_header
    from .gemm import ACT_CODES
    w, s = cx.w, cx.op.spec
    p, q, r, a = s["direct"], s["gather"], s["rows"], s.get("adds", 0)
    layers, ks = s["layers"], s["ks"]
    use_runtime_header(cx, "pysofie_gemm.h")
    M = cpp_dim(cx.vout(0).shape[0])
    X = [cx.i(k) for k in range(p)]
    T = [cx.i(p + k) for k in range(q)]
    Tn = [cpp_dim(cx.vin(p + k).shape[0]) for k in range(q)]
    I = [cx.i(p + q + k) for k in range(q)]
    R = [cx.i(p + 2 * q + k) for k in range(r)]
    A = [cx.i(p + 2 * q + r + k) for k in range(a)]
    pos = p + 2 * q + r + a
    W1 = [cx.i(pos + k) for k in range(p)]
    pos += p
    B = [cx.i(pos)]
    pos += 1
    W = [None]
    for _ in layers[1:]:
        W.append(cx.i(pos))
        B.append(cx.i(pos + 1))
        pos += 2
    ln = s["ln_eps"] is not None
    H = int(layers[0]["N"])
    Hp = (H + 15) // 16 * 16
    wmax = max((int(ly["N"]) + 15) // 16 * 16 for ly in layers)

    def act(ly):
        a = ly["act"]
        return f"pysofie_gemm::{ACT_CODES[a[0] if a else None]}", lit(a[1] if a and a[1] is not None else 0.0,
                                                                         "float")
    Y = cx.o(0)
    if r:
        w.line(f"alignas(64) float bias0[{Hp}];")
        with w.loop("h", str(Hp)):
            w.line(f"bias0[h] = {B[0]}[h];")
        with w.loop("h", str(H)):
            w.line("bias0[h] += " + " + ".join(f"{x}[h]" for x in R) + ";")
        b0 = "bias0"
    else:
        b0 = B[0]
    if q:  # indices checked before the threads start (an exception must not leave a pool task)
        with w.block(f"for (size_t e = 0; e < static_cast<size_t>({M}); ++e)"):
            for j in range(q):
                _index_check(w, f"k{j}", f"{I[j]}[e]", Tn[j], s["whats"][j], "rows")
    rows = cx.vout(0).shape[0]
    if isinstance(rows, int):  # known at generation: one row is the matrix-vector chain alone
        if rows == 1:
            _one_row(cx, X, T, I, A, W1, W, B, b0, pos, act)
        else:
            _row_blocks(cx, M, X, T, I, A, W1, W, B, b0, pos, act, wmax)
        return
    with w.block(f"if ({M} == 1)"):  # one row at run time (an event at a time): no thread pool, blocks or tiles
        _one_row(cx, X, T, I, A, W1, W, B, b0, pos, act)
    with w.block("else"):
        _row_blocks(cx, M, X, T, I, A, W1, W, B, b0, pos, act, wmax)


def _one_row(cx, X, T, I, A, W1, W, B, b0, pos, act) -> None:
    """The layers as matrix-vector products over the packed weights (pysofie_gemv.h), bias and activation in the
    store, in two small stack buffers."""
    from .common import lit, use_runtime_header
    use_runtime_header(cx, "pysofie_gemv.h")
    w, s = cx.w, cx.op.spec
    p, q, a = s["direct"], s["gather"], s.get("adds", 0)
    layers, ks = s["layers"], s["ks"]
    ln = s["ln_eps"] is not None
    H = int(layers[0]["N"])
    nl = len(layers)
    Y = cx.o(0)
    wmax = max(int(ly["N"]) for ly in layers)
    used = sorted({("g0", "g1")[k % 2] for k in range(nl) if k < nl - 1 or ln})
    if used:
        w.line("alignas(64) float " + ", ".join(f"{b}[{wmax}]" for b in used) + ";")

    def dst(k):
        return Y if k == nl - 1 and not ln else ("g0", "g1")[k % 2]
    kind, slope = act(layers[0])
    d0 = dst(0)
    if q or a:  # the gathered and added terms first; the products accumulate onto them
        srcs = [f"{T[j]}[static_cast<size_t>({I[j]}[0]) * {H} + h]" for j in range(q)]
        srcs += [f"{A[j]}[h]" for j in range(a)]
        with w.loop("h", str(H)):
            w.line(f"{d0}[h] = {' + '.join(srcs)};")
    for k in range(p):
        last = k == p - 1
        if p == 1 and not (q or a) and 0 in s.get("wt", []):
            w.line(f"pysofie_gemv::gemv_rows({H}, {ks[0]}, {(ks[0] + 7) // 8 * 8}, {X[0]}, {cx.i(pos + 2 * ln)}, "
                   f"{d0}, {b0}, {kind}, {slope});")
            continue
        acc = "true" if (q or a or k) else "false"
        w.line(f"pysofie_gemv::gemv_packed({H}, {ks[k]}, {X[k]}, {W1[k]}, {d0}, {acc}, {b0 if last else 'nullptr'}, "
               f"{kind if last else 'pysofie_gemm::NONE'}, "
               f"{slope if last else lit(0.0, 'float')});")
    if not p:
        with w.loop("h", str(H)):
            w.line(f"{d0}[h] = pysofie_gemm::act_scalar({d0}[h] + {b0}[h], {kind}, {slope});")
    wt = {li: cx.i(pos + 2 * ln + j) for j, li in enumerate(s.get("wt", []))}
    for k in range(1, nl):
        kind, slope = act(layers[k])
        N, K = int(layers[k]["N"]), int(layers[k - 1]["N"])
        if k in wt:
            w.line(f"pysofie_gemv::gemv_rows({N}, {K}, {(K + 7) // 8 * 8}, {dst(k - 1)}, {wt[k]}, {dst(k)}, {B[k]}, "
                   f"{kind}, {slope});")
        else:
            w.line(f"pysofie_gemv::gemv_packed({N}, {K}, {dst(k - 1)}, {W[k]}, {dst(k)}, false, {B[k]}, {kind}, "
                   f"{slope});")
    if ln:
        N = int(layers[-1]["N"])
        w.line(f"pysofie_vm::layernorm_rows({dst(nl - 1)}, {cx.i(pos)}, {cx.i(pos + 1)}, {Y}, 0, 1, {N}, "
               f"{lit(float(s['ln_eps']), 'double')}, nullptr, nullptr);")


def _row_blocks(cx, M, X, T, I, A, W1, W, B, b0, pos, act, wmax) -> None:
    """Blocks of ROW_BLOCK rows on the thread pool, each through every layer in two stack buffers."""
    from .common import lit
    w, s = cx.w, cx.op.spec
    p, q, a = s["direct"], s["gather"], s.get("adds", 0)
    layers, ks = s["layers"], s["ks"]
    ln = s["ln_eps"] is not None
    H = int(layers[0]["N"])
    Y = cx.o(0)
    RB = ROW_BLOCK
    with w.block(f"{cx.pool()}.run_range(static_cast<long>({M}), {ROW_GRAIN}, [&](long r0, long r1, int)", close="});"):
        nl = len(layers)
        used = sorted({("buf0", "buf1")[k % 2] for k in range(nl) if k < nl - 1 or ln})
        if used:
            w.line("alignas(64) float " + ", ".join(f"{b}[{RB * wmax}]" for b in used) + ";")
        with w.block(f"for (long i0 = r0; i0 < r1; i0 += {RB})"):
            w.line(f"const long m = std::min<long>({RB}, r1 - i0);")
            bufs = ["buf0", "buf1"]

            def dst(k):  # where layer k writes: the output for the last layer without LayerNorm
                if k == nl - 1 and not ln:
                    return f"{Y} + i0 * {int(layers[k]['N'])}"
                return bufs[k % 2]
            kind, slope = act(layers[0])
            d0 = dst(0)
            if q or a:
                with w.block("for (long i = 0; i < m; ++i)"):
                    w.line("const size_t e = static_cast<size_t>(i0 + i);")
                    w.line(f"float* __restrict d = {d0} + i * {H};")
                    srcs = [f"{T[j]}[static_cast<size_t>({I[j]}[e]) * {H} + h]" for j in range(q)]
                    srcs += [f"{A[j]}[e * {H} + h]" for j in range(a)]
                    with w.loop("h", str(H)):
                        w.line(f"d[h] = {' + '.join(srcs)};")
            for k in range(p):
                last = k == p - 1
                w.line(f"pysofie_gemm::gemm_packed(m, {H}, {ks[k]}, {X[k]} + i0 * {ks[k]}, {ks[k]}, 1, {W1[k]}, {d0}, "
                       f"{H}, {'true' if (q or a or k) else 'false'}, {b0 if last else 'nullptr'}, "
                       f"{kind if last else 'pysofie_gemm::NONE'}, {slope if last else lit(0.0, 'float')}, nullptr);")
            if not p:
                with w.block(f"for (long i = 0; i < m * {H}; ++i)"):
                    w.line(f"{d0}[i] = pysofie_gemm::act_scalar({d0}[i] + {b0}[i % {H}], {kind}, {slope});")
            for k in range(1, nl):
                kind, slope = act(layers[k])
                N, K = int(layers[k]["N"]), int(layers[k - 1]["N"])
                w.line(f"pysofie_gemm::gemm_packed(m, {N}, {K}, {bufs[(k - 1) % 2]}, {K}, 1, {W[k]}, {dst(k)}, {N}, "
                       f"false, {B[k]}, {kind}, {slope}, nullptr);")
            if ln:
                N = int(layers[-1]["N"])
                w.line(f"pysofie_vm::layernorm_rows({bufs[(nl - 1) % 2]}, {cx.i(pos)}, {cx.i(pos + 1)}, "
                       f"{Y} + i0 * {N}, "
                       f"0, m, {N}, {lit(float(s['ln_eps']), 'double')}, nullptr, nullptr);")
