"""Symbolic sizes (issue 9): shape arithmetic folds into expressions over the size parameters (ir/shapes.py),
and operators take symbolic extents on any axis. Each compiled case is one library serving every size: it
runs at two or three different sizes and is compared with onnxruntime (rtol 1e-4, atol 1e-5; integers exact).
"""
from __future__ import annotations

import pickle

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import pysofie
from pysofie.ir.shapes import Sym, ceildiv, dim_max, dim_min, eq, floordiv, le, lt, nonneg
from tests.util import assert_close, node_model, ort

S, B = Sym.var("S"), Sym.var("B")


# -- the expressions ---------------------------------------------------------------------------------------
def test_floor_division_keeps_whole_multiples_out_and_merges_nested_divisions():
    assert floordiv(5 * S + 7, 5) == S + 1
    assert floordiv(4 * S, 2) == 2 * S
    conv = floordiv(S - 10, 5) + 1  # a kernel-10, stride-5 convolution over S samples
    twice = floordiv(conv - 3, 2) + 1  # then kernel 3, stride 2
    assert twice == floordiv(S, 10) - 1
    for n in (10, 13, 400, 1234):
        assert conv.evaluate({"S": n}) == (n - 10) // 5 + 1
        assert twice.evaluate({"S": n}) == ((n - 10) // 5 + 1 - 3) // 2 + 1
    assert ceildiv(S, 4).evaluate({"S": 9}) == 3
    assert floordiv(S, 3).symbols() == {"S"}


def test_comparisons_use_that_sizes_are_never_negative():
    assert eq(S, -1) is False and eq(S * B + 2, 1) is False
    assert eq(S, S) is True and eq(S, B) is None
    assert lt(S, S + 1) is True and le(S, 0) is None and lt(-1, floordiv(S, 5)) is True
    assert nonneg(floordiv(S, 2) * B) and not nonneg(S - 1)
    assert dim_min(S, S + 3) == S and dim_max(S, 0) == S
    m = dim_min(S, 64)
    assert m.evaluate({"S": 100}) == 64 and m.evaluate({"S": 7}) == 7 and m == dim_min(64, S)


def test_an_extent_from_shape_is_never_negative():
    """Shape(x)[1] of an axis of extent seq - 1 (BART's shifted decoder ids) is not -1 even for seq == 0."""
    from pysofie.ir.shapes import tensor_dim
    ext = tensor_dim(S - 1)
    assert eq(S - 1, -1) is None and eq(ext, -1) is False and le(0, ext) is True
    assert ext == S - 1 and hash(ext) == hash(S - 1)
    assert not nonneg(ext - 1)  # arithmetic on an extent is an ordinary expression again
    assert pickle.loads(pickle.dumps(ext)) == ext


def test_exact_division_by_a_polynomial_and_pickling():
    length = floordiv(S, 5) - 1
    assert (32 * B * length).exact_div(8 * B * length) == 4
    assert (S * S - 1).exact_div(S - 1) == S + 1
    assert (S * S + 1).exact_div(S - 1) is None
    back = pickle.loads(pickle.dumps(length * B))
    assert back == length * B and hash(back) == hash(length * B)


# -- models with the patterns real exports produce -----------------------------------------------------------
def _i64(name, vals):
    return helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)


def _model(nodes, inputs, outputs, inits, opset=17):
    g = helper.make_graph(nodes, "m", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def position_slice_model():
    """x[:, :seq] of a [1, 64] position buffer, seq from Shape(ids), added to the ids (BERT's position ids)."""
    buf = np.arange(64, dtype=np.int64).reshape(1, 64) * 3
    nodes = [helper.make_node("Shape", ["ids"], ["sh"]),
             helper.make_node("Gather", ["sh", "one"], ["seq"], axis=0),
             helper.make_node("Unsqueeze", ["seq", "zero1"], ["end"]),
             helper.make_node("Slice", ["buf", "zero1", "end", "one1"], ["pos"]),
             helper.make_node("Add", ["ids", "pos"], ["y"])]
    inits = [onnx.numpy_helper.from_array(buf, "buf"), helper.make_tensor("one", TensorProto.INT64, [], [1]),
             _i64("zero1", [0]), _i64("one1", [1])]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
                  [helper.make_tensor_value_info("y", TensorProto.INT64, None)], inits)


def expand_class_token_model():
    """cls.expand(batch, -1, -1) as the exporter writes it (Where(Equal(s, -1), ConstantOfShape, s)), then
    concatenated before the sequence (ViT's class token)."""
    cls = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 1, 8)
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "zero1"], ["b"], axis=0),
             helper.make_node("Concat", ["b", "m1", "m1"], ["s"], axis=0),
             helper.make_node("ConstantOfShape", ["three"], ["ones"],
                              value=helper.make_tensor("v", TensorProto.INT64, [1], [1])),
             helper.make_node("Equal", ["s", "m1"], ["isneg"]),
             helper.make_node("Where", ["isneg", "ones", "s"], ["target"]),
             helper.make_node("Expand", ["cls", "target"], ["clsb"]),
             helper.make_node("Concat", ["clsb", "x"], ["y"], axis=1)]
    inits = [onnx.numpy_helper.from_array(cls, "cls"), _i64("zero1", [0]), _i64("m1", [-1]), _i64("three", [3])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def arange_model():
    """arange(seq) from Shape(x)[1], cast to float and added to x; also the position as an int64 output."""
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "one"], ["seq"], axis=0),
             helper.make_node("Range", ["zero", "seq", "one"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "rf"], ["y"]),
             helper.make_node("Mul", ["r", "two"], ["r2"])]
    inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]), helper.make_tensor("one", TensorProto.INT64, [], [1]),
             helper.make_tensor("two", TensorProto.INT64, [], [2])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                   helper.make_tensor_value_info("r2", TensorProto.INT64, None)], inits)


def audio_conv_model():
    """1-D convolutions over a symbolic number of samples (kernel 10 stride 5, then kernel 3 stride 2), a max
    pool with ceil_mode and an average pool with padding (Wav2Vec2's feature encoder, plus pooling)."""
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((4, 1, 10)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((6, 4, 3)).astype(np.float32) * 0.3
    b2 = rng.standard_normal(6).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[5]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2]),
             helper.make_node("MaxPool", ["c2"], ["p1"], kernel_shape=[3], strides=[2], ceil_mode=1),
             helper.make_node("AveragePool", ["p1"], ["y"], kernel_shape=[3], pads=[1, 1], count_include_pad=1)]
    inits = [onnx.numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"))]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, "samples"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)


def mask_index_model():
    """Run-time data times a size from Shape (how masks index rows: batch_index * seq): the size becomes a
    value written from the size parameters."""
    nodes = [helper.make_node("Shape", ["x"], ["sh"]),
             helper.make_node("Gather", ["sh", "one1"], ["seq"], axis=0),
             helper.make_node("Mul", ["idx", "seq"], ["rows"]),
             helper.make_node("Concat", ["sh", "seq"], ["y2"], axis=0)]
    inits = [_i64("one1", [1])]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"]),
                          helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1])],
                  [helper.make_tensor_value_info("rows", TensorProto.INT64, None),
                   helper.make_tensor_value_info("y2", TensorProto.INT64, None)], inits)


def _f32(*shape, seed=0):
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)


def _ids(b, s):
    return np.random.default_rng(b * 31 + s).integers(0, 50, (b, s)).astype(np.int64)


def _node(op, inputs, attrs, symbolic, inits=(), **kw):
    return node_model(op, inputs, attrs, symbolic=symbolic, initializers=inits, **kw)


# id: (model, {size: feeds}) where each feed function takes (batch, length)
def _cases():
    w3 = _f32(4, 3, 3, seed=1)
    wt = _f32(3, 2, 3, seed=2)
    w2d = _f32(4, 3, 3, 3, seed=3)
    ln_s, ln_b = _f32(8, seed=4), _f32(8, seed=5)
    return {
        "slice_to_sequence_length": (position_slice_model(), lambda b, s: {"ids": _ids(b, s)}),
        "expand_class_token": (expand_class_token_model(), lambda b, s: {"x": _f32(b, s, 8)}),
        "arange_sequence_length": (arange_model(), lambda b, s: {"x": _f32(b, s)}),
        "audio_convolutions_and_pools": (audio_conv_model(), lambda b, s: {"x": _f32(b, 1, 200 + 17 * s)}),
        "size_times_run_time_data": (mask_index_model(),
                                     lambda b, s: {"x": _f32(b, s), "idx": np.arange(b, dtype=np.int64)[:, None]}),
        "split_symbolic_axis": (_node("Split", {"X": _f32(4, 6)}, {"axis": 0, "num_outputs": 3},
                                      {"X": ["N", 6]}, n_outputs=3, opset=18),
                                lambda b, s: {"X": _f32(2 * s + b, 6)}),
        "split_symbolic_axis_evenly": (_node("Split", {"X": _f32(2, 4)}, {"axis": 1}, {"X": [2, "L"]},
                                             n_outputs=2, opset=13), lambda b, s: {"X": _f32(2, 2 * s)}),
        "pad_symbolic_axis": (_node("Pad", {"X": _f32(2, 5), "p": np.array([0, 2, 0, -1], np.int64)},
                                    {"mode": "reflect"}, {"X": ["N", "L"]}, ("p",)),
                              lambda b, s: {"X": _f32(b, s)}),
        **{f"resize_{mode}_{ctm}_{scale}": (
            _node("Resize", {"X": _f32(1, 2, 4, 4), "roi": np.zeros(0, np.float32),
                             "scales": np.array([1, 1, scale, 2.0], np.float32)},
                  {"mode": mode, "coordinate_transformation_mode": ctm, **extra}, {"X": ["N", 2, "H", "W"]},
                  ("roi", "scales")),
            lambda b, s: {"X": _f32(b, 2, s, s // 2 + 1)})
           for mode, ctm, scale, extra in [("nearest", "asymmetric", 2.0, {"nearest_mode": "floor"}),
                                           ("nearest", "half_pixel", 0.5, {}),
                                           ("linear", "half_pixel", 1.5, {}),
                                           ("linear", "align_corners", 2.0, {}),
                                           ("linear", "pytorch_half_pixel", 0.75, {})]},
        "conv1d_same_padding": (_node("Conv", {"X": _f32(2, 3, 10), "W": w3}, {"auto_pad": "SAME_UPPER"},
                                      {"X": ["N", 3, "L"]}, ("W",)), lambda b, s: {"X": _f32(b, 3, s)}),
        "conv2d_symbolic_height_width": (_node("Conv", {"X": _f32(2, 3, 8, 8), "W": w2d}, {"pads": [1, 0, 1, 2],
                                               "strides": [2, 1]}, {"X": ["N", 3, "H", "W"]}, ("W",)),
                                         lambda b, s: {"X": _f32(b, 3, s, s + 3)}),
        "conv_transpose1d": (_node("ConvTranspose", {"X": _f32(2, 3, 10), "W": wt}, {"strides": [2], "pads": [1, 0]},
                                   {"X": ["N", 3, "L"]}, ("W",)), lambda b, s: {"X": _f32(b, 3, s)}),
        "maxpool2d": (_node("MaxPool", {"X": _f32(2, 3, 8, 8)}, {"kernel_shape": [2, 2], "strides": [2, 2]},
                            {"X": ["N", 3, "H", "W"]}), lambda b, s: {"X": _f32(b, 3, s, s + 1)}),
        "lppool1d": (_node("LpPool", {"X": _f32(2, 3, 10)}, {"kernel_shape": [2]}, {"X": ["N", 3, "L"]}),
                     lambda b, s: {"X": _f32(b, 3, s)}),
        "layer_norm": (_node("LayerNormalization", {"X": _f32(2, 5, 8), "s": ln_s, "b": ln_b}, {"axis": -1},
                             {"X": ["N", "L", 8]}, ("s", "b")), lambda b, s: {"X": _f32(b, s, 8)}),
        "softmax_over_sequence": (_node("Softmax", {"X": _f32(2, 5)}, {"axis": -1}, {"X": ["N", "L"]}),
                                  lambda b, s: {"X": _f32(b, s)}),
        "reduce_sum_over_sequence": (_node("ReduceSum", {"X": _f32(2, 5, 3), "axes": np.array([1], np.int64)},
                                           {"keepdims": 0}, {"X": ["N", "L", 3]}, ("axes",)),
                                     lambda b, s: {"X": _f32(b, s, 3)}),
        "argmax_over_sequence": (_node("ArgMax", {"X": _f32(2, 5, 3)}, {"axis": 1}, {"X": ["N", "L", 3]}),
                                 lambda b, s: {"X": _f32(b, s, 3)}),
        "topk_over_sequence": (_node("TopK", {"X": _f32(2, 5), "k": np.array([2], np.int64)}, {"axis": 1},
                                     {"X": ["N", "L"]}, ("k",), n_outputs=2), lambda b, s: {"X": _f32(b, s)}),
        "gather_symbolic_indices": (_node("Gather", {"X": _f32(10, 3), "I": np.zeros((2, 4), np.int64)},
                                          {"axis": 0}, {"I": ["N", "L"]}, ("X",)),
                                    lambda b, s: {"I": _ids(b, s) % 10}),
        "lstm_over_sequence": (_node("LSTM", {"X": _f32(5, 2, 4), "W": _f32(1, 12, 4, seed=6),
                                              "R": _f32(1, 12, 3, seed=7)}, {"hidden_size": 3},
                                     {"X": ["L", "N", 4]}, ("W", "R"), n_outputs=3),
                               lambda b, s: {"X": _f32(s, b, 4)}),
        "attention_over_sequence": (_node("Attention", {"Q": _f32(2, 4, 5, 8), "K": _f32(2, 4, 5, 8),
                                                        "V": _f32(2, 4, 5, 8)}, None,
                                          {"Q": ["N", 4, "L", 8], "K": ["N", 4, "L", 8], "V": ["N", 4, "L", 8]},
                                          opset=23),
                                    lambda b, s: {"Q": _f32(b, 4, s, 8, seed=1), "K": _f32(b, 4, s, 8, seed=2),
                                                  "V": _f32(b, 4, s, 8, seed=3)}),
        "einsum_over_sequence": (_node("Einsum", {"A": _f32(2, 5, 3), "B": _f32(2, 5, 3)},
                                       {"equation": "nlc,nmc->nlm"}, {"A": ["N", "L", 3], "B": ["N", "L", 3]}),
                                 lambda b, s: {"A": _f32(b, s, 3, seed=1), "B": _f32(b, s, 3, seed=2)}),
    }


CASES = _cases()
SIZES = [(1, 7), (3, 12), (2, 30)]


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    return dict(zip(CASES, compile_many([m for m, _ in CASES.values()])))


@pytest.mark.parametrize("case", list(CASES))
def test_one_library_matches_onnxruntime_at_several_sizes(case, sessions):
    model, feeds_at = CASES[case]
    sess = sessions[case]
    if isinstance(sess, Exception):
        raise sess
    for b, s in SIZES:
        feeds = feeds_at(b, s)
        assert_close(sess.run(None, feeds), ort(model, feeds), what=f"{case} at batch {b}, length {s}")


def test_shapes_stay_symbolic():
    g = pysofie.load(audio_conv_model())
    (y,) = g.outputs
    assert isinstance(y.shape[2], Sym) and y.shape[2].symbols() == {"samples"}
    g = pysofie.load(arange_model())
    assert g.outputs[0].shape == g.inputs[0].shape


def test_a_violated_size_assumption_is_a_clear_error(sessions):
    """The slice end seq is assumed to lie inside the 64-long buffer; at run time a longer input is refused."""
    sess = sessions["slice_to_sequence_length"]
    with pytest.raises(pysofie.PysofieError, match="must not exceed"):
        sess.run(None, {"ids": _ids(1, 65)})
    # too few samples for the convolutions: refused (by the output shape check or the generated code's guard)
    for n in (9, 12, 25):
        with pytest.raises(pysofie.PysofieError, match="shorter than the (kernel|window)|would have shape"):
            sessions["audio_convolutions_and_pools"].run(None, {"x": _f32(1, 1, n)})
