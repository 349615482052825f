"""The generated code under AddressSanitizer and UndefinedBehaviorSanitizer: a few models (the example CNN and, when
present, rootbench models with dense, convolution and transposed-convolution layers) compiled into one plain C++
program with -fsanitize=address,undefined, run, and compared with onnxruntime. Skips when the compiler has no
sanitizer runtime. Also: the example model's header is warning-free with g++ at -O3 -march=native."""
import os
import shlex
import shutil
import subprocess

import numpy as np
import pytest

import pysofie
from pysofie.build.blas import find_blas
from pysofie.build.compiler import find_cxx
from tests.models.test_standalone_cpp import _driver
from tests.util import ROOTBENCH, assert_close, ort

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "models", "example_cnn.onnx")
MODELS = [EXAMPLE] + [p for p in (os.path.join(ROOTBENCH, f"{m}.onnx") for m in
                                  ("Linear_16", "Conv2DTranspose_Relu_Sigmoid", "GRU_d10_L20_h8_B1"))
                      if os.path.exists(p)]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


def _sanitizers_work(tmp_path) -> bool:
    src = tmp_path / "t.cpp"
    src.write_text("#include <vector>\nint main() { std::vector<int> v(3); return v[1]; }\n")
    r = subprocess.run(shlex.split(find_cxx()) + SANITIZE + [str(src), "-o", str(tmp_path / "t")],
                       capture_output=True)
    return r.returncode == 0 and subprocess.run([str(tmp_path / "t")], capture_output=True).returncode == 0


def _cases(root):
    cases = []
    for k, src in enumerate(MODELS):
        d = root / f"m{k}"
        files = pysofie.emit(src, str(d), weights=["dat", "bin", "embed"][k % 3])
        g = pysofie.load(src)
        sizes = [3] * len(g.size_params)
        rng = np.random.default_rng(k)
        feeds = {}
        for j, v in enumerate(g.inputs):
            feeds[v.name] = rng.uniform(-1, 1, [x if isinstance(x, int) else 3 for x in v.shape]).astype(np.float32)
            feeds[v.name].tofile(str(d / f"in{j}.raw"))
        expected = ort(src, feeds)
        cases.append(dict(dir=str(d), header=os.path.basename(files["header"]), namespace=files["namespace"],
                          sizes=sizes, weights=os.path.basename(files["weights"]) if files["weights"] else "",
                          in_sizes=[f.size for f in feeds.values()], out_sizes=[e.size for e in expected],
                          expected=expected, model=os.path.basename(src)))
    return cases


def test_models_under_address_and_undefined_behavior_sanitizers(tmp_path):
    if not _sanitizers_work(tmp_path):
        pytest.skip("the C++ compiler has no AddressSanitizer/UBSan runtime")
    cases = _cases(tmp_path)
    main = tmp_path / "driver.cpp"
    main.write_text(_driver(cases))
    exe = tmp_path / "driver"
    blas = find_blas()
    cmd = (shlex.split(find_cxx()) + ["-std=c++17", "-O1", *SANITIZE, *[f"-I{c['dir']}" for c in cases], str(main),
                                      "-o", str(exe), *blas.cflags, *blas.libs])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    for k, c in enumerate(cases):
        r = subprocess.run([str(exe), str(k), c["dir"]], capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, f"{c['model']}: {r.stderr[-4000:]}"
        got = [np.fromfile(os.path.join(c["dir"], f"out{j}.raw"), dtype=np.float32).reshape(e.shape)
               for j, e in enumerate(c["expected"])]
        assert_close(got, c["expected"], what=c["model"])


def test_example_header_is_warning_free_at_O3_native(tmp_path):
    """README: warning-free code. g++ 12 used to warn (-Waggressive-loop-optimizations) in store_band at -O3."""
    if not shutil.which("g++"):
        pytest.skip("g++ not installed")
    files = pysofie.emit(EXAMPLE, str(tmp_path))
    main = tmp_path / "main.cpp"
    main.write_text(f'#include "{os.path.basename(files["header"])}"\n'
                    f'int main() {{ {files["namespace"]}::Session s("{os.path.basename(files["weights"])}", 2);\n'
                    "   std::vector<float> x(1 << 20);  // compiled, not run\n"
                    "   return static_cast<int>(s.infer(2, x.data()).size()); }\n")
    r = subprocess.run(["g++", "-std=c++17", "-O3", "-march=native", "-Wall", "-Wextra", "-Werror", "-c",
                        f"-I{tmp_path}", str(main), "-o", str(tmp_path / "main.o"), *find_blas().cflags],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
