"""If with a run-time condition: both branches ran; copy the chosen one's outputs."""
from __future__ import annotations

from ..emitter import generates


@generates("If")
def gen_if(cx):
    w = cx.w
    n = len(cx.node.outputs)
    w.line(f"const bool take_then = {cx.i(0)}[0] != 0;")
    for k in range(n):
        w.line(f"std::copy_n(take_then ? {cx.i(1 + k)} : {cx.i(1 + n + k)}, {cx.osize(k)}, {cx.o(k)});")
