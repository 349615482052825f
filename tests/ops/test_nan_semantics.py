"""NaN and infinities through the operators that select or compare (min/max/relu/pool/reduce/clip/arg), and a
Conv+Relu fused into the convolution kernel's vector epilogue, against onnxruntime.

Most operators must give onnxruntime's result exactly, NaN in the same places. For the maximum/minimum over a window
or axis, onnxruntime's vector kernels are not consistent (its ReduceMax keeps or drops a NaN depending on the lane it
falls in); pysofie propagates NaN as numpy does: the expected result is onnxruntime's on the input with NaN replaced by
-inf (+inf for a minimum), and NaN wherever the window holds one."""
import numpy as np
import pytest

from tests.util import Cases, ort, rand, selected_sessions

NAN, INF = np.float32(np.nan), np.float32(np.inf)


def _special(*shape, seed=0):
    x = rand(*shape, seed=seed)
    flat = x.reshape(-1)
    flat[::7] = NAN
    flat[3::11] = INF
    flat[5::13] = -INF
    return x


X = _special(2, 3, 6, 6)
V = _special(4, 9, seed=1)

CASES = Cases(opset=18)
CASES.add("relu", "Relu", {"x": X}, oracle="ort")
CASES.add("leaky", "LeakyRelu", {"x": X}, {"alpha": 0.1}, oracle="ort")
CASES.add("maxpool", "MaxPool", {"x": X}, {"kernel_shape": [2, 2]}, oracle="ort")
CASES.add("maxpool_pad", "MaxPool", {"x": X}, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, oracle="ort")
CASES.add("globalmaxpool", "GlobalMaxPool", {"x": X}, oracle="ort")
CASES.add("avgpool", "AveragePool", {"x": X}, {"kernel_shape": [2, 2]}, oracle="ort")
for op in ("ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceProd"):
    CASES.add(op.lower(), op, {"x": V, "axes": np.array([1], np.int64)}, init=("axes",), oracle="ort")
CASES.add("max", "Max", {"a": V, "b": _special(4, 9, seed=2)}, oracle="ort")
CASES.add("min", "Min", {"a": V, "b": _special(4, 9, seed=2)}, oracle="ort")
CASES.add("clip", "Clip", {"x": V, "lo": np.array(-0.5, np.float32), "hi": np.array(0.5, np.float32)},
          init=("lo", "hi"), oracle="ort")
CASES.add("argmax", "ArgMax", {"x": V}, {"axis": 1}, oracle="ort")
CASES.add("argmin", "ArgMin", {"x": V}, {"axis": 1}, oracle="ort")
CASES.add("topk", "TopK", {"x": V, "k": np.array([3], np.int64)}, init=("k",), n_outputs=2, oracle="ort")
CASES.add("topk_smallest", "TopK", {"x": V, "k": np.array([4], np.int64)}, {"largest": 0}, init=("k",), n_outputs=2,
          oracle="ort")
CASES.add("topk_int", "TopK", {"x": np.array([[3, 1, 3, -2, 7]], np.int64), "k": np.array([3], np.int64)},
          init=("k",), n_outputs=2, oracle="ort")
CASES.add("softmax", "Softmax", {"x": V}, oracle="ort")
CASES.add("sigmoid", "Sigmoid", {"x": V}, oracle="ort")
CASES.add("conv", "Conv", {"x": X, "w": rand(8, 3, 3, 3, seed=3)}, init=("w",), oracle="ort")


def _conv_relu():
    """Conv followed by Relu: fused into the convolution kernel's vector epilogue."""
    import onnx
    from onnx import helper
    m = CASES[-1].model
    g = m.graph
    g.node[0].output[0] = "c"
    g.node.append(helper.make_node("Relu", ["c"], ["y0"]))
    return onnx.load_from_string(m.SerializeToString())


CASES.add("conv_relu", "Conv", {"x": X, "w": rand(8, 3, 3, 3, seed=3)}, init=("w",), oracle="ort")
CASES[-1].model = _conv_relu()


def _window_has_nan(c, x):
    """Where the window or axis of a max/min case holds a NaN: the max of the NaN mask (through onnxruntime for
    pooling windows, numpy for axes)."""
    mask = np.isnan(x).astype(np.float32)
    if c.id.startswith("maxpool"):
        return ort(c.model, {"x": mask})[0] > 0
    if c.id == "globalmaxpool":
        return mask.max(axis=(2, 3), keepdims=True) > 0
    return mask.max(axis=1, keepdims=True) > 0


NAN_WINDOW = {"maxpool": -INF, "maxpool_pad": -INF, "globalmaxpool": -INF, "reducemax": -INF, "reducemin": INF}


def expected(c):
    feeds = c.feeds()
    if c.id not in NAN_WINDOW:
        return ort(c.model, feeds)
    x = feeds["x"]
    out = ort(c.model, {"x": np.where(np.isnan(x), NAN_WINDOW[c.id], x)})[0]
    return [np.where(_window_has_nan(c, x), NAN, out)]


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_nan_like_onnxruntime(c, sessions):
    sess = sessions[c.id]
    if isinstance(sess, Exception):
        raise sess
    got = sess.run(None, c.feeds())
    exp = expected(c)
    assert len(got) == len(exp)
    for g, e in zip(got, exp):
        assert g.shape == e.shape and g.dtype == e.dtype, c.id
        if g.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(g), np.isnan(e), err_msg=f"{c.id}: NaN in other places")
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=c.id)
