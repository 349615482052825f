"""Thread scaling of pysofie against onnxruntime with the same intra-op thread count (benchmarks/run.py
--scaling 1 2 4 8 16): ResNet-18 at batch 1 and 16 and rootbench's Conv_d100_L14_B32, interleaved repetitions,
medians. Thread counts above the usable CPUs are skipped (and said so)."""
from __future__ import annotations

import os

import numpy as np

SCALING_MODELS = ["resnet18", "resnet18_B16", "Conv_d100_L14_B32"]


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ort_session(model, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 1:
        # ORT's idle intra-op threads spin (busy-wait) after a run; with the two runtimes alternating call by call
        # on a machine with few cores, they take the cores pysofie's next run needs (measured on 2 cores: ResNet-18,
        # 2 threads, pysofie 17 ms alone, 39 ms right after ORT calls). Without spinning ORT alone was as fast
        # (17.9 vs 19.3 ms), so each side is timed as it runs when alone.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def scaling(models: list[str], counts: list[int], load_model, make_feeds, interleaved, budget: float,
            extra_flags=()) -> list[dict]:
    """Rows {model, threads, pysofie_s, ort_s, ratio, max_abs_diff}; each model compiled once (extra_flags
    appended to pysofie's compiler flags, as run.py's --isa gives them)."""
    import pysofie
    from pysofie.api import generate_code
    from pysofie.build.library import build_library
    rows = []
    cpus = usable_cpus()
    for name in models:
        model = load_model(name)
        feeds = make_feeds(name, model)
        gm = generate_code(model, weights="bin")
        lib = build_library([gm], extra_flags=list(extra_flags))
        for n in counts:
            if n > cpus:
                rows.append({"model": name, "threads": n, "status": f"skipped: {cpus} usable CPUs"})
                continue
            ps = pysofie.InferenceSession(None, _generated=gm, _library=lib, intra_op_num_threads=n)
            os_ = ort_session(model, n)
            ref, got = os_.run(None, feeds), ps.run(None, feeds)
            diff = float(max(np.max(np.abs(np.asarray(a, np.float64) - b)) for a, b in zip(got, ref)))
            t = interleaved({"pysofie": lambda: ps.run(None, feeds), "ort": lambda: os_.run(None, feeds)}, 15,
                            target_s=0.03, budget_s=budget)
            rows.append({"model": name, "threads": n, "pysofie_s": t["pysofie"], "ort_s": t["ort"],
                         "ratio": t["pysofie"] / t["ort"], "max_abs_diff": diff, "status": "ok"})
            print(f"{name:20s} {n:2d} threads: pysofie {t['pysofie'] * 1e3:9.2f} ms  ort {t['ort'] * 1e3:9.2f} ms  "
                  f"ratio {t['pysofie'] / t['ort']:.2f}", flush=True)
            del ps, os_
    return rows


def scaling_table(rows: list[dict]) -> str:
    lines = ["| model | threads | pysofie ms | ORT ms | pysofie/ORT | pysofie speed-up | ORT speed-up |",
             "|---|---|---|---|---|---|---|"]
    one = {r["model"]: r for r in rows if r.get("status") == "ok" and r["threads"] == 1}
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['model']} | {r['threads']} | {r['status']} | | | | |")
            continue
        b = one.get(r["model"])
        sp = f"{b['pysofie_s'] / r['pysofie_s']:.2f}" if b else "-"
        so = f"{b['ort_s'] / r['ort_s']:.2f}" if b else "-"
        lines.append(f"| {r['model']} | {r['threads']} | {r['pysofie_s'] * 1e3:.2f} | {r['ort_s'] * 1e3:.2f} | "
                     f"{r['ratio']:.2f} | {sp} | {so} |")
    return "\n".join(lines)
