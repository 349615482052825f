"""Reductions, ArgMax/ArgMin and CumSum against onnx's reference evaluator (one shared library per module)."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


REDUCE = ["ReduceSum", "ReduceMean", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceSumSquare", "ReduceL1",
          "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"]
AXES = [None, [1], [0, 2], [-1], [0, 1, 2]]
for op in REDUCE:
    positive = op == "ReduceLogSum"
    for axes in AXES:
        for keep in (0, 1):
            x = rand(2, 3, 4, low=0.1 if positive else -1.5, high=1.5, seed=3)
            # axes as an input (opset 18; ReduceSum from 13)
            ins = {"x": x, "axes": None if axes is None else np.array(axes, np.int64)}
            case(f"{op}-in-{axes}-k{keep}", op, ins, {"keepdims": keep}, init=("axes",), opset=18)
            # axes as an attribute (before)
            case(f"{op}-attr-{axes}-k{keep}", op, {"x": x}, {"keepdims": keep, **({"axes": axes} if axes else {})},
                 opset=11)
    case(f"{op}-noop", op, {"x": rand(2, 3, low=0.1, high=1), "axes": np.array([], np.int64)},
         {"noop_with_empty_axes": 1}, init=("axes",), opset=18)
    case(f"{op}-empty-axes-all", op, {"x": rand(2, 3, low=0.1, high=1), "axes": np.array([], np.int64)},
         init=("axes",), opset=18)
    case(f"{op}-rank4", op, {"x": rand(2, 3, 2, 5, low=0.1, high=1.2), "axes": np.array([1, 3], np.int64)},
         init=("axes",), opset=18)
    case(f"{op}-f64", op, {"x": rand(3, 4, low=0.1, high=1.2, dtype=np.float64), "axes": np.array([1], np.int64)},
         init=("axes",), opset=18, rtol=1e-10, atol=1e-12)
for op in ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceSumSquare"]:
    xi = np.array([[3, -1, 4], [1, -5, 9]], np.int64)
    case(f"{op}-int64", op, {"x": xi, "axes": np.array([1], np.int64)}, init=("axes",), opset=18)
    # onnx's reference evaluator sums int32 squares into int64 (numpy promotion): onnxruntime is the oracle
    case(f"{op}-int32-all", op, {"x": xi.astype(np.int32)}, opset=18, oracle="ort")
for op in ["ReduceMax", "ReduceMin"]:  # bool from opset 20
    case(f"{op}-bool", op, {"x": np.array([[True, False, True], [False, False, False]]),
                            "axes": np.array([1], np.int64)}, init=("axes",), opset=20)
case("ReduceSum-opset13-input", "ReduceSum", {"x": rand(3, 4, 2), "axes": np.array([0, 2], np.int64)},
     init=("axes",), opset=13)
case("ReduceMean-opset13-attr", "ReduceMean", {"x": rand(3, 4, 2)}, {"axes": [1]}, opset=13)

for op in ["ArgMax", "ArgMin"]:
    x = np.round(rand(3, 4, 5, low=-3, high=3))  # rounded: ties exercise select_last_index
    for axis in (0, 1, -1):
        for keep in (0, 1):
            for last in (0, 1):
                case(f"{op}-a{axis}-k{keep}-l{last}", op, {"x": x},
                     {"axis": axis, "keepdims": keep, "select_last_index": last})
    case(f"{op}-int32", op, {"x": np.array([[1, 7, 7], [9, -2, 9]], np.int32)}, {"axis": 1})
    case(f"{op}-default", op, {"x": rand(4, 3)})

for axis in (0, 1, -1):
    for exc in (0, 1):
        for rev in (0, 1):
            case(f"CumSum-a{axis}-e{exc}-r{rev}", "CumSum",
                 {"x": rand(3, 4, 2), "axis": np.array(axis, np.int64)}, {"exclusive": exc, "reverse": rev},
                 init=("axis",))
case("CumSum-int64", "CumSum", {"x": np.arange(12, dtype=np.int64).reshape(3, 4), "axis": np.array(1, np.int32)},
     init=("axis",))
case("CumSum-f64-1d", "CumSum", {"x": rand(9, dtype=np.float64), "axis": np.array(0, np.int64)}, init=("axis",),
     rtol=1e-12)


# -- symbolic (dynamic) batch size ----------------------------------------------------------------------------
case("ReduceMean-symbolic", "ReduceMean", {"x": rand(5, 3, 4), "axes": np.array([2], np.int64)}, init=("axes",),
     opset=18, symbolic={"x": ["N", 3, 4]})
case("ReduceSum-symbolic-batch-axis", "ReduceSum", {"x": rand(5, 3), "axes": np.array([0], np.int64)},
     init=("axes",), opset=18, symbolic={"x": ["N", 3]})
case("ReduceLogSumExp-symbolic", "ReduceLogSumExp", {"x": rand(4, 6)}, {"axes": [1], "keepdims": 0}, opset=13,
     symbolic={"x": ["N", 6]})
case("ArgMax-symbolic", "ArgMax", {"x": rand(5, 7)}, {"axis": 1}, symbolic={"x": ["N", 7]})
case("CumSum-symbolic", "CumSum", {"x": rand(3, 4), "axis": np.array(1, np.int64)}, init=("axis",),
     symbolic={"x": ["N", 4]})


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_runtime_axes_are_specialized_at_run():
    """Axes given at run: the code is generated for their values then, once per value (pysofie.specialize);
    load() without them still explains what generation needs."""
    import pysofie
    from pysofie.errors import PysofieError
    from tests.util import assert_close, reference
    x = rand(2, 3)
    m = node_model("ReduceSum", {"x": x, "axes": np.array([1], np.int64)}, opset=18)
    with pytest.raises(PysofieError, match="axes"):
        pysofie.load(m)
    sess = pysofie.InferenceSession(m)
    for axes in ([1], [0], [1]):
        feeds = {"x": x, "axes": np.array(axes, np.int64)}
        assert_close(sess.run(None, feeds), reference(m, feeds))
    assert len(sess._lazy.cache) == 2
