"""The ROOT tests (root_cases.py: cling, RDataFrame, distributed RDataFrame; root_weights_cases.py: .root weight
files) run in a pytest process of their own. ROOT, once imported, stays in its process (its signal handlers,
cling and its libraries): in a long-lived test worker that had also run the torch/transformers tests, a later
test died of SIGTRAP (exit 133, measured on the full suite), so ROOT is kept out of the shared workers."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.parametrize("module", ["root_cases.py", "root_weights_cases.py"])
def test_root_module_in_its_own_process(module):
    if importlib.util.find_spec("ROOT") is None:
        pytest.skip("ROOT is not installed (pip install root)")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q", "-rs",
                        os.path.join(HERE, module)], capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert r.returncode == 0, f"{module} failed:\n{r.stdout[-8000:]}\n{r.stderr[-3000:]}"
    assert " passed" in r.stdout, r.stdout[-3000:]
