"""Resize over symbolic spatial axes, and STFT over a symbolic signal length.

Resize over symbolic spatial axes (H, W given at run): every mode (nearest, linear, cubic) and coordinate
transformation (tf_crop_and_resize with extrapolation too), with scales, with constant sizes, and with sizes
computed from the input's shape (Shape(x) * 2, which folds into size expressions): one compiled library serves
every image size, the sampling tables are computed at run time. Reference: onnxruntime (onnx's reference evaluator
for cubic tf_crop_and_resize, where onnxruntime departs from the spec) at two image sizes (rtol
1e-4 / atol 1e-5). The sizes make W * scale whole: for a fractional one, align_corners and tf_crop_and_resize
divide by (W * scale - 1) as onnx's reference evaluator does, onnxruntime by (floor(W * scale) - 1). All models
compile together."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T, helper, numpy_helper

from ..util import ATOL, RTOL

ort = pytest.importorskip("onnxruntime")

CTMS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]


def _model(name, nodes, inits, opset=19):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", T.FLOAT, [1, 2, "H", "W"])],
                          [helper.make_tensor_value_info("y", T.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m


def _resize(name, inputs, inits, **attrs):
    return _model(name, [helper.make_node("Resize", ["x"] + inputs, ["y"], **attrs)], inits)


MODELS = {}
for mode in ("nearest", "linear", "cubic"):
    for ctm in CTMS:
        MODELS[f"{mode}-{ctm}-scales"] = _resize(
            f"{mode}_{ctm}_scales", ["", "sc"], {"sc": np.array([1, 1, 2, 0.75], np.float32)}, mode=mode,
            coordinate_transformation_mode=ctm)
    MODELS[f"{mode}-sizes-const"] = _resize(f"{mode}_sizes_const", ["", "", "sz"],
                                            {"sz": np.array([1, 2, 9, 5], np.int64)}, mode=mode)
    # sizes = Shape(x) * [1, 1, 2, 3] // [1, 1, 1, 2]: size expressions (2H, 3W / 2)
    MODELS[f"{mode}-sizes-from-shape"] = _model(f"{mode}_sizes_from_shape", [
        helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Mul", ["s", "k"], ["s2"]),
        helper.make_node("Div", ["s2", "d"], ["sz"]),
        helper.make_node("Resize", ["x", "", "", "sz"], ["y"], mode=mode)],
        {"k": np.array([1, 1, 2, 3], np.int64), "d": np.array([1, 1, 1, 2], np.int64)})
MODELS["cubic-a-exclude"] = _resize("cubic_a_exclude", ["", "sc"], {"sc": np.array([1, 1, 1.5, 2], np.float32)},
                                    mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1)
MODELS["linear-tf-crop"] = _resize("linear_tf_crop", ["roi", "sc"],
                                   {"roi": np.array([0, 0, 0.2, -0.1, 1, 1, 0.8, 1.3], np.float32),
                                    "sc": np.array([1, 1, 2, 1.5], np.float32)},
                                   mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
                                   extrapolation_value=-7.0)
# W keeps its length but is cropped (not the identity). (With every scale 1, onnxruntime skips the crop.)
MODELS["cubic-tf-crop-scale1"] = _resize("cubic_tf_crop_scale1", ["roi", "sc"],
                                         {"roi": np.array([0, 0, 0.25, 0.1, 1, 1, 0.75, 0.9], np.float32),
                                          "sc": np.array([1, 1, 1.5, 1], np.float32)},
                                         mode="cubic", coordinate_transformation_mode="tf_crop_and_resize")


def _stft(name, comp, inputs, inits, **attrs):
    g = helper.make_graph([helper.make_node("STFT", ["x"] + inputs, ["y"], **attrs)], name,
                          [helper.make_tensor_value_info("x", T.FLOAT, ["B", "L", comp])],
                          [helper.make_tensor_value_info("y", T.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


# STFT: the frame count 1 + (L - frame_length) // step is a size expression; the signal must be at least one frame
STFT_MODELS = {
    "stft-window": _stft("stft_window", 1, ["step", "win"], {"step": np.array(3, np.int64),
                                                              "win": np.hanning(8).astype(np.float32)}),
    "stft-complex-two-sided": _stft("stft_complex", 2, ["step", "", "flen"], {"step": np.array(4, np.int64),
                                                                              "flen": np.array(6, np.int64)},
                                    onesided=0),
}


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    models = {**MODELS, **STFT_MODELS}
    built = compile_many(list(models.values()), weights="bin")
    for s in built:
        if isinstance(s, BaseException):
            raise s
    return dict(zip(models, built))


@pytest.mark.parametrize("name", list(STFT_MODELS))
def test_stft_matches_onnxruntime_at_several_lengths(sessions, name):
    s = sessions[name]
    ref = ort.InferenceSession(STFT_MODELS[name].SerializeToString(), providers=["CPUExecutionProvider"])
    comp = STFT_MODELS[name].graph.input[0].type.tensor_type.shape.dim[2].dim_value
    r = np.random.default_rng(3)
    for b, n in ((1, 8), (2, 29), (3, 40)):
        x = r.standard_normal((b, n, comp)).astype(np.float32)
        (y,) = s.run(None, {"x": x})
        (e,) = ref.run(None, {"x": x})
        assert y.shape == e.shape, (b, n, y.shape, e.shape)
        np.testing.assert_allclose(y, e, rtol=RTOL, atol=1e-4)  # sums of 8 products of O(1) values


def test_stft_signal_shorter_than_a_frame_is_an_error(sessions):
    import pysofie
    with pytest.raises(pysofie.PysofieError, match="shorter than the frame length 8"):
        sessions["stft-window"].run(None, {"x": np.zeros((1, 7, 1), np.float32)})


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_onnxruntime_at_two_image_sizes(sessions, name):
    s = sessions[name]
    assert s._lazy is None  # one library, no code generated per input
    if name == "cubic-tf-crop-scale1":  # onnxruntime's cubic crop differs from the spec's (and the static path's)
        from onnx.reference import ReferenceEvaluator
        ref = ReferenceEvaluator(MODELS[name])
    else:
        ref = ort.InferenceSession(MODELS[name].SerializeToString(), providers=["CPUExecutionProvider"])
    r = np.random.default_rng(len(name))
    for h, w in ((4, 4), (7, 8)):  # W * 0.75 and W * 1.5 whole (see the module docstring)
        x = r.standard_normal((1, 2, h, w)).astype(np.float32)
        (y,) = s.run(None, {"x": x})
        (e,) = ref.run(None, {"x": x})
        assert y.shape == e.shape, (h, w, y.shape, e.shape)
        np.testing.assert_allclose(y, e, rtol=RTOL, atol=ATOL)
