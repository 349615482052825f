"""Normalizations, LogSoftmax/Hardmax/Softmax over opsets, against onnx's reference evaluator."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


for op in ["LogSoftmax", "Hardmax", "Softmax"]:
    for xs, axis in [((3, 5), -1), ((2, 3, 4), 1), ((2, 3, 4), 0), ((2, 3, 4, 5), 2)]:
        case(f"{op}-{xs}-{axis}", op, {"x": rand(*xs, low=-5, high=5)}, {"axis": axis})
    # before opset 13 the input is coerced to 2-D at `axis`; onnx's reference evaluator ignores that
    for opset in (1, 11):
        case(f"{op}-opset{opset}", op, {"x": rand(2, 3, 4)}, {"axis": 1}, opset=opset, oracle="ort")
        case(f"{op}-opset{opset}-default", op, {"x": rand(2, 3, 4)}, opset=opset, oracle="ort")
    case(f"{op}-f64", op, {"x": rand(3, 4, dtype=np.float64)}, rtol=1e-10, atol=1e-12)

# LayerNormalization: axis, epsilon, optional bias and Mean/InvStdDev outputs, broadcast scale
for xs, axis in [((2, 3, 4), -1), ((2, 3, 4), 1), ((4, 5), 0), ((2, 3, 2, 5), 2), ((2, 3, 2, 5), -3)]:
    a = axis + len(xs) if axis < 0 else axis
    ns = xs[a:]
    for nout in (1, 3):
        ins = {"x": rand(*xs, low=-2, high=3), "s": rand(*ns), "b": rand(*ns)}
        case(f"LayerNormalization-{xs}-{axis}-o{nout}", "LayerNormalization", ins, {"axis": axis, "epsilon": 1e-3},
             init=("s", "b"), n_outputs=nout, opset=17)
case("LayerNormalization-nobias", "LayerNormalization", {"x": rand(3, 6), "s": rand(6)}, init=("s",), opset=17)
case("LayerNormalization-bcast-scale", "LayerNormalization", {"x": rand(2, 3, 4), "s": rand(4), "b": rand(1)},
     {"axis": 1}, init=("s", "b"), opset=17)
case("LayerNormalization-f64", "LayerNormalization",
     {"x": rand(3, 6, dtype=np.float64), "s": rand(6, dtype=np.float64), "b": rand(6, dtype=np.float64)},
     init=("s", "b"), opset=17, rtol=1e-9, atol=1e-12)

for xs in [(2, 3, 5), (1, 4, 3, 3), (2, 2, 2, 3, 2)]:
    for eps in (1e-5, 0.1):
        c = xs[1]
        case(f"InstanceNormalization-{xs}-{eps}", "InstanceNormalization",
             {"x": rand(*xs, low=-2, high=2), "s": rand(c), "b": rand(c)}, {"epsilon": eps}, init=("s", "b"))

for xs, g in [((2, 4, 3), 2), ((1, 6, 2, 2), 3), ((2, 4, 5), 1), ((1, 4, 2, 3), 4)]:
    c = xs[1]
    case(f"GroupNormalization-21-{xs}-{g}", "GroupNormalization",
         {"x": rand(*xs, low=-2, high=2), "s": rand(c), "b": rand(c)}, {"num_groups": g, "epsilon": 1e-3},
         init=("s", "b"), opset=21)
    case(f"GroupNormalization-18-{xs}-{g}", "GroupNormalization",
         {"x": rand(*xs, low=-2, high=2), "s": rand(g), "b": rand(g)}, {"num_groups": g}, init=("s", "b"),
         opset=18)

for xs, axis in [((3, 4), -1), ((2, 3, 4), 1), ((2, 3, 4), 0)]:
    for p in (1, 2):
        case(f"LpNormalization-{xs}-{axis}-p{p}", "LpNormalization", {"x": rand(*xs, low=0.1, high=2)},
             {"axis": axis, "p": p})

for p in (1, 2):  # a zero norm gives zeros; onnx's reference L1 norm forgets the absolute value: onnxruntime
    case(f"LpNormalization-zero-p{p}", "LpNormalization", {"x": np.array([[0, 0, 0], [1, -2, 3]], np.float32)},
         {"axis": 1, "p": p}, oracle="ort" if p == 1 else "reference")

for xs, axes in [((2, 3, 4, 5), None), ((2, 3, 4), [0, 2]), ((3, 4), [1]), ((2, 3, 4, 5), [1, 2, 3])]:
    case(f"MeanVarianceNormalization-{xs}-{axes}", "MeanVarianceNormalization", {"x": rand(*xs, low=-2, high=2)},
         {} if axes is None else {"axes": axes}, rtol=1e-4, atol=1e-4)

for xs, size, attrs in [((1, 5, 3, 3), 3, {}), ((2, 7, 4, 1), 5, {"alpha": 0.01, "beta": 0.5, "bias": 2.0}),
                        ((1, 4, 2, 2), 7, {}), ((1, 3, 2, 2), 1, {"alpha": 0.1})]:
    # onnx's reference LRN loops over the batch instead of the channels and takes 4-D input only: onnxruntime
    # (which takes 4-D input and odd sizes only)
    case(f"LRN-{xs}-{size}", "LRN", {"x": rand(*xs, low=-2, high=2)}, dict(attrs, size=size), oracle="ort")


# -- symbolic (dynamic) batch size ----------------------------------------------------------------------------
case("LayerNormalization-symbolic", "LayerNormalization", {"x": rand(5, 3, 4), "s": rand(4), "b": rand(4)},
     init=("s", "b"), opset=17, symbolic={"x": ["N", 3, 4]})
case("InstanceNormalization-symbolic", "InstanceNormalization", {"x": rand(3, 2, 5), "s": rand(2), "b": rand(2)},
     init=("s", "b"), symbolic={"x": ["N", 2, 5]})
case("GroupNormalization-symbolic", "GroupNormalization", {"x": rand(3, 4, 5), "s": rand(4), "b": rand(4)},
     {"num_groups": 2}, init=("s", "b"), symbolic={"x": ["N", 4, 5]})
case("LogSoftmax-symbolic", "LogSoftmax", {"x": rand(4, 6)}, symbolic={"x": ["N", 6]})
case("MeanVarianceNormalization-symbolic", "MeanVarianceNormalization", {"x": rand(3, 2, 4)}, {"axes": [2]},
     symbolic={"x": ["N", 2, 4]}, atol=1e-4)


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_group_count_must_divide_channels():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("GroupNormalization", {"x": rand(1, 6, 2), "s": rand(6), "b": rand(6)}, {"num_groups": 4},
                   initializers=("s", "b"))
    with pytest.raises(PysofieError, match="groups"):
        pysofie.InferenceSession(m)


def test_softmax_opset11_on_constant_keeps_its_semantics():
    """A Softmax of opset < 13 on a constant is not folded with the latest opset's (different) semantics."""
    import onnx
    from onnx import TensorProto, helper

    import pysofie
    from tests.util import ort
    xc = rand(2, 3, 4, seed=7)
    for op in ("Softmax", "LogSoftmax", "Hardmax"):
        c = helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(xc, "cv"))
        n = helper.make_node(op, ["c"], ["s"], axis=1)
        add = helper.make_node("Add", ["x", "s"], ["y"])
        g = helper.make_graph([c, n, add], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
        m.ir_version = 8
        x = rand(2, 3, 4, seed=8)
        np.testing.assert_allclose(pysofie.InferenceSession(m).run(None, {"x": x})[0], ort(m, {"x": x})[0],
                                   rtol=1e-4, atol=1e-5)
