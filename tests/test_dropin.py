"""InferenceSession as a drop-in for onnxruntime's: every call side by side with onnxruntime's own behaviour."""
import json
import logging
import os
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pysofie
from pysofie.errors import InvalidInputError

ort = pytest.importorskip("onnxruntime")

F = TensorProto.FLOAT


def _model():
    """x[N,3] -> a = Relu(x @ W + w), b = Sigmoid(x); the bias w is an initializer also listed as a graph input
    (onnxruntime calls that an overridable initializer); metadata in every field ModelMetadata reports."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, 3)).astype(np.float32)
    w = rng.standard_normal(3).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "w"], ["s"]),
             helper.make_node("Relu", ["s"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"])]
    g = helper.make_graph(nodes, "drop_in", [helper.make_tensor_value_info("x", F, ["N", 3]),
                                             helper.make_tensor_value_info("w", F, [3])],
                          [helper.make_tensor_value_info("a", F, ["N", 3]), helper.make_tensor_value_info("b", F, ["N", 3])],
                          [numpy_helper.from_array(W, "W"), numpy_helper.from_array(w, "w")], doc_string="the graph")
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests", domain="ai.test",
                          model_version=7, doc_string="the model")
    m.ir_version = 8
    helper.set_model_props(m, {"author": "pysofie", "purpose": "drop-in"})
    return m


MODEL = _model()
X = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    r = ort.InferenceSession(MODEL.SerializeToString(), providers=["CPUExecutionProvider"])
    return pysofie.InferenceSession(MODEL), r


def _close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_run_with_empty_output_names_returns_every_output(pair):
    s, r = pair
    _close(s.run([], {"x": X}), r.run([], {"x": X}))
    _close(s.run(None, {"x": X}), r.run(None, {"x": X}))
    _close(s.run(("b",), {"x": X}), r.run(("b",), {"x": X}))


def test_output_names_errors_as_onnxruntime(pair):
    s, r = pair
    for sess in (s, r):  # a str is not a list of names: TypeError from both, not a run over its characters
        with pytest.raises(TypeError):
            sess.run("a", {"x": X})
    with pytest.raises(Exception, match="zz"):
        r.run(["zz"], {"x": X})
    with pytest.raises(InvalidInputError, match="no output 'zz'"):
        s.run(["zz"], {"x": X})


def test_modelmeta_fields_as_onnxruntime(pair):
    s, r = pair
    mine, theirs = s.get_modelmeta(), r.get_modelmeta()
    for attr in ("producer_name", "graph_name", "graph_description", "domain", "description",
                 "custom_metadata_map", "version"):
        assert getattr(mine, attr) == getattr(theirs, attr), attr
    assert mine.custom_metadata_map == {"author": "pysofie", "purpose": "drop-in"}


def test_modelmeta_version_when_the_model_has_none():
    m = _model()
    m.ClearField("model_version")
    r = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    from pysofie.frontends.onnx import model_metadata
    assert model_metadata(m)["version"] == r.get_modelmeta().version


def test_overridable_initializers(pair):
    s, r = pair
    mine, theirs = s.get_overridable_initializers(), r.get_overridable_initializers()
    assert [(a.name, a.type, a.shape) for a in mine] == [(a.name, a.type, a.shape) for a in theirs] \
        == [("w", "tensor(float)", [3])]
    # onnxruntime runs with a fed value; pysofie compiled it as a constant and says so instead of ignoring it
    with pytest.raises(InvalidInputError, match="'w'.*constants"):
        s.run(None, {"x": X, "w": np.zeros(3, np.float32)})


def test_providers_cuda_request_warns_and_falls_back_to_cpu(pair):
    s, _ = pair
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: it would not fall back")
    asked = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    sessions = []
    for make in (lambda: ort.InferenceSession(MODEL.SerializeToString(), providers=asked),
                 lambda: pysofie.InferenceSession(MODEL, providers=asked)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            sessions.append(make())
        assert any("CUDAExecutionProvider" in str(x.message) for x in w)
    r, mine = sessions
    assert mine.get_providers() == r.get_providers() == ["CPUExecutionProvider"]
    assert mine.get_provider_options() == r.get_provider_options()
    _close(mine.run(None, {"x": X}), r.run(None, {"x": X}))
    # options for the CPU provider: accepted by both, reported as onnxruntime reports them
    opts = [("CPUExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"})]
    assert (pysofie.InferenceSession(MODEL, providers=opts).get_provider_options()
            == ort.InferenceSession(MODEL.SerializeToString(), providers=opts).get_provider_options())
    for sess in (s, pair[1]):
        with pytest.raises(ValueError):
            sess.set_providers([1])
        with pytest.raises(ValueError):
            sess.set_providers(["CPUExecutionProvider"], [{}, {}])
        sess.set_providers(["CPUExecutionProvider"])
    assert s.get_providers() == pair[1].get_providers()


def test_onnxruntime_session_options_are_honored(caplog):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 0
    assert logging.getLogger("pysofie").getEffectiveLevel() == logging.WARNING  # Python's default
    s = pysofie.InferenceSession(MODEL, so)
    got = s.get_session_options()
    assert got.intra_op_num_threads == 3 and s.intra_op_num_threads == 3
    assert got.graph_optimization_level == pysofie.GraphOptimizationLevel.ORT_DISABLE_ALL
    # no graph optimization: MatMul, Add and Relu stay three nodes (the default fuses them into one)
    assert sorted(n.op_type for n in s._graph.nodes) == ["Add", "MatMul", "Relu", "Sigmoid"]
    assert len(pysofie.InferenceSession(MODEL)._graph.nodes) < 4
    # log_severity_level 0 (verbose): generation and compilation are logged with their timings; without it the
    # same construction logs nothing below WARNING, and the logger's level is restored afterwards
    msgs = [r.getMessage() for r in caplog.records if r.name == "pysofie"]
    assert any("generated" in m for m in msgs) and any("session ready in" in m for m in msgs)
    assert logging.getLogger("pysofie").level == logging.NOTSET
    caplog.clear()
    pysofie.InferenceSession(MODEL, ort.SessionOptions())
    assert not [r for r in caplog.records if r.name == "pysofie" and r.levelno < logging.WARNING]
    r = ort.InferenceSession(MODEL.SerializeToString(), so, providers=["CPUExecutionProvider"])
    _close(s.run(None, {"x": X}), r.run(None, {"x": X}))


def test_pysofie_session_options_defaults_match_onnxruntime():
    mine, theirs = pysofie.SessionOptions(), ort.SessionOptions()
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level", "log_verbosity_level",
                 "enable_profiling", "profile_file_prefix", "logid", "optimized_model_filepath"):
        assert getattr(mine, attr) == getattr(theirs, attr), attr
    assert int(mine.graph_optimization_level) == int(theirs.graph_optimization_level)
    mine.add_session_config_entry("k", "v")
    assert mine.get_session_config_entry("k") == "v"


def test_io_binding_writes_outputs_in_place(pair):
    s, r = pair
    results = []
    for sess in (s, r):
        x = np.zeros((4, 3), np.float32)
        out_b = np.full((4, 3), -7, np.float32)
        out_a = np.full((4, 3), -7, np.float32)
        b = sess.io_binding()
        b.bind_cpu_input("x", x)
        b.bind_output("b", "cpu", 0, np.float32, [4, 3], out_b.ctypes.data)  # caller memory, by address
        ortvalue = ort.OrtValue if sess is r else pysofie.OrtValue
        b.bind_ortvalue_output("a", ortvalue.ortvalue_from_numpy(out_a))  # caller memory, as an OrtValue
        x[...] = X  # the binding reads the array when the run starts
        sess.run_with_iobinding(b)
        copied = b.copy_outputs_to_cpu()  # in the order of binding
        results.append((out_b.copy(), out_a.copy(), copied, [v.numpy().copy() for v in b.get_outputs()]))
    (mb, ma, mc, mo), (tb, ta, tc, to) = results
    _close([mb, ma], [tb, ta])
    _close(mc, tc)
    _close(mo, to)
    _close([mb, ma], r.run(["b", "a"], {"x": X}))


def test_io_binding_input_by_address(pair):
    s, r = pair
    x = np.ascontiguousarray(X[:3])
    got = []
    for sess in (s, r):
        b = sess.io_binding()
        b.bind_input("x", "cpu", 0, np.float32, list(x.shape), x.ctypes.data)
        b.bind_output("b")
        sess.run_with_iobinding(b)
        got.append(b.copy_outputs_to_cpu())
    _close(got[0], got[1])


def test_io_binding_allocated_outputs_and_errors(pair):
    s, r = pair
    for sess in (s, r):
        b = sess.io_binding()
        b.bind_cpu_input("x", X[:2])
        with pytest.raises((RuntimeError, InvalidInputError)):  # no output bound: both refuse to run
            sess.run_with_iobinding(b)
        b.bind_output("a")
        sess.run_with_iobinding(b)
        _close(b.copy_outputs_to_cpu(), r.run(["a"], {"x": X[:2]}))
        with pytest.raises((RuntimeError, InvalidInputError)):
            b.bind_cpu_input("zz", X)
    b = s.io_binding()
    b.bind_cpu_input("x", X)
    wrong = np.empty((5, 3), np.float32)
    b.bind_output("a", "cpu", 0, np.float32, [5, 3], wrong.ctypes.data)
    with pytest.raises(InvalidInputError, match="'a' is float32 \\[4, 3\\]"):
        s.run_with_iobinding(b)
    with pytest.raises(InvalidInputError, match="device 'cuda'"):
        b.bind_output("a", "cuda")


def test_run_with_ort_values(pair):
    s, r = pair
    mine = s.run_with_ort_values(["b"], {"x": pysofie.OrtValue.ortvalue_from_numpy(X)})
    theirs = r.run_with_ort_values(["b"], {"x": ort.OrtValue.ortvalue_from_numpy(X)})
    _close([v.numpy() for v in mine], [v.numpy() for v in theirs])
    for a, b in zip(mine, theirs):
        assert (a.shape(), a.data_type(), a.element_type(), a.device_name()) == \
               (b.shape(), b.data_type(), b.element_type(), b.device_name())
    assert len(s.run_with_ort_values(None, {"x": pysofie.OrtValue.ortvalue_from_numpy(X)})) == 2
    v = pysofie.OrtValue.ortvalue_from_shape_and_type([2, 3], TensorProto.INT64)
    assert v.numpy().dtype == np.int64 and v.data_type() == "tensor(int64)"
    with pytest.raises(TypeError, match="not an OrtValue"):
        s.run_with_ort_values(None, {"x": X})


def test_run_async(pair):
    import threading
    s, r = pair
    got = {}
    for key, sess in (("mine", s), ("theirs", r)):
        done = threading.Event()

        def callback(outs, user_data, err, key=key, done=done):
            got[key] = (outs, user_data, err)
            done.set()
        sess.run_async(["b", "a"], {"x": X}, callback, key)
        assert done.wait(60)
    assert got["mine"][1:] == ("mine", "") and got["theirs"][1] == "theirs"
    _close(got["mine"][0], got["theirs"][0])
    failed = threading.Event()
    s.run_async(None, {"x": X[:, :2]}, lambda outs, u, err: (got.update(bad=err), failed.set()), None)
    assert failed.wait(60) and "'x'" in got["bad"]


def test_end_profiling(pair, tmp_path, monkeypatch):
    s, r = pair
    assert s.end_profiling() == r.end_profiling() == ""  # profiling off
    monkeypatch.chdir(tmp_path)
    paths = []
    for make in (lambda so: ort.InferenceSession(MODEL.SerializeToString(), so, providers=["CPUExecutionProvider"]),
                 lambda so: pysofie.InferenceSession(MODEL, so)):
        so = (ort if len(paths) == 0 else pysofie).SessionOptions()
        so.enable_profiling = True
        sess = make(so)
        for _ in range(3):
            sess.run(None, {"x": X})
        paths.append(sess.end_profiling())
    for p in paths:
        assert os.path.basename(p).startswith("onnxruntime_profile_") and p.endswith(".json")
        events = json.loads((tmp_path / p).read_text())
        assert all({"name", "ts", "dur", "ph"} <= set(e) for e in events)
    mine = json.loads((tmp_path / paths[1]).read_text())
    assert sum(e["name"] == "model_run" for e in mine) == 3
