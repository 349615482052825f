"""Signal processing generators: Compress, DFT and STFT (direct DFT sums with double twiddles); CumProd shares
CumSum's generator (reduce.py).
Window generators and MelWeightMatrix have only generation-time inputs: they are evaluated while folding."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates


@generates("Compress")
def gen_compress(cx):
    w = cx.w
    x = cx.vin(0)
    if cx.const(1) is None:
        from .dynamic import compress_runtime
        return compress_runtime(cx)
    sel = cx.op.selected(cx.node)
    X, Y = cx.i(0), cx.o(0)
    if not sel:
        w.line(f"(void){Y};  // nothing selected: an empty output")
        return
    idx = cx.unique("kSel")
    w.line(f"static const size_t {idx}[{len(sel)}] = {{{', '.join(map(str, sel))}}};")
    if cx.op.axis is None:
        with w.loop("k", str(len(sel))):
            w.line(f"{Y}[k] = {X}[{idx}[k]];")
        return
    from ....ops.base import norm_axis
    a = norm_axis(cx.op.axis, x.rank)
    outer = cpp_dim(numel(x.shape[:a]))
    n = cpp_dim(x.shape[a])
    inner = cpp_dim(numel(x.shape[a + 1:]))
    with w.loop("o", outer):
        with w.loop("k", str(len(sel))):
            w.line(f"std::copy_n({X} + (o * {n} + {idx}[k]) * {inner}, {inner}, "
                   f"{Y} + (o * {len(sel)} + k) * {inner});")


def _dft_core(w, *, L, K, inverse, get_re, get_im, complex_in, store):
    """Emits: for k < K: X[k] = sum_{t<L} x[t] * exp(-+2 pi i k t / L); store(k, re, im)."""
    sign = "" if inverse else "-"
    with w.loop("k", str(K)):
        w.line("double sr = 0, si = 0;")
        with w.loop("t", str(L)):
            w.line(f"const double ang = {sign}6.283185307179586476925 * double((k * t) % {L}) / {L}.0;")
            w.line("const double c = std::cos(ang), s = std::sin(ang);")
            w.line(f"const double xr = {get_re('t')};")
            if complex_in:
                w.line(f"const double xi = {get_im('t')};")
                w.line("sr += xr * c - xi * s;")
                w.line("si += xr * s + xi * c;")
            else:
                w.line("sr += xr * c;")
                w.line("si += xr * s;")
        if inverse:
            w.line(f"sr /= {L}.0; si /= {L}.0;")
        store("k", "sr", "si")


@generates("DFT")
def gen_dft(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    a, n, L = cx.op.params(cx.node)
    y = cx.vout(0)
    K = y.shape[a]
    comp = x.shape[-1]
    outer = cpp_dim(numel(x.shape[:a]))
    inner = cpp_dim(numel(x.shape[a + 1:-1]))
    X, Y = cx.i(0), cx.o(0)
    m = min(n, L)  # input samples used (zero padding beyond)
    if cx.op.inverse and cx.op.onesided:
        _irfft(w, X, Y, T, outer=outer, inner=inner, n=n, L=L, comp=comp)
        return
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const {T}* xp = {X} + (o * {n} * {inner} + j) * {comp};")
            w.line(f"{T}* yp = {Y} + (o * {K} * {inner} + j) * 2;")

            def store(k, re, im):
                w.line(f"yp[{k} * {inner} * 2] = static_cast<{T}>({re});")
                w.line(f"yp[{k} * {inner} * 2 + 1] = static_cast<{T}>({im});")

            _dft_core(w, L=L, K=K, inverse=bool(cx.op.inverse),
                      get_re=lambda t: f"({t} < {m} ? double(xp[{t} * {inner} * {comp}]) : 0.0)",
                      get_im=lambda t: f"({t} < {m} ? double(xp[{t} * {inner} * {comp} + 1]) : 0.0)",
                      complex_in=comp == 2, store=store)


@generates("STFT")
def gen_stft(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    step, flen, frames = cx.op.params(cx.node)
    y = cx.vout(0)
    K = y.shape[2]
    comp = x.shape[2]
    n = x.shape[1]
    X, Y, W = cx.i(0), cx.o(0), cx.i(2)
    win = f" * double({W}[t])" if W else ""
    with w.loop("b", cpp_dim(x.shape[0])):
        with w.loop("f", cpp_dim(frames)):
            w.line(f"const {T}* xp = {X} + (b * {cpp_dim(n)} + f * {step}) * {comp};")
            w.line(f"{T}* yp = {Y} + (b * {cpp_dim(frames)} + f) * {K} * 2;")

            def store(k, re, im):
                w.line(f"yp[{k} * 2] = static_cast<{T}>({re});")
                w.line(f"yp[{k} * 2 + 1] = static_cast<{T}>({im});")

            _dft_core(w, L=flen, K=K, inverse=False,
                      get_re=lambda t: f"double(xp[{t} * {comp}]){win}",
                      get_im=lambda t: f"double(xp[{t} * {comp} + 1]){win}",
                      complex_in=comp == 2, store=store)


def _irfft(w, X, Y, T, *, outer, inner, n, L, comp):
    """y[t] = 1/L sum_k f_k Re(X_k e^{2 pi i k t / L}) over k < L/2 + 1 (X_k = 0 beyond the input), f_k = 2
    except for the DC and (even L) Nyquist bins, whose imaginary parts are ignored."""
    K = L // 2 + 1
    m = min(n, K)
    with w.loop("o", outer):
        with w.loop("j", inner):
            w.line(f"const {T}* xp = {X} + (o * {n} * {inner} + j) * {comp};")
            w.line(f"{T}* yp = {Y} + o * {L} * {inner} + j;")
            with w.loop("t", str(L)):
                w.line("double acc = 0;")
                with w.loop("k", str(m)):
                    w.line(f"const double ang = 6.283185307179586476925 * double((k * t) % {L}) / {L}.0;")
                    w.line(f"const double xr = double(xp[k * {inner} * {comp}]);")
                    if comp == 2:
                        w.line(f"const double xi = double(xp[k * {inner} * {comp} + 1]);")
                    else:
                        w.line("const double xi = 0;")
                    edge = f"k == 0 || (k * 2 == {L})"
                    w.line(f"if ({edge}) acc += xr * std::cos(ang);")
                    w.line("else acc += 2.0 * (xr * std::cos(ang) - xi * std::sin(ang));")
                w.line(f"yp[t * {inner}] = static_cast<{T}>(acc / {L}.0);")
