"""RNN, GRU and LSTM on the GPU, with the C++ back end's semantics (its _Layer: dimensions, layouts, clip and
the activation table of backends/cpp/ops/recurrent.py).

1. The input projections of all time steps and directions in one cuBLAS product, XW = X * W^T, onto the biases
   that can be added outside the recurrence (a kernel writes them first).
2. R transposed per direction (RT[k][n] = R[n][k]), so that the threads of a block read it coalesced.
3. The recurrence: one kernel per direction whose blocks each run one batch entry through every time step: per
   step, the block's threads compute the recurrent products H_{t-1} * R^T (one gate row each), meet at a barrier,
   then apply the gate arithmetic (one hidden unit each). One launch per direction for the whole sequence, so
   small layers (rootbench's h = 8) are not dominated by per-step launches. The state lives in the arena; the
   barrier makes a block's writes visible to its own threads.
With sequence_lens, entry b runs its own length (forward t = s, reverse t = len - 1 - s); later steps write zeros
to Y; a length outside [0, seq_length] sets the Session's error flag.
"""
from __future__ import annotations

from ....ir import DType
from ....ir.shapes import cpp_dim
from ...cpp.ops.recurrent import _Layer, gru_update, gru_zr, lstm_unit, rnn_unit
from ..emitter import generates


def _check(node) -> list[str]:
    """float32 everywhere but sequence_lens (int32)."""
    bad = sorted({v.dtype.name.lower() for k, v in enumerate(node.inputs + node.outputs)
                  if v is not None and v.dtype is not None and v.dtype is not DType.FLOAT
                  and not (k == 4 and k < len(node.inputs))})
    if bad:
        return [f"{node.op_type}: element type {', '.join(bad)} has no CUDA kernel (float only), node '{node.name}'"]
    return []


class _GpuLayer:
    def __init__(self, cx, states: tuple[str, ...]):
        self.cx = cx
        self.L = L = _Layer(cx)  # writes the host function's size locals and marks unused outputs
        for name, dim in ((L.seq, L.d.seq), (L.batch, L.d.batch)):
            if not isinstance(dim, int):
                cx.w.line(f"(void){name};")
        self.T, self.H, self.GH, self.D = L.T, L.H, L.GH, L.D
        self.DGH = self.D * self.GH
        d = L.d
        self.rows = f"size_t({cpp_dim(d.seq)}) * size_t({cpp_dim(d.batch)})"
        self.nb = cpp_dim(d.batch)
        self.XW = cx.scratch(f"{self.rows} * {self.DGH}", name="XW")
        self.RT = cx.scratch(self.D * self.H * self.GH, name="RT")
        # per direction and batch entry: the state blocks and one step's recurrent products
        self.state = {nm: cx.scratch(f"size_t({cpp_dim(d.batch)}) * {self.D * self.H}", name=f"{nm}_state")
                      for nm in states}
        self.Gs = cx.scratch(f"size_t({cpp_dim(d.batch)}) * {self.DGH}", name="Gs")

    def locals(self, w) -> None:
        """The kernel's own copies of the symbolic sizes the index expressions name."""
        L = self.L
        for name, dim in ((L.seq, L.d.seq), (L.batch, L.d.batch)):
            if not isinstance(dim, int):
                w.line(f"[[maybe_unused]] const size_t {name} = {cpp_dim(dim)};")

    def input_projection(self, rbias_gates: int) -> None:
        """XW = X * W^T (+ Wb + Rb, Rb only for the first rbias_gates gates)."""
        cx, T, GH, H = self.cx, self.T, self.GH, self.H
        beta = "0.f"
        if cx.has(3):
            Bi = cx.i(3)

            def bias(w):
                w.line(f"const size_t col = i % {self.DGH}, d = col / {GH}, k = col % {GH};")
                rb = f"{Bi}[d * {2 * GH} + {GH} + k]"
                if rbias_gates != self.L.G:
                    rb = f"(k < {rbias_gates * H} ? {rb} : {T}(0))"
                w.line(f"{self.XW}[i] = {Bi}[d * {2 * GH} + k] + {rb};")

            cx.launch(f"{self.rows} * {self.DGH}", bias)
            beta = "1.f"
        inp = self.L.d.input
        cx.w.line(f"pysofie_cuda::sgemm(blas, false, true, {self.rows}, {self.DGH}, {inp}, 1.f, {cx.i(0)}, {inp}, "
                  f"{cx.i(1)}, {inp}, {beta}, {self.XW}, {self.DGH});")
        # RT[d][k][n] = R[d][n][k]
        HG = self.H * GH

        def transpose(w):
            w.line(f"const size_t d = i / {HG}, n = (i % {HG}) / {H}, k = i % {H};")
            w.line(f"{self.RT}[d * {HG} + k * {GH} + n] = {cx.i(2)}[i];")

        cx.launch(str(self.D * HG), transpose)

    def recurrence(self, d: int, step) -> None:
        """One block-stride kernel for direction d: block blk runs batch entry blk through every step;
        step(w) writes one step's phases (t, xw, the state pointers and rt are declared)."""
        cx, L, H, GH = self.cx, self.L, self.H, self.GH
        reverse = L.op.direction == "reverse" or d == 1
        Y = L.out.get(0)

        def body(w):
            self.locals(w)
            w.line("const size_t b = blk;")
            for nm, buf in self.state.items():
                w.line(f"{self.T}* {nm} = {buf} + ({d} * {L.batch} + b) * {H};")
            w.line(f"{self.T}* g = {self.Gs} + ({d} * {L.batch} + b) * {GH};")
            w.line(f"const {self.T}* rt = {self.RT} + {d * H * GH};")
            if L.lens is not None:
                w.line(f"long long len_b = static_cast<long long>({L.lens}[b]);")
                with w.block(f"if (len_b < 0 || len_b > static_cast<long long>({L.seq}))"):
                    w.line("if (threadIdx.x == 0) *pysofie_err = 1;")
                    w.line("len_b = 0;")
                w.line("const size_t len = static_cast<size_t>(len_b);")
            else:
                w.line(f"const size_t len = {L.seq};")
            for nm, k_in in (("h", 5), ("c", 6)):
                if nm in self.state:
                    src = f"{cx.i(k_in)}[{L.state_at(d, 'b')} + j]" if cx.has(k_in) else f"{self.T}(0)"
                    with w.block(f"for (size_t j = threadIdx.x; j < {H}; j += blockDim.x)"):
                        w.line(f"{nm}[j] = {src};")
            w.line("__syncthreads();")
            with w.block(f"for (size_t s = 0; s < {L.seq}; ++s)"):
                with w.block("if (s >= len)"):  # the same for every thread of the block
                    if Y is not None:
                        with w.block(f"for (size_t j = threadIdx.x; j < {H}; j += blockDim.x)"):
                            w.line(f"{Y}[{L.y_at('s', d, 'b')} + j] = {self.T}(0);")
                    w.line("continue;")
                w.line(f"const size_t t = {'len - 1 - s' if reverse else 's'};")
                w.line(f"const {self.T}* xw = {self.XW} + {L.x_row('t', 'b')} * {self.DGH} + {d * GH};")
                step(w)
            for nm, k_out in (("h", 1), ("c", 2)):
                if nm in self.state and k_out in L.out:
                    keep = f"{nm}[j]" if L.lens is None else f"len == 0 ? {self.T}(0) : {nm}[j]"
                    with w.block(f"for (size_t j = threadIdx.x; j < {H}; j += blockDim.x)"):
                        w.line(f"{L.out[k_out]}[{L.state_at(d, 'b')} + j] = {keep};")

        cx.launch(self.nb, body, per_block=True)

    def matvec(self, w, src: str, first_gate: int, gates: int) -> None:
        """g[first_gate*H + n] = sum_k src[k] * R_d[first_gate*H + n][k] for n < gates*H; then a barrier."""
        H, GH, T = self.H, self.GH, self.T
        off = first_gate * H
        with w.block(f"for (size_t n = threadIdx.x; n < {gates * H}; n += blockDim.x)"):
            w.line(f"{T} acc = {T}(0);")
            with w.block(f"for (size_t k = 0; k < {H}; ++k)"):
                w.line(f"acc += {src}[k] * rt[k * {GH} + {off} + n];")
            w.line(f"g[{off} + n] = acc;")
        w.line("__syncthreads();")

    def units(self, w):
        """for j over the hidden units (one per thread)."""
        return w.block(f"for (size_t j = threadIdx.x; j < {self.H}; j += blockDim.x)")

    def write_y(self, w, d: int) -> None:
        Y = self.L.out.get(0)
        if Y is not None:
            w.line(f"{Y}[{self.L.y_at('t', d, 'b')} + j] = h[j];")


@generates("RNN", check=_check)
def gen_rnn(cx):
    G = _GpuLayer(cx, ("h",))
    L = G.L
    G.input_projection(1)
    for d in range(G.D):
        def step(w, d=d):
            G.matvec(w, "h", 0, 1)
            with G.units(w):
                rnn_unit(L, d, w)
                G.write_y(w, d)
            w.line("__syncthreads();")

        G.recurrence(d, step)


@generates("GRU", check=_check)
def gen_gru(cx):
    lbr = bool(cx.op.linear_before_reset)
    G = _GpuLayer(cx, ("h",) if lbr else ("h", "rh"))
    L, T, H, GH = G.L, G.T, G.H, G.GH
    G.input_projection(2 if lbr else 3)  # Rbh stays inside the reset product when linear_before_reset is set
    for d in range(G.D):
        def zr(w, d=d):
            gru_zr(L, d, w)

        def update(w, pre: str, d=d):
            gru_update(L, d, w, pre)
            G.write_y(w, d)

        def step(w, d=d):
            if lbr:
                G.matvec(w, "h", 0, 3)
                rb = f" + {cx.i(3)}[{d * 2 * GH + GH + 2 * H} + j]" if cx.has(3) else ""
                with G.units(w):
                    zr(w)
                    update(w, f"xw[{2 * H} + j] + r * (g[{2 * H} + j]{rb})")
            else:
                G.matvec(w, "h", 0, 2)
                with G.units(w):
                    zr(w)
                    w.line("g[j] = z;")
                    w.line("rh[j] = r * h[j];")
                w.line("__syncthreads();")
                G.matvec(w, "rh", 2, 1)
                with G.units(w):
                    w.line("const auto z = g[j];")
                    update(w, f"xw[{2 * H} + j] + g[{2 * H} + j]")
            w.line("__syncthreads();")

        G.recurrence(d, step)


@generates("LSTM", check=_check)
def gen_lstm(cx):
    G = _GpuLayer(cx, ("h", "c"))
    L, H = G.L, G.H
    peep = cx.has(7)
    G.input_projection(4)
    for d in range(G.D):
        def step(w, d=d):
            G.matvec(w, "h", 0, 4)
            P = cx.i(7) if peep else None
            with G.units(w):
                lstm_unit(L, d, w, (lambda k: f"{P}[{d * 3 * H + k * H} + j]") if peep else None)
                G.write_y(w, d)
            w.line("__syncthreads();")

        G.recurrence(d, step)
