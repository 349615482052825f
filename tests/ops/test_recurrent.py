"""RNN, GRU and LSTM against onnxruntime, over directions, layouts, optional inputs and outputs, sequence_lens,
activations, clip, linear_before_reset, peepholes and input_forget.

onnxruntime is the oracle: onnx's reference evaluator ignores sequence_lens and most activations. onnxruntime
rejects layout=1, so a layout-1 case is compared with onnxruntime running the same layer with layout 0 on
transposed inputs (outputs transposed back). All cases of this module compile into one shared library.
Tolerance: the project's default rtol 1e-4 / atol 1e-5 unless a case says otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import onnx
import pytest
from onnx import helper

import pysofie
from pysofie.errors import PysofieError
from tests.util import Case, compile_cases, feeds_of, ort, rand, reference, run_case

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
INPUT_NAMES = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
OUTPUT_NAMES = ["Y", "Y_h", "Y_c"]


def rec_model(op: str, inputs: dict, attrs: dict, outputs: tuple, *, opset: int = 21, weights_init=True,
              symbolic_batch: bool | str = False, symbolic_seq: bool | str = False) -> onnx.ModelProto:
    """One recurrent node. inputs: spec name -> array or None (absent, '' in the node); outputs: which of
    Y, Y_h, Y_c the node names (the others are ''). symbolic_batch / symbolic_seq: make that axis of the
    graph inputs a dim_param (named by the string if one is given)."""
    layout = attrs.get("layout", 0)
    names = INPUT_NAMES[:8 if op == "LSTM" else 6]
    node_ins = [n if inputs.get(n) is not None else "" for n in names]
    while node_ins and node_ins[-1] == "":
        node_ins.pop()
    nout = 3 if op == "LSTM" else 2
    node_outs = [n if n in outputs else "" for n in OUTPUT_NAMES[:nout]]
    while node_outs and node_outs[-1] == "":
        node_outs.pop()
    # weights_init: True (W, R, B, P are initializers), False (all are graph inputs) or the names to make initializers
    init_names = weights_init if isinstance(weights_init, tuple) else ("W", "R", "B", "P") if weights_init else ()
    graph_ins, inits = [], []
    for n in names:
        a = inputs.get(n)
        if a is None:
            continue
        if n in init_names:
            inits.append(onnx.numpy_helper.from_array(a, n))
            continue
        shape: list = list(a.shape)
        if symbolic_batch and n in ("X", "initial_h", "initial_c", "sequence_lens"):
            axis = 0 if n == "sequence_lens" or layout == 1 else 1
            shape[axis] = symbolic_batch if isinstance(symbolic_batch, str) else "batch"
        if symbolic_seq and n == "X":
            shape[layout] = symbolic_seq if isinstance(symbolic_seq, str) else "seq"
        graph_ins.append(helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), shape))
    dt = helper.np_dtype_to_tensor_dtype(inputs["X"].dtype)
    graph_outs = [helper.make_tensor_value_info(n, dt, None) for n in node_outs if n]
    node = helper.make_node(op, node_ins, node_outs, **attrs)
    g = helper.make_graph([node], f"{op.lower()}_test", graph_ins, graph_outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10 if opset >= 21 else 8
    return m


@dataclasses.dataclass
class RecCase(Case):
    # what onnxruntime runs in place of the model where it cannot: the same layer with layout 0 and an explicit
    # hidden_size (onnxruntime rejects layout=1 and requires hidden_size); `transposed`: the model has layout 1
    twin: Optional[onnx.ModelProto] = None
    transposed: bool = False

    def expected(self):
        if self.oracle == "reference":
            return reference(self.model, self.feeds())
        if self.twin is None:
            return ort(self.model, self.feeds())
        if not self.transposed:
            return ort(self.twin, self.feeds())
        feeds = {}
        for k, v in self.feeds().items():
            feeds[k] = np.ascontiguousarray(v.swapaxes(0, 1)) if k in ("X", "initial_h", "initial_c") else v
        outs = ort(self.twin, feeds)
        names = [o.name for o in self.twin.graph.output]
        return [o.transpose(2, 0, 1, 3) if n == "Y" else o.swapaxes(0, 1) for n, o in zip(names, outs)]


CASES: list[RecCase] = []
_seed = [0]


def _r(*shape, dtype=np.float32, scale=1.0):
    _seed[0] += 1
    return rand(*shape, dtype=dtype, low=-scale, high=scale, seed=_seed[0])


def case(id_, op, *, S=5, B=3, I=4, H=6, direction="forward", layout=0, bias=True, lens=None, h0=False,
         c0=False, peep=False, attrs=None, outputs=None, opset=21, dtype=np.float32, weights_init=True,
         symbolic_batch=False, symbolic_seq=False, rtol=1e-4, atol=1e-5, oracle="ort"):
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    state = (D, B, H) if layout == 0 else (B, D, H)
    ins = {
        "X": _r(*((S, B, I) if layout == 0 else (B, S, I)), dtype=dtype),
        "W": _r(D, G * H, I, dtype=dtype, scale=0.6),
        "R": _r(D, G * H, H, dtype=dtype, scale=0.6),
        "B": _r(D, 2 * G * H, dtype=dtype, scale=0.5) if bias else None,
        "sequence_lens": np.array(lens, np.int32) if lens is not None else None,
        "initial_h": _r(*state, dtype=dtype) if h0 else None,
    }
    if op == "LSTM":
        ins["initial_c"] = _r(*state, dtype=dtype) if c0 else None
        ins["P"] = _r(D, 3 * H, dtype=dtype, scale=0.5) if peep else None
    a = {"hidden_size": H}  # attrs may drop it with {"hidden_size": None}
    if direction != "forward":
        a["direction"] = direction
    if layout:
        a["layout"] = layout
    a.update(attrs or {})
    a = {k: v for k, v in a.items() if v is not None}
    outputs = tuple(outputs or OUTPUT_NAMES[:3 if op == "LSTM" else 2])
    model = rec_model(op, ins, a, outputs, opset=opset, weights_init=weights_init, symbolic_batch=symbolic_batch,
                      symbolic_seq=symbolic_seq)
    twin = None
    if a.get("layout") or "hidden_size" not in a:
        t_ins = dict(ins)
        for k in ("X", "initial_h", "initial_c"):
            if layout == 1 and t_ins.get(k) is not None:
                t_ins[k] = np.ascontiguousarray(t_ins[k].swapaxes(0, 1))
        twin = rec_model(op, t_ins, dict(a, layout=0, hidden_size=H), outputs, opset=opset, weights_init=weights_init)
    CASES.append(RecCase(id_, model, ins, rtol=rtol, atol=atol, oracle=oracle, twin=twin, transposed=layout == 1))


DIRECTIONS = ["forward", "reverse", "bidirectional"]
LENS = [5, 2, 0, 4]  # a batch of 4 with varying lengths, one empty and one full sequence

for op in ["RNN", "GRU", "LSTM"]:
    extra = {"c0": True} if op == "LSTM" else {}
    for d in DIRECTIONS:
        case(f"{op}-{d}", op, direction=d)
        case(f"{op}-{d}-lens-h0", op, direction=d, B=4, lens=LENS, h0=True, **extra)
        case(f"{op}-{d}-layout1", op, direction=d, layout=1, h0=True, **extra)
        case(f"{op}-{d}-layout1-lens", op, direction=d, layout=1, B=4, lens=LENS, h0=True, **extra)
    case(f"{op}-nobias", op, bias=False)
    case(f"{op}-bidir-nobias-h0", op, direction="bidirectional", bias=False, h0=True, **extra)
    case(f"{op}-clip", op, direction="bidirectional", attrs={"clip": 0.7}, lens=[5, 3, 1], h0=True, **extra)
    case(f"{op}-only-Yh", op, outputs=("Y_h",), direction="reverse", lens=[1, 5, 3])
    case(f"{op}-only-Y", op, outputs=("Y",), direction="bidirectional")
    case(f"{op}-batch1-long", op, S=20, B=1, I=10, H=8)
    case(f"{op}-opset7", op, opset=7, direction="bidirectional", h0=True, **extra)
    case(f"{op}-opset14-layout1", op, opset=14, layout=1, B=2, lens=[3, 5], h0=True, **extra)
    case(f"{op}-weights-as-inputs", op, weights_init=False, direction="bidirectional", h0=True, **extra)
    case(f"{op}-symbolic-batch", op, symbolic_batch=True, direction="bidirectional", B=4, lens=LENS, h0=True,
         **extra)
    case(f"{op}-symbolic-batch-layout1", op, symbolic_batch=True, layout=1, B=3, h0=True, **extra)
    case(f"{op}-constant-lens-h0", op, weights_init=("W", "R", "B", "P", "sequence_lens", "initial_h"),
         direction="bidirectional", B=4, lens=LENS, h0=True)
    case(f"{op}-hidden1", op, H=1, I=1, direction="bidirectional")
    case(f"{op}-symbolic-seq-batch", op, symbolic_batch=True, symbolic_seq=True, direction="bidirectional", B=4,
         lens=LENS, h0=True, **extra)
    # batches above 4 run the per-step products through the BLAS (smaller ones through loops)
    case(f"{op}-batch6-blas", op, B=6, direction="bidirectional", lens=[5, 1, 0, 3, 5, 2], h0=True, **extra)
    case(f"{op}-batch6-blas-layout1", op, B=6, layout=1, h0=True, **extra)
    # a symbolic batch above 4: the small input projection's BLAS branch, chosen at run time
    case(f"{op}-symbolic-batch6-blas", op, symbolic_batch=True, B=6, direction="bidirectional",
         lens=[5, 1, 0, 3, 5, 2], h0=True, **extra)
    # size parameters named like the generated code's loop variables, or like the spec's input names
    case(f"{op}-symbolic-named-b-s", op, symbolic_batch="b", symbolic_seq="s", direction="bidirectional", B=4,
         lens=LENS, h0=True, **extra)
    case(f"{op}-symbolic-named-B-X", op, symbolic_batch="B", symbolic_seq="X", h0=True, **extra)
    case(f"{op}-opset22-no-hidden_size", op, opset=22, attrs={"hidden_size": None}, direction="reverse")

# activation functions with explicit alpha / beta (onnxruntime's defaults for Affine, ScaledTanh and
# ThresholdedRelu differ from the ONNX operators' defaults that pysofie uses)
ACTS = [("Relu", [], []), ("Tanh", [], []), ("Sigmoid", [], []), ("Affine", [0.7], [0.1]),
        ("LeakyRelu", [0.2], []), ("ThresholdedRelu", [0.1], []), ("ScaledTanh", [1.3], [0.6]),
        ("HardSigmoid", [0.3], [0.4]), ("Elu", [0.9], []), ("Softsign", [], []), ("Softplus", [], [])]
for name, al, be in ACTS:
    attrs = {"activations": [name]}
    if al:
        attrs["activation_alpha"] = al
    if be:
        attrs["activation_beta"] = be
    case(f"RNN-act-{name}", "RNN", attrs=attrs, h0=True)
case("RNN-act-bidir-mixed", "RNN", direction="bidirectional",
     attrs={"activations": ["LeakyRelu", "HardSigmoid"], "activation_alpha": [0.3, 0.25], "activation_beta": [0.45]})
case("RNN-act-defaults", "RNN", attrs={"activations": ["LeakyRelu"]})
# names are case-insensitive (onnxruntime's GRU and LSTM agree; its RNN does not)
case("GRU-act-lowercase", "GRU", attrs={"activations": ["sigmoid", "relu"]})
# GRU / LSTM: onnxruntime's fused gate kernels exist for Sigmoid, Tanh and Relu in the gate positions;
# other functions are compared where onnxruntime implements them
case("GRU-act-relu", "GRU", attrs={"activations": ["Sigmoid", "Relu"]}, h0=True)
case("GRU-act-tanh-sigmoid", "GRU", attrs={"activations": ["Tanh", "Sigmoid"]}, h0=True)
case("GRU-act-hardsigmoid", "GRU", direction="reverse",  # as in the CMS DeepJet GRUs
     attrs={"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.2], "activation_beta": [0.5]})
# hidden 13: the 8-lane tanh state update (AVX2 builds) and its scalar tail; tanh8 is within ~2e-7 of tanhf
case("GRU-act-hardsigmoid-h13", "GRU", direction="reverse", S=7, B=2, I=5, H=13, h0=True,
     attrs={"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.2], "activation_beta": [0.5]})
case("GRU-act-bidir", "GRU", direction="bidirectional",
     attrs={"activations": ["Sigmoid", "Tanh", "HardSigmoid", "Relu"], "activation_alpha": [0.3],
            "activation_beta": [0.4]})
case("LSTM-act-relu", "LSTM", attrs={"activations": ["Sigmoid", "Relu", "Tanh"]}, h0=True, c0=True)
case("LSTM-act-bidir", "LSTM", direction="bidirectional",
     attrs={"activations": ["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Relu"]})
case("LSTM-act-hardsigmoid", "LSTM",
     attrs={"activations": ["HardSigmoid", "Tanh", "Softsign"], "activation_alpha": [0.25], "activation_beta": [0.45]})

# GRU linear_before_reset, over directions and with the optional inputs
for lbr in (0, 1):
    for d in DIRECTIONS:
        case(f"GRU-lbr{lbr}-{d}", "GRU", direction=d, attrs={"linear_before_reset": lbr}, h0=True)
        case(f"GRU-lbr{lbr}-{d}-lens", "GRU", direction=d, attrs={"linear_before_reset": lbr}, B=4, lens=LENS)
    case(f"GRU-lbr{lbr}-nobias", "GRU", attrs={"linear_before_reset": lbr}, bias=False, h0=True)
    case(f"GRU-lbr{lbr}-batch7-blas", "GRU", B=7, direction="bidirectional", attrs={"linear_before_reset": lbr},
         h0=True)
    case(f"GRU-lbr{lbr}-clip-layout1", "GRU", layout=1, attrs={"linear_before_reset": lbr, "clip": 0.5})

# LSTM peepholes and input_forget
for d in DIRECTIONS:
    case(f"LSTM-peep-{d}", "LSTM", direction=d, peep=True, h0=True, c0=True)
    case(f"LSTM-peep-{d}-lens", "LSTM", direction=d, peep=True, B=4, lens=LENS, c0=True)
    case(f"LSTM-input_forget-{d}", "LSTM", direction=d, attrs={"input_forget": 1}, h0=True)
case("LSTM-peep-input_forget-clip", "LSTM", peep=True, attrs={"input_forget": 1, "clip": 0.6}, c0=True)
case("LSTM-peep-layout1", "LSTM", layout=1, peep=True, direction="bidirectional", h0=True, c0=True)
case("LSTM-only-Yc", "LSTM", outputs=("Y_c",), direction="bidirectional", peep=True)
case("LSTM-Y-Yc", "LSTM", outputs=("Y", "Y_c"), lens=[4, 5, 2], c0=True)

# double precision: onnxruntime has no double kernels for these, so the double cases (default activations, no
# sequence_lens: what onnx's reference evaluator covers) are checked against that evaluator
for lbr in (0, 1):
    case(f"GRU-double-lbr{lbr}", "GRU", dtype=np.float64, direction="bidirectional", h0=True,
         attrs={"linear_before_reset": lbr}, rtol=1e-10, atol=1e-12, oracle="reference")
case("LSTM-double", "LSTM", dtype=np.float64, direction="bidirectional", peep=True, h0=True, c0=True,
     rtol=1e-10, atol=1e-12, oracle="reference")
case("RNN-double", "RNN", dtype=np.float64, direction="reverse", h0=True, rtol=1e-10, atol=1e-12,
     oracle="reference")

BY_ID = {c.id: c for c in CASES}


@pytest.fixture(scope="module")
def sessions():
    return compile_cases(CASES)


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op(c, sessions):
    run_case(c, sessions)


def test_variable_batch_size(sessions):
    """A symbolic batch: the same compiled session runs batches of other sizes."""
    c = BY_ID["GRU-symbolic-batch"]
    sess = sessions[c.id]
    for B, lens in ((1, [3]), (6, [5, 0, 1, 2, 5, 4])):
        ins = dict(c.inputs, X=_r(5, B, 4), initial_h=_r(2, B, 6), sequence_lens=np.array(lens, np.int32))
        feeds = feeds_of(c.model, ins)
        got = sess.run(None, feeds)
        exp = ort(c.model, feeds)
        for g, e in zip(got, exp):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_variable_sequence_length(sessions):
    """A symbolic sequence length: sequences of other lengths run through the same compiled session."""
    c = BY_ID["LSTM-symbolic-seq-batch"]
    for S, lens in ((1, [1, 0, 1]), (9, [9, 4, 1])):
        ins = dict(c.inputs, X=_r(S, 3, 4), initial_h=_r(2, 3, 6), initial_c=_r(2, 3, 6),
                   sequence_lens=np.array(lens, np.int32))
        feeds = feeds_of(c.model, ins)
        got = sessions[c.id].run(None, feeds)
        exp = ort(c.model, feeds)
        for g, e in zip(got, exp):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad", [[6, 1, 1, 1], [2, -1, 3, 3]])
def test_sequence_lens_out_of_range(sessions, bad):
    c = BY_ID["LSTM-forward-lens-h0"]
    feeds = feeds_of(c.model, dict(c.inputs, sequence_lens=np.array(bad, np.int32)))
    with pytest.raises(PysofieError, match=r"sequence_lens\[\d\] = -?\d+ is outside \[0, 5\]"):
        sessions[c.id].run(None, feeds)


def _problems(op, attrs, **kw):
    ins = {"X": _r(5, 3, 4), "W": _r(1, GATES[op] * 6, 4), "R": _r(1, GATES[op] * 6, 6)}
    ins.update(kw)
    return pysofie.check(rec_model(op, ins, dict({"hidden_size": 6}, **attrs), ("Y",)))


def test_unsupported_attributes_are_reported():
    p = _problems("GRU", {"activations": ["Sigmoid", "Gelu"]})
    assert len(p) == 1 and "activation 'Gelu'" in p[0] and "GRU" in p[0]
    p = _problems("LSTM", {"activations": ["Sigmoid", "Tanh"]})
    assert len(p) == 1 and "2 activations given" in p[0]
    p = _problems("RNN", {"direction": "sideways"})
    assert len(p) == 1 and "direction='sideways'" in p[0]
    ins = {"X": _r(5, 3, 4), "W": _r(1, 6, 4), "R": _r(1, 6, 6)}
    p = pysofie.check(rec_model("RNN", ins, {"layout": 1}, ("Y",), opset=13))
    assert len(p) == 1 and "layout attribute exists from opset 14" in p[0]
    p = _problems("LSTM", {"clip": -1.0})
    assert len(p) == 1 and "clip=-1.0 must be positive" in p[0]


def test_bad_shapes_are_reported():
    with pytest.raises(PysofieError, match=r"hidden_size=7"):
        pysofie.check(rec_model("RNN", {"X": _r(5, 3, 4), "W": _r(1, 6, 4), "R": _r(1, 6, 6)},
                                {"hidden_size": 7}, ("Y",)))
    with pytest.raises(PysofieError, match=r"input B \('B'\) has shape \[1, 12\], expected \[1, 36\]"):
        pysofie.check(rec_model("GRU", {"X": _r(5, 3, 4), "W": _r(1, 18, 4), "R": _r(1, 18, 6), "B": _r(1, 12)},
                                {}, ("Y",)))
