"""InferenceSession.run as a C builtin (backends/cpp/capi.py's session_run): run(None, feed) goes straight to the
model's run_fast, every other call to the Python run. The results match onnxruntime on every way of calling;
errors are the Python path's; the session is still garbage-collected (the builtin and the session refer to
each other) and a subclass's own run is kept. One small model, compiled once."""
import gc
import weakref

import numpy as np
import pytest
from onnx import TensorProto, helper

import pysofie
from pysofie.errors import InvalidInputError
from tests.util import assert_close, ort, rand


def _model():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"]),
             helper.make_node("Sigmoid", ["m"], ["z"])]
    g = helper.make_graph(nodes, "hot", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor(
                              "w", TensorProto.FLOAT, [5, 3], rand(5, 3, seed=2).ravel().tolist())])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


MODEL = _model()
X = rand(2, 5, seed=1)


@pytest.fixture(scope="module")
def sess():
    return pysofie.InferenceSession(MODEL)


def test_run_is_the_c_builtin(sess):
    if getattr(sess._native, "py_run", None) is None:
        pytest.skip("library built without Python's headers: no C hot path")
    assert type(sess.run).__name__ == "builtin_function_or_method"


def test_every_way_of_calling_matches_onnxruntime(sess):
    y, z = ort(MODEL, {"x": X})
    assert_close(sess.run(None, {"x": X}), [y, z])
    assert_close(sess.run(None, {"x": X}, None), [y, z])
    assert_close(sess.run(["z"], {"x": X}), [z])
    assert_close(sess.run(["z", "y"], {"x": X}), [z, y])
    assert_close(sess.run(output_names=None, input_feed={"x": X}), [y, z])
    assert_close(sess.run(None, input_feed={"x": X}), [y, z])
    assert_close(sess.run(None, {"x": X.tolist()}), [y, z])
    assert_close(sess.run(None, {"x": np.asfortranarray(X)}), [y, z])  # not C-contiguous: declined, then copied
    # outputs are new arrays each call
    a, b = sess.run(None, {"x": X}), sess.run(None, {"x": X})
    assert a[0] is not b[0] and not np.shares_memory(a[0], b[0])


def test_errors_are_the_python_paths(sess):
    with pytest.raises(InvalidInputError, match="x"):
        sess.run(None, {})
    with pytest.raises(InvalidInputError, match="x"):
        sess.run(None, {"x": rand(3, 5)})
    with pytest.raises(InvalidInputError, match="dtype"):
        sess.run(None, {"x": X.astype(np.float64)})  # as onnxruntime: no silent conversion of an array
    with pytest.raises(InvalidInputError, match="nope"):
        sess.run(["nope"], {"x": X})
    with pytest.raises(TypeError):
        sess.run(None)


def test_session_is_collected_and_run_outlives_it():
    s = pysofie.InferenceSession(MODEL)
    run = s.run
    ref = weakref.ref(s)
    del s
    gc.collect()
    assert ref() is not None  # the builtin holds its session (as a bound method would)
    y, z = ort(MODEL, {"x": X})
    assert_close(run(None, {"x": X}), [y, z])
    assert_close(run(["y"], {"x": X}), [y])
    del run
    gc.collect()
    assert ref() is None


def test_subclass_run_is_kept():
    class Counting(pysofie.InferenceSession):
        calls = 0

        def run(self, output_names, input_feed, run_options=None):
            Counting.calls += 1
            return super().run(output_names, input_feed, run_options)

    s = Counting(MODEL)
    s.run(None, {"x": X})
    assert Counting.calls == 1
