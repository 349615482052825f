"""Scan and Loop unrolled by the ONNX front end (a scan length / trip count known at generation time or given at
run). Reference: onnxruntime (rtol 1e-4, atol 1e-5)."""
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


def test_loop_whose_body_computes_its_condition_is_refused_clearly():
    with pytest.raises(pysofie.PysofieError, match="computes its own stop condition"):
        pysofie.InferenceSession(_loop_model(trip_input=False, cond_from_body=True))
