"""Cast / CastLike between every element type pysofie knows, the low-precision ones included (float16, bfloat16,
float8 e4m3fn/e4m3fnuz/e5m2/e5m2fnuz/e8m0, float4e2m1, int4/uint4, int2/uint2), against onnx's reference
evaluator; weights of those types in every weight format; float16/bfloat16 through other operators (computed in
float by passes/lowp.py).

One model per source type casts it to every other type (one Cast node per target), so the whole module compiles
in one batch. Values include rounding ties, subnormals, overflow, NaN and Inf. Results of low-precision types are
compared bit for bit (NaN only as NaN: its sign and payload are not specified); float and double exactly too
(every value of a low-precision type is a float)."""
import warnings

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import pysofie
from pysofie.api import generate_code
from pysofie.backends.cpp.weights import read_weights
from pysofie.ir import DType
from tests.util import reference

STD = [DType.FLOAT, DType.DOUBLE, DType.INT64, DType.INT32, DType.INT16, DType.INT8, DType.UINT64, DType.UINT32,
       DType.UINT16, DType.UINT8, DType.BOOL]
LOWP = [d for d in DType if d.is_lowp]
ALL = STD + LOWP
LOWP_FLOAT = [DType.FLOAT16, DType.BFLOAT16, DType.FLOAT8E4M3FN, DType.FLOAT8E4M3FNUZ, DType.FLOAT8E5M2,
              DType.FLOAT8E5M2FNUZ, DType.FLOAT4E2M1]
FLOAT8 = [DType.FLOAT8E4M3FN, DType.FLOAT8E4M3FNUZ, DType.FLOAT8E5M2, DType.FLOAT8E5M2FNUZ]
SMALL_INTS = [DType.INT4, DType.UINT4, DType.INT2, DType.UINT2]
FLOATISH = [DType.FLOAT, DType.DOUBLE, DType.FLOAT8E8M0] + LOWP_FLOAT

# float values: ties at several mantissa widths, subnormals of each format, the largest finite values and just
# beyond, Inf and NaN
EDGE = np.array([
    0.0, -0.0, 1.0, -1.0, 0.5, 0.1, -1 / 3, 2.5, 3.5, -5.5, 1.0625, 1.1875, 1.00390625, 1.01171875, 1.0009765625,
    1.0029296875, 6.0, 7.0, -8.0, 9.0, 15.0, 100.0, 240.0, 248.0, 256.0, 448.0, 464.0, 480.0, 1000.0, 57344.0,
    61440.0, 65504.0, 65519.0, 65520.0, 1e5, -1e5, 1e6, 3.0e38, -3.0e38, 1e-3, 2.0 ** -7, 2.0 ** -9, 2.0 ** -10,
    3 * 2.0 ** -11, 2.0 ** -17, 2.0 ** -18, 2.0 ** -24, 3 * 2.0 ** -26, 2.0 ** -25, 2.0 ** -126, 2.0 ** -133,
    1e-7, -1e-7, 1e-40, np.inf, -np.inf, np.nan, -np.nan, 0.25, 0.75, -0.25, 1.25, 1.75, 2.25, 3.0, 4.0, 5.0,
], dtype=np.float32)
# values every numeric type converts to any integer type without undefined behaviour (C++: in range, finite)
SAFE_SIGNED = np.array([0, 1, -1, 2.5, -2.5, 3.75, -3.75, 7, -8, 12, -0.0, 100, -100, 127, -128], np.float32)
SAFE_UNSIGNED = np.abs(SAFE_SIGNED)


def values_of(dt: DType) -> np.ndarray:
    """Test values held by type dt (conversion done by numpy / ml_dtypes, the reference's own rules)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if dt in (DType.FLOAT, DType.DOUBLE):
            return EDGE.astype(dt.np)
        if dt in FLOAT8:
            return numpy_helper.saturate_cast(EDGE, dt.np)
        if dt is DType.FLOAT8E8M0:
            return numpy_helper.to_float8e8m0(EDGE)
        if dt in LOWP_FLOAT:
            return EDGE.astype(dt.np)
        if dt is DType.BOOL:
            return np.array([True, False, True, True, False, False, True])
        info = ml_dtypes.iinfo(dt.np) if dt.is_lowp else np.iinfo(dt.np)
        lo, hi = int(info.min), int(info.max)
        v = sorted({lo, hi, 0, 1, 2, 3, 5, 7, 8, 15, 16, 100, 255, 256, 300, 1000, 2049, 65504, 65519, 65520,
                    65536, 100000, -1, -2, -7, -8, -9, -100, -129, -1000, -65536})
        v = [x for x in v if lo <= x <= hi]
        return np.array(v, dtype=np.int64).astype(dt.np) if dt.is_lowp else np.array(v, dtype=dt.np)


def safe_values(src: DType, dst: DType) -> np.ndarray:
    """Inputs for a float-like source cast to an integer type: only values in the target's range once held by the
    source type are defined (out of range, ml_dtypes 0.7 gives 0 where older versions wrapped around)."""
    signed = dst in (DType.INT64, DType.INT32, DType.INT16, DType.INT8, DType.INT4, DType.INT2)
    vals = SAFE_SIGNED if signed else SAFE_UNSIGNED
    with np.errstate(all="ignore"):
        if src is DType.FLOAT8E8M0:
            held = numpy_helper.to_float8e8m0(vals)
        else:
            held = vals.astype(src.np) if src not in FLOAT8 else numpy_helper.saturate_cast(vals, src.np)
    as_float = held.astype(np.float32) if src is not DType.FLOAT8E8M0 else vals_of_e8m0(held)
    info = ml_dtypes.iinfo(dst.np) if dst.is_lowp else np.iinfo(dst.np)
    keep = (as_float >= int(info.min)) & (as_float < int(info.max) + 1)
    return held[keep]


def vals_of_e8m0(held: np.ndarray) -> np.ndarray:
    """float8e8m0 values (powers of two, stored as exponent bytes) as float32."""
    e = held.view(np.uint8).astype(np.int32)
    return np.where(e == 255, np.nan, np.ldexp(np.float32(1), e - 127)).astype(np.float32)


def needs_safe(src: DType, dst: DType) -> bool:
    return src in FLOATISH and (dst in SMALL_INTS or dst in STD and dst not in (DType.FLOAT, DType.DOUBLE, DType.BOOL))


def tinfo(name, dt, shape):
    return helper.make_tensor_value_info(name, dt.onnx, shape)


def cast_model(src: DType, saturate=None, targets=None, castlike=False, opset=21, round_mode=None):
    """x (and xs, safe values) of type src cast to every target: y_<target>."""
    targets = targets or [d for d in ALL if d is not src]
    x, xs = values_of(src), {}
    nodes, outs, inits, ins = [], [], [], [tinfo("x", src, [len(x)])]
    attrs = {} if saturate is None else {"saturate": saturate}
    if round_mode is not None:
        attrs["round_mode"] = round_mode
    feeds = {"x": x}
    for d in targets:
        inp = "x"
        if needs_safe(src, d):
            inp = f"xs_{d.name.lower()}"
            xs = safe_values(src, d)
            feeds[inp] = xs
            ins.append(tinfo(inp, src, [len(xs)]))
        out = f"y_{d.name.lower()}"
        if castlike:
            like = f"like_{d.name.lower()}"
            inits.append(numpy_helper.from_array(np.zeros(1, d.np), like))
            nodes.append(helper.make_node("CastLike", [inp, like], [out], **attrs))
        else:
            nodes.append(helper.make_node("Cast", [inp], [out], to=d.onnx, **attrs))
        outs.append(helper.make_tensor_value_info(out, d.onnx, None))
    g = helper.make_graph(nodes, f"cast_{src.name.lower()}", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m, feeds


class C:
    def __init__(self, id_, model, feeds):
        self.id, self.model, self.inputs = id_, model, feeds


CASES = []
for s in ALL:
    CASES.append(C(f"Cast-from-{s.name}", *cast_model(s)))
for s in [DType.FLOAT, DType.DOUBLE, DType.FLOAT16, DType.BFLOAT16, DType.INT32]:
    CASES.append(C(f"Cast-nosat-from-{s.name}", *cast_model(s, saturate=0, targets=FLOAT8 + [DType.FLOAT4E2M1])))
for s in [DType.FLOAT, DType.FLOAT16, DType.BFLOAT16, DType.INT4, DType.FLOAT8E5M2]:
    tg = [d for d in LOWP + [DType.FLOAT, DType.INT64, DType.UINT8] if d is not s]
    CASES.append(C(f"CastLike-from-{s.name}", *cast_model(s, targets=tg, castlike=True)))
    CASES.append(C(f"CastLike-nosat-from-{s.name}", *cast_model(s, targets=[d for d in FLOAT8 if d is not s],
                                                                castlike=True, saturate=0)))
# float8e8m0 (opset 24+): every rounding mode, with and without saturation
for s in [DType.FLOAT, DType.DOUBLE, DType.FLOAT16, DType.BFLOAT16]:
    for mode in ("up", "down", "nearest"):
        for sat in (1, 0):
            CASES.append(C(f"Cast-e8m0-{mode}-sat{sat}-from-{s.name}",
                           *cast_model(s, saturate=sat, round_mode=mode, targets=[DType.FLOAT8E8M0], opset=25)))
# (CastLike's round_mode: onnx's reference evaluator does not implement it, so it goes untested here)
# opset 13 (before `saturate` existed): casts to float8 are rejected by onnx, so only float16/bfloat16 here
CASES.append(C("Cast-opset13-from-FLOAT", *cast_model(DType.FLOAT, targets=[DType.FLOAT16, DType.BFLOAT16],
                                                       opset=13)))


@pytest.fixture(scope="module")
def sessions():
    from pysofie.build.batch import compile_many
    return dict(zip([c.id for c in CASES], compile_many([c.model for c in CASES])))


def assert_same(got: np.ndarray, exp: np.ndarray, what: str):
    assert got.dtype == exp.dtype, f"{what}: dtype {got.dtype} != {exp.dtype}"
    assert got.shape == exp.shape, f"{what}: shape {got.shape} != {exp.shape}"
    dt = DType.from_numpy(exp.dtype)
    if dt.is_lowp:
        g, e = got.view(dt.storage_np), exp.view(dt.storage_np)
        mask = (1 << dt.bits) - 1
        g, e = g & mask, e & mask
        if dt in LOWP_FLOAT:  # NaN: any NaN pattern
            both_nan = np.isnan(got.astype(np.float32)) & np.isnan(exp.astype(np.float32))
            g, e = np.where(both_nan, 0, g), np.where(both_nan, 0, e)
        bad = np.nonzero(g != e)[0]
        assert bad.size == 0, (f"{what}: {bad.size} mismatches, e.g. at {bad[:5]}: got {got[bad[:5]]} "
                               f"(bits {g[bad[:5]]}), expected {exp[bad[:5]]} (bits {e[bad[:5]]})")
    elif exp.dtype.kind == "f":
        np.testing.assert_array_equal(got, exp, err_msg=what)  # NaN == NaN here
        assert np.array_equal(np.signbit(got), np.signbit(exp)) or np.isnan(exp).any(), f"{what}: sign of zero"
    else:
        np.testing.assert_array_equal(got, exp, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cast(case, sessions):
    sess = sessions[case.id]
    if isinstance(sess, Exception):
        raise sess
    feeds = case.inputs
    if DType.from_numpy(feeds["x"].dtype) in SMALL_INTS:
        # ml_dtypes cannot cast int4 to uint4 (and the like): the reference casts the same values held in int64
        # (Cast from an integer depends only on its value)
        feeds = {k: v.astype(np.int64) for k, v in feeds.items()}
    if DType.from_numpy(feeds["x"].dtype) is DType.FLOAT8E8M0:
        # likewise for float8e8m0, whose every value is a float: the same values held in float32
        feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        exp = reference(case.model, feeds)
    got = sess.run(None, case.inputs)
    names = [o.name for o in case.model.graph.output]
    for n, g, e in zip(names, got, exp):
        assert_same(g, np.asarray(e), f"{case.id} -> {n}")


def test_nodearg_types(sessions):
    sess = sessions["Cast-from-FLOAT"]
    types = {o.name: o.type for o in sess.get_outputs()}
    assert types["y_float16"] == "tensor(float16)"
    assert types["y_bfloat16"] == "tensor(bfloat16)"
    assert types["y_float8e4m3fn"] == "tensor(float8e4m3fn)"
    assert types["y_int4"] == "tensor(int4)"
    assert sessions["Cast-from-FLOAT16"].get_inputs()[0].type == "tensor(float16)"


def test_other_ops_refuse_float8():
    # float8/float4/int4 are not computed on (float16 and bfloat16 are, in float: see PROMOTED below)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT8E4M3FN, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FN, [3])
    for op in ("Relu", "Add", "Neg"):
        ins = ["x", "x"] if op == "Add" else ["x"]
        m = helper.make_model(helper.make_graph([helper.make_node(op, ins, ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 21)])
        with pytest.raises(pysofie.errors.UnsupportedOperatorError, match=f"{op}.*float8e4m3fn"):
            generate_code(m)


# -- float16 / bfloat16 through other operators: computed in float (passes/lowp.py) --------------------------
def _promoted_cases():
    out = []
    for dt, tol in ((DType.FLOAT16, 2e-3), (DType.BFLOAT16, 1.6e-2)):  # about two units in the last place
        t = dt.name.lower()

        def r(*shape, low=-2.0, high=2.0, seed=0):
            rng = np.random.default_rng(seed + len(shape))
            return rng.uniform(low, high, size=shape).astype(np.float32).astype(dt.np)
        out += [
            (f"Add-{t}", "Add", {"a": r(3, 4), "b": r(4, seed=1)}, {}, tol),
            (f"Mul-{t}", "Mul", {"a": r(2, 3, 4), "b": r(3, 1, seed=2)}, {}, tol),
            (f"Relu-{t}", "Relu", {"x": r(5, 6)}, {}, tol),
            (f"Sigmoid-{t}", "Sigmoid", {"x": r(5, 6)}, {}, tol),
            (f"Sqrt-{t}", "Sqrt", {"x": r(17, low=0.0)}, {}, tol),
            (f"MatMul-{t}", "MatMul", {"a": r(3, 8), "b": r(8, 5, seed=3)}, {}, 4 * tol),  # 8-term sums
            (f"ReduceSum-{t}", "ReduceSum", {"x": r(4, 6), "axes": np.array([1], np.int64)}, {"keepdims": 0}, 4 * tol),
            (f"Less-{t}", "Less", {"a": r(4, 5), "b": r(4, 5, seed=4)}, {}, 0),
            (f"Softmax-{t}", "Softmax", {"x": r(3, 7)}, {"axis": -1}, 2 * tol),
        ]
    return out


PROMOTED = _promoted_cases()


@pytest.fixture(scope="module")
def promoted_sessions():
    from pysofie.build.batch import compile_many
    from tests.util import node_model
    models = [node_model(op, ins, attrs, initializers=("axes",) if "axes" in ins else ())
              for _, op, ins, attrs, _ in PROMOTED]
    return dict(zip([p[0] for p in PROMOTED], zip(models, compile_many(models))))


@pytest.mark.parametrize("pid", [p[0] for p in PROMOTED])
def test_promoted_ops(pid, promoted_sessions):
    _, op, ins, attrs, tol = next(p for p in PROMOTED if p[0] == pid)
    model, sess = promoted_sessions[pid]
    if isinstance(sess, Exception):
        raise sess
    feeds = {k: v for k, v in ins.items() if k != "axes"}
    exp = reference(model, feeds)[0]
    got = sess.run(None, feeds)[0]
    assert got.dtype == exp.dtype and got.shape == exp.shape
    assert sess.get_inputs()[0].type == f"tensor({pid.split('-')[1]})"
    if exp.dtype == np.bool_:
        np.testing.assert_array_equal(got, exp)
    else:  # the reference computes in float16/bfloat16 step by step, pysofie in float and rounds once
        np.testing.assert_allclose(got.astype(np.float32), exp.astype(np.float32), rtol=tol, atol=tol)


def test_string_cast_is_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, [3])
    m = helper.make_model(helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)],
                                            "g", [x], [y]), opset_imports=[helper.make_opsetid("", 21)])
    with pytest.raises(pysofie.errors.UnsupportedOperatorError, match="cast to element type STRING"):
        generate_code(m)


# -- weights of low-precision types: .dat (bit patterns as integers), .bin (raw bytes), embedded ----------------
WEIGHT_TYPES = LOWP


def weights_model():
    """For each type T: y_T = Cast(Concat(x_T, W_T), float); W_T an initializer read at run time."""
    nodes, ins, outs, inits, feeds, ws = [], [], [], [], {}, {}
    for d in WEIGHT_TYPES:
        t = d.name.lower()
        w = values_of(d)
        ws[t] = w
        x = w[:3].copy()
        inits.append(numpy_helper.from_array(w, f"W_{t}"))
        ins.append(tinfo(f"x_{t}", d, [3]))
        feeds[f"x_{t}"] = x
        nodes.append(helper.make_node("Concat", [f"x_{t}", f"W_{t}"], [f"c_{t}"], axis=0))
        nodes.append(helper.make_node("Cast", [f"c_{t}"], [f"y_{t}"], to=TensorProto.FLOAT))
        outs.append(helper.make_tensor_value_info(f"y_{t}", TensorProto.FLOAT, None))
        # the concatenation itself, in type T
        outs.append(helper.make_tensor_value_info(f"c_{t}", d.onnx, None))
    g = helper.make_graph(nodes, "lowp_weights", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m, feeds, ws


@pytest.fixture(scope="module")
def weight_sessions():
    from pysofie.build.batch import compile_many
    m = weights_model()[0]
    out = {}
    for fmt in ("dat", "bin", "embed"):
        out[fmt] = compile_many([m], weights=fmt)[0]
    return out


@pytest.mark.parametrize("fmt", ["dat", "bin", "embed"])
def test_low_precision_weights_round_trip(fmt, weight_sessions):
    m, feeds, ws = weights_model()
    sess = weight_sessions[fmt]
    if isinstance(sess, Exception):
        raise sess
    got = sess.run(None, feeds)
    exp = reference(m, feeds)
    for o, g, e in zip(m.graph.output, got, exp):
        assert_same(g, np.asarray(e), f"{fmt}: {o.name}")
    if fmt != "embed":
        # the file itself: .bin holds the typed raw bytes, .dat the bit patterns as integers
        back = read_weights(sess._weight_path)
        for d in WEIGHT_TYPES:
            t = d.name.lower()
            key = next(k for k in back if k.endswith(f"W_{t}"))
            bits = ws[t].view(d.storage_np) & ((1 << d.bits) - 1)
            if fmt == "bin":
                assert back[key].dtype == d.np
                assert np.array_equal(back[key].view(d.storage_np) & ((1 << d.bits) - 1), bits)
            else:
                assert np.array_equal(back[key].astype(np.int64), bits.astype(np.int64))
