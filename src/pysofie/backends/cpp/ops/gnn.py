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


class _RowMLP:
    """What both code paths of a RowMLP read: the spec's counts and layers, and the C++ names of its inputs
    (X: direct row inputs, T / I: gathered tables and their indices, R: per-graph row terms, A: added row terms,
    W1: the first layer's packed weights per direct input, W / B: later layers' packed weights and biases (W[0]
    unused, B[0] the first layer's bias), `ln`: LayerNorm scale and bias, `wt`: layer -> its W^T copy)."""

    def __init__(self, cx):
        s = self.s = cx.op.spec
        self.cx = cx
        self.p, self.q, self.r, self.a = s["direct"], s["gather"], s["rows"], s.get("adds", 0)
        self.layers, self.ks = s["layers"], s["ks"]
        self.nl = len(self.layers)
        self.H = int(self.layers[0]["N"])
        self.ln_eps = s["ln_eps"]
        p, q, r, a = self.p, self.q, self.r, self.a
        self.X = [cx.i(k) for k in range(p)]
        self.T = [cx.i(p + k) for k in range(q)]
        self.Tn = [cpp_dim(cx.vin(p + k).shape[0]) for k in range(q)]
        self.I = [cx.i(p + q + k) for k in range(q)]
        self.R = [cx.i(p + 2 * q + k) for k in range(r)]
        self.A = [cx.i(p + 2 * q + r + k) for k in range(a)]
        pos = p + 2 * q + r + a
        self.W1 = [cx.i(pos + k) for k in range(p)]
        self.nw1 = [numel(cx.vin(pos + k).shape) for k in range(p)]  # their sizes (floats)
        self.nw = [0]
        pos += p
        self.B = [cx.i(pos)]
        pos += 1
        self.W = [None]
        for _ in self.layers[1:]:
            self.W.append(cx.i(pos))
            self.nw.append(numel(cx.vin(pos).shape))
            self.B.append(cx.i(pos + 1))
            pos += 2
        self.ln = (cx.i(pos), cx.i(pos + 1)) if self.ln_eps is not None else None
        pos += 2 if self.ln else 0
        self.wt = {li: cx.i(pos + j) for j, li in enumerate(s.get("wt", []))}
        self.Y = cx.o(0)

    def act(self, k):
        from .common import lit
        from .gemm import ACT_CODES
        a = self.layers[k]["act"]
        return (f"pysofie_gemm::{ACT_CODES[a[0] if a else None]}",
                lit(a[1] if a and a[1] is not None else 0.0, "float"))


@generates("RowMLP")
def gen_row_mlp(cx):
    """Every block of ROW_BLOCK rows goes through all the layers (and the LayerNorm) in two stack buffers."""
    from .common import use_runtime_header
    w, m = cx.w, _RowMLP(cx)
    use_runtime_header(cx, "pysofie_gemm.h")
    M = cpp_dim(cx.vout(0).shape[0])
    H = m.H
    Hp = (H + 15) // 16 * 16
    if m.r:
        w.line(f"alignas(64) float bias0[{Hp}];")
        with w.loop("h", str(Hp)):
            w.line(f"bias0[h] = {m.B[0]}[h];")
        with w.loop("h", str(H)):
            w.line("bias0[h] += " + " + ".join(f"{x}[h]" for x in m.R) + ";")
        m.b0 = "bias0"
    else:
        m.b0 = m.B[0]
    if m.q:  # indices checked before the threads start (an exception must not leave a pool task)
        with w.block(f"for (size_t e = 0; e < static_cast<size_t>({M}); ++e)"):
            for j in range(m.q):
                _index_check(w, f"k{j}", f"{m.I[j]}[e]", m.Tn[j], m.s["whats"][j], "rows")
    rows = cx.vout(0).shape[0]
    if isinstance(rows, int):  # known at generation: one row is the matrix-vector chain alone
        if rows == 1:
            _one_row(m)
        else:
            _row_blocks(m, M)
        return
    with w.block(f"if ({M} == 1)"):  # one row at run time (an event at a time): no thread pool, blocks or tiles
        _one_row(m)
    with w.block("else"):
        _row_blocks(m, M)


def _one_row(m: _RowMLP) -> None:
    """The layers as matrix-vector products over the packed weights (pysofie_gemv.h), bias and activation in the
    store, in two small stack buffers."""
    from .common import lit, use_runtime_header
    cx = m.cx
    use_runtime_header(cx, "pysofie_gemv.h")
    w = cx.w
    p, q, a, nl, H, ks, Y = m.p, m.q, m.a, m.nl, m.H, m.ks, m.Y
    wmax = max(int(ly["N"]) for ly in m.layers)
    used = sorted({("g0", "g1")[k % 2] for k in range(nl) if k < nl - 1 or m.ln})
    if used:
        w.line("alignas(64) float " + ", ".join(f"{b}[{wmax}]" for b in used) + ";")

    def dst(k):
        return Y if k == nl - 1 and not m.ln else ("g0", "g1")[k % 2]
    kind, slope = m.act(0)
    d0 = dst(0)
    if q or a:  # the gathered and added terms first; the products accumulate onto them
        srcs = [f"{m.T[j]}[static_cast<size_t>({m.I[j]}[0]) * {H} + h]" for j in range(q)]
        srcs += [f"{m.A[j]}[h]" for j in range(a)]
        with w.loop("h", str(H)):
            w.line(f"{d0}[h] = {' + '.join(srcs)};")
    for k in range(p):
        last = k == p - 1
        if p == 1 and not (q or a) and 0 in m.wt:
            w.line(f"pysofie_gemv::gemv_rows({H}, {ks[0]}, {(ks[0] + 7) // 8 * 8}, {m.X[0]}, {m.wt[0]}, "
                   f"{d0}, {m.b0}, {kind}, {slope});")
            continue
        acc = "true" if (q or a or k) else "false"
        w.line(f"pysofie_gemv::gemv_packed({H}, {ks[k]}, {m.X[k]}, {m.W1[k]}, {d0}, {acc}, "
               f"{m.b0 if last else 'nullptr'}, {kind if last else 'pysofie_gemm::NONE'}, "
               f"{slope if last else lit(0.0, 'float')});")
    if not p:
        with w.loop("h", str(H)):
            w.line(f"{d0}[h] = pysofie_gemm::act_scalar({d0}[h] + {m.b0}[h], {kind}, {slope});")
    for k in range(1, nl):
        kind, slope = m.act(k)
        N, K = int(m.layers[k]["N"]), int(m.layers[k - 1]["N"])
        if k in m.wt:
            w.line(f"pysofie_gemv::gemv_rows({N}, {K}, {(K + 7) // 8 * 8}, {dst(k - 1)}, {m.wt[k]}, {dst(k)}, "
                   f"{m.B[k]}, {kind}, {slope});")
        else:
            w.line(f"pysofie_gemv::gemv_packed({N}, {K}, {dst(k - 1)}, {m.W[k]}, {dst(k)}, false, {m.B[k]}, {kind}, "
                   f"{slope});")
    if m.ln:
        N = int(m.layers[-1]["N"])
        w.line(f"pysofie_vm::layernorm_rows({dst(nl - 1)}, {m.ln[0]}, {m.ln[1]}, {Y}, 0, 1, {N}, "
               f"{lit(float(m.ln_eps), 'double')}, nullptr, nullptr);")


def _row_blocks(m: _RowMLP, M: str) -> None:
    """Blocks of ROW_BLOCK rows on the thread pool, each through every layer in two stack buffers."""
    from .common import lit
    cx = m.cx
    w = cx.w
    p, q, a, nl, H, ks, Y, layers = m.p, m.q, m.a, m.nl, m.H, m.ks, m.Y, m.layers
    RB = ROW_BLOCK
    wmax = max((int(ly["N"]) + 15) // 16 * 16 for ly in layers)
    with w.block(f"{cx.pool()}.run_range(static_cast<long>({M}), {ROW_GRAIN}, [&](long r0, long r1, int)", close="});"):
        used = sorted({("buf0", "buf1")[k % 2] for k in range(nl) if k < nl - 1 or m.ln})
        if used:
            w.line("alignas(64) float " + ", ".join(f"{b}[{RB * wmax}]" for b in used) + ";")
        with w.block(f"for (long i0 = r0; i0 < r1; i0 += {RB})"):
            w.line(f"const long m = std::min<long>({RB}, r1 - i0);")
            bufs = ["buf0", "buf1"]

            def dst(k):  # where layer k writes: the output for the last layer without LayerNorm
                if k == nl - 1 and not m.ln:
                    return f"{Y} + i0 * {int(layers[k]['N'])}"
                return bufs[k % 2]
            kind, slope = m.act(0)
            d0 = dst(0)
            if q or a:
                with w.block("for (long i = 0; i < m; ++i)"):
                    w.line("const size_t e = static_cast<size_t>(i0 + i);")
                    w.line(f"float* __restrict d = {d0} + i * {H};")
                    srcs = [f"{m.T[j]}[static_cast<size_t>({m.I[j]}[e]) * {H} + h]" for j in range(q)]
                    srcs += [f"{m.A[j]}[e * {H} + h]" for j in range(a)]
                    with w.loop("h", str(H)):
                        w.line(f"d[h] = {' + '.join(srcs)};")
            # each product prefetches the weights of the one after it (the chain's weights come from L3 each call)
            chain = [(m.W1[k], m.nw1[k]) for k in range(p)] + [(m.W[k], m.nw[k]) for k in range(1, nl)] + [None]

            def nxt(t):
                return f"nullptr, {chain[t + 1][0]}, {chain[t + 1][1]}" if chain[t + 1] else "nullptr"
            for k in range(p):
                last = k == p - 1
                w.line(f"pysofie_gemm::gemm_packed(m, {H}, {ks[k]}, {m.X[k]} + i0 * {ks[k]}, {ks[k]}, 1, {m.W1[k]}, "
                       f"{d0}, {H}, {'true' if (q or a or k) else 'false'}, {m.b0 if last else 'nullptr'}, "
                       f"{kind if last else 'pysofie_gemm::NONE'}, {slope if last else lit(0.0, 'float')}, {nxt(k)});")
            if not p:
                with w.block(f"for (long i = 0; i < m * {H}; ++i)"):
                    w.line(f"{d0}[i] = pysofie_gemm::act_scalar({d0}[i] + {m.b0}[i % {H}], {kind}, {slope});")
            for k in range(1, nl):
                kind, slope = m.act(k)
                N, K = int(layers[k]["N"]), int(layers[k - 1]["N"])
                w.line(f"pysofie_gemm::gemm_packed(m, {N}, {K}, {bufs[(k - 1) % 2]}, {K}, 1, {m.W[k]}, {dst(k)}, {N}, "
                       f"false, {m.B[k]}, {kind}, {slope}, {nxt(p + k - 1)});")
            if m.ln:
                N = int(layers[-1]["N"])
                w.line(f"pysofie_vm::layernorm_rows({bufs[(nl - 1) % 2]}, {m.ln[0]}, {m.ln[1]}, {Y} + i0 * {N}, "
                       f"0, m, {N}, {lit(float(m.ln_eps), 'double')}, nullptr, nullptr);")
