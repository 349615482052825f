"""If: branches with a condition known at run time (both computed, one selected) and at generation time (the
other branch removed), nested, reading outer values; against onnxruntime."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pysofie
from tests.util import assert_close, ort, rand


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def branch(name, nodes, out, shape=None):
    return helper.make_graph(nodes, name, [], [vi(out, shape)])


def if_model(cond_is_input: bool, cond_value: bool = True, nested: bool = False):
    then_nodes = [helper.make_node("Mul", ["x", "two"], ["t_out"])]
    if nested:
        inner_then = branch("it", [helper.make_node("Relu", ["x"], ["it_out"])], "it_out", [2, 3])
        inner_else = branch("ie", [helper.make_node("Neg", ["x"], ["ie_out"])], "ie_out", [2, 3])
        else_nodes = [helper.make_node("If", ["c2"], ["e_out"], then_branch=inner_then, else_branch=inner_else)]
    else:
        else_nodes = [helper.make_node("Sigmoid", ["x"], ["e_out"])]
    node = helper.make_node("If", ["c"], ["y0"], name="the_if",
                            then_branch=branch("then", then_nodes, "t_out", [2, 3]),
                            else_branch=branch("else", else_nodes, "e_out", [2, 3]))
    post = helper.make_node("Add", ["y0", "x"], ["y"])
    inputs = [vi("x", [2, 3])]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    if cond_is_input:
        inputs.append(vi("c", [], TensorProto.BOOL))
    else:
        inits.append(numpy_helper.from_array(np.array(cond_value), "c"))
    if nested:
        inputs.append(vi("c2", [], TensorProto.BOOL))
    g = helper.make_graph([node, post], "ifm", inputs, [vi("y", [2, 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("nested", [False, True])
def test_run_time_condition(nested):
    m = if_model(True, nested=nested)
    sess = pysofie.InferenceSession(m)
    for c in (True, False):
        for c2 in (True, False):
            feeds = {"x": rand(2, 3, seed=int(c) + 2 * int(c2)), "c": np.array(c)}
            if nested:
                feeds["c2"] = np.array(c2)
            assert_close(sess.run(None, feeds), ort(m, feeds))


@pytest.mark.parametrize("value", [True, False])
def test_constant_condition_keeps_only_the_chosen_branch(value):
    m = if_model(False, value)
    g = pysofie.load(m)
    ops = [n.op_type for n in g.nodes]
    assert "If" not in ops
    assert ("Mul" in ops) == value and ("Sigmoid" in ops) == (not value)
    x = {"x": rand(2, 3)}
    assert_close(pysofie.InferenceSession(m).run(None, x), ort(m, x))


def test_branches_of_different_shapes_need_a_constant_condition():
    then_b = branch("then", [helper.make_node("Identity", ["x"], ["t"])], "t")
    else_b = branch("else", [helper.make_node("Flatten", ["x"], ["e"], axis=0)], "e")
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_b, else_branch=else_b, name="shape_if")
    g = helper.make_graph([node], "g", [vi("x", [2, 3]), vi("c", [], TensorProto.BOOL)], [vi("y", None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(pysofie.ShapeInferenceError, match="shape_if.*same type and shape"):
        pysofie.load(m)
