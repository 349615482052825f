"""RowMLP's batch-of-one path (runtime/pysofie_gemv.h: one matrix-vector product per layer over the packed
weights, bias and activation in the store): compared with onnxruntime at 1 row, at 7 rows (the blocked path of
the same code) and at 1 row again, in each kernel variant this machine can run (-march=native: AVX-512; AVX2/FMA;
scalar), as tests/test_isa_variants.py builds them. The widths hit the kernel's tails: 37 columns (two 16-wide
panels + a masked 8-wide one), 20 (16 + a 4-column half panel), K not a multiple of 4; every activation the
store applies (Relu, LeakyRelu, Sigmoid, Tanh, Gelu both forms) and a LayerNorm; a model whose one row is fixed at
generation (the matrix-vector chain alone); layers of at most 4 columns (first and last; K = 5, 8 and
37: the dot products' masked tails) read as rows of W^T. Tolerance rtol 1e-4, atol 1e-5."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.ops.test_row_mlp import mlp_model
from tests.test_isa_variants import VARIANTS, build_variants
from tests.util import assert_close, ort, rand

RTOL, ATOL = 1e-4, 1e-5


def act_model(rows, acts, widths=(8, 37, 20, 5, 3)):
    """Dense layers of these widths (Gemm, or MatMul + Add), one activation after each."""
    rng = np.random.default_rng(3)
    nodes, inits, cur = [], {}, "X"
    for k, (a, b) in enumerate(zip(widths, widths[1:])):
        inits[f"w{k}"], inits[f"b{k}"] = rng.normal(0, .5, (a, b)), rng.normal(0, .3, b)
        if k % 2:
            nodes += [helper.make_node("MatMul", [cur, f"w{k}"], [f"m{k}"]),
                      helper.make_node("Add", [f"m{k}", f"b{k}"], [f"g{k}"])]
        else:
            nodes.append(helper.make_node("Gemm", [cur, f"w{k}", f"b{k}"], [f"g{k}"]))
        op, attrs = acts[k]
        nodes.append(helper.make_node(op, [f"g{k}"], [f"h{k}"], **attrs))
        cur = f"h{k}"
    g = helper.make_graph(nodes, "row_mlp_one", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [rows, 8])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [rows, widths[-1]])],
                          [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 9
    return m


ACTS_A = [("LeakyRelu", {"alpha": 0.1}), ("Sigmoid", {}), ("Gelu", {}), ("Tanh", {})]
ACTS_B = [("Relu", {}), ("Gelu", {"approximate": "tanh"}), ("Relu", {}), ("Sigmoid", {})]
MODELS = {"plain": mlp_model(False, False), "layer_norm": mlp_model(False, True),
          "concat_split": mlp_model(True, True), "acts_a": act_model("N", ACTS_A), "acts_b": act_model("N", ACTS_B),
          "fixed_one": act_model(1, ACTS_A), "narrow": act_model("N", ACTS_B[:3], (8, 3, 37, 2))}
NARROW = ("acts_a", "acts_b", "fixed_one", "narrow")  # a layer of at most 4 columns: dot products over W^T rows


def feeds(name, n, seed):
    if name == "concat_split":
        return {"A": rand(n, 8, seed=seed) * 2, "B": rand(n, 4, seed=seed + 10) * 2}
    return {"X": rand(n, 20 if name in ("plain", "layer_norm") else 8, seed=seed) * 2}


@pytest.fixture(scope="module")
def builds():
    return build_variants(MODELS, "rowone")


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", list(MODELS))
def test_one_row_matches_onnxruntime(builds, variant, name):
    if variant not in builds:
        pytest.skip(f"{variant}: this CPU / build gives no distinct {variant} kernels")
    isa, gms, sessions = builds[variant]
    code = gms[name].header
    assert "pysofie_gemv::gemv_packed(" in code and "_RowMLP(" in code, name
    if name in NARROW:
        assert "pysofie_gemv::gemv_rows(" in code, name
    if name == "fixed_one":  # the chain alone: no blocks of rows, no thread pool
        assert "gemm_packed(m," not in code and ".run_range(" not in code
    sess = sessions[name]
    if isinstance(sess, Exception):
        raise sess
    model = MODELS[name]
    for k, n in enumerate([1] if name == "fixed_one" else [1, 7, 1]):
        f = feeds(name, n, k)
        assert_close(sess.run(None, f), ort(model, f), RTOL, ATOL, what=f"{name} ({variant}: {isa}) at {n} rows")
