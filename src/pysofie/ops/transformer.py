"""Transformer building blocks of ONNX opsets 23-27: Attention, RMSNormalization, RotaryEmbedding,
LinearAttention."""
from __future__ import annotations

from ..ir import DType
from .base import Op, norm_axis, register


def _is_one(d) -> bool:
    return isinstance(d, int) and d == 1


def _same(a, b) -> bool:
    return str(a) == str(b)


def _float_problem(node, v, what) -> list[str]:
    """float, double, float16 and bfloat16 (the latter two are computed in float)."""
    if v is not None and v.dtype is not None and not (v.dtype.is_float or v.dtype in (DType.FLOAT16,
                                                                                        DType.BFLOAT16)):
        return [f"{node.describe()}: {what} '{v.name}' has element type {v.dtype.name.lower()} "
                "(float, double, float16 or bfloat16)"]
    return []


def _split_heads(op, node, hidden, heads, what):
    if not isinstance(hidden, int):
        raise op.fail(node, f"the hidden size of {what} must be known for 3-D inputs, not {hidden}")
    if heads <= 0 or hidden % heads:
        raise op.fail(node, f"hidden size {hidden} of {what} does not divide into {heads} heads")
    return hidden // heads


@register()
class Attention(Op):
    """Scaled dot-product attention (opset 23; opset 24 adds nonpad_kv_seqlen, opset 25 sliding windows)."""
    ATTRS = {"is_causal": 0, "kv_num_heads": None, "q_num_heads": None, "qk_matmul_output_mode": 0, "scale": None,
             "softcap": 0.0, "softmax_precision": None, "left_window_size": -1, "right_window_size": -1}
    INPUTS = ("Q", "K", "V", "attn_mask", "past_key", "past_value", "nonpad_kv_seqlen")
    OUTPUTS = ("Y", "present_key", "present_value", "qk_matmul_output")

    def dims(self, node) -> dict:
        """Sizes of the computation: B, Hq, Hkv, Sq, Skv, P (past length), T (total kv length), D, Dv, rank."""
        q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
        if q.rank != k.rank or q.rank != v.rank or q.rank not in (3, 4):
            raise self.fail(node, f"Q, K and V must all be 3-D or all 4-D, not {q!r}, {k!r}, {v!r}")
        if q.rank == 4:
            B, Hq, Sq, D = q.shape
            _, Hkv, Skv, Dk = k.shape
            Dv = v.shape[3]
            if not _same(v.shape[1], Hkv) or not _same(v.shape[2], Skv):
                raise self.fail(node, f"K {k!r} and V {v!r} disagree on heads or sequence length")
        else:
            if self.q_num_heads is None or self.kv_num_heads is None:
                raise self.fail(node, "3-D inputs need the q_num_heads and kv_num_heads attributes")
            Hq, Hkv = int(self.q_num_heads), int(self.kv_num_heads)
            B, Sq = q.shape[0], q.shape[1]
            Skv = k.shape[1]
            D = _split_heads(self, node, q.shape[2], Hq, "Q")
            Dk = _split_heads(self, node, k.shape[2], Hkv, "K")
            Dv = _split_heads(self, node, v.shape[2], Hkv, "V")
            if not _same(v.shape[1], Skv):
                raise self.fail(node, f"K {k!r} and V {v!r} disagree on the sequence length")
        if not _same(D, Dk):
            raise self.fail(node, f"Q head size {D} differs from K head size {Dk}")
        for d, what in ((Hq, "Q heads"), (Hkv, "K/V heads"), (D, "head size"), (Dv, "V head size")):
            if not isinstance(d, int):
                raise self.fail(node, f"the number of {what} must be known at generation time, not {d}")
        if Hkv <= 0 or Hq % Hkv:
            raise self.fail(node, f"{Hq} query heads are not a multiple of {Hkv} key/value heads")
        pk, pv = node.input(4), node.input(5)
        if (pk is None) != (pv is None):
            raise self.fail(node, "past_key and past_value must be given together")
        P = 0
        if pk is not None:
            if pk.rank != 4 or pv.rank != 4:
                raise self.fail(node, f"past_key {pk!r} and past_value {pv!r} must be 4-D")
            P = pk.shape[2]
            exp_k = (B, Hkv, P, D)
            exp_v = (B, Hkv, P, Dv)
            if not all(_same(a, b) for a, b in zip(pk.shape, exp_k)) or \
                    not all(_same(a, b) for a, b in zip(pv.shape, exp_v)):
                raise self.fail(node, f"past_key {pk!r} / past_value {pv!r} do not match (batch, {Hkv} heads, "
                                      f"past, head size)")
            if node.input(6) is not None:
                raise self.fail(node, "nonpad_kv_seqlen cannot be combined with past_key/past_value")
        T = Skv + P if P != 0 else Skv
        return dict(B=B, Hq=Hq, Hkv=Hkv, Sq=Sq, Skv=Skv, P=P, T=T, D=D, Dv=Dv, rank=q.rank)

    def mask_shape(self, node, d) -> list:
        """The mask's dims right-aligned to (B, Hq, Sq, L); L (its last dim) may be shorter than T."""
        m = node.input(3)
        if m.rank < 1 or m.rank > 4:
            raise self.fail(node, f"attn_mask {m!r} must have rank 1 to 4")
        shape = [1] * (4 - m.rank) + list(m.shape)
        for got, want, what in zip(shape[:3], (d["B"], d["Hq"], d["Sq"]), ("batch", "heads", "query length")):
            if not _is_one(got) and not _same(got, want):
                raise self.fail(node, f"attn_mask {m!r} does not broadcast: {what} {got} vs {want}")
        L, T = shape[3], d["T"]
        if isinstance(L, int) and isinstance(T, int) and L > T:
            raise self.fail(node, f"attn_mask {m!r} is longer ({L}) than the key sequence ({T})")
        if not isinstance(L, int) and not _same(L, T):
            raise self.fail(node, f"attn_mask {m!r}: its last dim must be known or equal the key length {T}")
        return shape

    def check(self, node):
        p = []
        for k in (0, 1, 2, 4, 5):
            p += _float_problem(node, node.input(k), self.INPUTS[k])
        m = node.input(3)
        if m is not None and m.dtype is not None and m.dtype is not DType.BOOL and _float_problem(node, m, ""):
            p.append(f"{node.describe()}: attn_mask '{m.name}' has element type {m.dtype.name.lower()} "
                     "(bool or floating point)")
        n = node.input(6)
        if n is not None and n.dtype not in (DType.INT64, None):
            p.append(f"{node.describe()}: nonpad_kv_seqlen '{n.name}' must be int64")
        if int(self.qk_matmul_output_mode) not in (0, 1, 2, 3):
            p.append(f"{node.describe()}: qk_matmul_output_mode={self.qk_matmul_output_mode} is not 0..3")
        if self.softmax_precision not in (None, 0, 1, 10, 11, 16):
            p.append(f"{node.describe()}: softmax_precision={self.softmax_precision} is not a float type")
        for a in ("left_window_size", "right_window_size"):
            if int(getattr(self, a)) < -1:
                p.append(f"{node.describe()}: {a}={getattr(self, a)} must be -1 or nonnegative")
        return p

    def infer(self, node):
        d = self.dims(node)
        if node.input(3) is not None:
            self.mask_shape(node, d)
        q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
        if d["rank"] == 4:
            y = (d["B"], d["Hq"], d["Sq"], d["Dv"])
        else:
            y = (d["B"], d["Sq"], d["Hq"] * d["Dv"])
        res = [(q.dtype, y), (k.dtype, (d["B"], d["Hkv"], d["T"], d["D"])),
               (v.dtype, (d["B"], d["Hkv"], d["T"], d["Dv"])), (q.dtype, (d["B"], d["Hq"], d["Sq"], d["T"]))]
        if len(node.outputs) > 4:
            raise self.fail(node, f"{len(node.outputs)} outputs, at most 4")
        return res[:len(node.outputs)]


@register()
class RMSNormalization(Op):
    ATTRS = {"axis": -1, "epsilon": 1e-5, "stash_type": 1}
    INPUTS = ("X", "scale")
    OUTPUTS = ("Y",)

    def axis_of(self, node):
        return norm_axis(int(self.axis), node.inputs[0].rank, node)

    def check(self, node):
        p = _float_problem(node, node.inputs[0], "X") + _float_problem(node, node.input(1), "scale")
        if int(self.stash_type) not in (1, 11):
            p.append(f"{node.describe()}: stash_type={self.stash_type} is not supported (1: float, 11: double)")
        return p

    def infer(self, node):
        x, s = node.inputs[0], node.inputs[1]
        a = self.axis_of(node)
        nshape = list(x.shape[a:])
        if s.rank > len(nshape):
            raise self.fail(node, f"scale {s!r} does not broadcast to the normalized shape {nshape}")
        for got, want in zip(reversed(list(s.shape)), reversed(nshape)):
            if not _is_one(got) and not _same(got, want):
                raise self.fail(node, f"scale {s!r} does not broadcast to the normalized shape {nshape}")
        return [(x.dtype, x.shape)]


@register()
class RotaryEmbedding(Op):
    ATTRS = {"interleaved": 0, "num_heads": 0, "rotary_embedding_dim": 0}
    INPUTS = ("X", "cos_cache", "sin_cache", "position_ids")
    OUTPUTS = ("Y",)

    def dims(self, node) -> dict:
        x, cos, sin = node.inputs[0], node.inputs[1], node.inputs[2]
        pos = node.input(3)
        if x.rank == 4:
            B, H, S, D = x.shape
        elif x.rank == 3:
            B, S, hidden = x.shape
            H = int(self.num_heads or 0)
            if H <= 0:
                raise self.fail(node, "3-D input needs the num_heads attribute")
            D = _split_heads(self, node, hidden, H, "the input")
        else:
            raise self.fail(node, f"input {x!r} must be 3-D or 4-D")
        if not isinstance(D, int) or not isinstance(H, int):
            raise self.fail(node, f"heads and head size must be known at generation time ({x!r})")
        rd = int(self.rotary_embedding_dim or 0) or D
        if rd > D or rd % 2:
            raise self.fail(node, f"rotary_embedding_dim {rd} must be even and at most the head size {D}")
        half = rd // 2
        for c in (cos, sin):
            if pos is not None:
                if c.rank != 2:
                    raise self.fail(node, f"with position_ids, cache {c!r} must be 2-D (max_position, {half})")
            elif c.rank != 3 or not _same(c.shape[0], B) or not _same(c.shape[1], S):
                raise self.fail(node, f"without position_ids, cache {c!r} must be (batch, sequence, {half})")
            if not _same(c.shape[-1], half):
                raise self.fail(node, f"cache {c!r}: last dim must be rotary_embedding_dim/2 = {half}")
        if pos is not None:
            if pos.rank != 2 or not _same(pos.shape[0], B) or not _same(pos.shape[1], S):
                raise self.fail(node, f"position_ids {pos!r} must be (batch, sequence)")
        return dict(B=B, H=H, S=S, D=D, rd=rd, half=half, rank=x.rank,
                    max_pos=cos.shape[0] if pos is not None else None)

    def check(self, node):
        p = []
        for k, what in ((0, "input"), (1, "cos_cache"), (2, "sin_cache")):
            p += _float_problem(node, node.input(k), what)
        pos = node.input(3)
        if pos is not None and pos.dtype not in (DType.INT64, None):
            p.append(f"{node.describe()}: position_ids '{pos.name}' must be int64")
        return p

    def infer(self, node):
        self.dims(node)
        x = node.inputs[0]
        return [(x.dtype, x.shape)]


@register()
class LinearAttention(Op):
    """Recurrent linear attention of opset 27 (linear / gated / delta / gated_delta update rules), 3-D packed
    inputs (batch, sequence, heads * head size) and a (batch, kv heads, d_k, d_v) state."""
    ATTRS = {"chunk_size": 64, "kv_num_heads": None, "q_num_heads": None, "scale": 0.0,
             "update_rule": "gated_delta"}
    INPUTS = ("query", "key", "value", "past_state", "decay", "beta")
    OUTPUTS = ("output", "present_state")

    def rule(self) -> str:
        r = self.update_rule
        return r.decode() if isinstance(r, bytes) else str(r)

    def dims(self, node) -> dict:
        q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
        if self.q_num_heads is None or self.kv_num_heads is None:
            raise self.fail(node, "the q_num_heads and kv_num_heads attributes are required")
        Hq, Hkv = int(self.q_num_heads), int(self.kv_num_heads)
        if Hq <= 0 or Hkv <= 0 or Hq % Hkv:
            raise self.fail(node, f"q_num_heads {Hq} must be a positive multiple of kv_num_heads {Hkv}")
        for x in (q, k, v):
            if x.rank != 3:
                raise self.fail(node, f"'{x.name}' {x!r} must be 3-D (batch, sequence, heads * head size)")
        B, T = q.shape[0], q.shape[1]
        for x in (k, v):
            if not _same(x.shape[0], B) or not _same(x.shape[1], T):
                raise self.fail(node, f"'{x.name}' {x!r} disagrees with query {q!r} on batch or sequence")
        dk = _split_heads(self, node, q.shape[2], Hq, "query")
        dkk = _split_heads(self, node, k.shape[2], Hkv, "key")
        if dk != dkk:
            raise self.fail(node, f"query head size {dk} differs from key head size {dkk}")
        dv = _split_heads(self, node, v.shape[2], Hkv, "value")
        rule = self.rule()
        gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
        dec, beta, past = node.input(4), node.input(5), node.input(3)
        if gating != (dec is not None):
            raise self.fail(node, f"update_rule '{rule}' {'needs' if gating else 'takes no'} decay input")
        if delta != (beta is not None):
            raise self.fail(node, f"update_rule '{rule}' {'needs' if delta else 'takes no'} beta input")
        decay_per_dim = False
        if dec is not None:
            if dec.rank != 3 or not _same(dec.shape[0], B) or not _same(dec.shape[1], T) or \
                    dec.shape[2] not in (Hkv, Hkv * dk):
                raise self.fail(node, f"decay {dec!r} must be (batch, sequence, {Hkv} or {Hkv * dk})")
            decay_per_dim = dec.shape[2] != Hkv
        beta_per_head = False
        if beta is not None:
            if beta.rank != 3 or not _same(beta.shape[0], B) or not _same(beta.shape[1], T) or \
                    beta.shape[2] not in (Hkv, 1):
                raise self.fail(node, f"beta {beta!r} must be (batch, sequence, {Hkv} or 1)")
            beta_per_head = beta.shape[2] != 1 or Hkv == 1
        if past is not None:
            want = (B, Hkv, dk, dv)
            if past.rank != 4 or not all(_same(a, b) for a, b in zip(past.shape, want)):
                raise self.fail(node, f"past_state {past!r} must be (batch, {Hkv}, {dk}, {dv})")
        return dict(B=B, T=T, Hq=Hq, Hkv=Hkv, dk=dk, dv=dv, gating=gating, delta=delta,
                    decay_per_dim=decay_per_dim, beta_per_head=beta_per_head)

    def check(self, node):
        p = []
        for k in range(6):
            p += _float_problem(node, node.input(k), self.INPUTS[k])
        if self.rule() not in ("linear", "gated", "delta", "gated_delta"):
            p.append(f"{node.describe()}: update_rule '{self.rule()}' is not linear, gated, delta or gated_delta")
        return p

    def infer(self, node):
        d = self.dims(node)
        q = node.inputs[0]
        past = node.input(3)
        res = [(q.dtype, (d["B"], d["T"], d["Hq"] * d["dv"])),
               (past.dtype if past is not None else q.dtype, (d["B"], d["Hkv"], d["dk"], d["dv"]))]
        if len(node.outputs) > 2:
            raise self.fail(node, f"{len(node.outputs)} outputs, at most 2")
        return res[:len(node.outputs)]


__all__ = ["Attention", "LinearAttention", "RMSNormalization", "RotaryEmbedding"]
