"""Elementwise kernels: one grid-stride kernel per node; the scalar expressions are the C++ back end's tables
(backends/cpp/ops/elementwise.py), which are valid device code (compiled with --expt-relaxed-constexpr)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, dims_equal, numel
from ...cpp.ops.common import broadcast_strides
from ...cpp.ops.elementwise import BINARY, BINARY_TYPED, UNARY, UNARY_TYPED, clip_bounds, variadic_expr
from ..emitter import coords, generates


def unary(cx, expr: str) -> None:
    T = cx.ctype(0)
    X, Y = cx.i(0), cx.o(0)
    cx.launch(cx.size(0), [f"const {T} x = {X}[i];", f"{Y}[i] = {expr};"])


@generates(*UNARY)
def gen_unary(cx):
    unary(cx, UNARY[cx.op.op_type](cx.op, cx.ctype(0)))


@generates(*UNARY_TYPED)
def gen_unary_typed(cx):
    T = cx.ctype(0)
    expr = UNARY_TYPED[cx.op.op_type](cx.op, T, cx.vin(0).dtype)
    body = [f"const {T} x = {cx.i(0)}[i];"]
    if cx.op.op_type == "IsInf" and not (cx.op.detect_negative or cx.op.detect_positive):
        body.append("(void)x;")
    body.append(f"{cx.o(0)}[i] = {expr};")
    cx.launch(cx.size(0), body)


def broadcast_map(cx, expr: str, ins: list[int], names: list[str]) -> None:
    """out[i] = expr(names...), names[k] reading input ins[k] with numpy broadcasting: one thread per output."""
    out_shape = list(cx.vout(0).shape)
    shapes = [list(cx.vin(k).shape) for k in ins]
    T = [cx.ctype(k) for k in ins]
    n = cpp_dim(numel(out_shape))

    def same(s):
        return len(s) == len(out_shape) and all(dims_equal(a, b) for a, b in zip(s, out_shape))

    def body(w):
        if all(numel(s) == 1 or same(s) for s in shapes):
            for k, nm, t, s in zip(ins, names, T, shapes):
                idx = "0" if numel(s) == 1 and numel(out_shape) != 1 else "i"
                w.line(f"const {t} {nm} = {cx.i(k)}[{idx}];")
        else:
            vs = coords(w, [cpp_dim(d) for d in out_shape])
            for k, nm, t, s in zip(ins, names, T, shapes):
                st = broadcast_strides(s, out_shape)
                terms = [f"{v} * {x}" if x != "1" else v for v, x in zip(vs, st) if x != "0"]
                w.line(f"const {t} {nm} = {cx.i(k)}[{' + '.join(terms) if terms else '0'}];")
        w.line(f"{cx.o(0)}[i] = {expr};")

    cx.launch(n, body)


@generates(*BINARY)
def gen_binary(cx):
    broadcast_map(cx, BINARY[cx.op.op_type](cx.op, cx.ctype(0)), [0, 1], ["a", "b"])


@generates(*BINARY_TYPED)
def gen_binary_typed(cx):
    broadcast_map(cx, BINARY_TYPED[cx.op.op_type](cx.op, cx.ctype(0), cx.vin(0).dtype), [0, 1], ["a", "b"])


@generates("Sum", "Mean", "Max", "Min")
def gen_variadic(cx):
    ins = [k for k, v in enumerate(cx.node.inputs) if v is not None]
    names = [f"a{j}" for j in range(len(ins))]
    broadcast_map(cx, variadic_expr(cx.op.op_type, names, cx.ctype(ins[0])), ins, names)


@generates("Where")
def gen_where(cx):
    broadcast_map(cx, "c ? x : y", [0, 1, 2], ["c", "x", "y"])


@generates("Clip")
def gen_clip(cx):
    T = cx.ctype(0)
    lo, hi = clip_bounds(cx)
    cx.launch(cx.size(0), [f"const {T} lo = {lo};", f"const {T} hi = {hi};", f"const {T} x = {cx.i(0)}[i];",
                           f"{cx.o(0)}[i] = std::min<{T}>(std::max<{T}>(x, lo), hi);"])

