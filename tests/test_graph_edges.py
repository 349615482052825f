"""Graph shapes that stress storage planning: outputs that are inputs or constants, repeated outputs, outputs
read by later nodes, views as outputs, several outputs of different types, dead branches, and folding of
exporter shape arithmetic with a dynamic batch."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pysofie
from tests.util import assert_close, ort, rand


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "edges", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def check(m, feeds):
    sess = pysofie.InferenceSession(m)
    assert_close(sess.run(None, feeds), ort(m, feeds))
    return sess


def test_output_is_input_constant_and_repeated():
    c = numpy_helper.from_array(rand(2, 3, seed=3), "c")
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "c"], ["y"])]
    m = model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3]), vi("x", [2, 3]), vi("c", [2, 3]), vi("r", [2, 3]),
                                         vi("y", [2, 3])], [c])
    check(m, {"x": rand(2, 3)})


def test_view_as_output_and_view_of_output():
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "s"], ["v"]),
             helper.make_node("Flatten", ["v"], ["f"], axis=0),
             helper.make_node("Sigmoid", ["f"], ["y"])]
    s = numpy_helper.from_array(np.array([3, 2], np.int64), "s")
    m = model(nodes, [vi("x", [2, 3])], [vi("r", [2, 3]), vi("v", [3, 2]), vi("y", [1, 6])], [s])
    check(m, {"x": rand(2, 3)})


def test_long_chain_reuses_buffers():
    nodes, prev = [], "x"
    for k in range(12):
        nodes.append(helper.make_node("Tanh" if k % 2 else "Sigmoid", [prev], [f"t{k}"]))
        prev = f"t{k}"
    nodes.append(helper.make_node("Add", [prev, "t3"], ["y"]))  # keeps t3 alive across the chain
    m = model(nodes, [vi("x", [4, 5])], [vi("y", [4, 5])])
    sess = check(m, {"x": rand(4, 5)})
    assert sess.header.count("std::vector<float> fSlot") <= 4


def test_outputs_of_different_types_return_a_tuple_in_cpp():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64)]
    m = model(nodes, [vi("x", [2, 3])], [vi("y", [2, 3]), vi("i", [2, 3], TensorProto.INT64)])
    sess = check(m, {"x": rand(2, 3, low=-5, high=5)})
    assert "std::tuple<std::vector<float>, std::vector<int64_t>>" in sess.header


def test_dead_branch_is_removed():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Exp", ["x"], ["unused"])]
    m = model(nodes, [vi("x", [3])], [vi("y", [3])])
    sess = check(m, {"x": rand(3)})  # Exp would be fine too, but it must not even be generated
    assert "Exp" not in sess.header.split("namespace detail")[1]


def test_exporter_shape_arithmetic_folds_with_dynamic_batch():
    """Flatten as PyTorch exports it: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1]))."""
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Gemm", ["flat", "w"], ["y"], transB=1)]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(rand(4, 12, seed=9), "w")]
    m = model(nodes, [vi("x", ["batch", 3, 4])], [vi("y", ["batch", 4])], inits)
    g = pysofie.load(m)
    assert [n.op_type for n in g.nodes] == ["Reshape", "Gemm"]
    assert g.size_params == ["batch"]
    sess = pysofie.InferenceSession(m)
    for n in (1, 6):
        x = rand(n, 3, 4, seed=n)
        assert_close(sess.run(None, {"x": x}), ort(m, {"x": x}))


@pytest.mark.parametrize("n", [1, 3])
def test_unnamed_dynamic_dimension_becomes_a_size_parameter(n):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    m = model(nodes, [x], [vi("y", None)])
    sess = pysofie.InferenceSession(m)
    assert isinstance(sess.get_inputs()[0].shape[0], str)
    xv = rand(n, 4)
    np.testing.assert_array_equal(sess.run(None, {"x": xv})[0], np.maximum(xv, 0))


def test_constant_inputs_specialize_shape_parameters():
    """A target shape fed as a graph input: usable once fixed with constant_inputs."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    m = model(nodes, [vi("x", [2, 6]), vi("shape", [2], TensorProto.INT64)], [vi("y", None)])
    with pytest.raises(pysofie.ShapeInferenceError, match="shape.*generation time"):
        pysofie.load(m)
    target = np.array([3, 4], np.int64)
    sess = pysofie.InferenceSession(m, constant_inputs={"shape": target})
    assert [i.name for i in sess.get_inputs()] == ["x"]
    x = rand(2, 6)
    assert_close(sess.run(None, {"x": x}), ort(m, {"x": x, "shape": target}))
    with pytest.raises(pysofie.ModelLoadError, match="not inputs"):
        pysofie.load(m, constant_inputs={"nope": target})


def test_two_scratch_buffers_of_one_node_do_not_overlap():
    """A generator asking for two temporary buffers of one type gets disjoint memory."""
    from pysofie.backends.cpp.emitter import GENERATORS, generates
    from pysofie.ops.base import OPS, Op, register

    @register("TwoScratchTest", domain="pysofie.test")
    class TwoScratchTest(Op):
        def infer(self, node):
            return [(node.inputs[0].dtype, node.inputs[0].shape)]

    @generates("TwoScratchTest")
    def gen(cx):
        n = cx.size(0)
        a, b = cx.scratch(cx.vin(0).shape[0]), cx.scratch(cx.vin(0).shape[0])
        with cx.w.loop("i", n):
            cx.w.line(f"{a}[i] = {cx.i(0)}[i] * 2;")
        with cx.w.loop("i", n):
            cx.w.line(f"{b}[i] = {cx.i(0)}[i] + 1;")
        with cx.w.loop("i", n):
            cx.w.line(f"{cx.o(0)}[i] = {a}[i] + {b}[i];")

    try:
        node = helper.make_node("TwoScratchTest", ["x"], ["y"], domain="pysofie.test")
        g = helper.make_graph([node], "scratch", [vi("x", ["N"])], [vi("y", ["N"])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("pysofie.test", 1)])
        x = rand(7)
        np.testing.assert_allclose(pysofie.InferenceSession(m).run(None, {"x": x})[0], 3 * x + 1, rtol=1e-6, atol=1e-6)
    finally:
        del OPS[("pysofie.test", "TwoScratchTest")]
        del GENERATORS["TwoScratchTest"]


def test_constant_of_shape_with_a_value_folds_at_generation_time():
    """LayerNormalization as onnx expands it computes shapes with ConstantOfShape(value=...): it must fold."""
    onnx_tensor = numpy_helper.from_array(np.array([1], np.int64), "v")
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Size", ["s"], ["rank"]),
             helper.make_node("Sub", ["rank", "one"], ["n"]),
             helper.make_node("ConstantOfShape", ["n"], ["ones"], value=onnx_tensor),
             helper.make_node("Concat", ["first", "ones"], ["target"], axis=0),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
             helper.make_node("Reshape", ["m", "target"], ["y"])]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([4], np.int64), "first")]
    m = model(nodes, [vi("x", [4, 3, 5])], [vi("y", None)], inits)
    g = pysofie.load(m)
    assert [n.op_type for n in g.nodes] == ["ReduceMean", "Reshape"]
    check(m, {"x": rand(4, 3, 5)})
