""".root weight files as SOFIE writes them: written by pysofie (needs ROOT) and read by the generated code (TFile),
and SOFIE's own files read into pysofie with uproot alone. References: onnxruntime on the model with the same
weights, and the default (.bin) session."""
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import pysofie
from pysofie.backends.cpp.weights import read_weights

from ..util import ATOL, RTOL, ort
from .models import features, mlp


def _write_like_sofie(path, model_name, tensors):
    """A weight file laid out as SOFIE's RModel writes one (TFile, directory <model>_weights, one
    std::vector<float|double|int64_t> per tensor written with WriteObjectAny under tensor_<name>)."""
    ROOT = pytest.importorskip("ROOT")
    f = ROOT.TFile.Open(path, "RECREATE")
    d = f.mkdir(f"{model_name}_weights")
    for name, arr in tensors.items():
        ctype = {np.float32: "float", np.float64: "double", np.int64: "int64_t"}[arr.dtype.type]
        vec = ROOT.std.vector[ctype]([x.item() for x in arr.reshape(-1)])
        d.WriteObjectAny(vec, f"std::vector<{ctype}>", f"tensor_{name}")
    f.Close()


def test_emit_root_weights_and_read_them_with_uproot(tmp_path):
    pytest.importorskip("ROOT")
    uproot = pytest.importorskip("uproot")
    m = mlp(name="rootw")
    paths = pysofie.emit(m, str(tmp_path), weights="root")
    assert paths["weights"].endswith("rootw.root")
    with uproot.open(paths["weights"]) as f:
        classes = {k.split(";")[0]: c for k, c in f.classnames().items()}
    assert classes["rootw_weights"] == "TDirectory"
    assert all(c == "vector<float>" for k, c in classes.items() if k.startswith("rootw_weights/tensor_"))
    binp = pysofie.emit(m, str(tmp_path / "bin"), weights="bin")["weights"]
    from_root, from_bin = read_weights(paths["weights"]), read_weights(binp)
    assert from_root.keys() == from_bin.keys()
    for k in from_bin:
        np.testing.assert_array_equal(from_root[k], from_bin[k])
    header = open(paths["header"]).read()
    assert "#include <TFile.h>" in header and '"rootw_weights/"' in header


def test_session_reads_root_weights_with_tfile(tmp_path):
    pytest.importorskip("ROOT")
    m = mlp(name="rootw2")
    sess = pysofie.InferenceSession(m, weights="root")
    assert sess._weight_path.endswith(".root")
    x = features(20)
    got = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, pysofie.InferenceSession(m).run(None, {"x": x})[0])
    np.testing.assert_allclose(got, ort(m, {"x": x})[0], rtol=RTOL, atol=ATOL)
    # the constructor's errors name the file and the tensor
    bad = str(tmp_path / "other.root")
    _write_like_sofie(bad, "rootw2", {"W1_gemmpack": np.zeros(3, np.float32)})
    with pytest.raises(pysofie.PysofieError, match="other.root"):
        pysofie.InferenceSession(m, weights="root", weight_file=bad)


def test_sofie_root_weights_read_with_uproot_alone(tmp_path):
    """A file from SOFIE (initializer names, retrained values) replaces the model's weights; the reading side
    runs with ROOT blocked, so only uproot reads it."""
    m = mlp(name="sofiemodel")
    rng = np.random.default_rng(7)
    retrained = {i.name: (numpy_helper.to_array(i) * 1.5 + rng.standard_normal(numpy_helper.to_array(i).shape)
                          .astype(np.float32) * 0.1).astype(np.float32) for i in m.graph.initializer}
    path = str(tmp_path / "sofiemodel.root")
    _write_like_sofie(path, "sofiemodel", retrained)
    onnx_path = str(tmp_path / "sofiemodel.onnx")
    onnx.save(m, onnx_path)
    x = features(16)
    np.save(tmp_path / "x.npy", x)
    code = f"""
import sys
sys.modules["ROOT"] = None  # no ROOT on this side
import numpy as np, pysofie
s = pysofie.InferenceSession({onnx_path!r}, weight_file={path!r})
np.save({str(tmp_path / 'y.npy')!r}, s.run(None, {{"x": np.load({str(tmp_path / 'x.npy')!r})}})[0])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(tmp_path / "y.npy")
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    for init in m2.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(retrained[init.name], init.name))
    np.testing.assert_allclose(got, ort(m2, {"x": x})[0], rtol=RTOL, atol=ATOL)
    assert not np.allclose(got, ort(m, {"x": x})[0], rtol=RTOL, atol=ATOL)
    # the file read directly
    w = read_weights(path)
    assert sorted(w) == sorted(retrained) and all(np.array_equal(w[k], retrained[k].reshape(-1)) for k in w)


def test_root_weights_errors(tmp_path):
    pytest.importorskip("ROOT")
    m = mlp(name="sofiebad")
    path = str(tmp_path / "bad.root")
    _write_like_sofie(path, "sofiebad", {"W1": np.zeros(5, np.float32)})
    with pytest.raises(pysofie.PysofieError, match="'W1' has 5 values"):
        pysofie.InferenceSession(m, weight_file=path)
    from pysofie.backends.cpp.root_weights import check_root_tensors
    with pytest.raises(pysofie.PysofieError, match="'t' \\(int32\\)"):
        check_root_tensors("m", [("t", np.zeros(2, np.int32))])


def test_config_root_flags():
    pytest.importorskip("ROOT")
    r = subprocess.run([sys.executable, "-m", "pysofie", "config", "--cflags", "--libs", "--root"],
                       capture_output=True, text=True, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    flags = r.stdout.split()
    assert "-lRIO" in flags and any(os.path.exists(os.path.join(f, "TFile.h")) for f in flags)
