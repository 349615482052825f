"""The pysofie command line: emit, check, run, config, and its errors (exit code != 0, one clear line)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.util import ort

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models", "example_cnn.onnx")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pysofie", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.parametrize("weights,files", [("dat", ["example.dat", "example.hxx"]),
                                           ("bin", ["example.bin", "example.hxx"]),
                                           ("embed", ["example.hxx"])])
def test_emit(tmp_path, weights, files):
    r = cli("emit", EXAMPLE, "-o", str(tmp_path), "--name", "example", "--weights", weights)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == files
    text = (tmp_path / "example.hxx").read_text()
    assert "namespace SOFIE_example" in text and "struct Session" in text


def test_emit_custom_namespace(tmp_path):
    r = cli("emit", EXAMPLE, "-o", str(tmp_path), "--namespace", "trigger::nn_v2")
    assert r.returncode == 0, r.stderr
    assert "namespace trigger_nn_v2 {" in (tmp_path / "example_cnn.hxx").read_text()


def test_check_supported_model():
    r = cli("check", EXAMPLE)
    assert r.returncode == 0 and "every operator is supported" in r.stdout


def test_check_lists_every_unsupported_operator(tmp_path):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Foo", ["x"], ["a"], name="foo1"), helper.make_node("Bar", ["a"], ["b"], name="bar1"),
             helper.make_node("Foo", ["b"], ["y"], name="foo2")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    f = tmp_path / "m.onnx"
    f.write_bytes(helper.make_model(g).SerializeToString())
    r = cli("check", str(f))
    assert r.returncode == 1
    assert "3 unsupported" in r.stdout and all(n in r.stdout for n in ("foo1", "bar1", "foo2"))


def test_run_writes_npz(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    r = cli("run", EXAMPLE, "--input", f"image={tmp_path / 'x.npy'}", "-o", str(out))
    assert r.returncode == 0, r.stderr
    got = np.load(out)["probabilities"]
    np.testing.assert_allclose(got, ort(EXAMPLE, {"image": x})[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("args,needle", [
    (["emit", "/no/such/model.onnx", "-o", "X"], "/no/such/model.onnx: no such file"),
    (["run", EXAMPLE, "--input", "image=/no/file.npy"], "cannot read '/no/file.npy'"),
    (["run", EXAMPLE, "--input", "wrong=@"], "cannot read"),
])
def test_errors_exit_nonzero_with_one_clear_line(tmp_path, args, needle):
    r = cli(*[a.replace("X", str(tmp_path / "o")) for a in args])
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_run_wrong_input_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    r = cli("run", EXAMPLE, "--input", f"image={tmp_path / 'x.npy'}")
    assert r.returncode == 2 and "'image' must have shape" in r.stderr and "Traceback" not in r.stderr


def test_config_flags_build_a_program(tmp_path):
    """`pysofie config --cflags --libs` is all a C++ build needs to compile and run emitted code."""
    import shlex
    r = cli("config", "--cflags", "--libs")
    assert r.returncode == 0
    flags = shlex.split(r.stdout)
    assert any(f.startswith("-Wl,-rpath") for f in flags)
    assert cli("emit", EXAMPLE, "-o", str(tmp_path)).returncode == 0
    main = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "cpp", "main.cpp")
    exe = tmp_path / "classify"
    c = subprocess.run(["g++", "-O1", f"-I{tmp_path}", main, *flags, "-o", str(exe)], capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    run = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("event") == 2




def test_emit_torchscript_with_symbolic_input_shape(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.fc = torch.nn.Linear(4 * 6 * 6, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    net = Net().eval()
    pt = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(pt))
    r = cli("emit", str(pt), "--input-shape", "N,1,8,8", "-o", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert "size_t N = 1" in (tmp_path / "out" / "net.hxx").read_text()
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    name = "x"
    r = cli("run", str(pt), "--input-shape", "N,1,8,8", "--input", f"{name}={tmp_path / 'x.npy'}",
            "-o", str(tmp_path / "o.npz"))
    assert r.returncode == 0, r.stderr
    got = list(np.load(tmp_path / "o.npz").values())[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_emit_keras_file(tmp_path):
    pytest.importorskip("h5py")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    inp = keras.Input((6,), name="features")
    out = keras.layers.Dense(3, activation="softmax", name="probs")(keras.layers.Dense(8, activation="relu")(inp))
    model = keras.Model(inp, out)
    path = tmp_path / "m.keras"
    model.save(str(path))
    r = cli("emit", str(path), "-o", str(tmp_path / "out"), "--weights", "bin")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["m.bin", "m.hxx"]


def test_run_prints_a_short_summary_and_shares_the_library_with_python(tmp_path):
    """`pysofie run` and InferenceSession default to the same weight format: one compiled library for both."""
    import pysofie
    env = dict(os.environ, PYSOFIE_CACHE_DIR=str(tmp_path / "cache"))
    x = np.random.default_rng(0).standard_normal((3, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([sys.executable, "-m", "pysofie", "-v", "run", EXAMPLE, "--input", f"image={tmp_path / 'x.npy'}"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probabilities: float32 [3, 10] [")
    expected = ort(EXAMPLE, {"image": x})[0]
    assert f"{expected.reshape(-1)[0]:.6f}"[:6] in lines[0]
    assert "compiled in" in r.stderr and "generated" in r.stderr  # -v: every step with its timing
    old = os.environ.get("PYSOFIE_CACHE_DIR")
    os.environ["PYSOFIE_CACHE_DIR"] = env["PYSOFIE_CACHE_DIR"]
    try:
        pysofie.InferenceSession(EXAMPLE)
    finally:
        if old is None:
            del os.environ["PYSOFIE_CACHE_DIR"]
        else:
            os.environ["PYSOFIE_CACHE_DIR"] = old
    libs = [f for _, _, fs in os.walk(tmp_path / "cache") for f in fs if f.endswith(".so")]
    assert len(libs) == 1


def test_long_compiles_announce_themselves(tmp_path, monkeypatch, caplog):
    import logging

    import pysofie
    from pysofie.build import library
    monkeypatch.setattr(library, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setenv("PYSOFIE_CACHE_DIR", str(tmp_path))
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "progress",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5])])
    with caplog.at_level(logging.INFO, logger="pysofie"):
        pysofie.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("compiling model 'progress'" in m for m in msgs) and any("compiled in" in m for m in msgs)


def test_check_lists_string_tensors(tmp_path):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Identity", ["s"], ["y"]), helper.make_node("Relu", ["x"], ["z"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("s", TensorProto.STRING, [2]),
                                       helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.STRING, [2]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
                          [helper.make_tensor("labels", TensorProto.STRING, [2], [b"a", b"b"])])
    f = tmp_path / "strings.onnx"
    f.write_bytes(helper.make_model(g).SerializeToString())
    r = cli("check", str(f))
    assert r.returncode == 1, r.stderr
    assert "3 unsupported" in r.stdout
    for needle in ("graph input 's': element type STRING", "graph output 'y'", "initializer 'labels'"):
        assert needle in r.stdout


def test_input_shape_of_the_wrong_rank_names_the_input():
    r = cli("check", EXAMPLE, "--input-shape", "1,16,16")
    assert r.returncode == 2
    assert "input 'image' has rank 3, but the model declares rank 4" in r.stderr and "Traceback" not in r.stderr


def test_a_missing_cxx_is_an_error_not_another_compiler(tmp_path):
    env = dict(os.environ, CXX="no-such-compiler++", PYSOFIE_CACHE_DIR=str(tmp_path))
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 16, 16), np.float32))
    r = subprocess.run([sys.executable, "-m", "pysofie", "run", EXAMPLE, "--input", f"image={tmp_path / 'x.npy'}"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2
    assert "CXX is set to 'no-such-compiler++'" in r.stderr and "Traceback" not in r.stderr
