"""Attention, RMSNormalization, RotaryEmbedding and LinearAttention.

Attention works one (batch, query head) at a time: the scores Q K^T of that head go to a scratch row block
(BLAS for float), each row gets softcap, the additive bias (mask, causal frontier, sliding window, key
padding) and a softmax with the spec's fully-masked-row guard, and the probabilities times V are written
straight into Y (whose layout differs between 3-D and 4-D inputs only by strides).
"""
from __future__ import annotations

import math

import numpy as np

from ....ir import DType
from ....ir.shapes import cpp_dim, numel
from ..emitter import LOWP_OPS, generates
from .cast import LOWP_FLOATS, use_lowp
from .common import broadcast_strides, lit

# float16 / bfloat16 tensors (bit patterns in C++) are decoded to float on load and encoded on store; the ops'
# check() refuses the other low-precision types
LOWP_OPS.update({"Attention", "LinearAttention", "RMSNormalization", "RotaryEmbedding"})


def _acc_type(T: str) -> str:
    """The type arithmetic is done in: double for double, float for every narrower floating type."""
    return "double" if T == "double" else "float"


def _scratch_buffers(cx, requests) -> dict:
    """Disjoint scratch buffers {name: pointer expression} for [(name, count, dtype)]: the emitter hands every
    cx.scratch of one element type the same memory, so each type gets one buffer, split here."""
    by_type: dict = {}
    for name, count, dt in requests:
        by_type.setdefault(dt, []).append((name, count))
    out = {}
    for dt, items in by_type.items():
        total = items[0][1]
        for _, c in items[1:]:
            total = total + c
        base = cx.scratch(total, dt, "work")
        off = 0
        for name, c in items:
            out[name] = base if isinstance(off, int) and off == 0 else f"({base} + {cpp_dim(off)})"
            off = off + c
    return out


class _Elem:
    """Load/store expressions for the elements of one tensor (decoding float16/bfloat16 bit patterns)."""

    def __init__(self, cx, dtype: DType):
        self.dtype = dtype
        self.fmt = LOWP_FLOATS.get(dtype)
        self.acc = "double" if dtype is DType.DOUBLE else "float"
        if self.fmt:
            use_lowp(cx)

    def ld(self, x: str, to: str = "") -> str:
        if self.fmt:
            v = f"pysofie_lp::{self.fmt}::decode({x})"
            return f"static_cast<{to}>({v})" if to and to != "float" else v
        return f"static_cast<{to}>({x})" if to else x

    def rnd(self, v: str) -> str:
        """v rounded to this element type (identity for float and double)."""
        if self.fmt:
            return f"pysofie_lp::{self.fmt}::decode(pysofie_lp::{self.fmt}::encode(static_cast<double>({v}), false))"
        return v

    def st(self, v: str) -> str:
        if self.fmt:
            return f"static_cast<{self.dtype.ctype}>(pysofie_lp::{self.fmt}::encode(static_cast<double>({v}), false))"
        return f"static_cast<{self.dtype.ctype}>({v})"


@generates("Attention")
def gen_attention(cx):
    w, op, node = cx.w, cx.op, cx.node
    d = op.dims(node)
    T = cx.ctype(0)
    TK, TV = cx.ctype(1), cx.ctype(2)
    eq, ek, ev = (_Elem(cx, cx.vin(k).dtype) for k in (0, 1, 2))
    ey = _Elem(cx, cx.vout(0).dtype)
    S = eq.acc  # element type of the score rows
    sp = op.softmax_precision
    # float16 / bfloat16 inputs: every step is rounded to the input type (softmax to softmax_precision's type),
    # as the spec's computation in that precision; sums of products are accumulated in float
    lowp = eq.fmt is not None
    esm = _Elem(cx, DType.from_onnx(int(sp)) if sp else eq.dtype)
    A = "double" if (S == "double" or sp == 11) else "float"  # softmax arithmetic
    rank = d["rank"]
    nout = len(node.outputs)
    mode = int(op.qk_matmul_output_mode)
    cap = float(op.softcap or 0.0)
    scale = float(op.scale) if op.scale is not None else 1.0 / math.sqrt(d["D"])
    Q, K, V, Y = cx.i(0), cx.i(1), cx.i(2), cx.o(0)
    has_past = cx.has(4)
    nonpad = cx.i(6) if cx.has(6) else None
    left, right = int(op.left_window_size), int(op.right_window_size)

    for nm in ("B", "Hq", "Hkv", "Sq", "Skv", "P", "T", "D", "Dv"):
        w.line(f"[[maybe_unused]] const size_t n{nm} = {cpp_dim(d[nm])};")
    w.line("[[maybe_unused]] const size_t nRep = nHq / nHkv;")
    w.line(f"const {A} kNegInf = -std::numeric_limits<{A}>::infinity();")

    # -- keys and values: concatenated with the past into present_key/value (or scratch) when needed -----
    def new_row(src, b, h, s, H, dh):
        """Offset of row s of head h of batch b in a 3-D or 4-D K/V input."""
        if rank == 4:
            return f"(({b} * {H} + {h}) * nSkv + {s}) * {dh}"
        return f"({b} * nSkv + {s}) * {H} * {dh} + {h} * {dh}"

    reqs = [("scores", numel([d["Sq"], d["T"]]), DType.DOUBLE if S == "double" else DType.FLOAT)]
    if has_past and nout <= 1:
        reqs.append(("key", numel([d["B"], d["Hkv"], d["T"], d["D"]]), cx.vin(1).dtype))
    if has_past and nout <= 2:
        reqs.append(("value", numel([d["B"], d["Hkv"], d["T"], d["Dv"]]), cx.vin(2).dtype))
    bufs = _scratch_buffers(cx, reqs)

    def cache(k_in, past_in, out_idx, dh, TT, label):
        """Returns (pointer expression of head (b, hk), leading dimension)."""
        if has_past or nout > out_idx:
            dst = cx.o(out_idx) if nout > out_idx else bufs[label]
            with w.loop("b", "nB"):
                with w.loop("hk", "nHkv"):
                    w.line(f"{TT}* dst = {dst} + (b * nHkv + hk) * nT * {dh};")
                    if has_past:
                        w.line(f"std::copy({past_in} + (b * nHkv + hk) * nP * {dh}, "
                               f"{past_in} + (b * nHkv + hk + 1) * nP * {dh}, dst);")
                    with w.loop("s", "nSkv"):
                        w.line(f"const {TT}* src = {k_in} + {new_row(k_in, 'b', 'hk', 's', 'nHkv', dh)};")
                        w.line(f"std::copy(src, src + {dh}, dst + (nP + s) * {dh});")
            return f"{dst} + (b * nHkv + hk) * nT * {dh}", dh
        if rank == 4:
            return f"{k_in} + (b * nHkv + hk) * nSkv * {dh}", dh
        return f"{k_in} + b * nSkv * nHkv * {dh} + hk * {dh}", f"nHkv * {dh}"

    kptr, ldk = cache(K, cx.i(4), 1, "nD", TK, "key")
    vptr, ldv = cache(V, cx.i(5), 2, "nDv", TV, "value")

    if rank == 4:
        qptr, ldq = "Q_ + (b * nHq + h) * nSq * nD", "nD"
        yptr, ldy = "Y_ + (b * nHq + h) * nSq * nDv", "nDv"
    else:
        qptr, ldq = "Q_ + b * nSq * nHq * nD + h * nD", "nHq * nD"
        yptr, ldy = "Y_ + b * nSq * nHq * nDv + h * nDv", "nHq * nDv"
    qptr, yptr = qptr.replace("Q_", Q), yptr.replace("Y_", Y)

    # -- mask indexing: (B, Hq, Sq, L) right-aligned, L may be shorter than T (the rest is masked) ---------
    mask = cx.i(3) if cx.has(3) else None
    if mask is not None:
        mshape = op.mask_shape(node, d)
        mbool = cx.vin(3).dtype is DType.BOOL
        st = broadcast_strides(list(cx.vin(3).shape), [d["B"], d["Hq"], d["Sq"], mshape[3]])
        st = ["0" if (isinstance(mshape[k], int) and mshape[k] == 1) else st[k] for k in range(3)] + [st[3]]
        w.line(f"const size_t nL = {cpp_dim(mshape[3])};")
    scores = bufs["scores"]
    qk = cx.o(3) if nout > 3 else None
    TQK = cx.octype(3) if qk else None
    eqk = _Elem(cx, cx.vout(3).dtype) if qk else None
    em = _Elem(cx, cx.vin(3).dtype) if mask is not None else None

    with w.loop("b", "nB"):
        if nonpad is not None:
            w.line(f"const long kvValid = static_cast<long>({nonpad}[b]);")
        # causal / window frontier: past length, or nonpad - Sq for an external cache
        if has_past:
            w.line("const long offset = static_cast<long>(nP);")
        elif nonpad is not None:
            w.line("const long offset = kvValid - static_cast<long>(nSq);")
        else:
            w.line("const long offset = 0;")
        w.line("(void)offset;")
        with w.loop("h", "nHq"):
            w.line("const size_t hk = h / nRep;")
            w.line(f"const {T}* q = {qptr};")
            w.line(f"const {TK}* k = {kptr};")
            w.line(f"const {TV}* v = {vptr};")
            w.line(f"{T}* y = {yptr};")
            if T == "float" and TK == "float":
                w.line(f"pysofie_rt::sgemm(false, true, nSq, nT, nD, {lit(scale, 'float')}, q, {ldq}, k, {ldk}, 0.f, "
                       f"{scores}, nT);")
            else:
                with w.loop("i", "nSq"):
                    with w.loop("j", "nT"):
                        w.line(f"{S} acc = 0;")
                        if lowp:  # Q and K scaled by sqrt(scale) (in their type) before the product
                            sq = float(np.asarray(math.sqrt(scale)).astype(eq.dtype.np))
                            with w.loop("e", "nD"):
                                sql = lit(sq, "float")
                                w.line(f"acc += {eq.rnd(eq.ld(f'q[i * {ldq} + e]') + f' * {sql}')} * "
                                       f"{eq.rnd(ek.ld(f'k[j * {ldk} + e]') + f' * {sql}')};")
                            w.line(f"{scores}[i * nT + j] = {eq.rnd('acc')};")
                        else:
                            with w.loop("e", "nD"):
                                w.line(f"acc += {eq.ld(f'q[i * {ldq} + e]', S)} * {ek.ld(f'k[j * {ldk} + e]', S)};")
                            w.line(f"{scores}[i * nT + j] = {lit(scale, S)} * acc;")
            with w.loop("i", "nSq"):
                w.line(f"{S}* row = {scores} + i * nT;")
                if qk:
                    w.line(f"{TQK}* qrow = {qk} + ((b * nHq + h) * nSq + i) * nT;")
                if mask is not None:
                    w.line(f"const auto* mrow = {mask} + b * {st[0]} + h * {st[1]} + i * {st[2]};")
                w.line("bool anyAllowed = false;")
                w.line(f"{A} mx = kNegInf;")
                with w.loop("j", "nT"):
                    w.line(f"{A} s = static_cast<{A}>(row[j]);")
                    if qk and mode == 0:
                        w.line(f"qrow[j] = {eqk.st('s')};")
                    if cap > 0:
                        capv = f"{lit(cap, A)}"
                        inner = eq.rnd(f"s / {capv}")
                        th = eq.rnd(f"std::tanh({inner})")
                        w.line(f"s = {eq.rnd(th + ' * ' + capv)};")
                    if qk and mode == 1:
                        w.line(f"qrow[j] = {eqk.st('s')};")
                    w.line(f"{A} bias = 0;")
                    if mask is not None:
                        mj = "mrow[j]" if st[3] != "0" else "mrow[0]"
                        if mbool:
                            w.line(f"if (j >= nL || !{mj}) bias = kNegInf;")
                        else:
                            w.line(f"bias = j < nL ? {em.ld(mj, A)} : kNegInf;")
                    conds = []
                    pos = "(static_cast<long>(i) + offset)"
                    if op.is_causal:
                        conds.append(f"static_cast<long>(j) > {pos}")
                    if left >= 0:
                        conds.append(f"{pos} - static_cast<long>(j) > {left}")
                    if right >= 0:
                        conds.append(f"static_cast<long>(j) - {pos} > {right}")
                    if nonpad is not None:
                        conds.append("static_cast<long>(j) >= kvValid")
                    if conds:
                        w.line(f"if ({' || '.join(conds)}) bias = kNegInf;")
                    w.line("if (bias != kNegInf) anyAllowed = true;")
                    w.line(f"s = {eq.rnd('s + bias')};" if lowp else "s += bias;")
                    if esm.fmt and esm.dtype is not eq.dtype:
                        w.line(f"s = {esm.rnd('s')};")
                    if qk and mode == 2:
                        w.line(f"qrow[j] = {eqk.st('s')};")
                    w.line(f"row[j] = static_cast<{S}>(s);")
                    w.line("if (s > mx) mx = s;")
                # softmax; a row whose bias masks every key (or whose logits are all -inf) gives zeros
                with w.block("if (!anyAllowed || mx == kNegInf)"):
                    w.line(f"std::fill(row, row + nT, {S}(0));")
                with w.block("else"):
                    w.line(f"{A} sum = 0;")
                    with w.loop("j", "nT"):
                        diff = esm.rnd(f"static_cast<{A}>(row[j]) - mx")
                        w.line(f"const {A} e = {esm.rnd(f'std::exp({diff})')};")
                        w.line(f"row[j] = static_cast<{S}>(e);")
                        # bfloat16 sums round at every step, the others accumulate in float
                        w.line(f"sum = {esm.rnd('sum + e')};" if esm.dtype is DType.BFLOAT16 else "sum += e;")
                    if esm.fmt:
                        w.line(f"sum = {esm.rnd('sum')};")
                        with w.loop("j", "nT"):
                            w.line(f"row[j] = {eq.rnd(esm.rnd(f'static_cast<{A}>(row[j]) / sum'))};")
                    else:
                        w.line(f"const {A} inv = {A}(1) / sum;")
                        with w.loop("j", "nT"):
                            w.line(f"row[j] = static_cast<{S}>({eq.rnd(f'static_cast<{A}>(row[j]) * inv')});")
                if qk and mode == 3:
                    with w.loop("j", "nT"):
                        w.line(f"qrow[j] = {eqk.st('row[j]')};")
            if T == "float" and TV == "float":
                w.line(f"pysofie_rt::sgemm(false, false, nSq, nDv, nT, 1.f, {scores}, nT, v, {ldv}, 0.f, y, {ldy});")
            else:
                with w.loop("i", "nSq"):
                    with w.loop("e", "nDv"):
                        w.line(f"{S} acc = 0;")
                        with w.loop("j", "nT"):
                            w.line(f"acc += {scores}[i * nT + j] * {ev.ld(f'v[j * {ldv} + e]', S)};")
                        w.line(f"y[i * {ldy} + e] = {ey.st('acc')};")


@generates("RMSNormalization")
def gen_rmsnorm(cx):
    w, op = cx.w, cx.op
    x = cx.vin(0)
    T = cx.ctype(0)
    a = op.axis_of(cx.node)
    nshape = list(x.shape[a:])
    n = cpp_dim(numel(nshape))
    outer = cpp_dim(numel(x.shape[:a]))
    eps = float(op.epsilon)
    X, W, Y = cx.i(0), cx.i(1), cx.o(0)
    ex, ew, ey = _Elem(cx, x.dtype), _Elem(cx, cx.vin(1).dtype), _Elem(cx, cx.vout(0).dtype)
    sv = cx.vin(1)
    if x.dtype is DType.FLOAT and sv.dtype is DType.FLOAT and cx.vout(0).dtype is DType.FLOAT \
            and len(sv.shape) == len(nshape) and all(str(p) == str(q) for p, q in zip(sv.shape, nshape)):
        # the vectorized row kernel (runtime/pysofie_vmath.h), rows spread over the threads
        from .common import use_runtime_header
        use_runtime_header(cx, "pysofie_vmath.h")
        w.line(f"{cx.pool()}.run_range({outer}, 1, [&](long r0, long r1, int) {{ pysofie_vm::rmsnorm_rows({X}, {W}, "
               f"{Y}, r0, r1, {n}, {lit(eps, 'double')}); }});")
        return
    if numel(sv.shape) == 1 and all(isinstance(dd, int) for dd in sv.shape):
        sidx = "0"
    elif len(sv.shape) == len(nshape) and all(str(p) == str(q) for p, q in zip(sv.shape, nshape)):
        sidx = "j"
    else:
        st = broadcast_strides(list(sv.shape), nshape)
        dims = [cpp_dim(dd) for dd in nshape]
        terms, rem = [], "j"
        for q in range(len(nshape) - 1, -1, -1):
            if st[q] != "0":
                terms.append(f"(({rem}) % {dims[q]}) * {st[q]}")
            rem = f"({rem}) / {dims[q]}"
        sidx = " + ".join(terms) if terms else "0"
    with w.loop("o", outer):
        w.line(f"const {T}* xp = {X} + o * {n};")
        w.line(f"{T}* yp = {Y} + o * {n};")
        w.line("double sq = 0;")
        with w.loop("j", n):
            w.line(f"const double v = {ex.ld('xp[j]', 'double')};")
            w.line("sq += v * v;")
        w.line(f"const double inv = 1.0 / std::sqrt(sq / double({n}) + {lit(eps, 'double')});")
        with w.loop("j", n):
            w.line(f"yp[j] = {ey.st(ex.ld('xp[j]', 'double') + ' * inv * ' + ew.ld(f'{W}[{sidx}]', 'double'))};")


@generates("RotaryEmbedding")
def gen_rotary(cx):
    w, op = cx.w, cx.op
    d = op.dims(cx.node)
    T = cx.ctype(0)
    A = _acc_type(T)
    X, C, Sn, Y = cx.i(0), cx.i(1), cx.i(2), cx.o(0)
    pos = cx.i(3) if cx.has(3) else None
    ex, ec, es = (_Elem(cx, cx.vin(k).dtype) for k in (0, 1, 2))
    ey = _Elem(cx, cx.vout(0).dtype)
    for nm in ("B", "H", "S", "D"):
        w.line(f"[[maybe_unused]] const size_t n{nm} = {cpp_dim(d[nm])};")
    half, rd = d["half"], d["rd"]
    with w.loop("b", "nB"):
        with w.loop("s", "nS"):
            if pos is not None:
                w.line(f"const int64_t p = {pos}[b * nS + s];")
                w.line(f"if (p < 0 || p >= static_cast<int64_t>({cpp_dim(d['max_pos'])})) "
                       "throw std::out_of_range(\"RotaryEmbedding: position id out of range of the cos/sin cache\");")
                w.line(f"const size_t crow = static_cast<size_t>(p) * {half};")
            else:
                w.line(f"const size_t crow = (b * nS + s) * {half};")
            with w.loop("h", "nH"):
                if d["rank"] == 4:
                    w.line("const size_t base = ((b * nH + h) * nS + s) * nD;")
                else:
                    w.line("const size_t base = (b * nS + s) * nH * nD + h * nD;")
                w.line(f"const {T}* xp = {X} + base;")
                w.line(f"{T}* yp = {Y} + base;")
                with w.loop("k", str(half)):
                    w.line(f"const {A} c = {ec.ld(f'{C}[crow + k]', A)};")
                    w.line(f"const {A} sn = {es.ld(f'{Sn}[crow + k]', A)};")
                    if op.interleaved:
                        i1, i2 = "2 * k", "2 * k + 1"
                    else:
                        i1, i2 = "k", f"k + {half}"
                    w.line(f"const {A} x1 = {ex.ld(f'xp[{i1}]', A)};")
                    w.line(f"const {A} x2 = {ex.ld(f'xp[{i2}]', A)};")
                    w.line(f"yp[{i1}] = {ey.st('c * x1 - sn * x2')};")
                    w.line(f"yp[{i2}] = {ey.st('sn * x1 + c * x2')};")
                if rd < d["D"]:
                    w.line(f"std::copy(xp + {rd}, xp + nD, yp + {rd});")


@generates("LinearAttention")
def gen_linear_attention(cx):
    """The recurrence token by token for each (batch, kv head); its state (d_k x d_v, float) is read by the
    query heads of the group."""
    w, op = cx.w, cx.op
    d = op.dims(cx.node)
    eq, ek, ev = (_Elem(cx, cx.vin(k).dtype) for k in (0, 1, 2))
    ey = _Elem(cx, cx.vout(0).dtype)
    Q, K, V, Y = cx.i(0), cx.i(1), cx.i(2), cx.o(0)
    past = cx.i(3) if cx.has(3) else None
    dec = cx.i(4) if cx.has(4) else None
    beta = cx.i(5) if cx.has(5) else None
    nout = len(cx.node.outputs)
    dk, dv = d["dk"], d["dv"]
    scale = float(op.scale) if op.scale else 1.0 / math.sqrt(dk)
    for nm in ("B", "T", "Hq", "Hkv"):
        w.line(f"[[maybe_unused]] const size_t n{nm} = {cpp_dim(d[nm])};")
    w.line("const size_t nRep = nHq / nHkv;")
    state_out = nout > 1 and cx.vout(1).dtype is DType.FLOAT
    reqs = [("vt", dv, DType.FLOAT)]
    if not state_out:
        reqs.append(("state", numel([d["B"], d["Hkv"], dk * dv]), DType.FLOAT))
    bufs = _scratch_buffers(cx, reqs)
    state = cx.o(1) if state_out else bufs["state"]
    vt = bufs["vt"]
    with w.loop("b", "nB"):
        with w.loop("hk", "nHkv"):
            w.line(f"float* S = {state} + (b * nHkv + hk) * {dk * dv};")
            if past is not None:
                ep = _Elem(cx, cx.vin(3).dtype)
                with w.loop("x", str(dk * dv)):
                    w.line(f"S[x] = {ep.ld(f'{past}[(b * nHkv + hk) * {dk * dv} + x]', 'float')};")
            else:
                w.line(f"std::fill(S, S + {dk * dv}, 0.f);")
            with w.loop("t", "nT"):
                w.line("const size_t bt = b * nT + t;")
                w.line(f"const {cx.ctype(1)}* k = {K} + bt * nHkv * {dk} + hk * {dk};")
                w.line(f"const {cx.ctype(2)}* v = {V} + bt * nHkv * {dv} + hk * {dv};")
                if dec is not None:
                    ed = _Elem(cx, cx.vin(4).dtype)
                    if d["decay_per_dim"]:
                        with w.loop("e", str(dk)):
                            gd = ed.ld(f"{dec}[bt * nHkv * {dk} + hk * {dk} + e]", "float")
                            w.line(f"const float g = std::exp({gd});")
                            with w.loop("m", str(dv)):
                                w.line(f"S[e * {dv} + m] *= g;")
                    else:
                        w.line(f"const float g = std::exp({ed.ld(f'{dec}[bt * nHkv + hk]', 'float')});")
                        with w.loop("x", str(dk * dv)):
                            w.line("S[x] *= g;")
                if beta is not None:
                    eb = _Elem(cx, cx.vin(5).dtype)
                    bidx = "bt * nHkv + hk" if cx.vin(5).shape[2] != 1 else "bt"
                    w.line(f"const float bet = {eb.ld(f'{beta}[{bidx}]', 'float')};")
                    with w.loop("m", str(dv)):
                        w.line("float r = 0;")
                        with w.loop("e", str(dk)):
                            w.line(f"r += S[e * {dv} + m] * {ek.ld('k[e]', 'float')};")
                        w.line(f"{vt}[m] = bet * ({ev.ld('v[m]', 'float')} - r);")
                else:
                    with w.loop("m", str(dv)):
                        w.line(f"{vt}[m] = {ev.ld('v[m]', 'float')};")
                with w.loop("e", str(dk)):
                    w.line(f"const float ke = {ek.ld('k[e]', 'float')};")
                    with w.loop("m", str(dv)):
                        w.line(f"S[e * {dv} + m] += ke * {vt}[m];")
                with w.loop("h", "nRep"):
                    w.line("const size_t hq = hk * nRep + h;")
                    w.line(f"const {cx.ctype(0)}* q = {Q} + bt * nHq * {dk} + hq * {dk};")
                    w.line(f"{cx.octype(0)}* y = {Y} + bt * nHq * {dv} + hq * {dv};")
                    with w.loop("m", str(dv)):
                        w.line("float acc = 0;")
                        with w.loop("e", str(dk)):
                            w.line(f"acc += {eq.ld('q[e]', 'float')} * S[e * {dv} + m];")
                        sl = lit(scale, "float")
                        w.line(f"y[m] = {ey.st(f'{sl} * acc')};")
            if nout > 1 and not state_out:
                es = _Elem(cx, cx.vout(1).dtype)
                with w.loop("x", str(dk * dv)):
                    w.line(f"{cx.o(1)}[(b * nHkv + hk) * {dk * dv} + x] = {es.st('S[x]')};")


@generates("PysofieAttention")
def gen_fused_attention(cx):
    """passes.transformer.FuseAttention's node: one call of runtime/pysofie_attn.h on the Session's pool."""
    from .common import use_runtime_header
    w, op, node = cx.w, cx.op, cx.node
    d = op.dims(node)
    dims = {k: cpp_dim(v) for k, v in d.items()}

    def st(layout, rows, e, width=None):
        """(batch, head, row) strides of a tensor laid out as `layout` with `rows` rows per head (rows of
        `width` elements: a slice of a wider tensor's last axis)"""
        H = dims["H"]
        if width is not None:
            return f"{rows} * {width}", f"{e}", f"{width}"
        if layout == "bshd":
            return f"{rows} * {H} * {e}", f"{e}", f"{H} * {e}"
        return f"{H} * {rows} * {e}", f"{rows} * {e}", f"{e}"

    use_runtime_header(cx, "pysofie_vmath.h")
    use_runtime_header(cx, "pysofie_attn.h")
    a = cx.unique("attn")
    w.line(f"pysofie_attn::Args {a}{{}};")
    for k in ("B", "H", "S", "T", "D", "Dv"):
        w.line(f"{a}.{k} = static_cast<long>({dims[k]});")
    w.line(f"{a}.scale = {lit(float(op.scale), 'float')};")
    for name, idx, layout, rows, e in (("q", 0, op.q_layout, dims["S"], dims["D"]),
                                       ("k", 1, op.k_layout, dims["T"], dims["D"]),
                                       ("v", 2, op.v_layout, dims["T"], dims["Dv"])):
        width = cpp_dim(cx.vin(idx).shape[2]) if int(op.heads) else None
        sb, sh, si = st(layout, rows, e, width)
        off = int(getattr(op, name + "_off")) if int(op.heads) else 0
        w.line(f"{a}.{name} = {cx.i(idx)}{f' + {off}' if off else ''};")
        w.line(f"{a}.{name}b = static_cast<long>({sb}); {a}.{name}h = static_cast<long>({sh}); "
               f"{a}.{name}{'i' if name == 'q' else 'j'} = static_cast<long>({si});")
    sb, sh, si = st(op.y_layout, dims["S"], dims["Dv"])
    w.line(f"{a}.y = {cx.o(0)};")
    w.line(f"{a}.yb = static_cast<long>({sb}); {a}.yh = static_cast<long>({sh}); {a}.yi = static_cast<long>({si});")
    full = [d["B"], d["H"], d["S"], d["T"]]
    for idx, ptr, names in ((3, "add", ("ab", "ah", "ai", "aj")), (4, "cond", ("cb", "ch", "ci", "cj"))):
        if cx.has(idx):
            v = cx.vin(idx)
            shape = [1] * (4 - v.rank) + list(v.shape)
            bs = broadcast_strides(shape, full)
            bs = ["0" if (isinstance(shape[q], int) and shape[q] == 1) else bs[q] for q in range(4)]
            w.line(f"{a}.{ptr} = {cx.i(idx)};")
            w.line(" ".join(f"{a}.{n} = static_cast<long>({s});" for n, s in zip(names, bs)))
    w.line(f"{a}.fill = {lit(float(op.fill), 'float')};")
    w.line(f"{a}.where_first = {'true' if int(op.where_first) else 'false'};")
    if int(op.causal) >= 0:
        w.line(f"{a}.causal = {int(op.causal)};")
    Tp = d["T"] + 15  # >= T rounded up to 16
    Dvp = (d["Dv"] + 15) // 16 * 16
    bufs = _scratch_buffers(cx, [("kt", numel([d["B"], d["H"], d["D"], Tp]), DType.FLOAT),
                                 ("sc", numel([d["B"], d["H"], d["S"], Tp]), DType.FLOAT),
                                 ("vp", numel([d["B"], d["H"], d["T"], Dvp]), DType.FLOAT)])
    w.line(f"{a}.kt = {bufs['kt']}; {a}.sc = {bufs['sc']}; {a}.vp = {bufs['vp']};")
    w.line(f"pysofie_attn::run({a}, &{cx.pool()});")
