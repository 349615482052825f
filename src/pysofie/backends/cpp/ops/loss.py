"""SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss: per-element losses, then the reduction (double
accumulation)."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import generates


@generates("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss")
def gen_loss(cx):
    w = cx.w
    x = cx.vin(0)
    T = cx.ctype(0)
    sce = cx.op.op_type == "SoftmaxCrossEntropyLoss"
    N = cpp_dim(x.shape[0])
    C = cpp_dim(x.shape[1])
    D = cpp_dim(numel(x.shape[2:]))
    X, L, W = cx.i(0), cx.i(1), cx.i(2)
    Y = cx.o(0)
    red = cx.op.reduction
    ign = cx.op.ignore_index
    if sce:
        # log-softmax over the class axis into log_prob (an output when requested, scratch otherwise)
        lp = cx.o(1) if len(cx.node.outputs) > 1 else cx.scratch(numel(x.shape), x.dtype, "logp")
        with w.loop("n", N):
            with w.loop("d", D):
                w.line(f"const size_t base = n * {C} * {D} + d;")
                w.line("double mx = -std::numeric_limits<double>::infinity();")
                with w.loop("c", C):
                    w.line(f"mx = std::max<double>(mx, {X}[base + c * {D}]);")
                w.line("double s = 0;")
                with w.loop("c", C):
                    w.line(f"s += std::exp(double({X}[base + c * {D}]) - mx);")
                w.line("const double lse = mx + std::log(s);")
                with w.loop("c", C):
                    w.line(f"{lp}[base + c * {D}] = static_cast<{T}>(double({X}[base + c * {D}]) - lse);")
        src = lp
    else:
        src = X
    w.line("double total = 0, wsum = 0;")
    w.line("(void)total; (void)wsum;")
    with w.loop("n", N):
        with w.loop("d", D):
            w.line(f"const int64_t lab = static_cast<int64_t>({L}[n * {D} + d]);")
            w.line("double l = 0, wt = 0;")
            cond = f"lab != int64_t({int(ign)})" if ign is not None else "true"
            with w.block(f"if ({cond})"):
                w.line(f"if (lab >= 0 && lab < int64_t({C})) {{")
                w.line(f"  wt = {f'double({W}[lab])' if W else '1.0'};")
                w.line(f"  l = -double({src}[n * {C} * {D} + size_t(lab) * {D} + d]) * wt;")
                w.line("} else {")
                w.line("  l = std::numeric_limits<double>::quiet_NaN();  // label out of range")
                w.line("  wt = 1.0;")
                w.line("}")
            if red == "none":
                w.line(f"{Y}[n * {D} + d] = static_cast<{T}>(l);")
            else:
                w.line("total += l;")
                w.line("wsum += wt;")
    if red == "sum":
        w.line(f"{Y}[0] = static_cast<{T}>(total);")
    elif red == "mean":
        w.line(f"{Y}[0] = static_cast<{T}>(total / wsum);")
