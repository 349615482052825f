"""backends/cpp/passes/row_mlp.py: chains of dense layers over a symbolic number of rows run by blocks of rows (one RowMLP
node), compared with onnxruntime at row counts around the block size (0, 1, 95, 96, 97, 250 rows), with one
thread and with two. The graph_nets tests (tests/frontends/test_gnn_graph_nets.py) cover the first layer spelled
as gathered per-node products (range-checked indices) plus per-graph rows."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pysofie.api import load
from pysofie.build.batch import compile_many
from tests.util import assert_close, ort, rand

RTOL, ATOL = 1e-4, 1e-5


def mlp_model(concat: bool, layer_norm: bool):
    """Y = LN(Gemm(Tanh(MatMul(Relu(Gemm(X)), W2) + b2), W3)); with concat, X = Concat(A, B, A) (A's rows of
    the weight twice: summed) and the first Gemm's bias comes as an Add after a bias-free MatMul."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, .3, (20, 30)), rng.normal(0, .3, 30)
    w2, b2 = rng.normal(0, .3, (30, 24)), rng.normal(0, .3, 24)
    w3, b3 = rng.normal(0, .3, (24, 17)), rng.normal(0, .3, 17)
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3,
             "s": rng.uniform(.5, 1.5, 17), "o": rng.normal(0, .3, 17)}
    if concat:
        ins = [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["N", 8]),
               helper.make_tensor_value_info("B", TensorProto.FLOAT, ["N", 4])]
        nodes = [helper.make_node("Concat", ["A", "B", "A"], ["x"], axis=1),
                 helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
                 helper.make_node("Relu", ["a1"], ["h1"])]
    else:
        ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 20])]
        nodes = [helper.make_node("Gemm", ["X", "w1", "b1"], ["g1"]), helper.make_node("Relu", ["g1"], ["h1"])]
    nodes += [helper.make_node("MatMul", ["h1", "w2"], ["m2"]), helper.make_node("Add", ["m2", "b2"], ["a2"]),
              helper.make_node("Tanh", ["a2"], ["h2"]), helper.make_node("Gemm", ["h2", "w3", "b3"], ["g3"])]
    out = "g3"
    if layer_norm:
        nodes.append(helper.make_node("LayerNormalization", ["g3", "s", "o"], ["y"], axis=-1, epsilon=1e-5))
        out = "y"
    g = helper.make_graph(nodes, "row_mlp", ins, [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 17])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


CASES = {"plain": (False, False), "layer_norm": (False, True), "concat_split": (True, True)}


@pytest.fixture(scope="module")
def sessions():
    models = {k: mlp_model(*v) for k, v in CASES.items()}
    graphs = [load(m) for m in models.values()]
    built = compile_many(graphs)
    return {k: (models[k], g, s) for k, g, s in zip(models, graphs, built)}


@pytest.mark.parametrize("name", list(CASES))
def test_row_mlp_matches_onnxruntime(sessions, name):
    model, graph, sess = sessions[name]
    if isinstance(sess, Exception):
        raise sess
    ops = [n.op_type for n in graph.nodes]
    assert ops == ["RowMLP"], ops  # the whole chain (and the Concat, Adds, activations) in one node
    for k, n in enumerate([0, 1, 95, 96, 97, 250]):
        if name == "concat_split":
            feeds = {"A": rand(n, 8, seed=k), "B": rand(n, 4, seed=k + 10)}
        else:
            feeds = {"X": rand(n, 20, seed=k)}
        assert_close(sess.run(None, feeds), ort(model, feeds), RTOL, ATOL, what=f"{name} at {n} rows")


def test_row_mlp_two_threads():
    import pysofie
    model = mlp_model(False, True)
    sess = pysofie.InferenceSession(model, intra_op_num_threads=2)
    for k, n in enumerate([1, 30, 250, 1000]):
        feeds = {"X": rand(n, 20, seed=k)}
        assert_close(sess.run(None, feeds), ort(model, feeds), RTOL, ATOL, what=f"two threads, {n} rows")


def shared_model():
    """Two steps of one MLP (Relu(Relu(concat(E, h) @ W1 + b1) @ W2 + b2), weights shared as byte-identical
    copies in the second step) on concat(E, L) then concat(E, step 1): E @ W1's rows for E is the same product in
    both steps (passes/shared_products.py computes it once); a third reader, the plain MatMul E @ W1[:12], is that
    same product too."""
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(0, .3, (22, 10)), rng.normal(0, .3, 10)
    w2, b2 = rng.normal(0, .3, (10, 10)), rng.normal(0, .3, 10)
    inits = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w1b": w1.copy(), "b1b": b1, "w2b": w2, "b2b": b2,
             "w1e": w1[:12]}
    nodes = []
    h = "L"
    for k, sfx in enumerate(("", "b")):
        nodes += [helper.make_node("Concat", ["E", h], [f"c{k}"], axis=1),
                  helper.make_node("MatMul", [f"c{k}", f"w1{sfx}"], [f"m{k}"]),
                  helper.make_node("Add", [f"m{k}", f"b1{sfx}"], [f"a{k}"]),
                  helper.make_node("Relu", [f"a{k}"], [f"r{k}"]),
                  helper.make_node("Gemm", [f"r{k}", f"w2{sfx}", f"b2{sfx}"], [f"g{k}"]),
                  helper.make_node("Relu", [f"g{k}"], [f"y{k}"])]
        h = f"y{k}"
    nodes.append(helper.make_node("MatMul", ["E", "w1e"], ["z"]))
    ins = [helper.make_tensor_value_info("E", TensorProto.FLOAT, ["N", 12]),
           helper.make_tensor_value_info("L", TensorProto.FLOAT, ["N", 10])]
    outs = [helper.make_tensor_value_info(v, TensorProto.FLOAT, ["N", 10]) for v in ("y1", "z")]
    g = helper.make_graph(nodes, "shared", ins, outs,
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_shared_partial_product_computed_once():
    model = shared_model()
    graph = load(model)
    (sess,) = compile_many([graph])
    if isinstance(sess, Exception):
        raise sess
    mlps = [n for n in graph.nodes if n.op_type == "RowMLP"]
    assert len(mlps) == 2 and all(n.op.spec["adds"] == 1 for n in mlps), [n.op.spec for n in mlps]
    readers_of_e = [n for n in graph.nodes if any(v is not None and v.name == "E" for v in n.inputs)]
    assert len(readers_of_e) == 1 and readers_of_e[0].op_type in ("MatMul", "Gemm"), readers_of_e
    for k, n in enumerate([0, 1, 95, 97, 250]):
        feeds = {"E": rand(n, 12, seed=k), "L": rand(n, 10, seed=k + 10)}
        assert_close(sess.run(None, feeds), ort(model, feeds), RTOL, ATOL, what=f"shared product at {n} rows")
