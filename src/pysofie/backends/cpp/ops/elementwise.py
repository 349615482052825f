"""Elementwise generators: unary maps and binary ops with numpy broadcasting, driven by expression tables."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, dims_equal, numel
from ..emitter import generates
from .common import broadcast_strides, loop_nest


def _lit(x: float, ctype: str) -> str:
    return f"{ctype}({float(x)!r})"


# C++ expression of y from x (type T); attributes are substituted from the op.
UNARY = {
    "Relu": lambda op, T: f"x > {T}(0) ? x : {T}(0)",
    "LeakyRelu": lambda op, T: f"x >= {T}(0) ? x : {_lit(op.alpha, T)} * x",
    "Sigmoid": lambda op, T: f"{T}(1) / ({T}(1) + std::exp(-x))",
    "Tanh": lambda op, T: "std::tanh(x)",
    "Identity": lambda op, T: "x",
}

BINARY = {
    "Add": lambda op, T: "a + b",
    "Sub": lambda op, T: "a - b",
    "Mul": lambda op, T: "a * b",
    "Div": lambda op, T: "a / b",
}


def unary(cx, expr: str) -> None:
    w = cx.w
    T = cx.ctype(0)
    with w.loop("i", cx.size(0)):
        w.line(f"const {T} x = {cx.i(0)}[i];")
        w.line(f"{cx.o(0)}[i] = {expr};")


@generates(*UNARY)
def gen_unary(cx):
    unary(cx, UNARY[cx.op.op_type](cx.op, cx.ctype(0)))


def broadcast_map(cx, expr: str, ins: list[int], names: list[str]) -> None:
    """out[idx] = expr(names...) where names[k] reads input ins[k] with numpy broadcasting."""
    w = cx.w
    out_shape = list(cx.vout(0).shape)
    shapes = [list(cx.vin(k).shape) for k in ins]
    T = [cx.ctype(k) for k in ins]
    if all(len(s) == len(out_shape) and all(dims_equal(a, b) for a, b in zip(s, out_shape)) for s in shapes) \
            or all(numel(s) == 1 or (len(s) == len(out_shape) and all(dims_equal(a, b) for a, b in zip(s, out_shape)))
                   for s in shapes):
        with w.loop("i", cpp_dim(numel(out_shape))):
            for k, nm, t, s in zip(ins, names, T, shapes):
                idx = "0" if numel(s) == 1 and numel(out_shape) != 1 else "i"
                w.line(f"const {t} {nm} = {cx.i(k)}[{idx}];")
            w.line(f"{cx.o(0)}[i] = {expr};")
        return
    # general case: loop over the output index space with a stride per input (0 on broadcast axes)
    st = [broadcast_strides(s, out_shape) for s in shapes]
    dims = [cpp_dim(d) for d in out_shape]
    w.line("size_t pos = 0;")

    def body(vs):
        for k, nm, t, sk in zip(ins, names, T, st):
            terms = [f"{v} * {s}" if s != "1" else v for v, s in zip(vs, sk) if s != "0"]
            w.line(f"const {t} {nm} = {cx.i(k)}[{' + '.join(terms) if terms else '0'}];")
        w.line(f"{cx.o(0)}[pos++] = {expr};")

    loop_nest(w, dims, body)


@generates(*BINARY)
def gen_binary(cx):
    broadcast_map(cx, BINARY[cx.op.op_type](cx.op, cx.ctype(0)), [0, 1], ["a", "b"])
