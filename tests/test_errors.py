"""Bad input gets a clear error naming the file, node, operator or tensor: never a crash, never a silent wrong
answer, never a half-written output."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pysofie
from tests.util import ort, rand, rootbench_model


def test_missing_file(tmp_path):
    with pytest.raises(pysofie.ModelLoadError, match="nope.onnx: no such file"):
        pysofie.InferenceSession(str(tmp_path / "nope.onnx"))


def test_directory(tmp_path):
    with pytest.raises(pysofie.ModelLoadError, match="is a directory"):
        pysofie.load(str(tmp_path))


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model\n" * 10, bytes(range(256)) * 4])
def test_not_an_onnx_file(tmp_path, content):
    f = tmp_path / "bad.onnx"
    f.write_bytes(content)
    with pytest.raises(pysofie.ModelLoadError, match="bad.onnx"):
        pysofie.load(str(f))


def test_truncated_onnx_file(tmp_path):
    data = open(rootbench_model("Linear_16"), "rb").read()
    f = tmp_path / "cut.onnx"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(pysofie.ModelLoadError, match="cut.onnx"):
        pysofie.load(str(f))


def _graph(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("my.ops", 1)])


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_all_unsupported_operators_are_listed_at_once():
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], name="first_fancy"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("FancyOp", ["b"], ["c"], name="second_fancy"),
             helper.make_node("Secret", ["c"], ["d"], domain="my.ops", name="secret_node"),
             helper.make_node("BatchNormalization", ["x", "s", "s", "s", "s"], ["e"], training_mode=1, name="bn_train")]
    m = _graph(nodes, [_vi("x", [2, 3])], [_vi("d", [2, 3]), _vi("e", [2, 3])],
               [numpy_helper.from_array(np.ones(3, np.float32), "s")])
    with pytest.raises(pysofie.UnsupportedOperatorError) as ei:
        pysofie.InferenceSession(m)
    msg = str(ei.value)
    for part in ["first_fancy", "second_fancy", "secret_node", "my.ops", "bn_train", "training_mode"]:
        assert part in msg, msg
    assert len(ei.value.problems) == 4  # nodes after an unsupported one are not reported twice
    assert pysofie.check(m) == ei.value.problems


def test_unsupported_attribute_value_names_the_node():
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SIDEWAYS", name="conv_bad")
    m = _graph([node], [_vi("x", [1, 1, 5, 5])], [_vi("y", None)],
               [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "w")])
    with pytest.raises(pysofie.InvalidModelError, match="conv_bad.*auto_pad|auto_pad.*conv_bad"):
        pysofie.load(m)


def test_inconsistent_shapes_name_the_node():
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    m = _graph([node], [_vi("x", [2, 3])], [_vi("y", None)], [numpy_helper.from_array(np.ones((4, 5), np.float32), "w")])
    with pytest.raises(pysofie.ShapeInferenceError, match="'mm'.*inner dimensions"):
        pysofie.load(m)


@pytest.mark.parametrize("attrs, match", [
    ({"pads": [0, 0, 9, 9]}, "'convt'.*output spatial size would be -"),  # more padding than output
    ({"group": 3}, "'convt'.*input channels 4 not divisible by group 3"),
])
def test_conv_transpose_geometry_errors_name_the_node(attrs, match):
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="convt", **attrs)
    m = _graph([node], [_vi("x", [1, 4, 3, 3])], [_vi("y", None)],
               [numpy_helper.from_array(np.ones((4, 2, 3, 3), np.float32), "w")])
    with pytest.raises(pysofie.ShapeInferenceError, match=match):
        pysofie.load(m)


def test_range_input_that_is_not_a_scalar_names_the_node():
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", 0), ("l", [5, 6]), ("d", 1))]
    m = _graph([helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng")], [], [_vi("y", None)], inits, opset=18)
    with pytest.raises(pysofie.ShapeInferenceError, match="'rng'.*input 'l' must be a scalar, it has shape \\[2\\]"):
        pysofie.load(m)


def test_range_with_delta_zero_names_the_node():
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", 0), ("l", 5), ("d", 0))]
    m = _graph([helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng0")], [], [_vi("y", None)], inits, opset=18)
    with pytest.raises(pysofie.ShapeInferenceError, match="'rng0'.*delta is 0"):
        pysofie.load(m)


def test_group_normalization_with_no_groups_names_the_node():
    inits = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("scale", "bias")]
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], name="gn0", num_groups=0)
    m = _graph([node], [_vi("x", [1, 4, 3])], [_vi("y", None)], inits, opset=21)
    with pytest.raises(pysofie.PysofieError, match="'gn0'.*num_groups=0 must be at least 1"):
        pysofie.load(m)


@pytest.mark.parametrize("num_scan_inputs", [1 << 40, 0, 3])
def test_scan_with_inconsistent_scan_inputs_names_the_node(num_scan_inputs):
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Identity", ["s_out"], ["y_t"])],
        "body", [_vi("s_in", [2]), _vi("x_t", [2])], [_vi("s_out", [2]), _vi("y_t", [2])])
    node = helper.make_node("Scan", ["s0", "xs"], ["s_final", "ys"], name="scan_bad", body=body,
                            num_scan_inputs=num_scan_inputs)
    m = _graph([node], [_vi("s0", [2]), _vi("xs", [3, 2])], [_vi("s_final", [2]), _vi("ys", [3, 2])], opset=11)
    with pytest.raises(pysofie.PysofieError, match="scan_bad"):
        pysofie.load(m)
    next(a for a in m.graph.node[0].attribute if a.name == "num_scan_inputs").i = 1  # as it should be: loads
    pysofie.load(m)


def test_reverse_sequence_with_swapped_inputs_names_the_node():
    m = _graph([helper.make_node("ReverseSequence", ["lens", "x"], ["y"], name="rev", batch_axis=1, time_axis=0)],
               [_vi("x", [4, 2]), _vi("lens", [2], TensorProto.INT64)], [_vi("y", None)])
    with pytest.raises(pysofie.ShapeInferenceError, match="'rev'.*input has rank 1"):
        pysofie.load(m)


@pytest.mark.parametrize("node, inputs", [
    # an operator's shape rules meeting what they do not expect: a shape error of the node, not a Python
    # exception from inside pysofie (an empty name where Einsum needs an input; an element type with no name)
    (helper.make_node("Einsum", ["x", ""], ["y"], name="bad_node", equation="i,i->"), [_vi("x", [3])]),
    (helper.make_node("EyeLike", ["x"], ["y"], name="bad_node", dtype=0), [_vi("x", [3, 3])]),
])
def test_malformed_nodes_give_errors_naming_the_node(node, inputs):
    m = _graph([node], inputs, [_vi("y", None)])
    with pytest.raises(pysofie.PysofieError, match="'bad_node'"):
        pysofie.load(m)


def test_split_num_outputs_that_is_not_the_output_count_names_the_node():
    m = _graph([helper.make_node("Split", ["x"], ["a", "b"], name="sp", axis=0, num_outputs=1 << 40)],
               [_vi("x", [4])], [_vi("a", None), _vi("b", None)], opset=18)
    with pytest.raises(pysofie.ShapeInferenceError, match="'sp'.*num_outputs=1099511627776, but the node has 2"):
        pysofie.load(m)


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_conv_weight_of_run_time_size_names_the_node(op):
    node = helper.make_node(op, ["x", "w"], ["y"], name="c_rt")  # the weight a model input with a symbolic size
    m = _graph([node], [_vi("x", [1, 4, 5, 5]), _vi("w", ["N", 4, 3, 3])], [_vi("y", None)])
    with pytest.raises(pysofie.ShapeInferenceError,
                       match="'c_rt'.*weight 'w' has shape \\[N, 4, 3, 3\\]: its sizes must be known"):
        pysofie.load(m)


@pytest.mark.parametrize("elem, error", [(TensorProto.STRING, pysofie.UnsupportedOperatorError),
                                         (TensorProto.COMPLEX64, pysofie.UnsupportedOperatorError),
                                         (TensorProto.UNDEFINED, pysofie.ModelLoadError)])
def test_input_element_type_pysofie_does_not_run_names_the_input(elem, error):
    m = _graph([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2], elem)], [_vi("y", [2], elem)])
    with pytest.raises(error, match="'x'"):
        pysofie.load(m)


def test_dangling_input_names_the_tensor():
    node = helper.make_node("Relu", ["ghost"], ["y"], name="r")
    m = _graph([node], [_vi("x", [2])], [_vi("y", [2])])
    with pytest.raises(pysofie.ModelLoadError, match="'ghost'"):
        pysofie.load(m)


@pytest.fixture(scope="module")
def two_input_session():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    m = _graph(nodes, [_vi("a", ["N", 3]), _vi("b", ["N", 3])], [_vi("y", ["N", 3])])
    return pysofie.InferenceSession(m)


def test_run_checks_input_names(two_input_session):
    s = two_input_session
    with pytest.raises(pysofie.InvalidInputError, match=r"unknown input\(s\) \['c'\].*missing input\(s\) \['b'\]"):
        s.run(None, {"a": rand(2, 3), "c": rand(2, 3)})


def test_run_checks_dtype(two_input_session):
    with pytest.raises(pysofie.InvalidInputError, match="'a' must have dtype float32, got int32"):
        two_input_session.run(None, {"a": np.ones((2, 3), np.int32), "b": rand(2, 3)})


def test_run_checks_rank_and_static_dims(two_input_session):
    with pytest.raises(pysofie.InvalidInputError, match="'b' must have rank 2"):
        two_input_session.run(None, {"a": rand(2, 3), "b": rand(6)})
    with pytest.raises(pysofie.InvalidInputError, match="'b' must have shape"):
        two_input_session.run(None, {"a": rand(2, 3), "b": rand(2, 4)})


def test_run_checks_symbolic_dims_agree(two_input_session):
    with pytest.raises(pysofie.InvalidInputError, match="'N'=2"):
        two_input_session.run(None, {"a": rand(2, 3), "b": rand(5, 3)})


def test_run_unknown_output_name(two_input_session):
    with pytest.raises(pysofie.InvalidInputError, match="no output 'zzz'"):
        two_input_session.run(["zzz"], {"a": rand(2, 3), "b": rand(2, 3)})


def test_symbolic_batch_grows_and_shrinks(two_input_session):
    for n in (1, 7, 3, 64, 2):
        a, b = rand(n, 3, seed=n), rand(n, 3, seed=n + 100)
        np.testing.assert_allclose(two_input_session.run(None, {"a": a, "b": b})[0], a + b, rtol=1e-6)


NASTY = ["a/b:0", 'x"; system("rm -rf /"); //', "float", "名前", "", "1x", "a__b", "a-b", "a.b", "a b", "\\n",
         "tensor_x", "out_y", "fSlot0", "Session", "std"]


def test_hostile_tensor_and_node_names_never_reach_the_code_unsanitized():
    """Names with quotes, keywords, unicode, names that collide after sanitizing, names like our own members."""
    names = [n for n in NASTY if n]
    inputs = [_vi(names[0], [2, 2]), _vi(names[1], [2, 2])]
    nodes, prev = [], names[0]
    for k, n in enumerate(names[2:]):
        nodes.append(helper.make_node("Add", [prev, names[1]], [n], name=NASTY[(k + 3) % len(NASTY)] + "*/"))
        prev = n
    m = _graph(nodes, inputs, [_vi(prev, [2, 2])])
    a, b = rand(2, 2, seed=1), rand(2, 2, seed=2)
    feeds = {names[0]: a, names[1]: b}
    sess = pysofie.InferenceSession(m)
    np.testing.assert_allclose(sess.run(None, feeds)[0], ort(m, feeds)[0], rtol=1e-6)
    # model names may appear in // comments (one line each, no line breaks); never in code
    for line in sess.header.splitlines():
        if 'system("rm' in line or "名前" in line:
            assert line.lstrip().startswith("//"), line
    assert "名前" not in sess.header


def test_failed_emit_writes_nothing(tmp_path):
    node = helper.make_node("FancyOp", ["x"], ["y"], name="f")
    m = _graph([node], [_vi("x", [2])], [_vi("y", [2])])
    out = tmp_path / "out"
    with pytest.raises(pysofie.UnsupportedOperatorError):
        pysofie.emit(m, str(out))
    assert not out.exists() or list(out.iterdir()) == []


def test_emit_leaves_no_temporary_files(tmp_path):
    files = pysofie.emit(rootbench_model("Linear_16"), str(tmp_path), weights="bin")
    assert sorted(os.listdir(tmp_path)) == ["Linear_16.bin", "Linear_16.hxx"]
    assert files["namespace"] == "SOFIE_Linear_16"


def test_bytes_and_modelproto_inputs():
    path = rootbench_model("higgs_model_dense")
    x = {"input": rand(1, 7)}
    ref = ort(path, x)[0]
    for model in (open(path, "rb").read(), onnx.load(path)):
        np.testing.assert_allclose(pysofie.InferenceSession(model).run(None, x)[0], ref, rtol=1e-4, atol=1e-6)
    with pytest.raises(pysofie.ModelLoadError):
        pysofie.InferenceSession(b"garbage bytes")
