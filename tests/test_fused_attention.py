"""passes.transformer.FuseAttention and runtime/pysofie_attn.h, and passes.transformer.FuseRMSNorm with the
RMSNormalization row kernel, against onnxruntime: attention as exporters write it
(head Reshape + Transpose, MatMul(Q, K^T), scale, Where / Add masks in either order, Softmax, MatMul(., V), the
Transpose back) at odd sizes (head sizes not multiples of 8 or 16, sequence lengths not multiples of 8), with 1, 2
and 3 threads (bitwise equal: every task writes its own rows), and compiled without -march=native (the scalar
fallback). Tolerance: rtol 1e-4, atol 1e-5 (float rounding of the products and of the vectorized exp).
All models compile into one shared library."""
import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pysofie.session import InferenceSession
from tests.test_fusion import graph_model
from tests.util import assert_close, ort, rand

MODELS = {}  # id -> (model, feeds, fused: whether the PysofieAttention node must appear)


def _shape(name, dims):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(dims, np.int64), name))


def _scalar(name, v):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))


def attention(B, H, S, T, D, Dv, scale="div", masks=(), k_layout="bthd", out_transpose=True, seed=0,
              fill=float("-inf"), split=None, k_out=False):
    """An exporter-style attention graph; masks: sequence of "add" (constant (1, H, S, T)), "add-input" (input
    (B, 1, 1, T)), "where" (constant bool (S, T): `fill`), applied in that order after the scale. split: the
    order (e.g. "vqk") of Q, K, V as slices of the last axis of one (B, S, 2 H D + H Dv) input x (a fused
    projection's Split); k_out: K's slice is a graph output too."""
    rng = np.random.default_rng(seed)
    feeds = {"q": rand(B, S, H * D, seed=seed + 1), "v": rand(B, T, H * Dv, seed=seed + 3)}
    nodes = []
    if split:
        width = {"q": H * D, "k": H * D, "v": H * Dv}
        feeds = {"x": rand(B, S, sum(width.values()), seed=seed + 1)}
        nodes += [_shape("sizes", [width[c] for c in split]),
                  helper.make_node("Split", ["x", "sizes"], list(split), axis=-1)]
    nodes += [_shape("sq", [B, S, H, D]), _shape("sv", [B, T, H, Dv]), _shape("sy", [B, S, H * Dv]),
             helper.make_node("Reshape", ["q", "sq"], ["q4"]), helper.make_node("Reshape", ["v", "sv"], ["v4"]),
             helper.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3])]
    if k_layout == "bthd":
        if not split:
            feeds["k"] = rand(B, T, H * D, seed=seed + 2)
        nodes += [_shape("sk", [B, T, H, D]), helper.make_node("Reshape", ["k", "sk"], ["k4"]),
                  helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1])]
    elif k_layout == "bhtd":
        feeds["k"] = rand(B, H, T, D, seed=seed + 2)
        nodes.append(helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]))
    else:  # K^T as an input: not fused
        feeds["kt"] = rand(B, H, D, T, seed=seed + 2)
    nodes.append(helper.make_node("MatMul", ["qh", "kt"], ["s0"]))
    inits = {}
    cur = "s0"
    if scale == "div":
        nodes += [_scalar("c", math.sqrt(D)), helper.make_node("Div", [cur, "c"], ["s1"])]
        cur = "s1"
    elif scale == "mul":
        nodes += [_scalar("c", 0.3), helper.make_node("Mul", ["c", cur], ["s1"])]
        cur = "s1"
    for k, m in enumerate(masks):
        out = f"m{k}"
        if m == "add":
            inits["bias"] = rng.normal(0, 1, (1, H, S, T))
            nodes.append(helper.make_node("Add", [cur, "bias"], [out]))
        elif m == "add-input":
            keep = np.ones((B, 1, 1, T), np.float32)
            keep[:, :, :, T - 3:] = 0
            feeds["mask"] = (1 - keep) * -10000.0
            nodes.append(helper.make_node("Add", ["mask", cur], [out]))
        else:
            cond = ~np.tril(np.ones((S, T), bool), k=T - S)
            nodes += [helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(cond, "cond")),
                      _scalar("ninf", fill), helper.make_node("Where", ["cond", "ninf", cur], [out])]
        cur = out
    nodes += [helper.make_node("Softmax", [cur], ["p"], axis=-1), helper.make_node("MatMul", ["p", "vh"], ["o"])]
    if out_transpose:
        nodes += [helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", ["ot", "sy"], ["y"])]
    else:
        nodes.append(helper.make_node("Identity", ["o"], ["y"]))
    return graph_model(nodes, feeds, inits, ["y", "k"] if k_out else ["y"]), feeds


def add(id_, fused=True, **kw):
    MODELS[id_] = attention(**kw) + (fused,)


add("bert-like", B=2, H=3, S=13, T=13, D=20, Dv=20, masks=("add-input",))
add("causal-then-bias", B=1, H=2, S=17, T=17, D=24, Dv=12, masks=("where", "add"))
add("finite-fill-then-bias", B=1, H=2, S=11, T=11, D=16, Dv=16, masks=("where", "add"), fill=-3.0, seed=13)
add("bias-then-causal", B=1, H=2, S=9, T=21, D=16, Dv=40, scale="mul", masks=("add", "where"), seed=5,
    fill=-5.0)
add("no-scale-bias", B=1, H=4, S=32, T=32, D=64, Dv=64, scale=None, masks=("add",), seed=7)
add("k-bhtd-no-out-transpose", B=2, H=1, S=5, T=40, D=8, Dv=33, k_layout="bhtd", out_transpose=False, seed=9)
add("k-transposed-input", fused=False, B=1, H=2, S=7, T=7, D=8, Dv=8, k_layout="given", seed=11)
# Q, K, V sliced from one fused projection (Split of the last axis): read in place, the Split and Reshapes go
add("split-qkv", B=2, H=3, S=19, T=19, D=12, Dv=12, masks=("add-input",), split="qkv", seed=15)
add("split-vqk-dv", B=1, H=2, S=23, T=23, D=16, Dv=24, masks=("where",), split="vqk", seed=17)
# K's slice also a graph output: the Split stays (attention still fused)
add("split-k-output", B=1, H=2, S=9, T=9, D=8, Dv=8, split="qkv", k_out=True, seed=19)
SPLIT_FOLDED = {"split-qkv": True, "split-vqk-dv": True, "split-k-output": False}
# a causal Where (-inf) as the last mask: the kernel skips the hidden keys (Args::causal, the condition not read);
# 50 query rows (three row blocks of the kernel, each with its own key count) over 53 keys (offset 3), and after
# an additive bias; not when a bias is added after it (the kernel reads the condition)
add("causal-offset-blocks", B=1, H=2, S=50, T=53, D=16, Dv=24, masks=("where",), seed=21)
add("bias-then-causal-inf", B=2, H=3, S=30, T=30, D=8, Dv=8, masks=("add", "where"), seed=23)
CAUSAL = {"causal-offset-blocks": 3, "bias-then-causal-inf": 0, "split-vqk-dv": 0, "causal-then-bias": -1,
          "bias-then-causal": -1, "finite-fill-then-bias": -1}


def rmsnorm(shape, form, weight=True, opset=17, seed=0):
    """x / sqrt(mean(x^2, -1) + eps) [* w] as exporters write it: form "pow-div1" (Pow, Div(1, .), Mul by x),
    "mul-recip" (x * x, Reciprocal, Mul), "div-x" (Div(x, sqrt))."""
    x = rand(*shape, seed=seed) * 3
    nodes = [_scalar("two", 2.0), _scalar("eps", 1e-6), _scalar("one", 1.0)]
    nodes.append(helper.make_node("Pow", ["x", "two"], ["sq"]) if form == "pow-div1"
                 else helper.make_node("Mul", ["x", "x"], ["sq"]))
    if opset >= 18:
        nodes += [_shape("axes", [-1]), helper.make_node("ReduceMean", ["sq", "axes"], ["ms"], keepdims=1)]
    else:
        nodes.append(helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1))
    nodes += [helper.make_node("Add", ["ms", "eps"], ["a"]), helper.make_node("Sqrt", ["a"], ["r"])]
    out = "n" if weight else "y"
    if form == "pow-div1":
        nodes += [helper.make_node("Div", ["one", "r"], ["inv"]), helper.make_node("Mul", ["x", "inv"], [out])]
    elif form == "mul-recip":
        nodes += [helper.make_node("Reciprocal", ["r"], ["inv"]), helper.make_node("Mul", ["inv", "x"], [out])]
    else:
        nodes.append(helper.make_node("Div", ["x", "r"], [out]))
    inits = {}
    if weight:
        inits["w"] = 1 + 0.1 * rand(shape[-1], seed=seed + 1)
        nodes.append(helper.make_node("Mul", ["w", "n"], ["y"]))
    return graph_model(nodes, {"x": x}, inits, ["y"], opset=opset), {"x": x}


RMS = {"rms-pow-div1-w": rmsnorm((2, 5, 37), "pow-div1"),
       "rms-mul-recip": rmsnorm((3, 8), "mul-recip", weight=False, seed=3),
       "rms-div-x-opset18": rmsnorm((4, 256), "div-x", opset=18, seed=5)}


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    ids = list(MODELS) + list(RMS)
    models = [MODELS[i][0] for i in MODELS] + [RMS[i][0] for i in RMS]
    return dict(zip(ids, compile_many(models)))


@pytest.mark.parametrize("case", list(MODELS))
def test_fused_attention(case, sessions):
    model, feeds, fused = MODELS[case]
    sess = sessions[case]
    if isinstance(sess, Exception):
        raise sess
    ops = [n.op_type for n in sess._gm.emitter.graph.nodes]
    if fused:
        assert ops.count("PysofieAttention") == 1 and "Softmax" not in ops and "Transpose" not in ops, ops
    else:
        assert "PysofieAttention" not in ops and "Softmax" in ops, ops
    if case in CAUSAL:
        (att,) = [n for n in sess._gm.emitter.graph.nodes if n.op_type == "PysofieAttention"]
        assert int(att.op.causal) == CAUSAL[case], (case, att.op.causal)
        assert (att.inputs[4] is None) == (CAUSAL[case] >= 0), case  # the condition is not read when causal
    if case in SPLIT_FOLDED:
        # folded: only the attention and the output's Reshape are left
        assert (ops == ["PysofieAttention", "Reshape"]) == SPLIT_FOLDED[case], ops
    expected = ort(model, feeds)
    one = sess.run(None, feeds)
    assert_close(one, expected, 1e-4, 1e-5, what=case)
    lib = sess._native.lib._name
    for n in (2, 3):
        s = InferenceSession(None, _generated=sess._gm, _library=lib, intra_op_num_threads=n)
        assert_close(s.run(None, feeds), one, 0, 0, what=f"{case}, {n} threads against 1")


@pytest.mark.parametrize("case", list(RMS))
def test_rmsnorm(case, sessions):
    model, feeds = RMS[case]
    sess = sessions[case]
    if isinstance(sess, Exception):
        raise sess
    ops = [n.op_type for n in sess._gm.emitter.graph.nodes]
    assert ops == ["RMSNormalization"], ops
    assert_close(sess.run(None, feeds), ort(model, feeds), 1e-5, 1e-6, what=case)


def test_portable_build():
    """Compiled without -march=native: the scalar fallbacks of runtime/pysofie_attn.h."""
    from pysofie.build.batch import compile_many
    cases = {**{i: MODELS[i][:2] for i in ("causal-then-bias", "k-bhtd-no-out-transpose", "causal-offset-blocks")},
             "rms-pow-div1-w": RMS["rms-pow-div1-w"]}
    for case, sess in zip(cases, compile_many([m for m, _ in cases.values()], native=False)):
        if isinstance(sess, Exception):
            raise sess
        model, feeds = cases[case]
        assert_close(sess.run(None, feeds), ort(model, feeds), 1e-4, 1e-5, what=f"{case} (portable)")


# -- Transposes that swap two axis groups (runtime/pysofie_transpose.h): exact copies -----------------------------
def transpose_model(shape, perm, elem=TensorProto.FLOAT, seed=0):
    rng = np.random.default_rng(seed)
    np_t = {TensorProto.FLOAT: np.float32, TensorProto.INT64: np.int64, TensorProto.BOOL: np.bool_,
            TensorProto.UINT8: np.uint8}[elem]
    x = (rng.normal(0, 10, shape) if np_t is not np.bool_ else rng.normal(0, 1, shape) > 0).astype(np_t)
    g = helper.make_graph([helper.make_node("Transpose", ["x"], ["y"], perm=list(perm))], "tr",
                          [helper.make_tensor_value_info("x", elem, list(shape))],
                          [helper.make_tensor_value_info("y", elem, [shape[p] for p in perm])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, {"x": x}


TRANSPOSES = {
    "nchw-nhwc": transpose_model((2, 19, 13, 11), (0, 2, 3, 1)),           # 8x8 blocks and odd edges
    "nhwc-nchw": transpose_model((1, 16, 16, 48), (0, 3, 1, 2), seed=1),   # whole blocks
    "heads": transpose_model((2, 7, 3, 5), (0, 2, 1, 3), seed=2),          # runs of 5 elements
    "2d-int64": transpose_model((9, 17), (1, 0), TensorProto.INT64, seed=3),
    "bool": transpose_model((3, 10, 9), (0, 2, 1), TensorProto.BOOL, seed=4),
    "uint8-inner": transpose_model((4, 6, 2, 3), (2, 0, 1, 3), TensorProto.UINT8, seed=5),
    "two-swaps-generic": transpose_model((2, 3, 4, 5), (1, 0, 3, 2), seed=6),
}


def test_transposes():
    """Against onnxruntime, exactly, with 1 and 3 threads; native and portable builds."""
    from pysofie.build.batch import compile_many
    ids = list(TRANSPOSES)
    models = [TRANSPOSES[i][0] for i in ids]
    for native, sessions in ((True, compile_many(models)), (False, compile_many(models[:3], native=False))):
        for case, sess in zip(ids, sessions):
            if isinstance(sess, Exception):
                raise sess
            model, feeds = TRANSPOSES[case]
            expected = ort(model, feeds)
            assert_close(sess.run(None, feeds), expected, 0, 0, what=f"{case} (native={native})")
            if native:
                s3 = InferenceSession(None, _generated=sess._gm, _library=sess._native.lib._name,
                                      intra_op_num_threads=3)
                assert_close(s3.run(None, feeds), expected, 0, 0, what=f"{case}, 3 threads")
