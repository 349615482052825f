#!/usr/bin/env python
"""Time per node of a generated model: a profiling build whose infer() times every node function.

    python benchmarks/profile.py MODEL [--runs 20] [--threads 1] [--top 25] [--isa native|avx2]

MODEL: an .onnx path, a rootbench name, resnet18, or a configuration of benchmarks/transformer_models.py
(bert, gpt2, t5, vit, convnext, depthwise7x7). Prints the nodes by total time (median over runs), with their
operator and share of the whole, and the total per operator type. Times are the calling thread's CPU time with one
thread (robust on a busy machine), wall time with several. --isa avx2 builds it with -mno-avx512f (pysofie's
AVX2 kernels on an AVX-512 machine), as benchmarks/run.py --isa avx2.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def load(name: str):
    import onnx
    from run import ROOTBENCH, load_model, make_feeds
    if os.path.exists(name):
        m = onnx.load(name)
        return m, make_feeds(m, np.random.default_rng(0))
    from transformer_models import MODELS, build
    if name in MODELS:
        return build(name), MODELS[name].feeds()
    if name == "resnet18" or os.path.exists(os.path.join(ROOTBENCH, name + ".onnx")):
        m = load_model(name)
        return m, make_feeds(m, np.random.default_rng(0))
    raise SystemExit(f"unknown model {name}")


def instrument(header: str, out_path: str, cpu_time: bool = True) -> tuple[str, list[str]]:
    """The header with each node call of infer() timed; the timings go to out_path when the Session is
    destroyed (one line per node: name, nanoseconds per call list)."""
    lines = header.splitlines()
    calls = []
    out = []
    in_infer = False
    for ln in lines:
        s = ln.strip()
        if s.startswith("void infer(") and "const" in s:
            in_infer = True
        m = re.match(r"detail::(op\d+_\w+)\(", s) if in_infer else None
        if m:
            k = len(calls)
            calls.append(m.group(1))
            ind = ln[:len(ln) - len(ln.lstrip())]
            out.append(f"{ind}{{ const double t0_ = prof_now(); {s} fProf[{k}].push_back(prof_now() - t0_); }}")
            continue
        if in_infer and s.startswith("// Runs the model and returns"):
            in_infer = False
        if s == "struct Session {":
            out.append(ln)
            out.append("   std::vector<std::vector<double>> fProf = std::vector<std::vector<double>>(NPROF);")
            out.append("   ~Session() { std::FILE* f = std::fopen(PROF_PATH, \"w\"); if (!f) return; "
                       "for (size_t k = 0; k < fProf.size(); ++k) { std::fprintf(f, \"%zu\", k); "
                       "for (double t : fProf[k]) std::fprintf(f, \" %.0f\", t); std::fprintf(f, \"\\n\"); } "
                       "std::fclose(f); }")
            continue
        out.append(ln)
    text = "\n".join(out) + "\n"
    # CPU time of the calling thread (robust on a busy machine; with several threads: wall time instead)
    clock = "CLOCK_THREAD_CPUTIME_ID" if cpu_time else "CLOCK_MONOTONIC"
    text = ("#include <cstdio>\n#include <ctime>\n#include <vector>\n"
            f"static inline double prof_now() {{ timespec t; clock_gettime({clock}, &t); "
            "return t.tv_sec * 1e9 + t.tv_nsec; }\n") + text
    text = text.replace("NPROF", str(len(calls))).replace("PROF_PATH", '"' + out_path + '"')
    return text, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    from run import ISA_FLAGS
    ap.add_argument("--isa", choices=sorted(ISA_FLAGS), default="native")
    a = ap.parse_args()
    from pysofie.api import generate_code
    from pysofie.build.library import build_library
    from pysofie.session import InferenceSession
    model, feeds = load(a.model)
    gm = generate_code(model)
    fd, path = tempfile.mkstemp(suffix=".prof")
    os.close(fd)
    header, calls = instrument(gm.header, path, cpu_time=a.threads == 1)
    gm2 = dataclasses.replace(gm, header=header)
    lib = build_library([gm2], extra_flags=ISA_FLAGS[a.isa])
    sess = InferenceSession(None, _generated=gm2, _library=lib,
                            **({"intra_op_num_threads": a.threads} if a.threads != 1 else {}))
    for _ in range(a.runs + 2):
        sess.run(None, feeds)
    del sess
    import gc
    gc.collect()
    med = {}
    with open(path) as f:
        for ln in f:
            parts = ln.split()
            ts = [float(x) for x in parts[1:]][2:]  # the first calls warm up
            med[int(parts[0])] = float(np.median(ts)) if ts else 0.0
    os.unlink(path)
    total = sum(med.values())
    # the node's comment line above its function names the node and its shapes
    desc = {}
    for m in re.finditer(r"// ([^\n]*)\n\s*inline void (op\d+_\w+)\(", gm.header):
        desc[m.group(2)] = m.group(1)
    print(f"{a.model}: {total / 1e3:.1f} us per run over {len(calls)} nodes ({a.threads} thread(s), {a.isa})")
    by_op: dict[str, float] = {}
    for k, fn in enumerate(calls):
        op = fn.split("_", 1)[1]
        by_op[op] = by_op.get(op, 0.0) + med[k]
    for op, t in sorted(by_op.items(), key=lambda x: -x[1]):
        print(f"  {op:24s} {t / 1e3:10.1f} us  {100 * t / total:5.1f} %")
    print()
    for k in sorted(med, key=lambda k: -med[k])[:a.top]:
        print(f"  {med[k] / 1e3:10.1f} us {100 * med[k] / total:5.1f} %  {calls[k]}: {desc.get(calls[k], '')[:150]}")


if __name__ == "__main__":
    main()
