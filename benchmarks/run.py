#!/usr/bin/env python
"""pysofie against ONNX Runtime on SOFIE's benchmark models (rootbench), a ResNet-18, and transformer and
depthwise-convolution models (benchmarks/transformer_models.py), single core; plus a thread-scaling table.

    python benchmarks/run.py [--quick] [--models Linear_16 Conv_d100_L14_B1 bert ...] [--no-cpp] [--no-plot]
                             [--scaling 1 2 4 8 16] [--scaling-only] [--isa native|avx2]

For every model, in one process: (a) time per call from Python, pysofie.InferenceSession.run against
onnxruntime.InferenceSession.run (1 intra-op / 1 inter-op thread, ORT_ENABLE_ALL), repetitions interleaved,
medians; (b) time per event of the generated C++ alone (a harness that includes the generated header and
times `infer`, 64 events per iteration as SOFIE's benchmark does), compiled with pysofie's own flags and
BLAS; (c) achieved GFLOP/s of the convolution and matrix-product models next to the BLAS's own single-thread
sgemm GFLOP/s on this machine. Writes benchmarks/results/latest.{json,md,png}.

--isa avx2 builds pysofie's libraries (the sessions' and the C++ harness's) with -mno-avx512f appended to its
flags: its AVX2/FMA kernels on a machine that has AVX-512 (onnxruntime is unchanged and keeps its own choice).
Its results go to benchmarks/results/latest_avx2.{json,md,png}.
"""
from __future__ import annotations

import os

# single core on both sides, set before numpy / the BLAS / onnxruntime load
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import cpu_name as _cpu_name, interleaved, isa as _isa, write_results  # noqa: E402,F401
ROOTBENCH = os.environ.get("PYSOFIE_ROOTBENCH") or os.path.join(
    os.path.dirname(os.path.dirname(HERE)), "shared", "models", "rootbench")
RESULTS = os.path.join(HERE, "results")
EVENTS = 64  # events per timed iteration in the C++ harness, as in SOFIE's benchmark

# README order of the rootbench models; resnet18 is built here (benchmarks/resnet.py)
ORDER = ["Linear_event", "Linear_16", "Linear_32", "Linear_64", "SimpleNN_Alice", "higgs_model_dense",
         "Conv_d100_L1_B1", "Conv_d100_L14_B1", "Conv_d100_L14_B32", "Conv3d_d32_L4_B1", "resnet18",
         "ConvTrans2dModel_B1", "ConvTModel_G4", "Conv2DTranspose_Relu_Sigmoid", "RNN_d10_L20_h8_B1",
         "GRU_d10_L20_h8_B1", "LSTM_d10_L20_h8_B1", "DDB_B1"]
QUICK = ["Linear_event", "Linear_64", "SimpleNN_Alice", "higgs_model_dense", "Conv_d100_L14_B1",
         "Conv3d_d32_L4_B1", "ConvTModel_G4", "resnet18"]
# built from configurations with random weights (benchmarks/transformer_models.py; needs torch to export)
TRANSFORMERS = ["bert", "gpt2", "t5", "vit", "convnext", "depthwise7x7"]
# --isa: compiler flags appended to pysofie's own for its libraries and the C++ harness
ISA_FLAGS = {"native": [], "avx2": ["-mno-avx512f"]}
EXTRA_FLAGS: list[str] = []  # set by main() from --isa


def available_models() -> list[str]:
    files = {os.path.splitext(os.path.basename(f))[0] for f in glob.glob(os.path.join(ROOTBENCH, "*.onnx"))}
    names = [m for m in ORDER if m in files or m == "resnet18"]
    return names + sorted(files - set(names)) + TRANSFORMERS + ["resnet18_B16"]


def load_model(name: str) -> onnx.ModelProto:
    if name in ("resnet18", "resnet18_B16"):
        from resnet import resnet18
        return resnet18(batch=16 if name.endswith("B16") else 1)
    if name in TRANSFORMERS:
        from transformer_models import build
        return build(name)
    return onnx.load(os.path.join(ROOTBENCH, name + ".onnx"))


def model_feeds(name: str, model: onnx.ModelProto) -> dict:
    """The inputs a model is timed with (token ids in range and an attention mask for the transformers)."""
    if name in TRANSFORMERS:
        from transformer_models import MODELS
        return MODELS[name].feeds()
    return make_feeds(model, np.random.default_rng(0))


def make_feeds(model: onnx.ModelProto, rng) -> dict:
    init = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in init:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]  # symbolic dims -> 1
        dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        feeds[inp.name] = rng.standard_normal(shape).astype(dt) if np.issubdtype(dt, np.floating) else \
            rng.integers(0, 3, shape).astype(dt)
    return feeds


def model_flops(graph) -> tuple[int, str]:
    """Multiply-add FLOPs (2 per MAC) of the Conv/ConvTranspose/Gemm/MatMul nodes of a pysofie IR graph,
    with symbolic dims taken as 1, and the kind of the dominant operator."""
    def val(d):
        return d if isinstance(d, int) else 1

    def prod(xs):
        p = 1
        for x in xs:
            p *= val(x)
        return p

    by_kind: dict[str, int] = {}
    for n in graph.nodes:
        t = n.op_type
        if t in ("Conv", "ConvTranspose"):
            x, w, y = n.inputs[0], n.inputs[1], n.outputs[0]
            kvol = prod(w.shape[2:])
            if t == "Conv":
                f = 2 * prod(y.shape) * val(w.shape[1]) * kvol
            else:
                f = 2 * prod(x.shape) * val(w.shape[1]) * kvol
        elif t == "Gemm":
            m, nn, k = n.op.mnk(n)
            f = 2 * val(m) * val(nn) * val(k)
        elif t == "MatMul":
            k = n.inputs[0].shape[-1]
            f = 2 * prod(n.outputs[0].shape) * val(k)
        else:
            continue
        kind = "conv" if t.startswith("Conv") else "gemm"
        by_kind[kind] = by_kind.get(kind, 0) + f
    if not by_kind:
        return 0, "-"
    return sum(by_kind.values()), max(by_kind, key=by_kind.get)


# -- C++ harness ---------------------------------------------------------------------------------------
HARNESS = r"""
#include "{header}"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

int main(int argc, char** argv) {{
   const int reps = argc > 2 ? std::atoi(argv[2]) : 15;
   {ns}::Session session(argc > 1 ? argv[1] : "");
   std::mt19937 gen(1);
   std::normal_distribution<float> dist(0.f, 1.f);
{decls}
   double best_total = 0;
   std::vector<double> per_event;
   for (int w = 0; w < 3; ++w) session.infer({args});  // warm up
   // 64 events per iteration as SOFIE's benchmark; more when that is under ~2 ms, fewer (down to 1) when
   // 64 events would take over ~0.3 s, so that large models keep the run short
   int events = {events};
   int nrep = reps;
   {{
      auto t0 = std::chrono::steady_clock::now();
      session.infer({args});
      double one = std::max(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1e-9);
      if (one * events < 2e-3) events = int(2e-3 / one) + 1;
      if (one * events > 0.3) events = std::max(1, int(0.3 / one));
      // at most ~3 s in all, at least 3 iterations
      nrep = std::max(3, std::min(reps, int(3.0 / (one * events))));
   }}
   for (int r = 0; r < nrep; ++r) {{
      auto t0 = std::chrono::steady_clock::now();
      for (int e = 0; e < events; ++e) session.infer({args});
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      per_event.push_back(dt / events);
      best_total += dt;
   }}
   std::sort(per_event.begin(), per_event.end());
   std::printf("%.9g %.9g %d\n", per_event[per_event.size() / 2], per_event[0], events);
   return 0;
}}
"""

SGEMM_BENCH = r"""
#include "pysofie_runtime.h"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv) {
   const int reps = argc > 1 ? std::atoi(argv[1]) : 7;
   const int sizes[][3] = {{512, 512, 512}, {256, 3136, 576}, {128, 10000, 1600}, {64, 784, 576}};
   for (auto& s : sizes) {
      const int M = s[0], N = s[1], K = s[2];
      std::vector<float> A(size_t(M) * K, 0.5f), B(size_t(K) * N, 0.25f), C(size_t(M) * N);
      pysofie_rt::sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
      std::vector<double> t;
      for (int r = 0; r < reps; ++r) {
         auto t0 = std::chrono::steady_clock::now();
         pysofie_rt::sgemm(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
         t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(t.begin(), t.end());
      std::printf("%d %d %d %.6g %.6g\n", M, N, K, 2.0 * M * N * K / t[t.size() / 2] * 1e-9,
                  2.0 * M * N * K / t[0] * 1e-9);
   }
   return 0;
}
"""


def cxx_flags() -> tuple[str, list[str], list[str]]:
    from pysofie.build.blas import find_blas
    from pysofie.build.compiler import find_cxx, opt_flags
    blas = find_blas()
    return find_cxx(), opt_flags() + list(blas.cflags) + EXTRA_FLAGS, list(blas.libs)


def sgemm_gflops(workdir: str, reps: int) -> dict:
    from pysofie.backends.cpp.emitter import RUNTIME_HEADER
    cxx, flags, libs = cxx_flags()
    src = os.path.join(workdir, "sgemm_bench.cpp")
    with open(src, "w") as f:
        f.write(SGEMM_BENCH)
    exe = os.path.join(workdir, "sgemm_bench")
    subprocess.run(cxx.split() + ["-std=c++17", *flags, "-I", os.path.dirname(RUNTIME_HEADER), src, "-o", exe,
                                  *libs], check=True, capture_output=True)
    out = subprocess.run([exe, str(reps)], check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.split("\n"):
        if line.strip():
            m, n, k, med, best = line.split()
            rows.append({"M": int(m), "N": int(n), "K": int(k), "gflops_median": float(med),
                         "gflops_best": float(best)})
    return {"shapes": rows, "gflops": max(r["gflops_median"] for r in rows)}


def cpp_time(gm, workdir: str, reps: int) -> dict:
    """Median seconds per event of the generated code's infer(), from a standalone C++ program."""
    from pysofie.ir.shapes import Sym
    em = gm.emitter
    g = em.graph
    d = os.path.join(workdir, gm.name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, gm.header_file), "w") as f:
        f.write(gm.header)
    wfile = ""
    if gm.weight_data is not None:
        wfile = os.path.join(d, gm.weight_file)
        with open(wfile, "wb") as f:
            f.write(gm.weight_data)

    def count(shape):
        c = 1
        for x in shape:
            c *= 1 if isinstance(x, Sym) else int(x)
        return c

    decls, args = [], ["1"] * len(em.params)
    for k, v in enumerate(g.inputs):
        decls.append(f"   std::vector<{v.dtype.ctype}> in{k}({count(v.shape)});")
        if v.dtype.is_float:
            decls.append(f"   for (auto& x : in{k}) x = dist(gen);")
        else:
            decls.append(f"   for (auto& x : in{k}) x = 1;")
        args.append(f"in{k}.data()")
    for k, v in enumerate(g.outputs):
        decls.append(f"   std::vector<{v.dtype.ctype}> out{k}({max(1, count(v.shape))});")
        args.append(f"out{k}.data()")
    src = os.path.join(d, "bench.cpp")
    with open(src, "w") as f:
        f.write(HARNESS.format(header=gm.header_file, ns=gm.namespace, decls="\n".join(decls),
                               args=", ".join(args), events=EVENTS))
    cxx, flags, libs = cxx_flags()
    exe = os.path.join(d, "bench")
    t0 = time.perf_counter()
    subprocess.run(cxx.split() + ["-std=c++17", *flags, src, "-o", exe, *libs], check=True, capture_output=True,
                   cwd=d)
    ct = time.perf_counter() - t0
    out = subprocess.run([exe, wfile, str(reps)], check=True, capture_output=True, text=True).stdout.split()
    return {"per_event_s": float(out[0]), "best_s": float(out[1]), "events": int(out[2]), "compile_s": ct}


# -- Python-level timing -------------------------------------------------------------------------------
def ort_session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_model(name: str, args, workdir: str, sgemm: float | None) -> dict:
    import pysofie
    from pysofie.api import generate_code, load
    from pysofie.build.library import build_library
    row: dict = {"model": name}
    model = load_model(name)
    feeds = model_feeds(name, model)
    t0 = time.perf_counter()
    try:
        # compile time from a cold cache (generation, weight file, compilation, loading)
        old = os.environ.get("PYSOFIE_CACHE_DIR")
        os.environ["PYSOFIE_CACHE_DIR"] = tempfile.mkdtemp(prefix="pysofie-cold-")
        try:
            gm = generate_code(model, weights="bin")  # as InferenceSession does by default
            # the library with --isa's flags (its cache key includes them), loaded as InferenceSession does
            lib = build_library([gm], extra_flags=EXTRA_FLAGS)
            ps = pysofie.InferenceSession(model, _generated=gm, _library=lib)
        finally:
            shutil.rmtree(os.environ["PYSOFIE_CACHE_DIR"], ignore_errors=True)
            if old is None:
                del os.environ["PYSOFIE_CACHE_DIR"]
            else:
                os.environ["PYSOFIE_CACHE_DIR"] = old
    except Exception as e:  # a model pysofie cannot run (yet): report it, keep going
        row["status"] = "unsupported"
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        return row
    row["compile_s"] = time.perf_counter() - t0
    os_ = ort_session(model)
    ref = os_.run(None, feeds)
    got = ps.run(None, feeds)
    row["max_abs_diff"] = float(max(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                                    if np.asarray(a).size else 0.0 for a, b in zip(got, ref)))
    row["max_abs_ref"] = float(max(np.max(np.abs(np.asarray(b, np.float64))) if np.asarray(b).size else 0.0
                                   for b in ref))
    reps = 7 if args.quick else 21
    t = interleaved({"pysofie": lambda: ps.run(None, feeds), "ort": lambda: os_.run(None, feeds)}, reps,
                    target_s=0.01 if args.quick else 0.03, budget_s=args.budget / (2 if args.quick else 1))
    row["pysofie_s"], row["ort_s"] = t["pysofie"], t["ort"]
    row["ratio"] = t["pysofie"] / t["ort"]
    flops, kind = model_flops(load(model, optimize=False))
    row["flops"], row["kind"] = flops, kind
    if not args.no_cpp:
        try:
            c = cpp_time(gm, workdir, 7 if args.quick else 15)
            row["cpp_s"] = c["per_event_s"]
            row["cpp_events"] = c["events"]
            # the harness runs alone: compare it with ORT timed right before and right after it (the machine's
            # load changes between the two), through Python
            after = interleaved({"ort": lambda: os_.run(None, feeds)}, 5, 0.01, 2.0)["ort"]
            row["ort_after_s"] = after
            row["cpp_ratio"] = c["per_event_s"] / (0.5 * (t["ort"] + after))
            if flops > 1e7 and kind in ("conv", "gemm"):
                row["gflops"] = flops / c["per_event_s"] * 1e-9
                if sgemm:
                    row["pct_sgemm"] = 100.0 * row["gflops"] / sgemm
        except subprocess.CalledProcessError as e:
            row["cpp_error"] = (e.stderr or str(e))[:300] if isinstance(e.stderr, str) else str(e)
    row["status"] = "ok"
    return row


def fmt_us(s):
    return "-" if s is None else (f"{s * 1e6:.1f}" if s < 1e-3 else f"{s * 1e6:.0f}")


def table(rows: list[dict], sgemm: float | None) -> str:
    head = ["model", "pysofie µs", "ORT µs", "pysofie/ORT", "C++ µs/event", "C++/ORT(py)", "GFLOP/s", "% sgemm",
            "compile s", "max |diff|"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | unsupported | | | | | | | | {r.get('error', '')[:60]} |")
            continue
        g = r.get("gflops")
        lines.append("| " + " | ".join([
            r["model"], fmt_us(r["pysofie_s"]), fmt_us(r["ort_s"]), f"{r['ratio']:.2f}",
            fmt_us(r.get("cpp_s")), f"{r['cpp_ratio']:.2f}" if "cpp_ratio" in r else "-",
            f"{g:.1f}" if g else "-", f"{r['pct_sgemm']:.0f} %" if "pct_sgemm" in r else "-",
            f"{r['compile_s']:.1f}", f"{r['max_abs_diff']:.1e}"]) + " |")
    ok = [r for r in rows if r.get("status") == "ok"]
    if ok:
        lines.append("")
    for label, group in (("rootbench + ResNet-18", [r for r in ok if r["model"] not in TRANSFORMERS]),
                         ("transformer + depthwise", [r for r in ok if r["model"] in TRANSFORMERS])):
        if group:
            gm = float(np.exp(np.mean([np.log(r["ratio"]) for r in group])))
            worst = max(group, key=lambda r: r["ratio"])
            lines.append(f"Geometric mean pysofie/ORT (Python, per call) over {len(group)} {label} models: "
                         f"**{gm:.2f}**; worst: {worst['ratio']:.2f} ({worst['model']}).")
    if ok:
        cr = [r for r in ok if "cpp_ratio" in r]
        if cr:
            gmc = float(np.exp(np.mean([np.log(r["cpp_ratio"]) for r in cr])))
            lines.append(f"Geometric mean C++ per event / ORT per Python call: {gmc:.2f}.")
    if sgemm:
        lines.append(f"BLAS single-thread sgemm (best of the measured shapes, median): {sgemm:.1f} GFLOP/s.")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, built_for: str = "") -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no chart)")
        return False
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(ok) + 2), 4.5))
    xs = np.arange(len(ok))
    ax.bar(xs - 0.2, [r["ratio"] for r in ok], 0.4, label="Python per call")
    ax.bar(xs + 0.2, [r.get("cpp_ratio", np.nan) for r in ok], 0.4, label="C++ per event")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([r["model"] for r in ok], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("time pysofie / ONNX Runtime (lower is better)")
    ax.set_title("pysofie vs ONNX Runtime, single thread" + (f" (pysofie built for {built_for})" if built_for else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer models and repetitions")
    ap.add_argument("--models", nargs="*", help="model names (default: all)")
    ap.add_argument("--no-cpp", action="store_true", help="skip the C++ harness")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of Python-level timing per model")
    ap.add_argument("--isa", choices=sorted(ISA_FLAGS), default="native",
                    help="pysofie's kernels: native (pysofie's flags, -march=native) or avx2 (-mno-avx512f added; "
                         "onnxruntime unchanged)")
    ap.add_argument("--out", default=None,
                    help="output path stem (default: benchmarks/results/latest, latest_avx2 with --isa avx2, or "
                         ".../threads with --scaling-only)")
    ap.add_argument("--scaling", nargs="*", type=int, metavar="N",
                    help="thread counts of the scaling table (e.g. 1 2 4 8 16; default: none)")
    ap.add_argument("--scaling-only", action="store_true", help="only the thread-scaling table")
    args = ap.parse_args(argv)
    EXTRA_FLAGS[:] = ISA_FLAGS[args.isa]
    suffix = "" if args.isa == "native" else "_" + args.isa
    if args.out is None:  # the scaling table alone must not replace the models' table
        args.out = os.path.join(RESULTS, ("threads" if args.scaling_only else "latest") + suffix)
    from pysofie.build.compiler import target_isa
    built_for = target_isa(EXTRA_FLAGS)
    if args.isa == "avx2" and built_for != "avx2":
        ap.error(f"--isa avx2: pysofie's flags here build {built_for} kernels, not AVX2 + FMA")
    print(f"pysofie built for {built_for} ({' '.join(cxx_flags()[1])})")
    names = [] if args.scaling_only else (args.models or (QUICK if args.quick else
                                                          [m for m in available_models() if m != "resnet18_B16"]))
    unknown = [n for n in names if n not in available_models()]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; available: {available_models()}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="pysofie-bench-")
    sg = None
    sg_info = None
    try:
        if not args.no_cpp:
            sg_info = sgemm_gflops(workdir, 5 if args.quick else 9)
            sg = sg_info["gflops"]
            print("BLAS sgemm, 1 thread: " + ", ".join(f"{r['M']}x{r['N']}x{r['K']}: {r['gflops_median']:.1f}"
                                                         for r in sg_info["shapes"]) + " GFLOP/s")
        rows = []
        for n in names:
            t0 = time.perf_counter()
            r = bench_model(n, args, workdir, sg)
            rows.append(r)
            if r.get("status") == "ok":
                print(f"{n:32s} pysofie {fmt_us(r['pysofie_s']):>9s} µs  ort {fmt_us(r['ort_s']):>9s} µs  "
                      f"ratio {r['ratio']:.2f}  C++ {fmt_us(r.get('cpp_s')):>9s} µs  "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            else:
                print(f"{n:32s} unsupported: {r['error']}", flush=True)
        scal = []
        if args.scaling:
            from threads import SCALING_MODELS, scaling
            scal = scaling(SCALING_MODELS, args.scaling, load_model, model_feeds, interleaved, args.budget,
                           EXTRA_FLAGS)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    import onnxruntime
    import pysofie
    md = table(rows, sg) if rows else ""
    if scal:
        from threads import scaling_table
        md += ("\n\n" if md else "") + "Thread scaling (same intra-op thread count on both sides):\n\n" + \
            scaling_table(scal)
    print()
    print(md)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": platform.machine(),
            "cpu": _cpu_name(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "isa": _isa(), "pysofie_isa": built_for, "pysofie_extra_flags": EXTRA_FLAGS,
            "pysofie": getattr(pysofie, "__version__", "?"), "threads": 1,
            "scaling_threads": args.scaling or [], "events_per_iteration": EVENTS,
            "command": " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])}
    write_results(args.out, {"meta": meta, "sgemm": sg_info, "models": rows, "scaling": scal},
                  f"<!-- generated by benchmarks/run.py on {meta['date']}, {meta['cpu']} ({', '.join(meta['isa'])}), "
                  f"pysofie built for {built_for}{''.join(' ' + f for f in EXTRA_FLAGS)}, "
                  f"1 thread unless said, onnxruntime {meta['onnxruntime']} -->\n" + md + "\n")
    if not args.no_plot and rows:
        plot(rows, args.out + ".png", built_for)
    print(f"\nwrote {args.out}.json, {args.out}.md" + ("" if args.no_plot or not rows else f", {args.out}.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
