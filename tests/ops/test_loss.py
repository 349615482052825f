"""SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss against onnx's reference evaluator (one shared library
for the module)."""
import numpy as np
import pytest

from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=13)
case = CASES.add


def labels(shape, c, seed, ignore=None):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, c, size=shape).astype(np.int64)
    if ignore is not None:
        lab.reshape(-1)[::3] = ignore  # every third element ignored
    return lab


for red in ("none", "sum", "mean"):
    for shape in [(4, 5), (3, 4, 2), (2, 3, 2, 3)]:
        n, c, rest = shape[0], shape[1], shape[2:]
        tag = "x".join(map(str, shape))
        x = rand(*shape, low=-2, high=2, seed=len(shape))
        lab = labels((n, *rest), c, 1)
        wts = rand(c, low=0.2, high=1.5, seed=9)
        for op, nout in (("SoftmaxCrossEntropyLoss", 2), ("NegativeLogLikelihoodLoss", 1)):
            short = "sce" if op.startswith("S") else "nll"
            case(f"{short}-{red}-{tag}", op, {"x": x, "lab": lab}, {"reduction": red}, n_outputs=nout)
            case(f"{short}-{red}-{tag}-w", op, {"x": x, "lab": lab, "w": wts}, {"reduction": red}, n_outputs=nout)
            ign = labels((n, *rest), c, 2, ignore=1)
            case(f"{short}-{red}-{tag}-ign", op, {"x": x, "lab": ign}, {"reduction": red, "ignore_index": 1})
            # a negative ignore_index outside the class range
            neg = labels((n, *rest), c, 3, ignore=-5)
            case(f"{short}-{red}-{tag}-w-ignneg", op, {"x": x, "lab": neg, "w": wts},
                 {"reduction": red, "ignore_index": -5}, n_outputs=nout)
case("sce-default-mean-f64", "SoftmaxCrossEntropyLoss",
     {"x": rand(3, 6, dtype=np.float64, seed=5), "lab": labels((3,), 6, 4).astype(np.int32)}, rtol=1e-10, atol=1e-12)
case("nll-weights-initializer", "NegativeLogLikelihoodLoss",
     {"x": rand(3, 4, 5, seed=6), "lab": labels((3, 5), 4, 7), "w": rand(4, low=0.1, high=1, seed=8)},
     {"reduction": "mean"}, init=("w",))
case("sce-symbolic-batch", "SoftmaxCrossEntropyLoss", {"x": rand(5, 4, seed=11), "lab": labels((5,), 4, 12)},
     {"reduction": "none"}, n_outputs=2, symbolic={"x": ["N", 4], "lab": ["N"]})


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_bad_reduction_rejected():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("NegativeLogLikelihoodLoss", {"x": rand(3, 4), "lab": labels((3,), 4, 1)},
                   {"reduction": "max"}, opset=13)
    with pytest.raises(PysofieError, match="reduction"):
        pysofie.InferenceSession(m)


def test_label_shape_mismatch_rejected():
    import pysofie
    from pysofie.errors import PysofieError
    m = node_model("SoftmaxCrossEntropyLoss", {"x": rand(3, 4, 2), "lab": labels((3,), 4, 1)}, opset=13)
    with pytest.raises(PysofieError, match="labels shape"):
        pysofie.InferenceSession(m)
