"""RNN, GRU and LSTM.

First the input projections of all time steps and directions in one matrix product (X * W^T, onto the biases
that can be added outside the recurrence). Then, per direction and time step, one product H_{t-1} * R^T for the
whole batch (two for a GRU with linear_before_reset=0, whose candidate gate needs r (.) H_{t-1} first) and the
gate arithmetic. The per-step product is a BLAS call for batches above SMALL_BATCH and, below (a BLAS call per
step costs more than it computes there), runtime/pysofie_rnn.h's matvec over the rows of R for float layers
and plain loops over R^T for the others; with a symbolic batch size, both, chosen at
run time. With sequence_lens, batch entry b runs its own time index: forward t = s, reverse
t = len_b - 1 - s; steps at or beyond len_b leave its state alone and write zeros to Y.
"""
from __future__ import annotations

import contextlib

from ....ir.shapes import Dim, cpp_dim, numel
from ....ops.recurrent import Activation
from ..emitter import generates
from ..names import c_string
from .common import lit
from .gemm import gemm_call
from . import recurrent_vec as vec


def activation_expr(act: Activation, x: str, T: str) -> str:
    """C++ expression of act applied to the variable x (of type T)."""
    a, b = f"{lit(act.alpha, T)}", f"{lit(act.beta, T)}"
    return {
        "Relu": f"std::max({x}, {T}(0))",
        "Tanh": f"std::tanh({x})",
        "Sigmoid": f"{T}(1) / ({T}(1) + std::exp(-{x}))",
        "Affine": f"{a} * {x} + {b}",
        "LeakyRelu": f"{x} >= {T}(0) ? {x} : {a} * {x}",
        "ThresholdedRelu": f"{x} > {a} ? {x} : {T}(0)",
        "ScaledTanh": f"{a} * std::tanh({b} * {x})",
        "HardSigmoid": f"std::min({T}(1), std::max({T}(0), {a} * {x} + {b}))",
        "Elu": f"{x} >= {T}(0) ? {x} : {a} * (std::exp({x}) - {T}(1))",
        "Softsign": f"{x} / ({T}(1) + std::abs({x}))",
        "Softplus": f"{x} > {T}(0) ? {x} + std::log1p(std::exp(-{x})) : std::log1p(std::exp({x}))",
    }[act.name]


def _at(ptr: str, offset: int) -> str:
    """ptr + offset as C++ (a plain name when offset is 0)."""
    return ptr if offset == 0 else f"({ptr} + {offset})"


@contextlib.contextmanager
def scope(w):
    """A bare { ... } block."""
    w.line("{")
    with w.indented():
        yield
    w.line("}")


# Up to this batch size the per-step recurrent products are loops (over R, or R^T) instead of BLAS calls.
SMALL_BATCH = 4


class _Layer:
    """Names and index expressions shared by the three generators."""

    def __init__(self, cx):
        self.cx = cx
        op, node = cx.op, cx.node
        self.op = op
        self.d = op.dims(node)
        self.T = cx.ctype(0)
        self.G = op.GATES
        self.H = self.d.hidden
        self.GH = self.G * self.H
        # Symbolic sizes are read once, into locals at function scope: the loop variables below (b, s, t,
        # ...) may shadow a size parameter of the same name, which is then never read again.
        self.seq = self.size_local("seq_length", self.d.seq)
        self.batch = self.size_local("batch_size", self.d.batch)
        self.D = self.d.dirs
        self.acts = op.activation_functions()
        graph = cx.em.graph
        # outputs that someone reads (an absent ONNX output still has a Value nobody uses)
        self.out = {}
        for k in range(len(node.outputs)):
            v = node.outputs[k]
            if v.uses or graph.is_output(v):
                self.out[k] = cx.o(k)
            else:
                cx.w.line(f"(void){cx.o(k)};  // output {op.OUTPUTS[k]} is not used")
        self.lens = cx.i(4)  # sequence_lens, or None
        b = self.d.batch
        self.mode = ("loop" if b <= SMALL_BATCH else "gemm") if isinstance(b, int) else "both"

    def size_local(self, base: str, dim: Dim) -> str:
        if isinstance(dim, int):
            return str(dim)
        name = base
        while name in self.cx.em.params:
            name += "_"
        self.cx.w.line(f"const size_t {name} = {cpp_dim(dim)};")
        return name

    def rows(self, n: int = 1) -> str:
        """batch * n as C++."""
        return str(self.d.batch * n) if isinstance(self.d.batch, int) else f"{self.batch} * {n}"

    # index of the first element of (t, b) in X (a row of X * W^T), Y, and of (d, b) in the state tensors
    def x_row(self, t: str, b: str) -> str:
        return f"({t} * {self.batch} + {b})" if self.op.layout == 0 else f"({b} * {self.seq} + {t})"

    def y_at(self, t: str, d: int, b: str) -> str:
        if self.op.layout == 0:
            return f"(({t} * {self.D} + {d}) * {self.batch} + {b}) * {self.H}"
        return f"(({b} * {self.seq} + {t}) * {self.D} + {d}) * {self.H}"

    def state_at(self, d: int, b: str) -> str:
        if self.op.layout == 0:
            return f"({d} * {self.batch} + {b}) * {self.H}"
        return f"({b} * {self.D} + {d}) * {self.H}"

    def clip(self, x: str) -> str:
        if self.op.clip is None:
            return x
        c = f"{lit(float(self.op.clip), self.T)}"
        return f"std::min(std::max({x}, -{c}), {c})"

    def act(self, d: int, k: int, x: str) -> str:
        return activation_expr(self.acts[d][k], x, self.T)

    # -- code pieces -------------------------------------------------------------------------------------
    def workspace(self, states: list[str]) -> dict[str, str]:
        """One scratch buffer split into: XW (the input projections of all time steps and directions),
        Gt (one step's recurrent projections, batch x G*H), and a batch x H block per name in states."""
        d = self.d
        sizes: list[tuple[str, Dim]] = [("XW", numel([d.seq, d.batch, self.D * self.GH])),
                                        ("Gt", numel([d.batch, self.GH]))]
        sizes += [(nm, numel([d.batch, self.H])) for nm in states]
        if self.mode != "gemm" and not vec.vectorized(self):
            sizes.append(("RT", self.GH * self.H))
        if vec.small_projection(self) and self.cx.has(3):
            sizes.append(("Bc", self.D * self.GH))  # the combined biases (recurrent_vec.input_projection)
        total: Dim = 0
        for _, s in sizes:
            total = total + s
        work = self.cx.scratch(total, self.cx.vin(0).dtype)
        w = self.cx.w
        ptrs = {}
        off: Dim = 0
        for nm, s in sizes:
            w.line(f"{self.T}* {nm} = {work} + {cpp_dim(off)};")  # before any local shadows a size
            ptrs[nm] = nm
            off = off + s
        return ptrs

    def check_lengths(self) -> None:
        if self.lens is None:
            return
        w = self.cx.w
        msg = c_string(f"pysofie: {self.cx.describe()}: sequence_lens[")
        with w.loop("b", self.batch):
            w.line(f"const long long len = static_cast<long long>({self.lens}[b]);")
            with w.block(f"if (len < 0 || len > static_cast<long long>({self.seq}))"):
                w.line(f"throw std::runtime_error({msg} + std::to_string(b) + \"] = \" + std::to_string(len) + "
                       f"\" is outside [0, \" + std::to_string({self.seq}) + \"]\");")

    def combined_bias(self, dst: str, rbias_gates: int) -> None:
        """dst[d * GH + k] = Wb + Rb of direction d (Rb only for the first rbias_gates gates)."""
        w, Bi, GH = self.cx.w, self.cx.i(3), self.GH
        with w.loop("d", self.D):
            with w.loop("k", GH):
                rb = f"{Bi}[d * {2 * GH} + {GH} + k]"
                if rbias_gates != self.G:
                    rb = f"(k < {rbias_gates * self.H} ? {rb} : {self.T}(0))"
                w.line(f"{dst}[d * {GH} + k] = {Bi}[d * {2 * GH} + k] + {rb};")

    def input_projection(self, XW: str, rbias_gates: int) -> None:
        """XW = X * W^T + Wb + Rb for all time steps and directions: row (t, b) of XW holds the D*G*H
        projections of X[t, b]. Rb is added here only for the first rbias_gates gates."""
        if vec.small_projection(self):
            vec.input_projection(self, XW, rbias_gates, lambda: self.blas_projection(XW, rbias_gates))
        else:
            self.blas_projection(XW, rbias_gates)

    def blas_projection(self, XW: str, rbias_gates: int) -> None:
        """input_projection in one BLAS product, accumulating onto the combined biases copied to every row."""
        w, cx, T = self.cx.w, self.cx, self.T
        I, DGH = self.d.input, self.D * self.GH
        rows = f"{self.seq} * {self.batch}"
        beta = 0.0
        if cx.has(3):
            self.combined_bias(XW, rbias_gates)
            with w.loop("r", rows, start="1"):
                w.line(f"std::copy_n({XW}, {DGH}, {XW} + r * {DGH});")
            beta = 1.0
        w.line(gemm_call(T, False, True, rows, DGH, I, 1.0, cx.i(0), I, cx.i(1), I, beta, XW, DGH))

    def xw_row(self, d: int, XW: str) -> str:
        """Pointer to the projections of X[t, b] for direction d."""
        return _at(f"{XW} + {self.x_row('t', 'b')} * {self.D * self.GH}", d * self.GH)

    def init_state(self, d: int, state: str, k_in: int) -> None:
        w, cx = self.cx.w, self.cx
        if cx.has(k_in):
            with w.loop("b", self.batch):
                w.line(f"std::copy_n({cx.i(k_in)} + {self.state_at(d, 'b')}, {self.H}, {state} + b * {self.H});")
        else:
            w.line(f"std::fill_n({state}, {self.rows(self.H)}, {self.T}(0));")

    def final_state(self, d: int, state: str, k_out: int) -> None:
        """Y_h / Y_c of direction d. An entry of length 0 gets zeros (as onnxruntime gives), not its
        initial state."""
        if k_out not in self.out:
            return
        w = self.cx.w
        with w.loop("b", self.batch):
            dst = f"{self.out[k_out]} + {self.state_at(d, 'b')}"
            if self.lens is not None:
                with w.block(f"if ({self.lens}[b] == 0)"):
                    w.line(f"std::fill_n({dst}, {self.H}, {self.T}(0));")
                    w.line("continue;")
            w.line(f"std::copy_n({state} + b * {self.H}, {self.H}, {dst});")

    def batch_step(self, d: int, body) -> None:
        """for each batch entry b: the time index t of step s; inactive entries write zeros to Y."""
        w = self.cx.w
        reverse = self.op.direction == "reverse" or d == 1
        with w.loop("b", self.batch):
            if self.lens is None:
                w.line(f"const size_t t = {f'{self.seq} - 1 - s' if reverse else 's'};")
            else:
                w.line(f"const size_t len = static_cast<size_t>({self.lens}[b]);")
                with w.block("if (s >= len)"):
                    if 0 in self.out:
                        w.line(f"std::fill_n({self.out[0]} + {self.y_at('s', d, 'b')}, {self.H}, {self.T}(0));")
                    w.line("continue;")
                w.line(f"const size_t t = {'len - 1 - s' if reverse else 's'};")
            body()

    def write_y(self, d: int, src: str) -> None:
        if 0 in self.out:
            self.cx.w.line(f"std::copy_n({src}, {self.H}, {self.out[0]} + {self.y_at('t', d, 'b')});")

    def transpose_r(self, d: int) -> None:
        """RT = R_d^T (H x G*H), for the small-batch path of recurrent_gemm (not float: their matvec reads R)."""
        if self.mode == "gemm" or vec.vectorized(self):
            return
        w, H, GH = self.cx.w, self.H, self.GH
        w.line("// R transposed: a small batch's per-step products run as vectorizable loops (a BLAS call per "
               "step costs more than it computes)")
        Rd = _at(self.cx.i(2), d * GH * H)
        with w.loop("n", GH):
            with w.loop("k", H):
                w.line(f"RT[k * {GH} + n] = {Rd}[n * {H} + k];")

    def recurrent_gemm(self, d: int, Hs: str, Gt: str, first_gate: int, gates: int, ldc: int) -> None:
        """Gt[b, :] (gates blocks from first_gate) = Hs[b, :] * R_d[gates]^T for the whole batch."""
        cx, w, H, T = self.cx, self.cx.w, self.H, self.T
        Rd = _at(cx.i(2), d * self.GH * H + first_gate * H * H)
        call = gemm_call(T, False, True, self.batch, gates * H, H, 1.0, Hs, H, Rd, H, 0.0, Gt, ldc)
        if self.mode == "gemm":
            w.line(call)
            return

        def loops():
            if vec.vectorized(self):
                vec.matvec(self, Rd, gates * H, Hs, Gt, ldc)
                return
            with w.loop("b", self.batch):
                w.line(f"{T}* gb = {Gt} + b * {ldc};")
                w.line(f"const {T}* hb = {Hs} + b * {H};")
                w.line(f"std::fill_n(gb, {gates * H}, {T}(0));")
                with w.loop("k", H):
                    w.line(f"const {T} hk = hb[k];")
                    w.line(f"const {T}* rt = RT + k * {self.GH} + {first_gate * H};")
                    with w.loop("n", gates * H):
                        w.line("gb[n] += hk * rt[n];")

        if self.mode == "loop":
            loops()
            return
        with w.block(f"if ({self.batch} <= {SMALL_BATCH})"):
            loops()
        with w.block("else"):
            w.line(call)


# The gate arithmetic of hidden unit j, shared with the CUDA back end (backends/cuda/ops/recurrent.py): xw and g
# point to the step's input and recurrent projections of the entry, h (and c) to its state.
def rnn_unit(L: _Layer, d: int, w) -> None:
    w.line(f"const {L.T} a = {L.clip('xw[j] + g[j]')};")
    w.line(f"h[j] = {L.act(d, 0, 'a')};")


def gru_zr(L: _Layer, d: int, w, g: str = "g") -> None:
    """The update and reset gates z and r."""
    T, H = L.T, L.H
    w.line(f"const {T} az = {L.clip(f'xw[j] + {g}[j]')};")
    w.line(f"const {T} ar = {L.clip(f'xw[{H} + j] + {g}[{H} + j]')};")
    w.line(f"const {T} z = {L.act(d, 0, 'az')};")
    w.line(f"const {T} r = {L.act(d, 0, 'ar')};")


def gru_update(L: _Layer, d: int, w, hh_pre: str) -> None:
    """h = (1 - z) hh + z h, hh the candidate from its pre-activation hh_pre."""
    T = L.T
    w.line(f"const {T} ah = {L.clip(hh_pre)};")
    w.line(f"const {T} hh = {L.act(d, 1, 'ah')};")
    w.line(f"h[j] = ({T}(1) - z) * hh + z * h[j];")


def lstm_unit(L: _Layer, d: int, w, peep=None) -> None:
    """Gates i, o, f, c; peep(k): the C++ expression of peephole k (0: i, 1: o, 2: f) of unit j, or None."""
    T, H = L.T, L.H
    w.line(f"const {T} c_prev = c[j];")
    pi = f" + {peep(0)} * c_prev" if peep else ""
    pf = f" + {peep(2)} * c_prev" if peep else ""
    po = f" + {peep(1)} * c_new" if peep else ""
    w.line(f"const {T} ai = {L.clip(f'xw[j] + g[j]{pi}')};")
    w.line(f"const {T} i = {L.act(d, 0, 'ai')};")
    if L.op.input_forget:
        # coupled input and forget gates
        w.line(f"const {T} f = {T}(1) - i;")
    else:
        w.line(f"const {T} af = {L.clip(f'xw[{2 * H} + j] + g[{2 * H} + j]{pf}')};")
        w.line(f"const {T} f = {L.act(d, 0, 'af')};")
    w.line(f"const {T} ac = {L.clip(f'xw[{3 * H} + j] + g[{3 * H} + j]')};")
    w.line(f"const {T} c_new = f * c_prev + i * ({L.act(d, 1, 'ac')});")
    w.line(f"const {T} ao = {L.clip(f'xw[{H} + j] + g[{H} + j]{po}')};")
    w.line(f"const {T} o = {L.act(d, 0, 'ao')};")
    w.line("c[j] = c_new;")
    w.line(f"h[j] = o * ({L.act(d, 2, 'c_new')});")


def _direction_comment(layer: _Layer, d: int) -> str:
    name = layer.op.direction if layer.D == 1 else ("forward" if d == 0 else "reverse")
    return f"// direction {d}: {name}"


@generates("RNN")
def gen_rnn(cx):
    L = _Layer(cx)
    w, T, H = cx.w, L.T, L.H
    p = L.workspace(["Ht"])
    XW, Gt, Hs = p["XW"], p["Gt"], p["Ht"]
    L.check_lengths()
    L.input_projection(XW, L.G)
    for d in range(L.D):
        w.line(_direction_comment(L, d))
        with scope(w):
            L.init_state(d, Hs, 5)
            L.transpose_r(d)
            with w.loop("s", L.seq):
                L.recurrent_gemm(d, Hs, Gt, 0, 1, H)

                def body():
                    w.line(f"const {T}* xw = {L.xw_row(d, XW)};")
                    w.line(f"const {T}* g = {Gt} + b * {H};")
                    w.line(f"{T}* h = {Hs} + b * {H};")
                    if vec.vectorized(L):
                        vec.rnn_step(L, d)
                    else:
                        with w.loop("j", H):
                            rnn_unit(L, d, w)
                    L.write_y(d, "h")

                L.batch_step(d, body)
            L.final_state(d, Hs, 1)


@generates("GRU")
def gen_gru(cx):
    L = _Layer(cx)
    w, T, H, GH = cx.w, L.T, L.H, L.GH
    lbr = bool(cx.op.linear_before_reset)
    p = L.workspace(["Ht"] if lbr else ["Ht", "RHt"])  # RHt: r (.) H_{t-1}
    XW, Gt, Hs = p["XW"], p["Gt"], p["Ht"]
    L.check_lengths()
    # Rbh stays inside the reset product when linear_before_reset is set
    L.input_projection(XW, 2 if lbr else 3)
    for d in range(L.D):
        w.line(_direction_comment(L, d))
        with scope(w):
            L.init_state(d, Hs, 5)
            L.transpose_r(d)
            rbh = _at(cx.i(3), d * 2 * GH + GH + 2 * H) if cx.has(3) else None  # Rbh of direction d
            with w.loop("s", L.seq):
                def gates_zr(g: str):
                    gru_zr(L, d, w, g)

                def update(hh_pre: str):
                    gru_update(L, d, w, hh_pre)

                def row_ptrs():
                    w.line(f"const {T}* xw = {L.xw_row(d, XW)};")
                    w.line(f"{T}* h = {Hs} + b * {H};")

                if lbr:
                    L.recurrent_gemm(d, Hs, Gt, 0, 3, GH)

                    def body():
                        row_ptrs()
                        w.line(f"{'' if vec.vectorized(L) else 'const '}{T}* g = {Gt} + b * {GH};")
                        if rbh:
                            w.line(f"const {T}* rbh = {rbh};")
                        if vec.vectorized(L):
                            vec.gru_step_lbr(L, d, bool(rbh))
                        else:
                            rb = " + rbh[j]" if rbh else ""
                            with w.loop("j", H):
                                gates_zr("g")
                                update(f"xw[{2 * H} + j] + r * (g[{2 * H} + j]{rb})")
                        L.write_y(d, "h")

                    L.batch_step(d, body)
                else:
                    RH = p["RHt"]
                    # z and r first (z kept in Gt's first block), then (r (.) H) * Rh^T into Gt's last block
                    L.recurrent_gemm(d, Hs, Gt, 0, 2, GH)
                    if L.lens is not None:
                        w.line(f"std::fill_n({RH}, {L.rows(H)}, {T}(0));")

                    def body_zr():
                        row_ptrs()
                        w.line(f"{T}* g = {Gt} + b * {GH};")
                        w.line(f"{T}* rh = {RH} + b * {H};")
                        if vec.vectorized(L):
                            vec.gru_zr(L, d)
                            with w.loop("j", H):
                                w.line(f"rh[j] = g[{H} + j] * h[j];")
                            return
                        with w.loop("j", H):
                            gates_zr("g")
                            w.line("g[j] = z;")
                            w.line("rh[j] = r * h[j];")

                    def body_h():
                        row_ptrs()
                        if vec.vectorized(L):
                            w.line(f"{T}* g = {Gt} + b * {GH};")
                            vec.gru_update(L, d, f"xw[{2 * H} + j] + g[{2 * H} + j]")
                        else:
                            w.line(f"const {T}* g = {Gt} + b * {GH};")
                            with w.loop("j", H):
                                w.line("const auto z = g[j];")
                                update(f"xw[{2 * H} + j] + g[{2 * H} + j]")
                        L.write_y(d, "h")

                    with scope(w):
                        L.batch_step(d, body_zr)
                    L.recurrent_gemm(d, RH, f"{Gt} + {2 * H}", 2, 1, GH)
                    with scope(w):
                        L.batch_step(d, body_h)
            L.final_state(d, Hs, 1)


@generates("LSTM")
def gen_lstm(cx):
    L = _Layer(cx)
    w, T, H, GH = cx.w, L.T, L.H, L.GH
    p = L.workspace(["Ht", "Ct"])
    XW, Gt, Hs, Cs = p["XW"], p["Gt"], p["Ht"], p["Ct"]
    peep = cx.has(7)
    L.check_lengths()
    L.input_projection(XW, L.G)
    for d in range(L.D):
        w.line(_direction_comment(L, d))
        with scope(w):
            L.init_state(d, Hs, 5)
            L.transpose_r(d)
            L.init_state(d, Cs, 6)
            if peep:
                w.line(f"const {T}* Pd = {_at(cx.i(7), d * 3 * H)};")
            with w.loop("s", L.seq):
                L.recurrent_gemm(d, Hs, Gt, 0, 4, GH)

                def body():
                    w.line(f"const {T}* xw = {L.xw_row(d, XW)};")
                    w.line(f"{'' if vec.vectorized(L) else 'const '}{T}* g = {Gt} + b * {GH};")
                    w.line(f"{T}* h = {Hs} + b * {H};")
                    w.line(f"{T}* c = {Cs} + b * {H};")
                    if vec.vectorized(L):
                        vec.lstm_step(L, d, peep)
                    else:
                        with w.loop("j", H):
                            lstm_unit(L, d, w, (lambda k: f"Pd[{k * H} + j]" if k else "Pd[j]") if peep else None)
                    L.write_y(d, "h")

                L.batch_step(d, body)
            L.final_state(d, Hs, 1)
            L.final_state(d, Cs, 2)
