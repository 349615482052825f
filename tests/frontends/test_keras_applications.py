"""Keras: operation nodes with Python-number operands and the layers keras.applications defines, checked on real
keras.applications models (weights=None, small inputs, random BatchNormalization statistics) and on small
functional models, saved as .keras and compared with ``model.predict`` (rtol 1e-4).

All models are compiled in one batch (one compiler run)."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":  # pragma: no cover - another backend was imported first
    pytest.skip("these tests build models with Keras on the torch backend", allow_module_level=True)

from keras import layers, ops  # noqa: E402

from pysofie.build.batch import compile_many  # noqa: E402

RTOL = 1e-4
rng = np.random.default_rng(7)


def _randomize_batchnorm(model):
    """weights=None leaves mean 0 / variance 1: other statistics make the check meaningful."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            for v in layer.weights:
                lo, hi = (0.5, 1.5) if ("variance" in v.path or "gamma" in v.path) else (-0.2, 0.2)
                v.assign(rng.uniform(lo, hi, v.shape).astype("float32"))


def _mobilenet_v3_small():
    # hard-sigmoid blocks: ReLU(6)(x + 3.0) * (1 / 6), two operation nodes with a Python number each
    m = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classifier_activation=None)
    _randomize_batchnorm(m)
    return m, [rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)]


def _convnext_tiny():
    # LayerScale, grouped 7x7 convolutions, LayerNormalization, gelu, residual adds as operation nodes
    m = keras.applications.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None, classifier_activation=None)
    for layer in m.layers:  # LayerScale starts at 1e-6: a larger gamma lets the residual branches count
        if type(layer).__name__ == "LayerScale":
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape).astype("float32"))
    return m, [rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)]


def _application_layers():
    from keras.src.applications.convnext import LayerScale, StochasticDepth
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
    x = keras.Input((5, 6), name="x")
    h = layers.Dense(6, name="dense")(x)
    s = LayerScale(0.5, 6, name="scale")(h)
    d = StochasticDepth(0.3, name="drop_path")(s)
    y = CustomScaleLayer(0.17, name="custom_scale")([x, d])
    m = keras.Model(x, y)
    m.get_layer("scale").gamma.assign(rng.uniform(0.5, 1.5, (6,)).astype("float32"))
    return m, [rng.standard_normal((3, 5, 6)).astype(np.float32)]


def _operation_nodes():
    x = keras.Input((4, 6), name="x")
    k = keras.Input((4, 6), name="k", dtype="int32")
    outs = [
        2.0 - x, x - 0.5, 3 * x, x / 4, 1.5 / (ops.abs(x) + 1.0), ops.maximum(x, 0.25) ** 2, ops.minimum(-1, x),
        ops.mean(x, axis=1, keepdims=True), ops.sum(x, axis=[1, 2]), ops.max(x, axis=-1),
        ops.clip(x, -1.0, 1.5), ops.reshape(x, (-1, 24)), ops.transpose(x, (0, 2, 1)), ops.expand_dims(x, 1),
        ops.relu(x) / 3, 1 + ops.sqrt(ops.abs(x)), ops.exp(-ops.square(x)), ops.hard_sigmoid(x), ops.silu(x),
        ops.softmax(x, axis=1), ops.matmul(x, ops.transpose(x, (0, 2, 1))), ops.concatenate([x, -x], axis=-1),
        k + 2, k * 0.5,  # integer tensors: an int stays int, a float operand makes it float32 (as Keras)
    ]
    m = keras.Model([x, k], outs)
    return m, [rng.standard_normal((3, 4, 6)).astype(np.float32), rng.integers(-5, 5, (3, 4, 6)).astype(np.int32)]


# name -> (builder, file type): a Keras 3 legacy .h5 file keeps no module names (operation nodes are told from
# layers by their configuration)
CASES = {"mobilenet_v3_small": (_mobilenet_v3_small, "keras"), "convnext_tiny": (_convnext_tiny, "keras"),
         "application_layers": (_application_layers, "keras"), "operation_nodes": (_operation_nodes, "keras"),
         "operation_nodes_h5": (_operation_nodes, "h5"), "application_layers_h5": (_application_layers, "h5")}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_apps")
    paths, feeds, expected = [], [], []
    for name, (build, ext) in CASES.items():
        m, xs = build()
        path = str(d / f"{name}.{ext}")
        m.save(path)
        out = m.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        paths.append(path)
        feeds.append(xs)
        expected.append([np.asarray(o) for o in (out if isinstance(out, list) else [out])])
    sessions = compile_many(paths, weights="bin")
    return dict(zip(CASES, zip(sessions, feeds, expected)))


@pytest.mark.parametrize("name", list(CASES))
def test_against_predict(compiled, name):
    sess, xs, expected = compiled[name]
    if isinstance(sess, Exception):
        raise sess
    got = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})
    assert len(got) == len(expected)
    for k, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape and g.dtype == e.dtype, (k, g.shape, e.shape, g.dtype, e.dtype)
        scale = max(float(np.abs(e).max()), 1.0)
        np.testing.assert_allclose(g, e, rtol=RTOL, atol=1e-5 * scale, err_msg=f"{name} output #{k}")


def test_unsupported_operation_node_is_listed(tmp_path):
    import pysofie
    from pysofie.errors import UnsupportedOperatorError
    x = keras.Input((4,), name="x")
    m = keras.Model(x, [ops.cumsum(x, axis=1), ops.argsort(x)])
    path = str(tmp_path / "m.keras")
    m.save(path)
    with pytest.raises(UnsupportedOperatorError) as e:
        pysofie.load(path)
    assert len(e.value.problems) == 2 and all("operation (keras.ops) not supported" in p for p in e.value.problems)
