"""backends/cpp/passes/segment.py: PyG's scatter-add as torch.onnx exports it (ScatterElements into zeros with
an Expand'ed [E, 1] index, updates through a Slice that keeps every row) becomes one SegmentReduce, a Gather of
the messages read in place; compared with onnxruntime at several sizes, negative indices included (ONNX counts
them from the end), and an index out of range is a clean error."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pysofie.api import load
from pysofie.build.batch import compile_many
from pysofie.errors import PysofieError
from tests.util import assert_close, ort, rand


def scatter_model():
    i64 = lambda name, v: numpy_helper.from_array(np.asarray(v, np.int64), name)  # noqa: E731
    nodes = [helper.make_node("Shape", ["x"], ["sx"]),
             helper.make_node("ConstantOfShape", ["sx"], ["zeros"],
                              value=numpy_helper.from_array(np.zeros(1, np.float32))),
             helper.make_node("Shape", ["idx"], ["se"]),
             helper.make_node("Slice", ["u", "zero", "se", "zero"], ["us"]),  # u[:E]: every row
             helper.make_node("Reshape", ["idx", "col"], ["idx2"]),
             helper.make_node("Shape", ["us"], ["su"]),
             helper.make_node("Expand", ["idx2", "su"], ["ie"]),
             helper.make_node("ScatterElements", ["zeros", "ie", "us"], ["y"], axis=0, reduction="add"),
             # messages x[src] summed at idx: the gather is read in place by the SegmentReduce
             helper.make_node("Gather", ["x", "src"], ["xg"], axis=0),
             helper.make_node("ScatterElements", ["zeros", "ie", "xg"], ["y2"], axis=0, reduction="add")]
    g = helper.make_graph(nodes, "scatter_add",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6]),
                           helper.make_tensor_value_info("idx", TensorProto.INT64, ["E"]),
                           helper.make_tensor_value_info("u", TensorProto.FLOAT, ["E", 6]),
                           helper.make_tensor_value_info("src", TensorProto.INT64, ["E"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6]),
                           helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 6])],
                          [i64("zero", [0]), i64("col", [-1, 1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def compiled():
    model = scatter_model()
    graph = load(model)
    (sess,) = compile_many([graph])
    if isinstance(sess, Exception):
        raise sess
    return model, graph, sess


def test_scatter_add_is_one_segment_sum(compiled):
    model, graph, sess = compiled
    ops = [n.op_type for n in graph.nodes]
    assert ops.count("SegmentReduce") == 2 and not {"ScatterElements", "Slice", "Expand", "Gather"} & set(ops), ops
    rng = np.random.default_rng(0)
    for k, (n, e) in enumerate([(1, 0), (1, 1), (5, 12), (40, 300), (3, 50)]):
        idx = rng.integers(-n, n, e).astype(np.int64)  # negative: from the end, as ONNX says
        src = rng.integers(-n, n, e).astype(np.int64)
        feeds = {"x": rand(n, 6, seed=k), "idx": idx, "u": rand(e, 6, seed=k + 10), "src": src}
        assert_close(sess.run(None, feeds), ort(model, feeds), 1e-5, 1e-6, what=f"{n} nodes, {e} edges")


def test_scatter_index_out_of_range(compiled):
    _, _, sess = compiled
    ok = np.array([0, 3, -1], np.int64)
    for bad in (4, -5):
        wrong = np.array([0, bad, 1], np.int64)
        for idx, src in ((wrong, ok), (ok, wrong)):
            feeds = {"x": rand(4, 6), "idx": idx, "u": rand(3, 6), "src": src}
            with pytest.raises(PysofieError, match="out of range"):
                sess.run(None, feeds)
