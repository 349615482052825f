"""Gemm and MatMul: float products by a constant B packed at generation time (passes/gemm_pack.py) run the
register-blocked kernel of runtime/pysofie_gemm.h; other float products the BLAS, other types a reference loop."""
from __future__ import annotations

import math

from ....ir.shapes import cpp_dim, numel
from ....ops.elementwise import broadcast_shapes
from ..emitter import generates
from .common import broadcast_strides, lit, loop_nest, use_runtime_header

SMALL_M = 8  # Gemm row counts up to this use the generated small-matrix kernel (passes/fusion.py pretransposes B)


def gemm_call(T: str, ta: bool, tb: bool, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) -> str:
    fn = "pysofie_rt::sgemm" if T == "float" else "pysofie_rt::gemm_ref"
    return (f"{fn}({'true' if ta else 'false'}, {'true' if tb else 'false'}, {M}, {N}, {K}, {lit(alpha, T)}, "
            f"{A}, {lda}, {B}, {ldb}, {lit(beta, T)}, {C}, {ldc});")


def fill_broadcast(cx, src: str, src_shape, out_shape, dst: str, scale: float = 1.0) -> None:
    """dst[...] = scale * src broadcast to out_shape."""
    w = cx.w
    T = cx.octype(0)
    mul = "" if scale == 1.0 else f"{lit(scale, T)} * "
    st = broadcast_strides(list(src_shape), list(out_shape))
    w.line("size_t pos = 0;")

    def body(vs):
        terms = [f"{v} * {s}" if s != "1" else v for v, s in zip(vs, st) if s != "0"]
        w.line(f"{dst}[pos++] = {mul}{src}[{' + '.join(terms) if terms else '0'}];")

    loop_nest(w, [cpp_dim(d) for d in out_shape], body)


SMALL_GEMM = """\
// C = alpha * A * B + beta * C for a few rows of A (no transposes): each row of C is built from rows of B
// (axpy), which the compiler vectorizes; for such shapes this beats a BLAS call's packing overhead.
template <typename T>
inline void small_gemm_nn(long M, long N, long K, T alpha, const T* __restrict A, long lda, const T* __restrict B,
                          long ldb, T beta, T* __restrict C, long ldc) {
   for (long i = 0; i < M; ++i) {
      T* __restrict c = C + i * ldc;
      if (beta == T(0)) std::fill(c, c + N, T(0));
      else if (beta != T(1)) for (long j = 0; j < N; ++j) c[j] *= beta;
      const T* a = A + i * lda;
      long k = 0;
      for (; k + 4 <= K; k += 4) {
         const T a0 = alpha * a[k], a1 = alpha * a[k + 1], a2 = alpha * a[k + 2], a3 = alpha * a[k + 3];
         const T* b0 = B + k * ldb;
         const T* b1 = b0 + ldb;
         const T* b2 = b1 + ldb;
         const T* b3 = b2 + ldb;
         for (long j = 0; j < N; ++j) c[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
      }
      for (; k < K; ++k) {
         const T ak = alpha * a[k];
         const T* b = B + k * ldb;
         for (long j = 0; j < N; ++j) c[j] += ak * b[j];
      }
   }
}
"""


ACT_CODES = {None: "NONE", "Relu": "RELU", "LeakyRelu": "LEAKY", "Sigmoid": "SIGMOID", "Tanh": "TANH",
             "Gelu": "GELU", "GeluTanh": "GELU_TANH"}


def packed_act(op) -> tuple[str, float]:
    """(pysofie_gemm act code, slope) of the activation fused into a packed product."""
    from .conv import fused_act
    act = fused_act(op)
    return ACT_CODES[act[0] if act else None], (float(act[1]) if act and act[1] is not None else 0.0)


def gen_packed_gemm(cx):
    """Gemm whose B was packed by passes.gemm_pack.PackGemmWeights: one call of the register-blocked kernel,
    bias and activation applied in its store."""
    op, w = cx.op, cx.w
    info = op.__dict__["packed_gemm"]
    a_shape = cx.vin(0).shape
    ta = bool(op.transA)
    m = a_shape[1] if ta else a_shape[0]
    lda = cpp_dim(a_shape[1])
    rs, cs = ("1", lda) if ta else (lda, "1")
    N, K = info["N"], info["K"]
    accumulate, bias = "false", "nullptr"
    if cx.has(2) and info["bias"]:
        bias = cx.i(2)
    elif cx.has(2) and op.beta != 0.0:
        fill_broadcast(cx, cx.i(2), cx.vin(2).shape, cx.vout(0).shape, cx.o(0), op.beta)
        accumulate = "true"
    kind, slope = packed_act(op)
    use_runtime_header(cx, "pysofie_gemm.h")
    w.line(f"pysofie_gemm::gemm_packed({cpp_dim(m)}, {N}, {K}, {cx.i(0)}, {rs}, {cs}, {cx.i(1)}, {cx.o(0)}, {N}, "
           f"{accumulate}, {bias}, pysofie_gemm::{kind}, {lit(slope, 'float')}, &{cx.pool()});")


@generates("Gemm")
def gen_gemm(cx):
    from .conv import act_expr, fused_act
    op, w = cx.op, cx.w
    if op.__dict__.get("packed_gemm") is not None and cx.octype(0) == "float":
        gen_packed_gemm(cx)
        return
    m, n, k = op.mnk(cx.node)
    M, N, K = (cpp_dim(d) for d in (m, n, k))
    T = cx.octype(0)
    ta, tb = bool(op.transA), bool(op.transB)
    lda = cpp_dim(cx.vin(0).shape[1])
    ldb = cpp_dim(cx.vin(1).shape[1])
    beta = 0.0
    if cx.has(2) and op.beta != 0.0:
        fill_broadcast(cx, cx.i(2), cx.vin(2).shape, cx.vout(0).shape, cx.o(0), op.beta)
        beta = 1.0
    if not math.isfinite(float(op.alpha)):
        # alpha * (A B), as onnxruntime computes it: the product first (alpha * A would turn a 0 into NaN)
        tmp = cx.scratch(m * n, cx.vout(0).dtype, "prod")
        w.line(gemm_call(T, ta, tb, M, N, K, 1.0, cx.i(0), lda, cx.i(1), ldb, 0.0, tmp, N))
        with w.loop("i", cpp_dim(m * n) if isinstance(m, int) and isinstance(n, int) else f"{M} * {N}"):
            keep = f" + {cx.o(0)}[i]" if beta else ""
            w.line(f"{cx.o(0)}[i] = {lit(op.alpha, T)} * {tmp}[i]{keep};")
    elif isinstance(m, int) and m <= SMALL_M and not ta and not tb and T in ("float", "double"):
        cx.helper("small_gemm_nn", SMALL_GEMM)
        w.line(f"small_gemm_nn<{T}>({M}, {N}, {K}, {lit(float(op.alpha), T)}, {cx.i(0)}, {lda}, {cx.i(1)}, {ldb}, "
               f"{lit(beta, T)}, {cx.o(0)}, {N});")
    else:
        w.line(gemm_call(T, ta, tb, M, N, K, float(op.alpha), cx.i(0), lda, cx.i(1), ldb, beta, cx.o(0), N))
    act = fused_act(op)
    if act is not None:
        with w.loop("i", cpp_dim(m * n) if isinstance(m, int) and isinstance(n, int) else f"{M} * {N}"):
            w.line(f"const {T} v = {cx.o(0)}[i];")
            w.line(f"{cx.o(0)}[i] = {act_expr(act, 'v', T)};")


@generates("MatMul")
def gen_matmul(cx):
    w = cx.w
    T = cx.octype(0)
    a_shape, b_shape = list(cx.vin(0).shape), list(cx.vin(1).shape)
    a2 = [1] + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + [1] if len(b_shape) == 1 else b_shape
    M, K, N = a2[-2], a2[-1], b2[-1]
    abatch, bbatch = a2[:-2], b2[:-2]
    A, B, Y = cx.i(0), cx.i(1), cx.o(0)
    if cx.op.__dict__.get("packed_gemm") is not None and T == "float":
        info = cx.op.__dict__["packed_gemm"]
        use_runtime_header(cx, "pysofie_gemm.h")
        rows = cpp_dim(numel(abatch) * M)
        bias = cx.i(2) if info["bias"] else "nullptr"  # passes.transformer.FuseDenseEpilogue
        kind, slope = packed_act(cx.op)
        w.line(f"pysofie_gemm::gemm_packed({rows}, {info['N']}, {info['K']}, {A}, {info['K']}, 1, {B}, {Y}, "
               f"{info['N']}, false, {bias}, pysofie_gemm::{kind}, {lit(slope, 'float')}, &{cx.pool()});")
        return
    if numel(bbatch) == 1:
        # every A matrix times the same B: one product with the batch folded into M
        rows = cpp_dim(numel(abatch) * M)
        w.line(gemm_call(T, False, False, rows, cpp_dim(N), cpp_dim(K), 1.0, A, cpp_dim(K), B, cpp_dim(N), 0.0, Y,
                         cpp_dim(N)))
        return
    out_batch = list(broadcast_shapes(cx.node, [abatch, bbatch]))
    sa = broadcast_strides(abatch, out_batch)
    sb = broadcast_strides(bbatch, out_batch)
    ma, mb = cpp_dim(M * K), cpp_dim(K * N)
    w.line("size_t pos = 0;")

    def body(vs):
        ta = [f"{v} * {s}" for v, s in zip(vs, sa) if s != "0"]
        tb = [f"{v} * {s}" for v, s in zip(vs, sb) if s != "0"]
        aoff = f"({' + '.join(ta)}) * {ma}" if ta else "0"
        boff = f"({' + '.join(tb)}) * {mb}" if tb else "0"
        w.line(gemm_call(T, False, False, cpp_dim(M), cpp_dim(N), cpp_dim(K), 1.0, f"{A} + {aoff}", cpp_dim(K),
                         f"{B} + {boff}", cpp_dim(N), 0.0, f"{Y} + pos", cpp_dim(N)))
        w.line(f"pos += {cpp_dim(M * N)};")

    loop_nest(w, [cpp_dim(d) for d in out_batch], body)


