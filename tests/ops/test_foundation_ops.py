"""The foundation operators against onnx's reference evaluator, over shapes and attribute combinations.

All cases of this module compile into one shared library (one compiler run)."""
import itertools

import numpy as np
import pytest

from tests.util import Cases, compile_cases, rand, run_case

CASES = Cases(opset=21)
case = CASES.add


# -- elementwise -------------------------------------------------------------------------------------------
for op in ["Relu", "Sigmoid", "Tanh", "Identity"]:
    for shape in [(7,), (2, 3, 5), (1, 4, 3, 3)]:
        case(f"{op}-{shape}", op, {"x": rand(*shape, low=-4, high=4)})
for alpha in (0.01, 0.3):
    case(f"LeakyRelu-{alpha}", "LeakyRelu", {"x": rand(3, 17, low=-3, high=3)}, {"alpha": alpha})

BCAST = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 3, 4), (3, 1)), ((1,), (2, 5)), ((2, 1, 4), (1, 3, 1)),
         ((5, 1, 1, 2), (3, 2, 1)), ((), (3,))]
for op in ["Add", "Sub", "Mul", "Div"]:
    for a, b in BCAST:
        case(f"{op}-{a}-{b}", op, {"a": rand(*a), "b": rand(*b, low=0.5, high=2.0)})
case("Add-init", "Add", {"a": rand(4, 6), "b": rand(6)}, init=("b",))
case("Mul-int64", "Mul", {"a": np.arange(12, dtype=np.int64).reshape(3, 4), "b": np.array([2, -1, 0, 3], np.int64)})

# -- matrix products ---------------------------------------------------------------------------------------
for ta, tb in itertools.product((0, 1), repeat=2):
    for cshape in [None, (5,), (1, 5), (4, 1), (4, 5), ()]:
        A = rand(3, 4) if ta else rand(4, 3)
        B = rand(5, 3) if tb else rand(3, 5)
        ins = {"A": A, "B": B, "C": None if cshape is None else rand(*cshape)}
        case(f"Gemm-tA{ta}-tB{tb}-C{cshape}", "Gemm", ins, {"transA": ta, "transB": tb, "alpha": 0.7, "beta": 1.3},
             init=("B", "C"))
case("Gemm-defaults", "Gemm", {"A": rand(2, 6), "B": rand(6, 3), "C": rand(3)}, init=("B", "C"))
for a, b in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
             ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 6))]:
    case(f"MatMul-{a}-{b}", "MatMul", {"A": rand(*a), "B": rand(*b)})

# -- convolutions ------------------------------------------------------------------------------------------
CONV = [
    # (input shape, weight shape, attrs)
    ((1, 1, 9), (2, 1, 3), {}),
    ((2, 3, 10), (4, 3, 3), {"pads": [1, 2], "strides": [2], "dilations": [2]}),
    ((1, 2, 7, 8), (3, 2, 3, 3), {}),
    ((2, 4, 9, 9), (6, 2, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    ((1, 3, 11, 10), (5, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1], "dilations": [2, 1]}),
    ((1, 4, 8, 8), (4, 1, 3, 3), {"group": 4, "auto_pad": "SAME_UPPER"}),
    ((1, 2, 7, 7), (3, 2, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((1, 2, 7, 7), (3, 2, 3, 3), {"auto_pad": "VALID", "strides": [2, 2]}),
    ((1, 8, 5, 5), (4, 8, 1, 1), {}),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"pads": [1, 1, 1, 1, 1, 1]}),
    ((2, 2, 6, 5, 4), (4, 1, 2, 3, 2), {"group": 2, "strides": [2, 1, 2], "dilations": [1, 2, 1]}),
]
for k, (xs, ws, attrs) in enumerate(CONV):
    for bias in (False, True):
        ins = {"X": rand(*xs), "W": rand(*ws), "B": rand(ws[0]) if bias else None}
        case(f"Conv-{k}-bias{int(bias)}", "Conv", ins, attrs, init=("W", "B"))

CONVT = [
    ((1, 1, 5), (1, 2, 3), {}),
    ((1, 2, 4), (2, 3, 3), {"strides": [2], "pads": [1, 0], "output_padding": [1]}),
    ((1, 2, 4, 4), (2, 3, 3, 3), {}),
    ((2, 4, 3, 5), (4, 2, 3, 2), {"group": 2, "strides": [2, 3], "dilations": [1, 2], "pads": [1, 0, 0, 1]}),
    ((1, 3, 4, 4), (3, 2, 4, 4), {"strides": [2, 2], "output_padding": [1, 1], "pads": [1, 1, 1, 1]}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 8]}),
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2]}),
    # output_shape below the natural size: the begin pad takes the larger half (SAME_UPPER: the smaller one)
    ((1, 2, 6, 6), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [12, 11]}),
    ((1, 2, 6, 6), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [12, 11], "auto_pad": "SAME_UPPER"}),
]
for k, (xs, ws, attrs) in enumerate(CONVT):
    for bias in (False, True):
        ins = {"X": rand(*xs), "W": rand(*ws), "B": rand(ws[1] * attrs.get("group", 1)) if bias else None}
        # onnx's reference evaluator mishandles grouped ConvTranspose: onnxruntime is the oracle here
        case(f"ConvTranspose-{k}-bias{int(bias)}", "ConvTranspose", ins, attrs, init=("W", "B"), oracle="ort")

# -- pooling -----------------------------------------------------------------------------------------------
POOL = [
    ((1, 2, 9), {"kernel_shape": [3]}),
    ((1, 2, 9), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ((2, 3, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((1, 2, 7, 9), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 7, 9), {"kernel_shape": [3, 2], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 1, 8, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((1, 1, 8, 8), {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2], "pads": [0, 1, 1, 1, 0, 0]}),
]
for k, (xs, attrs) in enumerate(POOL):
    case(f"MaxPool-{k}", "MaxPool", {"x": rand(*xs)}, attrs)
    case(f"AveragePool-{k}", "AveragePool", {"x": rand(*xs)}, attrs)
    if "pads" in attrs:
        case(f"AveragePool-{k}-incl", "AveragePool", {"x": rand(*xs)}, dict(attrs, count_include_pad=1))
case("MaxPool-dil", "MaxPool", {"x": rand(1, 1, 9, 9)}, {"kernel_shape": [2, 2], "dilations": [2, 2]})
for xs in [(1, 3, 5), (2, 3, 4, 5), (1, 2, 3, 4, 5)]:
    case(f"GlobalAveragePool-{xs}", "GlobalAveragePool", {"x": rand(*xs)})

# -- normalization -----------------------------------------------------------------------------------------
for xs in [(2, 3), (2, 3, 5), (1, 4, 3, 3), (2, 2, 2, 3, 2)]:
    c = xs[1]
    ins = {"x": rand(*xs), "s": rand(c), "b": rand(c), "m": rand(c), "v": rand(c, low=0.1, high=2)}
    case(f"BatchNormalization-{xs}", "BatchNormalization", ins, {"epsilon": 1e-3}, init=("s", "b", "m", "v"))
for xs, axis in [((3, 5), -1), ((2, 3, 4), 1), ((2, 3, 4), 0), ((2, 3, 4, 5), 2)]:
    case(f"Softmax-{xs}-{axis}", "Softmax", {"x": rand(*xs, low=-5, high=5)}, {"axis": axis})
# before opset 13 Softmax normalizes over all axes from `axis` on; onnx's reference evaluator ignores that
case("Softmax-opset11", "Softmax", {"x": rand(2, 3, 4)}, {"axis": 1}, opset=11, oracle="ort")
case("Softmax-opset11-default", "Softmax", {"x": rand(2, 3, 4)}, opset=11, oracle="ort")

# -- shape and layout --------------------------------------------------------------------------------------
for xs, axis in [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), 3), ((2, 3, 4), -1)]:
    case(f"Flatten-{xs}-{axis}", "Flatten", {"x": rand(*xs)}, {"axis": axis})
for xs, target in [((2, 3, 4), [4, -1]), ((2, 3, 4), [0, 12]), ((6,), [2, 1, 3]), ((2, 3, 4), [-1])]:
    case(f"Reshape-{xs}-{target}", "Reshape", {"x": rand(*xs), "s": np.array(target, np.int64)}, init=("s",))
for xs, perm in [((2, 3), None), ((2, 3, 4), [1, 0, 2]), ((2, 3, 4, 5), [0, 2, 3, 1]), ((2, 3, 4, 5), [3, 1, 0, 2])]:
    case(f"Transpose-{xs}-{perm}", "Transpose", {"x": rand(*xs)}, {"perm": perm} if perm else {})
case("Squeeze-axes", "Squeeze", {"x": rand(1, 3, 1, 4), "a": np.array([0, 2], np.int64)}, init=("a",))
case("Squeeze-all", "Squeeze", {"x": rand(1, 3, 1, 4)})
case("Squeeze-opset11", "Squeeze", {"x": rand(1, 3, 1, 4)}, {"axes": [2]}, opset=11)
case("Unsqueeze", "Unsqueeze", {"x": rand(3, 4), "a": np.array([0, 3], np.int64)}, init=("a",))
case("Unsqueeze-neg", "Unsqueeze", {"x": rand(3, 4), "a": np.array([-1], np.int64)}, init=("a",))
case("Unsqueeze-opset11", "Unsqueeze", {"x": rand(3, 4)}, {"axes": [1]}, opset=11)
for axis in (0, 1, -1):
    case(f"Concat-{axis}", "Concat", {"a": rand(2, 3, 4), "b": rand(2, 3, 4), "c": rand(2, 3, 4)}, {"axis": axis})
case("Concat-uneven", "Concat", {"a": rand(2, 1, 4), "b": rand(2, 3, 4)}, {"axis": 1})
case("Concat-init", "Concat", {"a": rand(2, 3), "b": rand(1, 3)}, {"axis": 0}, init=("b",))
SLICES = [((10,), [1], [8], None, None), ((10,), [-3], [100], None, None), ((5, 6), [1, 0], [4, 6], [0, 1], [1, 2]),
          ((5, 6), [4], [0], [0], [-1]), ((3, 4, 5), [0, 1], [3, -1], [2, 1], [2, 1]),
          ((6, 4), [-1], [-100], [0], [-2])]
for k, (xs, st, en, ax, sp) in enumerate(SLICES):
    ins = {"x": rand(*xs), "starts": np.array(st, np.int64), "ends": np.array(en, np.int64),
           "axes": None if ax is None else np.array(ax, np.int64), "steps": None if sp is None else np.array(sp, np.int64)}
    case(f"Slice-{k}", "Slice", ins, init=("starts", "ends", "axes", "steps"))
case("Slice-opset9", "Slice", {"x": rand(4, 5)}, {"starts": [1, 0], "ends": [3, 4], "axes": [0, 1]}, opset=9)


# -- old opsets (7..) --------------------------------------------------------------------------------------
# onnx's reference evaluator fails on these two old forms: onnxruntime is the oracle
case("Gemm-opset7", "Gemm", {"A": rand(3, 4), "B": rand(4, 5), "C": rand(5)}, {"alpha": 0.5}, init=("B", "C"),
     opset=7, oracle="ort")
case("BatchNormalization-opset7-spatial", "BatchNormalization",
     {"x": rand(2, 3, 4), "s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3, low=0.1, high=1)},
     {"spatial": 1}, init=("s", "b", "m", "v"), opset=7, oracle="ort")
case("Conv-opset7", "Conv", {"X": rand(1, 2, 6, 6), "W": rand(3, 2, 3, 3)}, {"pads": [1, 1, 1, 1]}, init=("W",),
     opset=7)
case("MaxPool-opset7", "MaxPool", {"x": rand(1, 2, 6, 6)}, {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=7)
case("AveragePool-opset7", "AveragePool", {"x": rand(1, 2, 6, 6)},
     {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}, opset=7)
case("Softmax-opset7", "Softmax", {"x": rand(3, 5)}, opset=7, oracle="ort")
case("Add-opset7", "Add", {"a": rand(2, 3), "b": rand(3)}, opset=7)
case("Reshape-opset7", "Reshape", {"x": rand(2, 6), "s": np.array([3, 4], np.int64)}, init=("s",), opset=7)
case("Flatten-opset7", "Flatten", {"x": rand(2, 3, 4)}, {"axis": 2}, opset=7)
case("Transpose-opset7", "Transpose", {"x": rand(2, 3, 4)}, {"perm": [2, 0, 1]}, opset=7)
case("Concat-opset7", "Concat", {"a": rand(2, 3), "b": rand(2, 2)}, {"axis": 1}, opset=7)
case("Unsqueeze-opset7", "Unsqueeze", {"x": rand(2, 3)}, {"axes": [0, 3]}, opset=7)
case("Slice-opset7", "Slice", {"x": rand(4, 5)}, {"starts": [1], "ends": [3], "axes": [1]}, opset=7)
case("Sigmoid-opset7", "Sigmoid", {"x": rand(4)}, opset=7)
case("ConvTranspose-opset7", "ConvTranspose", {"X": rand(1, 2, 3, 3), "W": rand(2, 3, 2, 2)}, {"strides": [2, 2]},
     init=("W",), opset=7, oracle="ort")


@pytest.fixture(scope="module")
def sessions():
    return compile_cases(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_constant_node():
    import onnx
    from onnx import helper, TensorProto
    import pysofie
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    c = helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(rand(2, 3, seed=5), "cv"))
    add = helper.make_node("Add", ["x", "c"], ["y"])
    m = helper.make_model(helper.make_graph([c, add], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    xv = rand(2, 3, seed=6)
    got = pysofie.InferenceSession(m).run(None, {"x": xv})[0]
    np.testing.assert_allclose(got, xv + rand(2, 3, seed=5), rtol=1e-6)
