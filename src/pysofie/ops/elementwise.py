"""Elementwise operators: unary maps, binary ops with numpy broadcasting, variadic reductions (Sum, Max...)."""
from __future__ import annotations

from ..ir import DType, Node
from ..errors import ShapeInferenceError
from ..ir.shapes import Sym, dim_div, dim_max, dim_min, dims_equal, eq, floordiv, le, lt, nonneg, numel
from .base import REQUIRED, Op, register


def broadcast_shapes(node: Node, shapes: list[tuple]) -> tuple:
    rank = max(len(s) for s in shapes)
    out = []
    for k in range(rank):
        dim = 1
        for s in shapes:
            j = k - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(dim, int) and dim == 1:
                dim = d
            elif not dims_equal(dim, d):
                raise ShapeInferenceError(
                    f"{node.describe()}: shapes {[list(map(str, s)) for s in shapes]} cannot be broadcast")
        out.append(dim)
    return tuple(out)


class Unary(Op):
    """y = f(x), same shape and dtype."""
    FLOAT_ONLY = True

    def check(self, node):
        dt = node.inputs[0].dtype
        if self.FLOAT_ONLY and dt is not None and not dt.is_float:
            return [f"{node.describe()}: element type {dt.name.lower()} is not supported (float types only)"]
        return []

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class Relu(Unary):
    FLOAT_ONLY = False


@register()
class LeakyRelu(Unary):
    ATTRS = {"alpha": 0.01}


@register()
class Sigmoid(Unary):
    pass


@register()
class Tanh(Unary):
    pass


@register()
class Identity(Unary):
    FLOAT_ONLY = False

    def fold_symbolic(self, node):
        return [node.inputs[0].sym] if node.inputs[0].sym is not None else None


class Binary(Op):
    """c = a (op) b with multidirectional (numpy) broadcasting."""
    INPUTS = ("A", "B")
    OUTPUTS = ("C",)
    RESULT_BOOL = False

    def infer(self, node):
        a, b = node.inputs[0], node.inputs[1]
        if a.dtype != b.dtype:
            raise self.fail(node, f"input types differ: {a.dtype.name.lower()} vs {b.dtype.name.lower()}")
        shape = broadcast_shapes(node, [a.shape, b.shape])
        return [(DType.BOOL if self.RESULT_BOOL else a.dtype, shape)]

    def sym_apply(self, x, y):
        return None

    def fold_symbolic(self, node):
        return fold_elementwise(node, node.inputs[:2], self.sym_apply)


def sym_elems(v) -> list | None:
    """The elements of a small integer/bool tensor known at generation time (symbolic or constant), else None."""
    if v is None or v.dtype is None or not (v.dtype.is_int or v.dtype is DType.BOOL) or v.rank > 1:
        return None
    if v.sym is not None:
        return list(v.sym)
    if v.const is not None:
        return [int(x) for x in v.const.reshape(-1)]
    return None


def fold_elementwise(node, ins, fn):
    """Fold an elementwise op over 0-D/1-D shape values when one input is symbolic: fn(x, y, ...) per element
    (broadcasting length-1 inputs), None where fn cannot decide."""
    if not any(v is not None and v.sym is not None for v in ins):
        return None
    cols = [sym_elems(v) for v in ins]
    if any(c is None for c in cols):
        return None
    n = max(len(c) for c in cols)
    if any(len(c) not in (1, n) for c in cols):
        return None
    out = []
    for k in range(n):
        r = fn(*[c[0] if len(c) == 1 else c[k] for c in cols])
        if r is None:
            return None
        out.append(int(r) if isinstance(r, bool) else r)
    return [out]


@register()
class Add(Binary):
    def sym_apply(self, x, y):
        return x + y


@register()
class Sub(Binary):
    def sym_apply(self, x, y):
        return x - y


@register()
class Mul(Binary):
    def sym_apply(self, x, y):
        return x * y


@register()
class Div(Binary):
    def sym_apply(self, x, y):
        q = dim_div(x, y)
        if q is None and isinstance(y, int) and y > 0 and nonneg(x):
            q = floordiv(x, y)  # integer Div truncates: the floor for a size
        return q


# ------------------------------------------------------------------------------------------------------------
# Operator coverage: element type sets, unary math, activations, comparisons, logic, variadic ops.
# ------------------------------------------------------------------------------------------------------------
FLOATS = frozenset({DType.FLOAT, DType.DOUBLE})
SIGNED = frozenset({DType.INT8, DType.INT16, DType.INT32, DType.INT64})
UNSIGNED = frozenset({DType.UINT8, DType.UINT16, DType.UINT32, DType.UINT64})
INTS = SIGNED | UNSIGNED
NUMERIC = FLOATS | INTS
BOOLS = frozenset({DType.BOOL})
ALL = NUMERIC | BOOLS
INT3264 = frozenset({DType.INT32, DType.INT64})


def check_types(node, dtypes, allowed, what="element type") -> list[str]:
    """Problems for every dtype in `dtypes` (None entries skipped) that is not in `allowed`."""
    out = []
    for dt in dtypes:
        if dt is not None and dt not in allowed:
            names = ", ".join(sorted(d.name.lower() for d in allowed))
            out.append(f"{node.describe()}: {what} {dt.name.lower()} is not supported (supported: {names})")
    return out


class TypedUnary(Unary):
    """Unary map with an explicit set of supported element types."""
    TYPES = FLOATS

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], self.TYPES)


def _unary(name, types=FLOATS, attrs=None):
    cls = type(name, (TypedUnary,), {"TYPES": types, "ATTRS": dict(attrs or {})})
    return register(name)(cls)


for _n in ["Sqrt", "Reciprocal", "Exp", "Log", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
           "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round", "Erf", "Softplus", "Softsign", "Mish",
           "HardSwish"]:
    _unary(_n)
_unary("Abs", NUMERIC)
_unary("Neg", FLOATS | SIGNED)
_unary("Sign", NUMERIC)
_unary("Not", BOOLS)
_unary("BitwiseNot", INTS)
_unary("Selu", FLOATS, {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875})
_unary("Elu", FLOATS, {"alpha": 1.0})
_unary("Celu", FLOATS, {"alpha": 1.0})
_unary("HardSigmoid", FLOATS, {"alpha": 0.2, "beta": 0.5})
_unary("ThresholdedRelu", FLOATS, {"alpha": 1.0})
_unary("Shrink", NUMERIC, {"bias": 0.0, "lambd": 0.5})
_unary("Swish", FLOATS, {"alpha": 1.0})


@register()
class Gelu(TypedUnary):
    ATTRS = {"approximate": "none"}

    def check(self, node):
        p = super().check(node)
        if self.approximate not in ("none", "tanh"):
            p.append(f"{node.describe()}: approximate='{self.approximate}' is not supported (none, tanh)")
        return p


class _Predicate(TypedUnary):
    def infer(self, node):
        return [(DType.BOOL, node.inputs[0].shape)]


@register()
class IsNaN(_Predicate):
    pass


@register()
class IsInf(_Predicate):
    ATTRS = {"detect_negative": 1, "detect_positive": 1}


@register()
class Dropout(Op):
    """Inference: the identity; the optional mask output is all true."""
    ATTRS = {"ratio": None, "seed": None, "is_test": None, "consumed_inputs": None}
    INPUTS = ("data", "ratio", "training_mode")
    OUTPUTS = ("output", "mask")

    def check(self, node):
        p = []
        if self.is_test == 0 and 0 < self.opset < 7:
            p.append(f"{node.describe()}: is_test=0 (training) is not supported")
        tm = node.input(2)
        if tm is not None:
            if tm.const is None:
                p.append(f"{node.describe()}: training_mode must be a constant (inference only)")
            elif bool(tm.const.reshape(-1)[0]):
                p.append(f"{node.describe()}: training_mode=true is not supported (inference only)")
        return p

    def runtime_inputs(self, node):
        return [0]

    def infer(self, node):
        x = node.inputs[0]
        res = [(x.dtype, x.shape)]
        if len(node.outputs) > 1:
            res.append((DType.BOOL, x.shape))
        return res


@register()
class Clip(Op):
    """Clamp to [min, max]: attributes before opset 11, optional scalar inputs from opset 11."""
    ATTRS = {"min": None, "max": None}
    INPUTS = ("input", "min", "max")
    OUTPUTS = ("output",)

    def check(self, node):
        p = check_types(node, [node.inputs[0].dtype], NUMERIC)
        for k in (1, 2):
            v = node.input(k)
            if v is not None and v.dtype is not None:
                if v.dtype != node.inputs[0].dtype:
                    p.append(f"{node.describe()}: input '{v.name}' has type {v.dtype.name.lower()}, expected "
                             f"{node.inputs[0].dtype.name.lower()}")
                if v.shape is not None and not dims_equal(numel(v.shape), 1):
                    p.append(f"{node.describe()}: input '{v.name}' must be a scalar")
        return p

    def infer(self, node):
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class PRelu(Binary):
    INPUTS = ("X", "slope")
    OUTPUTS = ("Y",)

    def check(self, node):
        return check_types(node, [node.inputs[0].dtype], FLOATS | SIGNED)

    def infer(self, node):
        (dt, shape), = super().infer(node)
        if not dims_equal(len(shape), node.inputs[0].rank) or any(
                not dims_equal(a, b) for a, b in zip(shape, node.inputs[0].shape)):
            raise self.fail(node, "slope must broadcast to the shape of X")
        return [(dt, shape)]


class TypedBinary(Binary):
    TYPES = NUMERIC

    def check(self, node):
        return check_types(node, [v.dtype for v in node.inputs[:2]], self.TYPES)


def _binary(name, types=NUMERIC, result_bool=False, attrs=None):
    cls = type(name, (TypedBinary,), {"TYPES": types, "RESULT_BOOL": result_bool, "ATTRS": dict(attrs or {})})
    return register(name)(cls)


# comparisons of sizes fold when their answer holds for every size (a size is >= 0, so S == -1 is false)
_COMPARE = {"Equal": eq, "Less": lt, "LessOrEqual": le, "Greater": lambda x, y: lt(y, x),
            "GreaterOrEqual": lambda x, y: le(y, x)}
for _n, _f in _COMPARE.items():
    _binary(_n, ALL if _n == "Equal" else NUMERIC, result_bool=True).sym_apply = staticmethod(_f)
for _n in ["And", "Or", "Xor"]:
    _binary(_n, BOOLS, result_bool=True)
for _n in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"]:
    _binary(_n, INTS)
_binary("BitShift", INTS, attrs={"direction": REQUIRED})  # signed types from opset 28


@register()
class Mod(TypedBinary):
    ATTRS = {"fmod": 0}



@register()
class Pow(Binary):
    """Z = X ** Y; from opset 12 the exponent may have another numeric type (the result has X's type)."""
    INPUTS = ("X", "Y")
    OUTPUTS = ("Z",)

    def check(self, node):
        return (check_types(node, [node.inputs[0].dtype], FLOATS | INT3264) +
                check_types(node, [node.inputs[1].dtype], NUMERIC, "exponent type"))

    def infer(self, node):
        a, b = node.inputs[0], node.inputs[1]
        return [(a.dtype, broadcast_shapes(node, [a.shape, b.shape]))]


class Variadic(Op):
    """Elementwise over any number of inputs with multidirectional broadcasting (Sum, Mean, Max, Min)."""
    INPUTS = ("data_0*",)
    OUTPUTS = ("result",)
    TYPES = NUMERIC

    def check(self, node):
        xs = [v for v in node.inputs if v is not None]
        p = check_types(node, [xs[0].dtype], self.TYPES)
        if any(v.dtype != xs[0].dtype for v in xs):
            p.append(f"{node.describe()}: inputs have different element types")
        return p

    def infer(self, node):
        xs = [v for v in node.inputs if v is not None]
        return [(xs[0].dtype, broadcast_shapes(node, [v.shape for v in xs]))]


@register()
class Sum(Variadic):
    pass


@register()
class Mean(Variadic):
    TYPES = FLOATS


@register()
class Max(Variadic):
    def fold_symbolic(self, node):
        return fold_elementwise(node, [v for v in node.inputs if v is not None], _fold_all(dim_max))


@register()
class Min(Variadic):
    def fold_symbolic(self, node):
        return fold_elementwise(node, [v for v in node.inputs if v is not None], _fold_all(dim_min))


def _fold_all(f2):
    def fold(*xs):
        acc = xs[0]
        for x in xs[1:]:
            acc = f2(acc, x)
        return acc
    return fold


@register()
class Where(Op):
    INPUTS = ("condition", "X", "Y")
    OUTPUTS = ("output",)

    def check(self, node):
        c, x, y = node.inputs[:3]
        p = []
        if c.dtype is not DType.BOOL:
            p.append(f"{node.describe()}: condition must be bool, got {c.dtype.name.lower()}")
        if x.dtype != y.dtype:
            p.append(f"{node.describe()}: X and Y differ in type ({x.dtype.name.lower()} vs {y.dtype.name.lower()})")
        return p

    def infer(self, node):
        c, x, y = node.inputs[:3]
        return [(x.dtype, broadcast_shapes(node, [c.shape, x.shape, y.shape]))]

    def fold_symbolic(self, node):
        # Where(Equal(s, -1), ones, s): how exporters write expand(batch, -1, -1)
        return fold_elementwise(node, node.inputs[:3], lambda c, x, y: x if c else y)
