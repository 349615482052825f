"""Helpers shared by the generators: loop nests, runtime headers."""
from __future__ import annotations

import contextlib
import functools
import os

from ....ir.shapes import Dim, cpp_dim, numel


@functools.lru_cache(maxsize=None)
def _runtime_text(name: str) -> str:
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "runtime", name)) as f:
        return f.read()


def lit(x, ctype: str = "double") -> str:
    """A C++ constant of type ctype for the number x, also when x is inf, -inf or nan (an ONNX attribute may be)."""
    x = float(x)
    if x != x:
        return f"std::numeric_limits<{ctype}>::quiet_NaN()"
    if x in (float("inf"), float("-inf")):
        return f"{'-' if x < 0 else ''}std::numeric_limits<{ctype}>::infinity()"
    return f"{ctype}({x!r})"


# runtime headers that others need inlined before them
HEADER_DEPS = {"pysofie_conv.h": ("pysofie_vmath.h", "pysofie_transpose.h", "pysofie_conv512.h"),
               "pysofie_gemm.h": ("pysofie_vmath.h", "pysofie_gemm512.h"),
               "pysofie_attn.h": ("pysofie_vmath.h", "pysofie_transpose.h"),
               "pysofie_rnn.h": ("pysofie_vmath.h",),
               "pysofie_gemv.h": ("pysofie_gemm.h",),
               "pysofie_depthwise.h": ("pysofie_conv.h",)}


def use_runtime_header(cx, name: str) -> None:
    """Make runtime/<name> (kernels, low-precision types) part of the generated file, once."""
    for dep in HEADER_DEPS.get(name, ()):
        use_runtime_header(cx, dep)
    cx.helper(f"global:{name}", _runtime_text(name))


def strides(shape: list[Dim]) -> list[Dim]:
    out: list[Dim] = [1] * len(shape)
    acc: Dim = 1
    for k in range(len(shape) - 1, -1, -1):
        out[k] = acc
        acc = acc * shape[k]
    return out


def broadcast_strides(in_shape, out_shape) -> list[str]:
    """C++ stride expressions of an input broadcast to out_shape (0 where the input dim is 1 / missing)."""
    r = len(out_shape)
    pad = [1] * (r - len(in_shape)) + list(in_shape)
    st = strides(pad)
    res = []
    for k in range(r):
        d = pad[k]
        res.append("0" if (isinstance(d, int) and d == 1 and not (isinstance(out_shape[k], int) and out_shape[k] == 1))
                   else cpp_dim(st[k]))
    return res


def loop_nest(w, dims: list[str], body, index_vars: str = "i"):
    """Nested loops over dims; body(vars) writes the innermost statements. Returns nothing."""
    vars_ = [f"{index_vars}{k}" for k in range(len(dims))]

    def rec(k):
        if k == len(dims):
            body(vars_)
            return
        with w.loop(vars_[k], dims[k]):
            rec(k + 1)

    rec(0)


def axis_extents(shape, axis: int, flatten_rest: bool = False) -> tuple[str, str, str]:
    """(outer, n, inner) as C++ expressions for walking `shape` along `axis`: element (o, k, j) is at
    (o * n + k) * inner + j. flatten_rest treats every axis from `axis` on as one (Softmax before opset 13)."""
    outer = cpp_dim(numel(shape[:axis]))
    if flatten_rest:
        return outer, cpp_dim(numel(shape[axis:])), "1"
    return outer, cpp_dim(shape[axis]), cpp_dim(numel(shape[axis + 1:]))


def reduction_index(shape, axes: list[int]):
    """index(kept_vars, reduced_vars) -> C++ flat index of an element of `shape`, given loop variables for the
    axes not in `axes` (in order) and for the reduced `axes` (in their order)."""
    st = strides(list(shape))
    kept = [k for k in range(len(shape)) if k not in axes]

    def index(kv, rv):
        terms = []
        for k in range(len(shape)):
            v = kv[kept.index(k)] if k in kept else rv[axes.index(k)]
            s = cpp_dim(st[k])
            terms.append(v if s == "1" else f"{v} * {s}")
        return " + ".join(terms) if terms else "0"

    return index


# elements per task of a parallel elementwise loop: below, waking threads costs more than it saves
PAR_GRAIN = 1 << 14


@contextlib.contextmanager
def flat_loop(cx, count: str, var: str = "i"):
    """for (size_t var = 0; var < count; ++var) { ... } whose iterations are independent: spread over the Session's
    threads in chunks of at least PAR_GRAIN (a plain loop when count is a small constant)."""
    w = cx.w
    try:
        small = int(count) < 2 * PAR_GRAIN
    except ValueError:
        small = False
    if small:
        with w.loop(var, count):
            yield
        return
    w.open(f"{cx.pool()}.run_range({count}, {PAR_GRAIN}, [&](long {var}0, long {var}1, int)")
    with w.block(f"for (size_t {var} = size_t({var}0); {var} < size_t({var}1); ++{var})"):
        yield
    w.close("});")
