"""Layout generators: copies for views that cannot alias, Transpose, Concat, Slice, Gather."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ..emitter import VIEW_OPS, generates
from .common import loop_nest, strides, use_runtime_header


@generates(*VIEW_OPS)
def gen_copy(cx):
    # reached only when the output cannot share the input's storage (e.g. it is a graph output)
    cx.w.line(f"std::copy_n({cx.i(0)}, {cx.osize(0)}, {cx.o(0)});")


PLAIN_CTYPES = {"float", "double", "int64_t", "int32_t", "int16_t", "int8_t", "uint64_t", "uint32_t", "uint16_t",
                "uint8_t", "bool"}


def swapped_groups(shape, perm):
    """(outer, A, B, inner) when the transpose swaps two neighbouring axis groups (after merging the axes that
    stay adjacent and dropping those of size 1): y[o][b][a][i] = x[o][a][b][i]; else None."""
    keep = [k for k in range(len(shape)) if not (isinstance(shape[k], int) and shape[k] == 1)]
    perm = [p for p in perm if p in keep]
    groups = []  # runs of input axes that stay consecutive in the output, in output order
    for p in perm:
        if groups and groups[-1][-1] + 1 == p:
            groups[-1].append(p)
        else:
            groups.append([p])
    order = sorted(range(len(groups)), key=lambda g: groups[g][0])  # input order of the groups
    # output order must be input order with exactly one neighbouring pair swapped
    if len(groups) < 2:
        return None
    for k in range(len(groups) - 1):
        if order[:k] == list(range(k)) and order[k:k + 2] == [k + 1, k] and order[k + 2:] == list(range(k + 2,
                                                                                                     len(groups))):
            ins = sorted(groups, key=lambda g: g[0])  # groups in input order: ..., a-group, b-group, ...
            size = lambda gs: numel([shape[a] for g in gs for a in g])  # noqa: E731
            return size(ins[:k]), size(ins[k:k + 1]), size(ins[k + 1:k + 2]), size(ins[k + 2:])
    return None


@generates("Transpose")
def gen_transpose(cx):
    w = cx.w
    perm = cx.op.permutation(cx.node)
    in_shape = list(cx.vin(0).shape)
    plain = cx.vin(0).dtype is not None and cx.vin(0).dtype.ctype in PLAIN_CTYPES
    sw = swapped_groups(in_shape, list(perm)) if plain else None
    if sw is not None:  # runtime/pysofie_transpose.h
        use_runtime_header(cx, "pysofie_transpose.h")
        o, a, b, i = (cpp_dim(d) for d in sw)
        w.line(f"pysofie_tr::swap_axes({cx.i(0)}, {cx.o(0)}, {o}, {a}, {b}, {i}, &{cx.pool()});")
        return
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


@generates("PysofieScaleTransposeAdd")
def gen_scale_transpose_add(cx):
    """passes/channel_norm.FuseScaleTransposeAdd's node: runtime/pysofie_transpose.h's scale_transpose_add."""
    r = cx.vin(2)
    N, C, P = cpp_dim(r.shape[0]), cpp_dim(r.shape[1]), cpp_dim(numel(r.shape[2:]))
    use_runtime_header(cx, "pysofie_transpose.h")
    g = cx.i(1) if cx.has(1) else "nullptr"
    cx.w.line(f"pysofie_tr::scale_transpose_add({cx.i(0)}, {g}, {cx.i(2)}, {cx.o(0)}, {N}, {C}, {P}, &{cx.pool()});")
