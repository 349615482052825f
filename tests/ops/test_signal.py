"""Signal operators (DFT, STFT, windows, MelWeightMatrix, CumProd, Compress) against onnx's reference evaluator or
onnxruntime (one shared library for the module)."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=21)
case = CASES.add


# -- CumProd ----------------------------------------------------------------------------------------------------
for axis in (0, 1, -1):
    for exc in (0, 1):
        for rev in (0, 1):
            case(f"CumProd-a{axis}-e{exc}-r{rev}", "CumProd",
                 {"x": rand(3, 4, 2, low=0.5, high=1.5), "axis": np.array(axis, np.int64)},
                 {"exclusive": exc, "reverse": rev}, init=("axis",), opset=24)
case("CumProd-int64", "CumProd", {"x": np.arange(1, 13, dtype=np.int64).reshape(3, 4),
                                  "axis": np.array(1, np.int32)}, init=("axis",), opset=24)
case("CumProd-f64-symbolic", "CumProd", {"x": rand(4, 3, dtype=np.float64), "axis": np.array(1, np.int64)},
     init=("axis",), opset=24, rtol=1e-12, symbolic={"x": ["N", 3]})

# -- Compress ---------------------------------------------------------------------------------------------------
xc = rand(3, 4, 2)
case("Compress-axis0", "Compress", {"x": xc, "cond": np.array([1, 0, 1], bool)}, {"axis": 0}, init=("cond",))
case("Compress-axis1-short", "Compress", {"x": xc, "cond": np.array([0, 1, 1], bool)}, {"axis": 1}, init=("cond",))
case("Compress-axis-neg", "Compress", {"x": xc, "cond": np.array([0, 1], bool)}, {"axis": -1}, init=("cond",))
case("Compress-flat", "Compress", {"x": xc, "cond": (np.arange(24) % 5 == 0)}, init=("cond",))
case("Compress-none", "Compress", {"x": xc, "cond": np.array([0, 0, 0], bool)}, {"axis": 0}, init=("cond",))
case("Compress-int32", "Compress", {"x": np.arange(12, dtype=np.int32).reshape(3, 4),
                                    "cond": np.array([1, 0, 0, 1], bool)}, {"axis": 1}, init=("cond",))

# -- DFT ----------------------------------------------------------------------------------------------------------
# float32 output of sums over up to 16 terms: the reference computes in float64 then rounds
for opset in (17, 20):
    for comp in (1, 2):
        for onesided in (0, 1):
            for inv in (0, 1):
                for length in (None, 6, 7, 12):  # inverse + onesided: a real inverse (irfft)
                    x = rand(2, 8, 3, comp, seed=comp)
                    ins = {"x": x, "len": None if length is None else np.array(length, np.int64)}
                    attrs = {"onesided": onesided, "inverse": inv}
                    init = ("len",)
                    if opset == 17:
                        attrs["axis"] = 1
                    else:
                        ins["axis"] = np.array(-3, np.int64)
                        init = ("len", "axis")
                    case(f"DFT{opset}-c{comp}-o{onesided}-i{inv}-L{length}", "DFT", ins, attrs, init=init,
                         opset=opset, atol=1e-4)
case("DFT20-default-axis-f64", "DFT", {"x": rand(3, 10, 2, dtype=np.float64)}, opset=20, rtol=1e-9, atol=1e-10)
case("DFT17-axis2-symbolic", "DFT", {"x": rand(3, 4, 5, 1)}, {"axis": 2}, opset=17, atol=1e-4,
     symbolic={"x": ["N", 4, 5, 1]})

# -- STFT ----------------------------------------------------------------------------------------------------------
sig = rand(2, 40, 1, seed=4)
hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(16) / 16)).astype(np.float32)
case("STFT-window", "STFT", {"x": sig, "step": np.array(8, np.int64), "win": hann}, init=("step",), opset=17,
     atol=1e-4)
case("STFT-window-length-twosided", "STFT", {"x": sig, "step": np.array(6, np.int64), "win": hann,
                                             "flen": np.array(16, np.int64)}, {"onesided": 0},
     init=("step", "flen"), opset=17, atol=1e-4)
case("STFT-no-window", "STFT", {"x": sig, "step": np.array(10, np.int64), "win": None,
                                "flen": np.array(12, np.int64)}, init=("step", "flen"), opset=17, atol=1e-4)
case("STFT-complex", "STFT", {"x": rand(1, 30, 2, seed=7), "step": np.array(5, np.int64), "win": hann[:10]},
     {"onesided": 0}, init=("step",), opset=17, atol=1e-4)

# -- windows and MelWeightMatrix: inputs known at generation time (evaluated while folding); onnxruntime is the
# oracle because folding itself uses onnx's reference evaluator
for op in ("HannWindow", "HammingWindow", "BlackmanWindow"):
    for periodic in (0, 1):
        case(f"{op}-p{periodic}", op, {"size": np.array(10, np.int64)}, {"periodic": periodic}, init=("size",),
             opset=17, oracle="ort")
    case(f"{op}-double", op, {"size": np.array(7, np.int32)}, {"output_datatype": 11}, init=("size",), opset=17,
         oracle="ort", rtol=1e-6)
case("MelWeightMatrix", "MelWeightMatrix",
     {"bins": np.array(8, np.int64), "dft": np.array(16, np.int64), "sr": np.array(8192, np.int64),
      "lo": np.array(0, np.float32), "hi": np.array(4096, np.float32)},
     init=("bins", "dft", "sr", "lo", "hi"), opset=17, oracle="ort")


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


@pytest.mark.parametrize("op,inputs,match", [
    ("Compress", {"x": rand(3, 2), "cond": np.array([1, 0, 1], bool)}, "condition"),
    ("HannWindow", {"size": np.array(8, np.int64)}, "window size"),
    ("DFT", {"x": rand(2, 4, 2), "len": np.array(4, np.int64)}, "dft_length"),
])
def test_runtime_shape_inputs_work_at_run(op, inputs, match):
    """Given at run, not at generation: Compress's condition decides a run-time size; a window size or DFT
    length is specialized at run (pysofie.specialize). Oracle: onnx's reference evaluator."""
    import pysofie
    from tests.util import assert_close, feeds_of, reference
    m = node_model(op, inputs, {"axis": 0} if op == "Compress" else None, opset=17)
    sess = pysofie.InferenceSession(m)
    feeds = feeds_of(m, inputs)
    assert (sess._lazy is not None) == (op != "Compress"), match
    assert_close(sess.run(None, feeds), reference(m, feeds))
