"""Layout kernels: copies of views that cannot alias, Transpose, Concat, Slice, Gather, Cast: one thread per
output element, which computes the index it reads."""
from __future__ import annotations

from ....ir.shapes import cpp_dim, numel
from ...cpp.ops.common import strides
from ..emitter import VIEW_OPS, coords, generates


def copy(cx, k_in: int = 0, k_out: int = 0) -> None:
    v = cx.vout(k_out)
    cx.w.line(f"pysofie_cuda::check(cudaMemcpyAsync({cx.o(k_out)}, {cx.i(k_in)}, size_t({cx.osize(k_out)}) * "
              f"sizeof({v.dtype.ctype}), cudaMemcpyDeviceToDevice, stream), \"{cx.op.op_type}\");")


@generates(*(VIEW_OPS - {"Dropout"}))
def gen_copy(cx):
    # reached only when the output cannot share the input's storage (e.g. it is a graph output)
    copy(cx)


@generates("Dropout")
def gen_dropout(cx):
    copy(cx)
    if len(cx.node.outputs) > 1:
        cx.launch(cx.osize(1), f"{cx.o(1)}[i] = true;")


@generates("Transpose")
def gen_transpose(cx):
    perm = cx.op.permutation(cx.node)
    in_shape = list(cx.vin(0).shape)
    st = strides(in_shape)
    out_dims = [cpp_dim(in_shape[p]) for p in perm]

    def body(w):
        vs = coords(w, out_dims)
        terms = [f"{v} * {cpp_dim(st[p])}" if cpp_dim(st[p]) != "1" else v for v, p in zip(vs, perm)]
        w.line(f"{cx.o(0)}[i] = {cx.i(0)}[{' + '.join(terms) if terms else '0'}];")

    cx.launch(cx.osize(0), body)


@generates("Concat")
def gen_concat(cx):
    out = cx.vout(0)
    axis = cx.op.axis + out.rank if cx.op.axis < 0 else cx.op.axis
    out_inner = cpp_dim(numel(out.shape[axis:]))

    def body(w):
        w.line(f"const size_t o = i / {out_inner};")
        w.line(f"size_t j = i % {out_inner};")
        for k, v in enumerate(cx.node.inputs):
            if v is None or not cx.has(k):
                continue
            inner = cpp_dim(numel(v.shape[axis:]))
            with w.block(f"if (j < {inner})"):
                w.line(f"{cx.o(0)}[i] = {cx.i(k)}[o * {inner} + j];")
                w.line("continue;")
            w.line(f"j -= {inner};")

    cx.launch(cx.osize(0), body)


@generates("Slice")
def gen_slice(cx):
    params = cx.op.params(cx.node)
    st = strides(list(cx.vin(0).shape))

    def body(w):
        vs = coords(w, cx.odims(0))
        terms = []
        for v, (start, _stop, step), s in zip(vs, params, st):
            idx = v if step == 1 else f"{v} * {step}" if step > 0 else f"(-{-step}) * static_cast<long long>({v})"
            expr = f"({start} + {idx})" if start != 0 else idx
            terms.append(f"{expr} * {cpp_dim(s)}" if cpp_dim(s) != "1" else expr)
        w.line(f"{cx.o(0)}[i] = {cx.i(0)}[{' + '.join(terms) if terms else '0'}];")

    cx.launch(cx.osize(0), body)


@generates("Gather")
def gen_gather(cx):
    x = cx.vin(0)
    axis = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    inner = cpp_dim(numel(x.shape[axis + 1:]))
    n_axis = cpp_dim(x.shape[axis])
    n_idx = cx.size(1)

    def body(w):
        w.line(f"const size_t e = i % {inner};")
        w.line(f"const size_t j = (i / {inner}) % {n_idx};")
        w.line(f"const size_t o = i / ({inner} * {n_idx});")
        w.line(f"long long k = static_cast<long long>({cx.i(1)}[j]);")
        w.line(f"if (k < 0) k += static_cast<long long>({n_axis});")
        # out of range: the Session's error flag (check_errors / infer_host throw), and a defined value here
        with w.block(f"if (k < 0 || k >= static_cast<long long>({n_axis}))"):
            w.line("*pysofie_err = 1;")
            w.line(f"{cx.o(0)}[i] = {cx.octype(0)}();")
            w.line("continue;")
        w.line(f"{cx.o(0)}[i] = {cx.i(0)}[(o * {n_axis} + static_cast<size_t>(k)) * {inner} + e];")

    cx.launch(cx.osize(0), body)


def _cast_check(node):
    v, o = node.inputs[0], node.outputs[0]
    if v.dtype.is_lowp or o.dtype.is_lowp or v.dtype.name == "STRING" or o.dtype.name == "STRING":
        return [f"{node.op_type}: conversion {v.dtype.name.lower()} -> {o.dtype.name.lower()} has no CUDA kernel, "
                f"node '{node.name}'"]
    return []


@generates("Cast", "CastLike", check=_cast_check)
def gen_cast(cx):
    cx.launch(cx.osize(0), f"{cx.o(0)}[i] = static_cast<{cx.octype(0)}>({cx.i(0)}[i]);")


@generates("Split")
def gen_split(cx):
    """One kernel per output: output k's element i of row o (the axes before the split axis) reads row o of the
    input from the start of its part on."""
    x = cx.vin(0)
    a = cx.op.axis + x.rank if cx.op.axis < 0 else cx.op.axis
    in_inner = cpp_dim(numel(x.shape[a:]))
    after = numel(x.shape[a + 1:])
    off = 0
    for k, (s, v) in enumerate(zip(cx.op.sizes(cx.node), cx.node.outputs)):
        if v is not None:
            inner = cpp_dim(numel(v.shape[a:]))
            start = cpp_dim(off * after) if off else "0"
            cx.launch(cx.osize(k), f"{cx.o(k)}[i] = {cx.i(0)}[(i / {inner}) * {in_inner} + {start} + i % {inner}];")
        off = off + s
