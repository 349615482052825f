"""Emits ``<name>.cuh`` (a ``Session`` running the model on a CUDA device) for an IR Graph, plus its weights.

The storage plan is the C++ back end's (``CppEmitter._plan``: inputs, outputs, constants, views, slots reused
by liveness); what differs is the target's table: slots and constants are pointers into two device arenas,
every node is a host function that launches grid-stride kernels (or cuBLAS) on the Session's stream, and the
element expressions come from the C++ back end's tables (they are valid device code).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from ... import __version__
from ...ir import DType, Graph, Node
from ..cpp.emitter import VIEW_OPS, CppEmitter, NodeContext, _fmt, _vt
from ..cpp.names import NameTable, comment_text
from ..cpp.writer import CodeWriter

RUNTIME = os.path.join(os.path.dirname(__file__), "runtime", "pysofie_cuda.cuh")
CPP_RUNTIME = os.path.join(os.path.dirname(os.path.dirname(__file__)), "cpp", "runtime", "pysofie_runtime.h")

# op_type -> generator(cx: CudaNodeContext); op_type -> check(node) -> [problems]. Filled by backends.cuda.ops.
GENERATORS: dict[str, Callable] = {}
CHECKS: dict[str, Callable] = {}

# Ops that only move elements: correct on the low-precision types held as bit patterns (as in the C++ back end).
LOWP_OPS = set(VIEW_OPS) | {"Transpose", "Concat", "Slice", "Gather", "Split"}

# The dialect: what the C++ target spells differently (the element expressions themselves are shared).
RESTRICT = "__restrict__"
KERNEL = "__global__ void __launch_bounds__(256)"
GRID_STRIDE = ("for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < pysofie_n; "
               "i += size_t(blockDim.x) * gridDim.x)")
# a block-stride kernel: the blocks take the items blk < pysofie_n in turn, each item done by a block's threads together
BLOCK_STRIDE = "for (size_t blk = blockIdx.x; blk < pysofie_n; blk += gridDim.x)"


def generates(*op_types: str, check: Optional[Callable] = None):
    def deco(fn):
        for t in op_types:
            GENERATORS[t] = fn
            if check is not None:
                CHECKS[t] = check
        return fn
    return deco


def float32_only(node: Node) -> list[str]:
    bad = sorted({v.dtype.name.lower() for v in node.inputs + node.outputs
                  if v is not None and v.dtype is not None and v.dtype is not DType.FLOAT})
    if bad:
        return [f"{node.op_type}: element type {', '.join(bad)} has no CUDA kernel (float only), node '{node.name}'"]
    return []


class CudaNodeContext(NodeContext):
    """NodeContext plus kernels: ``launch(count, body)`` writes a grid-stride kernel over i < count whose
    parameters are the node function's (sizes, inputs, outputs, scratch), and its launch on the stream. A scratch
    count may also be a C++ expression of the size parameters (a string)."""

    def __init__(self, emitter, node, fname):
        super().__init__(emitter, node, fname)
        # (kernel name, body text, extra parameters, loop header: GRID_STRIDE or BLOCK_STRIDE)
        self.kernels: list[tuple[str, str, list, str]] = []

    def launch(self, count: str, body, extra: tuple = (), *, per_block: bool = False) -> None:
        """extra: (declaration, argument) pairs of values the kernel takes besides the node's parameters (a host
        loop's variable). per_block: a block-stride kernel instead: item blk < count is done by one block, whose
        threads share the work (loops from threadIdx.x by blockDim.x) and meet at __syncthreads() between
        phases (every thread of a block takes the same items, so all reach each barrier)."""
        kname = f"{self.fname}_k{len(self.kernels)}"
        kw = CodeWriter()
        if callable(body):
            body(kw)
        else:
            kw.lines(body if isinstance(body, list) else [body])
        self.kernels.append((kname, kw.text(), [d for d, _ in extra], BLOCK_STRIDE if per_block else GRID_STRIDE))
        args = "".join(f"{a}, " for _, a in extra)
        grid = f"pysofie_cuda::grid_blocks({count})" if per_block else f"pysofie_cuda::blocks({count})"
        self.w.line(f"{kname}<<<{grid}, pysofie_cuda::kThreads, 0, stream>>>(size_t({count}), {args}@ARGS@);")


def coords(w: CodeWriter, dims: list[str], prefix: str = "i", flat: str = "i") -> list[str]:
    """Declare the coordinates (prefix0, prefix1, ...) of flat index `flat` in a row-major array of `dims`."""
    names = [f"{prefix}{k}" for k in range(len(dims))]
    if not dims:
        return names
    w.line(f"size_t {prefix}_rest = {flat};")
    for k in range(len(dims) - 1, 0, -1):
        w.line(f"const size_t {names[k]} = {prefix}_rest % {dims[k]};")
        w.line(f"{prefix}_rest /= {dims[k]};")
    w.line(f"const size_t {names[0]} = {prefix}_rest;")
    return names


class CudaEmitter(CppEmitter):
    GENERATORS = GENERATORS
    LOWP_OPS = LOWP_OPS
    TARGET = "CUDA"
    RESTRICT = RESTRICT

    def __init__(self, graph: Graph, *, name: Optional[str] = None, namespace: Optional[str] = None,
                 weights: str = "bin"):
        if weights not in ("dat", "bin"):
            raise ValueError(f"weights for the CUDA target must be 'dat' or 'bin', not {weights!r}")
        super().__init__(graph, name=name, namespace=namespace, weights=weights)
        self.names.reserve("infer_host")

    def _target_check(self, node: Node) -> list[str]:
        chk = CHECKS.get(node.op_type)
        return chk(node) if chk is not None else []

    def _output_copy(self, src: str, count: str, dst: str, v) -> str:
        return (f"pysofie_cuda::check(cudaMemcpyAsync({dst}, {src}, size_t({count}) * sizeof({v.dtype.ctype}), "
                f"cudaMemcpyDeviceToDevice, fStream), \"copying an output\");")

    # -- generation ------------------------------------------------------------------------------------
    def generate(self) -> str:
        g = self.graph
        funcs: list[str] = []
        calls: list[str] = []
        scratch: dict[DType, list[str]] = {}
        fnames = NameTable()
        for idx, n in enumerate(g.nodes):
            if id(n) in self.aliased:
                calls.append(f"// {comment_text(n.name)} ({n.op_type}): a view of its input, no code")
                continue
            fname = fnames.unique(f"op{idx}_{n.op_type}")
            cx = CudaNodeContext(self, n, fname)
            GENERATORS[n.op_type](cx)
            syms = self._node_symbols(n)
            sparams = [p for p in self.params if p in syms]
            decl = [f"[[maybe_unused]] size_t {p}" for p in sparams]
            args = list(sparams)
            offsets = self._buffer_params(n, cx, decl, args)
            for dt, total in offsets.items():
                scratch.setdefault(dt, []).append(total)
            decl.append("int* pysofie_err")
            args.append("fErr")
            pnames = [d.split()[-1] for d in decl]
            for kname, body, extra, header in cx.kernels:
                kw = CodeWriter()
                with kw.block(f"{KERNEL} {kname}(size_t pysofie_n, {', '.join(extra + decl)})"):
                    with kw.block(header):
                        kw.line(body.rstrip("\n"))
                funcs.append(kw.text())
            fw = CodeWriter()
            fw.line(f"// {comment_text(n.name)}: {n.op_type}"
                    f"({', '.join(comment_text(repr(v)) if v else '-' for v in n.inputs)}) -> "
                    f"{', '.join(comment_text(repr(v)) for v in n.outputs)}")
            with fw.block(f"inline void {fname}([[maybe_unused]] cudaStream_t stream, "
                          f"[[maybe_unused]] pysofie_cuda::Blas& blas, "
                          + ", ".join(d if d.startswith("[[") else f"[[maybe_unused]] {d}" for d in decl) + ")"):
                fw.line(cx.w.text().rstrip("\n").replace("@ARGS@", ", ".join(pnames)))
            funcs.append(fw.text())
            calls.append(f"detail::{fname}(fStream, fBlas, {', '.join(args)});")
        self.scratch = scratch
        return self._assemble(funcs, calls)

    def _assemble(self, funcs: list[str], calls: list[str]) -> str:
        g = self.graph
        w = CodeWriter()
        guard = f"PYSOFIE_{self.namespace.upper()}_CUH"
        w.line(f"// {self.name}.cuh: CUDA inference code generated by pysofie {__version__}"
               f" from {comment_text(os.path.basename(g.source) if g.source else g.name)}.")
        w.line("// Depends on the CUDA runtime and cuBLAS. Do not edit: regenerate instead.")
        for v in g.inputs:
            w.line(f"//   input  {comment_text(v.name)}: {v.dtype.name.lower()} {comment_text(_fmt(v.shape))}")
        for v in g.outputs:
            w.line(f"//   output {comment_text(v.name)}: {v.dtype.name.lower()} {comment_text(_fmt(v.shape))}")
        w.line(f"#ifndef {guard}")
        w.line(f"#define {guard}")
        w.line()
        for path in (CPP_RUNTIME, RUNTIME):
            with open(path) as f:
                w.line(f.read().rstrip("\n"))
            w.line()
        for key, code in self.helpers.items():
            if key.startswith("global:"):
                w.line(code.rstrip("\n"))
                w.line()
        with w.block(f"namespace {self.namespace}", close=f"}}  // namespace {self.namespace}"):
            with w.block("namespace detail", close="}  // namespace detail"):
                for key, code in self.helpers.items():
                    if not key.startswith("global:"):
                        w.line(code.rstrip("\n"))
                        w.line()
                for f in funcs:
                    w.line(f.rstrip("\n"))
                    w.line()
            w.line()
            self._session(w, calls)
        w.line(f"#endif  // {guard}")
        return w.text()

    def _session(self, w: CodeWriter, calls: list[str]) -> None:
        from .session_code import write_session
        write_session(self, w, calls)


def slot_bytes(em: CudaEmitter) -> list[tuple[str, str, DType]]:
    """(member name, C++ byte count, element type) of every arena part: slots, then scratch per type."""
    parts = [(s["name"], f"size_t({em._slot_size(s['sizes'])}) * sizeof({_vt(s['dtype'])})", s["dtype"])
             for s in em.slots]
    for dt, sizes in em.scratch.items():
        parts.append((f"fWork_{dt.name.lower()}", f"size_t({em._slot_size(sizes)}) * sizeof({_vt(dt)})", dt))
    return parts


__all__ = ["CudaEmitter", "GENERATORS", "generates", "coords", "slot_bytes", "float32_only"]
