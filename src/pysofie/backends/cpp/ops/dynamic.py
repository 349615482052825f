"""Generators of operators whose output size the data decides at run time (Op.runtime_sizes): the node
function receives the run-time size as a reference and sets it; buffers are sized by its upper bound."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ....ops.base import runtime_symbol
from ..emitter import generates


@generates("NonZero")
def gen_nonzero(cx):
    w = cx.w
    x = cx.vin(0)
    X, Y = cx.i(0), cx.o(0)
    R = runtime_symbol(cx.node)
    n = cx.size(0)
    dims = [cpp_dim(d) for d in x.shape]
    w.line("size_t count = 0;")
    with w.loop("i", n):
        w.line(f"if ({X}[i]) ++count;")
    w.line(f"{R} = count;")
    if not dims:  # a scalar: shape [0, count], nothing to write
        return
    w.line("size_t j = 0;")
    with w.loop("i", n):
        with w.block(f"if ({X}[i])"):
            w.line("size_t rest = i;")
            for d in range(len(dims) - 1, -1, -1):
                w.line(f"{Y}[{d} * count + j] = static_cast<int64_t>(rest % {dims[d]});")
                if d:
                    w.line(f"rest /= {dims[d]};")
            w.line("++j;")
