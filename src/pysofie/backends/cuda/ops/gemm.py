"""Gemm and MatMul (float): bias and fused activation in a cuBLASLt epilogue where ``EPILOGUES`` has one for
them, else cuBLAS followed by one bias / activation kernel (also taken at run time when epilogues are switched
off, or cuBLASLt has no algorithm for the case)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, dims_equal, numel
from ....ops.elementwise import broadcast_shapes
from ...cpp.ops.common import broadcast_strides, loop_nest
from ...cpp.ops.conv import act_expr, fused_act
from ..emitter import float32_only, generates

# The one table deciding when a product's bias and activation go into cuBLASLt's epilogue:
# (fused activation, has a bias) -> cublasLtEpilogue_t. Anything else takes the cuBLAS path + kernel: LeakyRelu,
# Sigmoid, Tanh, the exact (erf) Gelu (cuBLASLt's GELU is the tanh approximation), a bias that is not one value
# per output column (a [M, N] or [M, 1] C), Gemm's beta != 1 (the epilogue's bias is not scaled), MatMuls whose
# B differs along the batch, and other element types than float.
EPILOGUES = {
    (None, True): "CUBLASLT_EPILOGUE_BIAS",
    ("Relu", True): "CUBLASLT_EPILOGUE_RELU_BIAS",
    ("GeluTanh", True): "CUBLASLT_EPILOGUE_GELU_BIAS",
    ("Relu", False): "CUBLASLT_EPILOGUE_RELU",
    ("GeluTanh", False): "CUBLASLT_EPILOGUE_GELU",
}


def lt_epilogue(cx, N, bias, act):
    """The cuBLASLt epilogue doing `bias` and `act` of this node's [rows, N] product, or None (cuBLAS path)."""
    if float32_only(cx.node):
        return None
    if bias is not None:
        _, shape, beta = bias
        if beta != 1.0 or not shape or not dims_equal(shape[-1], N) or not all(dims_equal(d, 1) for d in shape[:-1]):
            return None
    return EPILOGUES.get((act[0] if act is not None else None, bias is not None))


def product(cx, call: str, rows: str, N: str, bias, act, lt_args=None) -> None:
    """The cuBLAS product `call` then the bias / activation kernel; with lt_args (the sgemm_epilogue arguments
    after the epilogue, bias pointer excluded) and an EPILOGUES entry, cublasLtMatmul first, that path the fallback."""
    epi = lt_epilogue(cx, N, bias, act) if lt_args is not None else None
    if epi is None:
        cx.w.line(call)
        epilogue(cx, rows, N, bias, act)
        return
    bptr = cx.i(bias[0]) if bias is not None else "nullptr"
    with cx.w.block(f"if (!pysofie_cuda::sgemm_epilogue(blas, stream, {epi}, {lt_args}, {bptr}, {cx.o(0)}, {N}))"):
        cx.w.line(call)
        epilogue(cx, rows, N, bias, act)


def epilogue(cx, rows: str, cols: str, bias=None, act=None) -> None:
    """Y[r, c] = act(Y[r, c] + beta * C[broadcast]) over the [rows, cols] output, when there is anything to do.
    bias: (input index, shape, beta) of a tensor broadcast to [rows, cols]."""
    if bias is None and act is None:
        return
    T = cx.octype(0)
    Y = cx.o(0)

    def body(w):
        w.line(f"{T} v = {Y}[i];")
        if bias is not None:
            k, shape, beta = bias
            st = broadcast_strides(list(shape), [rows, cols])
            terms = [f"{v} * {s}" if s != "1" else v for v, s in zip([f"(i / {cols})", f"(i % {cols})"], st)
                     if s != "0"]
            scale = "" if beta == 1.0 else f"{T}({beta!r}) * "
            w.line(f"v += {scale}{cx.i(k)}[{' + '.join(terms) if terms else '0'}];")
        if act is not None:
            w.line(f"v = {act_expr(act, 'v', T)};")
        w.line(f"{Y}[i] = v;")

    cx.launch(f"{rows} * {cols}", body)


@generates("Gemm", check=float32_only)
def gen_gemm(cx):
    op = cx.op
    m, n, k = op.mnk(cx.node)
    M, N, K = (cpp_dim(d) for d in (m, n, k))
    lda = cpp_dim(cx.vin(0).shape[1])
    ldb = cpp_dim(cx.vin(1).shape[1])
    ta, tb = str(bool(op.transA)).lower(), str(bool(op.transB)).lower()
    args = f"{ta}, {tb}, {M}, {N}, {K}, {float(op.alpha)!r}f, {cx.i(0)}, {lda}, {cx.i(1)}, {ldb}"
    bias = (2, cx.vin(2).shape, float(op.beta)) if cx.has(2) and op.beta != 0.0 else None
    product(cx, f"pysofie_cuda::sgemm(blas, {args}, 0.f, {cx.o(0)}, {N});", M, N, bias, fused_act(op), args)


@generates("MatMul", check=float32_only)
def gen_matmul(cx):
    w = cx.w
    a_shape, b_shape = list(cx.vin(0).shape), list(cx.vin(1).shape)
    a2 = [1] + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + [1] if len(b_shape) == 1 else b_shape
    M, K, N = (cpp_dim(d) for d in (a2[-2], a2[-1], b2[-1]))
    abatch, bbatch = a2[:-2], b2[:-2]
    A, B, Y = cx.i(0), cx.i(1), cx.o(0)
    # a bias (3rd input) and activation fused by the CUDA passes (FuseMatMulEpilogue), only when B is shared
    bias = (2, cx.vin(2).shape, 1.0) if cx.has(2) else None
    act = fused_act(cx.op)
    if numel(bbatch) == 1:
        # every A matrix times the same B: one product with the batch folded into the rows
        rows = cpp_dim(numel(abatch) * a2[-2])
        args = f"false, false, {rows}, {N}, {K}, 1.f, {A}, {K}, {B}, {N}"
        product(cx, f"pysofie_cuda::sgemm(blas, {args}, 0.f, {Y}, {N});", rows, N, bias, act, args)
        return
    assert bias is None and act is None, "FuseMatMulEpilogue fuses only MatMuls with one B"
    out_batch = list(broadcast_shapes(cx.node, [abatch, bbatch]))

    def uniform(batch):  # all of the output's batch, or one matrix for all
        return numel(batch) == 1 or (len(batch) == len(out_batch) and all(dims_equal(a, b)
                                                                         for a, b in zip(batch, out_batch)))

    count = cpp_dim(numel(out_batch))
    if uniform(abatch) and uniform(bbatch):
        sa = "0" if numel(abatch) == 1 else f"(long long)({M}) * {K}"
        sb = "0" if numel(bbatch) == 1 else f"(long long)({K}) * {N}"
        w.line(f"pysofie_cuda::sgemm_batched(blas, false, false, {M}, {N}, {K}, 1.f, {A}, {K}, {sa}, {B}, {N}, {sb}, "
               f"0.f, {Y}, {N}, (long long)({M}) * {N}, {count});")
        return
    # general broadcasting of the batch axes: one product per output matrix, issued from the host
    sa = broadcast_strides(abatch, out_batch)
    sb = broadcast_strides(bbatch, out_batch)
    w.line("size_t pos = 0;")

    def body(vs):
        ta = [f"{v} * {s}" for v, s in zip(vs, sa) if s != "0"]
        tb = [f"{v} * {s}" for v, s in zip(vs, sb) if s != "0"]
        aoff = f"({' + '.join(ta)}) * {M} * {K}" if ta else "0"
        boff = f"({' + '.join(tb)}) * {K} * {N}" if tb else "0"
        w.line(f"pysofie_cuda::sgemm(blas, false, false, {M}, {N}, {K}, 1.f, {A} + {aoff}, {K}, {B} + {boff}, {N}, "
               f"0.f, {Y} + pos, {N});")
        w.line(f"pos += size_t({M}) * {N};")

    loop_nest(w, [cpp_dim(d) for d in out_batch], body)
