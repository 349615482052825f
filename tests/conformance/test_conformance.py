"""ONNX conformance: onnx's backend node tests through pysofie (pysofie.conformance).

The full run must not pass fewer cases than recorded in expected.json, must not crash, and must give every case
a status. Crash isolation is checked on a few cases with a worker that segfaults or hangs on purpose."""
from __future__ import annotations

import ctypes
import json
import os
import time

import numpy as np
import onnx
import pytest

from pysofie import conformance

EXPECTED = os.path.join(os.path.dirname(__file__), "expected.json")


def _expected() -> dict:
    with open(EXPECTED) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    report_dir = str(tmp_path_factory.mktemp("conformance"))
    rep = conformance.run_conformance(jobs=max(1, min(4, os.cpu_count() or 1)), report_dir=report_dir)
    return rep, report_dir


@pytest.mark.slow
def test_pass_count_not_below_recorded(full_run):
    rep, _ = full_run
    exp = _expected()
    t = rep.totals()
    if onnx.__version__.split(".")[:2] != exp["onnx"].split(".")[:2]:
        pytest.skip(f"figure recorded with onnx {exp['onnx']}, running onnx {onnx.__version__}")
    assert t["pass"] >= exp["pass"], (
        f"conformance dropped: {t['pass']} cases pass, {exp['pass']} recorded in expected.json; totals {t}")


@pytest.mark.slow
def test_no_crash_and_every_case_classified(full_run):
    rep, _ = full_run
    names = [c.name for c in conformance.load_cases()]
    assert sorted(rep.results) == sorted(names)
    assert len(names) > 1000
    for r in rep.results.values():
        assert r.status in conformance.STATUSES, r
        if r.status != "pass":
            assert r.reason, f"{r.name}: status {r.status} without a reason"
    crashed = [f"{r.name}: {r.reason}" for r in rep.results.values() if r.status == "crash"]
    assert not crashed, crashed


@pytest.mark.slow
def test_report_files(full_run):
    rep, report_dir = full_run
    with open(os.path.join(report_dir, "conformance.json")) as f:
        data = json.load(f)
    assert data["totals"] == rep.totals() and len(data["cases"]) == data["totals"]["total"]
    assert all({"status", "op", "reason"} <= set(c) for c in data["cases"].values())
    with open(os.path.join(report_dir, "conformance.md")) as f:
        md = f.read()
    assert f"| pass | {rep.totals()['pass']} |" in md and "| Relu |" in md


def test_crash_and_hang_are_isolated(monkeypatch):
    """A case whose run segfaults or hangs is classified 'crash'; the other cases of its batch still run."""
    real = conformance.evaluate

    def evil(sess, case):
        if case.name == "test_relu":
            ctypes.string_at(0)  # segmentation fault in the worker process
        if case.name == "test_sigmoid":
            time.sleep(600)
        return real(sess, case)

    monkeypatch.setattr(conformance, "evaluate", evil)
    rep = conformance.run_conformance(r"^test_(relu|sigmoid|abs|add|neg)$", jobs=1, case_timeout=10)
    st = {n: r.status for n, r in rep.results.items()}
    assert st["test_relu"] == "crash" and st["test_sigmoid"] == "crash", st
    assert all(st[n] == "pass" for n in ("test_abs", "test_add", "test_neg")), st
    assert "signal" in rep.results["test_relu"].reason
    assert "timed out" in rep.results["test_sigmoid"].reason


def test_compare_classifies_shape_dtype_values():
    ref = np.array([1.0, 2.0, np.nan], np.float32)
    assert conformance.compare([ref.copy()], [ref], 1e-3, 1e-7) == (None, None)
    reason, _ = conformance.compare([ref[:2]], [ref], 1e-3, 1e-7)
    assert "shape" in reason
    reason, _ = conformance.compare([ref.astype(np.float64)], [ref], 1e-3, 1e-7)
    assert "dtype" in reason
    bad = ref.copy()
    bad[1] = 2.5
    reason, err = conformance.compare([bad], [ref], 1e-3, 1e-7)
    assert "values differ" in reason and err == pytest.approx(0.5)
    reason, _ = conformance.compare([ref, ref], [ref], 1e-3, 1e-7)
    assert "2 outputs" in reason
