"""The recurrent rootbench models through pysofie.InferenceSession against onnxruntime on random inputs:
RNN / GRU / LSTM (d10, L20, h8, batch 1) and DDB_B1, a CMS jet tagger with two reverse GRUs (HardSigmoid
gates) and three inputs that ROOT's SOFIE cannot run.

Tolerance: rtol 1e-4 / atol 1e-5 (the project default) except where a model says otherwise.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

import pysofie
from tests.util import ROOTBENCH, ort

MODELS = ["RNN_d10_L20_h8_B1", "GRU_d10_L20_h8_B1", "LSTM_d10_L20_h8_B1", "DDB_B1"]


def model_path(name: str) -> str:
    path = os.path.join(ROOTBENCH, name + ".onnx")
    if not os.path.exists(path):
        pytest.skip(f"rootbench model {name} not found in {ROOTBENCH}")
    return path


def random_feeds(path: str, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random inputs for every graph input; symbolic dims (a batch) get `batch`."""
    m = onnx.load(path)
    inits = {i.name for i in m.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in m.graph.input:
        if inp.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else batch
                 for d in inp.type.tensor_type.shape.dim]
        dt = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        feeds[inp.name] = rng.uniform(-1.0, 1.0, size=shape).astype(dt)
    return feeds


@pytest.fixture(scope="module")
def sessions():
    """All four models compiled into one library (one compiler run)."""
    from pysofie.build.batch import compile_many
    paths = [os.path.join(ROOTBENCH, n + ".onnx") for n in MODELS]
    present = [p for p in paths if os.path.exists(p)]
    return dict(zip(present, compile_many(present)))


@pytest.mark.parametrize("name", MODELS)
def test_check_supports_model(name):
    assert pysofie.check(model_path(name)) == []


@pytest.mark.parametrize("name", MODELS)
def test_matches_onnxruntime(name, sessions):
    path = model_path(name)
    sess = sessions[path]
    if isinstance(sess, Exception):
        raise sess
    for seed in range(3):
        feeds = random_feeds(path, batch=1, seed=seed)
        got = sess.run(None, feeds)
        exp = ort(path, feeds)
        assert len(got) == len(exp)
        for g, e in zip(got, exp):
            assert g.shape == e.shape and g.dtype == e.dtype
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=f"{name}, seed {seed}")


def test_ddb_batch_sizes(sessions):
    """DDB_B1's batch axis is symbolic: one compiled session runs other batch sizes."""
    path = model_path("DDB_B1")
    sess = sessions[path]
    if isinstance(sess, Exception):
        raise sess
    for batch in (2, 7):
        feeds = random_feeds(path, batch=batch, seed=10 + batch)
        got = sess.run(None, feeds)
        exp = ort(path, feeds)
        for g, e in zip(got, exp):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=f"DDB_B1, batch {batch}")
