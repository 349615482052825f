"""CUDA back end without a GPU: every generated .cu compiles (nvcc -c, several models per translation unit),
unsupported operators are listed at once, emit writes .cuh, and without a GPU InferenceSession falls back to the
CPU with a warning (as onnxruntime does)."""
from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pytest

from pysofie.api import check, generate_cuda_code

from ..util import ROOTBENCH, assert_close, ort
from .cases import CASES, EPILOGUE_CASES, chain_model
from .toolchain import need_toolchain



def _rootbench():
    return sorted(glob.glob(os.path.join(ROOTBENCH, "*.onnx")))


# tests that read the rootbench models skip where they are not ($PYSOFIE_ROOTBENCH, ../shared/models/rootbench)
needs_rootbench = pytest.mark.skipif(not os.path.isdir(ROOTBENCH), reason=f"rootbench models not found in {ROOTBENCH}")


def _recurrent():
    """A spread of the recurrent cases of tests/ops/test_recurrent.py: each direction, layout 1, sequence_lens,
    symbolic sizes, clip, both GRU variants, peepholes, input_forget."""
    from ..ops.test_recurrent import BY_ID
    ids = ["RNN-bidirectional-lens-h0", "RNN-act-bidir-mixed", "GRU-lbr0-reverse", "GRU-lbr1-bidirectional-lens",
           "GRU-symbolic-seq-batch", "LSTM-peep-bidirectional-lens", "LSTM-input_forget-reverse",
           "LSTM-peep-layout1", "LSTM-clip", "RNN-symbolic-named-b-s"]
    return [generate_cuda_code(BY_ID[i].model, name=i) for i in ids]


def _groups():
    half = len(CASES) // 2
    return {
        "families_a": lambda: [generate_cuda_code(c.model, name=c.id) for c in CASES[:half]],
        "families_b": lambda: ([generate_cuda_code(c.model, name=c.id) for c in CASES[half:]]
                               + [generate_cuda_code(chain_model(), name="chain")]
                               + [generate_cuda_code(c.model, name=c.id) for c in EPILOGUE_CASES]),
        "rootbench": lambda: [generate_cuda_code(f) for f in _rootbench()],
        "resnet18": lambda: [generate_cuda_code(_resnet18(), name="resnet18")],
        "recurrent": _recurrent,
        "transformers": lambda: [generate_cuda_code(m, name=n) for n, m in transformer_models().items()],
    }


def transformer_models() -> dict:
    """The tiny BERT-, GPT-2-, T5-, ViT-, ConvNeXt- and depthwise-style exports of benchmarks/transformer_models.py
    (torch; skipped without it)."""
    pytest.importorskip("torch")
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import transformer_models as t
    return {n: t.build(n, tiny=True) for n in t.TINY}


def _resnet18():
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from benchmarks.resnet import resnet18
    return resnet18(batch=1)


@pytest.mark.parametrize("group", list(_groups()))
def test_generated_cuda_compiles(group, tmp_path):
    """One translation unit per group (nvcc -c for sm_90, -O1)."""
    need_toolchain()
    if group == "rootbench" and not os.path.isdir(ROOTBENCH):
        pytest.skip(f"rootbench models not found in {ROOTBENCH}")
    from pysofie.build.cuda import compile_check
    models = _groups()[group]()
    assert models
    assert os.path.getsize(compile_check(models, str(tmp_path))) > 0


@needs_rootbench
def test_rootbench_coverage():
    """Every rootbench model (the recurrent ones included) and ResNet-18 has a GPU kernel for each node, and
    `pysofie check --target cuda` says so."""
    from pysofie.cli import main
    assert len(_rootbench()) == 17
    for f in _rootbench():
        assert check(f, target="cuda") == [], f
    assert all(main(["-q", "check", "--target", "cuda", f]) == 0 for f in _rootbench())
    assert check(_resnet18(), target="cuda") == []


def test_check_lists_every_unsupported_node_at_once():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("GRU", ["x", "w", "r"], ["y1"], hidden_size=2),
             helper.make_node("Relu", ["d"], ["y2"]),
             helper.make_node("Gemm", ["d", "d"], ["y3"]),
             helper.make_node("TopK", ["d", "k"], ["y4", "y5"])]
    d = TensorProto.DOUBLE
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", d, [1, 1, 3]),
                                       helper.make_tensor_value_info("d", d, [3, 3])],
                          [helper.make_tensor_value_info(n, t, None) for n, t in
                           [("y1", d), ("y2", d), ("y3", d), ("y4", d), ("y5", TensorProto.INT64)]],
                          [helper.make_tensor("w", d, [1, 6, 3], np.ones(18)),
                           helper.make_tensor("r", d, [1, 6, 2], np.ones(12)),
                           helper.make_tensor("k", TensorProto.INT64, [1], [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    problems = check(m, target="cuda")
    text = "\n".join(problems)
    assert len(problems) == 3, problems
    assert "GRU: element type double" in text and "TopK" in text and "Gemm: element type double" in text
    assert check(m) == []  # the C++ target has them all


@needs_rootbench
def test_emit_cuda_cli(tmp_path):
    from pysofie.cli import main
    f = os.path.join(ROOTBENCH, "Linear_16.onnx")
    assert main(["emit", "--target", "cuda", "--weights", "bin", f, "-o", str(tmp_path)]) == 0
    text = (tmp_path / "Linear_16.cuh").read_text()
    assert "struct Session" in text and "cublasSgemm" in text and "__global__" in text
    assert (tmp_path / "Linear_16.bin").stat().st_size > 0
    assert main(["check", "--target", "cuda", f]) == 0
    import onnx
    from onnx import TensorProto, helper
    topk = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"])], "topk",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5])],
                             [helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
                              helper.make_tensor_value_info("i", TensorProto.INT64, None)],
                             [helper.make_tensor("k", TensorProto.INT64, [1], [2])])
    onnx.save(helper.make_model(topk, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "topk.onnx"))
    assert main(["check", "--target", "cuda", str(tmp_path / "topk.onnx")]) == 1


@needs_rootbench
def test_cuda_provider_falls_back_to_cpu_without_gpu():
    from pysofie import InferenceSession
    from pysofie.build.cuda import gpu_count
    if gpu_count() > 0:
        pytest.skip("a GPU is present: tests/cuda/test_cuda_gpu.py covers this provider")
    f = os.path.join(ROOTBENCH, "Linear_16.onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = InferenceSession(f, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], epilogues=False)
    assert any("falling back to CPUExecutionProvider" in str(w.message) for w in caught)
    assert s.get_providers() == ["CPUExecutionProvider"]
    inp = s.get_inputs()[0]
    x = np.random.default_rng(0).uniform(-1, 1, [d if isinstance(d, int) else 3 for d in inp.shape]).astype(
        np.float32)
    assert_close(s.run(None, {inp.name: x}), ort(f, {inp.name: x}), what="Linear_16 fallback")


@needs_rootbench
def test_library_builds_and_fails_cleanly_without_gpu():
    """The shared library links against cuBLAS; creating a Session without a GPU is a clear error."""
    need_toolchain()
    import ctypes
    from pysofie.backends.cuda.capi import symbol_prefix
    from pysofie.build.cuda import build_cuda_library, gpu_count
    if gpu_count() > 0:
        pytest.skip("a GPU is present")
    gm = generate_cuda_code(os.path.join(ROOTBENCH, "Linear_16.onnx"))
    lib = ctypes.CDLL(build_cuda_library([gm], opt_level=1))
    assert lib.pysofie_cuda_device_count() == 0
    create = getattr(lib, f"{symbol_prefix(gm)}_create")
    create.restype = ctypes.c_void_p
    err = ctypes.create_string_buffer(512)
    assert not create(b"missing.bin", None, err, 512)
    assert err.value  # the CUDA runtime's reason, e.g. no driver / no device


def test_epilogue_table_choices():
    """ops/gemm.py's EPILOGUES decides each product: the cuBLASLt epilogue named in the generated code (with the
    cuBLAS path kept behind it), or the cuBLAS path alone."""
    import re
    for c in EPILOGUE_CASES:
        code = generate_cuda_code(c.model, name=c.id).header.split("namespace detail", 1)[1]
        named = set(re.findall(r"CUBLASLT_EPILOGUE_\w+", code))
        assert named == ({c.epilogue} if c.epilogue else set()), (c.id, named)
        assert "pysofie_cuda::sgemm(blas" in code  # the fallback
        assert code.count("sgemm_epilogue(") == (1 if c.epilogue else 0)


def test_cublaslt_is_found_and_linked():
    """The cuBLAS found (the nvidia-cublas wheel here) ships cublasLt.h and libcublasLt; the library links it."""
    need_toolchain()
    from pysofie.build.cuda import find_cublas, link_flags
    inc, libdir = find_cublas()
    assert os.path.exists(os.path.join(inc, "cublasLt.h"))
    flags = link_flags(libdir)
    assert any("cublasLt" in f for f in flags) and any(f.endswith("cublas.so.13") or f == "-lcublas" for f in flags)
