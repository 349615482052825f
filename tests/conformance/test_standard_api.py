"""ONNX node tests through the plain Backend API (pysofie.conformance_std): prepare(model) then run(inputs), as
onnx's runner does, with nothing fixed in advance.

The full suite takes too long for CI (each set of shape-determining values given at run compiles its own
code), so CI runs a deterministic subset: every 6th case by name (314 of 1884 with onnx 1.23.2). It must pass
at least the figure recorded in expected_std.json and crash nowhere. The full figures (both backends) are in
docs/conformance.md."""
from __future__ import annotations

import json
import os

import onnx
import pytest

from pysofie import conformance, conformance_std

EXPECTED = os.path.join(os.path.dirname(__file__), "expected_std.json")
EVERY = 6


def _expected() -> dict:
    with open(EXPECTED) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def subset_run():
    return conformance_std.run_standard(every=EVERY, jobs=max(1, min(4, os.cpu_count() or 1)), with_ort=False)


@pytest.mark.slow
def test_standard_api_subset_not_below_recorded(subset_run):
    rep = subset_run[conformance_std.PYSOFIE]
    exp = _expected()
    t = rep.totals()
    if onnx.__version__.split(".")[:2] != exp["onnx"].split(".")[:2]:
        pytest.skip(f"figure recorded with onnx {exp['onnx']}, running onnx {onnx.__version__}")
    assert t["total"] == exp["every_6th"]["total"], t
    assert t["pass"] >= exp["every_6th"]["pysofie"], (
        f"standard-API conformance dropped: {t['pass']} of every {EVERY}th case pass, "
        f"{exp['every_6th']['pysofie']} recorded in expected_std.json; totals {t}")
    crashed = [f"{r.name}: {r.reason}" for r in rep.results.values() if r.status == "crash"]
    assert not crashed, crashed
    for r in rep.results.values():
        assert r.status in conformance.STATUSES and (r.status == "pass" or r.reason), r


def test_evaluate_rep_uses_onnx_runner_comparison():
    """A rep whose run returns wrong values, a wrong dtype or raises is classified as onnx's runner would."""
    import numpy as np
    case = conformance.load_cases(r"^test_relu$")[0]
    (inputs, refs), = case.data_sets[:1]
    from onnx.backend.test.runner import _normalize_tensor  # noqa: PLC2701
    ref = np.asarray(_normalize_tensor(refs[0]))

    class Rep:
        def __init__(self, out):
            self.out = out

        def run(self, _):
            if isinstance(self.out, BaseException):
                raise self.out
            return [self.out]

    import dataclasses
    one = dataclasses.replace(case, data_sets=case.data_sets[:1])
    assert conformance_std.evaluate_rep(Rep(ref), one)["status"] == "pass"
    assert conformance_std.evaluate_rep(Rep(ref + 1), one)["status"] == "fail"
    assert conformance_std.evaluate_rep(Rep(ref.astype(np.float64)), one)["status"] == "fail"
    assert conformance_std.evaluate_rep(Rep(NotImplementedError("Foo")), one)["status"] == "unsupported"
    assert conformance_std.evaluate_rep(Rep(RuntimeError("boom")), one)["status"] == "error"
    assert conformance_std.evaluate_rep(ValueError("at prepare"), one) == {
        "status": "error", "reason": "ValueError: at prepare", "stage": "prepare"}
