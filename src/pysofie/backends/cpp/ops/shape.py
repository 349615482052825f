"""Layout generators: copies for views that cannot alias, Transpose, Concat, Slice, Gather."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import VIEW_OPS, generates
from .common import loop_nest, strides


@generates(*VIEW_OPS)
def gen_copy(cx):
    # reached only when the output cannot share the input's storage (e.g. it is a graph output)
    cx.w.line(f"std::copy_n({cx.i(0)}, {cx.osize(0)}, {cx.o(0)});")


@generates("Transpose")
def gen_transpose(cx):
    w = cx.w
    perm = cx.op.permutation(cx.node)
    in_shape = list(cx.vin(0).shape)
    st = strides(in_shape)
    out_dims = [cpp_dim(in_shape[p]) for p in perm]
    w.line("size_t pos = 0;")

    def body(vs):
        terms = [f"{v} * {cpp_dim(st[p])}" if cpp_dim(st[p]) != "1" else v for v, p in zip(vs, perm)]
        w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[{' + '.join(terms) if terms else '0'}];")

    loop_nest(w, out_dims, body)


@generates("Concat")
def gen_concat(cx):
    w = cx.w
    out = cx.vout(0)
    axis = cx.op.axis + out.rank if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(out.shape[:axis]))
    out_inner = cpp_dim(numel(out.shape[axis:]))
    w.line("size_t offset = 0;")
    for k, v in enumerate(cx.node.inputs):
        if v is None or not cx.has(k):
            continue
        inner = cpp_dim(numel(v.shape[axis:]))
        with w.loop("o", outer):
            w.line(f"std::copy_n({cx.i(k)} + o * {inner}, {inner}, {cx.o(0)} + o * {out_inner} + offset);")
        w.line(f"offset += {inner};")


@generates("Slice")
def gen_slice(cx):
    w = cx.w
    params = cx.op.params(cx.node)
    in_shape = list(cx.vin(0).shape)
    st = strides(in_shape)
    out_dims = cx.odims(0)
    w.line("size_t pos = 0;")

    def body(vs):
        terms = []
        for v, (start, _stop, step), s in zip(vs, params, st):
            idx = v if step == 1 else f"{v} * {step}" if step > 0 else f"(-{-step}) * static_cast<long long>({v})"
            expr = f"({start} + {idx})" if start != 0 else idx
            terms.append(f"{expr} * {cpp_dim(s)}" if cpp_dim(s) != "1" else expr)
        w.line(f"{cx.o(0)}[pos++] = {cx.i(0)}[{' + '.join(terms) if terms else '0'}];")

    loop_nest(w, out_dims, body)


@generates("Gather")
def gen_gather(cx):
    w = cx.w
    x = cx.vin(0)
    axis = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    outer = cpp_dim(numel(x.shape[:axis]))
    inner = cpp_dim(numel(x.shape[axis + 1:]))
    n_axis = cpp_dim(x.shape[axis])
    n_idx = cx.size(1)
    with w.loop("o", outer):
        with w.loop("j", n_idx):
            w.line(f"long long k = static_cast<long long>({cx.i(1)}[j]);")
            w.line(f"if (k < 0) k += static_cast<long long>({n_axis});")
            w.line(f"if (k < 0 || k >= static_cast<long long>({n_axis})) "
                   f"throw std::out_of_range(\"Gather: index out of range\");")
            w.line(f"std::copy_n({cx.i(0)} + (o * {n_axis} + static_cast<size_t>(k)) * {inner}, {inner}, "
                   f"{cx.o(0)} + (o * {n_idx} + j) * {inner});")


@generates("Dropout")
def gen_dropout(cx):
    # inference: a copy (when the output cannot alias the input) and an all-true mask when requested
    cx.w.line(f"std::copy_n({cx.i(0)}, {cx.osize(0)}, {cx.o(0)});")
    if len(cx.node.outputs) > 1:
        cx.w.line(f"std::fill_n({cx.o(1)}, {cx.osize(1)}, true);")


@generates("SymbolicValue")
def gen_symbolic_value(cx):
    # elements known as size expressions (ops.shape.SymbolicValue)
    T = cx.vout(0).dtype.ctype
    for k, e in enumerate(cx.op.values):
        cx.w.line(f"{cx.o(0)}[{k}] = static_cast<{T}>(int64_t({cpp_dim(e)}));")
