"""The per-step gate arithmetic of float RNN / GRU / LSTM layers on whole gate vectors.

Instead of one unit j at a time (ops/recurrent.py's rnn_unit / gru_zr / gru_update / lstm_unit, which the double
layers and the CUDA back end use), a step of batch entry b first forms the pre-activations of all gates in the
step's recurrent-projection row g (g += xw, peepholes, clip), then applies each activation to a contiguous block
of gates at once: Sigmoid and Tanh through runtime/pysofie_rnn.h (8 lanes with AVX2 + FMA), the other ONNX
activations as plain loops the compiler vectorizes. For an LSTM with the default activations the i, o and f
gates are one Sigmoid call over 3H values. The step's g row is scratch: it is overwritten.

The ONNX semantics are the scalar generators': clip applies to every pre-activation (after the peephole terms),
input_forget couples f = 1 - i, a GRU's r multiplies (R_h h + Rb_h) with linear_before_reset and h before the
product without it.
"""
from __future__ import annotations

from .common import use_runtime_header

VEC_ACTS = {"Sigmoid": "pysofie_rnn::sigmoid", "Tanh": "pysofie_rnn::tanh"}


def vectorized(L) -> bool:
    """Whether the layer's steps use this module (float layers)."""
    return L.T == "float"


def _act(L, d: int, k: int, ptr: str, n: int) -> None:
    """ptr[0, n) = activation k of direction d (ptr[...]), in place."""
    from .recurrent import activation_expr
    w = L.cx.w
    act = L.acts[d][k]
    ptr = ptr if ptr.isidentifier() else f"({ptr})"
    if act.name in VEC_ACTS:
        use_runtime_header(L.cx, "pysofie_rnn.h")
        w.line(f"{VEC_ACTS[act.name]}({ptr}, {n});")
        return
    with w.loop("q", str(n)):
        w.line(f"const {L.T} v = {ptr}[q];")
        w.line(f"{ptr}[q] = {activation_expr(act, 'v', L.T)};")


def _clip(L, ptr: str, n: int) -> None:
    if L.op.clip is None:
        return
    ptr = ptr if ptr.isidentifier() else f"({ptr})"
    with L.cx.w.loop("q", str(n)):
        L.cx.w.line(f"{ptr}[q] = {L.clip(f'{ptr}[q]')};")



def matvec(L, R: str, n: int, Hs: str, Gt: str, ldc: int) -> None:
    """Gt[b, 0:n) = Hs[b, :] * R^T for each batch entry (R: n rows of H), a small batch's per-step product."""
    w, H = L.cx.w, L.H
    use_runtime_header(L.cx, "pysofie_rnn.h")
    with w.loop("b", L.batch):
        w.line(f"pysofie_rnn::matvec({R}, {n}, {H}, {Hs} + b * {H}, {Gt} + b * {ldc});")


# Input projections of up to this many multiply-adds per batch entry (seq * D*G*H * input) run as matvecs; larger
# ones through the BLAS, which was ~10 % faster at DDB_B1's 60 x 150 x 32 (CPU time, AMD EPYC Zen 4).
SMALL_PROJECTION = 65536


def small_projection(L) -> bool:
    """Whether input_projection below does the layer's X * W^T (float, a small batch, a small product)."""
    return (vectorized(L) and L.mode != "gemm" and isinstance(L.d.seq, int)
            and L.d.seq * L.D * L.GH * L.d.input <= SMALL_PROJECTION)


def input_projection(L, XW: str, rbias_gates: int, blas_projection) -> None:
    """XW = X * W^T + Wb + Rb (Rb only for the first rbias_gates gates) for a small batch: one matvec per row of
    X (a BLAS call costs more than such a product); with a symbolic batch size above SMALL_BATCH,
    blas_projection() emits the layer's one-product path instead."""
    from .recurrent import SMALL_BATCH
    cx, w = L.cx, L.cx.w
    I, DGH = L.d.input, L.D * L.GH
    bias = "nullptr"
    if cx.has(3):
        L.combined_bias("Bc", rbias_gates)
        bias = "Bc"
    use_runtime_header(cx, "pysofie_rnn.h")

    def loops():
        with w.loop("r", f"{L.seq} * {L.batch}"):
            w.line(f"pysofie_rnn::matvec({cx.i(1)}, {DGH}, {I}, {cx.i(0)} + r * {I}, {XW} + r * {DGH}, {bias});")

    if L.mode == "loop":
        loops()
        return
    with w.block(f"if ({L.batch} <= {SMALL_BATCH})"):
        loops()
    with w.block("else"):
        blas_projection()


def rnn_step(L, d: int) -> None:
    """h = f(clip(xw + g)) for the entry whose xw, g and h pointers are in scope."""
    w, H = L.cx.w, L.H
    with w.loop("j", str(H)):
        w.line(f"h[j] = {L.clip('xw[j] + g[j]')};")
    _act(L, d, 0, "h", H)


def gru_zr(L, d: int) -> None:
    """g[0, 2H) = z, r from their pre-activations g + xw."""
    w, H = L.cx.w, L.H
    with w.loop("q", str(2 * H)):
        w.line(f"g[q] = {L.clip('g[q] + xw[q]')};")
    _act(L, d, 0, "g", 2 * H)


def gru_update(L, d: int, hh_pre: str) -> None:
    """g[2H + j] = candidate from hh_pre (a C++ expression in j), then h = (1 - z) hh + z h."""
    w, H, T = L.cx.w, L.H, L.T
    with w.loop("j", str(H)):
        w.line(f"g[{2 * H} + j] = {L.clip(hh_pre)};")
    _act(L, d, 1, f"g + {2 * H}", H)
    with w.loop("j", str(H)):
        w.line(f"h[j] = ({T}(1) - g[j]) * g[{2 * H} + j] + g[j] * h[j];")


def gru_step_lbr(L, d: int, rbh: bool) -> None:
    """linear_before_reset: the whole step (g holds R h for all three gates)."""
    H = L.H
    gru_zr(L, d)
    rb = " + rbh[j]" if rbh else ""
    gru_update(L, d, f"xw[{2 * H} + j] + g[{H} + j] * (g[{2 * H} + j]{rb})")


def lstm_step(L, d: int, peep: bool) -> None:
    """Gates i, o, f, c in blocks 0..3 of g; Pd (peepholes i, o, f) in scope when peep."""
    w, H, GH, T = L.cx.w, L.H, L.GH, L.T
    forget = not L.op.input_forget
    with w.loop("q", str(GH)):
        w.line("g[q] += xw[q];")
    if peep:
        with w.loop("j", str(H)):
            w.line("g[j] += Pd[j] * c[j];")
            if forget:
                w.line(f"g[{2 * H} + j] += Pd[{2 * H} + j] * c[j];")
        # o's peephole needs the new cell state: clip and activate i, f, c now, o below
        _clip(L, "g", H)
        if forget:
            _clip(L, f"g + {2 * H}", 2 * H)
        else:
            _clip(L, f"g + {3 * H}", H)
        _act(L, d, 0, "g", H)
        if forget:
            _act(L, d, 0, f"g + {2 * H}", H)
    else:
        _clip(L, "g", GH)
        _act(L, d, 0, "g", (3 if forget else 2) * H)  # i, o (and f): contiguous
    _act(L, d, 1, f"g + {3 * H}", H)
    with w.loop("j", str(H)):
        f = f"g[{2 * H} + j]" if forget else f"({T}(1) - g[j])"
        w.line(f"c[j] = {f} * c[j] + g[j] * g[{3 * H} + j];")
    if peep:
        with w.loop("j", str(H)):
            w.line(f"g[{H} + j] += Pd[{H} + j] * c[j];")
        _clip(L, f"g + {H}", H)
        _act(L, d, 0, f"g + {H}", H)
    w.line(f"std::copy_n(c, {H}, h);")
    _act(L, d, 2, "h", H)
    with w.loop("j", str(H)):
        w.line(f"h[j] *= g[{H} + j];")
