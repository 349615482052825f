"""Elementwise operators (unary math, activations, comparisons, logic, variadic, Clip, Where, Pow, Mod...)
against onnx's reference evaluator. All cases of this module compile into one shared library."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


SHAPES = [(7,), (2, 3, 5)]
# -- unary math: inputs drawn inside each function's domain ------------------------------------------------
DOMAIN = {
    "Sqrt": (0.01, 4), "Reciprocal": (0.5, 3), "Exp": (-3, 3), "Log": (0.05, 5), "Sin": (-4, 4), "Cos": (-4, 4),
    "Tan": (-1.2, 1.2), "Asin": (-0.99, 0.99), "Acos": (-0.99, 0.99), "Atan": (-5, 5), "Sinh": (-3, 3),
    "Cosh": (-3, 3), "Asinh": (-5, 5), "Acosh": (1.01, 5), "Atanh": (-0.95, 0.95), "Floor": (-5, 5),
    "Ceil": (-5, 5), "Erf": (-3, 3), "Softplus": (-30, 30), "Softsign": (-5, 5), "Abs": (-5, 5), "Neg": (-5, 5),
    "Sign": (-5, 5),
}
for op, (lo, hi) in DOMAIN.items():
    for shape in SHAPES:
        case(f"{op}-{shape}", op, {"x": rand(*shape, low=lo, high=hi)})
    # onnx's reference evaluator computes Erf in float32 even for float64 input (and onnxruntime has no
    # double Erf): float32 accuracy is the most that can be checked there
    tol = 1e-6 if op == "Erf" else 1e-10
    case(f"{op}-f64", op, {"x": rand(4, 3, low=lo, high=hi, dtype=np.float64)}, rtol=tol, atol=tol / 100)
case("Round", "Round", {"x": np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6, 3.7, 2.0], np.float32)})
case("Sign-zero", "Sign", {"x": np.array([-2.0, 0.0, 3.0], np.float32)})
for dt in (np.int64, np.int32, np.int8):
    xi = np.array([[-7, 0, 3], [5, -1, 100]], dtype=dt)
    case(f"Abs-{dt.__name__}", "Abs", {"x": xi})
    case(f"Neg-{dt.__name__}", "Neg", {"x": xi})
    case(f"Sign-{dt.__name__}", "Sign", {"x": xi})
case("Abs-uint8", "Abs", {"x": np.array([0, 7, 255], np.uint8)})
case("Sign-uint8", "Sign", {"x": np.array([0, 7, 255], np.uint8)})
case("Relu-int32", "Relu", {"x": np.array([-3, 0, 4], np.int32)}, opset=14)
case("Not", "Not", {"x": np.array([[True, False], [False, False]])})
case("BitwiseNot-int32", "BitwiseNot", {"x": np.array([0, -1, 5, 123456], np.int32)})
case("BitwiseNot-uint8", "BitwiseNot", {"x": np.array([0, 1, 200, 255], np.uint8)})
SPECIAL = np.array([1.0, -np.inf, np.inf, np.nan, 0.0, -3.5], np.float32)
case("IsNaN", "IsNaN", {"x": SPECIAL})
case("IsNaN-f64", "IsNaN", {"x": SPECIAL.astype(np.float64)})
for neg in (0, 1):
    for pos in (0, 1):
        case(f"IsInf-n{neg}-p{pos}", "IsInf", {"x": SPECIAL}, {"detect_negative": neg, "detect_positive": pos})

# -- activations --------------------------------------------------------------------------------------------
ACT = [
    ("Selu", {}), ("Selu", {"alpha": 2.0, "gamma": 3.0}), ("Elu", {}), ("Elu", {"alpha": 0.5}), ("Celu", {}),
    ("Celu", {"alpha": 2.0}), ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}),
    ("Mish", {}), ("ThresholdedRelu", {}), ("ThresholdedRelu", {"alpha": 0.5}), ("Shrink", {}),
    ("Shrink", {"bias": 0.3, "lambd": 1.0}), ("Gelu", {}), ("Gelu", {"approximate": "tanh"}), ("Swish", {}),
    ("Swish", {"alpha": 1.7}),
]
for k, (op, attrs) in enumerate(ACT):
    opset = 24 if op == "Swish" else 22
    for shape in SHAPES:
        case(f"{op}-{k}-{shape}", op, {"x": rand(*shape, low=-4, high=4)}, attrs, opset=opset)
case("Shrink-int32", "Shrink", {"x": np.array([-5, -1, 0, 1, 5], np.int32)}, {"bias": 2.0, "lambd": 1.5})
case("Elu-f64", "Elu", {"x": rand(3, 4, dtype=np.float64, low=-3, high=3)}, rtol=1e-10, atol=1e-12)

for xs, ss in [((2, 3, 4), (4,)), ((2, 3, 4), (3, 1)), ((1, 3, 5, 5), (3, 1, 1)), ((5,), (1,)), ((2, 6), (2, 6))]:
    case(f"PRelu-{xs}-{ss}", "PRelu", {"x": rand(*xs, low=-3, high=3), "slope": rand(*ss)}, init=("slope",))
case("PRelu-runtime-slope", "PRelu", {"x": rand(3, 4, low=-3, high=3), "slope": rand(4)})

# Clip: min/max as optional inputs (opset >= 11) and as attributes (before)
X = rand(3, 5, low=-3, high=3)
case("Clip-both", "Clip", {"x": X, "lo": np.array(-0.5, np.float32), "hi": np.array(1.2, np.float32)},
     init=("lo", "hi"))
case("Clip-min", "Clip", {"x": X, "lo": np.array(-0.5, np.float32)}, init=("lo",))
case("Clip-max", "Clip", {"x": X, "lo": None, "hi": np.array(0.3, np.float32)}, init=("hi",))
case("Clip-none", "Clip", {"x": X})
case("Clip-runtime", "Clip", {"x": X, "lo": np.array(-1.0, np.float32), "hi": np.array(0.5, np.float32)})
case("Clip-int64", "Clip", {"x": np.arange(-5, 5, dtype=np.int64), "lo": np.array(-2, np.int64),
                            "hi": np.array(3, np.int64)}, init=("lo", "hi"))
case("Clip-opset6", "Clip", {"x": X}, {"min": -0.7, "max": 0.8}, opset=6)
case("Clip-opset6-default", "Clip", {"x": X}, {"max": 0.8}, opset=6)

case("Clip-min-above-max", "Clip", {"x": X, "lo": np.array(1.0, np.float32), "hi": np.array(-1.0, np.float32)},
     init=("lo", "hi"))

# Dropout: the identity at inference, an all-true mask when requested
case("Dropout", "Dropout", {"x": rand(3, 4)})
case("Dropout-mask", "Dropout", {"x": rand(3, 4)}, n_outputs=2)
case("Dropout-ratio", "Dropout", {"x": rand(2, 5), "r": np.array(0.3, np.float32)}, init=("r",), n_outputs=2)
case("Dropout-inference-mode", "Dropout", {"x": rand(2, 5), "r": np.array(0.5, np.float32), "t": np.array(False)},
     init=("r", "t"), n_outputs=2)
case("Dropout-opset7", "Dropout", {"x": rand(2, 5)}, {"ratio": 0.2}, opset=7)

# -- binary -------------------------------------------------------------------------------------------------
BCAST = [((3, 4), (3, 4)), ((2, 3, 4), (3, 1)), ((1,), (2, 5)), ((2, 1, 4), (1, 3, 1)), ((), (3,))]
for a, b in BCAST:
    case(f"Pow-{a}-{b}", "Pow", {"a": rand(*a, low=0.1, high=3), "b": rand(*b, low=-2, high=2)})
case("Pow-int-exp", "Pow", {"a": rand(3, 4, low=-3, high=3), "b": np.array([2], np.int64)})
case("Pow-int64", "Pow", {"a": np.array([1, 2, 3, -4], np.int64), "b": np.array([3, 2, 0, 3], np.int64)})
case("Pow-f64", "Pow", {"a": rand(3, dtype=np.float64, low=0.5, high=2), "b": np.array([1.5], np.float64)},
     rtol=1e-12)
# Mod: integer (Python-style sign of the divisor, or C fmod), float (fmod=1 only)
MA = np.array([[-7, 7, -7, 7, 5, -4], [12, -13, 0, 9, -1, 3]])
MB = np.array([[3, 3, -3, -3, 5, 7], [5, 5, 2, -4, 3, -2]])
for dt in (np.int64, np.int32, np.int8):
    for fm in (0, 1):
        case(f"Mod-{dt.__name__}-fmod{fm}", "Mod", {"a": MA.astype(dt), "b": MB.astype(dt)}, {"fmod": fm})
case("Mod-uint8", "Mod", {"a": np.array([7, 200, 9], np.uint8), "b": np.array([3], np.uint8)})
case("Mod-float", "Mod", {"a": rand(3, 4, low=-5, high=5), "b": rand(4, low=0.5, high=2)}, {"fmod": 1})
case("Mod-float-neg", "Mod", {"a": rand(3, 4, low=-5, high=5), "b": -rand(1, low=0.5, high=2)}, {"fmod": 1})

for op in ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]:
    for a, b in BCAST[:4]:
        A = np.round(rand(*a, low=-2, high=2))
        B = np.round(rand(*b, low=-2, high=2))
        case(f"{op}-{a}-{b}", op, {"a": A, "b": B})
    case(f"{op}-int64", op, {"a": np.array([[1, 2, 3], [3, 2, 1]], np.int64), "b": np.array([2, 2, 2], np.int64)})
case("Equal-bool", "Equal", {"a": np.array([True, False, True]), "b": np.array([True, True, False])})
BA = np.array([[True, False], [True, True], [False, False]])
for op in ["And", "Or", "Xor"]:
    case(f"{op}", op, {"a": BA, "b": np.array([True, False])})
    case(f"{op}-same", op, {"a": BA, "b": ~BA[::-1].copy()})
for op in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"]:
    case(f"{op}-int32", op, {"a": np.array([[12, -7, 0], [255, 3, 9]], np.int32), "b": np.array([10, 6, -1], np.int32)})
    case(f"{op}-uint8", op, {"a": np.array([12, 200, 0, 255], np.uint8), "b": np.array([10, 7, 1, 15], np.uint8)})
for d in ("LEFT", "RIGHT"):
    case(f"BitShift-{d}-uint32", "BitShift", {"a": np.array([1, 16, 255, 7], np.uint32),
                                              "b": np.array([1, 2, 3, 0], np.uint32)}, {"direction": d})
    case(f"BitShift-{d}-uint8", "BitShift", {"a": np.array([[1, 16], [128, 7]], np.uint8),
                                             "b": np.array([2], np.uint8)}, {"direction": d})

# opset 28: signed BitShift (arithmetic right shift, out-of-range shifts), float Mod with fmod=0
for d in ("LEFT", "RIGHT"):
    for dt in (np.int8, np.int32, np.int64):
        case(f"BitShift-{d}-{dt.__name__}", "BitShift", {"a": np.array([1, -16, 100, -7, 5, -1], dt),
                                                         "b": np.array([1, 2, 3, 0, -1, 70], dt)},
             {"direction": d}, opset=28)
case("Mod-float-fmod0", "Mod", {"a": rand(3, 4, low=-5, high=5), "b": np.array([1.5, -2.0, 0.7, -0.3], np.float32)},
     opset=28)
case("Pow-uint8-exponent", "Pow", {"a": rand(4, low=0.5, high=2), "b": np.array([0, 1, 2, 3], np.uint8)})

# -- variadic ops with broadcasting ------------------------------------------------------------------------
VAR = [[(3, 4)], [(3, 4), (3, 4)], [(2, 3, 4), (4,), (3, 1)], [(1,), (2, 5), (5,)], [(2, 1, 3), (4, 1), (3,), ()]]
for op in ["Sum", "Mean", "Max", "Min"]:
    for k, shapes in enumerate(VAR):
        ins = {f"x{j}": rand(*s, seed=10 * k + j) for j, s in enumerate(shapes)}
        # onnx's reference evaluator fails on Mean when the first input is not the broadcast shape: onnxruntime
        case(f"{op}-{k}", op, ins, oracle="ort" if op == "Mean" else "reference")
    if op != "Mean":
        case(f"{op}-int32", op, {"a": np.array([[1, -5], [3, 9]], np.int32), "b": np.array([2, -7], np.int32)})
case("Max-opset7", "Max", {"a": rand(2, 3), "b": rand(3)}, opset=7)

case("Where", "Where", {"c": np.array([[True, False, True], [False, False, True]]), "x": rand(2, 3), "y": rand(2, 3)})
case("Where-bcast", "Where", {"c": np.array([True, False, True]), "x": rand(2, 1), "y": rand(4, 2, 3)})
case("Where-const-cond", "Where", {"c": np.array([[True, False], [False, True]]), "x": rand(2, 2), "y": rand(2, 2)},
     init=("c",))  # a bool weight read from the weight file
case("Where-int64", "Where", {"c": np.array([[True], [False]]), "x": np.arange(6, dtype=np.int64).reshape(2, 3),
                              "y": np.array([-1], np.int64)})

# CastLike: the type of the second input (which only provides its type)
for src, dst in [(np.float32, np.int64), (np.int64, np.float32), (np.float32, np.float64), (np.int32, np.bool_),
                 (np.float64, np.int8)]:
    x = (rand(3, 4, low=-5, high=5) * 1.0).astype(src)
    case(f"CastLike-{src.__name__}-{dst.__name__}", "CastLike", {"x": x, "t": np.zeros(1, dst)}, init=("t",))
case("CastLike-runtime-target", "CastLike", {"x": rand(2, 3), "t": np.zeros(2, np.float64)})


# -- symbolic (dynamic) batch size ----------------------------------------------------------------------------
case("Sqrt-symbolic", "Sqrt", {"x": rand(5, 3, low=0.1, high=2)}, symbolic={"x": ["N", 3]})
case("Gelu-symbolic", "Gelu", {"x": rand(4, 3)}, symbolic={"x": ["N", 3]})
case("Less-symbolic", "Less", {"a": rand(4, 3), "b": rand(3)}, symbolic={"a": ["N", 3]})
case("Sum-symbolic", "Sum", {"a": rand(4, 3), "b": rand(3), "c": rand(4, 1)}, symbolic={"a": ["N", 3], "c": ["N", 1]})
case("Where-symbolic", "Where", {"c": np.array([True, False, True]), "x": rand(4, 3), "y": rand(1)},
     symbolic={"x": ["N", 3]})
case("Clip-symbolic", "Clip", {"x": rand(6, 2), "lo": np.array(-0.2, np.float32)}, init=("lo",),
     symbolic={"x": ["N", 2]})
case("PRelu-symbolic", "PRelu", {"x": rand(3, 4, 2), "slope": rand(4, 1)}, init=("slope",),
     symbolic={"x": ["N", 4, 2]})


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_rejects_unsupported_types():
    import pysofie
    from pysofie.errors import PysofieError
    bad = [("Sqrt", {"x": np.array([1, 4], np.int64)}, {}), ("Not", {"x": rand(3)}, {}),
           ("Mod", {"a": np.array([True]), "b": np.array([True])}, {}), ("And", {"a": rand(2), "b": rand(2)}, {}),
           ("BitShift", {"a": rand(2), "b": rand(2)}, {"direction": "LEFT"}),
           ("Gelu", {"x": rand(3)}, {"approximate": "erf"})]
    for op, ins, attrs in bad:
        with pytest.raises(PysofieError, match=op):
            pysofie.InferenceSession(node_model(op, ins, attrs))


def test_dropout_training_rejected():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("Dropout", {"x": rand(2, 3), "r": np.array(0.5, np.float32), "t": np.array(True)},
                   initializers=("r", "t"))
    with pytest.raises(PysofieError, match="training_mode"):
        pysofie.InferenceSession(m)
