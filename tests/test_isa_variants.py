"""Every kernel variant this machine can run, against onnxruntime: the same generated models compiled three
times -- with pysofie's own flags (-march=native: the AVX-512 kernels where the CPU has AVX-512F), with
-mno-avx512f (the AVX2/FMA kernels), and with AVX2, FMA and AVX-512 disabled (the portable scalar fallbacks).
A variant the CPU (or the build, e.g. PYSOFIE_NATIVE=0) does not give is skipped; which instruction sets each
build really targets is checked from the compiler's own predefined macros.

The models are small, with sizes that hit the kernels' tails: the packed-GEMM micro-tile (rows not a multiple of
6, a masked last panel), the indirect convolution (output positions not a multiple of 6, an odd number of
16-channel blocks, weights of 1 MiB or more), Winograd, depthwise (channels not a multiple of 8), the vector math
of Softmax / LayerNormalization / Gelu, attention's softmax rows and causal skipping, ConvNeXt's channel LayerNorm
and transposed residual, and the GRU's 8-lane tanh update. Tolerance: rtol 1e-4 and atol 1e-5,
or 1e-4 where a reduction has more than 1000 terms (float32 sums in a different order than onnxruntime's).

The three builds are one shared library each (one compiler run per variant)."""
import os

import numpy as np
import pytest
from onnx import helper

from pysofie.build.compiler import target_isa
from tests.test_channel_norm import channel_ln, scale_transpose_add
from tests.test_fused_attention import attention
from tests.test_fusion import graph_model
from tests.util import ROOTBENCH, assert_close, ort, rand

MODELS = {}  # id -> (model, feeds, rtol, atol, a string the generated code must contain)


def add(id_, model, feeds, needle, rtol=1e-4, atol=1e-5):
    MODELS[id_] = (model, feeds, rtol, atol, needle)


def _conv(xs, ws, attrs, act=None, seed=0):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if act else "y"], **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["c"], ["y"]))
    inits = {"w": rand(*ws, seed=seed + 1) * 0.5, "b": rand(ws[0], seed=seed + 2)}
    return graph_model(nodes, {"x": rand(*xs, seed=seed)}, inits, ["y"]), {"x": rand(*xs, seed=seed)}


# packed GEMM: 7 rows (a 6-row tile + 1: AVX2's first tile prefetches the next panel), 45 columns (two 16-wide
# panels + a masked 13), fused bias + Relu
m = graph_model([helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Add", ["a", "b"], ["c"]),
                 helper.make_node("Relu", ["c"], ["y"])],
                {"x": rand(7, 37, seed=1)}, {"w": rand(37, 45, seed=2), "b": rand(45, seed=3)}, ["y"])
add("gemm-tails", m, {"x": rand(7, 37, seed=1)}, "pysofie_gemm::gemm_packed")
# Gemm transB with alpha, 9 columns (one 8-wide panel + 1), then Tanh; 13 rows
m = graph_model([helper.make_node("Gemm", ["x", "w", "b"], ["c"], transB=1, alpha=0.7),
                 helper.make_node("Tanh", ["c"], ["y"])],
                {"x": rand(13, 70, seed=4)}, {"w": rand(9, 70, seed=5), "b": rand(9, seed=6)}, ["y"])
add("gemm-transB-n9", m, {"x": rand(13, 70, seed=4)}, "pysofie_gemm::gemm_packed")
# the AVX-512 12 x 32 tiles: 26 rows (12 + 12 + 2: the 2-row tile's partial sums), K = 257 (two K blocks: the
# second adds to the stored first), 75 columns (two 32-column pairs + a lone masked 11); bias + Gelu (erf)
m = graph_model([helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Add", ["a", "b"], ["c"]),
                 helper.make_node("Gelu", ["c"], ["y"])],
                {"x": rand(26, 257, seed=7)}, {"w": rand(257, 75, seed=8) * 0.2, "b": rand(75, seed=9)}, ["y"],
                opset=20)
add("gemm-gelu-k257", m, {"x": rand(26, 257, seed=7)}, "pysofie_gemm::GELU,")
# Gelu over a wide range (the rational erf's clamp at +-5.52 and its 0 below; large negative inputs must give ~0),
# fused into a dense layer (x3 and x0.5 copies of the inputs: 40 columns) and alone
GX = np.concatenate([np.linspace(-45, 45, 96), [-5.5154, -5.5153, 5.5153, 5.5154, -1e30, 1e30, -3.3e38, 0, -0.0,
                                                  1e-30, -1e-30, -7, 7, -3, 3, 0.5]]).astype(np.float32).reshape(7, 16)
GW = np.zeros((16, 40), np.float32)
GW[:, :16], GW[:, 16:32] = 3 * np.eye(16), 0.5 * np.eye(16)
m = graph_model([helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Add", ["a", "b"], ["c"]),
                 helper.make_node("Gelu", ["c"], ["y"]), helper.make_node("Gelu", ["x"], ["z"])],
                {"x": GX}, {"w": GW, "b": np.zeros(40, np.float32)}, ["y", "z"], opset=20)
add("gelu-range", m, {"x": GX}, "pysofie_gemm::GELU,")
# 25 rows (12 + 12 + 1: four partial sums), 24 columns (a 16-lane tile, then the 8 wide last panel on 8-lane tiles),
# tanh Gelu
m = graph_model([helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Add", ["a", "b"], ["c"]),
                 helper.make_node("Gelu", ["c"], ["y"], approximate="tanh")],
                {"x": rand(25, 37, seed=10) * 2}, {"w": rand(37, 24, seed=11), "b": rand(24, seed=12)}, ["y"],
                opset=20)
add("gemm-gelutanh-n24", m, {"x": rand(25, 37, seed=10) * 2}, "pysofie_gemm::GELU_TANH")
# transposed A (19 x 33 from a 33 x 19 input: strided rows), a full C added (the accumulate path), 40 columns
# (a pair + an 8-wide panel), LeakyRelu
m = graph_model([helper.make_node("Gemm", ["x", "w", "cc"], ["c"], transA=1, beta=0.5),
                 helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2)],
                {"x": rand(33, 19, seed=13)}, {"w": rand(33, 40, seed=14), "cc": rand(19, 40, seed=15)}, ["y"])
add("gemm-leaky-accumulate", m, {"x": rand(33, 19, seed=13)}, "pysofie_gemm::LEAKY")
# an 8 wide last panel of at most 4 columns (N = 100: three pairs + 4; AVX-512: rem512's 4 k x 4 column FMAs) and
# of 6 (N = 38: 32 + 6, two 4-column passes): 29 rows (12 + 12 + 4 + 1), K = 37 (a 1-k tail after the blocks of
# 4), bias + Relu; then K = 259 with 14 rows (two K blocks: the second adds to the stored first; tail 3), LeakyRelu
for _i, (_m, _k, _n, _act) in enumerate([(29, 37, 100, "Relu"), (29, 37, 38, "Relu"), (14, 259, 100, "LeakyRelu"),
                                         (14, 259, 6, "LeakyRelu")]):
    m = graph_model([helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Add", ["a", "b"], ["c"]),
                     helper.make_node(_act, ["c"], ["y"])],
                    {"x": rand(_m, _k, seed=70 + _i)}, {"w": rand(_k, _n, seed=80 + _i) * 0.3,
                                                         "b": rand(_n, seed=90 + _i)}, ["y"])
    add(f"gemm-rem4-{_m}x{_k}x{_n}", m, {"x": rand(_m, _k, seed=70 + _i)}, "pysofie_gemm::gemm_packed")
# indirect convolution: 40 output channels (a pair of 16-channel blocks + one), 77 positions (stride 2)
add("conv-odd", *_conv((1, 5, 13, 11), (40, 5, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "Relu", 10),
    "pysofie_conv::conv_indirect")
# weights of 128 * 9 * 256 floats (1.1 MiB): the channel-blocks-outermost order (AVX-512 and AVX2); K = 1152
add("conv-large-weights", *_conv((1, 128, 5, 5), (256, 128, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]},
                                 None, 20), "pysofie_conv::conv_indirect", atol=1e-4)
# Winograd F(4x4, 3x3): 24 output channels, a partial tile row and column (19 x 31)
add("conv-winograd", *_conv((1, 32, 19, 31), (24, 32, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", 30),
    "conv_indirect(nt, pos", atol=1e-4)
# Winograd F(2x2, 3x3): 11 x 15 outputs (8 tiles of 2 per row, the last partial)
add("conv-winograd-f2", *_conv((1, 32, 11, 15), (16, 32, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", 31),
    "conv_indirect(nt, pos")
# Winograd one tile at a time (narrow output, 256 channels; the transforms are scalar code on every target)
add("conv-winograd-tiles", *_conv((1, 256, 5, 6), (256, 256, 3, 3), {"pads": [1, 1, 1, 1]}, None, 32),
    "conv_indirect(nt, pos", atol=1e-4)
# stride-1 ConvTranspose 4x4 as the equivalent Conv by Winograd F(4x4, 4x4) (n = 7: patch columns 4-6 from the
# second transposes), Sigmoid fused
m = graph_model([helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], pads=[1, 0, 2, 1]),
                 helper.make_node("Sigmoid", ["c"], ["y"])],
                {"x": rand(1, 40, 7, 30, seed=33)}, {"w": rand(40, 18, 4, 4, seed=34) * 0.5, "b": rand(18, seed=35)},
                ["y"])
add("convtranspose-winograd", m, {"x": rand(1, 40, 7, 30, seed=33)}, "conv_indirect(nt, pos")
# depthwise 3x3 over 13 channels (8 on the vector lanes + 5)
add("depthwise-13", *_conv((1, 13, 17, 19), (13, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 13}, "Relu", 40),
    "pysofie_conv::depthwise8<3>")
# depthwise 7x7 (convnext's): 20 channels (8 + 8 + 4), 45 output columns (AVX-512: blocks of 16 -- the first
# and last reaching into the padding, the middle one not -- and a tail of 13; AVX2: blocks of 8, tail 5), pads
# top 3, left 2, bottom 1, right 4 (the edge blocks and rows that skip the zero padding), bias, Relu
add("depthwise7-asym", *_conv((1, 20, 13, 45), (20, 1, 7, 7), {"pads": [3, 2, 1, 4], "group": 20}, "Relu", 41),
    "pysofie_conv::depthwise8<7>")
# 1-D depthwise, kernel 7 over 37 samples, 10 channels
m = graph_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[3, 3], group=10)],
                {"x": rand(1, 10, 37, seed=45)}, {"w": rand(10, 1, 7, seed=46) * 0.5, "b": rand(10, seed=47)}, ["y"])
add("depthwise7-1d", m, {"x": rand(1, 10, 37, seed=45)}, "pysofie_conv::depthwise8<7>")
# a plane smaller than the kernel (5 x 6, pads 3 and 4: every block an edge block, rows with no input at all)
add("depthwise7-small", *_conv((1, 9, 5, 6), (9, 1, 7, 7), {"pads": [3, 4, 4, 3], "group": 9}, None, 42),
    "pysofie_conv::depthwise8<7>")
# depthwise with stride 2 and dilation 2 (5x5: the indirect kernel), and with channel multiplier 2 (group = C,
# 2 C outputs: the row kernel)
add("depthwise5-s2-d2", *_conv((1, 12, 17, 23), (12, 1, 5, 5), {"pads": [4, 3, 4, 5], "group": 12,
                                                                "strides": [2, 2], "dilations": [2, 2]}, None, 43),
    "pysofie_conv::conv_indirect")
add("depthwise3-mult2", *_conv((1, 6, 11, 13), (12, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 6}, None, 44),
    "pysofie_conv::conv_rows")
# vector math: Softmax and LayerNormalization rows of 37, Gelu (opset 20)
m = graph_model([helper.make_node("Softmax", ["x"], ["s"], axis=-1),
                 helper.make_node("LayerNormalization", ["x", "g", "bb"], ["n"], axis=-1, epsilon=1e-5),
                 helper.make_node("Gelu", ["x"], ["e"]), helper.make_node("Add", ["s", "n"], ["t"]),
                 helper.make_node("Add", ["t", "e"], ["y"])],
                {"x": rand(5, 37, seed=50) * 3}, {"g": rand(37, seed=51), "bb": rand(37, seed=52)}, ["y"], opset=20)
add("vmath", m, {"x": rand(5, 37, seed=50) * 3}, "pysofie_vm::")
# GRU, hidden 13 (one 8-lane tanh update + a scalar tail), reverse direction
H, I, S = 13, 5, 7
m = graph_model([helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "y"], hidden_size=H, direction="reverse")],
                {"x": rand(S, 1, I, seed=60)},
                {"W": rand(1, 3 * H, I, seed=61) * 0.6, "R": rand(1, 3 * H, H, seed=62) * 0.6,
                 "B": rand(1, 6 * H, seed=63) * 0.5}, ["y"])
add("gru-h13", m, {"x": rand(S, 1, I, seed=60)}, "pysofie_rnn::tanh(")

# attention (runtime/pysofie_attn.h): softmax rows of 37 keys (two 16-lane vectors + a tail of 5; 8-lane: 4 + 5)
# with a Where condition then a bias read by the vector loops, and a causal mask the kernel skips (50 queries in
# three row blocks over 53 keys)
m, f = attention(B=1, H=2, S=11, T=37, D=16, Dv=20, masks=("where", "add"), seed=70)
add("attn-where-add-t37", m, f, "pysofie_attn::run")
m, f = attention(B=1, H=2, S=50, T=53, D=16, Dv=24, masks=("where",), seed=71)
add("attn-causal", m, f, ".causal = 3;")
# ConvNeXt's channel LayerNorm (16- and 8-pixel blocks, a scalar tail, 13 channels: a channel tail after the
# 8 x 8 transposes) and the layer-scaled residual from NHWC (runtime/pysofie_transpose.h)
add("channel-ln-c13", *channel_ln((1, 13, 5, 9), seed=72), "pysofie_tr::channel_layernorm")
add("scale-transpose-add", *scale_transpose_add((1, 24, 5, 5), seed=73), "pysofie_tr::scale_transpose_add")

VARIANTS = {"native": [], "avx2": ["-mno-avx512f"], "scalar": ["-mno-avx512f", "-mno-avx2", "-mno-fma"]}


def build_variants(models: dict, prefix: str) -> dict:
    """{variant: (isa it targets, {id: generated model}, {id: session or the exception}) } for the VARIANTS whose
    builds differ (e.g. no AVX-512 here: the native build is already the AVX2 one), one batch compile each."""
    from pysofie.api import generate_code
    from pysofie.build.batch import sessions_for
    out, seen = {}, set()
    for name, extra in VARIANTS.items():
        isa = target_isa(extra)
        if isa in seen:
            continue
        seen.add(isa)
        gms = {i: generate_code(m, namespace=f"{prefix}_{name}_{k}") for k, (i, m) in enumerate(models.items())}
        out[name] = (isa, gms, dict(zip(gms, sessions_for(list(gms.values()), extra_flags=extra))))
    return out


@pytest.fixture(scope="module")
def builds():
    """{variant: (isa it targets, {model id: session}, [generated model]) } for the variants that differ."""
    return {name: (isa, sessions, list(gms.values()))
            for name, (isa, gms, sessions) in build_variants({i: m[0] for i, m in MODELS.items()}, "isa").items()}


def test_variants_target_what_they_say(builds):
    isas = {name: isa for name, (isa, _, _) in builds.items()}
    assert isas.get("scalar") == "scalar", isas  # the fallbacks always run
    if "avx2" in isas:
        assert isas["avx2"] == "avx2"
    if "native" in isas and isas["native"] != "scalar":
        assert isas["native"] in ("avx512", "avx2")


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("id_", list(MODELS))
def test_variant_matches_onnxruntime(builds, variant, id_):
    if variant not in builds:
        pytest.skip(f"{variant}: this CPU / build gives no distinct {variant} kernels")
    isa, sessions, gms = builds[variant]
    model, feeds, rtol, atol, needle = MODELS[id_]
    gm = gms[list(MODELS).index(id_)]
    assert needle in gm.header, f"{id_}: the generated code no longer uses {needle}"
    sess = sessions[id_]
    if isinstance(sess, Exception):
        raise sess
    assert_close(sess.run(None, feeds), ort(model, feeds), rtol, atol, what=f"{id_} ({variant}: {isa}) vs onnxruntime")


def test_library_cache_keeps_the_variants_apart(tmp_path, monkeypatch):
    """The same generated code with and without -mno-avx512f: two libraries (the flags are part of the cache key),
    each found again in the cache when built with the same flags."""
    from pysofie.api import generate_code
    from pysofie.build.library import build_library
    monkeypatch.setenv("PYSOFIE_CACHE_DIR", str(tmp_path))
    model, _, _, _, _ = MODELS["vmath"]
    gm = generate_code(model, namespace="isa_cache")
    native = build_library([gm])
    avx2 = build_library([gm], extra_flags=VARIANTS["avx2"])
    assert native != avx2 and os.path.exists(native) and os.path.exists(avx2)
    mtimes = (os.stat(native).st_mtime_ns, os.stat(avx2).st_mtime_ns)
    assert build_library([gm]) == native and build_library([gm], extra_flags=VARIANTS["avx2"]) == avx2
    assert (os.stat(native).st_mtime_ns, os.stat(avx2).st_mtime_ns) == mtimes  # not rebuilt
    libs = sorted(f for _, _, fs in os.walk(tmp_path) for f in fs if f.endswith(".so"))
    assert len(libs) == 2, libs


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOTBENCH, "Linear_event.onnx")),
                    reason=f"rootbench models not found in {ROOTBENCH}")
def test_benchmark_isa_option_builds_and_records_avx2(tmp_path, monkeypatch):
    """benchmarks/run.py --isa avx2: pysofie's kernels built with -mno-avx512f (the compiler's macros say AVX2),
    recorded in the JSON and the Markdown header, written to latest_avx2.* by default (latest.* untouched)."""
    import json
    import sys
    if target_isa(VARIANTS["avx2"]) != "avx2":
        pytest.skip("no AVX2 + FMA build here")
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # run.py sets them at import
        monkeypatch.setenv(v, os.environ.get(v, "1"))
    bench = os.path.join(os.path.dirname(__file__), "..", "benchmarks")
    monkeypatch.syspath_prepend(bench)
    import run
    monkeypatch.setattr(run, "RESULTS", str(tmp_path))
    monkeypatch.setattr(run, "ROOTBENCH", ROOTBENCH)
    monkeypatch.setattr(run, "EXTRA_FLAGS", [])
    assert run.main(["--isa", "avx2", "--quick", "--models", "Linear_event", "--no-cpp", "--no-plot",
                     "--budget", "0.5"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["latest_avx2.json", "latest_avx2.md"]
    with open(tmp_path / "latest_avx2.json") as f:
        data = json.load(f)
    meta, (row,) = data["meta"], data["models"]
    assert meta["pysofie_isa"] == "avx2" and meta["pysofie_extra_flags"] == ["-mno-avx512f"]
    assert "--isa avx2" in meta["command"]
    assert row["status"] == "ok" and row["max_abs_diff"] <= 1e-5 * max(1.0, row["max_abs_ref"])
    header = (tmp_path / "latest_avx2.md").read_text().splitlines()[0]
    assert "pysofie built for avx2 -mno-avx512f" in header
    del sys.modules["run"]  # its EXTRA_FLAGS were set for this run
