"""Compiled models share nothing: two libraries loaded in one process whose generated code has the same
namespace and the same function names (as batches do) keep their own constant tables."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

import pysofie
from tests.util import assert_close, ort, rand


def resize_model(scale: float):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    g = helper.make_graph([node], "rs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def test_same_namespace_in_two_libraries():
    models = [resize_model(2.0), resize_model(0.5), resize_model(3.0)]
    sessions = [pysofie.InferenceSession(m, namespace="shared_name") for m in models]
    x = {"x": rand(1, 1, 4, 4)}
    for m, s in zip(models, sessions):
        assert_close(s.run(None, x), ort(m, x))
