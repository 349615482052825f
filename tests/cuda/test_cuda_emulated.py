"""The generated CUDA code's logic on the CPU, against onnxruntime: the .cuh of every GPU operator family, a
network over several batch sizes (the arena grows), the rootbench models and ResNet-18 are compiled by the host
C++ compiler against stand-ins for the CUDA runtime and cuBLAS (tests/cuda/emu/: a launch runs the grid-stride
loop with one thread, device memory is host memory, cublasSgemm is cuBLAS's column-major definition written out).

This checks what the generator writes (indexing, im2col, the row-major to column-major mapping of every cuBLAS
call, the Session's arena, weights and host/device copies, the C entry points) without a GPU. It does not check
anything that only a GPU shows (parallel execution, the real libraries, launch configurations): that is
tests/cuda/test_cuda_gpu.py."""
from __future__ import annotations

import glob
import os
import re
import subprocess

import numpy as np
import pytest

from pysofie.api import check, generate_cuda_code

from ..util import ROOTBENCH, assert_close, ort
from .cases import CASES, EPILOGUE_CASES, chain_model

EMU = os.path.join(os.path.dirname(__file__), "emu")
LAUNCH = re.compile(r"(\w+)<<<[^;]*?>>>\(")  # kernel<<<grid, block, 0, stream>>>(args) -> kernel(args)


def _emulated_library(models: list, workdir: str) -> str:
    from pysofie.backends.cuda.capi import wrapper_source
    from pysofie.build.compiler import find_cxx
    for m in models:
        with open(os.path.join(workdir, m.header_file), "w") as f:
            f.write(LAUNCH.sub(r"\1(", m.header))
    src = os.path.join(workdir, "emu_capi.cpp")
    with open(src, "w") as f:
        f.write(wrapper_source(models))
    lib = os.path.join(workdir, "emu.so")
    cmd = find_cxx().split() + ["-std=c++17", "-O2", "-shared", "-fPIC", "-I", EMU, src, "-o", lib]
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return lib


def _sessions(models: list, names: list, workdir: str, with_lib: bool = False):
    from pysofie.cuda_session import CudaInferenceSession
    gms = [generate_cuda_code(m, name=n, namespace=f"pysofie_emu_{k}") for k, (m, n) in
           enumerate(zip(models, names))]
    lib = _emulated_library(gms, workdir)
    out = {}
    for n, gm in zip(names, gms):
        s = CudaInferenceSession.__new__(CudaInferenceSession)
        s._open(gm, lib)  # the emulated library in place of nvcc's
        out[n] = s
    return (out, lib) if with_lib else out


@pytest.fixture(scope="module")
def family_sessions(tmp_path_factory):
    models = [c.model for c in CASES] + [chain_model()]
    names = [c.id for c in CASES] + ["chain"]
    return _sessions(models, names, str(tmp_path_factory.mktemp("emu_families")))


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_family_matches_onnxruntime(c, family_sessions):
    feeds = c.feeds()
    assert_close(family_sessions[c.id].run(None, feeds), ort(c.model, feeds), c.rtol, c.atol, what=c.id)


def test_chain_batches(family_sessions):
    s, m = family_sessions["chain"], chain_model()
    for n in (1, 6, 2, 23):
        x = np.random.default_rng(n).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
        assert_close(s.run(None, {"x": x}), ort(m, {"x": x}), what=f"chain N={n}")


def test_gather_out_of_range(family_sessions):
    from pysofie.errors import PysofieError
    c = next(c for c in CASES if c.id == "gather")
    feeds = dict(c.feeds(), I=np.array([[0, 7], [1, 2]], np.int64))
    with pytest.raises(PysofieError, match="out of range"):
        family_sessions["gather"].run(None, feeds)


# the emulated products are plain loops: these add minutes, not coverage (their Conv 2D / 3D im2col + product
# paths run in Conv_d100_L1_B1, ResNet-18 and the conv2d / conv3d family cases)
HEAVY = {"Conv_d100_L14_B32", "Conv_d100_L14_B1", "Conv3d_d32_L4_B1"}


def test_recurrent_matches_onnxruntime(tmp_path):
    """RNN / GRU / LSTM: every float case of tests/ops/test_recurrent.py (directions, layouts, sequence_lens,
    activations, clip, linear_before_reset, peepholes, input_forget, symbolic sizes), against onnxruntime as there
    (layout 1 through onnxruntime's layout-0 twin), with that module's tolerances."""
    from ..ops.test_recurrent import CASES as REC
    cases = [c for c in REC if c.inputs["X"].dtype == np.float32]
    assert len(cases) > 80
    sessions = _sessions([c.model for c in cases], [c.id for c in cases], str(tmp_path))
    for c in cases:
        assert_close(sessions[c.id].run(None, c.feeds()), c.expected(), c.rtol, c.atol, what=c.id)


def test_recurrent_sequence_lens_out_of_range(tmp_path):
    from pysofie.errors import PysofieError
    from ..ops.test_recurrent import BY_ID
    c = BY_ID["LSTM-forward-lens-h0"]
    s = _sessions([c.model], ["lens"], str(tmp_path))["lens"]
    feeds = dict(c.feeds(), sequence_lens=np.array([5, 6, 0, 1], np.int32))
    with pytest.raises(PysofieError, match="out of range"):
        s.run(None, feeds)


def test_rootbench_and_resnet18(tmp_path):
    """Every rootbench model with GPU kernels and a narrow ResNet-18 (width 8: the same graph, 1/64 of the work)."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from benchmarks.resnet import resnet18
    files = sorted(f for f in glob.glob(os.path.join(ROOTBENCH, "*.onnx"))
                   if os.path.basename(f)[:-5] not in HEAVY and not check(f, target="cuda"))
    models = files + [resnet18(batch=1, width=8)]
    names = [os.path.basename(f)[:-5] for f in files] + ["resnet18"]
    for (name, s), model in zip(_sessions(models, names, str(tmp_path)).items(), models):
        rng = np.random.default_rng(5)
        feeds = {i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else 2 for d in i.shape]).astype(np.float32)
                 for i in s.get_inputs()}
        tol = 1e-3 if name == "resnet18" else 1e-4
        assert_close(s.run(None, feeds), ort(model, feeds), tol, tol, what=name)


def test_device_pointer_path(family_sessions):
    """Inputs and outputs flagged as device pointers are used in place (no staging copies): here host memory."""
    s, m = family_sessions["chain"], chain_model()
    x = np.random.default_rng(9).uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
    y = np.full((3, 10), np.nan, np.float32)
    s._call({"N": 3}, [x.ctypes.data], [1], [y.ctypes.data], [1])
    assert_close([y], ort(m, {"x": x}), what="device pointers")


@pytest.fixture(scope="module")
def epilogue_sessions(tmp_path_factory):
    return _sessions([c.model for c in EPILOGUE_CASES], [c.id for c in EPILOGUE_CASES],
                     str(tmp_path_factory.mktemp("emu_epilogues")), with_lib=True)


@pytest.mark.parametrize("c", EPILOGUE_CASES, ids=[c.id for c in EPILOGUE_CASES])
def test_epilogue_paths_match_onnxruntime(c, epilogue_sessions, monkeypatch):
    """Gemm / MatMul + bias + activation through cuBLASLt's epilogue (emulated with its documented meaning: the
    bias along D's rows, i.e. one value per output column of the row-major product), through cuBLAS + kernel
    with epilogues off, and through the run-time fallback when cuBLASLt offers no algorithm; the stand-in's
    call counter shows which path ran."""
    import ctypes
    sessions, lib = epilogue_sessions
    calls = ctypes.CDLL(lib).pysofie_emu_lt_calls
    calls.restype = ctypes.c_long
    s, feeds = sessions[c.id], c.feeds()
    expected = ort(c.model, feeds)
    assert s.epilogues  # the default
    for on in (True, False):
        s.set_epilogues(on)
        before, done = calls(), s.epilogue_products
        assert_close(s.run(None, feeds), expected, what=f"{c.id} epilogues={on}")
        assert calls() - before == (1 if on and c.epilogue else 0), (c.id, on)
        assert s.epilogue_products - done == calls() - before
    # no cuBLASLt algorithm (plans are made per session and shape: a fresh session sees the variable)
    monkeypatch.setenv("PYSOFIE_EMU_LT_NO_ALGO", "1")
    from pysofie.cuda_session import CudaInferenceSession
    s2 = CudaInferenceSession.__new__(CudaInferenceSession)
    s2._open(s._gm, s._lib_path)
    before = calls()
    assert_close(s2.run(None, feeds), expected, what=f"{c.id} without a cuBLASLt algorithm")
    assert calls() == before and s2.epilogue_products == 0


def test_epilogues_environment_switch(epilogue_sessions, monkeypatch):
    """PYSOFIE_CUDA_EPILOGUES=0 when a Session is made turns the epilogues off (the GPU script's comparison)."""
    from pysofie.cuda_session import CudaInferenceSession
    sessions, _ = epilogue_sessions
    base = sessions["ep_gemm_relu_bias"]
    monkeypatch.setenv("PYSOFIE_CUDA_EPILOGUES", "0")
    s = CudaInferenceSession.__new__(CudaInferenceSession)
    s._open(base._gm, base._lib_path)
    assert not s.epilogues
    monkeypatch.setenv("PYSOFIE_CUDA_EPILOGUES", "1")
    s = CudaInferenceSession.__new__(CudaInferenceSession)
    s._open(base._gm, base._lib_path)
    assert s.epilogues


def test_transformer_exports(tmp_path):
    """The tiny BERT-, GPT-2-, T5-, ViT-, ConvNeXt- and depthwise-style torch exports (attention, Split, LayerNorm,
    products with cuBLASLt bias / ReLU epilogues), against onnxruntime."""
    from .test_cuda_compile import transformer_models
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import transformer_models as t
    models = transformer_models()
    sessions = _sessions(list(models.values()), list(models), str(tmp_path))
    for n, m in models.items():
        feeds = t.TINY[n].feeds()
        assert_close(sessions[n].run(None, feeds), ort(m, feeds), 1e-4, 1e-4, what=n)
    assert sum(s.epilogue_products for s in sessions.values()) >= 15  # the bias / ReLU products took the epilogue
