"""Indexing and layout operators (Expand, Tile, Pad, Gather*/Scatter*, Split, TopK, OneHot, Trilu, ...,
Quantize/DequantizeLinear) against onnx's reference evaluator. One shared library per module."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.util import Case, Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


I64 = lambda *v: np.array(v, np.int64)  # noqa: E731

for xs, shape in [((3, 1), (3, 4)), ((3, 1), (2, 1, 6)), ((4,), (2, 3, 4)), ((1, 1), (1,)), ((2, 1, 3), (2, 4, 1))]:
    case(f"Expand-{xs}-{shape}", "Expand", {"x": rand(*xs), "s": I64(*shape)}, init=("s",))
case("Expand-int64", "Expand", {"x": np.array([[1], [2]], np.int64), "s": I64(2, 3)}, init=("s",))

for xs, reps in [((3,), (2,)), ((2, 3), (1, 2)), ((2, 3), (3, 1)), ((2, 1, 3), (2, 2, 2))]:
    case(f"Tile-{xs}-{reps}", "Tile", {"x": rand(*xs), "r": I64(*reps)}, init=("r",))
case("Tile-bool", "Tile", {"x": np.array([True, False]), "r": I64(3)}, init=("r",))

PADS = [((3, 4), [1, 2, 0, 1]), ((2, 3, 4), [0, 1, 2, 0, 2, 1]), ((5,), [3, 2]), ((4, 4), [0, -1, 2, -2])]
for mode in ("constant", "reflect", "edge", "wrap"):
    for k, (xs, pads) in enumerate(PADS):
        if mode != "constant" and min(pads) < 0:
            continue
        # onnx's reference evaluator rejects negative pads (cropping): onnxruntime is the oracle there
        case(f"Pad-{mode}-{k}", "Pad", {"x": rand(*xs), "p": I64(*pads)}, {"mode": mode}, init=("p",),
             oracle="ort" if min(pads) < 0 else "reference")
case("Pad-value", "Pad", {"x": rand(2, 3), "p": I64(1, 1, 1, 1), "v": np.array(2.5, np.float32)}, init=("p", "v"))
case("Pad-value-runtime", "Pad", {"x": rand(2, 3), "p": I64(1, 0, 0, 2), "v": np.array(-1.0, np.float32)},
     init=("p",))
case("Pad-axes", "Pad", {"x": rand(2, 3, 4), "p": I64(1, 2, 0, 1), "v": None, "a": I64(0, -1)}, {"mode": "edge"},
     init=("p", "a"), opset=18)
# pads larger than the size: numpy-style repeated reflection (onnxruntime rejects these)
case("Pad-reflect-big", "Pad", {"x": rand(3, 2), "p": I64(4, 1, 5, 1)}, {"mode": "reflect"}, init=("p",))
case("Pad-opset2", "Pad", {"x": rand(2, 3)}, {"pads": [0, 1, 1, 0], "value": 3.0}, opset=2)
case("Pad-opset2-edge", "Pad", {"x": rand(2, 3)}, {"pads": [1, 1, 1, 1], "mode": "edge"}, opset=2)
case("Pad-int64", "Pad", {"x": np.arange(6, dtype=np.int64).reshape(2, 3), "p": I64(1, 1, 1, 1)}, init=("p",))

for axis in (0, 1, -1):
    x = rand(3, 4)
    idx = np.array([[0, 1, 2, -1], [2, 0, 1, 1]], np.int64) if axis == 0 else np.array(
        [[0, 3], [1, -2], [2, 2]], np.int64)
    # onnx's reference evaluator needs indices as large as the data off the axis; onnxruntime follows the spec
    case(f"GatherElements-{axis}", "GatherElements", {"x": x, "i": idx}, {"axis": axis}, oracle="ort")
case("GatherElements-3d", "GatherElements", {"x": rand(2, 3, 4), "i": np.array(
    [[[0, 1], [2, 0], [1, 1]], [[2, 2], [0, 0], [1, 2]]], np.int32)}, {"axis": 2}, oracle="ort")
case("GatherElements-same", "GatherElements", {"x": rand(2, 3), "i": np.array([[2, 0, 1], [1, 1, 0]], np.int64)},
     {"axis": 1})

case("GatherND-0", "GatherND", {"x": rand(3, 4), "i": np.array([[0, 1], [2, 3], [-1, 0]], np.int64)})
case("GatherND-slice", "GatherND", {"x": rand(3, 4, 2), "i": np.array([[1], [0]], np.int64)})
case("GatherND-batch", "GatherND", {"x": rand(2, 3, 4), "i": np.array([[[1], [0]], [[2], [2]]], np.int64)},
     {"batch_dims": 1})
case("GatherND-batch-full", "GatherND", {"x": rand(2, 3, 4), "i": np.array([[1, 3], [0, 0]], np.int64)},
     {"batch_dims": 1})

for red in ("none", "add", "mul", "max", "min"):
    case(f"ScatterElements-{red}", "ScatterElements",
         {"x": rand(3, 4), "i": np.array([[1, 0, 2, 0], [0, 2, 1, 0]], np.int64), "u": rand(2, 4, seed=2)},
         {"axis": 0, "reduction": red}, opset=18)
    case(f"ScatterND-{red}", "ScatterND",
         {"x": rand(4, 3), "i": np.array([[1], [3], [1]], np.int64), "u": rand(3, 3, seed=3)}, {"reduction": red},
         opset=18)
case("ScatterElements-axis1", "ScatterElements",
     {"x": rand(2, 5), "i": np.array([[1, -1], [0, 4]], np.int64), "u": rand(2, 2)}, {"axis": 1})
case("ScatterND-elems", "ScatterND", {"x": rand(3, 4), "i": np.array([[0, 1], [2, 3]], np.int64), "u": rand(2)})
case("Scatter-opset9", "Scatter", {"x": rand(3, 3), "i": np.array([[1, 0, 2]], np.int64), "u": rand(1, 3)},
     {"axis": 0}, opset=9, oracle="ort")  # no reference implementation of the deprecated Scatter

X = rand(6, 4)
case("Split-even", "Split", {"x": X}, {"axis": 0}, n_outputs=3)
case("Split-input", "Split", {"x": X, "s": I64(1, 3)}, {"axis": 1}, init=("s",), n_outputs=2)
case("Split-attr-opset11", "Split", {"x": X}, {"axis": 0, "split": [2, 4]}, opset=11, n_outputs=2)
case("Split-num-outputs", "Split", {"x": rand(7, 2)}, {"axis": 0, "num_outputs": 3}, opset=18, n_outputs=3)
case("Split-3d", "Split", {"x": rand(2, 6, 3)}, {"axis": -2}, n_outputs=2)

for largest in (0, 1):
    for axis in (-1, 0):
        xs = np.round(rand(5, 6, low=-3, high=3) * 2) / 2  # ties: the lower index first
        case(f"TopK-l{largest}-a{axis}", "TopK", {"x": xs, "k": I64(3)}, {"largest": largest, "axis": axis},
             init=("k",), n_outputs=2)
case("TopK-3d", "TopK", {"x": rand(2, 5, 3), "k": I64(2)}, {"axis": 1}, init=("k",), n_outputs=2)
case("TopK-int32", "TopK", {"x": np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], np.int32), "k": I64(4)},
     init=("k",), n_outputs=2)
# sorted=0 leaves the order to the implementation: pysofie sorts anyway, as onnx's reference evaluator does
case("TopK-unsorted", "TopK", {"x": rand(3, 8), "k": I64(3)}, {"sorted": 0}, init=("k",), n_outputs=2)
case("TopK-opset1", "TopK", {"x": rand(3, 7)}, {"k": 2}, opset=1, n_outputs=2)

for k in (0, 1, -1, 3):
    case(f"EyeLike-{k}", "EyeLike", {"x": rand(3, 4)}, {"k": k})
case("EyeLike-dtype", "EyeLike", {"x": rand(4, 4)}, {"dtype": TensorProto.INT64})

for axis in (-1, 0, 1):
    case(f"OneHot-{axis}", "OneHot", {"i": np.array([[0, 2], [-1, 5]], np.int64), "d": np.array(4, np.int64),
                                      "v": np.array([-1.0, 2.0], np.float32)}, {"axis": axis}, init=("d",))
case("OneHot-float-idx", "OneHot", {"i": np.array([1.0, 0.0, 2.0], np.float32), "d": np.array(3, np.float32),
                                    "v": np.array([0, 1], np.int64)}, init=("d", "v"))

for upper in (0, 1):
    for k in (None, 0, 1, -2):
        ins = {"x": rand(2, 4, 5), "k": None if k is None else I64(k)}
        case(f"Trilu-u{upper}-k{k}", "Trilu", ins, {"upper": upper}, init=("k",))

case("ReverseSequence-t0", "ReverseSequence", {"x": rand(4, 3, 2), "l": I64(4, 2, 1)},
     {"time_axis": 0, "batch_axis": 1})
case("ReverseSequence-t1", "ReverseSequence", {"x": rand(3, 5), "l": I64(5, 3, 0)}, {"time_axis": 1, "batch_axis": 0})

for mode in ("DCR", "CRD"):
    case(f"DepthToSpace-{mode}", "DepthToSpace", {"x": rand(2, 8, 2, 3)}, {"blocksize": 2, "mode": mode})
case("DepthToSpace-b3", "DepthToSpace", {"x": rand(1, 18, 2, 2)}, {"blocksize": 3})
case("SpaceToDepth-2", "SpaceToDepth", {"x": rand(2, 3, 4, 6)}, {"blocksize": 2})
case("SpaceToDepth-CRD", "SpaceToDepth", {"x": rand(2, 3, 4, 6)}, {"blocksize": 2, "mode": "CRD"}, opset=28)
case("SpaceToDepth-3", "SpaceToDepth", {"x": rand(1, 2, 3, 6)}, {"blocksize": 3})

# QuantizeLinear / DequantizeLinear: scalar and per-axis scales, with and without zero point
XQ = rand(2, 3, 4, low=-3, high=3)
case("QuantizeLinear-u8", "QuantizeLinear", {"x": XQ, "s": np.array(0.05, np.float32), "z": np.array(128, np.uint8)},
     init=("s", "z"))
case("QuantizeLinear-i8", "QuantizeLinear", {"x": XQ, "s": np.array(0.02, np.float32), "z": np.array(-3, np.int8)},
     init=("s", "z"))
case("QuantizeLinear-nozp", "QuantizeLinear", {"x": XQ, "s": np.array(0.03, np.float32)}, init=("s",))
case("QuantizeLinear-axis", "QuantizeLinear", {"x": XQ, "s": np.array([0.01, 0.02, 0.05], np.float32),
                                               "z": np.array([0, 10, -5], np.int8)}, {"axis": 1}, init=("s", "z"))
case("QuantizeLinear-runtime", "QuantizeLinear", {"x": XQ, "s": np.array(0.04, np.float32),
                                                  "z": np.array(3, np.uint8)})
case("QuantizeLinear-output-dtype", "QuantizeLinear", {"x": XQ, "s": np.array(0.05, np.float32)},
     {"output_dtype": TensorProto.INT8}, init=("s",))
case("QuantizeLinear-f64-int16", "QuantizeLinear", {"x": XQ.astype(np.float64), "s": np.array(0.001, np.float64),
                                                    "z": np.array(7, np.int16)}, init=("s", "z"))
case("Pad-inf-value", "Pad", {"x": rand(2, 2), "p": I64(1, 0, 0, 1), "v": np.array(-np.inf, np.float32)},
     init=("p", "v"))
XI = np.array([[0, 5, 255], [128, 1, 77]], np.uint8)
case("DequantizeLinear-u8", "DequantizeLinear", {"x": XI, "s": np.array(0.1, np.float32), "z": np.array(128, np.uint8)},
     init=("s", "z"))
case("DequantizeLinear-i8-axis", "DequantizeLinear", {"x": np.array([[-128, 5, 127], [0, -1, 7]], np.int8),
                                                      "s": np.array([0.5, 0.25], np.float32),
                                                      "z": np.array([1, -2], np.int8)}, {"axis": 0}, init=("s", "z"))
case("DequantizeLinear-int32", "DequantizeLinear", {"x": np.array([-1000, 7, 123456], np.int32),
                                                    "s": np.array(0.001, np.float32)}, init=("s",))


def _model(nodes, inputs, outputs, inits=(), opset=21):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


# ConstantOfShape on a symbolic shape (Shape -> ConstantOfShape), Size, EyeLike feeding arithmetic, Range/NonZero
# on generation-time constants
def _graph_case(id_, nodes, ins, outs, feeds, inits=(), **kw):
    assert all(c.id != id_ for c in CASES), id_
    CASES.append(Case(id_, _model(nodes, ins, outs, inits), feeds, **kw))


F = TensorProto.FLOAT
_graph_case("ConstantOfShape-symbolic", [
    helper.make_node("Shape", ["x"], ["s"]),
    helper.make_node("ConstantOfShape", ["s"], ["c"], value=onnx.numpy_helper.from_array(np.array([1.5], np.float32))),
    helper.make_node("Add", ["x", "c"], ["y"])],
    [helper.make_tensor_value_info("x", F, ["N", 3])], [helper.make_tensor_value_info("y", F, None)],
    {"x": rand(4, 3)})
_graph_case("Size-Range-NonZero", [
    helper.make_node("Size", ["x"], ["n"]),
    helper.make_node("Cast", ["n"], ["nf"], to=F),
    helper.make_node("Range", ["a", "b", "d"], ["r"]),
    helper.make_node("NonZero", ["z"], ["nz"]),
    helper.make_node("Cast", ["nz"], ["nzf"], to=F),
    helper.make_node("ReduceSum", ["nzf"], ["nzs"], keepdims=0),
    helper.make_node("Mul", ["x", "nf"], ["y0"]),
    helper.make_node("Add", ["y0", "r"], ["y1"]),
    helper.make_node("Add", ["y1", "nzs"], ["y"])],
    [helper.make_tensor_value_info("x", F, [2, 4])], [helper.make_tensor_value_info("y", F, None)],
    {"x": rand(2, 4)},
    inits=[onnx.numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("a", 1.0), ("b", 3.0), ("d", 0.5))]
    + [onnx.numpy_helper.from_array(np.array([[0, 1, 0], [2, 0, 3]], np.float32), "z")])


# -- symbolic (dynamic) batch size ----------------------------------------------------------------------------
case("Pad-symbolic", "Pad", {"x": rand(3, 4), "p": I64(0, 1, 0, 2)}, {"mode": "reflect"}, init=("p",),
     symbolic={"x": ["N", 4]})
case("Tile-symbolic", "Tile", {"x": rand(3, 2), "r": I64(2, 3)}, init=("r",), symbolic={"x": ["N", 2]})
case("Split-symbolic", "Split", {"x": rand(3, 6), "s": I64(2, 4)}, {"axis": 1}, init=("s",), n_outputs=2,
     symbolic={"x": ["N", 6]})
case("TopK-symbolic", "TopK", {"x": rand(4, 6), "k": I64(2)}, init=("k",), n_outputs=2, symbolic={"x": ["N", 6]})
case("GatherElements-symbolic", "GatherElements", {"x": rand(3, 4), "i": np.array([[1, 0], [3, 2], [0, 0]], np.int64)},
     {"axis": 1}, symbolic={"x": ["N", 4], "i": ["N", 2]}, oracle="ort")
case("Trilu-symbolic", "Trilu", {"x": rand(2, 3, 3)}, symbolic={"x": ["N", 3, 3]})
case("OneHot-symbolic", "OneHot", {"i": np.array([1, 0, 2], np.int64), "d": np.array(3, np.int64),
                                   "v": np.array([0, 1], np.float32)}, init=("d", "v"), symbolic={"i": ["N"]})
case("Expand-symbolic", "Expand", {"x": rand(3, 1), "s": I64(1, 4)}, init=("s",), symbolic={"x": ["N", 1]})
case("QuantizeLinear-symbolic", "QuantizeLinear", {"x": rand(5, 3), "s": np.array(0.01, np.float32),
                                                   "z": np.array(0, np.int8)}, init=("s", "z"),
     symbolic={"x": ["N", 3]})


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_data_dependent_sizes_run():
    """NonZero on run-time data has a run-time size; so has a Range whose limit is given at run (see
    tests/ops/test_dynamic_sizes.py and tests/ops/test_runtime_range.py). Oracle: onnx's reference evaluator."""
    import pysofie
    from tests.util import assert_close, feeds_of, reference
    x = rand(3, 4) * (rand(3, 4, seed=9) > 0)
    m = node_model("NonZero", {"x": x})
    assert_close(pysofie.InferenceSession(m).run(None, {"x": x}), reference(m, {"x": x}))
    ins = {"a": np.array(0, np.int64), "b": np.array(5, np.int64), "d": np.array(1, np.int64)}
    m = node_model("Range", ins, initializers=("a", "d"))
    sess = pysofie.InferenceSession(m)
    assert sess._lazy is None  # one library: no code generated per value
    feeds = feeds_of(m, ins)
    assert_close(sess.run(None, feeds), reference(m, feeds))
