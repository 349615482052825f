#!/usr/bin/env python
"""What RDataFrame's TTree event loop does to the L1 data cache of the functor it calls, in valgrind's cache
simulator (cachegrind: a 32 KB, 8-way, 64-byte-line L1 data cache with LRU replacement, like the 32 KB L1 of the
machines of benchmarks/rdf.py).

    python benchmarks/rdf_cachesim.py [--events 10000,40000] [--out benchmarks/results/rdf_cachesim]

Needs g++, valgrind (not from PyPI: `apt install valgrind`) and ROOT (`pip install root`). A C++ program (g++ -O2,
no cling, no Python in the event loop) runs the event loop of benchmarks/rdf.py: a TTree of 8 float columns,
pysofie::SofieFunctor over them, the Sum of its output, one slot. The sessions are synthetic, not models
(valgrind does not run AVX-512 code, which pysofie's kernels use where the CPU has it): one that does nothing,
and ones that read one float from each 64-byte line of a 4, 8 or 16 KB array per event (the weights of a model,
read in the same order every event). Each runs under cachegrind for two event counts; the difference divided by
the difference of events is the cost per event, without ROOT's start-up and the building of the graph.

For each session the table gives the data references and L1 data misses per event in all, and the misses of
the session's own reads (its function is kept out of line so that cachegrind counts it apart): with RDataFrame's
per-event working set in the same cache, how many of its lines come back from L2 each event. Writes
<out>.json and <out>.md.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import run_meta, write_results  # noqa: E402

NCOL = 8
SESSIONS = {"nothing": "NullSession", "4 KB": "Touch<4>", "8 KB": "Touch<8>", "16 KB": "Touch<16>"}
L1 = "32768,8,64"  # 32 KB, 8-way, 64-byte lines

SOURCE = r"""
#include "ROOT/RDataFrame.hxx"
#include "pysofie/SofieFunctor.hxx"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
struct NullSession {
   NullSession() {}
   explicit NullSession(const std::string&) {}
   void infer(std::size_t, const float*, float*) {}
};
// one float of each 64-byte line of a KB-kilobyte array, in order, every event
template <int KB>
struct Touch {
   std::vector<float> w = std::vector<float>(KB * 256, 0.001f);
   explicit Touch(const std::string& = "") {}
   __attribute__((noinline)) void infer(std::size_t, const float* x, float* y) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (std::size_t i = 0; i < w.size(); i += 64) { s0 += w[i]; s1 += w[i + 16]; s2 += w[i + 32]; s3 += w[i + 48]; }
      y[0] = x[0] + s0 + s1 + s2 + s3;
   }
};
template <class S>
double Run(const char* file, long n) {
   ROOT::RDataFrame d0("events", file);
   using F = pysofie::SofieFunctor<S, float, float, float, float, float, float, float, float, float, float>;
   F f(1, 1, "");
   auto d = d0.Range(n).DefineSlot("score", f, {"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"});
   return d.Define("s0", [](const ROOT::RVecF& v) { return double(v[0]); }, {"score"})
      .template Sum<double>("s0").GetValue();
}
int main(int argc, char** argv) {
   if (argc != 4) return 2;
   const std::string s = argv[1];
   const long n = std::atol(argv[3]);
   double v = s == "NullSession" ? Run<NullSession>(argv[2], n)
            : s == "Touch<4>"    ? Run<Touch<4>>(argv[2], n)
            : s == "Touch<8>"    ? Run<Touch<8>>(argv[2], n)
            : s == "Touch<16>"   ? Run<Touch<16>>(argv[2], n)
                                 : -1.0;
   std::printf("%g\n", v);
   return v == -1.0;
}
"""


def root_paths(ROOT) -> tuple[str, str, list[str]]:
    inc = str(ROOT.gROOT.GetIncludeDir())
    lib = str(ROOT.gROOT.GetLibDir())
    extra = []  # the PyPI wheel keeps the libraries ROOT's own depend on next to the package
    wheel_libs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(ROOT.__file__))), "root.libs")
    if os.path.isdir(wheel_libs):
        extra = [f"-Wl,-rpath-link,{wheel_libs}"]
    return inc, lib, extra


def build(work: str, ROOT) -> str:
    import pysofie.root as pr
    inc, lib, extra = root_paths(ROOT)
    src = os.path.join(work, "cachesim.cpp")
    with open(src, "w") as f:
        f.write(SOURCE)
    exe = os.path.join(work, "cachesim")
    cmd = ["g++", "-O2", "-g", "-std=c++17", "-pthread", src, "-o", exe, f"-I{inc}", f"-I{pr.include_dir()}",
           f"-L{lib}", f"-Wl,-rpath,{lib}", *extra, "-Wl,--allow-shlib-undefined",
           "-lCore", "-lImt", "-lRIO", "-lTree", "-lTreePlayer", "-lROOTVecOps", "-lROOTDataFrame", "-lMathCore",
           "-lThread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"compiling the event loop failed:\n{' '.join(cmd)}\n{r.stderr[-3000:]}")
    return exe


def load(path: str):
    """cachegrind output: {event: total}, {function: {event: count}}"""
    events, fn = None, None
    total, per = collections.Counter(), collections.defaultdict(collections.Counter)
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("fn="):
                fn = line[3:].strip()
            elif line[:1].isdigit() and events:
                vals = [int(v) for v in line.split()[1:]]
                for e, v in zip(events, vals):
                    per[fn][e] += v
                    total[e] += v
    return total, per


def markdown(meta: dict, rows: dict) -> str:
    n1, n2 = meta["events"]
    base = rows["nothing"]["l1d_misses"]
    lines = [f"<!-- generated by benchmarks/rdf_cachesim.py on {meta['date']}, {meta['cpu']} "
             f"({', '.join(meta['isa'])}), ROOT {meta['root']} -->",
             f"RDataFrame over a TTree of {NCOL} float columns, pysofie::SofieFunctor with synthetic sessions, one "
             "slot, in valgrind's cache simulator (L1 data cache of 32 KB, 8-way, 64-byte lines, LRU: the same "
             f"on any CPU; this run's host: {meta['cpu']}); per event, from the difference of two runs "
             f"({n1} and {n2} events).", "",
             "| session (per event) | instructions | data references | L1d misses, all | above the do-nothing "
             "session | the session's own reads | of which L1d misses |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r in rows.items():
        lines.append(f"| {'reads ' + label if label != 'nothing' else 'does nothing'} | {r['instructions']:.0f} | "
                     f"{r['data_refs']:.0f} | {r['l1d_misses']:.1f} | {r['l1d_misses'] - base:.1f} | "
                     f"{r['session_reads']:.0f} | {r['session_misses']:.1f} |")
    lines += ["", "The do-nothing row is RDataFrame's own per-event work over the TTree (8 TTreeReader columns, the "
              "Define, the Sum). A session's lines that miss come back from L2 every event; the misses above the "
              "do-nothing row that are not the session's own are RDataFrame's lines that the session evicted."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="10000,40000", help="the two event counts (comma-separated)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "rdf_cachesim"))
    args = ap.parse_args(argv)
    n1, n2 = (int(v) for v in args.events.split(","))
    if not n2 > n1 > 0:
        raise SystemExit("--events: two counts, the second larger")
    for tool in ("g++", "valgrind"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on the PATH (valgrind: apt install valgrind)")
    import numpy as np
    import ROOT
    work = tempfile.mkdtemp(prefix="pysofie-cachesim-")
    path = os.path.join(work, "events.root")
    rng = np.random.default_rng(1)
    data = {f"x{k}": rng.standard_normal(n2).astype(np.float32) for k in range(NCOL)}
    opts = ROOT.RDF.RSnapshotOptions()
    opts.fAutoFlush = 10_000  # as benchmarks/rdf.py
    ROOT.RDF.FromNumpy(data).Snapshot("events", path, list(data), opts)
    exe = build(work, ROOT)
    rows = {}
    for label, cls in SESSIONS.items():
        counts = []
        for n in (n1, n2):
            out = os.path.join(work, f"cg.{len(rows)}.{n}")
            r = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--D1={L1}", f"--I1={L1}",
                                "--LL=1048576,8,64", f"--cachegrind-out-file={out}", exe, cls, path, str(n)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"{cls}: the event loop under valgrind failed:\n{r.stderr[-3000:]}")
            counts.append(load(out))
        (t1, p1), (t2, p2) = counts
        dn = n2 - n1

        def per_event(a, b, e):
            return (b[e] - a[e]) / dn
        own = [f for f in p2 if "::infer(" in f and "Touch" in f]
        own_misses = sum(per_event(p1[f], p2[f], "D1mr") for f in own)
        own_refs = sum(per_event(p1[f], p2[f], "Dr") for f in own)
        rows[label] = {"session": cls, "instructions": per_event(t1, t2, "Ir"),
                       "data_refs": per_event(t1, t2, "Dr") + per_event(t1, t2, "Dw"),
                       "l1d_misses": per_event(t1, t2, "D1mr") + per_event(t1, t2, "D1mw"),
                       "session_reads": own_refs, "session_misses": own_misses}
        print(f"{label}: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[label].items() if k != "session"),
              flush=True)
    meta = run_meta("benchmarks/rdf_cachesim.py", argv, root=ROOT.gROOT.GetVersion(), events=[n1, n2], l1d=L1)
    md = markdown(meta, rows)
    write_results(args.out, {"meta": meta, "sessions": rows}, md)
    print("\n" + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
