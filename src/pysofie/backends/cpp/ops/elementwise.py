"""Elementwise generators: unary maps and binary ops with numpy broadcasting, driven by expression tables."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, dims_equal, numel
from ..emitter import generates
from .common import broadcast_strides, flat_loop, lit, loop_nest

_lit = lit


# C++ expression of y from x (type T); attributes are substituted from the op.
UNARY = {
    "Relu": lambda op, T: f"x < {T}(0) ? {T}(0) : x",  # NaN stays NaN, as in onnxruntime
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
    with flat_loop(cx, cx.size(0)):
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
        with flat_loop(cx, cpp_dim(numel(out_shape))):
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


# ------------------------------------------------------------------------------------------------------------
# Operator coverage: unary math and activations (expressions of x by element type), comparisons, logic,
# variadic ops, Clip, Where, Dropout, casts.
# ------------------------------------------------------------------------------------------------------------
def _is_unsigned(dt) -> bool:
    return dt.name.startswith("UINT")


def _abs(dt, x="x"):
    if _is_unsigned(dt):
        return x
    if dt.is_float:
        return f"std::abs({x})"
    return f"static_cast<{dt.ctype}>({x} < 0 ? -{x} : {x})"


# op_type -> f(op, T, dtype) -> C++ expression of y from x
UNARY_TYPED = {
    "Abs": lambda op, T, dt: _abs(dt),
    "Neg": lambda op, T, dt: f"static_cast<{T}>(-x)",
    "Sqrt": lambda op, T, dt: "std::sqrt(x)",
    "Reciprocal": lambda op, T, dt: f"{T}(1) / x",
    "Exp": lambda op, T, dt: "std::exp(x)",
    "Log": lambda op, T, dt: "std::log(x)",
    "Sin": lambda op, T, dt: "std::sin(x)",
    "Cos": lambda op, T, dt: "std::cos(x)",
    "Tan": lambda op, T, dt: "std::tan(x)",
    "Asin": lambda op, T, dt: "std::asin(x)",
    "Acos": lambda op, T, dt: "std::acos(x)",
    "Atan": lambda op, T, dt: "std::atan(x)",
    "Sinh": lambda op, T, dt: "std::sinh(x)",
    "Cosh": lambda op, T, dt: "std::cosh(x)",
    "Asinh": lambda op, T, dt: "std::asinh(x)",
    "Acosh": lambda op, T, dt: "std::acosh(x)",
    "Atanh": lambda op, T, dt: "std::atanh(x)",
    "Floor": lambda op, T, dt: "std::floor(x)",
    "Ceil": lambda op, T, dt: "std::ceil(x)",
    # round half to even (the default floating point rounding mode), as the spec asks
    "Round": lambda op, T, dt: "std::nearbyint(x)",
    "Erf": lambda op, T, dt: "std::erf(x)",
    # log(1 + exp(x)) without overflow for large x
    "Softplus": lambda op, T, dt: f"x > {T}(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x))",
    "Softsign": lambda op, T, dt: f"x / ({T}(1) + std::abs(x))",
    "Mish": lambda op, T, dt: (f"x * std::tanh(x > {T}(0) ? x + std::log1p(std::exp(-x)) "
                               f": std::log1p(std::exp(x)))"),
    "HardSwish": lambda op, T, dt: f"x * std::max({T}(0), std::min({T}(1), x / {T}(6) + {T}(0.5)))",
    "Sign": lambda op, T, dt: (f"static_cast<{T}>(x > 0 ? 1 : 0)" if _is_unsigned(dt)
                               else f"static_cast<{T}>((x > {T}(0)) - (x < {T}(0)))"),
    "Not": lambda op, T, dt: "!x",
    "BitwiseNot": lambda op, T, dt: f"static_cast<{T}>(~x)",
    "Selu": lambda op, T, dt: (f"x > {T}(0) ? {_lit(op.gamma, T)} * x "
                               f": {_lit(op.gamma, T)} * ({_lit(op.alpha, T)} * std::exp(x) - {_lit(op.alpha, T)})"),
    "Elu": lambda op, T, dt: f"x >= {T}(0) ? x : {_lit(op.alpha, T)} * (std::exp(x) - {T}(1))",
    "Celu": lambda op, T, dt: (f"std::max({T}(0), x) + std::min({T}(0), {_lit(op.alpha, T)} * "
                               f"(std::exp(x / {_lit(op.alpha, T)}) - {T}(1)))"),
    "HardSigmoid": lambda op, T, dt: (f"std::max({T}(0), std::min({T}(1), {_lit(op.alpha, T)} * x + "
                                      f"{_lit(op.beta, T)}))"),
    "ThresholdedRelu": lambda op, T, dt: f"x > {_lit(op.alpha, T)} ? x : {T}(0)",
    "Shrink": lambda op, T, dt: (
        f"static_cast<{T}>(double(x) < -{_lit(op.lambd, 'double')} ? double(x) + {_lit(op.bias, 'double')} : "
        f"double(x) > {_lit(op.lambd, 'double')} ? double(x) - {_lit(op.bias, 'double')} : 0.0)"),
    "Swish": lambda op, T, dt: f"x / ({T}(1) + std::exp(-{_lit(op.alpha, T)} * x))",
    "Gelu": lambda op, T, dt: (
        f"{T}(0.5) * x * ({T}(1) + std::erf(x * {T}(0.70710678118654752440)))" if op.approximate == "none" else
        f"{T}(0.5) * x * ({T}(1) + std::tanh({T}(0.79788456080286535588) * (x + {T}(0.044715) * x * x * x)))"),
    "IsNaN": lambda op, T, dt: "std::isnan(x)",
    "IsInf": lambda op, T, dt: (
        "std::isinf(x)" if op.detect_negative and op.detect_positive else
        f"std::isinf(x) && x > {T}(0)" if op.detect_positive else
        f"std::isinf(x) && x < {T}(0)" if op.detect_negative else "false"),
}


@generates(*UNARY_TYPED)
def gen_unary_typed(cx):
    dt = cx.vin(0).dtype
    w = cx.w
    T = cx.ctype(0)
    with flat_loop(cx, cx.size(0)):
        w.line(f"const {T} x = {cx.i(0)}[i];")
        if cx.op.op_type == "IsInf" and not (cx.op.detect_negative or cx.op.detect_positive):
            w.line("(void)x;")
        w.line(f"{cx.o(0)}[i] = {UNARY_TYPED[cx.op.op_type](cx.op, T, dt)};")


def _mod(op, T, dt):
    if dt.is_float:
        if op.fmod:
            return "std::fmod(a, b)"
        # fmod=0 on floats (allowed from opset 28): the result takes the divisor's sign, as Python's %
        return (f"(std::fmod(a, b) != {T}(0) && ((std::fmod(a, b) < {T}(0)) != (b < {T}(0)))) ? "
                f"std::fmod(a, b) + b : std::fmod(a, b)")
    if op.fmod or _is_unsigned(dt):
        return f"static_cast<{T}>(a % b)"
    # Python-style modulo: the result takes the divisor's sign
    return f"static_cast<{T}>(((a % b) != 0 && (((a % b) < 0) != (b < 0))) ? (a % b) + b : (a % b))"


def _bitshift(op, T, dt):
    bits = dt.itemsize * 8
    left = op.direction == "LEFT"
    if _is_unsigned(dt):
        return f"static_cast<{T}>(b >= {bits} ? 0 : ({'a << b' if left else 'a >> b'}))"
    # signed (opset 28): arithmetic right shift; out-of-range shifts give the sign fill alone
    out = f"(b < 0 || b >= {bits})"
    if left:
        return f"static_cast<{T}>({out} ? 0 : static_cast<std::make_unsigned_t<{T}>>(a) << b)"
    return f"static_cast<{T}>({out} ? (a < 0 ? -1 : 0) : (a >> b))"


BINARY_TYPED = {
    "Equal": lambda op, T, dt: "a == b",
    "Less": lambda op, T, dt: "a < b",
    "LessOrEqual": lambda op, T, dt: "a <= b",
    "Greater": lambda op, T, dt: "a > b",
    "GreaterOrEqual": lambda op, T, dt: "a >= b",
    "And": lambda op, T, dt: "a && b",
    "Or": lambda op, T, dt: "a || b",
    "Xor": lambda op, T, dt: "a != b",
    "BitwiseAnd": lambda op, T, dt: f"static_cast<{T}>(a & b)",
    "BitwiseOr": lambda op, T, dt: f"static_cast<{T}>(a | b)",
    "BitwiseXor": lambda op, T, dt: f"static_cast<{T}>(a ^ b)",
    "BitShift": lambda op, T, dt: _bitshift(op, T, dt),
    "Mod": _mod,
    "Pow": lambda op, T, dt: f"static_cast<{T}>(std::pow(a, b))",
    "PRelu": lambda op, T, dt: f"a < {T}(0) ? static_cast<{T}>(b * a) : a",
}


# float x ** c for a constant c: products instead of std::pow (RMSNorm's x ** 2: exactly pow's result; x ** 3 within
# a rounding)
POW_BY_CONST = {1.0: "a", 2.0: "a * a", 3.0: "a * a * a"}


@generates(*BINARY_TYPED)
def gen_binary_typed(cx):
    dt = cx.vin(0).dtype
    expr = BINARY_TYPED[cx.op.op_type](cx.op, cx.ctype(0), dt)
    c = cx.const(1)
    if cx.op.op_type == "Pow" and dt.is_float and c is not None and c.size == 1 \
            and float(c.reshape(-1)[0]) in POW_BY_CONST and cx.vin(1).dtype is dt:
        expr = POW_BY_CONST[float(c.reshape(-1)[0])]
    broadcast_map(cx, expr, [0, 1], ["a", "b"])


def variadic_expr(t: str, names: list[str], T: str) -> str:
    """Expression of Sum / Mean / Max / Min over the variables `names` (of type T)."""
    if t in ("Sum", "Mean"):
        expr = " + ".join(names)
        if t == "Mean":
            expr = f"({expr}) / {T}({len(names)})"
        elif len(names) > 1:
            expr = f"static_cast<{T}>({expr})"
    else:
        fn = "std::max" if t == "Max" else "std::min"
        expr = names[0]
        for nm in names[1:]:
            expr = f"{fn}<{T}>({expr}, {nm})"
    return expr


@generates("Sum", "Mean", "Max", "Min")
def gen_variadic(cx):
    ins = [k for k, v in enumerate(cx.node.inputs) if v is not None]
    names = [f"a{j}" for j in range(len(ins))]
    broadcast_map(cx, variadic_expr(cx.op.op_type, names, cx.ctype(ins[0])), ins, names)


@generates("Where")
def gen_where(cx):
    broadcast_map(cx, "c ? x : y", [0, 1, 2], ["c", "x", "y"])


def clip_bounds(cx) -> tuple[str, str]:
    """C++ expressions of Clip's lower and upper bounds (inputs, attributes before opset 11, or the type's range)."""
    T = cx.ctype(0)
    op = cx.op
    lo, hi = f"std::numeric_limits<{T}>::lowest()", f"std::numeric_limits<{T}>::max()"
    if cx.has(1):
        lo = f"{cx.i(1)}[0]"
    elif op.min is not None and cx.node.input(1) is None:
        lo = _lit(op.min, T)
    if cx.has(2):
        hi = f"{cx.i(2)}[0]"
    elif op.max is not None and cx.node.input(2) is None:
        hi = _lit(op.max, T)
    return lo, hi


@generates("Clip")
def gen_clip(cx):
    w = cx.w
    T = cx.ctype(0)
    lo, hi = clip_bounds(cx)
    w.line(f"const {T} lo = {lo};")
    w.line(f"const {T} hi = {hi};")
    with w.loop("i", cx.size(0)):
        w.line(f"const {T} x = {cx.i(0)}[i];")
        # min(max(x, lo), hi): when min > max every value becomes max, as the spec says
        w.line(f"{cx.o(0)}[i] = std::min<{T}>(std::max<{T}>(x, lo), hi);")
