"""Intra-op threads (InferenceSession(..., intra_op_num_threads=n), PYSOFIE_NUM_THREADS, Session::set_num_threads):
results with 1, 2 and 3 threads against onnxruntime and against each other, on models that reach every
parallel kernel (convolution bands and channel groups, Winograd, the row kernel, depthwise, packed ConvTranspose,
packed matrix products, softmax / layer norm rows, large elementwise loops) and on whole models (rootbench
convolution models, a ResNet-18, tiny transformers); the thread count option; one session used from several
Python threads.

Each model is compiled once (one shared library); sessions with other thread counts reuse that library."""
import os
import sys
import threading
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper

from pysofie.session import InferenceSession, resolve_threads
from tests.test_fusion import graph_model
from tests.util import ROOTBENCH, assert_close, ort, rand

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
THREADS = (2, 3)

MODELS = {}  # id -> (model, feeds, rtol, atol)


def add(id_, model, feeds, rtol=1e-4, atol=1e-4):
    MODELS[id_] = (model, feeds, rtol, atol)


def conv(xs, ws, attrs, act=None, seed=0):
    x = rand(*xs, seed=seed)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if act else "y"], **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["c"], ["y"]))
    return graph_model(nodes, {"x": x}, {"w": rand(*ws, seed=seed + 1) * 0.3, "b": rand(ws[0], seed=seed + 2)},
                       ["y"]), {"x": x}


# indirect kernel: many bands; few bands and many channel blocks (channel groups per band); Winograd (3x3)
add("conv-bands", *conv((1, 16, 40, 40), (32, 16, 3, 3), {"pads": [1, 1, 1, 1], "strides": [1, 2]}, "Relu"))
add("conv-channels", *conv((2, 64, 7, 7), (200, 64, 3, 3), {"pads": [1, 1, 1, 1]}))
add("conv-winograd", *conv((2, 32, 30, 29), (48, 32, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", seed=3))
# Winograd one tile at a time (narrow output, 256 channels), tiles of both images in one block
add("conv-winograd-tiles", *conv((2, 256, 5, 5), (256, 256, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", seed=8))
add("conv-rows-plane", *conv((1, 6, 50, 50), (3, 6, 5, 5), {"pads": [2, 2, 2, 2]}, seed=4))
add("conv-rows-strided", *conv((1, 6, 50, 50), (4, 6, 3, 3), {"strides": [2, 1]}, "Relu", seed=5))
add("conv-depthwise", *conv((2, 24, 30, 30), (24, 1, 7, 7), {"pads": [3, 3, 3, 3], "group": 24}, seed=6))
x = rand(1, 8, 12, 12, seed=7)
add("convtranspose", graph_model([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2],
                                                   pads=[1, 1, 1, 1])], {"x": x},
                                 {"w": rand(8, 20, 4, 4, seed=8), "b": rand(20, seed=9)}, ["y"]), {"x": x})
# packed products: rows x column blocks; few rows and many columns; bias + GELU
x = rand(3, 100, 64, seed=10)
nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
add("matmul-bias", graph_model(nodes, {"x": x}, {"w": rand(64, 330, seed=11), "b": rand(330, seed=12)}, ["y"]),
    {"x": x})
x = rand(5, 128, seed=13)
add("gemm-wide", graph_model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], {"x": x},
                             {"w": rand(2000, 128, seed=14), "b": rand(2000, seed=15)}, ["y"]), {"x": x})
# rows kernels and large elementwise loops
x = rand(4, 64, 300, seed=16) * 3
add("softmax", graph_model([helper.make_node("Softmax", ["x"], ["y"])], {"x": x}, {}, ["y"]), {"x": x})
add("layernorm", graph_model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"])], {"x": x},
                             {"s": rand(300, seed=17), "b": rand(300, seed=18)}, ["y"]), {"x": x})
y2 = rand(4, 64, 300, seed=19)
add("elementwise", graph_model([helper.make_node("Mul", ["x", "z"], ["m"]), helper.make_node("Sigmoid", ["m"], ["y"])],
                               {"x": x, "z": y2}, {}, ["y"]), {"x": x, "z": y2})

for name in ("Conv_d100_L14_B1", "ConvTModel_G4", "Conv3d_d32_L4_B1"):
    path = os.path.join(ROOTBENCH, name + ".onnx")
    if os.path.exists(path):
        m = onnx.load(path)
        init = {i.name for i in m.graph.initializer}
        feeds = {}
        for inp in m.graph.input:
            if inp.name not in init:
                shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
                feeds[inp.name] = rand(*shape, seed=20)
        add(name, m, feeds, 1e-4, 1e-4)


def _bench_module(name):
    sys.path.insert(0, BENCH)
    try:
        return __import__(name)
    finally:
        sys.path.remove(BENCH)


@pytest.fixture(scope="module")
def sessions():
    """{id: (model, feeds, rtol, atol, {threads: session})}, every model compiled once."""
    from pysofie.build.batch import compile_many
    models = dict(MODELS)
    resnet = _bench_module("resnet").resnet18(batch=2, width=16)
    models["resnet18"] = (resnet, {resnet.graph.input[0].name: rand(2, 3, 224, 224, seed=21)}, 1e-3, 1e-3)
    try:
        import torch  # noqa: F401
        tm = _bench_module("transformer_models")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n in ("gpt2", "convnext"):
                models[f"tiny-{n}"] = (tm.build(n, tiny=True), tm.TINY[n].feeds(), 1e-4, 1e-4)
    except ImportError:
        pass
    ids = list(models)
    compiled = compile_many([models[i][0] for i in ids])
    out = {}
    for i, s in zip(ids, compiled):
        if isinstance(s, Exception):
            out[i] = s
            continue
        lib = s._native.lib._name
        per = {1: s}
        for n in THREADS:
            per[n] = InferenceSession(None, _generated=s._gm, _library=lib, intra_op_num_threads=n)
        out[i] = models[i] + (per,)
    return out


def test_every_model_compiled(sessions):
    bad = {k: v for k, v in sessions.items() if isinstance(v, Exception)}
    assert not bad, bad


@pytest.mark.parametrize("case", list(MODELS) + ["resnet18", "tiny-gpt2", "tiny-convnext"])
def test_thread_counts(case, sessions):
    if case not in sessions:
        pytest.skip(f"{case} not available here")
    model, feeds, rtol, atol, per = sessions[case]
    expected = ort(model, feeds)
    one = per[1].run(None, feeds)
    assert per[1].intra_op_num_threads == 1
    assert_close(one, expected, rtol, atol, what=f"{case}, 1 thread")
    for n in THREADS:
        assert per[n].intra_op_num_threads == n
        got = per[n].run(None, feeds)
        assert_close(got, expected, rtol, atol, what=f"{case}, {n} threads")
        # the kernels split the work, never a sum: the same numbers as with one thread (up to the BLAS)
        assert_close(got, one, 1e-6, 1e-6, what=f"{case}, {n} threads against 1")
        got2 = per[n].run(None, feeds)  # the pool is reused, the results do not change
        assert_close(got2, got, 0, 0, what=f"{case}, {n} threads, second run")


def test_shared_session_from_python_threads(sessions):
    """One 2-thread session called from 4 Python threads at once: calls are serialized, results right."""
    model, feeds, rtol, atol, per = sessions["conv-winograd"]
    sess = per[2]
    expected = sess.run(None, feeds)[0]
    errors = []

    def work():
        try:
            for _ in range(5):
                np.testing.assert_array_equal(sess.run(None, feeds)[0], expected)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]


def test_thread_count_option(monkeypatch):
    monkeypatch.delenv("PYSOFIE_NUM_THREADS", raising=False)
    assert resolve_threads(None) == 1
    assert resolve_threads(3) == 3
    assert resolve_threads(0) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("PYSOFIE_NUM_THREADS", "4")
    assert resolve_threads(None) == 4
    assert resolve_threads(2) == 2  # the keyword wins
    monkeypatch.setenv("PYSOFIE_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="PYSOFIE_NUM_THREADS"):
        resolve_threads(None)
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="intra_op_num_threads"):
            resolve_threads(bad)


def test_env_threads_reach_the_session(monkeypatch, sessions):
    model, feeds, rtol, atol, per = sessions["softmax"]
    monkeypatch.setenv("PYSOFIE_NUM_THREADS", "2")
    s = InferenceSession(None, _generated=per[1]._gm, _library=per[1]._native.lib._name)
    assert s.intra_op_num_threads == 2
    assert_close(s.run(None, feeds), per[1].run(None, feeds), 0, 0, what="PYSOFIE_NUM_THREADS=2")


def test_cpp_session_set_num_threads(tmp_path):
    """The C++ option: a program built with `pysofie config` flags (-Wall -Wextra -Werror) runs a conv + GELU
    dense model with 1 and 3 threads (set_num_threads, num_threads) and gets the same outputs."""
    import subprocess

    import pysofie
    from pysofie.build.blas import find_blas
    from pysofie.build.compiler import find_cxx
    x = rand(2, 6, 20, 20, seed=30)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("MatMul", ["f", "d"], ["y"])]
    m = graph_model(nodes, {"x": x}, {"w": rand(40, 6, 3, 3, seed=31), "b": rand(40, seed=32),
                                      "d": rand(16000, 24, seed=33) * 0.05}, ["y"])
    paths = pysofie.emit(m, str(tmp_path), name="tnet", weights="embed")
    main = tmp_path / "main.cpp"
    main.write_text(
        f'#include "{paths["header"]}"\n#include <cstdio>\n#include <vector>\n'
        f'int main() {{\n  {paths["namespace"]}::Session s;\n'
        '  std::vector<float> x(2 * 6 * 20 * 20);\n'
        '  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 17) * 0.1f - 0.8f;\n'
        '  const std::vector<float> one = s.infer(x.data());\n'
        '  s.set_num_threads(3);\n'
        '  if (s.num_threads() != 3) return 2;\n'
        '  for (int r = 0; r < 3; ++r) { if (s.infer(x.data()) != one) return 1; }\n'
        '  s.set_num_threads(1);\n'
        '  return s.infer(x.data()) == one && s.num_threads() == 1 ? 0 : 3;\n}\n')
    exe = tmp_path / "tnet"
    blas = find_blas()
    r = subprocess.run(find_cxx().split() + ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-pthread",
                                              *blas.cflags, str(main), "-o", str(exe), *blas.libs],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr}"


def test_bad_thread_count_is_refused_before_compiling(monkeypatch):
    import pysofie.session as ps

    def no_compile(*a, **k):  # pragma: no cover - reached only if the check came too late
        raise AssertionError("compiled before checking intra_op_num_threads")

    monkeypatch.setattr(ps, "generate_code", no_compile)
    with pytest.raises(ValueError, match="intra_op_num_threads"):
        InferenceSession(MODELS["softmax"][0], intra_op_num_threads=-2)
