"""Scan and Loop unrolled by the ONNX front end (a scan length / trip count known at generation time or given at
run; a Loop stopped by a condition computed from data is unrolled up to its trip count). Reference: onnxruntime
(rtol 1e-4, atol 1e-5)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper

import pysofie
from tests.util import assert_close, ort, rand


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _scan_model(reverse_in=0, reverse_out=0, out_axis=0):
    """state s [2], scan input x [L=4, 2]: s += x_t; y_t = s * x_t (scan output)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"]), helper.make_node("Mul", ["s_out", "x_t"], ["y_t"])],
        "body", [_vi("s_in", T.FLOAT, [2]), _vi("x_t", T.FLOAT, [2])],
        [_vi("s_out", T.FLOAT, [2]), _vi("y_t", T.FLOAT, [2])])
    node = helper.make_node("Scan", ["s0", "x"], ["s", "y"], body=body, num_scan_inputs=1,
                            scan_input_directions=[reverse_in], scan_output_directions=[reverse_out],
                            scan_output_axes=[out_axis])
    yshape = [4, 2] if out_axis == 0 else [2, 4]
    g = helper.make_graph([node], "scan", [_vi("s0", T.FLOAT, [2]), _vi("x", T.FLOAT, [4, 2])],
                          [_vi("s", T.FLOAT, [2]), _vi("y", T.FLOAT, yshape)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])


def _loop_model(trip_input: bool, cond_from_body: bool = False):
    """carried y [1]: y += i (the iteration number, as float); scan output y each iteration."""
    nodes = [helper.make_node("Cast", ["i"], ["fi"], to=T.FLOAT),
             helper.make_node("Unsqueeze", ["fi", "zero"], ["fi1"]),
             helper.make_node("Add", ["y_in", "fi1"], ["y_out"]),
             helper.make_node("Identity", ["y_out"], ["scan"])]
    if cond_from_body:
        nodes.append(helper.make_node("Less", ["fi", "ten"], ["cond_out"]))
    else:
        nodes.append(helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    body = helper.make_graph(nodes, "body", [_vi("i", T.INT64, []), _vi("cond_in", T.BOOL, []),
                                             _vi("y_in", T.FLOAT, [1])],
                             [_vi("cond_out", T.BOOL, []), _vi("y_out", T.FLOAT, [1]), _vi("scan", T.FLOAT, [1])],
                             [onnx.numpy_helper.from_array(np.array([0], np.int64), "zero"),
                              onnx.numpy_helper.from_array(np.array(10, np.float32), "ten")])
    inits = [onnx.numpy_helper.from_array(np.array(True), "cond")]
    ins = [_vi("y0", T.FLOAT, [1])]
    if trip_input:
        ins.insert(0, _vi("M", T.INT64, []))
    else:
        inits.append(onnx.numpy_helper.from_array(np.array(5, np.int64), "M"))
    node = helper.make_node("Loop", ["M", "cond", "y0"], ["y", "ys"], body=body)
    g = helper.make_graph([node], "loop", ins, [_vi("y", T.FLOAT, [1]), _vi("ys", T.FLOAT, [None, 1])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])


SCANS = [(0, 0, 0), (1, 0, 1), (0, 1, 0)]


@pytest.fixture(scope="module")
def scan_sessions():
    from pysofie.build.batch import compile_many
    built = compile_many([_scan_model(*k) for k in SCANS], weights="bin")
    for b in built:
        if isinstance(b, BaseException):
            raise b
    return dict(zip(SCANS, built))


@pytest.mark.parametrize("rin,rout,axis", SCANS)
def test_scan_matches_onnxruntime(scan_sessions, rin, rout, axis):
    m = _scan_model(rin, rout, axis)
    feed = {"s0": rand(2, seed=1), "x": rand(4, 2, seed=2)}
    sess = scan_sessions[(rin, rout, axis)]
    assert "Scan" not in {n.op_type for n in sess._gm.emitter.graph.nodes}
    assert_close(sess.run(None, feed), ort(m, feed))


def test_loop_with_constant_trip_count():
    m = _loop_model(trip_input=False)
    feed = {"y0": rand(1, seed=3)}
    assert_close(pysofie.InferenceSession(m).run(None, feed), ort(m, feed))


def test_loop_trip_count_given_at_run_is_specialized():
    m = _loop_model(trip_input=True)
    sess = pysofie.InferenceSession(m)
    assert sess._lazy is not None and sess._lazy.needed == ["M"]
    for trips in (3, 6):
        feed = {"M": np.array(trips, np.int64), "y0": rand(1, seed=trips)}
        outs = sess.run(None, feed)
        assert outs[1].shape == (trips, 1)
        assert_close(outs, ort(m, feed))


def _while_model(trips: int = 10):
    """carried x [3]: x = x / 2 + i while sum(x) < thr (thr, and the initial condition c, given at run); scan
    output x each iteration: how many iterations run is decided by the data."""
    body = helper.make_graph([
        helper.make_node("Cast", ["i"], ["fi"], to=T.FLOAT), helper.make_node("Mul", ["x_in", "half"], ["h"]),
        helper.make_node("Add", ["h", "fi"], ["x_out"]), helper.make_node("ReduceSum", ["x_out"], ["s"], keepdims=0),
        helper.make_node("Less", ["s", "thr"], ["c_out"]), helper.make_node("Identity", ["x_out"], ["scan"])],
        "body", [_vi("i", T.INT64, []), _vi("c_in", T.BOOL, []), _vi("x_in", T.FLOAT, [3])],
        [_vi("c_out", T.BOOL, []), _vi("x_out", T.FLOAT, [3]), _vi("scan", T.FLOAT, [3])],
        [onnx.numpy_helper.from_array(np.array(0.5, np.float32), "half")])
    g = helper.make_graph([helper.make_node("Loop", ["M", "c", "x"], ["xf", "ys"], body=body)], "while",
                          [_vi("x", T.FLOAT, [3]), _vi("thr", T.FLOAT, []), _vi("c", T.BOOL, [])],
                          [_vi("xf", T.FLOAT, [3]), _vi("ys", T.FLOAT, [None, 3])],
                          [onnx.numpy_helper.from_array(np.array(trips, np.int64), "M")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_loop_stopped_by_a_condition_computed_from_data():
    """Unrolled up to the trip count (10): iterations after the condition turns false keep the states, and the scan
    output has as many rows as iterations ran (a run-time size): 0, 1, some, all 10."""
    m = _while_model()
    sess = pysofie.InferenceSession(m)
    assert sess._lazy is None  # one library for every threshold
    rows = set()
    for thr, c in [(5.0, True), (-100.0, True), (1e9, True), (20.0, False), (30.0, True)]:
        feed = {"x": np.array([1, 2, 3], np.float32), "thr": np.array(thr, np.float32), "c": np.array(c)}
        outs = sess.run(None, feed)
        ref = ort(m, feed)
        assert [o.shape for o in outs] == [r.shape for r in ref]
        assert_close(outs, ref)
        rows.add(outs[1].shape[0])
    assert rows == {0, 1, 3, 7, 10}


def test_loop_whose_body_computes_its_condition_runs():
    m = _loop_model(trip_input=False, cond_from_body=True)
    feed = {"y0": rand(1, seed=4)}
    assert_close(pysofie.InferenceSession(m).run(None, feed), ort(m, feed))


def test_loop_stopped_by_data_with_too_many_trips_is_refused_clearly():
    with pytest.raises(pysofie.PysofieError, match="trip count 1000 is above 64"):
        pysofie.InferenceSession(_while_model(trips=1000))
