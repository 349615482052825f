"""ONNX conformance measured the standard way: onnx's backend node tests through the plain Backend API.

    python -m pysofie.conformance_std [--report DIR] [--filter REGEX] [--every N] [--jobs N] [--no-ort]

For every case of ``onnx.backend.test.loader.load_model_tests(kind="node")`` this does what onnx's backend test
runner does, with nothing fixed in advance: ``rep = backend.prepare(model, "CPU")``, then for each data set
``rep.run(inputs)`` and ``onnx.backend.test.runner.Runner.assert_similar_outputs`` at the case's rtol/atol. It
does so for ``pysofie.backend`` and, in the same run, for onnxruntime's own backend (``onnxruntime.backend``).

Shape-determining inputs arrive at ``run``, where pysofie generates code for their values (pysofie.specialize).
The machinery of ``pysofie.conformance`` is reused: forked workers (a crash costs only its case) and, for speed,
the models of a batch are prepared inside ``pysofie.backend.deferred_compilation`` so that they compile into one
shared library (the same code as one prepare each; only the compiler runs fewer times).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from typing import Any, Callable, Optional

import numpy as np

from . import conformance as C

ORT = "onnxruntime"
PYSOFIE = "pysofie"


def _classify(e: BaseException, stage: str) -> dict:
    if isinstance(e, NotImplementedError):
        return {"status": "unsupported", "reason": C._unsupported_reason(e), "stage": stage}
    from .errors import CompileError
    if isinstance(e, CompileError):
        return {"status": "error", "reason": C._compile_reason(e), "stage": stage}
    return {"status": "error", "reason": C._short(e), "stage": stage}


def evaluate_rep(rep, case) -> dict:
    """Run a prepared backend rep over the case's data sets as onnx's runner does: a record {status, reason,
    stage}."""
    from onnx.backend.test.runner import Runner, _normalize_tensor  # noqa: PLC2701
    if isinstance(rep, BaseException):
        return _classify(rep, "prepare")
    for inputs, refs in case.data_sets:
        inputs_ = [_normalize_tensor(a) for a in inputs]
        refs_ = [_normalize_tensor(a) for a in refs]
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                outs = rep.run(inputs_)
        except Exception as e:
            return _classify(e, "run")
        try:
            Runner.assert_similar_outputs(refs_, list(outs), rtol=case.rtol, atol=case.atol)
        except Exception as e:  # AssertionError, or a TypeError for outputs of the wrong kind
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            return {"status": "fail", "reason": f"{type(e).__name__}: " + " ".join(lines[:4])[:400],
                    "stage": "compare"}
    rec = {"status": "pass", "reason": "", "stage": ""}
    if _folded(rep, case):
        rec["folded"] = True
    return rec


def _folded(rep, case) -> bool:
    """Whether pysofie specialized the model for values given at run and nothing of the tested computation was
    left to generate (onnx's reference evaluator computed it while folding constants): counted as a pass, as
    onnx's runner does, but reported apart."""
    s = getattr(rep, "session", None)
    s = getattr(s, "session", s)  # a deferred one, once compiled
    tested = {n.op_type for n in case.model.graph.node} - {"Constant"}

    def leaves(sess):
        lazy = getattr(sess, "_lazy", None)
        if lazy is None:
            return [sess]
        return [x for entry in lazy.cache.values() for x in leaves(entry[0])]

    if getattr(s, "_lazy", None) is None:
        return False
    graphs = [getattr(x, "_gm", None) for x in leaves(s)]
    return bool(graphs) and all(g is not None and not tested & {n.op_type for n in g.emitter.graph.nodes}
                                for g in graphs)


def _prepare(backend, case, **kw):
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return backend.prepare(case.model, "CPU", **kw)
    except Exception as e:
        return e


def _worker(indices: list[int], skip: set[int], out_path: str, opt_level) -> None:
    """Runs in a forked process. Indices below N are pysofie cases, N + k is case k through onnxruntime."""
    import faulthandler
    if faulthandler.is_enabled():
        faulthandler.disable()
    cases, n = C._STATE["cases"], len(C._STATE["cases"])
    mine = [i for i in indices if i < n]
    ort = [i for i in indices if i >= n]
    reps: dict[int, Any] = {}
    with open(out_path, "a", buffering=1) as f:
        if mine:
            from . import backend
            # every case of the batch is prepared (also the ones done before a crash): the same library again
            with backend.deferred_compilation(opt_level=opt_level, chunk=len(mine)) as pool:
                for i in mine:
                    reps[i] = _prepare(backend, cases[i])
                try:
                    pool.compile()
                except Exception as e:  # per-model errors are kept by the pool; this concerns the batch
                    for i in mine:
                        reps[i] = e
        if ort:
            import onnxruntime
            import onnxruntime.backend as ort_backend
            onnxruntime.set_default_logger_severity(3)  # errors are classified here, not printed
        for i in indices:
            if i in skip:
                continue
            f.write(json.dumps({"i": i, "start": time.time()}) + "\n")
            f.flush()
            if i < n:
                rec = evaluate_rep(reps[i], cases[i])
            else:
                rep = _prepare(ort_backend, cases[i - n], intra_op_num_threads=1)
                rec = evaluate_rep(rep, cases[i - n])
            f.write(json.dumps({"i": i, **rec}) + "\n")
            f.flush()


def run_standard(pattern: Optional[str] = None, *, every: int = 1, jobs: Optional[int] = None,
                 batch_size: int = 48, opt_level=1, case_timeout: float = 600.0, compile_timeout: float = 1800.0,
                 with_ort: bool = True, log: Optional[Callable[[str], None]] = None
                 ) -> dict[str, C.ConformanceReport]:
    """{"pysofie": report, "onnxruntime": report} over the node cases (every `every`-th, by name order)."""
    log = log or (lambda s: None)
    t0 = time.time()
    cases = C.load_cases(pattern)[::max(1, every)]
    n = len(cases)
    log(f"{n} cases loaded ({time.time() - t0:.1f} s)")
    indices = list(range(n)) + ([n + k for k in range(n)] if with_ort else [])
    C._STATE.update(cases=cases, graphs={}, worker=_worker,
                    name_of=lambda i: cases[i % n].name + (" (onnxruntime)" if i >= n else ""))
    try:
        recs = C.run_batches(indices, jobs=jobs or max(1, os.cpu_count() or 1), batch_size=batch_size,
                             opt_level=opt_level, case_timeout=case_timeout, compile_timeout=compile_timeout,
                             log=log)
    finally:
        C._STATE.clear()
    out = {}
    for label, off in ((PYSOFIE, 0), (ORT, n)):
        if label == ORT and not with_ort:
            continue
        results = {}
        for k, c in enumerate(cases):
            r = C.CaseResult(c.name, C.case_op(c))
            rec = recs.get(k + off) or {"status": "error", "reason": "no result came back from the worker",
                                        "stage": "run"}
            r.status, r.reason, r.stage = rec["status"], rec.get("reason", ""), rec.get("stage", "")
            if rec.get("folded"):
                r.constant_inputs = ("folded",)  # (see _folded)
            results[c.name] = r
        out[label] = C.ConformanceReport(results, time.time() - t0)
    return out


def to_markdown(reports: dict[str, C.ConformanceReport], every: int = 1) -> str:
    import onnx
    p = reports[PYSOFIE]
    lines = ["# ONNX node tests through the standard Backend API", "",
             f"onnx {onnx.__version__}, {p.totals()['total']} cases"
             + (f" (every {every}th by name)" if every > 1 else "") + f", {p.seconds:.0f} s "
             "(`python -m pysofie.conformance_std`): `prepare(model)` then `run(inputs)` for each data set, "
             "compared by onnx's `Runner.assert_similar_outputs`.", "",
             "| status | " + " | ".join(reports) + " |", "|---|" + "---|" * len(reports)]
    for s in C.STATUSES + ("total",):
        lines.append(f"| {s} | " + " | ".join(str(r.totals()[s]) for r in reports.values()) + " |")
    folded = sorted(n for n, r in p.results.items() if r.status == "pass" and r.constant_inputs == ("folded",))
    lines += ["", f"{len(folded)} of pysofie's passing cases take shape-determining values at `run` whose "
              "specialization leaves nothing of the tested operator to generate (onnx's reference evaluator computes "
              "it while folding constants): " + ", ".join(f"`{n}`" for n in folded) + "." if folded else
              "No passing case folds entirely at generation time."]
    if ORT in reports:
        o = reports[ORT]
        only_p = sorted(n for n, r in p.results.items() if r.status == "pass" and o.results[n].status != "pass")
        only_o = sorted(n for n, r in o.results.items() if r.status == "pass" and p.results[n].status != "pass")
        lines += ["", f"Pass with pysofie only: {len(only_p)}; with onnxruntime only: {len(only_o)}."]
        if only_o:
            lines += ["", "## Passing with onnxruntime, not with pysofie", ""]
            lines += [f"- `{nm}` ({p.results[nm].status}): {' '.join(p.results[nm].reason.split())[:240]}"
                      for nm in only_o]
    for status in ("fail", "error", "crash"):
        rs = [r for r in p.results.values() if r.status == status]
        if rs:
            lines += ["", f"## pysofie {status} ({len(rs)})", ""]
            lines += [f"- `{r.name}` ({r.op}): {' '.join(r.reason.split())[:300]}" for r in sorted(rs, key=lambda r: r.name)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pysofie.conformance_std",
                                 description="onnx's node tests through pysofie.backend and onnxruntime.backend "
                                             "(prepare/run only).")
    ap.add_argument("--report", metavar="DIR", help="write conformance_std.json and conformance_std.md into DIR")
    ap.add_argument("--filter", metavar="REGEX", help="only cases whose name matches REGEX (re.search)")
    ap.add_argument("--every", type=int, default=1, help="every N-th case by name (default: all)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    ap.add_argument("--batch-size", type=int, default=48, help="models compiled into one library (default 48)")
    ap.add_argument("--opt", default="1", help="C++ optimization level (default 1)")
    ap.add_argument("--case-timeout", type=float, default=600.0,
                    help="seconds one case may take, including compiling the code specialized for its values "
                         "(default 600)")
    ap.add_argument("--no-ort", action="store_true", help="do not run onnxruntime's backend")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the totals")
    args = ap.parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    reps = run_standard(args.filter, every=args.every, jobs=args.jobs, batch_size=args.batch_size,
                        opt_level=args.opt, case_timeout=args.case_timeout, with_ort=not args.no_ort, log=log)
    if args.report:
        os.makedirs(args.report, exist_ok=True)
        with open(os.path.join(args.report, "conformance_std.json"), "w") as f:
            json.dump({k: r.to_json() for k, r in reps.items()}, f, indent=1)
        with open(os.path.join(args.report, "conformance_std.md"), "w") as f:
            f.write(to_markdown(reps, args.every))
    for label, r in reps.items():
        t = r.totals()
        print(f"{label}: " + " ".join(f"{s}={t[s]}" for s in C.STATUSES) + f" total={t['total']} ({r.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
