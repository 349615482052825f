"""The emitted files compile into a plain C++ program (no Python) with only the BLAS, warning-free at
-Wall -Wextra -Werror, and compute what onnxruntime computes. All models go into one program (one compile)."""
import os
import shlex
import subprocess

import numpy as np
import pytest

import pysofie
from pysofie.build.blas import find_blas
from pysofie.build.compiler import find_cxx
from tests.models.test_rootbench import MODELS, path
from tests.util import ROOTBENCH, assert_close, ort

pytestmark = pytest.mark.skipif(not os.path.isdir(ROOTBENCH), reason="rootbench models not found")

# the recurrent models and a real CMS tagger with two GRUs and three inputs, too
STANDALONE = MODELS + ["RNN_d10_L20_h8_B1", "GRU_d10_L20_h8_B1", "LSTM_d10_L20_h8_B1", "DDB_B1"]

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models", "example_cnn.onnx")

DRIVER_HEAD = r"""
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

template <typename T>
static std::vector<T> read_raw(const std::string& file, size_t n) {
   std::vector<T> v(n);
   std::ifstream in(file, std::ios::binary);
   if (!in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T))))
      throw std::runtime_error("cannot read " + file);
   return v;
}

template <typename T>
static void write_raw(const std::string& file, const std::vector<T>& v) {
   std::ofstream out(file, std::ios::binary);
   out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
}
"""


def _driver(cases):
    """C++ main(): argv[1] = model index, argv[2] = its directory."""
    parts = [f'#include "{c["header"]}"' for c in cases] + [DRIVER_HEAD]
    for k, c in enumerate(cases):
        ns, sizes = c["namespace"], c["sizes"]
        body = [f"static void run_{k}(const std::string& dir) {{",
                f'   {ns}::Session s({"dir + " + chr(34) + "/" + c["weights"] + chr(34) if c["weights"] else chr(34) * 2}'
                f'{"".join(", " + str(v) for v in sizes)});']
        args = [str(v) for v in sizes]
        for j, n in enumerate(c["in_sizes"]):
            body.append(f'   auto in{j} = read_raw<float>(dir + "/in{j}.raw", {n});')
            args.append(f"in{j}.data()")
        nout = len(c["out_sizes"])
        if nout == 1:
            body.append(f"   auto out0 = s.infer({', '.join(args)});")
            body.append('   write_raw(dir + "/out0.raw", out0);')
        else:
            body.append(f"   auto outs = s.infer({', '.join(args)});")
            for j in range(nout):
                body.append(f'   write_raw(dir + "/out{j}.raw", outs[{j}]);')
        body.append("}")
        parts += body
    parts.append("int main(int argc, char** argv) {")
    parts.append("   if (argc != 3) return 2;")
    parts.append("   const int k = std::atoi(argv[1]);")
    parts.append("   try {")
    for k in range(len(cases)):
        parts.append(f"      if (k == {k}) run_{k}(argv[2]);")
    parts.append('   } catch (const std::exception& e) { std::cerr << e.what() << "\\n"; return 1; }')
    parts.append("   return 0;")
    parts.append("}")
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    root = tmp_path_factory.mktemp("standalone")
    cases = []
    for k, m in enumerate(STANDALONE + ["example_cnn"]):
        src = EXAMPLE if m == "example_cnn" else path(m)
        d = root / f"m{k}"
        files = pysofie.emit(src, str(d), weights=["dat", "bin", "embed"][k % 3])
        sess_inputs = pysofie.load(src).inputs
        batch = 3
        sizes = [batch] * len(pysofie.load(src).size_params)
        feeds = {}
        rng = np.random.default_rng(k)
        for j, v in enumerate(sess_inputs):
            shape = [d if isinstance(d, int) else batch for d in v.shape]
            feeds[v.name] = rng.uniform(-1, 1, shape).astype(np.float32)
            feeds[v.name].tofile(str(d / f"in{j}.raw"))
        expected = ort(src, feeds)
        cases.append(dict(model=m, dir=str(d), header=os.path.basename(files["header"]),
                          namespace=files["namespace"], sizes=sizes,
                          weights=os.path.basename(files["weights"]) if files["weights"] else "",
                          in_sizes=[f.size for f in feeds.values()], out_sizes=[e.size for e in expected],
                          expected=expected))
    main = root / "driver.cpp"
    main.write_text(_driver(cases))
    exe = root / "driver"
    blas = find_blas()
    incs = [f"-I{c['dir']}" for c in cases]
    cmd = (shlex.split(find_cxx()) + ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", *incs, str(main),
                                      "-o", str(exe), *blas.cflags, *blas.libs])
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return exe, cases


@pytest.mark.parametrize("k,model", list(enumerate(STANDALONE + ["example_cnn"])))
def test_standalone_program_matches_onnxruntime(program, k, model):
    exe, cases = program
    c = cases[k]
    r = subprocess.run([str(exe), str(k), c["dir"]], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = [np.fromfile(os.path.join(c["dir"], f"out{j}.raw"), dtype=np.float32).reshape(e.shape)
           for j, e in enumerate(c["expected"])]
    assert_close(got, c["expected"], what=model)


@pytest.mark.parametrize("compiler", ["g++", "clang++"])
def test_emitted_code_is_warning_free(program, compiler):
    """The generated headers (every model, each weight format) pass -Wall -Wextra -Werror with g++ and clang."""
    import shutil
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} not installed")
    exe, cases = program
    main = os.path.join(os.path.dirname(str(exe)), "driver.cpp")
    incs = [f"-I{c['dir']}" for c in cases]
    r = subprocess.run([compiler, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", *incs, main,
                        *find_blas().cflags], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
