"""Output sizes decided by the data at run time (Op.runtime_sizes): NonZero, Compress with a run-time condition,
and operators after them. Outputs come back with their true shapes; buffers are sized by upper bounds.
Reference: onnxruntime (exact for indices, rtol 1e-4 / atol 1e-5 for floats). All models compile together."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper

from ..util import ATOL, RTOL, graph_model, run_emitted_cpp

ort = pytest.importorskip("onnxruntime")


_model = graph_model


def _const(name, values):
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(values, np.int64)))


def _rng(seed):
    return np.random.default_rng(seed)


def _sparse(shape, seed, p=0.4, dtype=np.float32):
    r = _rng(seed)
    return (r.standard_normal(shape) * (r.random(shape) < p)).astype(dtype)


MODELS = {
    "nonzero_2d": _model("nonzero_2d", [helper.make_node("NonZero", ["x"], ["y"])],
                         [("x", T.FLOAT, ["N", 5])], [("y", T.INT64, [2, None])]),
    "nonzero_bool_3d": _model("nonzero_bool_3d", [helper.make_node("NonZero", ["x"], ["y"])],
                              [("x", T.BOOL, [2, 3, 4])], [("y", T.INT64, [3, None])]),
    # x[x > t] and its sum: Greater -> NonZero -> Transpose -> GatherND -> ReduceSum, batch symbolic
    "masked_select": _model("masked_select", [
        helper.make_node("Greater", ["x", "t"], ["c"]), helper.make_node("NonZero", ["c"], ["nz"]),
        helper.make_node("Transpose", ["nz"], ["idx"]), helper.make_node("GatherND", ["x", "idx"], ["y"]),
        helper.make_node("ReduceSum", ["y"], ["s"], keepdims=0), helper.make_node("Relu", ["y"], ["r"])],
        [("x", T.FLOAT, ["N", 4]), ("t", T.FLOAT, [])],
        [("y", T.FLOAT, [None]), ("s", T.FLOAT, []), ("r", T.FLOAT, [None])]),
    # graph-network pattern: edges kept by a mask, then gathered rows and a matrix product
    "edge_mask": _model("edge_mask", [
        helper.make_node("NonZero", ["mask"], ["nz"]),
        helper.make_node("Constant", [], ["zero"], value=onnx.numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Squeeze", ["nz", "zero"], ["keep"]),
        helper.make_node("Gather", ["feat", "keep"], ["rows"], axis=0),
        helper.make_node("MatMul", ["rows", "w"], ["h"])],
        [("mask", T.BOOL, ["E"]), ("feat", T.FLOAT, ["E", 3]), ("w", T.FLOAT, [3, 2])],
        [("h", T.FLOAT, [None, 2])]),
    # TopK with K computed at run time (here a graph input): a run-time size up to the axis' extent
    "topk_runtime_k": _model("topk_runtime_k", [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
                                                helper.make_node("Neg", ["v"], ["nv"])],
                             [("x", T.FLOAT, ["N", 6]), ("k", T.INT64, [1])],
                             [("nv", T.FLOAT, ["N", None]), ("i", T.INT64, ["N", None])]),
    "unique_flat_sorted": _model("unique_flat_sorted", [helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"])],
                                 [("x", T.INT64, ["N", 3])], [("y", T.INT64, [None]), ("i", T.INT64, [None]),
                                                              ("inv", T.INT64, [None]), ("c", T.INT64, [None])]),
    "unique_flat_unsorted": _model("unique_flat_unsorted",
                                   [helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], sorted=0)],
                                   [("x", T.FLOAT, [7])], [("y", T.FLOAT, [None]), ("i", T.INT64, [None]),
                                                           ("inv", T.INT64, [7]), ("c", T.INT64, [None])]),
    "unique_axis0_only_y": _model("unique_axis0_only_y", [helper.make_node("Unique", ["x"], ["y"], axis=0)],
                                  [("x", T.INT64, [5, 2])], [("y", T.INT64, [None, 2])]),
    # boxes, scores and thresholds all at run time; batch and box count symbolic
    "nms_corners": _model("nms_corners", [helper.make_node("NonMaxSuppression", ["b", "s", "m", "iou", "thr"],
                                                           ["y"])],
                          [("b", T.FLOAT, ["B", "N", 4]), ("s", T.FLOAT, ["B", 2, "N"]), ("m", T.INT64, [1]),
                           ("iou", T.FLOAT, [1]), ("thr", T.FLOAT, [1])], [("y", T.INT64, [None, 3])], opset=11),
    "nms_center_no_threshold": _model("nms_center_no_threshold", [
        helper.make_node("NonMaxSuppression", ["b", "s", "m", "iou"], ["y"], center_point_box=1)],
        [("b", T.FLOAT, [1, 6, 4]), ("s", T.FLOAT, [1, 1, 6]), ("m", T.INT64, [1]), ("iou", T.FLOAT, [1])],
        [("y", T.INT64, [None, 3])], opset=11),
    # zero-size tensors: a symbolic batch given as 0 at run, and an axis declared 0
    "zero_batch_chain": _model("zero_batch_chain", [
        _const("shape", [-1, 2]),
        helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("MatMul", ["r", "w"], ["m"]), helper.make_node("Concat", ["m", "m"], ["c"], axis=0),
        helper.make_node("Reshape", ["c", "shape"], ["y"]), helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Softmax", ["m"], ["p"], axis=-1)],
        [("x", T.FLOAT, ["N", 3]), ("b", T.FLOAT, [3]), ("w", T.FLOAT, [3, 2])],
        [("y", T.FLOAT, [None, 2]), ("s", T.FLOAT, []), ("p", T.FLOAT, ["N", 2])]),
    "zero_static_axis": _model("zero_static_axis", [
        _const("ax", [1]), helper.make_node("ReduceMax", ["x", "ax"], ["mx"], keepdims=1), helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Concat", ["x", "z"], ["c"], axis=1), helper.make_node("Mul", ["x", "x"], ["sq"])],
        [("x", T.FLOAT, [2, 0]), ("w", T.FLOAT, [0, 3]), ("z", T.FLOAT, [2, 2])],
        [("mx", T.FLOAT, [2, 1]), ("m", T.FLOAT, [2, 3]), ("c", T.FLOAT, [2, 2]), ("sq", T.FLOAT, [2, 0])]),
    "compress_axis1": _model("compress_axis1", [helper.make_node("Compress", ["x", "c"], ["y"], axis=1)],
                             [("x", T.FLOAT, [3, 5, 2]), ("c", T.BOOL, [5])], [("y", T.FLOAT, [3, None, 2])]),
    "compress_flat_short": _model("compress_flat_short", [helper.make_node("Compress", ["x", "c"], ["y"])],
                                  [("x", T.INT32, [2, 3]), ("c", T.BOOL, [4])], [("y", T.INT32, [None])]),
}


def _feeds(name, seed):
    r = _rng(seed)
    if name == "nonzero_2d":
        return {"x": _sparse((2 + seed, 5), seed)}
    if name == "nonzero_bool_3d":
        return {"x": r.random((2, 3, 4)) < (0.0 if seed == 2 else 0.3)}
    if name == "masked_select":
        return {"x": r.standard_normal((3 + 2 * seed, 4)).astype(np.float32), "t": np.array(0.5 + seed, np.float32)}
    if name == "edge_mask":
        e = 4 + 3 * seed
        return {"mask": r.random(e) < 0.5,
                "feat": r.standard_normal((e, 3)).astype(np.float32), "w": r.standard_normal((3, 2)).astype(np.float32)}
    if name == "topk_runtime_k":
        return {"x": r.permutation(6 * (seed + 1)).reshape(seed + 1, 6).astype(np.float32),
                "k": np.array([(0, 3, 6)[seed]], np.int64)}
    if name == "unique_flat_sorted":
        return {"x": r.integers(0, 4, (seed + 1, 3)).astype(np.int64)}
    if name == "unique_flat_unsorted":
        return {"x": r.integers(-2, 2, 7).astype(np.float32)}
    if name == "unique_axis0_only_y":
        return {"x": r.integers(0, 2, (5, 2)).astype(np.int64)}
    if name == "nms_corners":
        nb, nbox = 1 + seed % 2, 5 + 3 * seed
        xy = r.random((nb, nbox, 2)).astype(np.float32) * 4
        wh = r.random((nb, nbox, 2)).astype(np.float32) * 2 + 0.2
        boxes = np.concatenate([xy, xy + wh], axis=2)[..., [1, 0, 3, 2]]  # some [y1, x1, y2, x2]
        boxes[:, ::2] = boxes[:, ::2][..., [2, 3, 0, 1]]  # and some with the corners swapped
        scores = np.round(r.random((nb, 2, nbox)), 1).astype(np.float32)  # ties
        return {"b": boxes, "s": scores, "m": np.array([(2, 3, 100)[seed]], np.int64),
                "iou": np.array([(0.2, 0.5, 0.0)[seed]], np.float32), "thr": np.array([(0.3, 0.0, 0.5)[seed]],
                                                                                    np.float32)}
    if name == "nms_center_no_threshold":
        boxes = np.array([[[0.5, 0.5, 1, 1], [0.5, 0.6, 1, 1], [0.5, 0.4, 1, 1], [0.5, 10.5, 1, 1],
                           [0.5, 10.6, 1, 1], [0.5, 100.5, 1, 1]]], np.float32)
        scores = np.array([[[0.9, 0.75, 0.6, 0.95, 0.5, 0.3]]], np.float32)
        return {"b": boxes, "s": scores, "m": np.array([(3, 1, 0)[seed]], np.int64),
                "iou": np.array([0.5], np.float32)}
    if name == "zero_batch_chain":
        n = (0, 2, 0)[seed]
        return {"x": r.standard_normal((n, 3)).astype(np.float32), "b": r.standard_normal(3).astype(np.float32),
                "w": r.standard_normal((3, 2)).astype(np.float32)}
    if name == "zero_static_axis":
        return {"x": np.zeros((2, 0), np.float32), "w": np.zeros((0, 3), np.float32),
                "z": r.standard_normal((2, 2)).astype(np.float32)}
    if name == "compress_axis1":
        return {"x": r.standard_normal((3, 5, 2)).astype(np.float32), "c": r.random(5) < (0.5 if seed < 2 else 0)}
    if name == "compress_flat_short":
        return {"x": r.integers(-9, 9, (2, 3)).astype(np.int32), "c": r.random(4) < 0.6}
    raise KeyError(name)


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    extra = {"compress_long": _model("compress_long", [helper.make_node("Compress", ["x", "c"], ["y"])],
                                     [("x", T.FLOAT, [2, 2]), ("c", T.BOOL, [6])], [("y", T.FLOAT, [None])])}
    names = list(MODELS) + list(extra)
    built = compile_many([MODELS.get(n) or extra[n] for n in names], weights="bin")
    for n, s in zip(names, built):
        if isinstance(s, BaseException):
            raise s
    return dict(zip(names, built))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_onnxruntime_with_true_shapes(sessions, name, seed):
    feed = _feeds(name, seed)
    outs = sessions[name].run(None, feed)
    refs = ort.InferenceSession(MODELS[name].SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape and o.dtype == r.dtype, (o.shape, r.shape)
        if o.dtype.kind in "f":
            np.testing.assert_allclose(o, r, rtol=RTOL, atol=ATOL)
        else:
            np.testing.assert_array_equal(o, r)


def test_sizes_shrink_and_grow_between_calls(sessions):
    s = sessions["nonzero_2d"]
    x = np.ones((6, 5), np.float32)
    assert s.run(None, {"x": x})[0].shape == (2, 30)
    assert s.run(None, {"x": np.zeros((6, 5), np.float32)})[0].shape == (2, 0)
    x[2, 3] = 0
    y = s.run(None, {"x": x})[0]
    assert y.shape == (2, 29) and [2, 3] not in y.T.tolist()


def test_header_documents_the_bound_and_last_sizes(sessions):
    h = sessions["masked_select"].header
    assert "a size decided by the data at run time (Session::last_sizes()), at most (4*N)" in h
    assert "std::vector<size_t> last_sizes() const" in h


def test_compress_condition_longer_than_axis_is_an_error(sessions):
    import pysofie
    with pytest.raises(pysofie.PysofieError, match="condition is longer than the compressed axis"):
        sessions["compress_long"].run(None, {"x": np.zeros((2, 2), np.float32), "c": np.ones(6, bool)})


def test_topk_k_outside_the_axis_is_an_error(sessions):
    import pysofie
    with pytest.raises(pysofie.PysofieError, match="K is negative or larger than the axis"):
        sessions["topk_runtime_k"].run(None, {"x": np.zeros((2, 6), np.float32), "k": np.array([7], np.int64)})


CPP_MAIN = r"""
#include "masked_select.hxx"
#include <cstdio>
#include <vector>

int main() {
   SOFIE_masked_select::Session s("", 3);
   const float x[12] = {0.1f, 0.9f, -2.f, 0.7f, 0.f, 3.f, 0.2f, 0.6f, 0.5f, 0.51f, -1.f, 2.f};
   const float t = 0.5f;
   auto outs = s.infer(3, x, &t);  // allocating: vectors of the true lengths
   std::printf("alloc %zu %zu %zu %g\n", outs[0].size(), outs[1].size(), outs[2].size(), outs[1][0]);
   std::vector<float> y(4 * 3), sum(1), r(4 * 3);  // caller buffers: sized by the bound 4*N
   s.infer(3, x, &t, y.data(), sum.data(), r.data());
   const size_t n = s.last_sizes()[0];
   std::printf("buffers %zu %g", n, sum[0]);
   for (size_t k = 0; k < n; ++k) std::printf(" %g", y[k]);
   std::printf("\n");
   return 0;
}
"""


def test_cpp_allocating_infer_and_last_sizes(tmp_path):
    """Plain C++ (no Python): the allocating infer returns vectors of the true length, the caller-buffer infer
    learns it from last_sizes(); every header of this file (zero-size axes too) compiles with -Wall -Wextra
    -Werror. Reference: numpy (x[x > t])."""
    out = run_emitted_cpp(MODELS, CPP_MAIN, tmp_path)
    x = np.array([0.1, 0.9, -2, 0.7, 0, 3, 0.2, 0.6, 0.5, 0.51, -1, 2], np.float32)
    sel = x[x > 0.5]
    alloc = out[0].split()
    assert alloc[:4] == ["alloc", str(sel.size), "1", str(sel.size)]
    assert float(alloc[4]) == pytest.approx(sel.sum(), rel=1e-5)
    buf = out[1].split()
    assert int(buf[1]) == sel.size and float(buf[2]) == pytest.approx(sel.sum(), rel=1e-5)
    np.testing.assert_allclose(np.array(buf[3:], np.float32), sel, rtol=1e-6)
