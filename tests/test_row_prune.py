"""passes/row_prune.PruneGatheredRows against onnxruntime: a Gather of one index along a row axis (a classification
token) makes the row-by-row nodes before it (dense layers, bias / residual Adds with broadcast or constant
operands, activations, LayerNormalization, Reshape, the fused attention's queries) compute that row only; values
something else needs whole (a second output, a LayerNormalization or Softmax over the gathered axis) stay whole.
The structure is checked on the optimized graph (the row axis of the dense layers' outputs is 1 long, or not),
the values against onnxruntime (rtol 1e-4, atol 1e-5). All models compile into one shared library."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.test_fused_attention import attention
from tests.test_fusion import graph_model
from tests.util import assert_close, ort, rand

MODELS = {}  # id -> (model, feeds, pruned: whether the dense layers compute one row)


def _idx(name, k, scalar=True):
    arr = np.array(k if scalar else [k], np.int64)
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))


X = rand(2, 9, 16, seed=1)
W1, B1, W2 = rand(16, 24, seed=2) * 0.5, rand(24, seed=3), rand(24, 16, seed=4) * 0.5
G, BB = 1 + 0.1 * rand(16, seed=5), rand(16, seed=6)

# encoder-style tail: dense + bias + Gelu + dense, residual Add of the input, LayerNorm, token 0
nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
         helper.make_node("Gelu", ["hb"], ["g"]), helper.make_node("MatMul", ["g", "w2"], ["f"]),
         helper.make_node("Add", ["x", "f"], ["r"]),
         helper.make_node("LayerNormalization", ["r", "gam", "bet"], ["n"], axis=-1, epsilon=1e-5),
         _idx("i0", 0), helper.make_node("Gather", ["n", "i0"], ["y"], axis=1)]
MODELS["cls-chain"] = (graph_model(nodes, {"x": X}, {"w1": W1, "b1": B1, "w2": W2, "gam": G, "bet": BB}, ["y"],
                                   opset=20), {"x": X}, True)

# 2-D rows through a Gemm with a bias row, a constant (9, 16) table added (its row taken at compile time), Relu;
# a negative one-element index
X2 = rand(9, 16, seed=7)
nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["h"], beta=0.5), helper.make_node("Add", ["pos", "h"], ["p"]),
         helper.make_node("Relu", ["p"], ["q"]), _idx("i", -2, scalar=False),
         helper.make_node("Gather", ["q", "i"], ["y"], axis=0)]
MODELS["gemm-const-table-negative-index"] = (
    graph_model(nodes, {"x": X2}, {"w": rand(16, 16, seed=8), "c": rand(1, 16, seed=9), "pos": rand(9, 16, seed=10)},
                ["y"]), {"x": X2}, True)

# the product is a second output too: computed whole
nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["z"]), _idx("i0", 3),
         helper.make_node("Gather", ["h", "i0"], ["y"], axis=1)]
MODELS["second-output"] = (graph_model(nodes, {"x": X}, {"w1": W1}, ["y", "z"]), {"x": X}, False)

# LayerNormalization over axes 1 and 2 (the gathered axis among them), Softmax along the gathered axis
for name, norm in (("layernorm-over-axis", helper.make_node("LayerNormalization", ["h", "gam", "bet"], ["n"], axis=1)),
                   ("softmax-along-axis", helper.make_node("Softmax", ["h"], ["n"], axis=1))):
    nodes = [helper.make_node("MatMul", ["x", "w2"], ["h"]), norm, _idx("i0", 1),
             helper.make_node("Gather", ["n", "i0"], ["y"], axis=1)]
    inits = {"w2": W2.T.copy(), "gam": rand(9, 24, seed=11), "bet": rand(9, 24, seed=12)}
    if name.startswith("softmax"):
        del inits["gam"], inits["bet"]
    MODELS[name] = (graph_model(nodes, {"x": X}, inits, ["y"]), {"x": X}, False)


def _attention_cls(seed, split="qkv", projection=False):
    """BERT's last layer: fused q/k/v Split (of an input, or with `projection` of a dense layer with bias over
    an input h, h also added back after the attention), attention with an additive padding mask, the heads Reshape
    back, the output projection, then token 0."""
    B, H, S, D = 2, 3, 19, 8
    model, feeds = attention(B=B, H=H, S=S, T=S, D=D, Dv=D, masks=("add-input",), split=split, seed=seed)
    inits = {"wo": rand(H * D, H * D, seed=seed + 40) * 0.3, "bo": rand(H * D, seed=seed + 41)}
    g = model.graph
    out = "pr"
    if projection:
        h = rand(B, S, H * D, seed=seed + 42)
        inits.update(wqkv=rand(H * D, 3 * H * D, seed=seed + 43) * 0.3, bqkv=rand(3 * H * D, seed=seed + 44))
        g.node.insert(0, helper.make_node("Add", ["hw", "bqkv"], ["x"]))
        g.node.insert(0, helper.make_node("MatMul", ["h", "wqkv"], ["hw"]))
        del g.input[:]
        g.input.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, [B, S, H * D]))
        g.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, list(feeds["mask"].shape)))
        feeds = {"h": h, "mask": feeds["mask"]}
        out = "res"
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in inits.items())
    g.node.extend([helper.make_node("MatMul", ["y", "wo"], ["proj"]), helper.make_node("Add", ["proj", "bo"], ["pb"]),
                   helper.make_node("Relu", ["pb"], ["pr"])])
    if projection:
        g.node.append(helper.make_node("Add", ["h", "pr"], ["res"]))
    g.node.extend([_idx("i0", 0), helper.make_node("Gather", [out, "i0"], ["cls"], axis=1)])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("cls", TensorProto.FLOAT, [B, H * D]))
    return model, feeds


MODELS["attention-cls"] = _attention_cls(30) + (True,)
# the q/k/v projection splits: the query columns (the middle third with "kqv") for token 0 only, the keys' and
# values' for every row; the projection's input also feeds the residual Add
MODELS["attention-cls-projection"] = _attention_cls(31, split="kqv", projection=True) + (True,)


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    return dict(zip(MODELS, compile_many([m for m, _, _ in MODELS.values()])))


@pytest.mark.parametrize("case", list(MODELS))
def test_pruned_rows(case, sessions):
    model, feeds, pruned = MODELS[case]
    sess = sessions[case]
    if isinstance(sess, Exception):
        raise sess
    nodes = sess._gm.emitter.graph.nodes
    kv = {id(n.inputs[1]) for n in nodes if n.op_type == "PysofieAttention"}  # keys / values: every row
    dense = [n for n in nodes if n.op_type in ("MatMul", "Gemm", "PysofieAttention") and id(n.outputs[0]) not in kv]
    assert dense, case
    axis = 0 if case.startswith("gemm") else 1
    rows = [n.outputs[0].shape[axis] for n in dense]
    if pruned:
        assert all(r == 1 for r in rows), (case, rows)
    else:
        assert all(r > 1 for r in rows), (case, rows)
    if case.startswith("attention-cls"):  # the keys and values are read whole: the projection is not pruned
        (att,) = [n for n in nodes if n.op_type == "PysofieAttention"]
        assert att.inputs[1].shape[1] == 19 and att.inputs[0].shape[1] == 1, [v.shape for v in att.inputs[:3]]
        # with the projection in the graph: its query columns for one row, the keys and values for all
        widths = (att.inputs[0].shape[2], att.inputs[1].shape[2])
        assert widths == ((24, 48) if case.endswith("projection") else (72, 72)), widths
    assert_close(sess.run(None, feeds), ort(model, feeds), 1e-4, 1e-5, what=case)
