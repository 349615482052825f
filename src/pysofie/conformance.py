"""ONNX conformance: run onnx's backend node tests through pysofie and classify every case.

    python -m pysofie.conformance [--report DIR] [--filter REGEX] [--jobs N] [--batch-size K]

Each case of ``onnx.backend.test.loader.load_model_tests(kind="node")`` gets one status:

* ``pass``        every data set's outputs match the reference (shape, dtype, values within the case's rtol/atol)
* ``fail``        wrong numbers, shape or dtype (the reason says which, with the largest error)
* ``unsupported`` pysofie declined the model at conversion (UnsupportedOperatorError / NotImplementedError,
                  or a type it does not handle: sequences, optionals, strings, float16, ...); the reason says why
* ``error``       any other exception at conversion, compilation or run time (the message is kept)
* ``crash``       the compiled code killed its process (or hung): found by re-running the batch without the
                  cases already done

All cases are converted first (in this process). Supported ones are then compiled in batches with
``pysofie.build.batch.compile_many`` (many models in one shared library, at -O1 by default) and run in forked
worker processes, so a segfault in generated code costs only the case that caused it.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import warnings
from typing import Any, Callable, Optional

import numpy as np

STATUSES = ("pass", "fail", "unsupported", "error", "crash")


@dataclasses.dataclass
class CaseResult:
    name: str
    op: str
    status: str = ""
    reason: str = ""
    stage: str = ""  # screen | convert | compile | run | compare
    max_error: Optional[float] = None
    constant_inputs: tuple = ()  # inputs fixed at generation time (see convert)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["max_error"] is None:
            del d["max_error"]
        if not d["constant_inputs"]:
            del d["constant_inputs"]
        else:
            d["constant_inputs"] = list(d["constant_inputs"])
        return d


@dataclasses.dataclass
class ConformanceReport:
    results: dict[str, CaseResult]
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        c = collections.Counter(r.status for r in self.results.values())
        return {s: c.get(s, 0) for s in STATUSES} | {"total": len(self.results)}

    def per_op(self) -> dict[str, dict[str, int]]:
        table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for r in self.results.values():
            table[r.op][r.status] += 1
        return {op: {s: c.get(s, 0) for s in STATUSES} for op, c in sorted(table.items())}

    def to_json(self) -> dict:
        return {"totals": self.totals(), "seconds": round(self.seconds, 1),
                "cases": {n: r.as_dict() for n, r in sorted(self.results.items())}}

    def to_markdown(self) -> str:
        t = self.totals()
        lines = ["# pysofie ONNX conformance (onnx backend node tests)", ""]
        try:
            import onnx
            lines.append(f"onnx {onnx.__version__}, {t['total']} cases, {self.seconds:.0f} s.")
        except Exception:  # pragma: no cover
            pass
        lines += ["", "| status | cases |", "|---|---|"]
        lines += [f"| {s} | {t[s]} |" for s in STATUSES]
        lines += [f"| total | {t['total']} |", ""]
        fixed = sum(1 for r in self.results.values() if r.status == "pass" and r.constant_inputs)
        lines += [f"{fixed} of the passing cases feed shape-determining parameters (axes, shapes, sizes) as graph "
                  "inputs; pysofie generates static code, so the harness fixes those inputs to their test values "
                  "(`constant_inputs`) and runs the rest. Cases whose computation would then fold away entirely "
                  "are not counted as passing.", "", "## Per operator", "",
                  "| operator | pass | fail | unsupported | error | crash |", "|---|---|---|---|---|---|"]
        for op, c in self.per_op().items():
            lines.append(f"| {op} | " + " | ".join(str(c[s]) for s in STATUSES) + " |")
        groups = collections.Counter((r.status, _generic(r.reason)) for r in self.results.values()
                                     if r.status != "pass")
        if groups:
            lines += ["", "## Most common reasons", "", "| cases | status | reason |", "|---|---|---|"]
            for (status, reason), n in groups.most_common(40):
                lines.append(f"| {n} | {status} | {reason.replace('|', '/')} |")
        for status in ("fail", "error", "crash", "unsupported"):
            rs = [r for r in self.results.values() if r.status == status]
            if not rs:
                continue
            lines += ["", f"## {status} ({len(rs)})", ""]
            for r in sorted(rs, key=lambda r: r.name):
                reason = " ".join(r.reason.split())
                if len(reason) > 300:
                    reason = reason[:300] + "..."
                lines.append(f"- `{r.name}` ({r.op}): {reason}")
        return "\n".join(lines) + "\n"

    def write(self, report_dir: str) -> dict[str, str]:
        os.makedirs(report_dir, exist_ok=True)
        jpath = os.path.join(report_dir, "conformance.json")
        mpath = os.path.join(report_dir, "conformance.md")
        with open(jpath, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        with open(mpath, "w") as f:
            f.write(self.to_markdown())
        return {"json": jpath, "markdown": mpath}


def _generic(reason: str) -> str:
    """A reason without the names of nodes, tensors and models, for grouping."""
    r = " ".join(reason.split())
    r = re.sub(r"'[^']*'", "'…'", r)
    r = re.sub(r"\(max abs error [^)]*\)", "", r)
    return r[:160]


# -- loading and classifying ---------------------------------------------------------------------------
def load_cases(pattern: Optional[str] = None) -> list:
    """onnx's node test cases (models and data sets in memory), optionally filtered by a regex on the name."""
    from onnx.backend.test.loader import load_model_tests
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    if pattern:
        rx = re.compile(pattern)
        cases = [c for c in cases if rx.search(c.name)]
    return sorted(cases, key=lambda c: c.name)


@functools.lru_cache(maxsize=None)
def _schema_names() -> tuple[str, ...]:
    import onnx.defs
    return tuple(sorted({s.name for s in onnx.defs.get_all_schemas_with_history()}))


def case_op(case) -> str:
    """The operator a case tests: the node's op type, or for an expanded function body the op type the
    test is named after (falling back to the distinct op types joined)."""
    nodes = list(case.model.graph.node)
    types = sorted({n.op_type for n in nodes})
    if len(types) == 1:
        return types[0]
    key = case.name[len("test_"):].replace("_", "").lower() if case.name.startswith("test_") else case.name
    best = ""
    for nm in _schema_names():
        if key.startswith(nm.lower()) and len(nm) > len(best):
            best = nm
    if best:
        return best
    for prefix, op in _NAME_ALIASES.items():
        if key.startswith(prefix):
            return op
    return "+".join(types) if types else "?"


# test names that abbreviate the operator
_NAME_ALIASES = {"nllloss": "NegativeLogLikelihoodLoss", "sce": "SoftmaxCrossEntropyLoss",
                 "mvn": "MeanVarianceNormalization"}


def screen(model) -> Optional[str]:
    """Why the model cannot be handled, decided from its types alone (sequences, optionals, strings...)."""
    from onnx import TensorProto
    from .ir import DType
    for role, vis in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in vis:
            kind = vi.type.WhichOneof("value")
            if kind is None:  # no type declared: decided by inference
                continue
            if kind != "tensor_type":
                what = kind.replace("_type", "")
                article = "an" if what[:1] in "aeiou" else "a"
                return f"{role} '{vi.name}' is {article} {what}, not a tensor (only tensors are supported)"
            code = vi.type.tensor_type.elem_type
            if code == TensorProto.UNDEFINED and role == "output":
                continue
            try:
                DType.from_onnx(code)
            except TypeError:
                name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
                return f"{role} '{vi.name}' has element type {name}, which pysofie does not support"
    return None


def _short(e: BaseException, limit: int = 600) -> str:
    msg = f"{type(e).__name__}: {e}"
    return msg if len(msg) <= limit else msg[:limit] + "..."


def _compile_reason(e: BaseException) -> str:
    """The compiler's first error line (without the build directory), rather than the whole log."""
    for line in str(e).splitlines():
        if ": error" in line or "fatal error" in line:
            return "CompileError: " + re.sub(r"^\S*/", "", line.strip())[:500]
    return _short(e)


def _unsupported_reason(e: BaseException) -> str:
    problems = getattr(e, "problems", None)
    if problems:
        return "; ".join(dict.fromkeys(problems))
    return str(e) or type(e).__name__



# Inputs each case fixes at generation time (case name -> {input name: array}); filled by convert in the parent
# process before the workers fork, read by _feeds.
_CONSTANTS: dict[str, dict[str, np.ndarray]] = {}


def convert(case) -> tuple[str, str, Any]:
    """(status, reason, graph): status '' when the model converts and generates; the graph for compiling.

    pysofie generates static code: inputs that determine shapes (axes, target shapes, sizes, K) must be known
    when the code is generated. The suite feeds many of them as graph inputs, so an input that conversion
    reports as needed at generation time is fixed to its value (the same in every data set), as a user does
    with ``constant_inputs``. A case whose tested operator then folds away entirely (evaluated at generation
    time by onnx's reference evaluator) is not a pass: it is reported unsupported."""
    from .api import load
    from .backends.cpp import generate
    from .specialize import needed_inputs
    why = screen(case.model)
    if why:
        return "unsupported", why, None
    graph_inputs = [i.name for i in case.model.graph.input
                    if i.name not in {t.name for t in case.model.graph.initializer}]
    fixed: dict[str, np.ndarray] = {}
    while True:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                g = load(case.model, name=case.name, constant_inputs=fixed or None)
                generate(g, namespace="pysofie_probe")  # generators may decline attribute values
            break
        except Exception as e:
            needed = needed_inputs(e, case.model, exclude=fixed)
            values = _fixed_values(case, graph_inputs, needed)
            if values is None:
                if isinstance(e, NotImplementedError):  # includes UnsupportedOperatorError
                    return "unsupported", _unsupported_reason(e), None
                return "error", _short(e), None
            fixed.update(values)
    if fixed:
        tested = {n.op_type for n in case.model.graph.node} - {"Constant"}
        if not tested & {n.op_type for n in g.nodes}:
            return ("unsupported", f"with its generation-time inputs {sorted(fixed)} fixed, the whole computation "
                    "folds to a constant: nothing is left to generate", None)
        _CONSTANTS[case.name] = fixed
    return "", "", g


def _fixed_values(case, graph_inputs: list[str], names: list[str]) -> Optional[dict[str, np.ndarray]]:
    """The values of `names` in the case's data sets, if they are the same in all of them (else None)."""
    if not names:
        return None
    out = {}
    for n in names:
        k = graph_inputs.index(n)
        vals = [np.asarray(inputs[k]) for inputs, _ in case.data_sets if k < len(inputs)]
        if not vals or any(v.shape != vals[0].shape or not np.array_equal(v, vals[0]) for v in vals[1:]):
            return None
        out[n] = vals[0]
    return out


def _feeds(case, inputs) -> dict:
    from onnx.backend.test.runner import _normalize_tensor  # noqa: PLC2701 (same normalization as onnx's runner)
    init = {i.name for i in case.model.graph.initializer}
    names = [i.name for i in case.model.graph.input if i.name not in init]
    if len(names) != len(inputs):
        raise ValueError(f"{len(inputs)} input arrays for {len(names)} model inputs")
    fixed = _CONSTANTS.get(case.name, {})
    return {n: _normalize_tensor(a) for n, a in zip(names, inputs) if n not in fixed}


def compare(outs, refs, rtol: float, atol: float) -> tuple[Optional[str], Optional[float]]:
    """(reason, max_error): reason None when the outputs match as onnx's backend test runner requires."""
    from onnx.backend.test.runner import _normalize_tensor  # noqa: PLC2701
    if len(outs) != len(refs):
        return f"{len(outs)} outputs, expected {len(refs)}", None
    for k, (o, r) in enumerate(zip(outs, refs)):
        r = np.asarray(_normalize_tensor(r))
        o = np.asarray(o)
        if o.shape != r.shape:
            return f"output {k}: shape {list(o.shape)}, expected {list(r.shape)}", None
        if o.dtype != r.dtype:
            return f"output {k}: dtype {o.dtype}, expected {r.dtype}", None
        try:
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
        except AssertionError:
            err = _max_error(o, r)
            return (f"output {k}: values differ beyond rtol={rtol:g} atol={atol:g} "
                    f"(max abs error {err:.3g})"), err
    return None, None


def _max_error(o: np.ndarray, r: np.ndarray) -> float:
    if o.dtype == np.bool_:
        return float(np.count_nonzero(o != r))
    o64, r64 = o.astype(np.float64), r.astype(np.float64)
    with np.errstate(all="ignore"):
        d = np.abs(o64 - r64)
    same = (np.isnan(o64) & np.isnan(r64)) | (o64 == r64)
    d[same] = 0.0
    d[np.isnan(d)] = np.inf
    return float(d.max()) if d.size else 0.0


def evaluate(sess, case) -> dict:
    """Run one compiled case over its data sets: a record {status, reason, stage[, max_error]}."""
    from .errors import CompileError
    if isinstance(sess, BaseException):
        if isinstance(sess, NotImplementedError):
            return {"status": "unsupported", "reason": _unsupported_reason(sess), "stage": "convert"}
        if isinstance(sess, CompileError):
            return {"status": "error", "reason": _compile_reason(sess), "stage": "compile"}
        return {"status": "error", "reason": _short(sess), "stage": "compile"}  # generating again or loading
    for inputs, refs in case.data_sets:
        try:
            feeds = _feeds(case, inputs)
            with np.errstate(all="ignore"):
                outs = sess.run(None, feeds)
        except Exception as e:
            return {"status": "error", "reason": _short(e), "stage": "run"}
        reason, err = compare(outs, refs, case.rtol, case.atol)
        if reason:
            rec = {"status": "fail", "reason": reason, "stage": "compare"}
            if err is not None:
                rec["max_error"] = err
            return rec
    return {"status": "pass", "reason": "", "stage": ""}


# -- batch workers (forked: the cases and graphs are inherited, nothing is pickled) -----------------------
_STATE: dict[str, Any] = {}


def _worker(indices: list[int], skip: set[int], out_path: str, opt_level) -> None:
    import faulthandler
    from .build.batch import compile_many
    if faulthandler.is_enabled():
        faulthandler.disable()  # a crash is reported by the parent, not as a traceback dump
    cases, graphs = _STATE["cases"], _STATE["graphs"]
    with open(out_path, "a", buffering=1) as f:
        try:
            sessions = compile_many([graphs[i] for i in indices], opt_level=opt_level, chunk=len(indices))
        except Exception as e:  # compile_many reports per model; anything else concerns the whole batch
            for i in indices:
                if i not in skip:
                    f.write(json.dumps({"i": i, "status": "error", "reason": _short(e), "stage": "compile"}) + "\n")
            return
        for i, s in zip(indices, sessions):
            if i in skip:
                continue
            f.write(json.dumps({"i": i, "start": time.time()}) + "\n")
            f.flush()
            rec = evaluate(s, cases[i])
            f.write(json.dumps({"i": i, **rec}) + "\n")
            f.flush()


@dataclasses.dataclass
class _Batch:
    indices: list[int]
    skip: set = dataclasses.field(default_factory=set)


def _read_records(path: str) -> list[dict]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return []
    recs = []
    for line in text.splitlines():
        try:
            recs.append(json.loads(line))
        except ValueError:
            pass  # a partial last line from a killed worker
    return recs


def run_batches(indices: list[int], *, jobs: int, batch_size: int, opt_level, case_timeout: float,
                compile_timeout: float, log: Callable[[str], None]) -> dict[int, dict]:
    """Compile and run the given (converted) cases in forked workers; a record per case index."""
    ctx = multiprocessing.get_context("fork")
    results: dict[int, dict] = {}
    pending = collections.deque(_Batch(indices[s:s + batch_size]) for s in range(0, len(indices), batch_size))
    running: list[tuple[Any, _Batch, str, float]] = []
    tmpdir = tempfile.mkdtemp(prefix="pysofie-conformance-")
    serial = 0
    try:
        while pending or running:
            while pending and len(running) < jobs:
                b = pending.popleft()
                serial += 1
                path = os.path.join(tmpdir, f"batch{serial}.jsonl")
                p = ctx.Process(target=_STATE.get("worker", _worker), args=(b.indices, set(b.skip), path, opt_level), daemon=True)
                p.start()
                running.append((p, b, path, time.time()))
            time.sleep(0.2)
            still = []
            for p, b, path, t0 in running:
                recs = _read_records(path) if not p.is_alive() or time.time() - t0 > 5 else []
                killed = ""
                if p.is_alive():
                    started = [r for r in recs if "start" in r]
                    done = {r["i"] for r in recs if "status" in r}
                    inflight = [r for r in started if r["i"] not in done]
                    now = time.time()
                    if inflight and now - inflight[-1]["start"] > case_timeout:
                        killed = f"timed out: ran longer than {case_timeout:.0f} s"
                    elif not started and now - t0 > compile_timeout:
                        killed = f"timed out: compiling the batch took longer than {compile_timeout:.0f} s"
                    if not killed:
                        still.append((p, b, path, t0))
                        continue
                    p.kill()
                p.join()
                recs = _read_records(path)
                done_recs = {r["i"]: r for r in recs if "status" in r}
                for i, r in done_recs.items():
                    results[i] = {k: v for k, v in r.items() if k != "i"}
                todo = [i for i in b.indices if i not in b.skip and i not in done_recs]
                if not todo:
                    continue
                why = killed or (f"process killed by signal {-p.exitcode}" if (p.exitcode or 0) < 0
                                 else f"process exited with status {p.exitcode}")
                started = [r["i"] for r in recs if "start" in r and r["i"] not in done_recs]
                if started:
                    culprit = started[-1]
                    results[culprit] = {"status": "crash", "reason": why, "stage": "run"}
                    log(f"  crash in {_STATE.get('name_of', lambda i: _STATE['cases'][i].name)(culprit)}: {why}")
                    rest = [i for i in todo if i != culprit]
                    if rest:  # same model list: the library comes from the cache
                        pending.append(_Batch(b.indices, set(b.indices) - set(rest)))
                elif len(todo) == 1 and len(b.indices) == 1:
                    results[todo[0]] = {"status": "crash", "reason": why + " (while compiling/loading)",
                                        "stage": "compile"}
                else:  # died before running anything: find the culprit case by case
                    log(f"  batch of {len(b.indices)} died before running ({why}): retrying case by case")
                    pending.extend(_Batch([i]) for i in todo)
            running = still
    finally:
        for p, *_ in running:
            p.kill()
            p.join()
        for fn in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, fn))
        os.rmdir(tmpdir)
    return results


def run_conformance(pattern: Optional[str] = None, *, jobs: Optional[int] = None, batch_size: int = 48,
                    opt_level=1, case_timeout: float = 60.0, compile_timeout: float = 1800.0,
                    report_dir: Optional[str] = None, log: Optional[Callable[[str], None]] = None
                    ) -> ConformanceReport:
    """Classify every node test case of onnx's backend tests (optionally those whose name matches `pattern`)."""
    log = log or (lambda s: None)
    t0 = time.time()
    cases = load_cases(pattern)
    log(f"{len(cases)} cases loaded ({time.time() - t0:.1f} s)")
    results: dict[str, CaseResult] = {}
    graphs: dict[int, Any] = {}
    for k, c in enumerate(cases):
        r = CaseResult(c.name, case_op(c))
        results[c.name] = r
        status, reason, g = convert(c)
        if status:
            r.status, r.reason, r.stage = status, reason, "convert"
        else:
            graphs[k] = g
    log(f"converted: {len(graphs)} supported of {len(cases)} ({time.time() - t0:.1f} s)")
    _STATE.update(cases=cases, graphs=graphs)
    try:
        recs = run_batches(sorted(graphs), jobs=jobs or max(1, os.cpu_count() or 1), batch_size=batch_size,
                           opt_level=opt_level, case_timeout=case_timeout, compile_timeout=compile_timeout,
                           log=log)
    finally:
        _STATE.clear()
    for k in graphs:
        r = results[cases[k].name]
        rec = recs.get(k) or {"status": "error", "reason": "no result came back from the worker", "stage": "run"}
        r.status, r.reason, r.stage = rec["status"], rec.get("reason", ""), rec.get("stage", "")
        r.max_error = rec.get("max_error")
        r.constant_inputs = tuple(sorted(_CONSTANTS.get(cases[k].name, {})))
    _CONSTANTS.clear()
    report = ConformanceReport(results, time.time() - t0)
    if report_dir:
        report.write(report_dir)
    return report


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pysofie.conformance",
                                 description="Run onnx's backend node tests through pysofie and classify each case.")
    ap.add_argument("--report", metavar="DIR", help="write conformance.json and conformance.md into DIR")
    ap.add_argument("--filter", metavar="REGEX", help="only cases whose name matches REGEX (re.search)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
    ap.add_argument("--batch-size", type=int, default=48, help="models compiled into one library (default 48)")
    ap.add_argument("--opt", default="1", help="C++ optimization level (default 1)")
    ap.add_argument("--case-timeout", type=float, default=60.0, help="seconds one case may run (default 60)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the totals")
    args = ap.parse_args(argv)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    rep = run_conformance(args.filter, jobs=args.jobs, batch_size=args.batch_size, opt_level=args.opt,
                          case_timeout=args.case_timeout, report_dir=args.report, log=log)
    t = rep.totals()
    if args.report:
        log(f"report written to {os.path.join(args.report, 'conformance.md')} and conformance.json")
    print(" ".join(f"{s}={t[s]}" for s in STATUSES) + f" total={t['total']} ({rep.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
