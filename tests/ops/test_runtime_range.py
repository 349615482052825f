"""Sizes with no bound known before the run: a Range whose start, limit or delta is computed from data inside the
graph (Range(0, ReduceMax(x), 1), a limit counted from a mask). The generated code computes the length first,
grows the Session's buffers (and the outputs' vectors) to it, and later operators (elementwise, CumSum, Gather,
MatMul, Expand, NonZero, Shape) take it as a run-time size. Reference: onnxruntime (exact for integers, rtol 1e-4 /
atol 1e-5 for floats), at several values each, size 0 included. All models compile together."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper

from ..util import ATOL, RTOL, graph_model, run_emitted_cpp

ort = pytest.importorskip("onnxruntime")


_model = graph_model


def _const(name, value, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(np.array(value, dtype)))


MODELS = {
    # arange(max(x)) and what follows it: elementwise, CumSum, Gather rows of a table, its Shape
    "range_of_max": _model("range_of_max", [
        _const("zero", 0), _const("one", 1), _const("ax", 0),
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Range", ["zero", "mx", "one"], ["r"]),
        helper.make_node("Add", ["r", "r"], ["a"]), helper.make_node("CumSum", ["r", "ax"], ["c"]),
        helper.make_node("Gather", ["t", "r"], ["g"], axis=0), helper.make_node("Shape", ["r"], ["len"])],
        [("x", T.INT64, ["N"]), ("t", T.FLOAT, [64, 3])],
        [("a", T.INT64, [None]), ("c", T.INT64, [None]), ("g", T.FLOAT, [None, 3]), ("len", T.INT64, [1])]),
    # float Range from a run-time start to the number of set mask entries, then a softmax over it; one output
    # keeps a static shape (the sum)
    "range_mask_count": _model("range_mask_count", [
        _const("half", 0.5, np.float32),
        helper.make_node("Cast", ["mask"], ["mf"], to=T.FLOAT),
        helper.make_node("ReduceSum", ["mf"], ["count"], keepdims=0),
        helper.make_node("Range", ["s", "count", "half"], ["r"]),
        helper.make_node("Softmax", ["r"], ["p"], axis=0),
        helper.make_node("ReduceSum", ["r"], ["total"], keepdims=0)],
        [("mask", T.BOOL, ["E"]), ("s", T.FLOAT, [])], [("p", T.FLOAT, [None]), ("total", T.FLOAT, [])]),
    # int32 Range counting down from max(x) to min(x) by -2, then a column times a row (MatMul) and Relu
    "range_down_matmul": _model("range_down_matmul", [
        _const("step", -2, np.int32),
        helper.make_node("ReduceMax", ["x"], ["hi"], keepdims=0),
        helper.make_node("ReduceMin", ["x"], ["lo"], keepdims=0),
        helper.make_node("Range", ["hi", "lo", "step"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=T.FLOAT), _const("one_ax", [1]),
        helper.make_node("Unsqueeze", ["rf", "one_ax"], ["col"]),
        helper.make_node("MatMul", ["col", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        [("x", T.INT32, [2, 5]), ("w", T.FLOAT, [1, 3])], [("y", T.FLOAT, [None, 3]), ("r", T.INT32, [None])]),
    # NonZero over data of a run-time length (its bound is that length), and an Expand to two rows
    "range_nonzero_expand": _model("range_nonzero_expand", [
        _const("zero", 0), _const("one", 1), _const("three", 3), _const("shape", [2, 1]),
        helper.make_node("ReduceSum", ["x"], ["n"], keepdims=0),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Mod", ["r", "three"], ["m"]), helper.make_node("Equal", ["m", "zero"], ["e"]),
        helper.make_node("NonZero", ["e"], ["nz"]),
        helper.make_node("Expand", ["r", "shape"], ["ex"]), helper.make_node("Transpose", ["ex"], ["tr"]),
        helper.make_node("Unique", ["m"], ["u", "ui", "inv", "cnt"])],
        [("x", T.INT64, [3])], [("nz", T.INT64, [1, None]), ("tr", T.INT64, [None, 2]), ("u", T.INT64, [None]),
                                ("inv", T.INT64, [None]), ("cnt", T.INT64, [None])]),
    # only a static-shaped result leaves the model: the fast Python path serves it
    "range_sum_only": _model("range_sum_only", [
        _const("zero", 0.0, np.float32), _const("one", 1.0, np.float32),
        helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
        helper.make_node("Range", ["zero", "mx", "one"], ["r"]), helper.make_node("Mul", ["r", "r"], ["sq"]),
        helper.make_node("ReduceSum", ["sq"], ["s"], keepdims=1)],
        [("x", T.FLOAT, ["N"])], [("s", T.FLOAT, [1])]),
    # all three bounds are graph inputs (double): one compiled library for every value
    "range_inputs_double": _model("range_inputs_double", [helper.make_node("Range", ["s", "l", "d"], ["y"])],
                                  [("s", T.DOUBLE, []), ("l", T.DOUBLE, []), ("d", T.DOUBLE, [])],
                                  [("y", T.DOUBLE, [None])]),
}


def _feeds(name, k):
    r = np.random.default_rng(k)
    if name == "range_of_max":
        x = [np.array([3, 1]), np.array([0, -2, -1]), np.array([7, 40, 2]), np.array([5]), np.array([63, 2])][k]
        return {"x": x.astype(np.int64), "t": r.standard_normal((64, 3)).astype(np.float32)}
    if name == "range_mask_count":
        e = (6, 9, 3, 12, 1)[k]
        mask = r.random(e) < (0.5, 0.7, 0.0, 1.0, 1.0)[k]
        return {"mask": mask, "s": np.array((0.0, 1.5, 0.0, -2.0, 1.0)[k], np.float32)}
    if name == "range_down_matmul":
        x = r.integers(-9, 10, (2, 5)).astype(np.int32)
        if k == 2:
            x[:] = 4  # hi == lo: empty
        return {"x": x, "w": r.standard_normal((1, 3)).astype(np.float32)}
    if name == "range_nonzero_expand":
        return {"x": np.array([(1, 2, 3), (0, 0, 0), (5, 6, 9), (1, 0, 0), (-4, 1, 1)][k], np.int64)}
    if name == "range_sum_only":
        return {"x": np.array([[2.5, 1.0], [-1.0], [7.0, 0.0, 3.0], [0.5], [30.0]][k], np.float32)}
    if name == "range_inputs_double":
        s, l, d = [(0.0, 5.0, 1.0), (1.5, -3.0, -0.5), (2.0, 2.0, 1.0), (0.1, 10.0, 0.3), (3.0, 1.0, 1.0)][k]
        return {"s": np.array(s), "l": np.array(l), "d": np.array(d)}
    raise KeyError(name)


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    extra = {"range_data_delta": _model("range_data_delta", [
        helper.make_node("ReduceMin", ["x"], ["d"], keepdims=0), helper.make_node("Range", ["s", "l", "d"], ["y"])],
        [("x", T.INT64, [2]), ("s", T.INT64, []), ("l", T.INT64, [])], [("y", T.INT64, [None])])}
    names = list(MODELS) + list(extra)
    built = compile_many([MODELS.get(n) or extra[n] for n in names], weights="bin")
    for s in built:
        if isinstance(s, BaseException):
            raise s
    return dict(zip(names, built))


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_onnxruntime_at_several_sizes(sessions, name):
    """One session, five runs in a row whose run-time lengths go up, down and to zero (buffers grow and are
    reused)."""
    ref = ort.InferenceSession(MODELS[name].SerializeToString(), providers=["CPUExecutionProvider"])
    lengths = set()
    for k in range(5):
        feed = _feeds(name, k)
        outs = sessions[name].run(None, feed)
        refs = ref.run(None, feed)
        for o, r in zip(outs, refs):
            assert o.shape == r.shape and o.dtype == r.dtype, (k, o.shape, r.shape)
            if o.dtype.kind == "f":
                np.testing.assert_allclose(o, r, rtol=RTOL, atol=ATOL)
            else:
                np.testing.assert_array_equal(o, r)
        lengths.add(outs[0].size)
    if name != "range_sum_only":
        assert 0 in lengths and len(lengths) >= 3  # the cases do exercise size 0 and growth


@pytest.mark.parametrize("name", ["range_of_max", "range_nonzero_expand"])
def test_fast_and_checked_paths_agree(sessions, name):
    """The C hot path (run_fast, arrays resized or filled after the run) and the checked ctypes path (taken for a
    feed of lists) return the same arrays."""
    s = sessions[name]
    assert s._fast is not None
    for k in range(5):
        feed = _feeds(name, k)
        fast = s.run(None, feed)
        checked = s.run(None, {n: a.tolist() for n, a in feed.items()})
        for a, b in zip(fast, checked):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_range_was_not_specialized(sessions):
    """The length is a run-time size of one compiled library, not a constant of code generated per value."""
    s = sessions["range_inputs_double"]
    assert "no bound before the run" in s.header
    assert s.run(None, {"s": np.array(0.0), "l": np.array(1e4), "d": np.array(1.0)})[0].shape == (10000,)


def test_zero_delta_is_an_error(sessions):
    import pysofie
    s = sessions["range_data_delta"]
    feed = {"x": np.array([3, 0], np.int64), "s": np.array(0, np.int64), "l": np.array(4, np.int64)}
    with pytest.raises(pysofie.PysofieError, match="delta is zero"):
        s.run(None, feed)
    feed["x"] = np.array([3, 2], np.int64)
    np.testing.assert_array_equal(s.run(None, feed)[0], [0, 2])


CPP_MAIN = r"""
#include "range_of_max.hxx"
#include <cstdio>
#include <vector>

int main() {
   SOFIE_range_of_max::Session s("", 2);
   std::vector<float> table(64 * 3);
   for (size_t k = 0; k < table.size(); ++k) table[k] = 0.5f * float(k);
   const int64_t x[3] = {2, 6, 1};
   auto outs = s.infer(3, x, table.data());  // allocating: vectors of the true lengths
   const auto& c = std::get<1>(outs);
   std::printf("alloc %zu %zu %zu %lld %g\n", std::get<0>(outs).size(), c.size(), std::get<2>(outs).size(),
               (long long)c.back(), std::get<2>(outs)[5 * 3 + 1]);
   std::vector<int64_t> a, cs, len(1);  // caller-buffer form: sized by infer; len has a static shape
   std::vector<float> g;
   const int64_t x2[2] = {0, 9};
   s.infer(2, x2, table.data(), a, cs, g, len.data());
   std::printf("buffers %zu %zu %zu %zu %lld %lld\n", s.last_sizes()[0], a.size(), cs.size(), g.size(),
               (long long)cs.back(), (long long)len[0]);
   const int64_t x3[1] = {0};
   s.infer(1, x3, table.data(), a, cs, g, len.data());
   std::printf("empty %zu %zu %lld\n", a.size(), g.size(), (long long)len[0]);
   return 0;
}
"""


def test_cpp_vectors_grow_and_shrink(tmp_path):
    """Plain C++ (no Python): the allocating infer returns vectors of the true lengths; the caller-buffer infer
    takes such outputs as std::vector and resizes them; last_sizes() gives the length. Every header of this file
    compiles with -Wall -Wextra -Werror. Reference: numpy."""
    out = run_emitted_cpp(MODELS, CPP_MAIN, tmp_path)
    table = 0.5 * np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    assert out[0].split() == ["alloc", "6", "6", "18", str(np.arange(6).sum()), f"{table[5, 1]:g}"]
    assert out[1].split() == ["buffers", "9", "9", "9", "27", str(np.arange(9).sum()), "9"]
    assert out[2].split() == ["empty", "0", "0", "0"]
