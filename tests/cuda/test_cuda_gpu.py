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


# Every library of this module is compiled at once, in the background, on the first request: nvcc is
# single-threaded and the GPU machine has 16 cores, so the module's wall time is its longest compile, not the sum.
_FUTURES: dict = {}
REC_GPU = ("-lens", "act-bidir", "lbr", "peep", "input_forget", "batch6", "symbolic-seq", "clip", "layout1",
           "batch1-long", "hidden1")


def _groups() -> dict:
    """{group: () -> (models, names)}."""
    def families():
        return [c.model for c in CASES] + [chain_model()], [c.id for c in CASES] + ["chain"]

    def epilogues():
        cases = _epilogue_cases_gpu()
        return [c.model for c in cases], [c.id for c in cases]

    def rootbench(k):
        def f():
            import sys
            sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
            from benchmarks.resnet import resnet18
            from pysofie.api import check
            files = sorted(f for f in glob.glob(os.path.join(ROOTBENCH, "*.onnx")) if not check(f, target="cuda"))
            items = [(f, os.path.basename(f)[:-5]) for f in files] + [(resnet18(batch=2), "resnet18")]
            items = items[k::4]
            return [m for m, _ in items], [n for _, n in items]
        return f

    def recurrent(k):
        def f():
            cases = _recurrent_cases()[k::4]
            return [c.model for c in cases], [c.id for c in cases]
        return f

    def transformers():
        from .test_cuda_compile import transformer_models
        models = transformer_models()
        return list(models.values()), list(models)

    groups = {"families": families, "epilogues": epilogues, "transformers": transformers}
    groups.update({f"rootbench{k}": rootbench(k) for k in range(4)})
    groups.update({f"recurrent{k}": recurrent(k) for k in range(4)})
    return groups


def _recurrent_cases():
    from ..ops.test_recurrent import CASES as REC
    return [c for c in REC if c.inputs["X"].dtype == np.float32 and any(k in c.id for k in REC_GPU)]


def built(group: str) -> dict:
    """{name: session} of a group's library (starting every group's compile on the first call)."""
    need_gpu()
    if not _FUTURES:
        import concurrent.futures
        from pysofie.cuda_session import compile_many_cuda

        def build(make):
            models, names = make()
            return dict(zip(names, compile_many_cuda(models, names, opt_level=1)))
        groups = _groups()
        ex = concurrent.futures.ThreadPoolExecutor(len(groups))
        _FUTURES.update({g: ex.submit(build, make) for g, make in groups.items()})
        ex.shutdown(wait=False)
    return _FUTURES[group].result()


@pytest.fixture(scope="module")
def sessions():
    return built("families")


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
    sessions = {}
    for k in range(4):
        sessions.update(built(f"rootbench{k}"))
    assert "resnet18" in sessions and len(sessions) >= 18
    for name, s in sorted(sessions.items()):
        model = resnet18(batch=2) if name == "resnet18" else os.path.join(ROOTBENCH, name + ".onnx")
        rng = np.random.default_rng(3)
        feeds = {i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else 2 for d in i.shape]).astype(np.float32)
                 for i in s.get_inputs()}
        tol = 1e-3 if name == "resnet18" else GPU_RTOL
        assert_close(s.run(None, feeds), ort(model, feeds), tol, tol, what=name)


def test_recurrent_matches_onnxruntime():
    """RNN / GRU / LSTM on the GPU (real blocks of threads meeting at barriers): the float cases of
    tests/ops/test_recurrent.py with sequence_lens, layouts, mixed activations, both GRU variants, peepholes,
    input_forget, clip and symbolic sizes (the emulation runs all of them), built as four libraries at once, with the
    GPU tolerances; a sequence length out of range is reported as an error."""
    need_gpu()
    cases = _recurrent_cases()
    assert len(cases) > 40
    sessions = {}
    for k in range(4):
        sessions.update(built(f"recurrent{k}"))
    for c in cases:
        s = sessions[c.id]
        assert_close(s.run(None, c.feeds()), c.expected(), max(c.rtol, GPU_RTOL), max(c.atol, GPU_ATOL), what=c.id)
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
    from pysofie.cuda_session import CudaInferenceSession
    cases = _epilogue_cases_gpu()
    sessions = built("epilogues")
    fell_back = []
    for c in cases:
        s = sessions[c.id]
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


def test_transformer_exports():
    """The tiny BERT-, GPT-2-, T5-, ViT-, ConvNeXt- and depthwise-style torch exports, epilogues on and off."""
    need_gpu()
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import transformer_models as t
    from .test_cuda_compile import transformer_models
    models = transformer_models()
    sessions = built("transformers")
    for n, m in models.items():
        feeds = t.TINY[n].feeds()
        expected = ort(m, feeds)
        for on in (True, False):
            sessions[n].set_epilogues(on)
            assert_close(sessions[n].run(None, feeds), expected, 1e-3, 1e-3, what=f"{n} epilogues={on}")
