"""Numerical GPU tests: every GPU operator family, a small network over several batch sizes (the arena grows),
device-resident inputs and outputs (__cuda_array_interface__), ResNet-18, the rootbench models and the recurrent
layers, against onnxruntime on the CPU. Marked gpu; skipped without a CUDA GPU (and nvcc + cuBLAS)."""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from pysofie.errors import PysofieError

from ..util import ROOTBENCH, assert_close, ort
from .cases import CASES, EPILOGUE_CASES, _dense, chain_model
from .toolchain import need_gpu

pytestmark = pytest.mark.gpu

GPU_RTOL, GPU_ATOL = 1e-4, 1e-4  # float32 on the GPU: other summation orders (cuBLAS, reductions) than the CPU


@pytest.fixture(scope="module")
def sessions():
    need_gpu()
    from pysofie.cuda_session import compile_many_cuda
    models = [c.model for c in CASES] + [chain_model()]
    names = [c.id for c in CASES] + ["chain"]
    return dict(zip(names, compile_many_cuda(models, names, opt_level=1)))


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_family_matches_onnxruntime(c, sessions):
    s = sessions[c.id]
    assert s.get_providers() == ["CUDAExecutionProvider"]
    feeds = c.feeds()
    assert_close(s.run(None, feeds), ort(c.model, feeds), max(c.rtol, GPU_RTOL), max(c.atol, GPU_ATOL), what=c.id)


def test_chain_batches_grow_the_arena(sessions):
    s = sessions["chain"]
    m = chain_model()
    for n in (1, 5, 2, 33):
        x = np.random.default_rng(n).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
        assert_close(s.run(None, {"x": x}), ort(m, {"x": x}), GPU_RTOL, GPU_ATOL, what=f"chain N={n}")


def test_cuda_graphs_match(sessions):
    """infer_graph: captured once per size and set of pointers, replayed; the arena's growth drops the graphs."""
    from pysofie.cuda_session import CudaInferenceSession
    base = sessions["chain"]
    s = CudaInferenceSession(None, _generated=base._gm, _library=base._lib_path, cuda_graphs=True)
    m = chain_model()
    for n in (1, 1, 5, 1, 40, 5):
        x = np.random.default_rng(n).uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
        assert_close(s.run(None, {"x": x}), ort(m, {"x": x}), GPU_RTOL, GPU_ATOL, what=f"chain graphs N={n}")


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch


def test_device_inputs_and_outputs(sessions):
    torch = _torch_cuda()
    s = sessions["chain"]
    x = np.random.default_rng(7).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    expected = ort(chain_model(), {"x": x})
    xd = torch.from_numpy(x).cuda()
    assert_close(s.run(None, {"x": xd}), expected, GPU_RTOL, GPU_ATOL, what="device input")
    yd = torch.empty((4, 10), dtype=torch.float32, device="cuda")
    s.run_device({"x": xd}, {"y": yd})
    assert_close([yd.cpu().numpy()], expected, GPU_RTOL, GPU_ATOL, what="device output")
    with pytest.raises(PysofieError, match="shape"):
        s.run_device({"x": xd}, {"y": torch.empty((3, 10), dtype=torch.float32, device="cuda")})
    with pytest.raises(PysofieError, match="C-contiguous"):
        s.run(None, {"x": xd.transpose(2, 3)})


def test_gather_out_of_range_is_an_error(sessions):
    s = sessions["gather"]
    c = next(c for c in CASES if c.id == "gather")
    feeds = dict(c.feeds())
    feeds["I"] = np.array([[0, 9], [1, 2]], np.int64)
    with pytest.raises(PysofieError, match="out of range"):
        s.run(None, feeds)
    assert_close(s.run(None, c.feeds()), ort(c.model, c.feeds()), what="gather after the error")


def test_provider_selects_cuda():
    need_gpu()
    from pysofie import InferenceSession
    f = os.path.join(ROOTBENCH, "Linear_64.onnx")
    s = InferenceSession(f, providers=["CUDAExecutionProvider"])
    assert s.get_providers() == ["CUDAExecutionProvider"]
    inp = s.get_inputs()[0]
    x = np.random.default_rng(1).uniform(-1, 1, [d if isinstance(d, int) else 3 for d in inp.shape]).astype(
        np.float32)
    assert_close(s.run(None, {inp.name: x}), ort(f, {inp.name: x}), GPU_RTOL, GPU_ATOL, what="Linear_64")


def test_rootbench_and_resnet18():
    need_gpu()
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from benchmarks.resnet import resnet18
    from pysofie.api import check
    from pysofie.cuda_session import compile_many_cuda
    files = sorted(f for f in glob.glob(os.path.join(ROOTBENCH, "*.onnx")) if not check(f, target="cuda"))
    models = files + [resnet18(batch=2)]
    names = [os.path.basename(f)[:-5] for f in files] + ["resnet18"]
    for name, model, s in zip(names, models, compile_many_cuda(models, names, opt_level=1)):
        rng = np.random.default_rng(3)
        feeds = {i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else 2 for d in i.shape]).astype(np.float32)
                 for i in s.get_inputs()}
        src = model if isinstance(model, str) else model
        tol = 1e-3 if name == "resnet18" else GPU_RTOL
        assert_close(s.run(None, feeds), ort(src, feeds), tol, tol, what=name)


REC_GPU = ("-lens", "act-bidir", "lbr", "peep", "input_forget", "batch6", "symbolic-seq", "clip", "layout1",
           "batch1-long", "hidden1")


def test_recurrent_matches_onnxruntime():
    """RNN / GRU / LSTM on the GPU (real blocks of threads meeting at barriers): the float cases of
    tests/ops/test_recurrent.py with sequence_lens, layouts, mixed activations, both GRU variants, peepholes,
    input_forget, clip and symbolic sizes (the emulation runs all of them), built as four libraries at once, with the
    GPU tolerances; a sequence length out of range is reported as an error."""
    need_gpu()
    import concurrent.futures
    from pysofie.cuda_session import compile_many_cuda
    from ..ops.test_recurrent import CASES as REC
    cases = [c for c in REC if c.inputs["X"].dtype == np.float32 and any(k in c.id for k in REC_GPU)]
    assert len(cases) > 40
    chunks = [cases[k::4] for k in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        built = list(ex.map(lambda cs: compile_many_cuda([c.model for c in cs], [c.id for c in cs], opt_level=1),
                            chunks))
    for cs, sessions in zip(chunks, built):
        for c, s in zip(cs, sessions):
            assert_close(s.run(None, c.feeds()), c.expected(), max(c.rtol, GPU_RTOL), max(c.atol, GPU_ATOL),
                         what=c.id)
            if c.id == "LSTM-forward-lens-h0":
                with pytest.raises(PysofieError, match="out of range"):
                    s.run(None, dict(c.feeds(), sequence_lens=np.array([5, 6, 0, 1], np.int32)))


def _epilogue_cases_gpu():
    """The emulated epilogue cases plus sizes where cuBLASLt picks real tensor-core-free FP32 kernels."""
    tanh = ("Gelu", {"approximate": "tanh"})
    return EPILOGUE_CASES + [
        _dense("ep_big_matmul_bias_gelu_tanh", matmul=True, a_shape=(4, 64, 256), n=512, bias_shape=(512,), act=tanh,
               epilogue="CUBLASLT_EPILOGUE_GELU_BIAS"),
        _dense("ep_big_gemm_relu_bias", matmul=False, a_shape=(256, 384), n=200, bias_shape=(200,), trans_b=True,
               act=("Relu", {}), epilogue="CUBLASLT_EPILOGUE_RELU_BIAS"),
        _dense("ep_big_matmul_bias_odd", matmul=True, a_shape=(3, 37, 129), n=67, bias_shape=(67,),
               epilogue="CUBLASLT_EPILOGUE_BIAS"),
    ]


def test_epilogues_match_onnxruntime():
    """Every product of the epilogue cases with cuBLASLt epilogues on and off (and replayed from a CUDA graph),
    against onnxruntime. With them on, a case whose table entry names an epilogue must have run through
    cublasLtMatmul (the session's count), unless cuBLASLt offered no algorithm: that is printed, not hidden."""
    need_gpu()
    from pysofie.cuda_session import CudaInferenceSession, compile_many_cuda
    cases = _epilogue_cases_gpu()
    built = compile_many_cuda([c.model for c in cases], [c.id for c in cases], opt_level=1)
    fell_back = []
    for c, s in zip(cases, built):
        feeds = c.feeds()
        expected = ort(c.model, feeds)
        tol = 1e-3 if c.id.startswith("ep_big") else GPU_RTOL  # K up to 384: float32 sums in another order
        for on in (True, False):
            s.set_epilogues(on)
            done = s.epilogue_products
            assert_close(s.run(None, feeds), expected, tol, tol, what=f"{c.id} epilogues={on}")
            ran = s.epilogue_products - done
            if not on or not c.epilogue:
                assert ran == 0, c.id
            elif ran == 0:
                fell_back.append(c.id)
        g = CudaInferenceSession(None, _generated=s._gm, _library=s._lib_path, cuda_graphs=True, epilogues=True)
        for _ in range(2):
            assert_close(g.run(None, feeds), expected, tol, tol, what=f"{c.id} graph")
    print("cuBLASLt had no algorithm (cuBLAS path taken) for:", fell_back or "none")
    assert len(fell_back) < len([c for c in cases if c.epilogue]), "cuBLASLt epilogues never ran"
