"""Einsum and Resize/Upsample against onnx's reference evaluator (onnxruntime where noted)."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij->ji", [(3, 4)]), ("ii->i", [(4, 4)]), ("ii", [(4, 4)]), ("ij->", [(3, 4)]), ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]), ("...ij,...jk->...ik", [(2, 3, 4), (2, 4, 5)]), ("...ij,jk", [(2, 1, 3, 4), (4, 2)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]), ("ijk,ikl,ilm->jm", [(2, 3, 4), (2, 4, 5), (2, 5, 3)]),
    ("...i,...i->...", [(3, 1, 4), (2, 4)]), ("Ab,bC->AC", [(2, 3), (3, 2)]),
]
for k, (eq, shapes) in enumerate(EINSUM):
    ins = {f"x{j}": rand(*s, seed=20 * k + j) for j, s in enumerate(shapes)}
    case(f"Einsum-{k}-{eq}", "Einsum", ins, {"equation": eq})
case("Einsum-int64", "Einsum", {"a": np.arange(6, dtype=np.int64).reshape(2, 3),
                                "b": np.arange(12, dtype=np.int64).reshape(3, 4)}, {"equation": "ij,jk->ik"})
case("Einsum-f64", "Einsum", {"a": rand(3, 4, dtype=np.float64), "b": rand(4, 2, dtype=np.float64)},
     {"equation": "ij,jk->ik"}, rtol=1e-12)

F32 = lambda *v: np.array(v, np.float32)  # noqa: E731
I64 = lambda *v: np.array(v, np.int64)  # noqa: E731
X4 = rand(1, 2, 4, 5, low=-2, high=2)
CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]
SCALES = [F32(1, 1, 2, 1.5), F32(1, 1, 0.5, 0.8), F32(1, 1, 1.7, 2.3)]
for mode in ("nearest", "linear", "cubic"):
    for ctm in CTMS:
        for k, sc in enumerate(SCALES):
            case(f"Resize-{mode}-{ctm}-s{k}", "Resize", {"x": X4, "roi": None, "scales": sc}, 
                 {"mode": mode, "coordinate_transformation_mode": ctm}, init=("scales",), opset=19)
        case(f"Resize-{mode}-{ctm}-sizes", "Resize", {"x": X4, "roi": None, "scales": None, "sizes": I64(1, 2, 7, 3)},
             {"mode": mode, "coordinate_transformation_mode": ctm}, init=("sizes",), opset=19)
for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
    case(f"Resize-nearest-{nm}", "Resize", {"x": X4, "roi": None, "scales": F32(1, 1, 2.5, 1.5)},
         {"mode": "nearest", "nearest_mode": nm}, init=("scales",), opset=19)
case("Resize-cubic-a-excl", "Resize", {"x": X4, "roi": None, "scales": F32(1, 1, 1.5, 2)},
     {"mode": "cubic", "cubic_coeff_a": -0.5, "exclude_outside": 1}, init=("scales",), opset=19)
case("Resize-linear-tf-crop", "Resize", {"x": X4, "roi": F32(0, 0, 0.2, -0.1, 1, 1, 0.8, 1.3), "scales": None,
                                         "sizes": I64(1, 2, 5, 6)},
     {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -7.0},
     init=("roi", "sizes"), opset=19)
case("Resize-nearest-tf-crop", "Resize", {"x": X4, "roi": F32(0, 0, 0.1, 0.2, 1, 1, 0.9, 0.7),
                                          "scales": F32(1, 1, 1.5, 2)},
     {"mode": "nearest", "coordinate_transformation_mode": "tf_crop_and_resize"}, init=("roi", "scales"), opset=19)
case("Resize-axes", "Resize", {"x": X4, "roi": None, "scales": F32(2, 0.6)}, {"mode": "linear", "axes": [2, 3]},
     init=("scales",), opset=19)
for pol in ("not_larger", "not_smaller"):
    case(f"Resize-policy-{pol}", "Resize", {"x": X4, "roi": None, "scales": None, "sizes": I64(7, 7)},
         {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": pol}, init=("sizes",), opset=19)
case("Resize-3d-linear", "Resize", {"x": rand(1, 1, 3, 4, 2), "roi": None, "scales": F32(1, 1, 2, 0.5, 1.5)},
     {"mode": "linear"}, init=("scales",), opset=19)
case("Resize-1d", "Resize", {"x": rand(2, 3, 5), "roi": None, "scales": F32(1, 1, 1.6)}, {"mode": "cubic"},
     init=("scales",), opset=19)
case("Resize-int8-nearest", "Resize", {"x": np.arange(20, dtype=np.int8).reshape(1, 1, 4, 5), "roi": None,
                                       "scales": F32(1, 1, 2, 2)}, {"mode": "nearest"}, init=("scales",), opset=19)
case("Resize-opset11", "Resize", {"x": X4, "roi": F32(), "scales": F32(1, 1, 2, 2)}, {"mode": "linear"},
     init=("roi", "scales"), opset=11)
case("Resize-opset11-sizes", "Resize", {"x": X4, "roi": F32(), "scales": F32(), "sizes": I64(1, 2, 3, 8)},
     {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}, init=("roi", "scales", "sizes"), opset=11)
# opset 10: asymmetric coordinates, nearest rounds down; the reference evaluator implements the latest Resize only
case("Resize-opset10-nearest", "Resize", {"x": X4, "scales": F32(1, 1, 2, 3)}, {"mode": "nearest"},
     init=("scales",), opset=10, oracle="ort")
case("Resize-opset10-linear", "Resize", {"x": X4, "scales": F32(1, 1, 2, 1.5)}, {"mode": "linear"},
     init=("scales",), opset=10, oracle="ort")
case("Upsample-opset9", "Upsample", {"x": X4, "scales": F32(1, 1, 2, 2)}, {"mode": "nearest"}, init=("scales",),
     opset=9, oracle="ort")
case("Upsample-opset9-linear", "Upsample", {"x": X4, "scales": F32(1, 1, 2, 3)}, {"mode": "linear"},
     init=("scales",), opset=9, oracle="ort")
case("Upsample-opset7", "Upsample", {"x": X4}, {"mode": "nearest", "scales": [1.0, 1.0, 3.0, 2.0]}, opset=7,
     oracle="ort")


# -- symbolic (dynamic) batch size ----------------------------------------------------------------------------
case("Resize-symbolic", "Resize", {"x": rand(2, 2, 3, 4), "roi": None, "scales": F32(1, 1, 2, 1.5)},
     {"mode": "linear"}, init=("scales",), opset=19, symbolic={"x": ["N", 2, 3, 4]})
case("Einsum-symbolic", "Einsum", {"a": rand(3, 4), "b": rand(4, 5)}, {"equation": "ij,jk->ik"},
     symbolic={"a": ["N", 4]})


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_antialias_rejected():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("Resize", {"x": X4, "roi": None, "scales": F32(1, 1, 0.5, 0.5)}, {"mode": "linear", "antialias": 1},
                   initializers=("scales",), opset=19)
    with pytest.raises(PysofieError, match="antialias"):
        pysofie.InferenceSession(m)
