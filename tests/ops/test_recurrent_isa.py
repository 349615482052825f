"""The float recurrent layers' vector gate arithmetic (runtime/pysofie_rnn.h: 8 AVX2 lanes and a zero-padded
tail, or the scalar std::exp / std::tanh forms) in every build this machine gives (tests/test_isa_variants.py's
variants: native, -mno-avx512f, no AVX2 / FMA), against onnxruntime, and the per-step product matvec (8 rows of
R at a time over 8-wide chunks of the hidden size, a masked last chunk, left-over rows one by one). Hidden sizes
13 (one 8-lane block and a tail of 5; an LSTM's 3 * 13 Sigmoid gates: four blocks and a tail of 7), 19, 5 and
8 (no tail), with peepholes,
clip, input_forget, sequence_lens and linear_before_reset, where the vector path splits its gate blocks
differently. Tolerance rtol 1e-4 / atol 1e-5 (the vector exp / tanh are within ~2e-7 of the library's)."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.test_isa_variants import VARIANTS, build_variants
from tests.util import assert_close, ort, rand

CASES = {}  # id -> (model, feeds)
G = {"RNN": 1, "GRU": 3, "LSTM": 4}


def add(id_, op, H, *, S=6, B=2, I=5, D=1, peep=False, lens=None, seed=0, **attrs):
    ins = ["x", "W", "R", "B"]
    feeds = {"x": rand(S, B, I, seed=seed)}
    inits = {"W": rand(D, G[op] * H, I, seed=seed + 1) * 0.6, "R": rand(D, G[op] * H, H, seed=seed + 2) * 0.6,
             "B": rand(D, 2 * G[op] * H, seed=seed + 3) * 0.5}
    if lens is not None or peep:
        ins.append("lens" if lens is not None else "")
        if lens is not None:
            inits["lens"] = np.array(lens, np.int32)
    if peep:
        ins += ["", "", "P"]
        inits["P"] = rand(D, 3 * H, seed=seed + 4) * 0.5
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    direction = "bidirectional" if D == 2 else "forward"
    node = helper.make_node(op, ins, outs, hidden_size=H, direction=direction, **attrs)
    g = helper.make_graph([node], id_, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [S, B, I])],
                          [helper.make_empty_tensor_value_info(o) for o in outs],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    CASES[id_] = (onnx.shape_inference.infer_shapes(m), feeds)


add("lstm-h13-peep-bidir", "LSTM", 13, D=2, peep=True, seed=10)
add("lstm-h8-clip-lens", "LSTM", 8, B=3, lens=[6, 2, 0], clip=0.8, seed=20)
add("lstm-h13-input_forget-peep-clip", "LSTM", 13, peep=True, input_forget=1, clip=0.7, seed=30)
add("lstm-h5-acts", "LSTM", 5, activations=["Sigmoid", "Tanh", "Relu"], seed=40)
add("gru-h13-lbr1-bidir", "GRU", 13, D=2, linear_before_reset=1, seed=50)
add("gru-h8-lbr0-clip", "GRU", 8, clip=0.6, seed=60)
add("gru-h19-lbr0-bidir-hardsigmoid", "GRU", 19, D=2, activations=["HardSigmoid", "Tanh"] * 2,
    activation_alpha=[0.2, 0.2], activation_beta=[0.5, 0.5], seed=90)
add("rnn-h13-bidir", "RNN", 13, D=2, seed=70)
add("rnn-h8-sigmoid-lens", "RNN", 8, B=3, lens=[6, 3, 1], activations=["Sigmoid"], seed=80)


@pytest.fixture(scope="module")
def builds():
    out = build_variants({i: c[0] for i, c in CASES.items()}, "rnn_isa")
    for isa, gms, _ in out.values():
        assert all("pysofie_rnn::" in gm.header for gm in gms.values())
    return {name: (isa, sessions) for name, (isa, _, sessions) in out.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("id_", list(CASES))
def test_recurrent_variant_matches_onnxruntime(builds, variant, id_):
    if variant not in builds:
        pytest.skip(f"{variant}: this CPU / build gives no distinct {variant} code")
    isa, sessions = builds[variant]
    model, feeds = CASES[id_]
    sess = sessions[id_]
    if isinstance(sess, Exception):
        raise sess
    assert_close(sess.run(None, feeds), ort(model, feeds), 1e-4, 1e-5, what=f"{id_} ({variant}: {isa}) vs onnxruntime")
