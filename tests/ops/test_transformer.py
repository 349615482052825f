"""Attention, RMSNormalization and RotaryEmbedding (opsets 23-25) against onnx's reference evaluator."""
import numpy as np
import pytest

from pysofie.errors import ShapeInferenceError, UnsupportedOperatorError
from tests.util import Cases, node_model, rand, run_case, selected_sessions

CASES = Cases(opset=23)
case = CASES.add


def att(id_, q, k, v, mask=None, past=None, attrs=None, n_outputs=1, nonpad=None, opset=23, **kw):
    ins = {"Q": q, "K": k, "V": v, "attn_mask": mask,
           "past_key": None if past is None else past[0], "past_value": None if past is None else past[1]}
    if nonpad is not None:
        ins["nonpad_kv_seqlen"] = nonpad
    # trailing absent inputs are left out of the node
    while ins and list(ins.values())[-1] is None:
        ins.pop(list(ins)[-1])
    case(f"Attention-{id_}", "Attention", ins, attrs, n_outputs=n_outputs, opset=opset, **kw)


# -- Attention, 4-D: (batch, heads, sequence, head size) ------------------------------------------------------
att("4d", rand(2, 3, 4, 8, seed=1), rand(2, 3, 6, 8, seed=2), rand(2, 3, 6, 8, seed=3))
att("4d-gqa", rand(2, 6, 4, 8, seed=4), rand(2, 2, 5, 8, seed=5), rand(2, 2, 5, 8, seed=6))
att("4d-mqa-diff-v", rand(1, 4, 3, 8, seed=7), rand(1, 1, 5, 8, seed=8), rand(1, 1, 5, 6, seed=9))
att("4d-scale", rand(2, 2, 4, 8, seed=10), rand(2, 2, 4, 8, seed=11), rand(2, 2, 4, 8, seed=12), attrs={"scale": 0.3})
att("4d-causal", rand(2, 2, 4, 8, seed=13), rand(2, 2, 4, 8, seed=14), rand(2, 2, 4, 8, seed=15),
    attrs={"is_causal": 1})
att("4d-causal-rect", rand(1, 2, 3, 8, seed=16), rand(1, 2, 6, 8, seed=17), rand(1, 2, 6, 8, seed=18),
    attrs={"is_causal": 1})
att("4d-softcap", rand(2, 2, 4, 8, high=3, seed=19), rand(2, 2, 4, 8, high=3, seed=20), rand(2, 2, 4, 8, seed=21),
    attrs={"softcap": 1.5})
for mshape in [(4, 6), (2, 1, 4, 6), (3, 4, 6), (1, 3, 1, 6), (2, 3, 4, 6), (4, 3)]:  # (4, 3): shorter than K
    att(f"4d-fmask-{mshape}", rand(2, 3, 4, 8, seed=22), rand(2, 3, 6, 8, seed=23), rand(2, 3, 6, 8, seed=24),
        mask=rand(*mshape, low=-2, high=1, seed=25))
    att(f"4d-bmask-{mshape}", rand(2, 3, 4, 8, seed=26), rand(2, 3, 6, 8, seed=27), rand(2, 3, 6, 8, seed=28),
        mask=rand(*mshape, seed=29) > -0.5)
    if mshape[-2] == 1:
        continue  # onnx's reference builds the causal part at the mask's own query length (1): wrong rows
    att(f"4d-fmask-causal-{mshape}", rand(2, 3, 4, 8, seed=30), rand(2, 3, 6, 8, seed=31),
        rand(2, 3, 6, 8, seed=32), mask=rand(*mshape, low=-2, high=1, seed=33), attrs={"is_causal": 1})
    att(f"4d-bmask-causal-{mshape}", rand(2, 3, 4, 8, seed=34), rand(2, 3, 6, 8, seed=35),
        rand(2, 3, 6, 8, seed=36), mask=rand(*mshape, seed=37) > -0.5, attrs={"is_causal": 1})
_fully = np.ones((3, 5), bool)
_fully[1] = False  # a query row with no key: zeros in Y and in the softmax output
att("4d-fully-masked-row", rand(1, 2, 3, 4, seed=38), rand(1, 2, 5, 4, seed=39), rand(1, 2, 5, 4, seed=40),
    mask=_fully, attrs={"qk_matmul_output_mode": 3}, n_outputs=4)
# past key/value, present outputs, causal frontier shifted by the past length
_past = (rand(2, 2, 3, 8, seed=41), rand(2, 2, 3, 6, seed=42))
for attrs in [{}, {"is_causal": 1}]:
    att(f"4d-past-{attrs}", rand(2, 4, 2, 8, seed=43), rand(2, 2, 2, 8, seed=44), rand(2, 2, 2, 6, seed=45),
        mask=rand(2, 5, seed=46), past=_past, attrs=attrs, n_outputs=3)
for nout in (1, 2):  # the concatenated keys/values live in scratch buffers
    att(f"4d-past-out{nout}", rand(2, 4, 2, 8, seed=170), rand(2, 2, 2, 8, seed=171), rand(2, 2, 2, 6, seed=172),
        mask=rand(2, 5, seed=173), past=_past, attrs={"is_causal": 1}, n_outputs=nout)
att("4d-present-no-past", rand(1, 2, 3, 8, seed=47), rand(1, 2, 3, 8, seed=48), rand(1, 2, 3, 8, seed=49),
    n_outputs=3)
# the qk_matmul_output modes (0: scaled Q K^T; 1: softcapped; 2: with bias; 3: softmax)
for mode in (0, 1, 2, 3):
    attrs = {"qk_matmul_output_mode": mode}
    if mode:
        attrs["softcap"] = 2.0  # (mode 0 with softcap: onnx's reference returns the softcapped scores)
    att(f"4d-qk-mode{mode}", rand(2, 2, 3, 8, high=2, seed=50), rand(2, 2, 5, 8, high=2, seed=51),
        rand(2, 2, 5, 8, seed=52), mask=rand(3, 5, low=-1, high=0, seed=53), past=None, attrs=attrs, n_outputs=4)
    att(f"4d-qk-mode{mode}-past", rand(1, 2, 3, 8, seed=54), rand(1, 2, 2, 8, seed=55), rand(1, 2, 2, 8, seed=56),
        mask=rand(1, 2, 3, 5, seed=57), past=(rand(1, 2, 3, 8, seed=58), rand(1, 2, 3, 8, seed=59)),
        attrs=dict(attrs, is_causal=1), n_outputs=4)
att("4d-softmax-double", rand(2, 2, 4, 8, seed=60), rand(2, 2, 4, 8, seed=61), rand(2, 2, 4, 8, seed=62),
    attrs={"softmax_precision": 11})
att("4d-f64", rand(2, 4, 3, 8, dtype=np.float64, seed=63), rand(2, 2, 5, 8, dtype=np.float64, seed=64),
    rand(2, 2, 5, 4, dtype=np.float64, seed=65), mask=rand(3, 5, dtype=np.float64, seed=66),
    attrs={"is_causal": 1, "softcap": 3.0}, rtol=1e-9, atol=1e-12)
# big enough for the BLAS path to matter
att("4d-large", rand(2, 4, 64, 32, seed=67), rand(2, 2, 96, 32, seed=68), rand(2, 2, 96, 48, seed=69),
    attrs={"is_causal": 1}, rtol=1e-4, atol=1e-5)

# -- Attention, 3-D: (batch, sequence, heads * head size) ------------------------------------------------------
att("3d", rand(2, 4, 24, seed=70), rand(2, 6, 24, seed=71), rand(2, 6, 24, seed=72),
    attrs={"q_num_heads": 3, "kv_num_heads": 3})
att("3d-gqa-diff-v", rand(2, 4, 48, seed=73), rand(2, 5, 16, seed=74), rand(2, 5, 12, seed=75),
    attrs={"q_num_heads": 6, "kv_num_heads": 2, "is_causal": 1})
att("3d-past-qk", rand(2, 3, 16, seed=76), rand(2, 2, 16, seed=77), rand(2, 2, 8, seed=78),
    mask=rand(3, 6, seed=79) > -0.7, past=(rand(2, 2, 4, 8, seed=80), rand(2, 2, 4, 4, seed=81)),
    attrs={"q_num_heads": 2, "kv_num_heads": 2, "qk_matmul_output_mode": 2}, n_outputs=4)

# -- opset 24: nonpad_kv_seqlen (an external cache: keys past the valid length are padding) -------------------
for causal in (0, 1):
    att(f"nonpad-causal{causal}", rand(3, 2, 2, 8, seed=82), rand(3, 2, 6, 8, seed=83), rand(3, 2, 6, 8, seed=84),
        nonpad=np.array([6, 3, 1], np.int64), attrs={"is_causal": causal}, opset=24)
    att(f"nonpad-mask-causal{causal}", rand(2, 2, 3, 8, seed=85), rand(2, 2, 5, 8, seed=86),
        rand(2, 2, 5, 8, seed=87), mask=rand(3, 5, seed=88) > -0.6, nonpad=np.array([4, 5], np.int64),
        attrs={"is_causal": causal}, opset=24)

# -- opset 25: sliding windows ---------------------------------------------------------------------------------
for attrs in [{"is_causal": 1, "left_window_size": 2}, {"left_window_size": 1, "right_window_size": 2},
              {"left_window_size": 0, "right_window_size": 0}]:
    att(f"window-{attrs}", rand(2, 2, 5, 8, seed=89), rand(2, 2, 6, 8, seed=90), rand(2, 2, 6, 8, seed=91),
        mask=rand(5, 6, seed=92), attrs=attrs, opset=25)
att("window-past", rand(1, 2, 2, 8, seed=93), rand(1, 2, 2, 8, seed=94), rand(1, 2, 2, 8, seed=95),
    past=(rand(1, 2, 4, 8, seed=96), rand(1, 2, 4, 8, seed=97)), attrs={"is_causal": 1, "left_window_size": 2},
    n_outputs=3, opset=25)

# -- float16 / bfloat16 (computed in float, every step rounded to the type as the reference does it): a few ulps
import ml_dtypes  # noqa: E402  (installed with onnx)

_F16, _BF16 = np.float16, ml_dtypes.bfloat16
att("4d-f16-causal-mask", rand(2, 4, 3, 8, seed=150).astype(_F16), rand(2, 2, 5, 8, seed=151).astype(_F16),
    rand(2, 2, 5, 8, seed=152).astype(_F16), mask=rand(3, 5, seed=153).astype(_F16), attrs={"is_causal": 1},
    rtol=3e-3, atol=3e-3)
att("4d-f16-past-qk", rand(1, 2, 2, 8, seed=154).astype(_F16), rand(1, 2, 2, 8, seed=155).astype(_F16),
    rand(1, 2, 2, 8, seed=156).astype(_F16), mask=rand(2, 5, seed=157) > -0.5,
    past=(rand(1, 2, 3, 8, seed=158).astype(_F16), rand(1, 2, 3, 8, seed=159).astype(_F16)),
    attrs={"qk_matmul_output_mode": 3, "softmax_precision": 1, "softcap": 2.0}, n_outputs=4, rtol=3e-3, atol=3e-3)
att("3d-bf16", rand(2, 3, 16, seed=160).astype(_BF16), rand(2, 4, 16, seed=161).astype(_BF16),
    rand(2, 4, 16, seed=162).astype(_BF16), attrs={"q_num_heads": 2, "kv_num_heads": 2, "is_causal": 1},
    rtol=2e-2, atol=2e-2)

# -- symbolic (dynamic) batch and sequence lengths -------------------------------------------------------------
att("4d-symbolic", rand(3, 2, 5, 8, seed=98), rand(3, 2, 5, 8, seed=99), rand(3, 2, 5, 8, seed=100),
    attrs={"is_causal": 1}, symbolic={"Q": ["N", 2, "S", 8], "K": ["N", 2, "S", 8], "V": ["N", 2, "S", 8]})
att("3d-symbolic-past", rand(2, 3, 16, seed=101), rand(2, 3, 16, seed=102), rand(2, 3, 16, seed=103),
    past=(rand(2, 2, 4, 8, seed=104), rand(2, 2, 4, 8, seed=105)),
    attrs={"q_num_heads": 2, "kv_num_heads": 2, "is_causal": 1}, n_outputs=3,
    symbolic={"Q": ["N", 3, 16], "K": ["N", 3, 16], "V": ["N", 3, 16], "past_key": ["N", 2, 4, 8],
              "past_value": ["N", 2, 4, 8]})

# -- LinearAttention (opset 27): the recurrence over update rules, GQA, decay per head or per key dim -----------
def lin(id_, B=2, T=5, Hq=4, Hkv=2, dk=4, dv=3, rule="gated_delta", decay_dim=None, beta_dim=None, past=False,
        dtype=np.float32, n_outputs=2, scale=None, rtol=1e-4, atol=1e-5):
    ins = {"query": rand(B, T, Hq * dk, seed=180).astype(dtype), "key": rand(B, T, Hkv * dk, seed=181).astype(dtype),
           "value": rand(B, T, Hkv * dv, seed=182).astype(dtype),
           "past_state": rand(B, Hkv, dk, dv, seed=183).astype(dtype) if past else None}
    if rule in ("gated", "gated_delta"):
        ins["decay"] = rand(B, T, decay_dim or Hkv, low=-1, high=0, seed=184).astype(dtype)
    else:
        ins["decay"] = None
    if rule in ("delta", "gated_delta"):
        ins["beta"] = rand(B, T, beta_dim or Hkv, low=0, high=1, seed=185).astype(dtype)
    while list(ins.values())[-1] is None:
        ins.pop(list(ins)[-1])
    attrs = {"q_num_heads": Hq, "kv_num_heads": Hkv, "update_rule": rule}
    if scale is not None:
        attrs["scale"] = scale
    case(f"LinearAttention-{id_}", "LinearAttention", ins, attrs, n_outputs=n_outputs, opset=27, rtol=rtol,
         atol=atol)


for rule in ("linear", "gated", "delta", "gated_delta"):
    lin(rule, rule=rule)
    lin(f"{rule}-past", rule=rule, past=True, Hq=2, Hkv=2)
lin("decay-per-dim", decay_dim=2 * 4)
lin("beta-scalar", beta_dim=1, Hkv=1, Hq=3)
lin("beta-scalar-heads", beta_dim=1)
lin("scale-one-output", scale=0.5, n_outputs=1)
lin("f16", dtype=np.float16, past=True, rtol=3e-3, atol=3e-3)

# -- RMSNormalization --------------------------------------------------------------------------------------------
for xs, axis in [((2, 3, 4), -1), ((2, 3, 4), 1), ((4, 5), 0), ((2, 3, 2, 5), 2), ((2, 3, 2, 5), -3)]:
    a = axis + len(xs) if axis < 0 else axis
    case(f"RMSNormalization-{xs}-{axis}", "RMSNormalization",
         {"x": rand(*xs, low=-2, high=3, seed=110), "s": rand(*xs[a:], seed=111)}, {"axis": axis, "epsilon": 1e-3})
case("RMSNormalization-bcast-scale", "RMSNormalization", {"x": rand(2, 3, 4, seed=112), "s": rand(1, 4, seed=113)},
     {"axis": 1})
case("RMSNormalization-scalar-scale", "RMSNormalization", {"x": rand(2, 3, 4, seed=114), "s": rand(1, seed=115)})
case("RMSNormalization-init", "RMSNormalization", {"x": rand(3, 8, seed=116), "s": rand(8, seed=117)},
     init=("s",))
case("RMSNormalization-f64", "RMSNormalization",
     {"x": rand(3, 6, dtype=np.float64, seed=118), "s": rand(6, dtype=np.float64, seed=119)}, rtol=1e-10, atol=1e-12)
case("RMSNormalization-f16", "RMSNormalization",  # the reference computes every step in float16
     {"x": rand(3, 8, seed=122).astype(np.float16), "s": rand(8, seed=123).astype(np.float16)},
     rtol=3e-3, atol=3e-3)
case("RMSNormalization-symbolic", "RMSNormalization", {"x": rand(5, 3, 4, seed=120), "s": rand(4, seed=121)},
     symbolic={"x": ["N", 3, 4]})


# -- RotaryEmbedding ----------------------------------------------------------------------------------------------
def rope(id_, x, half, attrs=None, pos=True, max_pos=12, symbolic=None):
    b, s = x.shape[0], (x.shape[2] if x.ndim == 4 else x.shape[1])
    if pos:
        ins = {"x": x, "cos": rand(max_pos, half, seed=130), "sin": rand(max_pos, half, seed=131),
               "pos": np.random.default_rng(132).integers(0, max_pos, size=(b, s)).astype(np.int64)}
    else:
        ins = {"x": x, "cos": rand(b, s, half, seed=133), "sin": rand(b, s, half, seed=134)}
    case(f"RotaryEmbedding-{id_}", "RotaryEmbedding", ins, attrs, symbolic=symbolic)


for inter in (0, 1):
    for pos in (True, False):
        tag = f"i{inter}-{'pos' if pos else 'nopos'}"
        rope(f"4d-{tag}", rand(2, 3, 4, 8, seed=135), 4, {"interleaved": inter}, pos)
        rope(f"4d-rdim-{tag}", rand(2, 3, 4, 8, seed=136), 2, {"interleaved": inter, "rotary_embedding_dim": 4}, pos)
        rope(f"3d-{tag}", rand(2, 4, 24, seed=137), 3, {"interleaved": inter, "num_heads": 4}, pos)
        rope(f"3d-rdim-{tag}", rand(2, 4, 24, seed=138), 2,
             {"interleaved": inter, "num_heads": 4, "rotary_embedding_dim": 4}, pos)
for dt, tol in ((np.float16, 2e-3), (ml_dtypes.bfloat16, 1e-2)):
    x16 = rand(2, 3, 4, 8, seed=140).astype(dt)
    ins = {"x": x16, "cos": rand(2, 4, 4, seed=141).astype(dt), "sin": rand(2, 4, 4, seed=142).astype(dt)}
    case(f"RotaryEmbedding-{np.dtype(dt).name}", "RotaryEmbedding", ins, {"interleaved": 1}, rtol=tol, atol=tol)
rope("4d-symbolic", rand(3, 2, 5, 8, seed=139), 4, {}, True, symbolic={"x": ["N", 2, 5, 8], "pos": ["N", 5]})


@pytest.fixture(scope="module")
def sessions(request):
    return selected_sessions(request, CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_transformer_op(c, sessions):
    run_case(c, sessions)


# -- errors: clear messages naming the node -------------------------------------------------------------------
def _load_error(model):
    from pysofie import InferenceSession
    with pytest.raises((ShapeInferenceError, UnsupportedOperatorError)) as e:
        InferenceSession(model)
    return str(e.value)


def test_attention_3d_needs_num_heads():
    m = node_model("Attention", {"Q": rand(1, 2, 8), "K": rand(1, 2, 8), "V": rand(1, 2, 8)}, opset=23)
    assert "q_num_heads" in _load_error(m)


def test_attention_heads_not_multiple():
    m = node_model("Attention", {"Q": rand(1, 3, 2, 4), "K": rand(1, 2, 2, 4), "V": rand(1, 2, 2, 4)}, opset=23)
    msg = _load_error(m)
    assert "Attention" in msg and "multiple" in msg


def test_attention_mask_does_not_broadcast():
    m = node_model("Attention", {"Q": rand(1, 2, 3, 4), "K": rand(1, 2, 5, 4), "V": rand(1, 2, 5, 4),
                                 "attn_mask": rand(4, 5)}, opset=23)
    assert "attn_mask" in _load_error(m)


def test_rotary_position_out_of_range():
    ins = {"x": rand(1, 1, 2, 4), "cos": rand(3, 2), "sin": rand(3, 2), "pos": np.array([[0, 7]], np.int64)}
    from pysofie import InferenceSession
    sess = InferenceSession(node_model("RotaryEmbedding", ins, opset=23))
    with pytest.raises(Exception, match="position id out of range"):
        sess.run(None, ins)
