"""Elementwise operators: unary maps, binary ops with numpy broadcasting, variadic reductions (Sum, Max...)."""
from __future__ import annotations

from ..ir import DType, Node
from ..errors import ShapeInferenceError
from ..ir.shapes import dim_div, dims_equal, numel
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
        a, b = node.inputs[0], node.inputs[1]
        if a.sym is None and b.sym is None:
            return None
        if a.rank > 1 or b.rank > 1:
            return None

        def elems(v):
            if v.sym is not None:
                return list(v.sym)
            if v.const is not None:
                return [int(x) for x in v.const.reshape(-1)]
            return None

        ea, eb = elems(a), elems(b)
        if ea is None or eb is None:
            return None
        n = max(len(ea), len(eb))
        ea = ea * n if len(ea) == 1 else ea
        eb = eb * n if len(eb) == 1 else eb
        out = []
        for x, y in zip(ea, eb):
            r = self.sym_apply(x, y)
            if r is None:
                return None
            out.append(r)
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
        return dim_div(x, y)


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


for _n in ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]:
    _binary(_n, ALL if _n == "Equal" else NUMERIC, result_bool=True)
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
    pass


@register()
class Min(Variadic):
    pass


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
