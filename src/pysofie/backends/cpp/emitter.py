"""Emits a standalone C++ header (``<name>.hxx``) with a ``Session`` for an IR Graph, plus its weights.

Order of work (as in SOFIE): plan storage for every value, generate one small function per node (its
parameters carry the spec's names: X, W, B, Y), then assemble the Session whose ``infer`` only declares
pointers and calls those functions. Op families register their generators in ``ops/`` of this package.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, Optional

import numpy as np

from ... import __version__
from ...errors import UnsupportedOperatorError
from ...ir import DType, Graph, Node, Value
from ...ir.shapes import Dim, Sym, cpp_dim, cpp_symbol_names, nonneg, numel, shape_symbols
from .names import NameTable, c_string, comment_text, macro_like, sanitize, short_identifier
from .writer import CodeWriter

RUNTIME_HEADER = os.path.join(os.path.dirname(__file__), "runtime", "pysofie_runtime.h")
THREADS_HEADER = os.path.join(os.path.dirname(__file__), "runtime", "pysofie_threads.h")

# op_type -> generator(cx: NodeContext) -> None. Filled by the modules of backends.cpp.ops.
GENERATORS: dict[str, Callable] = {}


def generates(*op_types: str):
    def deco(fn):
        for t in op_types:
            GENERATORS[t] = fn
        return fn
    return deco


# Ops whose output holds the input's elements unchanged: their output shares the input's storage.
VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}

# Ops whose generated code is correct on low-precision types (float16, bfloat16, float8, int4..., held as bit
# patterns, see DType.is_lowp): they only move elements. Conversions register themselves (ops/cast.py). Any other
# op touching such a type is refused, whatever its own check() says, rather than computing on bit patterns.
LOWP_OPS = set(VIEW_OPS) | {"Transpose", "Concat", "Slice", "Gather", "Shape", "Size"}


@dataclasses.dataclass
class Storage:
    kind: str  # "input", "output", "const", "slot", "alias"
    expr: str  # C++ expression of the data pointer inside infer()
    root: Optional[Value] = None


class NodeContext:
    """What a generator sees: the node, its parameter names and shapes, and a writer for the body."""

    def __init__(self, emitter: "CppEmitter", node: Node, fname: str):
        self.em = emitter
        self.node = node
        self.op = node.op
        self.fname = fname
        self.w = CodeWriter()
        self.params: list[tuple[str, str]] = []  # (declaration, call argument)
        self._in_names: dict[int, str] = {}
        self._out_names: dict[int, str] = {}
        self._scratch: list[tuple[str, DType, Dim]] = []
        self._thread_scratch: list[tuple[str, DType, Dim]] = []
        self._pool: Optional[str] = None
        self.size_w: Optional[CodeWriter] = None  # the size phase of a node deciding an unbounded size
        runtime = set(node.op.runtime_inputs(node))
        spec = list(node.op.INPUTS)
        # a size parameter named like a spec name (B, X) stays apart
        names = NameTable(reserved=list(emitter.params) + list(emitter.rt_sizes))
        for i, v in enumerate(node.inputs):
            if v is None or i not in runtime:
                continue
            if spec and spec[-1].endswith("*") and i >= len(spec) - 1:
                base = f"{spec[-1][:-1]}_{i - len(spec) + 1}"
            else:
                base = spec[i] if i < len(spec) else f"input_{i}"
            self._in_names[i] = names.unique(base)
        ospec = list(node.op.OUTPUTS)
        for i, v in enumerate(node.outputs):
            base = ospec[i] if i < len(ospec) else f"output_{i}"
            self._out_names[i] = names.unique(base)
        self._names = names

    # -- queries for generators ------------------------------------------------------------------------
    def i(self, k: int) -> Optional[str]:
        """Parameter name of input k inside the node function (None when absent or not read at run time)."""
        return self._in_names.get(k)

    def o(self, k: int = 0) -> str:
        return self._out_names[k]

    def has(self, k: int) -> bool:
        return k in self._in_names

    def vin(self, k: int) -> Value:
        return self.node.inputs[k]

    def vout(self, k: int = 0) -> Value:
        return self.node.outputs[k]

    def const(self, k: int) -> Optional[np.ndarray]:
        v = self.node.input(k)
        return None if v is None else v.const

    def dims(self, k: int) -> list[str]:
        return [cpp_dim(d) for d in self.node.inputs[k].shape]

    def odims(self, k: int = 0) -> list[str]:
        return [cpp_dim(d) for d in self.node.outputs[k].shape]

    def size(self, k: int) -> str:
        return cpp_dim(numel(self.node.inputs[k].shape))

    def osize(self, k: int = 0) -> str:
        return cpp_dim(numel(self.node.outputs[k].shape))

    def ctype(self, k: int = 0) -> str:
        return self.node.inputs[k].dtype.ctype

    def octype(self, k: int = 0) -> str:
        return self.node.outputs[k].dtype.ctype

    def scratch(self, count: Dim, dtype: DType = DType.FLOAT, name: str = "work") -> str:
        """A temporary buffer of `count` elements, owned by the Session and shared by all nodes."""
        pname = self._names.unique(name)
        self._scratch.append((pname, dtype, count))
        return pname

    def thread_scratch(self, count: Dim, dtype: DType = DType.FLOAT, name: str = "work") -> tuple[str, str]:
        """A temporary buffer of `count` elements for each thread of the Session's pool: returns (name, stride);
        the thread tid of a parallel region uses name + tid * stride."""
        pname = self._names.unique(name)
        padded = (count + 15) // 16 * 16 + 16 if isinstance(count, int) else count + 16  # own cache lines
        self._thread_scratch.append((pname, dtype, padded))
        return pname, cpp_dim(padded)

    def pool(self) -> str:
        """Name of the Session's thread pool (runtime/pysofie_threads.h) inside the node function."""
        if self._pool is None:
            self._pool = self._names.unique("pool")
        return self._pool

    def size_writer(self) -> CodeWriter:
        """The body of the node's size phase: a function run before the node that sets the run-time size(s) the
        node decides without a bound (Op.runtime_sizes gives None), from the same inputs, so that the Session
        grows the output buffers first. The node function itself then reads the size."""
        if self.size_w is None:
            self.size_w = CodeWriter()
        return self.size_w

    def helper(self, key: str, code: str) -> None:
        """A function shared by several nodes, emitted once (in the model's detail namespace)."""
        self.em.helpers.setdefault(key, code)

    def unique(self, base: str) -> str:
        return self._names.unique(base)

    def describe(self) -> str:
        return self.node.describe()


class CppEmitter:
    # what a target subclass replaces: its generator registry, the ops that take low-precision types, its name
    GENERATORS = GENERATORS
    LOWP_OPS = LOWP_OPS
    TARGET = "C++"

    def __init__(self, graph: Graph, *, name: Optional[str] = None, namespace: Optional[str] = None,
                 weights: str = "dat"):
        if weights not in ("dat", "bin", "embed", "root"):
            raise ValueError(f"weights must be 'dat', 'bin', 'embed' or 'root', not {weights!r}")
        self.graph = graph
        # the name also names files: long names are shortened (with a hash, so they stay distinct)
        self.name = short_identifier(sanitize(name or graph.name or "model"))
        self.namespace = short_identifier(sanitize(namespace)) if namespace else f"SOFIE_{self.name}"
        self.weights = weights
        self.helpers: dict[str, str] = {}
        self.names = NameTable(reserved={"infer", "Session", "detail", "ensure_capacity", "weight_file",
                                         "fPool", "set_num_threads", "num_threads", "ensure_thread_capacity"})
        self.params = list(graph.size_params)  # the graph's symbol names, in the order infer() takes them
        # While code is written, a size parameter is a placeholder no generator can produce; generate() then gives it
        # the symbol's own (sanitized) name unless any identifier of the finished text has it (a loop counter n, a
        # member, a macro of the runtime header): size parameters never shadow nor are shadowed by a local name.
        self._ph = {p: f"PysofieSize{k}Q" for k, p in enumerate(self.params)}
        self.cpp_params: dict[str, str] = dict(self._ph)  # final C++ identifiers, known after generate()
        for p in self._ph.values():
            self.names.reserve(p)
        self._plan()

    # -- planning --------------------------------------------------------------------------------------
    def _plan(self) -> None:
        g = self.graph
        problems = []
        for n in g.nodes:
            if n.op_type not in self.GENERATORS:
                problems.append(f"{n.op_type}: no {self.TARGET} generator for this operator, node '{n.name}'")
                continue
            problems += self._target_check(n)
            if n.op_type not in self.LOWP_OPS:
                lowp = sorted({v.dtype.name.lower() for v in n.inputs + n.outputs
                               if v is not None and v.dtype is not None and v.dtype.is_lowp})
                if lowp:
                    problems.append(f"{n.op_type}: element type {', '.join(lowp)} is not supported by this operator "
                                    f"(only Cast/CastLike and data movement take it), node '{n.name}'")
        if problems:
            raise UnsupportedOperatorError(problems, g.source)
        self._plan_runtime_sizes()
        self.storage: dict[int, Storage] = {}
        self.input_names = [self.names.unique(v.name, "tensor_") for v in g.inputs]
        for v, nm in zip(g.inputs, self.input_names):
            self.storage[id(v)] = Storage("input", nm, v)
        self.output_names = [self.names.unique(v.name, "out_") for v in g.outputs]
        # buffers to grow before a node runs (sizes with no bound known before the run): {id(node): [(vector, size)]}
        self.grow_at: dict[int, list[tuple[str, Dim]]] = {}
        # outputs written in place by their producer (first occurrence of a produced value); an output of such a
        # size is a std::vector the caller-buffer infer resizes
        for k, v in enumerate(g.outputs):
            if id(v) not in self.storage and v.producer is not None:
                nm = self.output_names[k]
                if self.grown_output(k):
                    self.storage[id(v)] = Storage("output", _dp(v.dtype, nm), v)
                    self.grow_at.setdefault(id(v.producer), []).append((nm, self.bounded(numel(v.shape))))
                else:
                    self.storage[id(v)] = Storage("output", nm, v)
        # constants read at run time
        self.consts: list[tuple[Value, str]] = []
        # ids of the values whose data the generated code reads (graph outputs included)
        self.runtime_reads: set[int] = {id(v) for v in g.outputs}
        for n in g.nodes:
            for i in n.op.runtime_inputs(n):
                if n.inputs[i] is not None:
                    self.runtime_reads.add(id(n.inputs[i]))
        for v in g.values():
            if v.const is not None and v.producer is None and id(v) in self.runtime_reads and id(v) not in self.storage:
                cname = self.names.unique(v.name, "")
                expr = f"detail::kTensor_{cname}" if self.weights == "embed" else _dp(v.dtype, f"fTensor_{cname}")
                self.storage[id(v)] = Storage("const", expr, v)
                self.consts.append((v, cname))
        # views alias their input's storage; everything else gets a slot
        self.aliased: set[int] = set()
        for n in g.nodes:
            out = n.outputs[0]
            if n.op_type in VIEW_OPS and len(n.outputs) == 1 and id(out) not in self.storage \
                    and n.inputs[0] is not None:
                src = self.storage.get(id(n.inputs[0]))
                if src is not None:
                    self.storage[id(out)] = Storage("alias", "", src.root)
                    self.aliased.add(id(n))
            else:
                for v in n.outputs:
                    if id(v) not in self.storage:
                        self.storage[id(v)] = Storage("slot", "", v)
        # liveness of each slot-held root: alias uses extend it
        root_end: dict[int, int] = {}
        for idx, n in enumerate(g.nodes):
            for v in n.inputs:
                st = self.storage.get(id(v)) if v is not None else None
                if st is not None and st.root is not None:
                    root_end[id(st.root)] = max(root_end.get(id(st.root), -1), idx)
        # greedy slot assignment
        self.slots: list[dict] = []  # {dtype, sizes: [Dim], name, free_after: int}
        for idx, n in enumerate(g.nodes):
            for v in n.outputs:
                st = self.storage[id(v)]
                if st.kind != "slot" or st.expr:
                    continue
                size = self.bounded(numel(v.shape))
                end = root_end.get(id(v), idx)
                best = None
                for s in self.slots:
                    if s["dtype"] is v.dtype and s["free_after"] < idx:
                        if best is None or (size in s["sizes"] and size not in best["sizes"]):
                            best = s
                if best is None:
                    best = {"dtype": v.dtype, "sizes": [], "name": f"fSlot{len(self.slots)}", "free_after": -1}
                    self.slots.append(best)
                if not any(_same(size, x) for x in best["sizes"]):
                    best["sizes"].append(size)
                best["free_after"] = max(end, idx)
                st.expr = _dp(v.dtype, best['name'])
                if self.grows(size):
                    self.grow_at.setdefault(id(n), []).append((best["name"], size))
        # views read their root's storage
        for st in self.storage.values():
            if st.kind == "alias":
                st.expr = self.storage[id(st.root)].expr

    def _plan_runtime_sizes(self) -> None:
        """Sizes decided by data at run time (Op.runtime_sizes): {symbol: upper bound over the size parameters}.
        Buffers are sized by the bounds; infer computes the sizes (locals passed on to later nodes) and keeps the
        last ones for last_sizes() and the allocating infer."""
        self.rt_sizes: dict[str, Optional[Dim]] = {}
        self.rt_producer: dict[str, int] = {}
        self.unbounded: set[str] = set()  # sizes with no bound before the run (a Range over data): grown buffers
        for n in self.graph.nodes:
            for sym, bound in n.op.runtime_sizes(n).items():
                if sym in self.rt_sizes or sym in self.params:
                    raise UnsupportedOperatorError(
                        [f"{n.describe()}: run-time size '{sym}' is named like another size"], self.graph.source)
                if bound is None and self.TARGET != "C++":
                    raise UnsupportedOperatorError([f"{n.describe()}: an output size with no bound known before the "
                                                    f"run is not supported by the {self.TARGET} back end"],
                                                   self.graph.source)
                if bound is None:
                    self.unbounded.add(sym)
                self.rt_sizes[sym] = None if bound is None else self.bounded(bound)
                self.rt_producer[sym] = id(n)
                self.names.reserve(sym)
                self.names.reserve(f"fRt_{sym}")

    def bounded(self, d: Dim) -> Dim:
        """`d` with each run-time size replaced by its upper bound (a Dim over the size parameters). A size with no
        bound (and one inside a compound factor) stays: see grows()."""
        rt = getattr(self, "rt_sizes", None)
        if not rt or not isinstance(d, Sym) or not (d.symbols() & set(rt)):
            return d
        total: Dim = 0
        for mono, coef in d.terms.items():
            term: Dim = coef
            for sym in mono:
                term = term * (rt[sym] if rt.get(sym) is not None else Sym.var(sym))
            total = total + term
        return total

    def grows(self, d: Dim) -> bool:
        """Whether a buffer of (bounded) size `d` is grown at run time, before the node that writes it: its size
        still names a run-time size (one without a bound, or one that bounded() cannot replace). infer knows
        those sizes by then, as the nodes deciding them ran before."""
        return isinstance(d, Sym) and bool(d.symbols() & set(getattr(self, "rt_sizes", ())))

    def grown_output(self, k: int) -> bool:
        """Whether graph output k is a std::vector of the caller-buffer infer (its size has no bound before the run)."""
        return self.grows(self.bounded(numel(self.graph.outputs[k].shape)))

    def _target_check(self, node: Node) -> list[str]:
        """Problems of a node that this target's generator cannot handle (none for C++: its check is the op's)."""
        return []

    # -- generation ------------------------------------------------------------------------------------
    def generate(self) -> str:
        with cpp_symbol_names(self._ph):
            text = self._generate()
        # The runtime's own headers (inlined verbatim) live in their namespaces and are called qualified: their local
        # names (an sgemm's N) do not count, only their macros, which are all capitals (see macro_like).
        code = text
        with open(RUNTIME_HEADER) as f:
            library = [f.read().rstrip("\n")] + [c.rstrip("\n") for k, c in self.helpers.items() if k.startswith("global:")]
        for chunk in library:
            code = code.replace(chunk, "")
        code = re.sub(r'"(?:\\.|[^"\\\n])*"', '""', code)  # identifiers inside strings and comments do not count
        code = re.sub(r"//[^\n]*", "", code)
        taken = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code)) - set(self._ph.values())
        table = NameTable(reserved=taken)
        for p, ph in self._ph.items():
            base = sanitize(p)
            self.cpp_params[p] = table.unique(base + "_d" if macro_like(base) else base)
        for p, ph in self._ph.items():
            text = text.replace(ph, self.cpp_params[p])
        return text

    def _generate(self) -> str:
        g = self.graph
        funcs: list[str] = []
        calls: list[str] = []
        scratch: dict[DType, list[Dim]] = {}
        thread_scratch: dict[DType, list[Dim]] = {}
        fnames = NameTable()
        for idx, n in enumerate(g.nodes):
            if id(n) in self.aliased:
                calls.append(f"// {comment_text(n.name)} ({n.op_type}): a view of its input, no code")
                continue
            fname = fnames.unique(f"op{idx}_{n.op_type}")
            cx = NodeContext(self, n, fname)
            GENERATORS[n.op_type](cx)
            syms = self._node_symbols(n)
            sparams = [self._ph[p] for p in self.params if p in syms]
            decl = [f"[[maybe_unused]] size_t {p}" for p in sparams]
            args = list(sparams)
            sized = []  # sizes without a bound that this node decides in its size phase
            for sym in self.rt_sizes:  # run-time sizes: this node decides it (a reference), or reads it
                if self.rt_producer[sym] == id(n) and sym in self.unbounded:
                    sized.append(sym)
                    decl.append(f"[[maybe_unused]] size_t {sym}")
                    args.append(sym)
                elif self.rt_producer[sym] == id(n):
                    decl.append(f"size_t& {sym}")
                    args.append(sym)
                elif sym in syms:
                    decl.append(f"[[maybe_unused]] size_t {sym}")
                    args.append(sym)
            def size_phase() -> None:  # after the inputs' parameters, before the outputs'
                if not sized:
                    return
                if cx.size_w is None:
                    raise UnsupportedOperatorError([f"{n.describe()}: its output size has no bound known before the "
                                                    "run, and its generator writes no size phase"], g.source)
                sdecl = [f"size_t& {x.split()[-1]}" if x.split()[-1] in sized else x for x in decl]
                fw = CodeWriter()
                fw.line(f"// {comment_text(n.name)}: the size{'s' if len(sized) > 1 else ''} {', '.join(sized)} "
                        "that the data decides (the buffers grow to it before the node runs)")
                with fw.block(f"inline void {fname}_size({', '.join(sdecl)})"):
                    fw.line(cx.size_w.text().rstrip("\n"))
                funcs.append(fw.text())
                calls.append(f"detail::{fname}_size({', '.join(args)});")

            offsets = self._buffer_params(n, cx, decl, args, after_inputs=size_phase)
            grow = [(vec, size, "") for vec, size in self.grow_at.get(id(n), [])]  # grown before the call
            for dt, total in offsets.items():
                scratch.setdefault(dt, [])
                if self.grows(total):
                    grow.append((f"fWork_{dt.name.lower()}", total, ""))
                else:
                    scratch[dt].append(total)
            # per-thread scratch: buffer k of a node holds threads x its padded count, after the node's earlier ones
            toffs: dict[DType, Dim] = {}
            for pname, dt, count in cx._thread_scratch:
                count = self.bounded(count)
                off = toffs.get(dt, 0)
                decl.append(f"[[maybe_unused]] {dt.ctype}* __restrict {pname}")
                base = _dp(dt, f"fWorkT_{dt.name.lower()}")
                args.append(base if isinstance(off, int) and off == 0 else
                            f"{base} + size_t(fPool.size()) * size_t({cpp_dim(off)})")
                toffs[dt] = off + count
            for dt, total in toffs.items():
                thread_scratch.setdefault(dt, [])
                if self.grows(total):
                    grow.append((f"fWorkT_{dt.name.lower()}", total, " * size_t(fPool.size())"))
                else:
                    thread_scratch[dt].append(total)
            if cx._pool is not None:
                decl.append(f"[[maybe_unused]] pysofie_par::Pool& {cx._pool}")
                args.append("fPool")
            fw = CodeWriter()
            fw.line(f"// {comment_text(n.name)}: {n.op_type}"
                    f"({', '.join(comment_text(repr(v)) if v else '-' for v in n.inputs)}) -> "
                    f"{', '.join(comment_text(repr(v)) for v in n.outputs)}")
            with fw.block(f"inline void {fname}({', '.join(decl)})"):
                fw.line(cx.w.text().rstrip("\n"))
            funcs.append(fw.text())
            for vec, size, times in grow:
                sz = f"size_t({self._slot_size([size])}){times}"
                calls.append(f"if ({vec}.size() < size_t({sz})) {vec}.resize({sz});")
            calls.append(f"detail::{fname}({', '.join(args)});")
        self.scratch = scratch
        self.thread_scratch = thread_scratch
        return self._assemble(funcs, calls)

    @staticmethod
    def _node_symbols(n: Node) -> set:
        """The size symbols a node's code uses: of its values' shapes, and of values that are size expressions
        (Range's start)."""
        syms = set()
        for v in n.inputs + n.outputs:
            if v is not None and v.shape is not None:
                syms |= shape_symbols(v.shape)
            if v is not None and v.sym is not None:
                syms |= shape_symbols(v.sym)
        return syms

    @staticmethod
    def _write_capacity_check(w: CodeWriter, P: list[str]) -> None:
        """Start of ensure_capacity(sizes): return unless a size exceeds the capacity (fCap_<p>) held; else raise
        the capacities and size everything with them, not with the current call's values."""
        if not P:
            return
        cond = " || ".join(f"{p} > fCap_{p}" for p in P)
        w.line(f"if (!({cond}) && fCap_{P[0]} != 0) return;")
        for p in P:
            w.line(f"fCap_{p} = std::max(fCap_{p}, {p});")
        for p in P:
            w.line(f"{p} = fCap_{p};")

    # The target's spelling of a restrict-qualified pointer parameter.
    RESTRICT = "__restrict"

    def _buffer_params(self, n: Node, cx: "NodeContext", decl: list[str], args: list[str],
                       after_inputs: Optional[Callable[[], None]] = None) -> dict:
        """Appends the parameters of a node's function for its inputs, outputs and scratch buffers (declarations
        to decl, the Session's arguments to args). Returns the node's scratch count per element type: a Dim, or a
        C++ expression (str) where a target's kernel sizes its scratch with one."""
        for i, pname in cx._in_names.items():
            v = n.inputs[i]
            decl.append(f"[[maybe_unused]] const {v.dtype.ctype}* {self.RESTRICT} {pname}")
            args.append(self.storage[id(v)].expr)
        if after_inputs is not None:
            after_inputs()
        for i, pname in cx._out_names.items():
            v = n.outputs[i]
            decl.append(f"{v.dtype.ctype}* {self.RESTRICT} {pname}")
            args.append(self.storage[id(v)].expr)
        # a node's scratch buffers of one type lie one after the other in the shared workspace
        offsets: dict[DType, Dim] = {}
        for pname, dt, count in cx._scratch:
            count = self.bounded(count) if not isinstance(count, str) else count
            off = offsets.get(dt, 0)
            decl.append(f"[[maybe_unused]] {dt.ctype}* {self.RESTRICT} {pname}")
            base = _dp(dt, f"fWork_{dt.name.lower()}")
            args.append(base if isinstance(off, int) and off == 0 else f"{base} + {_dim_text(off)}")
            offsets[dt] = off + count if not isinstance(off, str) and not isinstance(count, str) else \
                f"{_dim_text(off)} + {_dim_text(count)}"
        return offsets

    def _slot_size(self, sizes: list) -> str:
        """C++ expression of the largest of sizes (Dims, or C++ expressions of the size parameters)."""
        ints = [s for s in sizes if isinstance(s, int)]
        syms = [s for s in sizes if not isinstance(s, int)]
        # a size that is negative for small parameters (a convolution's output over a short input) counts as 0:
        # the constructor sizes the buffers for parameters of 1, and infer's guards reject such inputs
        parts = ([str(max(ints))] if ints else []) + [
            f"({s})" if isinstance(s, str) else
            cpp_dim(s) if nonneg(s) else f"std::max<int64_t>(int64_t({cpp_dim(s)}), 0)" for s in syms]
        parts = list(dict.fromkeys(parts))
        if len(parts) == 1:
            return parts[0]
        return "std::max<size_t>({" + ", ".join(f"size_t({p})" for p in parts) + "})"

    def _assemble(self, funcs: list[str], calls: list[str]) -> str:
        g = self.graph
        w = CodeWriter()
        guard = f"PYSOFIE_{self.namespace.upper()}_HXX"
        w.line(f"// {self.name}.hxx: inference code generated by pysofie {__version__}"
               f" from {comment_text(os.path.basename(g.source) if g.source else g.name)}.")
        w.line("// Depends only on a BLAS (sgemm). Do not edit: regenerate instead.")
        for v, nm in zip(g.inputs, self.input_names):
            w.line(f"//   input  {comment_text(v.name)}: {v.dtype.name.lower()} {comment_text(_fmt(v.shape))}")
        for v in g.outputs:
            w.line(f"//   output {comment_text(v.name)}: {v.dtype.name.lower()} {comment_text(_fmt(v.shape))}")
        for sym, bound in self.rt_sizes.items():
            w.line(f"//   {sym}: a size decided by the data at run time (Session::last_sizes()), "
                   f"{comment_text(_bound_text(bound))}")
        w.line(f"#ifndef {guard}")
        w.line(f"#define {guard}")
        w.line()
        for header in (RUNTIME_HEADER, THREADS_HEADER):
            with open(header) as f:
                w.line(f.read().rstrip("\n"))
            w.line()
        if self.weights == "root":  # the constructor reads a SOFIE .root weight file (root_weights.py)
            w.lines(["#include <TFile.h>", "#include <memory>", "#include <type_traits>", ""])
        # helpers registered under a key starting with "global:" are file-scope code (their own include guard)
        for key, code in self.helpers.items():
            if key.startswith("global:"):
                w.line(code.rstrip("\n"))
                w.line()
        with w.block(f"namespace {self.namespace}", close=f"}}  // namespace {self.namespace}"):
            with w.block("namespace detail", close="}  // namespace detail"):
                if self.weights == "embed":
                    for v, cname in self.consts:
                        w.line(_embedded_array(v, cname))
                for key, code in self.helpers.items():
                    if key.startswith("global:"):
                        continue
                    w.line(code.rstrip("\n"))
                    w.line()
                for f in funcs:
                    w.line(f.rstrip("\n"))
                    w.line()
            w.line()
            from .gnn_shim import gnn_data_struct
            prelude = gnn_data_struct(self)
            if prelude:
                w.line(prelude)
            self._session(w, calls)
        w.line(f"#endif  // {guard}")
        return w.text()

    def _session(self, w: CodeWriter, calls: list[str]) -> None:
        g = self.graph
        P = [self._ph[p] for p in self.params]
        default_file = "" if self.weights == "embed" else f"{self.name}.{self.weights}"
        with w.block("struct Session", close="};"):
            if self.weights != "embed":
                for v, cname in self.consts:
                    w.line(f"pysofie_rt::avector<{_vt(v.dtype)}> fTensor_{cname} = "
                           f"pysofie_rt::avector<{_vt(v.dtype)}>({max(1, int(v.const.size))});")
            for s in self.slots:
                w.line(f"pysofie_rt::avector<{_vt(s['dtype'])}> {s['name']};")
            for dt in self.scratch:
                w.line(f"pysofie_rt::avector<{_vt(dt)}> fWork_{dt.name.lower()};")
            for dt in self.thread_scratch:
                w.line(f"pysofie_rt::avector<{_vt(dt)}> fWorkT_{dt.name.lower()};  // per-thread scratch")
            for p in P:
                w.line(f"size_t fCap_{p} = 0;  // buffers are sized for {p} up to this")
            for sym, bound in self.rt_sizes.items():
                w.line(f"size_t fRt_{sym} = 0;  // decided by the data at run time, " + _bound_text(bound))
            w.line("pysofie_par::Pool fPool;  // intra-op threads (set_num_threads); one by default")
            w.line()
            if self.rt_sizes:
                w.line("// The sizes the data decided in the last infer call, in this order: "
                       + ", ".join(self.rt_sizes) + ".")
                w.line("// Outputs whose shapes use them are written with their true (contiguous) shapes into")
                w.line("// buffers sized for the upper bounds given in the header comment; an output whose size has")
                w.line("// no bound before the run is a std::vector that infer resizes to its true length.")
                with w.block("std::vector<size_t> last_sizes() const"):
                    w.line(f"return {{{', '.join(f'fRt_{s}' for s in self.rt_sizes)}}};")
                w.line()
            # constructor
            sig = ["std::string weight_file = " + _cstr(default_file)] + [f"size_t {p} = 1" for p in P]
            attr = "[[maybe_unused]] " if self.weights == "embed" else ""
            sig[0] = attr + sig[0]
            with w.block(f"explicit Session({', '.join(sig)})"):
                if self.weights == "dat" and self.consts:
                    w.line("pysofie_rt::DatReader reader(weight_file);")
                    for v, cname in self.consts:
                        w.line(f"reader.read<{v.dtype.ctype}>({_cstr(cname)}, {_dp(v.dtype, f'fTensor_{cname}')}, {int(v.const.size)});")
                    w.line("reader.finish();")
                elif self.weights == "bin" and self.consts:
                    w.line("pysofie_rt::BinReader reader(weight_file);")
                    for v, cname in self.consts:
                        w.line(f"reader.read<{v.dtype.ctype}>({_cstr(cname)}, {_dp(v.dtype, f'fTensor_{cname}')}, "
                               f"{int(v.const.size)}, {v.dtype.onnx});")
                    w.line("reader.finish();")
                elif self.weights == "root" and self.consts:
                    from .root_weights import constructor_lines
                    w.lines(constructor_lines(self.name, [(cname, v.dtype.ctype, _dp(v.dtype, f"fTensor_{cname}"),
                                                           int(v.const.size)) for v, cname in self.consts]))
                elif self.weights != "embed":
                    w.line("(void)weight_file;")
                w.line(f"ensure_capacity({', '.join(P)});")
            w.line()
            # capacity management: buffers grow only when a size parameter exceeds what they hold
            psig = ", ".join(f"size_t {p}" for p in P)
            with w.block(f"void ensure_capacity({psig})"):
                self._write_capacity_check(w, P)
                for s in self.slots:
                    sizes = [x for x in s["sizes"] if not self.grows(x)]  # the others grow in infer
                    if sizes:
                        w.line(f"if ({s['name']}.size() < size_t({self._slot_size(sizes)})) "
                               f"{s['name']}.resize({self._slot_size(sizes)});")
                for dt, sizes in self.scratch.items():
                    if not sizes:
                        continue
                    sz = self._slot_size(sizes)
                    w.line(f"if (fWork_{dt.name.lower()}.size() < size_t({sz})) fWork_{dt.name.lower()}.resize({sz});")
                w.line("ensure_thread_capacity();")
            w.line()
            with w.block("void ensure_thread_capacity()"):
                for p in P:
                    w.line(f"[[maybe_unused]] const size_t {p} = fCap_{p};")
                for dt, sizes in self.thread_scratch.items():
                    if not sizes:
                        continue
                    nm = f"fWorkT_{dt.name.lower()}"
                    sz = f"size_t({self._slot_size(sizes)}) * size_t(fPool.size())"
                    w.line(f"if ({nm}.size() < {sz}) {nm}.resize({sz});")
            w.line()
            w.line("// Intra-op threads: the kernels of infer() run on n threads (n < 1 counts as 1; default 1).")
            w.line("// Results do not depend on n beyond the rounding of sums done in another order.")
            with w.block("void set_num_threads(int n)"):
                w.line("fPool.resize(n);")
                w.line("ensure_thread_capacity();")
            w.line("int num_threads() const { return fPool.size(); }")
            w.line()
            # non-allocating infer
            w.line("// Runs the model, writing the outputs to caller-owned buffers. Allocates nothing unless a")
            w.line("// size parameter exceeds every value seen before (then the internal buffers grow once).")
            if any(self._grown_outputs()):
                w.line("// Outputs passed as std::vector have sizes that only the run decides (no bound is known")
                w.line("// before): infer resizes them to their true length, and the Session's internal buffers")
                w.line("// for such sizes grow when a run needs more than any run before.")
            with w.block(f"void infer({', '.join(self._infer_params(P))})"):
                self._write_guards(w)
                if P:
                    w.line(f"ensure_capacity({', '.join(P)});")
                for sym in self.rt_sizes:
                    w.line(f"size_t {sym} = 0;")
                for c in calls:
                    w.line(c)
                for sym in self.rt_sizes:
                    w.line(f"fRt_{sym} = {sym};")
                self._write_output_copies(w)
            w.line()
            w.line("// Runs the model and returns the output(s) in new vectors.")
            self._write_allocating_infer(w, P, "infer")
            from .gnn_shim import gnn_data_infer
            extra = gnn_data_infer(self)
            if extra:
                w.line()
                w.line(extra)

    def _infer_params(self, P: list[str]) -> list[str]:
        """Parameters of the non-allocating infer: the sizes, the inputs, the caller's output buffers."""
        g = self.graph
        params = [f"size_t {p}" for p in P]
        params += [f"[[maybe_unused]] const {v.dtype.ctype}* {nm}" for v, nm in zip(g.inputs, self.input_names)]
        return params + [f"std::vector<{_vt(v.dtype)}>& {nm}" if gr else f"{v.dtype.ctype}* {nm}"
                         for v, nm, gr in zip(g.outputs, self.output_names, self._grown_outputs())]

    def _grown_outputs(self) -> list[bool]:
        """Per graph output: whether it is a std::vector that the caller-buffer infer resizes (grown_output)."""
        return [self.grown_output(k) for k in range(len(self.graph.outputs))]

    def _write_guards(self, w: CodeWriter) -> None:
        """What the shapes assume about the sizes (Op.guards), checked before anything runs."""
        for expr, msg in self.graph.guards:
            w.line(f"if (int64_t({cpp_dim(expr)}) < 0) throw std::invalid_argument({c_string(msg)});")

    def _output_copy(self, src: str, count: str, dst: str, v: Value) -> str:
        """The statement copying `count` elements of an output computed in `src` to the caller's `dst` (the
        target's copy: std::copy_n here)."""
        return f"std::copy_n({src}, {count}, {dst});"

    def _write_output_copies(self, w: CodeWriter) -> None:
        """End of infer: the outputs that no node wrote in place (views of inputs or constants, an output given
        twice) are copied to the caller's buffers."""
        done: set[int] = set()
        grown = self._grown_outputs()
        for k, v in enumerate(self.graph.outputs):
            st = self.storage[id(v)]
            nm = self.output_names[k]
            n = cpp_dim(numel(v.shape))
            if grown[k]:
                w.line(f"{nm}.resize({n});")  # true length (written in place: no copy)
            if st.kind == "output" and st.expr in (nm, _dp(v.dtype, nm)) and id(v) not in done:
                done.add(id(v))
                continue
            w.line(self._output_copy(st.expr, n, _dp(v.dtype, nm) if grown[k] else nm, v))

    def _write_allocating_infer(self, w: CodeWriter, P: list[str], fn: str) -> None:
        """`<ret> fn(sizes, inputs)`: runs fn(sizes, inputs, outputs) into new vectors and returns them (one vector,
        a vector of vectors of one type, or a tuple)."""
        g = self.graph
        aparams = [f"size_t {p}" for p in P]
        aparams += [f"const {v.dtype.ctype}* {nm}" for v, nm in zip(g.inputs, self.input_names)]
        vec = [f"std::vector<{_vt(v.dtype)}>" for v in g.outputs]
        if len(g.outputs) == 1:
            ret = vec[0]
        elif len(set(vec)) == 1:
            ret = f"std::vector<{vec[0]}>"
        else:
            ret = f"std::tuple<{', '.join(vec)}>"
        with w.block(f"{ret} {fn}({', '.join(aparams)})"):
            outs = []
            grown = self._grown_outputs()
            for k, v in enumerate(g.outputs):
                nm = f"result{k}"
                w.line(f"std::vector<{_vt(v.dtype)}> {nm}" +
                       (";" if grown[k] else f"({cpp_dim(self.bounded(numel(v.shape)))});"))
                outs.append((nm, v.dtype))
            args = P + self.input_names + [o if gr else _dp(dt, o) for (o, dt), gr in zip(outs, grown)]
            w.line(f"{fn}({', '.join(args)});")
            for sym in self.rt_sizes:
                w.line(f"[[maybe_unused]] const size_t {sym} = fRt_{sym};")
            for (nm, _), v, gr in zip(outs, g.outputs, grown):
                if shape_symbols(v.shape) & set(self.rt_sizes) and not gr:
                    w.line(f"{nm}.resize({cpp_dim(numel(v.shape))});")
            outs = [o for o, _ in outs]
            if len(outs) == 1:
                w.line(f"return {outs[0]};")
            elif len(set(vec)) == 1:
                w.line(f"return {{{', '.join(f'std::move({o})' for o in outs)}}};")
            else:
                w.line(f"return std::make_tuple({', '.join(f'std::move({o})' for o in outs)});")

    # -- weights ---------------------------------------------------------------------------------------
    def weight_tensors(self) -> list[tuple[str, np.ndarray]]:
        return [(cname, np.ascontiguousarray(v.const)) for v, cname in self.consts]


def _bound_text(bound: Optional[Dim]) -> str:
    return "no bound before the run (its buffers grow)" if bound is None else f"at most {cpp_dim(bound)}"


def _vt(dt: DType) -> str:
    """Element type of the std::vector holding a tensor (std::vector<bool> has no data(): bytes instead)."""
    return "uint8_t" if dt is DType.BOOL else dt.ctype


def _dp(dt: DType, vec: str) -> str:
    """Typed data pointer of such a vector."""
    return f"reinterpret_cast<bool*>({vec}.data())" if dt is DType.BOOL else f"{vec}.data()"


def _dim_text(d) -> str:
    return d if isinstance(d, str) else cpp_dim(d)


def _same(a: Dim, b: Dim) -> bool:
    return (isinstance(a, int) and isinstance(b, int) and a == b) or (
        isinstance(a, Sym) and isinstance(b, Sym) and a == b)


def _fmt(shape) -> str:
    return "[" + ", ".join(cpp_dim(d) for d in shape) + "]"


def _cstr(s: str) -> str:
    from .names import c_string
    return c_string(s)


def format_values(arr: np.ndarray) -> list[str]:
    """Decimal text that reads back to exactly the same values (9 / 17 significant digits)."""
    flat = arr.reshape(-1)
    # "%.9g" already writes nan / inf / -inf as _float_text does; one format string per value keeps large
    # models (ResNet-18: 11.7 M weights) fast
    if arr.dtype == np.float32:
        return ["%.9g" % x for x in flat.tolist()]
    if arr.dtype == np.float64:
        return ["%.17g" % x for x in flat.tolist()]
    if arr.dtype == np.bool_:
        return ["1" if x else "0" for x in flat.tolist()]
    dt = DType.from_numpy(arr.dtype) if arr.dtype.kind not in "iu" else None
    if dt is not None and dt.is_lowp:  # float16, bfloat16, float8, int4...: their bit patterns, as C++ holds them
        return [str(x) for x in (flat.view(dt.storage_np) & ((1 << dt.bits) - 1)).tolist()]
    return [str(int(x)) for x in flat.tolist()]


def _float_text(x: float, digits: int) -> str:
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return "%.*g" % (digits, x)


def _embedded_array(v: Value, cname: str) -> str:
    arr = v.const
    ct = v.dtype.ctype
    vals = format_values(arr) or ["0"]
    if v.dtype is DType.FLOAT:
        lit = [("std::numeric_limits<float>::quiet_NaN()" if s == "nan" else
                "std::numeric_limits<float>::infinity()" if s == "inf" else
                "-std::numeric_limits<float>::infinity()" if s == "-inf" else
                (s + "f" if any(c in s for c in ".e") else s + ".f")) for s in vals]
    elif v.dtype is DType.DOUBLE:
        lit = [("std::numeric_limits<double>::quiet_NaN()" if s == "nan" else
                "std::numeric_limits<double>::infinity()" if s == "inf" else
                "-std::numeric_limits<double>::infinity()" if s == "-inf" else s) for s in vals]
    elif v.dtype is DType.INT64:
        lit = [("INT64_MIN" if s == str(-2 ** 63) else s + "LL") for s in vals]
    elif v.dtype is DType.BOOL:
        lit = ["true" if s == "1" else "false" for s in vals]
    else:
        lit = vals
    lines = []
    for k in range(0, len(lit), 8):
        lines.append("   " + ", ".join(lit[k:k + 8]) + ",")
    return f"alignas(64) static const {ct} kTensor_{cname}[] = {{\n" + "\n".join(lines) + "\n};"
