"""Generators of the graph-network operators (ops/gnn.py): gathers and segment reductions in one pass over the
rows (O(N + E)), every index checked (std::out_of_range naming the input, never a write outside a buffer)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates
from ..names import c_string


def _index_check(w, var: str, expr: str, n: str, what: str, unit: str) -> None:
    """long long var = expr, checked against [0, n) with a message naming the input, the value and the row."""
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
    E = cx.dims(0)[0]
    w.line(f"using T = {cx.ctype(0)};")
    w.line(f"std::fill_n({cx.o(0)}, {cx.osize(0)}, {_INIT[red]});")
    count = cx.scratch(cx.vout(0).shape[0], cx.vout(0).dtype, "count") if red == "mean" else None
    if count:
        w.line(f"std::fill_n({count}, {S}, T(0));")
    with w.loop("e", E):
        if cx.has(1):
            _index_check(w, "k", f"{cx.i(1)}[e]", S, cx.op.what, "segments")
        else:
            w.line("const long long k = 0;")
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
