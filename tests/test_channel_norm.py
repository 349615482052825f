"""passes/channel_norm.py (ConvNeXt's permutes folded into their neighbours) against onnxruntime:
Transpose(NCHW -> NHWC) + LayerNormalization over the channels as one PysofieChannelLayerNorm (NHWC output, or
NCHW when the Transpose back follows), and [Mul by a per-channel scale] + Transpose back + residual Add as one
PysofieScaleTransposeAdd; at sizes that reach every path of runtime/pysofie_transpose.h (pixel blocks of 16 and 8
and a scalar tail, channel counts that are and are not multiples of 8, 1-D and 2-D images, with and without
bias / scale), and graphs that must stay as they are. Tolerance rtol 1e-4, atol 1e-5 (the per-pixel sums in
another order than onnxruntime's). All models compile into one shared library; tests/test_isa_variants.py runs
two of them on every instruction set."""
import numpy as np
import pytest
from onnx import helper

from tests.test_fusion import graph_model
from tests.util import assert_close, ort, rand

MODELS = {}  # id -> (model, feeds, op types that must remain, op types that must be gone)


def channel_ln(shape, bias=True, back=False, seed=0, stats_out=False):
    r = len(shape)
    x = rand(*shape, seed=seed) * 2 + 0.5
    C = shape[1]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0] + list(range(2, r)) + [1]),
             helper.make_node("LayerNormalization", ["t", "g"] + (["b"] if bias else []),
                              ["n"] + (["mean"] if stats_out else []), axis=-1, epsilon=1e-6)]
    if back:
        nodes.append(helper.make_node("Transpose", ["n"], ["y"], perm=[0, r - 1] + list(range(1, r - 1))))
    else:
        nodes.append(helper.make_node("Identity", ["n"], ["y"]))
    inits = {"g": 1 + 0.1 * rand(C, seed=seed + 1)}
    if bias:
        inits["b"] = rand(C, seed=seed + 2)
    return graph_model(nodes, {"x": x}, inits, ["y"] + (["mean"] if stats_out else [])), {"x": x}


def scale_transpose_add(shape, scale=True, swap=False, seed=0):
    """shape: the NCHW result; F is its NHWC form."""
    r = len(shape)
    f_shape = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    f, res = rand(*f_shape, seed=seed), rand(*shape, seed=seed + 1)
    nodes = []
    src = "f"
    if scale:
        nodes.append(helper.make_node("Mul", ["gam", "f"], ["fs"]))
        src = "fs"
    nodes += [helper.make_node("Transpose", [src], ["t"], perm=[0, r - 1] + list(range(1, r - 1))),
              helper.make_node("Add", ["t", "res"] if swap else ["res", "t"], ["y"])]
    inits = {"gam": 0.1 * rand(shape[1], seed=seed + 2)} if scale else {}
    return graph_model(nodes, {"f": f, "res": res}, inits, ["y"]), {"f": f, "res": res}


FUSED_LN, FUSED_ADD = ("PysofieChannelLayerNorm",), ("PysofieScaleTransposeAdd",)
# 65 pixels: four blocks of 16 and a scalar tail; 24 channels: three 8 x 8 transposes per block
MODELS["ln-nhwc-c24"] = channel_ln((2, 24, 5, 13), seed=1) + (FUSED_LN, ("Transpose", "LayerNormalization"))
# 13 channels (five past the 8 x 8 transposes), 40 pixels (16 + 16 + 8), no bias
MODELS["ln-nhwc-c13-nobias"] = channel_ln((1, 13, 5, 8), bias=False, seed=2) + (FUSED_LN, ("Transpose",))
# the Transpose back folded in too: NCHW in and out (63 pixels: 16 x 3 + 8 + 7), 1-D images
MODELS["ln-nchw-back"] = channel_ln((2, 48, 7, 9), back=True, seed=3) + (FUSED_LN, ("Transpose",))
MODELS["ln-1d"] = channel_ln((1, 16, 37), seed=4) + (FUSED_LN, ("Transpose",))
# the LayerNorm's Mean is an output too: unchanged
MODELS["ln-stats-output"] = channel_ln((1, 8, 4, 4), stats_out=True, seed=5) + (("Transpose", "LayerNormalization"),
                                                                                 FUSED_LN)
MODELS["add-c24-scale"] = scale_transpose_add((2, 24, 5, 13), seed=6) + (FUSED_ADD, ("Transpose", "Mul", "Add"))
MODELS["add-c16-noscale-swapped"] = scale_transpose_add((1, 16, 9, 7), scale=False, swap=True, seed=7) + (
    FUSED_ADD, ("Transpose", "Add"))
MODELS["add-c12-scalar"] = scale_transpose_add((1, 12, 6, 6), seed=8) + (FUSED_ADD, ("Transpose", "Mul"))


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    return dict(zip(MODELS, compile_many([m[0] for m in MODELS.values()])))


@pytest.mark.parametrize("case", list(MODELS))
def test_channel_layout(case, sessions):
    model, feeds, kept, gone = MODELS[case]
    sess = sessions[case]
    if isinstance(sess, Exception):
        raise sess
    ops = [n.op_type for n in sess._gm.emitter.graph.nodes]
    assert all(k in ops for k in kept) and not any(g in ops for g in gone), (case, ops)
    assert_close(sess.run(None, feeds), ort(model, feeds), 1e-4, 1e-5, what=case)


def test_layernorm_scale_that_does_not_broadcast_is_refused():
    """A scale of (9, 16) for a normalized shape (9, 24) is an error naming the node and the tensor (it was read
    out of bounds)."""
    from pysofie.errors import PysofieError
    from pysofie.session import InferenceSession
    x = rand(2, 9, 24, seed=20)
    m = graph_model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=1)], {"x": x},
                    {"g": rand(9, 16, seed=21), "b": rand(9, 16, seed=22)}, ["y"])
    with pytest.raises(PysofieError, match=r"LayerNormalization.*'g'.*does not broadcast to the normalized shape"):
        InferenceSession(m)
