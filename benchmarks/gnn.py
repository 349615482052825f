#!/usr/bin/env python
"""GNN benchmark: ROOT's GNN tutorial model (encode-process-decode, graph_nets) at growing graph sizes, one core.

    python benchmarks/gnn.py [--quick] [--sizes 1000x4000,5000x20000] [--steps 5] [--latent 100] [--no-plot]

The model (as ROOT's TMVA_SOFIE_GNN tutorial): an encoder and decoder and output transform (GraphIndependent,
4-layer ReLU MLPs of width `latent`), and a core GraphNetwork (edge, node and global MLPs with LayerNorm) applied
`steps` times to concat(latent0, latent). For each (nodes, edges) in (10,20) ... (5000,20000), in one process,
repetitions interleaved, medians per call:
- pysofie: InferenceSession.run from Python, and the generated C++ `infer` alone (a standalone harness);
- graph_nets under tf.function (the model itself);
- the same model written in PyTorch with torch_geometric.utils.scatter (PyG eager), weights copied;
- ONNX Runtime on the ONNX export of that PyTorch model (dynamic numbers of nodes and edges).
The dense layers' FLOP count (from the model's weights) gives the floor at the BLAS's single-thread sgemm speed. Writes
benchmarks/results/gnn.{json,md,png}.
"""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
           "TF_NUM_INTEROP_THREADS"):
    os.environ[_v] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# the standard library's `profile` (torch._dynamo, imported by PyG, needs it) before benchmarks/profile.py can
# shadow it: run.py puts this folder first on the path
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
import cProfile  # noqa: E402,F401
sys.path.insert(0, HERE)
from common import cpu_name as _cpu_name, interleaved, isa as _isa, write_results  # noqa: E402
from run import cxx_flags, ort_session, sgemm_gflops  # noqa: E402

RESULTS = os.path.join(HERE, "results")
SIZES = [(10, 20), (50, 100), (100, 400), (500, 2000), (1000, 4000), (5000, 20000)]
FEATURES = {"nodes": 4, "edges": 4, "globals": 1}  # as ROOT's tutorial
NUM_LAYERS = 4


# -- the model in graph_nets (ROOT's tutorial) and the same in PyTorch -------------------------------------
def graph_nets_model(latent: int, steps: int):
    import graph_nets as gn
    import sonnet as snt

    def mlp():
        return snt.nets.MLP([latent] * NUM_LAYERS, activate_final=True)

    def mlp_ln():
        return snt.Sequential([mlp(), snt.LayerNorm(axis=-1, create_offset=True, create_scale=True)])

    def independent():
        return gn.modules.GraphIndependent(edge_model_fn=mlp, node_model_fn=mlp, global_model_fn=mlp)

    class EncodeProcessDecode(snt.Module):
        def __init__(self):
            super().__init__(name="EncodeProcessDecode")
            self.encoder, self.decoder, self.output_transform = independent(), independent(), independent()
            self.core = gn.modules.GraphNetwork(edge_model_fn=mlp_ln, node_model_fn=mlp_ln, global_model_fn=mlp_ln)

        def __call__(self, g):
            latent = self.encoder(g)
            latent0 = latent
            outs = []
            for _ in range(steps):
                latent = self.core(gn.utils_tf.concat([latent0, latent], axis=1))
                outs.append(self.output_transform(self.decoder(latent)))
            return outs

    return EncodeProcessDecode()


def graph(n, e, seed=0):
    import graph_nets as gn
    rng = np.random.default_rng(seed)
    d = {"nodes": rng.normal(size=(n, FEATURES["nodes"])).astype(np.float32),
         "edges": rng.normal(size=(e, FEATURES["edges"])).astype(np.float32),
         "globals": rng.normal(size=FEATURES["globals"]).astype(np.float32),
         "senders": rng.integers(0, n, e).astype(np.int32), "receivers": rng.integers(0, n, e).astype(np.int32)}
    return gn.utils_tf.data_dicts_to_graphs_tuple([d])


def torch_model(tf_model, steps: int):
    """The same computation in PyTorch (weights copied from the Sonnet modules), aggregation with PyG's scatter."""
    import torch
    from torch_geometric.utils import scatter
    nn = torch.nn

    def seq(mlp, ln=None):
        layers = []
        for lin in mlp._layers:
            t = nn.Linear(lin.w.shape[0], lin.w.shape[1])
            t.weight.data = torch.from_numpy(lin.w.numpy().T.copy())
            t.bias.data = torch.from_numpy(lin.b.numpy().copy())
            layers += [t, nn.ReLU()]
        if ln is not None:
            n = nn.LayerNorm(ln.scale.shape[0], eps=float(ln._eps))
            n.weight.data = torch.from_numpy(ln.scale.numpy().copy())
            n.bias.data = torch.from_numpy(ln.offset.numpy().copy())
            layers.append(n)
        return nn.Sequential(*layers)

    def ind(m):
        return nn.ModuleList([seq(m._edge_model._model), seq(m._node_model._model), seq(m._global_model._model)])

    def core_seq(block):
        s = getattr(block, "_model", block)  # snt.Sequential([MLP, LayerNorm])
        return seq(s._layers[0], s._layers[1])

    class EPD(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec, self.out = ind(tf_model.encoder), ind(tf_model.decoder), ind(tf_model.output_transform)
            c = tf_model.core
            self.edge = core_seq(c._edge_block._edge_model)
            self.node = core_seq(c._node_block._node_model)
            self.glob = core_seq(c._global_block._global_model)

        @staticmethod
        def apply(m, x, e, u):
            return m[1](x), m[0](e), m[2](u)

        def forward(self, nodes, edges, globals_, senders, receivers):
            n = nodes.shape[0]
            x, e, u = self.apply(self.enc, nodes, edges, globals_)
            x0, e0, u0 = x, e, u
            outs = []
            for _ in range(steps):
                xc, ec, uc = torch.cat([x0, x], 1), torch.cat([e0, e], 1), torch.cat([u0, u], 1)
                e = self.edge(torch.cat([ec, xc[receivers], xc[senders], uc.expand(ec.shape[0], -1)], 1))
                agg = scatter(e, receivers, dim=0, dim_size=n, reduce="sum")
                x = self.node(torch.cat([agg, xc, uc.expand(n, -1)], 1))
                u = self.glob(torch.cat([e.sum(0, keepdim=True), x.sum(0, keepdim=True), uc], 1))
                outs += list(self.apply(self.out, *self.apply(self.dec, x, e, u)))
            return tuple(outs)

    return EPD().eval()


def model_flops(tf_model, steps: int, n: int, e: int) -> float:
    """2 x the multiply-adds of every dense layer of the model as written, counted from its weights: each MLP's
    (in x out) matrices times the rows it runs on (edges, nodes, 1 global row), the encoder once and the core,
    decoder and output transform once per step. The aggregations and LayerNorms (O((N + E) x latent)) are not
    counted."""
    def mlp(module, rows):
        return sum(2 * rows * int(v.shape[0]) * int(v.shape[1]) for v in module.trainable_variables
                   if len(v.shape) == 2)

    def ind(g):  # a GraphIndependent
        return mlp(g._edge_model, e) + mlp(g._node_model, n) + mlp(g._global_model, 1)
    c = tf_model.core
    core = mlp(c._edge_block, e) + mlp(c._node_block, n) + mlp(c._global_block, 1)
    return ind(tf_model.encoder) + steps * (core + ind(tf_model.decoder) + ind(tf_model.output_transform))


def executed_flops(graph, n: int, e: int) -> float:
    """2 x the multiply-adds of the dense products pysofie's generated code runs (fewer than the model's: an edge
    MLP's first layer over gathered node features runs once per node, not once per edge; the products of the
    encoded graph with the core's shared first-layer weights run once, not once per step)."""
    from pysofie.ir.shapes import Sym
    env = {"n_nodes": n, "n_edges": e}

    def rows(d):
        if not isinstance(d, Sym):
            return int(d)
        total = 0
        for mono, coef in d.terms.items():
            t = coef
            for v in mono:
                t *= env[v]
            total += t
        return total
    fl = 0
    for node in graph.nodes:
        if node.op_type == "RowMLP":
            s = node.op.spec
            m = rows(node.outputs[0].shape[0])
            H = s["layers"][0]["N"]
            fl += 2 * m * (sum(k * H for k in s["ks"]) + sum(a["N"] * b["N"] for a, b in zip(s["layers"],
                                                                                              s["layers"][1:])))
        elif node.op_type in ("Gemm", "MatMul") and node.op.__dict__.get("packed_gemm"):
            info = node.op.__dict__["packed_gemm"]
            fl += 2 * rows(node.outputs[0].shape[0]) * info["K"] * info["N"]
    return float(fl)


CPP_HARNESS = r"""
#include "{header}"
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <ctime>
#include <vector>

template <typename T> static std::vector<T> read_raw(const std::string& f, size_t n) {{
   std::vector<T> v(n);
   std::ifstream(f, std::ios::binary).read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(T)));
   return v;
}}

static double cpu_now() {{  // this thread's CPU time: robust when other processes share the cores
   timespec t;
   clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
   return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}}

int main(int argc, char** argv) {{
   const std::string dir = argv[1];
   {ns}::Session s(dir + "/{weights}");
   for (int a = 2; a + 1 < argc; a += 2) {{
      const size_t n = std::strtoul(argv[a], nullptr, 10), e = std::strtoul(argv[a + 1], nullptr, 10);
      const std::string p = dir + "/g" + argv[a] + "_";
      auto x = read_raw<float>(p + "nodes.raw", n * {fn}), ed = read_raw<float>(p + "edges.raw", e * {fe});
      auto u = read_raw<float>(p + "globals.raw", {fg});
      auto snd = read_raw<int>(p + "senders.raw", e), rcv = read_raw<int>(p + "receivers.raw", e);
      // the outputs in buffers allocated once per size, as a caller that runs many graphs keeps them (the
      // vector-returning infer allocates and zero-fills {n_out} new vectors per call: at (5000, 20000) 50 MB of fresh
      // pages, page faults and memset included, ~7 % of the time, which is the harness's cost, not infer()'s)
      std::vector<std::vector<float>> outs = s.infer(n, e, x.data(), ed.data(), u.data(), snd.data(), rcv.data());
      auto run = [&] {{ s.infer(n, e, x.data(), ed.data(), u.data(), snd.data(), rcv.data(), {out_ptrs}); }};
      run();
      auto t0 = std::chrono::steady_clock::now();
      run();
      const double one = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const int inner = std::max(1, int(0.02 / std::max(one, 1e-9)));
      const int reps = std::max(5, std::min(31, int(1.5 / std::max(one * inner, 1e-9))));
      std::vector<double> t, c;
      for (int r = 0; r < reps; ++r) {{
         auto t1 = std::chrono::steady_clock::now();
         const double c1 = cpu_now();
         for (int i = 0; i < inner; ++i) run();
         c.push_back((cpu_now() - c1) / inner);
         t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() / inner);
      }}
      std::sort(t.begin(), t.end());
      std::sort(c.begin(), c.end());
      std::printf("%zu %zu %.9g %.9g\n", n, e, t[t.size() / 2], c[c.size() / 2]);
   }}
   return 0;
}}
"""


def cpp_times(gm, sizes, graphs, workdir) -> dict:
    d = os.path.join(workdir, "cpp")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, gm.header_file), "w") as f:
        f.write(gm.header)
    with open(os.path.join(d, gm.weight_file), "wb") as f:
        f.write(gm.weight_data)
    for (n, e), g in zip(sizes, graphs):
        for k in ("nodes", "edges", "globals", "senders", "receivers"):
            np.asarray(getattr(g, k).numpy()).tofile(os.path.join(d, f"g{n}_{k}.raw"))
    src = os.path.join(d, "bench.cpp")
    with open(src, "w") as f:
        f.write(CPP_HARNESS.format(header=gm.header_file, ns=gm.namespace, weights=gm.weight_file,
                                   fn=FEATURES["nodes"], fe=FEATURES["edges"], fg=FEATURES["globals"],
                                   n_out=len(gm.emitter.output_names),
                                   out_ptrs=", ".join(f"outs[{k}].data()" for k in range(len(gm.emitter.output_names)))))
    cxx, flags, libs = cxx_flags()
    exe = os.path.join(d, "bench")
    subprocess.run(cxx.split() + ["-std=c++17", *flags, src, "-o", exe, *libs], check=True, capture_output=True)
    out = subprocess.run([exe, d] + [str(v) for s in sizes for v in s], check=True, capture_output=True,
                         text=True).stdout
    res = {}
    for line in out.strip().split("\n"):
        n, e, t, c = line.split()
        res[(int(n), int(e))] = (float(t), float(c))  # wall, this thread's CPU time
    return res


def interleaved_cpu(fns: dict, reps: int, budget_s: float = 8.0) -> dict:
    """As run.interleaved, timing the process's CPU time (every thread of it) instead of wall time."""
    import statistics
    for f in fns.values():
        f()
        f()
    inner, total = {}, 0.0
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        one = max(time.perf_counter() - t0, 1e-7)
        inner[k] = max(1, min(1000, int(0.02 / one)))
        total += one * inner[k]
    reps = max(5, min(reps, int(budget_s / total)))
    times: dict = {k: [] for k in fns}
    keys = list(fns)
    for r in range(reps):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            f, n = fns[k], inner[k]
            t0 = time.process_time()
            for _ in range(n):
                f()
            times[k].append((time.process_time() - t0) / n)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="latent 32, 2 steps, the four smaller sizes")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--latent", type=int, default=100)
    ap.add_argument("--budget", type=float, default=4.0, help="seconds of Python timing per size")
    ap.add_argument("--sizes", default="", help="e.g. 1000x4000,5000x20000 (default: all six)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the process's CPU time per call (all its threads; robust on a shared machine)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--out", default=os.path.join(RESULTS, "gnn"))
    args = ap.parse_args(argv)
    latent, steps, sizes = args.latent, args.steps, SIZES
    if args.quick:
        latent, steps, sizes = 32, 2, SIZES[:4]
    if args.sizes:
        sizes = [tuple(int(v) for v in x.split("x")) for x in args.sizes.split(",")]

    import tensorflow as tf
    import torch
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(1)
    import pysofie
    from pysofie.api import generate_code

    tf.random.set_seed(0)
    model = graph_nets_model(latent, steps)
    example = graph(10, 20)
    t0 = time.perf_counter()
    gm = generate_code(model, example_graph=example, name="gnn_epd", weights="bin")
    sess = pysofie.InferenceSession(None, _generated=gm)
    gen_s = time.perf_counter() - t0
    tm = torch_model(model, steps)
    xs = [torch.zeros(10, 4), torch.zeros(20, 4), torch.zeros(1, 1), torch.zeros(20, dtype=torch.int64),
          torch.zeros(20, dtype=torch.int64)]
    buf = io.BytesIO()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tm, tuple(xs), buf, dynamo=False, opset_version=17,
                          input_names=["nodes", "edges", "globals", "senders", "receivers"],
                          dynamic_axes={"nodes": {0: "N"}, "edges": {0: "E"}, "senders": {0: "E"},
                                        "receivers": {0: "E"}})
    import onnx
    ort = ort_session(onnx.load_from_string(buf.getvalue()))
    tf_fn = tf.function(model)

    graphs = [graph(n, e, seed=k) for k, (n, e) in enumerate(sizes)]
    load0 = os.getloadavg()[0]  # other work on the machine inflates every time (the ratios are interleaved)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        sg = sgemm_gflops(work, 5)["gflops"]
        cpp = cpp_times(gm, sizes, graphs, work)
        for (n, e), g in zip(sizes, graphs):
            feed = {k: np.asarray(getattr(g, k).numpy()) for k in ("nodes", "edges", "globals", "senders",
                                                                      "receivers")}
            tfeed = {k: torch.from_numpy(v.astype(np.int64) if v.dtype == np.int32 else v) for k, v in feed.items()}
            ofeed = {k: v.astype(np.int64) if v.dtype == np.int32 else v for k, v in feed.items()}
            targs = [tfeed[k] for k in ("nodes", "edges", "globals", "senders", "receivers")]
            # correctness first: pysofie against graph_nets, torch against graph_nets
            ref = tf_fn(g)[-1]
            got = sess.run(None, feed)
            scale = float(np.abs(ref.nodes.numpy()).max())
            err = float(np.abs(got[-3] - ref.nodes.numpy()).max()) / scale
            with torch.no_grad():
                terr = float(np.abs(tm(*targs)[-3].numpy() - ref.nodes.numpy()).max()) / scale

            def run_torch():
                with torch.no_grad():
                    tm(*targs)
            timer = interleaved if args.clock == "wall" else interleaved_cpu
            times = timer({"pysofie": lambda: sess.run(None, feed), "graph_nets_tf_function": lambda: tf_fn(g),
                           "pyg_eager": run_torch, "onnxruntime": lambda: ort.run(None, ofeed)},
                          reps=31, budget_s=args.budget)
            flops = model_flops(model, steps, n, e)
            row = {"nodes": n, "edges": e, **{f"{k}_s": v for k, v in times.items()},
                   "pysofie_cpp_s": cpp[(n, e)][0], "pysofie_cpp_cpu_s": cpp[(n, e)][1], "flops": flops,
                   "floor_s": flops / (sg * 1e9),
                   "executed_flops": executed_flops(gm.emitter.graph, n, e),
                   "rel_error_vs_graph_nets": err, "rel_error_torch_vs_graph_nets": terr}
            row["ratio_vs_ort"] = times["pysofie"] / times["onnxruntime"]
            row["ratio_vs_tf"] = times["pysofie"] / times["graph_nets_tf_function"]
            row["cpp_vs_floor"] = cpp[(n, e)][1] / row["floor_s"]  # CPU time: other work inflates wall time
            rows.append(row)
            print(f"({n:5d},{e:6d})  pysofie {times['pysofie'] * 1e3:8.3f} ms  C++ {cpp[(n, e)][0] * 1e3:8.3f} ms "
                  f"(CPU {cpp[(n, e)][1] * 1e3:8.3f} ms)  "
                  f"tf.function {times['graph_nets_tf_function'] * 1e3:8.3f} ms  PyG {times['pyg_eager'] * 1e3:8.3f} ms"
                  f"  ORT {times['onnxruntime'] * 1e3:8.3f} ms  floor {row['floor_s'] * 1e3:7.3f} ms  err {err:.1e}",
                  flush=True)
    meta = {"cpu": _cpu_name(), "machine": platform.machine(), "python": platform.python_version(),
            "latent": latent, "steps": steps, "layers": NUM_LAYERS, "sgemm_gflops": sg, "threads": 1,
            "generate_and_compile_s": gen_s, "tensorflow": tf.__version__, "torch": torch.__version__,
            "isa_flags": _isa(), "load_average_1min_at_start_end": [load0, os.getloadavg()[0]],
            "cpus": os.cpu_count(), "clock": args.clock}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_results(args.out, {"meta": meta, "rows": rows}, markdown(meta, rows))
    if not args.no_plot:
        plot(rows, args.out + ".png", meta)
    print(f"wrote {args.out}.json, .md" + ("" if args.no_plot else ", .png"))
    return 0


def markdown(meta, rows) -> str:
    out = [f"GNN benchmark (ROOT's encode-process-decode tutorial model, latent {meta['latent']}, "
           f"{meta['layers']}-layer MLPs, {meta['steps']} processing steps), one thread, {meta['cpu']} "
           f"({', '.join(meta['isa_flags'])}); sgemm {meta['sgemm_gflops']:.1f} GFLOP/s. Medians per call, ms"
           + (" of the process's CPU time (all its threads)" if meta.get("clock") == "cpu" else " (wall time)")
           + ", repetitions interleaved. "
           f"Load average during the run: {meta['load_average_1min_at_start_end'][0]:.1f} at the start, "
           f"{meta['load_average_1min_at_start_end'][1]:.1f} at the end, on {meta['cpus']} CPUs. "
           "FLOP floor: the model's dense-layer FLOPs as written (counted from its weights and the rows each MLP "
           "runs on: what ONNX Runtime runs on the export) at the BLAS's best single-thread sgemm speed; pysofie "
           "runs fewer (executed GFLOP: the edge MLPs' first layers over gathered node features run per node, and "
           "the products of the encoded graph with the core's first layers run once, not once per step). The C++ "
           "times are of the generated infer() in a standalone program, writing into output buffers allocated "
           "once per graph size: wall time, and the thread's CPU time (what the floor ratio and the growth use: "
           "other processes on the machine inflate wall time).", "",
           "| nodes | edges | pysofie (Python) | pysofie C++ | C++ CPU time | graph_nets tf.function | PyG eager "
           "| ONNX Runtime | pysofie / ORT | pysofie / TF | model GFLOP | executed GFLOP | C++ CPU / FLOP floor |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['nodes']} | {r['edges']} | {r['pysofie_s'] * 1e3:.3f} | {r['pysofie_cpp_s'] * 1e3:.3f} | "
                   f"{r['pysofie_cpp_cpu_s'] * 1e3:.3f} | "
                   f"{r['graph_nets_tf_function_s'] * 1e3:.3f} | {r['pyg_eager_s'] * 1e3:.3f} | "
                   f"{r['onnxruntime_s'] * 1e3:.3f} | {r['ratio_vs_ort']:.2f} | {r['ratio_vs_tf']:.2f} | "
                   f"{r['flops'] * 1e-9:.3f} | {r.get('executed_flops', float('nan')) * 1e-9:.3f} | "
                   f"{r['cpp_vs_floor']:.2f} |")
    big = {(r["nodes"], r["edges"]): r for r in rows}
    if (1000, 4000) in big and (5000, 20000) in big:
        g = big[(5000, 20000)]["pysofie_cpp_cpu_s"] / big[(1000, 4000)]["pysofie_cpp_cpu_s"]
        gw = big[(5000, 20000)]["pysofie_cpp_s"] / big[(1000, 4000)]["pysofie_cpp_s"]
        out += ["", f"Growth: C++ CPU time(5000, 20000) / time(1000, 4000) = {g:.2f} (wall time: {gw:.2f}; "
                "linear: 5)."]
    return "\n".join(out) + "\n"


def plot(rows, path, meta) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no chart)")
        return False
    x = [r["nodes"] + r["edges"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for key, label in [("pysofie_s", "pysofie (Python)"), ("pysofie_cpp_s", "pysofie C++"),
                       ("graph_nets_tf_function_s", "graph_nets tf.function"), ("pyg_eager_s", "PyG eager"),
                       ("onnxruntime_s", "ONNX Runtime"), ("floor_s", "FLOP floor (sgemm speed)")]:
        ax.loglog(x, [r[key] * 1e3 for r in rows], "o-" if key != "floor_s" else "k--", label=label)
    ax.set_xlabel("nodes + edges")
    ax.set_ylabel("time per graph (ms)")
    ax.set_title(f"GNN encode-process-decode, one thread\n{meta['cpu']}, load average "
                 f"{meta['load_average_1min_at_start_end'][0]:.0f} on {meta['cpus']} CPUs", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
