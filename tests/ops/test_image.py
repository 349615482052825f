"""Image and spatial operators (GridSample, AffineGrid, CenterCropPad, Col2Im, LpPool) against onnx's reference
evaluator (one shared library for the module)."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


# -- GridSample: grids reach beyond [-1, 1] so that every padding mode matters -----------------------------------
for mode in ("linear", "nearest", "cubic"):
    for pad in ("zeros", "border", "reflection"):
        for align in (0, 1):
            x = rand(2, 3, 4, 5, seed=1)
            g = rand(2, 3, 6, 2, low=-1.4, high=1.4, seed=2)
            case(f"GridSample2d-{mode}-{pad}-a{align}", "GridSample", {"x": x, "g": g},
                 {"mode": mode, "padding_mode": pad, "align_corners": align}, opset=20)
            if mode != "cubic":  # cubic is 2-D only in onnx's reference
                x3 = rand(1, 2, 3, 4, 5, seed=3)
                g3 = rand(1, 2, 3, 4, 3, low=-1.3, high=1.3, seed=4)
                case(f"GridSample3d-{mode}-{pad}-a{align}", "GridSample", {"x": x3, "g": g3},
                     {"mode": mode, "padding_mode": pad, "align_corners": align}, opset=20)
# opset 16 mode names: onnx's reference evaluator knows only the opset-20 names, onnxruntime is the oracle
for mode in ("bilinear", "bicubic", "nearest"):
    case(f"GridSample-opset16-{mode}", "GridSample", {"x": rand(1, 2, 5, 5, seed=5),
                                                       "g": rand(1, 4, 4, 2, low=-1.2, high=1.2, seed=6)},
         {"mode": mode}, opset=16, oracle="ort")
case("GridSample-f64-symbolic", "GridSample", {"x": rand(3, 2, 4, 4, dtype=np.float64, seed=7),
                                               "g": rand(3, 5, 5, 2, dtype=np.float64, seed=8)},
     # onnx's reference rounds the unnormalized coordinates to float32 even for double data
     opset=20, rtol=1e-5, atol=1e-6, symbolic={"x": ["N", 2, 4, 4], "g": ["N", 5, 5, 2]})

# -- AffineGrid --------------------------------------------------------------------------------------------------
for align in (0, 1):
    case(f"AffineGrid2d-a{align}", "AffineGrid", {"th": rand(2, 2, 3, seed=9), "size": np.array([2, 3, 4, 5])},
         {"align_corners": align}, init=("size",), opset=20)
    case(f"AffineGrid3d-a{align}", "AffineGrid", {"th": rand(2, 3, 4, seed=10),
                                                  "size": np.array([2, 3, 3, 4, 5])},
         {"align_corners": align}, init=("size",), opset=20)

# -- CenterCropPad ------------------------------------------------------------------------------------------------
xcc = rand(5, 6, 3, seed=11)
for tag, shape, axes in [("crop", [3, 4, 3], None), ("pad", [8, 9, 3], None), ("mixed", [2, 9], [0, 1]),
                         ("odd", [4, 3], [-3, 1]), ("hwc", [7, 2], [0, 1]), ("same", [5, 6, 3], None)]:
    case(f"CenterCropPad-{tag}", "CenterCropPad", {"x": xcc, "shape": np.array(shape, np.int64)},
         {"axes": axes} if axes else None, init=("shape",), opset=18)
case("CenterCropPad-int64", "CenterCropPad", {"x": np.arange(20, dtype=np.int64).reshape(4, 5),
                                              "shape": np.array([6, 2], np.int64)}, init=("shape",), opset=18)
case("CenterCropPad-symbolic-batch", "CenterCropPad", {"x": rand(3, 5, 4, seed=24), "shape": np.array([3, 6], np.int64)},
     {"axes": [1, 2]}, init=("shape",), opset=18, symbolic={"x": ["N", 5, 4]})

# -- Col2Im ---------------------------------------------------------------------------------------------------------
case("Col2Im-basic", "Col2Im", {"x": rand(1, 5, 5, seed=12), "img": np.array([5, 5]), "blk": np.array([1, 5])},
     init=("img", "blk"), opset=18)
case("Col2Im-strides-pads-dil", "Col2Im", {"x": rand(2, 2 * 4, 12, seed=13), "img": np.array([6, 7]),
                                           "blk": np.array([2, 2])},
     {"strides": [2, 2], "pads": [1, 0, 1, 1], "dilations": [2, 1]}, init=("img", "blk"), opset=18)
case("Col2Im-3d", "Col2Im", {"x": rand(1, 8, 8, seed=14), "img": np.array([3, 3, 3]),
                             "blk": np.array([2, 2, 2])}, init=("img", "blk"), opset=18)

# -- LpPool -------------------------------------------------------------------------------------------------------
case("LpPool2d-p2", "LpPool", {"x": rand(1, 2, 6, 6, seed=15)}, {"kernel_shape": [3, 3]}, opset=18)
case("LpPool2d-p3-strides-pads", "LpPool", {"x": rand(2, 2, 7, 6, seed=16)},
     {"kernel_shape": [3, 2], "p": 3, "strides": [2, 2], "pads": [1, 0, 1, 1]}, opset=18)
case("LpPool1d-p1-same", "LpPool", {"x": rand(1, 3, 9, seed=17)}, {"kernel_shape": [4], "p": 1,
                                                                    "auto_pad": "SAME_UPPER"}, opset=18)
# windows reaching past the input (ceil_mode): onnx's reference rescales their sum by the share of the window
# outside the input, onnxruntime does not (padding contributes zeros): onnxruntime is the oracle
case("LpPool2d-dilations-ceil", "LpPool", {"x": rand(1, 1, 8, 8, seed=18)},
     {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [2, 2], "ceil_mode": 1}, opset=18, oracle="ort")
case("LpPool2d-symbolic-batch", "LpPool", {"x": rand(3, 2, 5, 5, seed=25)}, {"kernel_shape": [2, 2], "p": 4},
     opset=18, symbolic={"x": ["N", 2, 5, 5]})
case("LpPool3d", "LpPool", {"x": rand(1, 2, 4, 4, 4, seed=19)}, {"kernel_shape": [2, 2, 2]}, opset=18)

# -- MaxUnpool: distinct positions inside the unpooled tensor -------------------------------------------------------
_rng = np.random.default_rng(20)
xu = rand(2, 3, 2, 3, seed=21)
iu = _rng.choice(2 * 3 * 4 * 6, size=xu.size, replace=False).astype(np.int64).reshape(xu.shape)
case("MaxUnpool-2d", "MaxUnpool", {"x": xu, "i": iu}, {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=11)
case("MaxUnpool-2d-output-shape", "MaxUnpool", {"x": xu, "i": iu, "shape": np.array([2, 3, 5, 7], np.int64)},
     {"kernel_shape": [2, 2], "strides": [2, 2]}, init=("shape",), opset=11)
xu1 = rand(1, 2, 4, seed=22)
iu1 = _rng.choice(2 * 7, size=xu1.size, replace=False).astype(np.int64).reshape(xu1.shape)
case("MaxUnpool-1d-pads", "MaxUnpool", {"x": xu1, "i": iu1}, {"kernel_shape": [3], "strides": [2], "pads": [1, 0]},
     opset=11)

# -- RoiAlign -------------------------------------------------------------------------------------------------------
xr = rand(2, 3, 8, 9, seed=23)
rois = np.array([[0.5, 1.0, 6.0, 7.0], [2.2, 0.3, 8.5, 5.1], [-1.5, -2.0, 3.0, 4.0], [1, 1, 1.4, 1.6],
                 [7.0, 6.5, 12.0, 11.0]], np.float32)
bidx = np.array([0, 1, 1, 0, 1], np.int64)
for mode in ("avg", "max"):
    for ctm in ("half_pixel", "output_half_pixel"):
        for sr in (0, 2):
            case(f"RoiAlign-{mode}-{ctm}-s{sr}", "RoiAlign", {"x": xr, "rois": rois, "b": bidx},
                 {"mode": mode, "coordinate_transformation_mode": ctm, "sampling_ratio": sr, "output_height": 3,
                  "output_width": 4, "spatial_scale": 0.75}, opset=16)
# opset 10 has no coordinate_transformation_mode (it behaves as output_half_pixel); onnx's reference evaluator
# applies the opset-16 default, onnxruntime is the oracle
case("RoiAlign-opset10", "RoiAlign", {"x": xr, "rois": rois, "b": bidx}, {"output_height": 2, "output_width": 2},
     opset=10, oracle="ort")

# -- NonMaxSuppression with constant inputs is evaluated at generation time -----------------------------------------
_boxes = np.array([[[0, 0, 1, 1], [0, 0.1, 1, 1.1], [0, 10, 1, 11]]], np.float32)
_scores = np.array([[[0.9, 0.75, 0.6]]], np.float32)
case("NonMaxSuppression-constant", "NonMaxSuppression",
     {"boxes": _boxes, "scores": _scores, "m": np.array([3], np.int64), "iou": np.array([0.5], np.float32)},
     init=("boxes", "scores", "m", "iou"), opset=11, oracle="ort")


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_runtime_size_is_specialized_at_run():
    """AffineGrid's size given at run: the code is generated for its value then (pysofie.specialize)."""
    import pysofie
    from tests.util import assert_close, feeds_of, reference
    inputs = {"th": rand(2, 2, 3), "size": np.array([2, 3, 4, 5])}
    m = node_model("AffineGrid", inputs, opset=20)
    sess = pysofie.InferenceSession(m)
    assert sess._lazy is not None and sess._lazy.needed == ["size"]
    feeds = feeds_of(m, inputs)
    assert_close(sess.run(None, feeds), reference(m, feeds))


def test_bad_grid_mode_rejected():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("GridSample", {"x": rand(1, 1, 3, 3), "g": rand(1, 2, 2, 2)}, {"mode": "area"}, opset=20)
    with pytest.raises(PysofieError, match="mode"):
        pysofie.InferenceSession(m)


def test_col2im_block_mismatch_rejected():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("Col2Im", {"x": rand(1, 5, 6), "img": np.array([5, 5]), "blk": np.array([1, 5])},
                   initializers=("img", "blk"), opset=18)
    with pytest.raises(PysofieError, match="number of blocks"):
        pysofie.InferenceSession(m)
