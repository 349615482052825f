"""The optimization passes (pysofie/passes/rewrites.py and backends/cpp/passes): every rewritten graph gives the
same results as the unoptimized one (optimize=False) and as onnxruntime, and the rewrite really happened.

All models of this module compile into one shared library."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pysofie.api import load
from tests.util import assert_close, ort, rand

# float32 products of different summation order (folded BatchNorm weights, BLAS vs kernel): looser than the
# default 1e-4 / 1e-5 on outputs that sum hundreds of terms
RTOL, ATOL = 1e-4, 1e-4


def graph_model(nodes, inputs: dict, inits: dict, outputs, opset=17):
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in outputs]
    g = helper.make_graph(nodes, "fusion_test", ins, outs,
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {o.name: o.type for o in inferred.graph.value_info} | {o.name: o.type for o in inferred.graph.output}
    for o in m.graph.output:
        if o.name in types:
            o.type.CopyFrom(types[o.name])
    return m


def bn_params(prefix, m, seed):
    rng = np.random.default_rng(seed)
    return {f"{prefix}_s": rng.uniform(0.5, 1.5, m), f"{prefix}_b": rng.normal(0, 0.3, m),
            f"{prefix}_m": rng.normal(0, 0.3, m), f"{prefix}_v": rng.uniform(0.5, 1.5, m)}


MODELS = {}  # id -> (model, feeds, expected {op_type: count} after optimization or None, fused acts)


def add(id_, model, feeds, counts=None, fused=None):
    MODELS[id_] = (model, feeds, counts, fused)


# Conv (no bias) + BatchNorm + Relu, as exporters write ResNet blocks
for k, (cin, cout, ks, stride, pads, group, bias) in enumerate([
        (3, 8, 3, 1, 1, 1, False), (4, 6, 3, 2, 1, 2, True), (8, 16, 1, 1, 0, 1, False), (8, 16, 1, 2, 0, 1, True),
        (16, 16, 3, 1, 1, 16, False)]):
    inits = {"w": rand(cout, cin // group, ks, ks, seed=k), **bn_params("bn", cout, k)}
    conv_in = ["x", "w"] + (["cb"] if bias else [])
    if bias:
        inits["cb"] = rand(cout, seed=k + 50)
    nodes = [helper.make_node("Conv", conv_in, ["c"], kernel_shape=[ks, ks], strides=[stride] * 2, pads=[pads] * 4,
                              group=group),
             helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    add(f"conv-bn-relu-{k}", graph_model(nodes, {"x": rand(2, cin, 12, 11, seed=k)}, inits, ["y"]),
        {"x": rand(2, cin, 12, 11, seed=k)}, {"Conv": 1}, {"Relu": 1})

# 1-D and 3-D Conv + BatchNorm (no activation)
for k, (xs, ws) in enumerate([((1, 4, 30), (6, 4, 5)), ((1, 2, 6, 7, 8), (3, 2, 3, 3, 3))]):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * (2 * (len(xs) - 2))),
             helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["y"])]
    add(f"conv-bn-{len(xs) - 2}d", graph_model(nodes, {"x": rand(*xs)}, {"w": rand(*ws), **bn_params("bn", ws[0], 9)},
                                               ["y"]), {"x": rand(*xs)}, {"Conv": 1}, {})

# every fusable activation after Conv, ConvTranspose and Gemm (9 output channels: the convolution epilogue's
# 8-channel vector part and its scalar remainder; 3 channels: the row kernel)
for act, attrs in [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {}), ("Tanh", {})]:
    for M in (9, 3):
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node(act, ["c"], ["y"], **attrs)]
        add(f"conv-{act}-{M}", graph_model(nodes, {"x": rand(1, 3, 9, 9)}, {"w": rand(M, 3, 3, 3), "b": rand(M)},
                                           ["y"]), {"x": rand(1, 3, 9, 9, low=-3, high=3)}, {"Conv": 1}, {act: 1})
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2]),
             helper.make_node(act, ["c"], ["y"], **attrs)]
    add(f"convT-{act}", graph_model(nodes, {"x": rand(1, 3, 5, 5)}, {"w": rand(3, 9, 3, 3), "b": rand(9)}, ["y"]),
        {"x": rand(1, 3, 5, 5)}, {"ConvTranspose": 1}, {act: 1})
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["c"], transB=1),
             helper.make_node(act, ["c"], ["y"], **attrs)]
    add(f"gemm-{act}", graph_model(nodes, {"x": rand(12, 20)}, {"w": rand(7, 20), "b": rand(7)}, ["y"]),
        {"x": rand(12, 20, low=-2, high=2)}, {"Gemm": 1}, {act: 1})

# MatMul + Add -> Gemm (bias on either side, shapes (N,) and (1, N)), then + Relu
for k, (bshape, first) in enumerate([((6,), True), ((1, 6), False), ((6,), False)]):
    ins = ["mm", "bias"] if first else ["bias", "mm"]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ins, ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    add(f"matmul-add-relu-{k}", graph_model(nodes, {"x": rand(5, 9)}, {"w": rand(9, 6), "bias": rand(*bshape)},
                                            ["y"]), {"x": rand(5, 9)}, {"Gemm": 1}, {"Relu": 1})

# Conv / ConvTranspose (with or without bias) + Add of a per-channel constant (+ activation)
for k, (op, bshape, has_bias, act) in enumerate([("ConvTranspose", (1, 4, 1, 1), False, "Relu"),
                                                 ("ConvTranspose", (4, 1, 1), True, "Sigmoid"),
                                                 ("Conv", (1, 4, 1, 1), True, None), ("Conv", (4, 1, 1), False, "Relu")]):
    wshape = (3, 4, 3, 3) if op == "ConvTranspose" else (4, 3, 3, 3)
    inits = {"w": rand(*wshape, seed=k), "bias": rand(*bshape, seed=k + 1)}
    ins = ["x", "w"]
    if has_bias:
        inits["b"] = rand(4, seed=k + 2)
        ins.append("b")
    nodes = [helper.make_node(op, ins, ["c"], strides=[2, 2]),
             helper.make_node("Add", ["bias", "c"] if k % 2 else ["c", "bias"], ["a" if act else "y"])]
    if act:
        nodes.append(helper.make_node(act, ["a"], ["y"]))
    add(f"{op}-bias-add-{k}", graph_model(nodes, {"x": rand(1, 3, 7, 7)}, inits, ["y"]), {"x": rand(1, 3, 7, 7)},
        {op: 1}, {act: 1} if act else {})
# a non-per-channel Add stays
nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "bias"], ["y"])]
add("conv-add-not-per-channel", graph_model(nodes, {"x": rand(1, 3, 6, 6)}, {"w": rand(4, 3, 3, 3),
                                                                             "bias": rand(1, 1, 1, 4)}, ["y"]),
    {"x": rand(1, 3, 6, 6)}, {"Conv": 1, "Add": 1}, {})

# no rewrite where it would be wrong
# (a) the Conv output is also read elsewhere: BatchNorm and Relu stay separate
nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["n"]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Add", ["n", "r"], ["y"])]
add("shared-conv-output", graph_model(nodes, {"x": rand(1, 2, 6, 6)}, {"w": rand(3, 2, 3, 3), **bn_params("bn", 3, 4)},
                                      ["y"]), {"x": rand(1, 2, 6, 6)},
    {"Conv": 1, "BatchNormalization": 1, "Relu": 1, "Add": 1}, {})
# (b) the Conv output is a graph output itself
nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
add("conv-output-is-graph-output", graph_model(nodes, {"x": rand(1, 2, 6, 6)}, {"w": rand(3, 2, 3, 3)}, ["c", "y"]),
    {"x": rand(1, 2, 6, 6)}, {"Conv": 1, "Relu": 1}, {})
# (c) a MatMul whose Add broadcasts the result to a larger shape
nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "bias"], ["y"])]
add("matmul-add-broadcast", graph_model(nodes, {"x": rand(1, 4)}, {"w": rand(4, 3), "bias": rand(5, 3)}, ["y"]),
    {"x": rand(1, 4)}, {"MatMul": 1, "Add": 1}, {})
# (d) Conv -> Relu -> Relu: only the first fuses
nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Sigmoid", ["r"], ["y"])]
add("conv-relu-sigmoid", graph_model(nodes, {"x": rand(1, 2, 6, 6)}, {"w": rand(3, 2, 3, 3)}, ["y"]),
    {"x": rand(1, 2, 6, 6)}, {"Conv": 1, "Sigmoid": 1}, {"Relu": 1})


def counts_of(graph):
    c = {}
    for n in graph.nodes:
        c[n.op_type] = c.get(n.op_type, 0) + 1
    return c


def fused_of(graph):
    c = {}
    for n in graph.nodes:
        a = n.op.__dict__.get("fused_act")
        if a:
            c[a[0]] = c.get(a[0], 0) + 1
    return c


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    ids = list(MODELS)
    graphs = []
    for i in ids:
        graphs.append(load(MODELS[i][0], optimize=True))
        graphs.append(load(MODELS[i][0], optimize=False))
    built = compile_many(graphs)
    return {i: (graphs[2 * k], built[2 * k], built[2 * k + 1]) for k, i in enumerate(ids)}


@pytest.mark.parametrize("id_", list(MODELS))
def test_optimized_matches_unoptimized_and_ort(id_, sessions):
    model, feeds, counts, fused = MODELS[id_]
    graph, opt, plain = sessions[id_]
    for s in (opt, plain):
        if isinstance(s, Exception):
            raise s
    if counts is not None:
        assert counts_of(graph) == counts, f"{id_}: optimized graph has {counts_of(graph)}"
    assert fused_of(graph) == fused
    expected = ort(model, feeds)
    got_opt = opt.run(None, feeds)
    got_plain = plain.run(None, feeds)
    assert_close(got_opt, expected, RTOL, ATOL, what=f"{id_} optimized vs onnxruntime")
    assert_close(got_opt, got_plain, RTOL, ATOL, what=f"{id_} optimized vs unoptimized")


def test_batchnorm_fold_keeps_original_weights():
    """The fold writes new constants: the model's own Conv weights are left as they were."""
    model, _, _, _ = MODELS["conv-bn-relu-0"]
    before = numpy_helper.to_array(model.graph.initializer[0]).copy()
    load(model, optimize=True)
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), before)
