"""pysofie.backend: the onnx.backend.base.Backend interface, directly and through onnx's own BackendTest runner.

Numbers are compared with onnx.reference.ReferenceEvaluator / numpy at the project's tolerance (rtol 1e-4,
atol 1e-5); the BackendTest cases use each case's own tolerance (onnx's runner)."""
from __future__ import annotations

import numpy as np
import onnx
import onnx.backend.test
import pytest
from onnx import TensorProto, helper

import pysofie.backend as backend
from pysofie.backend import PysofieBackend
from pysofie.errors import UnsupportedOperatorError

from .util import ATOL, RTOL, rand, reference

# onnx's own runner on a few node tests: each becomes a unittest test collected by pytest
_onnx_tests = onnx.backend.test.BackendTest(PysofieBackend, __name__)
_onnx_tests.include(r"^test_(relu|sigmoid|add_bcast|gemm_default_no_bias|conv_with_strides_padding|"
                    r"maxpool_2d_pads|reshape_negative_dim|top_k|pad)_cpu$")  # the last three: shape inputs given at run
for _cls in _onnx_tests.test_cases.values():
    # keep only the included tests (the runner marks every other case of its catalogue as skipped)
    for _name in [n for n, f in vars(_cls).items() if n.startswith("test_") and getattr(f, "__unittest_skip__", 0)]:
        delattr(_cls, _name)
    if any(n.startswith("test_") for n in vars(_cls)):
        globals()[_cls.__name__] = _cls


def _two_node_model():
    nodes = [helper.make_node("Gemm", ["a", "w"], ["g"], transB=1),
             helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("Sigmoid", ["g"], ["s"])]
    w = onnx.numpy_helper.from_array(rand(5, 4, seed=7), "w")
    graph = helper.make_graph(nodes, "two_out", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, [3, 5]),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, [3, 5])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def test_prepare_run_list_dict_and_names():
    m = _two_node_model()
    a = rand(3, 4, seed=1)
    expected = reference(m, {"a": a})
    rep = backend.prepare(m, "CPU")
    outs = rep.run([a])
    assert isinstance(outs, tuple) and len(outs) == 2
    for got, exp in zip(outs, expected):
        assert got.dtype == exp.dtype and got.shape == exp.shape
        np.testing.assert_allclose(got, exp, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(outs["s"], expected[1], rtol=RTOL, atol=ATOL)  # outputs by name too
    again = rep.run({"a": a})  # dict input, same session
    np.testing.assert_allclose(again[0], expected[0], rtol=RTOL, atol=ATOL)
    single = rep.run(a)  # a lone array for a one-input model
    np.testing.assert_allclose(single[1], expected[1], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="1 input"):
        rep.run([a, a])


def test_run_model_from_bytes():
    m = _two_node_model()
    a = rand(3, 4, seed=2)
    outs = backend.run_model(m.SerializeToString(), [a])
    for got, exp in zip(outs, reference(m, {"a": a})):
        np.testing.assert_allclose(got, exp, rtol=RTOL, atol=ATOL)


def test_run_node():
    x = rand(2, 3, 4, seed=3)
    (y,) = backend.run_node(helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.2), [x])
    np.testing.assert_allclose(y, np.where(x >= 0, x, 0.2 * x), rtol=RTOL, atol=ATOL)
    a, b = rand(2, 3, seed=4), rand(3, seed=5)
    node = helper.make_node("Add", ["a", "b"], ["c"])
    (c,) = backend.run_node(node, {"a": a, "b": b}, outputs_info=[(np.float32, (2, 3))])
    np.testing.assert_allclose(c, a + b, rtol=RTOL, atol=ATOL)
    # an absent optional input ("") is skipped when the arrays given match the present ones
    g = rand(4, 3, seed=6)
    node = helper.make_node("Gemm", ["a", "g", ""], ["y"], transB=1, alpha=0.5)
    (y,) = backend.run_node(node, [a, g])
    np.testing.assert_allclose(y, 0.5 * a @ g.T, rtol=RTOL, atol=ATOL)


def test_devices():
    assert backend.supports_device("CPU")
    assert not backend.supports_device("CUDA")
    assert not backend.supports_device("TPU")
    with pytest.raises(ValueError, match="CPU only"):
        backend.prepare(_two_node_model(), "CUDA")


def test_unsupported_operator_is_not_implemented_naming_it():
    node = helper.make_node("ConvInteger", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "convint", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 3, 3]),
                                                  helper.make_tensor_value_info("w", TensorProto.UINT8, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1, 2, 2])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    with pytest.raises(NotImplementedError, match="ConvInteger") as ei:
        backend.prepare(m)
    assert isinstance(ei.value, UnsupportedOperatorError)
    assert not backend.is_compatible(m)
    assert backend.is_compatible(_two_node_model())
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="some.domain")
    with pytest.raises(NotImplementedError, match="Frobnicate"):
        backend.run_node(node, [rand(2, seed=1)])


@pytest.mark.parametrize("kind", ["sequence", "string"])
def test_unsupported_types_are_not_implemented(kind):
    if kind == "sequence":
        inp = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None)
        node = helper.make_node("SequenceLength", ["seq"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.INT64, [])
    else:
        inp = helper.make_tensor_value_info("seq", TensorProto.STRING, [2])
        node = helper.make_node("Identity", ["seq"], ["y"])
        out = helper.make_tensor_value_info("y", TensorProto.STRING, [2])
    m = helper.make_model(helper.make_graph([node], "t", [inp], [out]),
                          opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    with pytest.raises(NotImplementedError, match="SequenceLength|Identity") as ei:
        backend.prepare(m)
    assert ("sequence" if kind == "sequence" else "STRING") in str(ei.value)
