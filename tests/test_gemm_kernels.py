"""The register-blocked dense-layer kernel (passes/gemm_pack.py + backends/cpp/runtime/pysofie_gemm.h): Gemm and
MatMul with a constant B over many shapes (remainders in M, N and K against the 6 x 16 tiles and the 256-deep K
blocks), transposes, alpha/beta, every bias shape, each fused activation and a dynamic batch; compared with
onnxruntime and with the unoptimized path (optimize=False, the BLAS), and checked that the kernel was used.

All models compile into one shared library; one more library holds the cases compiled without -march=native
(the portable scalar fallback)."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from pysofie.api import load
from tests.util import assert_close, ort

RTOL, ATOL = 1e-4, 1e-5


def dense_model(m, k, n, *, ta=0, tb=0, alpha=1.0, beta=1.0, c_shape="n", c_const=True, act=None, slope=0.1,
                op="Gemm", a_shape=None, sym=None, dtype=np.float32, seed=0):
    """Gemm (or MatMul) with constant B, optionally C and a following activation. c_shape: None, "n", "1n",
    "11", "scalar", "m1", "mn". Returns (model, feeds builder taking the row count)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    rng = np.random.default_rng(seed)
    bshape = (n, k) if tb else (k, n)
    inits = [numpy_helper.from_array(rng.uniform(-1, 1, bshape).astype(dtype), "B")]
    ins = ["A", "B"]
    if op == "Gemm":
        a_decl = [k, sym or m] if ta else [sym or m, k]
    else:
        a_decl = list(a_shape) if a_shape is not None else [sym or m, k]
    graph_inputs = [helper.make_tensor_value_info("A", elem, a_decl)]
    cshape = {None: None, "n": (n,), "1n": (1, n), "11": (1, 1), "scalar": (), "m1": (m, 1), "mn": (m, n)}[c_shape]
    if op == "Gemm" and cshape is not None:
        ins.append("C")
        c = rng.uniform(-1, 1, cshape).astype(dtype)
        if c_const:
            inits.append(numpy_helper.from_array(c, "C"))
        else:
            graph_inputs.append(helper.make_tensor_value_info("C", elem, list(cshape)))
    attrs = {"alpha": alpha, "beta": beta, "transA": ta, "transB": tb} if op == "Gemm" else {}
    out = "y" if act is None else "g"
    nodes = [helper.make_node(op, ins, [out], **attrs)]
    if act is not None:
        nodes.append(helper.make_node(act, ["g"], ["y"], **({"alpha": slope} if act == "LeakyRelu" else {})))
    g = helper.make_graph(nodes, "dense", graph_inputs, [helper.make_empty_tensor_value_info("y")], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.output[0].type.CopyFrom(inferred.graph.output[0].type)

    def feeds(rows=m):
        r = np.random.default_rng(seed + 1 + rows)
        if op == "Gemm":
            shp = (k, rows) if ta else (rows, k)
        else:
            shp = tuple(rows if d == sym else d for d in a_decl)
        f = {"A": r.uniform(-1, 1, shp).astype(dtype)}
        if op == "Gemm" and cshape is not None and not c_const:
            f["C"] = r.uniform(-1, 1, cshape).astype(dtype)
        return f
    return model, feeds


# id -> (model, list of feeds, packed expected)
CASES = {}


def add(id_, model_feeds, batches=None, packed=True):
    model, feeds = model_feeds
    CASES[id_] = (model, [feeds(b) for b in batches] if batches else [feeds()], packed)


# shapes: remainders in every dimension (MR = 6, NR = 16 with an 8-wide last panel, KC = 256)
for m, k, n in [(1, 1, 1), (1, 50, 50), (2, 3, 5), (5, 7, 8), (6, 16, 16), (7, 17, 9), (8, 100, 50),
                (13, 37, 24), (16, 100, 50), (16, 50, 10), (50, 64, 33), (97, 255, 17), (64, 256, 48),
                (31, 257, 40), (300, 120, 7), (12, 600, 600), (150, 513, 130), (3, 300, 600)]:
    add(f"gemm-{m}x{k}x{n}", dense_model(m, k, n, seed=m + k + n))

# transposes, alpha / beta
for ta, tb in [(0, 1), (1, 0), (1, 1)]:
    for m, k, n in [(1, 20, 30), (7, 33, 17), (45, 300, 70)]:
        add(f"trans{ta}{tb}-{m}x{k}x{n}", dense_model(m, k, n, ta=ta, tb=tb, seed=m + 3 * ta + tb))
add("alpha-beta", dense_model(11, 40, 27, alpha=0.7, beta=-1.3, seed=5))
add("alpha-beta-trans", dense_model(20, 19, 45, ta=1, tb=1, alpha=2.5, beta=0.25, seed=6))
add("beta0", dense_model(9, 30, 20, beta=0.0, seed=7))

# bias shapes: constant along rows (kernel bias), the others written into the output first
for cs in [None, "1n", "11", "scalar", "m1", "mn"]:
    add(f"bias-{cs}", dense_model(14, 29, 35, c_shape=cs, beta=0.5, seed=8))
add("bias-runtime-mn", dense_model(14, 29, 35, c_shape="mn", c_const=False, seed=9))
add("bias-runtime-n", dense_model(14, 29, 35, c_shape="n", c_const=False, act="Relu", seed=10))

# fused activations (FuseActivation then the kernel's store)
for act in ["Relu", "LeakyRelu", "Sigmoid", "Tanh"]:
    for m, k, n in [(3, 25, 19), (40, 70, 50), (13, 300, 9)]:
        add(f"act-{act}-{m}x{k}x{n}", dense_model(m, k, n, act=act, seed=len(act) + m))
add("act-relu-mn-bias", dense_model(10, 20, 30, c_shape="mn", act="Relu", seed=11))
add("act-leaky-trans-k-blocks", dense_model(21, 520, 23, ta=1, tb=1, act="LeakyRelu", slope=0.3, seed=12))

# dynamic batch: one session, several batch sizes
add("sym-gemm", dense_model(1, 37, 29, sym="N", act="Relu", seed=13), batches=[1, 5, 6, 7, 13, 64, 301])
add("sym-gemm-transA", dense_model(1, 37, 29, sym="N", ta=1, seed=14), batches=[1, 6, 19])
# K blocks only when there is more than one block of rows (M > 6), a run-time decision here
add("sym-gemm-deep", dense_model(1, 300, 20, sym="N", tb=1, act="Tanh", seed=20), batches=[1, 4, 6, 7, 50])

# MatMul with a constant 2-D B: A of rank 2 and 3 (rows flattened), static and dynamic
add("matmul-2d", dense_model(23, 45, 31, op="MatMul", seed=15))
add("matmul-3d", dense_model(0, 45, 31, op="MatMul", a_shape=[3, 7, 45], seed=16))
add("matmul-3d-sym", dense_model(0, 45, 31, op="MatMul", a_shape=["N", 5, 45], sym="N", seed=17),
    batches=[1, 2, 9])
add("matmul-1x", dense_model(1, 64, 100, op="MatMul", seed=18))
add("matmul-vector", dense_model(0, 50, 1, op="MatMul", a_shape=[50], seed=21))  # 1-D A: one row
add("matmul-vector-wide", dense_model(0, 16, 100, op="MatMul", a_shape=[16], seed=22))

# not packed: double keeps the reference loop
add("gemm-double", dense_model(9, 20, 30, dtype=np.float64, seed=19), packed=False)


def packed_nodes(graph):
    return [n for n in graph.nodes if n.op_type in ("Gemm", "MatMul") and n.op.__dict__.get("packed_gemm")]


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    ids = sorted(CASES)
    graphs = []
    for i in ids:
        graphs.append(load(CASES[i][0], optimize=True))
        graphs.append(load(CASES[i][0], optimize=False))
    built = compile_many(graphs)
    return {i: (graphs[2 * j], built[2 * j], built[2 * j + 1]) for j, i in enumerate(ids)}


@pytest.mark.parametrize("id_", sorted(CASES))
def test_kernel_matches_ort_and_unoptimized(id_, sessions):
    model, feeds_list, packed = CASES[id_]
    graph, opt, plain = sessions[id_]
    for s in (opt, plain):
        if isinstance(s, Exception):
            raise s
    assert bool(packed_nodes(graph)) == packed, f"{id_}: packed nodes {packed_nodes(graph)}"
    if packed:
        # the activation is fused into the packed node, nothing else is left
        assert [n.op_type for n in graph.nodes] in (["Gemm"], ["MatMul"]), [n.op_type for n in graph.nodes]
    for feeds in feeds_list:
        expected = ort(model, feeds)
        got = opt.run(None, feeds)
        what = f"{id_} rows {next(iter(feeds.values())).shape}"
        assert_close(got, expected, RTOL, ATOL, what=f"{what} optimized vs onnxruntime")
        assert_close(got, plain.run(None, feeds), RTOL, ATOL, what=f"{what} optimized vs unoptimized")


NATIVE_OFF = ["act-leaky-trans-k-blocks", "gemm-97x255x17", "sym-gemm", "sym-gemm-deep", "bias-mn",
              "act-Sigmoid-40x70x50", "matmul-3d", "gemm-1x50x50"]


def test_portable_fallback_without_native():
    """Compiled without -march=native: no __AVX2__/__FMA__, the scalar tiles run."""
    from pysofie.build.batch import compile_many
    built = compile_many([CASES[i][0] for i in NATIVE_OFF], native=False)
    for id_, sess in zip(NATIVE_OFF, built):
        if isinstance(sess, Exception):
            raise sess
        model, feeds_list, _ = CASES[id_]
        for feeds in feeds_list:
            assert_close(sess.run(None, feeds), ort(model, feeds), RTOL, ATOL, what=f"{id_} native=False")


def test_size_choice():
    """Reductions deeper than 2048 stay with OpenBLAS; large layers below that are packed."""
    deep, _ = dense_model(64, 2049, 16)
    assert not packed_nodes(load(deep))
    sym_deep, _ = dense_model(1, 3000, 16, sym="N", op="MatMul")
    assert not packed_nodes(load(sym_deep))
    big, _ = dense_model(512, 1024, 64, tb=1)
    assert packed_nodes(load(big))


def test_packed_layout():
    """pack_panels: 16-column panels, k-major, the last one 8 wide when it holds at most 8 columns."""
    from pysofie.backends.cpp.passes.gemm_pack import pack_panels
    b = np.arange(3 * 21, dtype=np.float32).reshape(3, 21)
    p = pack_panels(b)
    assert p.shape == (3 * 16 + 3 * 8,)
    np.testing.assert_array_equal(p[:48].reshape(3, 16), b[:, :16])
    tail = p[48:].reshape(3, 8)
    np.testing.assert_array_equal(tail[:, :5], b[:, 16:])
    assert not tail[:, 5:].any()
    p2 = pack_panels(np.ones((2, 25), np.float32))
    assert p2.shape == (2 * 16 * 2,)
    assert p2.reshape(2, 2, 16)[1, :, 9:].sum() == 0 and p2.reshape(2, 2, 16)[1, :, :9].all()
