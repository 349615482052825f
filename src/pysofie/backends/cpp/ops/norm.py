"""BatchNormalization (inference) and Softmax."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates


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
        w.line(f"const {T} s = {cx.i(1)}[c] / std::sqrt({cx.i(4)}[c] + {T}({eps!r}));")
        w.line(f"const {T} b = {cx.i(2)}[c] - {cx.i(3)}[c] * s;")
        with w.loop("n", N):
            w.line(f"const size_t base = (n * {C} + c) * {inner};")
            with w.loop("i", inner):
                w.line(f"{cx.o(0)}[base + i] = {cx.i(0)}[base + i] * s + b;")


def softmax_loops(cx, log: bool = False) -> None:
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    axis, coerce = cx.op.axis_for(cx.node)
    outer = cpp_dim(numel(x.shape[:axis]))
    if coerce:
        n, inner = cpp_dim(numel(x.shape[axis:])), "1"
    else:
        n, inner = cpp_dim(x.shape[axis]), cpp_dim(numel(x.shape[axis + 1:]))
    X, Y = cx.i(0), cx.o(0)
    with w.loop("o", outer):
        with w.loop("j", inner):
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


@generates("Softmax")
def gen_softmax(cx):
    softmax_loops(cx, log=False)
