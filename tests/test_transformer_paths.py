"""The transformer and depthwise fast paths against onnxruntime: GELU chains fused into one Gelu and into the packed
matrix kernel (passes/transformer.py), a MatMul's bias Add and activation in the kernel's store, the vectorized
Softmax and LayerNorm row kernels, Pow by a small constant, the depthwise convolution kernel; and small BERT-,
GPT-2-, T5-, ViT- and ConvNeXt-style models (benchmarks/transformer_models.py, exported by torch).

All single-node / small-graph models of this module compile into one shared library."""
import math
import os
import sys
import warnings

import numpy as np
import pytest
from onnx import helper

from pysofie.api import generate_code
from tests.test_fusion import graph_model
from tests.util import assert_close, ort, rand

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks")

MODELS = {}  # id -> (model, feeds, rtol, atol, op types that must not remain, op types that must remain)


def add(id_, model, feeds, gone=(), kept=(), rtol=1e-4, atol=1e-5):
    MODELS[id_] = (model, feeds, rtol, atol, gone, kept)


def _c(name, value):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, 1, [], [float(value)]))


# -- GELU chains as exporters write them --------------------------------------------------------------------
def gelu_erf_nodes(x, y, form):
    consts = [_c("sq2", math.sqrt(2.0)), _c("isq2", 1 / math.sqrt(2.0)), _c("one", 1.0), _c("half", 0.5)]
    if form == "div":  # torch: x * 0.5 order after (1 + erf(x / sqrt 2)) * x
        return consts + [helper.make_node("Div", [x, "sq2"], ["u"]), helper.make_node("Erf", ["u"], ["e"]),
                         helper.make_node("Add", ["e", "one"], ["s"]), helper.make_node("Mul", [x, "s"], ["m"]),
                         helper.make_node("Mul", ["m", "half"], [y])]
    if form == "half-first":  # (0.5 * x) * (1 + erf(x * 1/sqrt 2))
        return consts + [helper.make_node("Mul", [x, "isq2"], ["u"]), helper.make_node("Erf", ["u"], ["e"]),
                         helper.make_node("Add", ["one", "e"], ["s"]), helper.make_node("Mul", ["half", x], ["h"]),
                         helper.make_node("Mul", ["h", "s"], [y])]
    # ((1 + erf) * 0.5) * x
    return consts + [helper.make_node("Div", [x, "sq2"], ["u"]), helper.make_node("Erf", ["u"], ["e"]),
                     helper.make_node("Add", ["e", "one"], ["s"]), helper.make_node("Mul", ["s", "half"], ["m"]),
                     helper.make_node("Mul", ["m", x], [y])]


def gelu_tanh_nodes(x, y, cube):
    consts = [_c("c3", 0.044715), _c("cs", math.sqrt(2 / math.pi)), _c("one", 1.0), _c("half", 0.5), _c("three", 3.0)]
    if cube == "pow":
        pre = [helper.make_node("Pow", [x, "three"], ["x3"])]
    else:
        pre = [helper.make_node("Mul", [x, x], ["x2"]), helper.make_node("Mul", [x, "x2"], ["x3"])]
    return consts + pre + [helper.make_node("Mul", ["c3", "x3"], ["t3"]), helper.make_node("Add", [x, "t3"], ["a"]),
                           helper.make_node("Mul", ["cs", "a"], ["u"]), helper.make_node("Tanh", ["u"], ["t"]),
                           helper.make_node("Add", ["one", "t"], ["s"]), helper.make_node("Mul", [x, "s"], ["m"]),
                           helper.make_node("Mul", ["half", "m"], [y])]


X3 = rand(2, 37, 48, seed=1) * 3
W = rand(48, 70, seed=2) * 0.3
BIAS = rand(70, seed=3)
for form in ("div", "half-first", "half-last"):
    # alone (the Gelu op's own generator), and after a dense layer (fused into the packed kernel)
    add(f"gelu-erf-{form}", graph_model(gelu_erf_nodes("x", "y", form), {"x": X3}, {}, ["y"]), {"x": X3},
        gone=("Erf", "Tanh"), kept=("Gelu",))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["b", "mm"], ["z"])]
    add(f"dense-gelu-erf-{form}", graph_model(nodes + gelu_erf_nodes("z", "y", form), {"x": X3}, {"w": W, "b": BIAS},
                                              ["y"]), {"x": X3}, gone=("Erf", "Gelu", "Add"))
for cube in ("pow", "mul"):
    add(f"gelu-tanh-{cube}", graph_model(gelu_tanh_nodes("x", "y", cube), {"x": X3}, {}, ["y"]), {"x": X3},
        gone=("Tanh", "Pow"), kept=("Gelu",))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["z"])]
    add(f"dense-gelu-tanh-{cube}", graph_model(nodes + gelu_tanh_nodes("z", "y", cube), {"x": X3},
                                               {"w": W, "b": BIAS}, ["y"]), {"x": X3}, gone=("Tanh", "Gelu", "Add"))

# a chain that only looks like GELU (0.6 instead of 0.5) stays as it is
_bad = gelu_erf_nodes("x", "y", "div")
_bad[3] = _c("half", 0.6)
add("gelu-lookalike", graph_model(_bad, {"x": X3}, {}, ["y"]), {"x": X3}, gone=("Gelu",), kept=("Erf",))

# -- dense layers: bias over the last axis (several shapes of it), activations ---------------------------------
for act in ("Relu", "Tanh", "Sigmoid", "LeakyRelu"):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["z"]),
             helper.make_node(act, ["z"], ["y"])]
    add(f"dense-bias-{act}", graph_model(nodes, {"x": X3}, {"w": W, "b": BIAS.reshape(1, 1, 70)}, ["y"]), {"x": X3},
        gone=(act, "Add"))
# a bias that varies along another axis is not a dense-layer bias
nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])]
add("dense-rowbias", graph_model(nodes, {"x": X3}, {"w": W, "b": rand(37, 1, seed=4)}, ["y"]), {"x": X3}, kept=("Add",))
# activation without bias, on a 2-D MatMul with many rows (row and column blocks)
X2 = rand(300, 48, seed=5)
nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Relu", ["mm"], ["y"])]
add("dense-relu-2d", graph_model(nodes, {"x": X2}, {"w": W}, ["y"]), {"x": X2}, gone=("Relu",))

# -- softmax, layer norm, pow ---------------------------------------------------------------------------------
S = rand(2, 3, 5, 21, seed=6) * 4
S[0, 0, 0, :7] = -np.inf  # masked entries
S[0, 1, 2, 3] = np.nan  # a NaN row: all NaN
add("softmax-last", graph_model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], {"x": S}, {}, ["y"]), {"x": S})
add("softmax-mid", graph_model([helper.make_node("Softmax", ["x"], ["y"], axis=2)], {"x": S}, {}, ["y"]), {"x": S})
L = rand(3, 7, 45, seed=7) * 2 + 0.5
add("layernorm-bias", graph_model([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], epsilon=1e-5)],
                                  {"x": L}, {"s": rand(45, seed=8), "b": rand(45, seed=9)}, ["y"]), {"x": L})
add("layernorm-nobias", graph_model([helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=1)],
                                    {"x": L}, {"s": rand(7, 45, seed=10)}, ["y"]), {"x": L})
for p in (2.0, 3.0, 1.0):
    add(f"pow-{p}", graph_model([_c("p", p), helper.make_node("Pow", ["x", "p"], ["y"])], {"x": L}, {}, ["y"]),
        {"x": L})

# -- depthwise convolutions -----------------------------------------------------------------------------------
DW = [
    # (x shape, kernel, attrs)
    ((2, 8, 23, 37), (7, 7), {"pads": [3, 3, 3, 3]}),
    ((1, 5, 9, 16), (3, 3), {"pads": [1, 0, 2, 1]}),
    ((1, 4, 6, 50), (5, 5), {"pads": [0, 0, 0, 0]}),
    ((1, 6, 40), (7,), {"pads": [3, 3]}),
    ((1, 6, 12, 12), (3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),  # strided: the row kernel's path
]
for k, (xs, ks, attrs) in enumerate(DW):
    C = xs[1]
    for act in (None, "Relu"):
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if act else "y"], group=C, **attrs)]
        if act:
            nodes.append(helper.make_node(act, ["c"], ["y"]))
        x = rand(*xs, seed=20 + k)
        m = graph_model(nodes, {"x": x}, {"w": rand(C, 1, *ks, seed=30 + k), "b": rand(C, seed=40 + k)}, ["y"])
        add(f"depthwise-{k}-{act}", m, {"x": x})


@pytest.fixture(scope="module")
def sessions(request):
    from pysofie.build.batch import compile_many
    ids = list(MODELS)
    return dict(zip(ids, compile_many([MODELS[i][0] for i in ids])))


@pytest.mark.parametrize("case", list(MODELS))
def test_path(case, sessions):
    model, feeds, rtol, atol, gone, kept = MODELS[case]
    sess = sessions[case]
    if isinstance(sess, Exception):
        raise sess
    ops = {n.op_type for n in sess._gm.emitter.graph.nodes}
    assert not (set(gone) & ops), f"{case}: {sorted(set(gone) & ops)} still in the graph: {sorted(ops)}"
    assert set(kept) <= ops, f"{case}: {sorted(set(kept) - ops)} missing from the graph: {sorted(ops)}"
    assert_close(sess.run(None, feeds), ort(model, feeds), rtol, atol, what=case)


def test_dense_fusion_is_in_the_kernel():
    """The bias and the GELU of a dense layer are applied by gemm_packed's store (no separate loops)."""
    model = MODELS["dense-gelu-erf-div"][0]
    header = generate_code(model).header
    assert "pysofie_gemm::GELU" in header and "std::erf" not in header.split("namespace detail")[-1]


# -- whole models exported by torch (tiny configurations) --------------------------------------------------------
@pytest.fixture(scope="module")
def torch_models():
    pytest.importorskip("torch")
    sys.path.insert(0, BENCH)
    try:
        import transformer_models as tm
    finally:
        sys.path.remove(BENCH)
    from pysofie.build.batch import compile_many
    names = list(tm.TINY)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        models = [tm.build(n, tiny=True) for n in names]
    sess = compile_many(models)
    return {n: (m, tm.TINY[n].feeds(), s) for n, m, s in zip(names, models, sess)}


@pytest.mark.parametrize("name", ["bert", "gpt2", "t5", "vit", "convnext", "depthwise7x7"])
def test_torch_model(name, torch_models):
    model, feeds, sess = torch_models[name]
    if isinstance(sess, Exception):
        raise sess
    assert_close(sess.run(None, feeds), ort(model, feeds), 1e-4, 1e-4, what=name)


def test_portable_build():
    """The same paths compiled without -march=native (no AVX2 on x86-64: the scalar fallbacks)."""
    from pysofie.build.batch import compile_many
    ids = ["dense-gelu-erf-div", "dense-gelu-tanh-mul", "softmax-last", "layernorm-bias", "depthwise-0-Relu",
           "depthwise-3-None"]
    for case, sess in zip(ids, compile_many([MODELS[i][0] for i in ids], native=False)):
        if isinstance(sess, Exception):
            raise sess
        model, feeds, rtol, atol = MODELS[case][:4]
        assert_close(sess.run(None, feeds), ort(model, feeds), rtol, atol, what=f"{case} (portable)")
