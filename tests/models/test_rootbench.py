"""Every rootbench model in the foundation's scope through pysofie.InferenceSession, against onnxruntime."""
import os

import numpy as np
import pytest

from tests.util import ROOTBENCH, assert_close, ort

MODELS = ["Linear_event", "Linear_16", "Linear_32", "Linear_64", "SimpleNN_Alice", "higgs_model_dense",
          "Conv_d100_L1_B1", "Conv_d100_L14_B1", "Conv_d100_L14_B32", "Conv3d_d32_L4_B1", "ConvTrans2dModel_B1",
          "ConvTModel_G4", "Conv2DTranspose_Relu_Sigmoid"]

pytestmark = pytest.mark.skipif(not os.path.isdir(ROOTBENCH), reason="rootbench models not found")


def path(m):
    return os.path.join(ROOTBENCH, m + ".onnx")


def random_feeds(sess, batch=3, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: rng.uniform(-1, 1, [d if isinstance(d, int) else batch for d in i.shape]).astype(np.float32)
            for i in sess.get_inputs()}


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    return dict(zip(MODELS, compile_many([path(m) for m in MODELS])))


@pytest.mark.parametrize("model", MODELS)
def test_model_matches_onnxruntime(model, sessions):
    sess = sessions[model]
    if isinstance(sess, Exception):
        raise sess
    feeds = random_feeds(sess)
    # convolution stacks accumulate rounding differently from onnxruntime (different summation order)
    assert_close(sess.run(None, feeds), ort(path(model), feeds), rtol=1e-4, atol=1e-5, what=model)


def test_symbolic_batch_varies_between_calls(sessions):
    """Conv2DTranspose_Relu_Sigmoid has input [N, 15]: the same session takes any N, growing and shrinking."""
    sess = sessions["Conv2DTranspose_Relu_Sigmoid"]
    assert isinstance(sess.get_inputs()[0].shape[0], str)
    for n in (1, 5, 2, 8, 1):
        feeds = random_feeds(sess, batch=n, seed=n)
        got = sess.run(None, feeds)
        assert got[0].shape[0] == n
        assert_close(got, ort(path("Conv2DTranspose_Relu_Sigmoid"), feeds), what=f"N={n}")


@pytest.mark.parametrize("weights", ["bin", "embed"])
def test_weight_formats_give_the_same_results(weights):
    import pysofie
    m = "higgs_model_dense"
    sess = pysofie.InferenceSession(path(m), weights=weights)
    feeds = random_feeds(sess)
    assert_close(sess.run(None, feeds), ort(path(m), feeds), what=f"{m} weights={weights}")
