#!/usr/bin/env python
"""pysofie's CUDA back end against ONNX Runtime's CUDA execution provider, the rootbench models and ResNet-18 at
batch sizes 1, 16, 64, 256, 1024.

    python benchmarks/gpu.py [--batches 1 16 64 256 1024] [--models Linear_64 resnet18 ...] [--quick] [--dry-run]
                             [--out DIR] [--deadline SECONDS] [--report DIR/gpu.json]

Per model and batch size, in one process, repetitions interleaved, medians:
  cuda_device  pysofie CUDA, inputs and outputs on the device: the C++ ``infer`` timed in C++ (back-to-back runs,
               one wait at the end), so Python is not in it
  cuda_graph   the same, replaying a CUDA graph captured once (Session::infer_graph)
  cuda_host    pysofie CUDA from Python with numpy inputs and outputs (copies in and out, a wait per call)
  cuda_device_noepi, cuda_graph_noepi  the first two with cuBLASLt epilogues off (every product a cuBLAS call
               and a bias / activation kernel), for models with products that take an epilogue; measured
               interleaved with the two above (the "cuBLASLt epilogues" table compares them)
  cpu          pysofie C++ on the CPU (single thread, as benchmarks/run.py), where one call takes < 1 s
  ort_cuda     onnxruntime-gpu's CUDAExecutionProvider with I/O binding (device inputs and outputs), if installed
  ort_cpu      onnxruntime on the CPU (all cores), where one call takes < 1 s
The batch axis of every model input becomes a symbol, so one pysofie library serves every batch size; a model
whose graph fixes its batch (a Reshape to a constant shape) runs at its own batch only. Writes DIR/gpu.json,
gpu.md, gpu_batch.png (speed-up of cuda_device over the peers against batch size) and gpu_flops.png (against
model FLOPs). --dry-run: no GPU needed; checks the model preparation, FLOPs and the CPU columns at batch 1.
--deadline: no new measurement starts that many seconds after the start (the report is still written: a GPU
session's budget). --report: only write gpu.md and the plots again from a (partial) gpu.json.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from common import cpu_name as _cpu_name, pyplot, write_json  # noqa: E402
from run import available_models, load_model, model_flops  # noqa: E402

BATCHES = [1, 16, 64, 256, 1024]
CPU_LIMIT_S = 1.0  # CPU columns only where one call takes less than this


def symbolic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with axis 0 of every input and output named N (a copy)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    init = {i.name for i in m.graph.initializer}
    for v in list(m.graph.input) + list(m.graph.output):
        if v.name in init or not v.type.tensor_type.shape.dim:
            continue
        d = v.type.tensor_type.shape.dim[0]
        d.Clear()
        d.dim_param = "N"
    return m


def feeds_for(model: onnx.ModelProto, batch: int, rng) -> dict:
    init = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in init:
            continue
        dims = inp.type.tensor_type.shape.dim
        shape = [batch if k == 0 and d.dim_param else (d.dim_value if d.HasField("dim_value") else 1)
                 for k, d in enumerate(dims)]
        dt = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        feeds[inp.name] = rng.standard_normal(shape).astype(dt)
    return feeds


def interleaved(fns: dict, reps: int = 15, target_s: float = 0.02, budget_s: float = 3.0) -> dict:
    """Median seconds per call of each function, repetitions alternating between them (at least 3)."""
    return common.interleaved(fns, reps, target_s, budget_s, min_reps=3, warmup=1)


def _once(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def ort_cpu_session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ort_cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA / cuDNN from the nvidia-* wheels
        try:
            ort.preload_dlls()
        except Exception as e:
            print(f"onnxruntime.preload_dlls: {e}", flush=True)
    return True


def ort_cuda_runner(model, feeds: dict):
    """A closure running the model on ORT's CUDA EP with I/O binding (device inputs, device outputs)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CUDAExecutionProvider"])
    if sess.get_providers()[0] != "CUDAExecutionProvider":
        return None
    binding = sess.io_binding()
    for k, a in feeds.items():
        binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
    for o in sess.get_outputs():
        binding.bind_output(o.name, "cuda", 0)

    def run():
        sess.run_with_iobinding(binding)
    return run


def prepare(name: str):
    """(name, model with a symbolic batch or None, original model, its own batch)."""
    from pysofie.api import check
    model = load_model(name)
    first = model.graph.input[0].type.tensor_type.shape.dim
    own = first[0].dim_value if first and first[0].HasField("dim_value") else 1
    sym = symbolic_batch(model)
    try:
        ok = check(sym, target="cuda") == []
    except Exception:
        ok = False
    return name, (sym if ok else None), model, own


def build_all(prepared, dry: bool):
    """Compile every model for CUDA (unless dry) and the CPU, in parallel (nvcc and c++ are single-threaded)."""
    import pysofie
    from pysofie.api import check

    def cuda(item):
        name, sym, model, own = item
        m = sym if sym is not None else model
        if dry or check(m, target="cuda"):
            return None
        from pysofie.cuda_session import CudaInferenceSession
        return CudaInferenceSession(m, name=f"{name}_gpu")

    def cpu(item):
        name, sym, model, own = item
        try:
            return pysofie.InferenceSession(sym if sym is not None else model, name=f"{name}_cpu")
        except Exception as e:
            return e

    workers = max(1, min(16, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        gpu = list(ex.map(cuda, prepared))
        cpus = list(ex.map(cpu, prepared))
    return gpu, cpus


def bench(args) -> list[dict]:
    torch = None
    if not args.dry_run:
        import torch  # noqa: F811  (the device arrays for the device-resident runs)
        assert torch.cuda.is_available(), "benchmarks/gpu.py needs a CUDA GPU (or --dry-run)"
    first = ["Linear_64", "resnet18", "Conv_d100_L14_B32"]  # launch overhead and the large model first
    names = args.models or (["Linear_64", "Conv_d100_L14_B1", "resnet18"] if args.quick else
                            [m for m in first if m in available_models()]
                            + [m for m in available_models() if m not in first])
    prepared = [prepare(n) for n in names]
    t0 = time.perf_counter()
    gpu_sessions, cpu_sessions = build_all(prepared, args.dry_run)
    print(f"compiled {len(names)} models in {time.perf_counter() - t0:.0f} s", flush=True)
    use_ort_cuda = ort_cuda_available() and not args.dry_run
    rows = []
    rng = np.random.default_rng(0)
    last: dict = {}  # (model, column) -> (batch, seconds of one call)

    def seen(model, col, batch, secs):
        last[(model, col)] = (batch, secs)
        return secs

    def cpu_ok(model, col, batch):
        prev = last.get((model, col))
        return prev is None or prev[1] * batch / prev[0] < CPU_LIMIT_S
    skipped = []
    for (name, sym, model, own), gs, cs in zip(prepared, gpu_sessions, cpu_sessions):
        from pysofie.api import load
        flops1, kind = model_flops(load(sym if sym is not None else model, target="cuda"))
        for b in (args.batches if sym is not None else [own]):
            if args.deadline and time.monotonic() - args.t_start > args.deadline:
                skipped.append(f"{name}@{b}")
                continue
            row = {"model": name, "batch": b, "flops": flops1 * (b if sym is not None else 1), "kind": kind}
            m = sym if sym is not None else model
            feeds = feeds_for(m, b, rng)
            fns = {}
            if gs is not None:
                dev_in = {k: torch.from_numpy(a).cuda() for k, a in feeds.items()}
                outs = gs.run(None, feeds)  # shapes (and a first check of the results against the CPU below)
                dev_out = {o.name: torch.empty(a.shape, dtype=torch.float32, device="cuda")
                           for o, a in zip(gs.get_outputs(), outs)}
                iters = max(3, min(200, int(0.05 / max(gs.time_device(dev_in, dev_out, 1), 1e-6))))
                fns["cuda_device"] = lambda gs=gs, i=dev_in, o=dev_out, n=iters: gs.time_device(i, o, n)
                fns["cuda_graph"] = lambda gs=gs, i=dev_in, o=dev_out, n=iters: gs.time_device(i, o, n, graphs=True)
                fns["cuda_host"] = lambda gs=gs, f=feeds: gs.run(None, f)
            # the CPU columns stop where the previous batch size, scaled, would pass the limit (no trial call)
            if not isinstance(cs, Exception) and cpu_ok(name, "cpu", b) and \
                    seen(name, "cpu", b, _once(lambda: cs.run(None, feeds))) < CPU_LIMIT_S:
                fns["cpu"] = lambda cs=cs, f=feeds: cs.run(None, f)
                if gs is not None:
                    ref = cs.run(None, feeds)
                    got = gs.run(None, feeds)
                    row["max_abs_diff_vs_cpu"] = float(max(np.max(np.abs(a - r)) for a, r in zip(got, ref)))
            oc = ort_cpu_session(m) if cpu_ok(name, "ort_cpu", b) else None
            if oc is not None and seen(name, "ort_cpu", b, _once(lambda: oc.run(None, feeds))) < CPU_LIMIT_S:
                fns["ort_cpu"] = lambda oc=oc, f=feeds: oc.run(None, f)
            if use_ort_cuda:
                r = ort_cuda_runner(m, feeds)
                if r is not None:
                    fns["ort_cuda"] = r
            timed = {}
            # cuda_device returns its own C++-timed seconds per run; the others are timed here
            if gs is not None:
                timed.update(device_columns(gs, feeds, fns, row))
            if fns:
                timed.update(interleaved(fns, budget_s=args.budget))
            row.update({k: v for k, v in timed.items()})
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.partial:  # a run cut short still leaves what it measured
                write_json(args.partial, {"meta": {"partial": True, "gpu": gpu_name()}, "rows": rows})
    if skipped:
        print(f"deadline ({args.deadline:.0f} s) reached: not measured: {', '.join(skipped)}", flush=True)
    args.skipped = skipped
    return rows


def device_columns(gs, feeds, fns: dict, row: dict, reps: int = 7) -> dict:
    """Median seconds of the C++-timed device columns (taken out of fns): cuda_device and cuda_graph, and, where
    products of the model run with a cuBLASLt epilogue, the same with epilogues off; the columns alternate
    run by run. Errors go into row[col + "_error"]; epilogues are left on."""
    base = {c: fns.pop(c) for c in ("cuda_device", "cuda_graph") if c in fns}
    cols = [(c, c, True) for c in base]
    row["epilogue_products"] = epilogue_products_per_call(gs, feeds)
    if row["epilogue_products"]:
        cols += [(c + "_noepi", c, False) for c in base]
    samples: dict = {col: [] for col, _, _ in cols}
    for _ in range(reps):
        for col, fn, on in cols:
            if col not in samples:
                continue
            try:
                if row["epilogue_products"]:
                    gs.set_epilogues(on)
                samples[col].append(base[fn]())
            except Exception as e:  # recorded, the other columns still run
                row[f"{col}_error"] = str(e)[:300]
                samples.pop(col)
    gs.set_epilogues(True)
    return {col: statistics.median(v) for col, v in samples.items() if v}


def epilogue_products_per_call(gs, feeds) -> int:
    """How many of the model's products run as one cuBLASLt call with their epilogue (0: none take one, or
    cuBLASLt offered no algorithm for them)."""
    try:
        gs.set_epilogues(True)
        before = gs.epilogue_products
        gs.run(None, feeds)
        return gs.epilogue_products - before
    except Exception as e:
        print(f"epilogue count: {e}", flush=True)
        return 0


def epilogue_table(rows: list[dict]) -> str:
    """Best device-resident time with cuBLASLt epilogues and without, for the rows that measured both."""
    both = [r for r in rows if best_cuda(r) and best_cuda(r, "_noepi")]
    if not both:
        return ("## cuBLASLt epilogues\n\nNo row measured both (no model product took an epilogue, or no GPU).\n")
    out = ["## cuBLASLt epilogues", "",
           "Best of infer / CUDA graph, device-resident; epilogues off: cuBLAS + a bias / activation kernel.", "",
           "| model | batch | products with epilogue per call | on | off | off / on |", "|---|---:|---:|---:|---:|---:|"]
    for r in both:
        on, off = best_cuda(r), best_cuda(r, "_noepi")
        out.append(f"| {r['model']} | {r['batch']} | {r['epilogue_products']} | {fmt(on)} | {fmt(off)} | "
                   f"{off / on:.2f} |")
    ratios = [best_cuda(r, "_noepi") / best_cuda(r) for r in both]
    gm = float(np.exp(np.mean(np.log(ratios))))
    out += ["", f"Geometric mean of off / on: {gm:.3f} over {len(both)} rows (> 1: the epilogues help)."]
    return "\n".join(out) + "\n"


def best_cuda(r: dict, suffix: str = ""):
    """pysofie CUDA's device-resident time: with or without graphs, whichever is faster (suffix "_noepi": with
    cuBLASLt epilogues off)."""
    ts = [r[c + suffix] for c in ("cuda_device", "cuda_graph") if r.get(c + suffix)]
    return min(ts) if ts else None


def fmt(s):
    return "-" if s is None else (f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.2f} ms")


def table(rows: list[dict]) -> str:
    cols = ["cuda_device", "cuda_graph", "cuda_host", "ort_cuda", "cpu", "ort_cpu"]
    out = ["| model | batch | GFLOP | " + " | ".join(cols) + " | ORT CUDA / best pysofie CUDA |",
           "|---|---:|---:|" + "---:|" * len(cols) + "---:|"]
    for r in rows:
        ratio = f"{r['ort_cuda'] / best_cuda(r):.2f}" if r.get("ort_cuda") and best_cuda(r) else "-"
        out.append(f"| {r['model']} | {r['batch']} | {r['flops'] / 1e9:.3f} | "
                   + " | ".join(fmt(r.get(c)) for c in cols) + f" | {ratio} |")
    return "\n".join(out)


LAUNCH_TARGET_S = 30e-6  # issue 12: Linear_64 at batch 1 below 30 µs per call
VERDICT_BATCH = 64  # issue 12: pysofie CUDA at or below ONNX Runtime CUDA for every model at batch >= this


def verdict(rows: list[dict]) -> dict:
    """What issue 12 asks, from the rows: every model at batch >= 64 at or below ORT CUDA's time (best of
    cuda_device / cuda_graph), and Linear_64's time per call at batch 1."""
    big = [r for r in rows if r["batch"] >= VERDICT_BATCH or (r["model"] not in {q["model"] for q in rows
                                                                                 if q["batch"] >= VERDICT_BATCH})]
    compared = [r for r in big if r.get("ort_cuda") and best_cuda(r)]
    slower = [f"{r['model']}@{r['batch']}: {fmt(best_cuda(r))} vs ORT CUDA {fmt(r['ort_cuda'])}"
              for r in compared if best_cuda(r) > r["ort_cuda"]]
    missing = sorted({r["model"] for r in big if not (r.get("ort_cuda") and best_cuda(r))})
    lin = next((r for r in rows if r["model"] == "Linear_64" and r["batch"] == 1 and best_cuda(r)), None)
    return {"batch_ge_64_compared": len(compared), "batch_ge_64_slower_than_ort_cuda": slower,
            "batch_ge_64_not_compared": missing,
            "linear64_b1_s": best_cuda(lin) if lin else None,
            "linear64_b1_below_30us": (best_cuda(lin) < LAUNCH_TARGET_S) if lin else None}


def verdict_md(v: dict) -> str:
    lines = ["## Issue 12's targets", ""]
    if v["batch_ge_64_compared"]:
        ok = not v["batch_ge_64_slower_than_ort_cuda"]
        lines.append(f"- batch >= {VERDICT_BATCH} (models with a fixed batch: their own): {v['batch_ge_64_compared']} "
                     f"rows compared with ORT CUDA, pysofie CUDA at or below it in "
                     f"{'all' if ok else 'not all'} of them"
                     + ("" if ok else ": " + "; ".join(v["batch_ge_64_slower_than_ort_cuda"])))
    else:
        lines.append(f"- batch >= {VERDICT_BATCH}: no row compared with ORT CUDA (onnxruntime-gpu missing?)")
    if v["batch_ge_64_not_compared"]:
        lines.append(f"- not compared (a column missing): {', '.join(v['batch_ge_64_not_compared'])}")
    if v["linear64_b1_s"] is not None:
        lines.append(f"- Linear_64 at batch 1: {fmt(v['linear64_b1_s'])} per call "
                     f"({'below' if v['linear64_b1_below_30us'] else 'NOT below'} the 30 µs target)")
    else:
        lines.append("- Linear_64 at batch 1: not measured")
    return "\n".join(lines) + "\n"


def plots(rows: list[dict], out_dir: str) -> list[str]:
    plt = pyplot(quiet=True)
    if plt is None:
        return []
    peers = [p for p in ("ort_cuda", "ort_cpu", "cpu") if any(r.get(p) and best_cuda(r) for r in rows)]
    written = []
    for x_key, fname, xlabel in (("batch", "gpu_batch.png", "batch size"),
                                 ("flops", "gpu_flops.png", "model FLOPs per call")):
        fig, axes = plt.subplots(1, max(1, len(peers)), figsize=(6 * max(1, len(peers)), 4.5), squeeze=False)
        for ax, peer in zip(axes[0], peers):
            for model in dict.fromkeys(r["model"] for r in rows):
                pts = [(r[x_key], r[peer] / best_cuda(r)) for r in rows
                       if r["model"] == model and r.get(peer) and best_cuda(r) and r[x_key]]
                if pts:
                    xs, ys = zip(*sorted(pts))
                    ax.plot(xs, ys, marker="o", label=model)
            ax.axhline(1.0, color="grey", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"speed-up of pysofie CUDA over {peer}")
            ax.legend(fontsize=6)
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _ort_version() -> str:
    try:
        import onnxruntime
        return onnxruntime.__version__
    except ImportError:
        return "not installed"


def gpu_name() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return "no GPU"


def markdown(meta: dict, rows: list[dict]) -> str:
    v = meta.get("verdict") or verdict(rows)
    head = (f"# pysofie CUDA benchmark\n\nGPU: {meta.get('gpu')}; CPU: {meta.get('cpu', '?')}; {meta.get('nvcc', '?')}; "
            f"onnxruntime CUDA EP: {'yes' if meta.get('ort_cuda') else 'not installed'}; {meta.get('time', '?')}\n\n")
    if meta.get("partial"):
        head += "**Partial**: the run stopped early; these are the rows it measured.\n\n"
    if meta.get("not_measured_deadline"):
        head += f"Not measured (deadline): {', '.join(meta['not_measured_deadline'])}\n\n"
    return f"{head}{table(rows)}\n\n{verdict_md(v)}\n{epilogue_table(rows)}"


def report_only(path: str) -> int:
    """gpu.md and the plots from a gpu.json (a partial one from a run cut short included)."""
    with open(path) as f:
        data = json.load(f)
    rows, meta = data.get("rows", []), data.get("meta", {})
    out_dir = os.path.dirname(os.path.abspath(path))
    md = markdown(meta, rows)
    common.write_results(os.path.join(out_dir, os.path.basename(path)[:-5]), {"meta": meta, "rows": rows}, md)
    print(md)
    for p in plots(rows, out_dir):
        print("wrote", p)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=BATCHES)
    ap.add_argument("--models", nargs="+")
    ap.add_argument("--quick", action="store_true", help="Linear_64, Conv_d100_L14_B1 and resnet18 only")
    ap.add_argument("--dry-run", action="store_true", help="no GPU: preparation, FLOPs and CPU columns, batch 1")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per model and batch size")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--deadline", type=float, default=0.0,
                    help="seconds after the start when no new measurement begins (0: none)")
    ap.add_argument("--report", metavar="JSON", help="only write the Markdown and plots from this gpu.json")
    args = ap.parse_args(argv)
    args.t_start = time.monotonic()
    if args.report:
        return report_only(args.report)
    if args.dry_run:
        args.batches = [1]
    tag = "gpu_dry" if args.dry_run else "gpu"
    os.makedirs(args.out, exist_ok=True)
    args.partial = os.path.join(args.out, f"{tag}.json")
    rows = bench(args)
    from pysofie.build.cuda import nvcc_version, find_nvcc
    try:
        nvcc = nvcc_version(find_nvcc())
    except Exception as e:
        nvcc = f"unavailable ({e})"
    meta = {"gpu": gpu_name(), "cpu": _cpu_name(), "machine": platform.machine(), "nvcc": nvcc,
            "ort_cuda": ort_cuda_available(), "onnxruntime": _ort_version(), "dry_run": args.dry_run,
            "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    meta["verdict"] = verdict(rows)
    meta["not_measured_deadline"] = getattr(args, "skipped", [])
    md = markdown(meta, rows)
    common.write_results(os.path.join(args.out, tag), {"meta": meta, "rows": rows}, md)
    print(md)
    if not args.dry_run:
        for p in plots(rows, args.out):
            print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
