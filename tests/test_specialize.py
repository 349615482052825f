"""Shape-determining inputs given at run (pysofie.specialize): the Backend API and InferenceSession generate and
compile code for the values given, cached per value set. References: onnxruntime (rtol 1e-4, atol 1e-5)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper

import pysofie
import pysofie.backend as backend
from pysofie.errors import InvalidInputError

from .util import ATOL, RTOL, rand

ort = pytest.importorskip("onnxruntime")


def _model(nodes, inputs, outputs, opset=18):
    g = helper.make_graph(nodes, "spec", [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def _ort(m, feed):
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)


@pytest.fixture(scope="module")
def reshape_topk():
    """Reshape by a run-time target, then TopK with a run-time K over the last axis, then ReduceSum over
    run-time axes."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("TopK", ["r", "k"], ["v", "i"]),
             helper.make_node("ReduceSum", ["v", "axes"], ["s"], keepdims=0)]
    return _model(nodes, [("x", T.FLOAT, [2, 3, 4]), ("shape", T.INT64, [2]), ("k", T.INT64, [1]),
                          ("axes", T.INT64, [1])],
                  [("v", T.FLOAT, [None, None]), ("i", T.INT64, [None, None]), ("s", T.FLOAT, [None])])


def _feed(shape, k, axis, seed=0):
    return {"x": rand(2, 3, 4, seed=seed), "shape": np.array(shape, np.int64), "k": np.array([k], np.int64),
            "axes": np.array([axis], np.int64)}


def test_backend_prepare_run_specializes_per_value_set(reshape_topk):
    rep = backend.prepare(reshape_topk)
    assert [n for n in rep.input_names] == ["x", "shape", "k", "axes"]
    for shape, k, axis in [((6, 4), 2, 0), ((4, 6), 3, 1), ((6, 4), 2, 0), ((3, 8), 8, -1)]:
        feed = _feed(shape, k, axis, seed=k)
        outs = rep.run([feed[n] for n in rep.input_names])
        refs = _ort(reshape_topk, feed)
        for o, r in zip(outs, refs):
            assert o.shape == r.shape and o.dtype == r.dtype
            np.testing.assert_allclose(o, r, rtol=RTOL, atol=ATOL)
    lazy = rep.session._lazy
    assert len(lazy.cache) == 3  # (6, 4)/2/0 came twice: compiled once


def test_inference_session_specializes_lazily(reshape_topk):
    s = pysofie.InferenceSession(reshape_topk)
    assert [(i.name, i.shape, i.type) for i in s.get_inputs()][1] == ("shape", [2], "tensor(int64)")
    assert [o.name for o in s.get_outputs()] == ["v", "i", "s"]
    feed = _feed((6, 4), 2, 0)
    (v,) = s.run(["s"], feed)
    np.testing.assert_allclose(v, _ort(reshape_topk, feed)[2], rtol=RTOL, atol=ATOL)
    with pytest.raises(InvalidInputError, match="missing input.*'k'"):
        s.run(None, {"x": feed["x"], "shape": feed["shape"], "axes": feed["axes"]})
    with pytest.raises(InvalidInputError, match="'k' must have dtype int64"):
        s.run(None, {**feed, "k": np.array([2], np.int32)})
    with pytest.raises(InvalidInputError, match="unknown input"):
        s.run(None, {**feed, "nope": feed["k"]})
    with pytest.raises(pysofie.PysofieError, match="no code is generated before run"):
        s.header


def test_constant_inputs_still_fix_some_and_the_rest_arrive_at_run(reshape_topk):
    s = pysofie.InferenceSession(reshape_topk, constant_inputs={"shape": np.array([4, 6], np.int64)})
    assert [i.name for i in s.get_inputs()] == ["x", "k", "axes"]
    feed = _feed((4, 6), 5, 1)
    outs = s.run(None, {k: v for k, v in feed.items() if k != "shape"})
    for o, r in zip(outs, _ort(reshape_topk, feed)):
        np.testing.assert_allclose(o, r, rtol=RTOL, atol=ATOL)


def test_static_models_keep_the_compiled_fast_path():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", T.FLOAT, [2, 3])], [("y", T.FLOAT, [2, 3])])
    s = pysofie.InferenceSession(m)
    assert s._lazy is None and s._gm is not None


def test_pad_and_expand_with_run_time_parameters_through_onnx_backend_run_model():
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
             helper.make_node("Expand", ["p", "shape"], ["y"])]
    m = _model(nodes, [("x", T.FLOAT, [1, 3, 4]), ("pads", T.INT64, [6]), ("shape", T.INT64, [3])],
               [("y", T.FLOAT, [None, None, None])])
    feed = {"x": rand(1, 3, 4, seed=3), "pads": np.array([0, 1, 2, 0, 1, 1], np.int64),
            "shape": np.array([2, 1, 1], np.int64)}
    (y,) = backend.run_model(m, [feed["x"], feed["pads"], feed["shape"]])
    (ref,) = _ort(m, feed)
    assert y.shape == ref.shape == (2, 5, 7)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_deferred_compilation_compiles_prepared_models_together():
    models = [_model([helper.make_node(op, ["x"], ["y"])], [("x", T.FLOAT, [2, 3])], [("y", T.FLOAT, [2, 3])])
              for op in ("Relu", "Sigmoid", "Neg")]
    x = rand(2, 3, seed=5)
    with backend.deferred_compilation(chunk=8) as pool:
        reps = [backend.prepare(m) for m in models]
        assert len(pool.pending) == 3 and all(r.session.session is None for r in reps)
        (y0,) = reps[0].run([x])  # the first run compiles all three into one library
        assert not pool.pending
        libs = {r.session.session._native.lib._name for r in reps}
        assert len(libs) == 1
    for r, m in zip(reps, models):
        np.testing.assert_allclose(r.run([x])[0], _ort(m, {"x": x})[0], rtol=RTOL, atol=ATOL)


def test_is_compatible_accepts_run_time_shape_inputs(reshape_topk):
    assert backend.is_compatible(reshape_topk)


def test_range_bounds_given_at_run_need_no_specialization():
    """Range's length is a run-time size (tests/ops/test_runtime_range.py): one library serves every value."""
    m = _model([helper.make_node("Range", ["a", "b", "d"], ["r"]), helper.make_node("Cast", ["r"], ["y"], to=T.FLOAT)],
               [("a", T.INT64, []), ("b", T.INT64, []), ("d", T.INT64, [])], [("y", T.FLOAT, [None])])
    s = pysofie.InferenceSession(m)
    for a, b, d in [(0, 5, 1), (10, 1, -3), (0, 5, 1)]:
        feed = {"a": np.array(a), "b": np.array(b), "d": np.array(d)}
        (y,) = s.run(None, feed)
        (ref,) = _ort(m, feed)
        assert y.shape == ref.shape
        np.testing.assert_array_equal(y, ref)
    assert s._lazy is None
