"""The validation layer between front end and passes (passes/validate.py) and the names that reach C++: models that
break the specification are refused with InvalidModelError listing every problem; hostile names, size parameters
named like the generated code's own identifiers, very long names and non-finite attributes compile and compute
what onnxruntime computes; a compiler error on generated code is reported as a pysofie bug."""
import numpy as np
import onnx
import pytest
from onnx import helper

import pysofie
from pysofie.errors import GeneratedCodeError, InvalidModelError
from tests.util import node_model, ort, rand

X = rand(1, 3, 8, 8, seed=1)
W = rand(4, 3, 3, 3, seed=2)


def conv(**a):
    return node_model("Conv", {"x": X, "w": W}, a, initializers=("w",), opset=17)


def pool(**a):
    return node_model("MaxPool", {"x": X}, a, opset=17)


def convt(**a):
    return node_model("ConvTranspose", {"x": X, "w": rand(3, 2, 3, 3, seed=3)}, a, initializers=("w",), opset=17)


def _edit(model, fn):
    m = onnx.load_from_string(model.SerializeToString())
    fn(m)
    return m


def _set_string(m, name, value: bytes):
    for a in m.graph.node[0].attribute:
        if a.name == name:
            a.s = value


INVALID = {
    "conv_negative_pads": (conv(pads=[-5, -5, -5, -5]), 'pads=.* must have every element >= 0'),
    "conv_negative_kernel": (conv(kernel_shape=[-3, -3]), 'kernel_shape=.* must have every element > 0'),
    "conv_negative_dilations": (conv(dilations=[-1, -1]), 'dilations=.* must have every element > 0'),
    "conv_odd_pads": (conv(pads=[1, 1, 1]), "even number of entries"),
    "conv_strides_rank": (conv(kernel_shape=[3, 3], strides=[1, 1, 1]), "'strides' has 3 entries"),
    "maxpool_pads": (pool(kernel_shape=[2, 2], pads=[-1, -1, -1, -1]), 'pads=.* must have every element >= 0'),
    "maxpool_strides0": (pool(kernel_shape=[2, 2], strides=[0, 0]), 'strides=.* must have every element > 0'),
    "convt_kernel0": (convt(kernel_shape=[0, 0]), 'kernel_shape=.* must have every element > 0'),
    "convt_group0": (convt(group=0), 'group=0 must be >= 1'),
    "convt_kernel_huge": (convt(kernel_shape=[2 ** 31, 3]), "kernel_shape=.* must have every element > 0 and <="),
    "conv_kernel_not_weight": (conv(kernel_shape=[5, 5]), r"kernel_shape=\[5, 5\] differs from the spatial shape"),
    "attr_wrong_type": (_edit(conv(), lambda m: m.graph.node[0].attribute.extend([helper.make_attribute("group", 1.5)])),
                        "'group' is FLOAT, the specification says INT"),
    "attr_proto_type": (_edit(pool(kernel_shape=[2, 2]), lambda m: setattr(m.graph.node[0].attribute[0], "type",
                                                                             onnx.AttributeProto.FLOATS)),
                        "'kernel_shape' is FLOATS"),
    "bad_enum": (_edit(pool(kernel_shape=[2, 2], auto_pad="NOTSET"), lambda m: _set_string(m, "auto_pad", b"NO\xffSET")),
                 'auto_pad=.* must be one of'),
    "initializer_dtype": (_edit(conv(), lambda m: m.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(W.astype(np.int64), "w"))), "element type int64"),
    "extra_output": (_edit(conv(), lambda m: m.graph.node[0].output.append("extra")), "2 outputs, the specification"),
    "absent_required": (_edit(node_model("Gemm", {"a": rand(3, 4), "b": rand(4, 5)}, opset=17),
                              lambda m: m.graph.node[0].input.__setitem__(1, "")), "required input 1 ('B') is given as absent"),
    "two_initializers": (_edit(conv(), lambda m: m.graph.initializer.append(
        onnx.numpy_helper.from_array(W * 2, "w"))), "two initializers are named 'w'"),
    "no_outputs": (_edit(conv(), lambda m: m.graph.ClearField("output")), "the graph has no outputs"),
    "renamed_to_input": (_edit(node_model("Relu", {"x": X}, opset=17), lambda m: m.graph.node.append(
        helper.make_node("Relu", ["y0"], ["x"]))), "'x' is defined twice"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_model_is_refused(case):
    model, msg = INVALID[case]
    with pytest.raises(InvalidModelError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        pysofie.load(model)
    assert e.value.problems and isinstance(e.value, pysofie.ModelLoadError)
    assert pysofie.check(model) == e.value.problems


def test_every_problem_is_listed_at_once():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[0, 0]),
             helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[-1, 2], pads=[0, 0, -2, 0])]
    m = helper.make_model(helper.make_graph(nodes, "two", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(InvalidModelError) as e:
        pysofie.load(m)
    assert len(e.value.problems) == 3, e.value.problems


# -- models that must compile and equal onnxruntime ------------------------------------------------------------------

HOSTILE_DIMS = ["this", "errno", "size_t", "int", "class", "infer", "reader", "result0", "ensure_capacity", "NAN", "n",
                "o", "nc", "fCap_N", "a-b"]


def _dim_model(dim: str, graph_name: str = "g"):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [dim, 3, 8, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("ReduceSum", ["p", "axes"], ["y"], keepdims=1)]
    inits = [onnx.numpy_helper.from_array(W, "w"), onnx.numpy_helper.from_array(np.array([1], np.int64), "axes")]
    return helper.make_model(helper.make_graph(nodes, graph_name, [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def _gru(**attrs):
    seq, Wg, Rg = rand(5, 2, 3, seed=4), rand(1, 12, 3, seed=5), rand(1, 12, 4, seed=6)
    return node_model("GRU", {"x": seq, "W": Wg, "R": Rg}, dict(hidden_size=4, **attrs), initializers=("W", "R"),
                      n_outputs=2, opset=17), {"x": seq}


def _lstm(**attrs):
    seq, Wl, Rl = rand(5, 2, 3, seed=4), rand(1, 16, 3, seed=5), rand(1, 16, 4, seed=6)
    return node_model("LSTM", {"x": seq, "W": Wl, "R": Rl}, dict(hidden_size=4, **attrs), initializers=("W", "R"),
                      n_outputs=2, opset=17), {"x": seq}


def _compiled_cases():
    inf, nan = float("inf"), float("nan")
    xb = rand(2, 3, 8, 8, seed=7)
    cases = {f"dim_{d}": (_dim_model(d), {"x": xb}) for d in HOSTILE_DIMS}
    cases["long_graph_name"] = (_dim_model("N", "g" * 5000), {"x": xb})
    bn = {"x": X, "s": np.ones(3, np.float32), "b": np.zeros(3, np.float32), "m": np.zeros(3, np.float32),
          "v": np.ones(3, np.float32)}
    cases["batchnorm_epsilon_inf"] = (node_model("BatchNormalization", bn, {"epsilon": inf},
                                                 initializers=("s", "b", "m", "v"), opset=17), {"x": X})
    a, b = rand(3, 4, seed=2), rand(4, 5, seed=3)
    cases["gemm_alpha_1e39"] = (node_model("Gemm", {"a": a, "b": b}, {"alpha": 1e39}, opset=17), {"a": a, "b": b})
    cases["gemm_alpha_inf_const_b"] = (node_model("Gemm", {"a": a, "b": b}, {"alpha": inf}, initializers=("b",),
                                                  opset=17), {"a": a})
    cases["leakyrelu_alpha_inf"] = (node_model("LeakyRelu", {"x": X}, {"alpha": inf}, opset=17), {"x": X})
    cases["lstm_clip_inf"] = _lstm(clip=inf)
    cases["gru_activation_alpha_nan"] = _gru(activations=["Sigmoid", "LeakyRelu"], activation_alpha=[nan])
    return cases


@pytest.fixture(scope="module")
def compiled():
    from pysofie.build.batch import compile_many
    cases = _compiled_cases()
    sessions = compile_many([m for m, _ in cases.values()])
    return {k: (m, f, s) for (k, (m, f)), s in zip(cases.items(), sessions)}


@pytest.mark.parametrize("case", list(_compiled_cases()))
def test_compiles_and_equals_onnxruntime(compiled, case):
    model, feeds, sess = compiled[case]
    if isinstance(sess, Exception):
        raise sess
    got = sess.run(None, feeds)
    exp = ort(model, feeds)
    for g, e in zip(got, exp):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=case)


def test_size_parameter_names_in_the_header(tmp_path):
    """A size parameter keeps its name unless the code uses it (n is a loop counter: it becomes n_1)."""
    for dim, want in (("N", "size_t N = 1"), ("n", "size_t n_1 = 1"), ("NAN", "size_t NAN_d = 1")):
        files = pysofie.emit(_dim_model(dim), str(tmp_path / dim))
        assert want in open(files["header"]).read()
    files = pysofie.emit(_dim_model("N", "g" * 5000), str(tmp_path / "long"))
    assert len(files["header"].rsplit("/", 1)[-1]) < 80


def test_compiler_error_on_generated_code_is_a_pysofie_bug(monkeypatch):
    from pysofie.backends.cpp.emitter import GENERATORS
    monkeypatch.setitem(GENERATORS, "Relu", lambda cx: cx.w.line("this is not C++ at all;"))
    with pytest.raises(GeneratedCodeError, match="bug in pysofie") as e:
        pysofie.InferenceSession(node_model("Relu", {"x": rand(3, 3, seed=9)}, opset=17))
    assert "kept in" in str(e.value) and isinstance(e.value, pysofie.CompileError)
