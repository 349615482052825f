"""The fast paths of the generated code against onnxruntime and the unoptimized path: convolution in tiles of
output positions (im2col a tile at a time, bias + activation on the hot tile), pointwise convolution without
im2col, and the small-matrix Gemm kernel (few rows, B transposed at generation time).

All models of this module compile into one shared library."""
import os

import numpy as np
import pytest
from onnx import helper

from pysofie.api import load
from pysofie.backends.cpp.ops.conv import col_tile
from pysofie.passes.rewrites import FuseActivation, FuseBiasAdd
from pysofie.passes.manager import PassManager
from pysofie.backends.cpp.passes.winograd import WinogradConv, eligible, winograd_matrices
from tests.test_fusion import graph_model
from tests.util import ROOTBENCH, assert_close, ort, rand

MODELS = {}


def add(id_, model, feeds, rtol=1e-4, atol=1e-5):
    MODELS[id_] = (model, feeds, rtol, atol)


# convolutions large enough to need several tiles (the last one partial, tiles crossing output rows)
CONVS = [
    # (x shape, w shape, attrs)
    ((1, 64, 40, 40), (8, 64, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 32, 96, 96), (4, 32, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 32, 50, 47), (4, 32, 3, 3), {"pads": [0, 2, 1, 0], "dilations": [2, 1]}),
    ((1, 64, 2000), (3, 64, 9), {"pads": [4, 4]}),
    ((1, 8, 12, 12, 12), (2, 8, 5, 5, 5), {"pads": [1, 1, 1, 1, 1, 1]}),
    ((2, 64, 70, 70), (6, 32, 3, 3), {"group": 2, "strides": [1, 2], "pads": [2, 2, 2, 2]}),
    ((1, 64, 30, 30), (16, 64, 1, 1), {"strides": [2, 2]}),  # 1x1 with stride: im2col path
    ((1, 64, 30, 30), (16, 64, 1, 1), {}),  # pointwise: no im2col
    # output channels not a multiple of the kernel's 16, batch, asymmetric pads, 3-D strides, dilated 1-D
    ((1, 3, 37, 35), (33, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),
    ((2, 5, 13, 11), (20, 5, 3, 3), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ((1, 4, 9, 10, 11), (17, 4, 3, 2, 3), {"pads": [1, 0, 1, 1, 1, 0], "strides": [1, 2, 2]}),
    ((1, 6, 300), (40, 3, 5), {"group": 2, "dilations": [3], "pads": [6, 5]}),
    # at most 8 output channels per group: the row kernel (unit stride along the last axis; rows of 8 * NV;
    # chunks of 4 channels)
    ((1, 6, 20, 23), (7, 6, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 8, 12, 30), (12, 4, 3, 3), {"group": 2, "pads": [0, 1, 2, 0]}),
    ((1, 1, 100, 100), (2, 1, 5, 5), {"pads": [2, 2, 2, 2]}),
    ((2, 5, 13, 11), (3, 5, 3, 3), {"pads": [1, 0, 2, 1], "strides": [2, 1]}),
    ((1, 6, 130), (8, 3, 5), {"group": 2, "dilations": [2], "pads": [3, 3]}),
    ((1, 4, 6, 7, 8), (1, 4, 3, 2, 3), {"pads": [1, 0, 1, 1, 1, 0], "strides": [2, 2, 1]}),
]
for k, (xs, ws, attrs) in enumerate(CONVS):
    K = ws[1] * int(np.prod(ws[2:]))
    for act in (None, "Relu"):
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if act else "y"], **attrs)]
        if act:
            nodes.append(helper.make_node(act, ["c"], ["y"]))
        model = graph_model(nodes, {"x": rand(*xs)}, {"w": rand(*ws, seed=k), "b": rand(ws[0], seed=k + 1)}, ["y"])
        # sums of up to ~600 products of values in [-1, 1]: absolute tolerance scaled accordingly
        add(f"conv-tiles-{k}-{act}", model, {"x": rand(*xs, seed=k + 2)}, atol=1e-4)

# ConvTranspose by output phases (packed weights, indirect kernel): several bands and reduction chunks, channel
# counts off the kernel's 16, phases without any kernel tap (kernel 2 < stride 3), dilation, groups, 3-D, batch
CONVT = [
    ((1, 40, 7, 9), (40, 20, 3, 3), {"strides": [2, 2]}),
    ((1, 24, 15, 17), (24, 21, 4, 4), {}),
    ((2, 8, 5, 5), (8, 5, 2, 2), {"strides": [3, 3], "pads": [1, 0, 0, 1]}),
    ((1, 12, 9, 8), (12, 6, 3, 3), {"strides": [2, 3], "dilations": [2, 1], "group": 3, "output_padding": [1, 2]}),
    ((1, 6, 4, 5, 3), (6, 9, 3, 2, 3), {"strides": [2, 2, 1], "pads": [1, 0, 1, 0, 1, 1]}),
    ((1, 16, 30, 30), (16, 20, 3, 3), {"strides": [2, 2], "pads": [1, 1, 0, 0]}),  # large: by phases
    # stride 1, 4x4, enough channels: the equivalent Conv by Winograd F(4x4, 4x4) (8 tiles of 4 per row, the last
    # partial; asymmetric pads) and F(2x2, 4x4) (15 columns)
    ((1, 40, 9, 29), (40, 20, 4, 4), {"pads": [1, 2, 0, 1]}),
    ((1, 32, 8, 12), (32, 16, 4, 4), {}),
]
for k, (xs, ws, attrs) in enumerate(CONVT):
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    model = graph_model(nodes, {"x": rand(*xs)},
                        {"w": rand(*ws, seed=k), "b": rand(ws[1] * attrs.get("group", 1), seed=k + 1)}, ["y"])
    add(f"convtranspose-{k}", model, {"x": rand(*xs, seed=k + 2)}, atol=1e-4)

# Winograd F(2x2, 3x3) and F(2x2, 5x5) (opt-in pass): odd output sizes (partial tiles), padding, batch, no bias
# (widths such that the tile rows, padded to groups of 8 tiles by the AVX2 transforms, stay eligible)
WINO = [((2, 32, 9, 15), (16, 32, 3, 3), 1, True), ((1, 32, 13, 15), (17, 32, 5, 5), 2, False),
        ((1, 32, 12, 33), (16, 32, 5, 5), 0, True), ((1, 32, 40, 31), (16, 32, 3, 3), 1, True),
        ((1, 40, 7, 32), (20, 40, 3, 3), 0, True)]
for k, (xs, ws, p, b) in enumerate(WINO):
    inits = {"w": rand(*ws, seed=k)}
    if b:
        inits["b"] = rand(ws[0], seed=k + 7)
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if b else []), ["c"], pads=[p] * 4),
             helper.make_node("Relu", ["c"], ["y"])]
    # Winograd sums transformed values of larger magnitude: absolute error ~1e-6 of outputs up to ~30
    add(f"winograd-{k}", graph_model(nodes, {"x": rand(*xs)}, inits, ["y"]), {"x": rand(*xs, seed=k + 3)},
        atol=1e-4)

# MaxPool without dilation (window clipped once per row / column): pads, strides, ceil_mode, 1-D
for k, (xs, attrs) in enumerate([((1, 4, 112, 111), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
                                 ((2, 3, 9, 10), {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1}),
                                 ((1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2]}),
                                 ((1, 3, 20), {"kernel_shape": [4], "strides": [3], "pads": [1, 2]})]):
    add(f"maxpool-{k}", graph_model([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], {"x": rand(*xs)}, {},
                                    ["y"]), {"x": rand(*xs, seed=k)})

# small-M Gemm kernel: rows 1..8 (kernel) and 9 (BLAS), transposed or not, alpha / beta, bias shapes
for m in (1, 3, 8, 9):
    for tb in (0, 1):
        for cshape, alpha, beta in [((11,), 1.0, 1.0), ((m, 11), 0.5, 2.0), (None, 1.5, 1.0), ((1, 11), 1.0, 0.0)]:
            inputs = ["a", "w"] + (["c"] if cshape else [])
            inits = {"w": rand(11, 37) if tb else rand(37, 11)}
            if cshape:
                inits["c"] = rand(*cshape)
            nodes = [helper.make_node("Gemm", inputs, ["y"], transB=tb, alpha=alpha, beta=beta)]
            add(f"gemm-m{m}-tb{tb}-{cshape}-{alpha}-{beta}",
                graph_model(nodes, {"a": rand(m, 37)}, inits, ["y"]), {"a": rand(m, 37)})
# Gemm by a run-time B (not constant): no pre-transposition
nodes = [helper.make_node("Gemm", ["a", "b"], ["y"], transB=1)]
add("gemm-runtime-b", graph_model(nodes, {"a": rand(2, 5), "b": rand(4, 5)}, {}, ["y"]),
    {"a": rand(2, 5), "b": rand(4, 5)})

# the benchmark models that exercise these paths, when the files are there
for name in ["Linear_event", "higgs_model_dense", "Conv_d100_L1_B1", "ConvTModel_G4", "Conv2DTranspose_Relu_Sigmoid",
             "Conv3d_d32_L4_B1"]:
    path = os.path.join(ROOTBENCH, name + ".onnx")
    if os.path.exists(path):
        import onnx
        m = onnx.load(path)
        init = {i.name for i in m.graph.initializer}
        feeds = {}
        for i in m.graph.input:
            if i.name not in init:
                shape = [d.dim_value if d.HasField("dim_value") else 2 for d in i.type.tensor_type.shape.dim]
                feeds[i.name] = rand(*shape, seed=3)
        add(f"rootbench-{name}", m, feeds, atol=1e-4)


# residual connections: Conv (+ BatchNorm) + Add of another tensor (+ Relu), the Add's other operand computed
# after the Conv (as a ResNet shortcut); through the indirect kernel (stride 2), Winograd (vector transforms and,
# on a narrow output, ...) and a second Add that must stay (its operand is the graph input broadcast)
def _residual_model(xs, ws, attrs, act="Relu", swap=False):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
             helper.make_node("Conv", ["x", "ws"], ["s"], strides=attrs.get("strides", [1, 1])),  # shortcut
             helper.make_node("Add", ["s", "c"] if swap else ["c", "s"], ["a"])]
    if act:
        nodes.append(helper.make_node(act, ["a"], ["y"]))
    inits = {"w": rand(*ws, seed=1), "b": rand(ws[0], seed=2), "ws": rand(ws[0], xs[1], 1, 1, seed=3)}
    return graph_model(nodes, {"x": rand(*xs)}, inits, ["y" if act else "a"])


RESIDUAL = [((1, 32, 20, 31), (16, 32, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", False),  # Winograd, vector
            ((2, 32, 20, 32), (20, 32, 3, 3), {"pads": [1, 1, 1, 1]}, None, True),  # Winograd, partial rows
            ((1, 16, 21, 20), (24, 16, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "Relu", True),  # indirect
            ((1, 16, 9, 9), (20, 16, 3, 3), {"pads": [1, 1, 1, 1]}, "Sigmoid", False),  # indirect, 20 channels
            ((1, 32, 12, 15), (16, 32, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", False),  # Winograd F(2x2), vector
            # Winograd one tile at a time, blocks of 64 tiles over the 3 x 25 tiles of the batch (a block ends
            # inside an image)
            ((3, 256, 9, 9), (256, 256, 3, 3), {"pads": [1, 1, 1, 1]}, None, False)]
for k, (xs, ws, attrs, act, swap) in enumerate(RESIDUAL):
    add(f"residual-{k}", _residual_model(xs, ws, attrs, act, swap), {"x": rand(*xs, seed=k + 5)}, atol=1e-4)


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    ids = list(MODELS)
    graphs = []
    for i in ids:
        graphs += [load(MODELS[i][0], optimize=True), load(MODELS[i][0], optimize=False)]
    packed_ids = [i for i in ids if i.startswith("conv-tiles")]
    for i in packed_ids:  # im2col tiles (the path of convolutions whose weights are not packed)
        g = load(MODELS[i][0], optimize=False)
        PassManager([FuseBiasAdd(), FuseActivation()])(g)
        assert not any(n.op.__dict__.get("packed") for n in g.nodes)
        graphs.append(g)
    wino_ids = [i for i in ids if i.startswith("winograd")]
    for i in wino_ids:  # the opt-in Winograd convolution
        g = load(MODELS[i][0], optimize=False)  # fusions, then Winograd instead of the packed kernel
        PassManager([FuseBiasAdd(), FuseActivation()])(g)
        assert WinogradConv()(g)
        graphs.append(g)
    built = compile_many(graphs)
    out = {i: (built[2 * k], built[2 * k + 1]) for k, i in enumerate(ids)}
    for k, i in enumerate(packed_ids):
        out[i + "-im2col"] = (built[2 * len(ids) + k], out[i][1])
    for k, i in enumerate(wino_ids):
        out[i + "-wino"] = (built[2 * len(ids) + len(packed_ids) + k], out[i][1])
    return out


@pytest.mark.parametrize("id_", list(MODELS) + [i + "-im2col" for i in MODELS if i.startswith("conv-tiles")]
                         + [i + "-wino" for i in MODELS if i.startswith("winograd")])
def test_fast_path_matches(id_, sessions):
    model, feeds, rtol, atol = MODELS[id_.replace("-im2col", "").replace("-wino", "")]
    for s in sessions[id_]:
        if isinstance(s, Exception):
            raise s
    opt, plain = sessions[id_]
    expected = ort(model, feeds)
    got = opt.run(None, feeds)
    assert_close(got, expected, rtol, atol, what=f"{id_} vs onnxruntime")
    assert_close(got, plain.run(None, feeds), rtol, atol, what=f"{id_} optimized vs unoptimized")


def test_tiles_are_exercised():
    """The large cases above really run in several tiles, the last one partial."""
    for xs, ws, attrs in CONVS[:6]:
        g = load(graph_model([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], {"x": rand(*xs)},
                             {"w": rand(*ws)}, ["y"]))
        y = g.nodes[0].outputs[0]
        out_sp = int(np.prod(y.shape[2:]))
        K = ws[1] * int(np.prod(ws[2:]))
        tile = col_tile(K, out_sp)
        assert tile < out_sp and out_sp % tile != 0, (xs, ws, tile, out_sp)


def test_small_gemm_kernel_is_used():
    # float32 with a constant B: the packed kernel (passes/gemm_pack.py, faster for every M measured); without
    # that pass, the small-M axpy kernel for M <= 8 and the BLAS above
    from pysofie.api import generate_code
    from pysofie.backends.cpp.passes.fusion import optimization_passes
    from pysofie.backends.cpp.passes.gemm_pack import PackGemmWeights

    def header_of(id_, pack):
        g = load(MODELS[id_][0], optimize=False)
        PassManager([p for p in optimization_passes() if pack or not isinstance(p, PackGemmWeights)])(g)
        return generate_code(g).header

    assert "pysofie_gemm::gemm_packed(1, 11, 37" in header_of("gemm-m1-tb1-(11,)-1.0-1.0", True)
    header = header_of("gemm-m1-tb1-(11,)-1.0-1.0", False)
    assert "small_gemm_nn<float>(1, 11, 37" in header
    header9 = header_of("gemm-m9-tb1-(11,)-1.0-1.0", False)
    assert "small_gemm_nn<float>(" not in header9 and "pysofie_rt::sgemm(false, true, 9, 11, 37" in header9


@pytest.mark.parametrize("m,r", [(2, 3), (2, 5), (4, 3), (2, 4), (4, 4)])
def test_winograd_transforms(m, r):
    """A^T [(G g) * (B^T d)] is the correlation of d with g, for random data (float64)."""
    AT, G, BT = winograd_matrices(m, r)
    rng = np.random.default_rng(1)
    for _ in range(5):
        g, d = rng.standard_normal(r), rng.standard_normal(m + r - 1)
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), np.correlate(d, g, "valid"), atol=1e-12)


def test_winograd_eligibility():
    """Only 2-D, ungrouped, stride-1, undilated, square 3x3 / 5x5 convolutions with >= 32 input and >= 16 output
    channels and output rows of about a multiple of 8 tiles."""
    def conv(xs, ws, **attrs):
        g = load(graph_model([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], {"x": rand(*xs)},
                             {"w": rand(*ws)}, ["y"]), optimize=False)
        return eligible(g.nodes[0])
    assert conv((1, 32, 9, 16), (16, 32, 3, 3)) == ("rows", 2)  # 7 tiles of 2 as 8 (F(4x4): 4 as 8)
    assert conv((1, 32, 9, 33), (16, 32, 3, 3)) == ("rows", 4)  # 8 tiles of 4: F(4x4, 3x3)
    assert conv((1, 256, 9, 9), (256, 256, 3, 3)) == ("tiles", 2)  # narrow, many channels: one tile at a time
    assert not conv((1, 32, 9, 9), (16, 32, 3, 3))  # 4 tiles per row, computed as 8
    assert not conv((1, 32, 9, 13), (16, 32, 3, 3))  # 6 tiles as 8: too many for 3x3...
    assert conv((1, 32, 9, 15), (16, 32, 5, 5), pads=[1, 1, 1, 1])  # ... and 7 as 8 are few enough for 5x5
    assert not conv((1, 32, 9, 16), (16, 32, 3, 3), strides=[2, 2])
    assert not conv((1, 32, 9, 16), (16, 32, 3, 3), dilations=[2, 2])
    assert not conv((1, 32, 9, 16), (16, 16, 3, 3), group=2)
    assert not conv((1, 32, 9, 16), (16, 32, 3, 5))
    assert not conv((1, 16, 9, 16), (16, 16, 3, 3))
    assert not conv((1, 32, 9, 16), (8, 32, 3, 3))
    assert not conv((1, 32, 9, 9, 9), (16, 32, 3, 3, 3))


def test_default_pipeline_packs_conv_weights():
    """The default pipeline runs every float Conv with constant weights through the indirect kernel, except
    pointwise stride-1 ones (a BLAS matrix product); the row kernel for <= 4 output channels per group with unit
    stride along the last axis."""
    def packed(xs, ws, **attrs):
        g = load(graph_model([helper.make_node("Conv", ["x", "w"], ["y"], **attrs)], {"x": rand(*xs)},
                             {"w": rand(*ws)}, ["y"]))
        return g.nodes[0].op.__dict__.get("packed")
    assert packed((1, 2, 9, 9), (4, 2, 3, 3))["rows"]
    assert packed((1, 2, 9, 9), (4, 2, 3, 3), strides=[2, 1])["rows"]
    assert "rows" not in packed((1, 2, 9, 9), (4, 2, 3, 3), strides=[1, 2])
    assert packed((1, 2, 9, 9), (8, 2, 3, 3))["rows"]
    assert "rows" not in packed((1, 2, 9, 9), (9, 2, 3, 3))
    assert packed((1, 2, 9, 9, 9), (4, 2, 5, 5, 5))
    assert packed((1, 2, 9, 9, 9), (4, 2, 5, 5, 5), strides=[2, 2, 2])
    assert packed((1, 8, 20, 20), (4, 8, 5, 5))
    assert packed((1, 8, 20), (4, 8, 1), strides=[2])
    assert packed((1, 8, 20, 20), (4, 8, 1, 1), pads=[1, 1, 1, 1])
    assert not packed((1, 8, 20, 20), (4, 8, 1, 1))


def test_portable_kernels_without_avx():
    """The scalar fallbacks of the convolution kernels (code compiled without -march=native, so without AVX2):
    Winograd (with a residual Add), the indirect kernel, ConvTranspose and the row kernel in one model, against
    onnxruntime."""
    import pysofie
    x = rand(1, 32, 10, 15)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 1, 1, 1]),  # Winograd, + residual
             helper.make_node("Conv", ["x", "w0"], ["s"]),
             helper.make_node("Add", ["a", "s"], ["as"]),
             helper.make_node("Relu", ["as"], ["ar"]),
             helper.make_node("Conv", ["ar", "w2"], ["b"], strides=[2, 2]),  # indirect
             helper.make_node("ConvTranspose", ["b", "w3"], ["c"], strides=[2, 2]),  # phases
             helper.make_node("Conv", ["c", "w4"], ["y"])]  # row kernel
    inits = {"w0": rand(16, 32, 1, 1, seed=6), "w1": rand(16, 32, 3, 3, seed=1), "b1": rand(16, seed=2), "w2": rand(20, 16, 3, 3, seed=3),
             "w3": rand(20, 9, 3, 3, seed=4), "w4": rand(2, 9, 3, 3, seed=5)}
    model = graph_model(nodes, {"x": x}, inits, ["y"])
    g = load(model)
    assert any(n.op.__dict__.get("winograd") and n.op.__dict__.get("residual") for n in g.nodes)
    assert sum(1 for n in g.nodes if n.op.__dict__.get("packed")) == 3
    got = pysofie.InferenceSession(g, native=False).run(None, {"x": x})
    assert_close(got, ort(model, {"x": x}), 1e-4, 1e-4, what="portable kernels vs onnxruntime")


def test_conv_transpose_paths():
    """Small images take the matrix product + scatter path (phases would multiply border zeros), large ones and
    kernels smaller than the stride the phases."""
    def uses_gemm(k):
        g = load(MODELS[f"convtranspose-{k}"][0])
        return [n.op.__dict__["packed"].get("gemm", False) for n in g.nodes if n.op_type == "ConvTranspose"]
    assert uses_gemm(0) == [True] and uses_gemm(1) == [True]
    assert uses_gemm(2) == [False] and uses_gemm(5) == [False]
    for k, m in ((6, 4), (7, 2)):  # stride 1: the equivalent Conv, Winograd F(m x m, 4x4)
        g = load(MODELS[f"convtranspose-{k}"][0])
        assert [(n.op_type, n.op.__dict__["winograd"]["m"]) for n in g.nodes] == [("Conv", m)]


def test_residual_add_is_fused():
    from pysofie.backends.cpp.passes.fusion import FuseResidualAdd, optimization_passes
    assert any(isinstance(p, FuseResidualAdd) for p in optimization_passes())
    for k, (xs, ws, attrs, act, swap) in enumerate(RESIDUAL):
        g = load(MODELS[f"residual-{k}"][0])
        assert [n.op_type for n in g.nodes] == ["Conv", "Conv"], (k, [n.op_type for n in g.nodes])
        fused = g.nodes[1]
        assert fused.op.__dict__.get("residual") and fused.inputs[3] is g.nodes[0].outputs[0]
        assert (fused.op.__dict__.get("fused_act") or (None,))[0] == act


def test_winograd_headers_warning_free(tmp_path):
    """The generated Winograd code (F(4x4) with 6- and 7-point patches, F(2x2) with 5, one tile at a time, residual)
    compiles without warnings at -Wall -Wextra -Werror, with the target's vector code (-march=native) and without."""
    import shlex
    import subprocess
    import pysofie
    from pysofie.build.compiler import find_cxx
    ids = ["winograd-3", "convtranspose-6", "convtranspose-7", "residual-0", "residual-5"]
    for k, id_ in enumerate(ids):
        pysofie.emit(MODELS[id_][0], str(tmp_path), weights="embed", name=f"m{k}")
    (tmp_path / "main.cpp").write_text("".join(f'#include "m{k}.hxx"\n' for k in range(len(ids))) +
                                       "int main() { return 0; }\n")
    for march in (["-march=native"], []):
        cmd = shlex.split(find_cxx()) + ["-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                                         f"-I{tmp_path}", str(tmp_path / "main.cpp")] + march
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
