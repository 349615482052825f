"""InferenceSession's onnxruntime-compatible interface, its two calling paths, threads and the build cache."""
import collections
import concurrent.futures
import gc
import os
import time

import numpy as np
import pytest

import pysofie
from onnx import TensorProto, helper

from pysofie.errors import InvalidInputError, PysofieError
from tests.util import ROOTBENCH, assert_close, ort, rand

MODEL = os.path.join(ROOTBENCH, "Conv2DTranspose_Relu_Sigmoid.onnx")
# tests that read the rootbench models skip where they are not ($PYSOFIE_ROOTBENCH, ../shared/models/rootbench)
needs_rootbench = pytest.mark.skipif(not os.path.isdir(ROOTBENCH), reason=f"rootbench models not found in {ROOTBENCH}")


@needs_rootbench
def test_node_args_like_onnxruntime():
    import onnxruntime
    s = pysofie.InferenceSession(MODEL)
    r = onnxruntime.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    for mine, theirs in ((s.get_inputs(), r.get_inputs()), (s.get_outputs(), r.get_outputs())):
        assert [a.name for a in mine] == [b.name for b in theirs]
        assert [a.type for a in mine] == [b.type for b in theirs]
        assert [len(a.shape) for a in mine] == [len(b.shape) for b in theirs]
        for a, b in zip(mine, theirs):
            assert [d for d in a.shape if isinstance(d, int)] == [d for d in b.shape if isinstance(d, int)]
    assert s.get_providers() == ["CPUExecutionProvider"]


@needs_rootbench
def test_ctypes_path_without_python_headers(monkeypatch):
    monkeypatch.setenv("PYSOFIE_PYTHON_ABI", "0")
    s = pysofie.InferenceSession(MODEL)
    assert s._fast is None  # a library without the C hot path: every call goes through ctypes
    x = {"input_5": rand(3, 15)}
    assert_close(s.run(None, x), ort(MODEL, x))


@needs_rootbench
def test_non_contiguous_and_list_inputs_take_the_checked_path():
    s = pysofie.InferenceSession(MODEL)
    x = rand(15, 4).T  # Fortran order
    assert not x.flags.c_contiguous
    assert_close(s.run(None, {"input_5": x}), ort(MODEL, {"input_5": np.ascontiguousarray(x)}))
    assert_close(s.run(None, {"input_5": x.tolist()}), ort(MODEL, {"input_5": np.ascontiguousarray(x)}))


@needs_rootbench
def test_threads_share_a_session_safely():
    s = pysofie.InferenceSession(MODEL)
    xs = [rand(n % 4 + 1, 15, seed=n) for n in range(16)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda x: s.run(None, {"input_5": x})[0], xs))
    for x, g in zip(xs, got):
        assert_close([g], ort(MODEL, {"input_5": x}))


def test_output_names_select_and_order():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"])]
    g = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = pysofie.InferenceSession(m)
    x = {"x": rand(3)}
    b, a = s.run(["b", "a"], x)
    ea, eb = ort(m, x)
    assert_close([a, b], [ea, eb])


@needs_rootbench
def test_second_construction_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSOFIE_CACHE_DIR", str(tmp_path))
    path = os.path.join(ROOTBENCH, "Linear_16.onnx")
    t0 = time.perf_counter()
    pysofie.InferenceSession(path)
    first = time.perf_counter() - t0
    libs = [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".so")]
    assert len(libs) == 1
    t0 = time.perf_counter()
    pysofie.InferenceSession(path)
    second = time.perf_counter() - t0
    assert [f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".so")] == libs
    assert second < first  # no compiler run the second time (the .so list above proves it; this is a sanity check)


@pytest.mark.parametrize("weights", ["dat", "bin"])
def test_retrained_weights_reuse_the_compiled_code(tmp_path, monkeypatch, weights):
    """Same architecture, other weights: one library, two weight files."""
    from onnx import TensorProto, helper, numpy_helper
    monkeypatch.setenv("PYSOFIE_CACHE_DIR", str(tmp_path))

    def m(w):
        g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
                              [numpy_helper.from_array(w, "w")])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    x = rand(2, 3)
    for seed in (1, 2):
        w = rand(3, 4, seed=seed)
        np.testing.assert_allclose(pysofie.InferenceSession(m(w), weights=weights).run(None, {"x": x})[0], x @ w,
                                   rtol=1e-5)
    assert len([f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".so")]) == 1


# -- the C hot path (run_fast) against the path with full checks ------------------------------------------------
def _model(nodes, inputs, outputs):
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, t, sh) for n, t, sh in inputs],
                          [helper.make_tensor_value_info(n, t, sh) for n, t, sh in outputs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


F = TensorProto.FLOAT
# Three inputs (a dynamic batch N shared by two, one static), two outputs, one with a size polynomial (2N).
DYN = _model([helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Relu", ["s"], ["a"]),
              helper.make_node("Concat", ["x", "y"], ["b"], axis=0)],
             [("x", F, ["N", 3]), ("y", F, ["N", 3]), ("w", F, [3])], [("a", F, ["N", 3]), ("b", F, [None, 3])])


def _dyn_feed(n, seed=0):
    return {"x": rand(n, 3, seed=seed), "y": rand(n, 3, seed=seed + 1000), "w": rand(3, seed=7)}


def _dyn_expected(feed):
    """numpy's answer (exact operations: one float32 add, max, a copy)."""
    return [np.maximum(feed["x"] + feed["w"], np.float32(0)), np.concatenate([feed["x"], feed["y"]])]


@pytest.fixture(scope="module")
def dyn():
    return pysofie.InferenceSession(DYN)


@pytest.fixture(scope="module")
def dyn_ctypes():
    """The same model from a library built without Python's headers (ctypes only)."""
    old = os.environ.get("PYSOFIE_PYTHON_ABI")
    os.environ["PYSOFIE_PYTHON_ABI"] = "0"
    try:
        return pysofie.InferenceSession(DYN)
    finally:
        if old is None:
            del os.environ["PYSOFIE_PYTHON_ABI"]
        else:
            os.environ["PYSOFIE_PYTHON_ABI"] = old


def test_fast_path_agrees_with_checked_path_and_onnxruntime_as_the_batch_grows_and_shrinks(dyn, dyn_ctypes):
    assert dyn._fast is not None and dyn_ctypes._fast is None
    for n in (1, 5, 2, 9, 3, 1, 17, 4):
        feed = _dyn_feed(n, seed=n)
        fast = dyn._fast(feed)
        assert fast is not None, "a plain feed must take the C hot path"
        checked = dyn._run_checked(feed)
        for f, c in zip(fast, checked):  # the same generated code on the same data: identical
            assert f.shape == c.shape and f.dtype == c.dtype
            np.testing.assert_array_equal(f, c)
        for got in (dyn.run(None, feed), dyn_ctypes.run(None, feed)):
            assert [o.shape for o in got] == [(n, 3), (2 * n, 3)]
            assert_close(got, ort(DYN, feed), what=f"N={n}")
            assert_close(got, _dyn_expected(feed), what=f"N={n}")


def test_fast_path_outputs_are_fresh_writable_arrays(dyn):
    feed = _dyn_feed(2)
    a1, b1 = dyn.run(None, feed)
    a2, b2 = dyn.run(None, feed)
    assert a1 is not a2 and not np.shares_memory(a1, a2) and not np.shares_memory(b1, b2)
    assert all(type(o) is np.ndarray and o.flags.c_contiguous and o.flags.writeable for o in (a1, b1))
    a1[:] = 99  # the caller owns them: changing one changes nothing else
    assert_close([a2], [_dyn_expected(feed)[0]])


def test_fast_path_output_names_select_and_order(dyn):
    feed = _dyn_feed(3)
    a, b = _dyn_expected(feed)
    assert_close(dyn.run(["b"], feed), [b])
    assert_close(dyn.run(["b", "a"], feed), [b, a])
    assert_close(dyn.run(["a", "a"], feed), [a, a])
    assert_close(dyn.run([], feed), [a, b])  # an empty list asks for every output, as in onnxruntime
    with pytest.raises(InvalidInputError, match=r"model '.*' has no output 'zzz' \(outputs: a, b\)"):
        dyn.run(["a", "zzz"], feed)


def test_run_fast_declines_what_it_does_not_handle(dyn):
    """run_fast returns None (no exception) for anything but the plain case: Python then checks everything."""
    good = _dyn_feed(2)
    unaligned = np.frombuffer(b"\0" + rand(2, 3).tobytes(), dtype=np.float32, offset=1, count=6).reshape(2, 3)
    assert not unaligned.flags.aligned
    declined = [
        [1, 2],                                                    # not a dict
        collections.OrderedDict(good),                             # a dict subclass
        {k: v for k, v in good.items() if k != "y"},              # missing input
        dict(good, z=rand(2, 3)),                                  # extra input
        {"x": good["x"], "y": good["y"], "zz": good["w"]},         # right count, unknown name
        dict(good, x=good["x"].astype(np.float64)),                # dtype
        dict(good, x=good["x"].astype(">f4")),                     # byte order
        dict(good, x=np.asfortranarray(rand(3, 2).T)),             # not C-contiguous
        dict(good, x=unaligned),                                   # not aligned
        dict(good, x=good["x"].tolist()),                          # a list
        dict(good, x=good["x"].view(np.recarray)),                 # an ndarray subclass
        dict(good, w=rand(1, 3)),                                  # rank
        dict(good, w=rand(4)),                                     # static dim
        dict(good, y=rand(3, 3)),                                  # N disagrees
        {"x": rand(0, 3), "y": rand(0, 3), "w": good["w"]},        # N = 0
        {1: good["x"], "y": good["y"], "w": good["w"]},            # a key that is no str
    ]
    for k, feed in enumerate(declined):
        assert dyn._fast(feed) is None, f"case {k}"
    assert dyn._fast(good) is not None


def test_unusual_inputs_are_converted_by_the_checked_path(dyn):
    feed = _dyn_feed(2)
    expected = _dyn_expected(feed)
    unaligned = np.frombuffer(b"\0" + feed["x"].tobytes(), dtype=np.float32, offset=1, count=6).reshape(2, 3)
    fortran = np.asfortranarray(feed["x"])
    readonly = feed["x"].copy()
    readonly.flags.writeable = False
    for x in (unaligned, fortran, feed["x"].tolist(), feed["x"].astype(np.float64).tolist(), readonly,
              feed["x"].view(np.recarray).view(np.ndarray), feed["x"].view(type("Sub", (np.ndarray,), {}))):
        assert_close(dyn.run(None, dict(feed, x=x)), expected)
    assert_close(dyn.run(None, collections.OrderedDict(feed)), expected)


@pytest.mark.parametrize("path", ["fast", "ctypes"])
def test_bad_inputs_give_the_same_clear_errors_on_both_paths(dyn, dyn_ctypes, path):
    s = dyn if path == "fast" else dyn_ctypes
    good = _dyn_feed(2)
    cases = [
        ({k: v for k, v in good.items() if k != "y"}, r"missing input\(s\) \['y'\] \(expected: \['x', 'y', 'w'\]\)"),
        (dict(good, z=rand(2, 3)), r"unknown input\(s\) \['z'\]"),
        (dict(good, x=good["x"].astype(np.float64)), r"input 'x' must have dtype float32, got float64"),
        (dict(good, x=good["x"].astype(">f4")), r"input 'x' must have dtype float32, got >f4"),
        (dict(good, w=rand(1, 3)), r"input 'w' must have rank 1 \(shape \[3\]\), got shape \[1, 3\]"),
        (dict(good, w=rand(4)), r"input 'w' must have shape \[3\], got \[4\]"),
        (dict(good, y=rand(3, 3)), r"input 'y' axis 0 is 'N'=2 from another input, got 3"),
        ([good["x"]], r"inputs must be a dict"),
    ]
    for feed, msg in cases:
        with pytest.raises(InvalidInputError, match=r"model '[^']+': " + msg):
            s.run(None, feed)
    assert_close(s.run(None, good), _dyn_expected(good))  # and the session still works
    empty = {"x": rand(0, 3), "y": rand(0, 3), "w": good["w"]}  # a zero-size batch is a valid input
    outs = s.run(None, empty)
    assert [o.shape for o in outs] == [(0, 3), (0, 3)]
    assert_close(s.run(None, good), _dyn_expected(good))


def test_errors_of_the_generated_code_are_raised_on_both_paths(monkeypatch):
    """A C++ exception inside infer (Gather's index check) becomes a PysofieError naming the model."""
    m = _model([helper.make_node("Gather", ["d", "i"], ["y"], axis=0)],
               [("d", F, [5]), ("i", TensorProto.INT64, ["K"])], [("y", F, ["K"])])
    s = pysofie.InferenceSession(m, name="gatherer")
    monkeypatch.setenv("PYSOFIE_PYTHON_ABI", "0")
    plain = pysofie.InferenceSession(m, name="gatherer")
    assert s._fast is not None and plain._fast is None
    d = rand(5)
    for sess in (s, plain):
        with pytest.raises(PysofieError, match="model 'gatherer': Gather: index out of range"):
            sess.run(None, {"d": d, "i": np.array([1, 7], np.int64)})
        feed = {"d": d, "i": np.array([4, -1, 0], np.int64)}
        assert_close(sess.run(None, feed), ort(m, feed))  # the session is usable after the error


def test_other_dtypes_take_the_fast_path():
    """float16 and bool inputs and outputs: the dtypes come from numpy descriptors, not a fixed table."""
    B = TensorProto.BOOL
    m = _model([helper.make_node("Cast", ["h"], ["f"], to=F), helper.make_node("Greater", ["f", "z"], ["p"]),
                helper.make_node("And", ["p", "m"], ["k"]),
                helper.make_node("Cast", ["f"], ["i"], to=TensorProto.INT64)],
               [("h", TensorProto.FLOAT16, ["N"]), ("m", B, ["N"]), ("z", F, [1])],
               [("f", F, ["N"]), ("k", B, ["N"]), ("i", TensorProto.INT64, ["N"])])
    s = pysofie.InferenceSession(m)
    for n in (4, 1, 6):
        feed = {"h": (rand(n, seed=n) * 10).astype(np.float16), "m": np.arange(n) % 3 != 0,
                "z": np.zeros(1, np.float32)}
        assert s._fast(feed) is not None
        assert_close(s.run(None, feed), ort(m, feed))


def test_an_input_no_node_reads_may_have_any_size_on_the_fast_path():
    """CastLike reads only its target's dtype: its size parameter M binds nothing, even an empty tensor passes."""
    m = _model([helper.make_node("CastLike", ["x", "t"], ["y"])],
               [("x", F, ["N"]), ("t", TensorProto.INT32, ["M"])], [("y", TensorProto.INT32, ["N"])])
    s = pysofie.InferenceSession(m)
    x = np.array([1.0, -2.0, 3.5], np.float32)
    for t in (np.zeros(0, np.int32), np.zeros(7, np.int32)):
        feed = {"x": x, "t": t}
        assert s._fast(feed) is not None
        assert_close(s.run(None, feed), ort(m, feed))


def test_run_fast_keeps_the_session_alive_on_its_own(dyn):
    """run_fast owns the C++ session: it stays valid after the InferenceSession is gone."""
    s = pysofie.InferenceSession(DYN)
    fast = s._fast
    del s
    gc.collect()
    feed = _dyn_feed(4)
    assert_close(fast(feed), _dyn_expected(feed))


@pytest.mark.parametrize("session", ["dyn", "dyn_ctypes"])
def test_threads_on_one_session_mixing_batch_sizes_and_both_paths(session, request):
    """Runs on one session are serialized in C (its work buffers are shared); the GIL is released meanwhile.
    Every third call takes the checked path (a Fortran-ordered input), the others the hot path."""
    s = request.getfixturevalue(session)
    rng = np.random.default_rng(5)
    jobs = []
    for k in range(240):
        n = int(rng.integers(1, 40))
        feed = _dyn_feed(n, seed=k)
        if k % 3 == 0:
            feed["x"] = np.asfortranarray(feed["x"])
        jobs.append(feed)

    def one(feed):
        return s.run(None, feed)

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        got = list(ex.map(one, jobs))
    for k, (feed, g) in enumerate(zip(jobs, got)):
        assert_close(g, _dyn_expected({n: np.ascontiguousarray(v) for n, v in feed.items()}), what=f"job {k}")


@needs_rootbench
def test_models_compiled_together_each_have_a_fast_path():
    from pysofie.build.batch import compile_many
    sessions = compile_many([DYN, os.path.join(ROOTBENCH, "Linear_16.onnx")])
    assert all(not isinstance(x, Exception) and x._fast is not None for x in sessions)
    feed = _dyn_feed(3)
    assert_close(sessions[0].run(None, feed), _dyn_expected(feed))
    x = {"input.1": rand(16, 100)}
    assert_close(sessions[1].run(None, x), ort(os.path.join(ROOTBENCH, "Linear_16.onnx"), x))
