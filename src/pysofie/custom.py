"""Custom operators: C++ implementations of op types that pysofie does not know, registered from Python.

    def shape_fn(inputs):                       # [(numpy dtype, shape)] -> [(dtype, shape)]
        (dt, shape), = inputs
        return [(dt, shape)]

    pysofie.register_custom_op(
        "MyScale", domain="my.domain", shape_fn=shape_fn, attrs={"alpha": 2.0},
        cpp="for (size_t i = 0; i < X_size; ++i) Y[i] = T(alpha) * X[i] + T(1);")

The C++ code sees, inside the node's function:

* each input by its spec name (``inputs=("X", "W")``, default ``("X",)``) as ``const T* X``, and each output
  (``outputs=("Y",)``) as ``T* Y``, where ``T`` stands for that tensor's C++ element type (aliases ``T_X``,
  ``T_Y``; plain ``T`` is the first input's type);
* sizes: ``X_size`` (element count), ``X_rank``, ``X_shape[k]`` (``size_t``), the same for outputs
  (``Y_size``...);
* attributes (declared in ``attrs`` with their defaults): ints as ``int64_t``, floats as ``double``, lists of
  ints/floats as arrays (``name[k]``, with ``name_len``), strings as ``const char*``.

``cpp`` is either the body of the node function (statements), or, with ``function="name"``, a complete C++
function (or function template) definition emitted once per model; it is called with the arguments named by its
parameter list, each of which must be one of the names above (e.g. ``void my_scale(const float* X, float* Y,
size_t X_size, double alpha)``).

The registration plugs into the operator registry (``pysofie.ops.OPS``) and the C++ generators
(``backends.cpp.emitter.GENERATORS``), so the rest of the pipeline handles the op like any built-in one.
``register_custom_op`` returns a handle whose ``unregister()`` (or use as a context manager) removes it and
restores whatever was registered under the same names before.
"""
from __future__ import annotations

import inspect
import re
import threading
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .backends.cpp.emitter import GENERATORS
from .errors import ShapeInferenceError
from .ir import DType
from .ir.shapes import cpp_dim, numel
from .ops.base import OPS, Op

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_lock = threading.Lock()
_REGISTERED: dict[tuple[str, str], "CustomOpRegistration"] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _to_dtype(dt, what: str) -> DType:
    if isinstance(dt, DType):
        return dt
    try:
        return DType.from_numpy(np.dtype(dt))
    except TypeError as e:
        raise ShapeInferenceError(f"{what}: {e}") from None


def _split_params(src: str, fname: str) -> list[str]:
    """Parameter names of function `fname` in C++ source `src` (the identifier ending each parameter)."""
    m = re.search(r"\b" + re.escape(fname) + r"\s*\(", src)
    if m is None:
        raise ValueError(f"custom op: function '{fname}' is not defined in the C++ source given")
    depth, k, start = 1, m.end(), m.end()
    parts, cur = [], start
    while k < len(src) and depth:
        ch = src[k]
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        elif ch == "," and depth == 1:
            parts.append(src[cur:k])
            cur = k + 1
        k += 1
    if depth:
        raise ValueError(f"custom op: unbalanced parameter list of function '{fname}'")
    parts.append(src[cur:k - 1])
    names = []
    for p in parts:
        p = p.split("=", 1)[0].strip()
        p = re.sub(r"\[[^\]]*\]\s*$", "", p).strip()
        if not p or p == "void":
            continue
        mm = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", p)
        if mm is None:
            raise ValueError(f"custom op: cannot read the parameter '{p}' of function '{fname}'")
        names.append(mm.group(1))
    return names


class CustomOp(Op):
    """Base of the classes made by register_custom_op (one per registration)."""
    _reg: "CustomOpRegistration"

    def check(self, node):
        reg = self._reg
        problems = []
        n_in = len(reg.inputs)
        present = [v for v in node.inputs if v is not None]
        if len(node.inputs) != n_in or len(present) != n_in:
            problems.append(f"{node.describe()}: custom op expects {n_in} input(s) {list(reg.inputs)}, "
                            f"got {len(present)}")
        if len(node.outputs) != len(reg.outputs):
            problems.append(f"{node.describe()}: custom op has {len(reg.outputs)} output(s) {list(reg.outputs)}, "
                            f"the node has {len(node.outputs)}")
        if reg.dtypes is not None:
            for v in present:
                if v.dtype is not None and v.dtype.np not in reg.dtypes:
                    problems.append(f"{node.describe()}: input '{v.name}' has element type {v.dtype.np}, the custom "
                                    f"op accepts {[str(d) for d in reg.dtypes]}")
        return problems

    def infer(self, node):
        reg = self._reg
        ins = [(v.dtype.np, tuple(v.shape)) for v in node.inputs]
        try:
            res = reg.call_shape_fn(ins, dict(self.attrs))
        except ShapeInferenceError:
            raise
        except Exception as e:
            raise ShapeInferenceError(f"{node.describe()}: the shape function of custom op failed: "
                                      f"{type(e).__name__}: {e}") from None
        res = list(res)
        if len(res) != len(node.outputs):
            raise ShapeInferenceError(f"{node.describe()}: the shape function returned {len(res)} output(s), "
                                      f"the node has {len(node.outputs)}")
        out = []
        for k, item in enumerate(res):
            try:
                dt, shape = item
            except (TypeError, ValueError):
                raise ShapeInferenceError(f"{node.describe()}: the shape function must return (dtype, shape) "
                                          f"pairs, got {item!r} for output {k}") from None
            dims = []
            for d in shape:
                if isinstance(d, (int, np.integer)):
                    if d < 0:
                        raise ShapeInferenceError(f"{node.describe()}: the shape function gave a negative dim "
                                                  f"for output {k}: {list(shape)}")
                    dims.append(int(d))
                else:
                    dims.append(d)
            out.append((_to_dtype(dt, node.describe()), tuple(dims)))
        return out

    def folds(self, node) -> bool:
        return False  # onnx's reference evaluator does not know the op: the C++ code computes it


def _cpp_literal_decls(attrs: dict[str, Any]) -> list[str]:
    from .backends.cpp.names import c_string
    lines = []
    for name, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if isinstance(v, (bool, np.bool_)):
            lines.append(f"[[maybe_unused]] const bool {name} = {'true' if v else 'false'};")
        elif isinstance(v, (int, np.integer)):
            lines.append(f"[[maybe_unused]] const int64_t {name} = {_int_lit(int(v))};")
        elif isinstance(v, (float, np.floating)):
            lines.append(f"[[maybe_unused]] const double {name} = {_float_lit(float(v))};")
        elif isinstance(v, str):
            lines.append(f"[[maybe_unused]] const char* {name} = {c_string(v)};")
        elif isinstance(v, (list, tuple)):
            vals = list(v)
            if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in vals):
                body = ", ".join(_int_lit(int(x)) for x in vals) or "0"
                lines.append(f"[[maybe_unused]] const int64_t {name}[] = {{{body}}};")
            elif all(isinstance(x, (int, float, np.integer, np.floating)) for x in vals):
                body = ", ".join(_float_lit(float(x)) for x in vals) or "0.0"
                lines.append(f"[[maybe_unused]] const double {name}[] = {{{body}}};")
            else:
                raise ShapeInferenceError(f"custom op attribute '{name}': only lists of numbers are supported")
            lines.append(f"[[maybe_unused]] const size_t {name}_len = {len(vals)};")
        else:
            raise ShapeInferenceError(f"custom op attribute '{name}': values of type {type(v).__name__} "
                                      "are not supported")
    return lines


def _int_lit(x: int) -> str:
    return "INT64_MIN" if x == -2 ** 63 else f"int64_t({x}LL)"


def _float_lit(x: float) -> str:
    if x != x:
        return "std::numeric_limits<double>::quiet_NaN()"
    if x in (float("inf"), float("-inf")):
        return ("-" if x < 0 else "") + "std::numeric_limits<double>::infinity()"
    return repr(x)


class CustomOpRegistration:
    """One registered custom op. ``unregister()`` removes it (also on leaving a ``with`` block)."""

    def __init__(self, op_type: str, domain: str, shape_fn: Optional[Callable], cpp: str,
                 inputs: Sequence[str], outputs: Sequence[str], attrs: dict[str, Any],
                 function: Optional[str], dtypes):
        self.op_type = op_type
        self.domain = domain
        self.shape_fn = shape_fn
        self.cpp = cpp
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.attrs = dict(attrs)
        self.function = function
        self.dtypes = None if dtypes is None else [np.dtype(d) for d in dtypes]
        # the generator key: the plain op type in the default domain, qualified elsewhere so that a custom
        # op never takes over a built-in generator of the same name
        self.key = op_type if not domain else f"{domain}.{op_type}"
        self.active = False
        self._saved_op = None
        self._saved_gen = None
        self._fn_args: Optional[list[str]] = None
        self._shape_fn_takes_attrs = False
        if shape_fn is not None:
            try:
                params = [p for p in inspect.signature(shape_fn).parameters.values()
                          if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
                self._shape_fn_takes_attrs = len(params) >= 2 or any(
                    p.kind == p.VAR_POSITIONAL for p in params)
            except (TypeError, ValueError):
                pass
        self._validate()

    # -- checks at registration ---------------------------------------------------------------------------
    def names(self) -> set[str]:
        ns = set()
        for n in self.inputs + self.outputs:
            ns |= {n, f"{n}_size", f"{n}_rank", f"{n}_shape", f"T_{n}"}
        ns |= set(self.attrs) | {f"{a}_len" for a in self.attrs} | {"T"}
        return ns

    def _validate(self) -> None:
        from .backends.cpp.names import CPP_KEYWORDS
        if not self.op_type:
            raise ValueError("custom op: op_type must not be empty")
        if not self.inputs or not self.outputs:
            raise ValueError(f"custom op '{self.op_type}': needs at least one input and one output")
        seen = set()
        for n in self.inputs + self.outputs + tuple(self.attrs):
            if not _IDENT.match(n) or n in CPP_KEYWORDS or "__" in n:
                raise ValueError(f"custom op '{self.op_type}': '{n}' is not usable as a C++ identifier")
            if n in seen:
                raise ValueError(f"custom op '{self.op_type}': name '{n}' is used twice")
            seen.add(n)
        if not isinstance(self.cpp, str) or not self.cpp.strip():
            raise ValueError(f"custom op '{self.op_type}': cpp must be C++ source text")
        if self.function is not None:
            if not _IDENT.match(self.function):
                raise ValueError(f"custom op '{self.op_type}': function '{self.function}' is not an identifier")
            args = _split_params(self.cpp, self.function)
            unknown = [a for a in args if a not in self.names()]
            if unknown:
                raise ValueError(f"custom op '{self.op_type}': parameter(s) {unknown} of '{self.function}' name "
                                 f"nothing known (use {sorted(self.names() - {'T'})})")
            self._fn_args = args
        from .ops.base import REQUIRED
        # attribute defaults must be representable in C++
        _cpp_literal_decls({k: v for k, v in self.attrs.items() if v is not REQUIRED})

    def call_shape_fn(self, ins, attrs):
        if self.shape_fn is None:  # elementwise: the first input's type and shape for every output
            return [ins[0]] * len(self.outputs)
        if self._shape_fn_takes_attrs:
            return self.shape_fn(ins, attrs)
        return self.shape_fn(ins)

    # -- the registry ------------------------------------------------------------------------------------
    def _register(self, replace: bool) -> None:
        okey = (self.domain, self.op_type)
        with _lock:
            if okey in _REGISTERED:
                if not replace:
                    raise ValueError(f"custom op '{self.op_type}' (domain '{self.domain}') is already registered; "
                                     "unregister it first or pass replace=True")
                _REGISTERED[okey].unregister()
            existing = OPS.get(okey)
            if existing is not None and not replace:
                raise ValueError(f"operator '{self.op_type}' (domain '{self.domain or 'ai.onnx'}') is built into "
                                 "pysofie; pass replace=True to override it with a custom implementation")
            reg = self
            cls = type(f"Custom_{re.sub(r'[^A-Za-z0-9_]', '_', self.key)}", (CustomOp,), {
                "ATTRS": dict(self.attrs), "INPUTS": self.inputs, "OUTPUTS": self.outputs, "_reg": reg,
                "__doc__": f"Custom operator {self.key} (registered from Python)."})
            self._saved_op = existing
            self._saved_gen = GENERATORS.get(self.key)
            from .ops.base import register
            register(self.op_type, self.domain)(cls)
            cls.op_type = self.key  # the generator key; OPS is keyed by (domain, op type)
            GENERATORS[self.key] = self._generate
            self.cls = cls
            self.active = True
            _REGISTERED[okey] = self

    def unregister(self) -> None:
        """Remove the op (restoring a built-in one it replaced). Calling it twice is harmless."""
        okey = (self.domain, self.op_type)
        with _lock:
            if not self.active:
                return
            if OPS.get(okey) is self.cls:
                if self._saved_op is not None:
                    OPS[okey] = self._saved_op
                else:
                    del OPS[okey]
            if GENERATORS.get(self.key) == self._generate:
                if self._saved_gen is not None:
                    GENERATORS[self.key] = self._saved_gen
                else:
                    del GENERATORS[self.key]
            if _REGISTERED.get(okey) is self:
                del _REGISTERED[okey]
            self.active = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unregister()
        return False

    def __repr__(self) -> str:
        state = "registered" if self.active else "unregistered"
        return f"<custom op {self.key} ({state})>"

    # -- C++ generation ----------------------------------------------------------------------------------
    def _generate(self, cx) -> None:
        w = cx.w
        node = cx.node
        first_t = None
        for k, spec in enumerate(self.inputs):
            v = node.inputs[k]
            nm = cx.i(k)
            if nm is None:
                raise ShapeInferenceError(f"{node.describe()}: input '{spec}' is not available at run time")
            self._decl_tensor(w, spec, nm, v, const=True)
            first_t = first_t or v.dtype.ctype
        for k, spec in enumerate(self.outputs):
            self._decl_tensor(w, spec, cx.o(k), node.outputs[k], const=False)
        w.line(f"using T [[maybe_unused]] = {first_t};")
        for line in _cpp_literal_decls({k: node.op.attrs.get(k) for k in self.attrs}):
            w.line(line)
        if self.function is None:
            w.line("{")
            with w.indented():
                w.line(self.cpp.strip("\n"))
            w.line("}")
        else:
            cx.helper(f"custom:{self.key}", f"// custom operator {self.key} (registered from Python)\n"
                      + self.cpp.strip("\n") + "\n")
            w.line(f"{self.function}({', '.join(self._fn_args)});")

    @staticmethod
    def _decl_tensor(w, spec: str, pname: str, v, const: bool) -> None:
        ct = v.dtype.ctype
        if pname != spec:
            w.line(f"{'const ' if const else ''}{ct}* {spec} = {pname};")
        dims = [cpp_dim(d) for d in v.shape]
        w.line(f"using T_{spec} [[maybe_unused]] = {ct};")
        w.line(f"[[maybe_unused]] const size_t {spec}_size = {cpp_dim(numel(v.shape))};")
        w.line(f"[[maybe_unused]] const size_t {spec}_rank = {len(dims)};")
        shape = ", ".join(f"size_t({d})" for d in dims) if dims else "1"
        w.line(f"[[maybe_unused]] const size_t {spec}_shape[] = {{{shape}}};")


def register_custom_op(op_type: str, *, domain: str = "", cpp: str, shape_fn: Optional[Callable] = None,
                       inputs: Sequence[str] = ("X",), outputs: Sequence[str] = ("Y",),
                       attrs: Optional[dict[str, Any]] = None, function: Optional[str] = None,
                       dtypes: Optional[Sequence] = None, replace: bool = False) -> CustomOpRegistration:
    """Register a C++ implementation of `op_type` in `domain` (see the module documentation).

    shape_fn: ``f(inputs) -> outputs`` or ``f(inputs, attrs) -> outputs`` where inputs/outputs are lists of
    (numpy dtype, shape) and dims are ints (or symbolic sizes, passed through); None means every output has the
    first input's dtype and shape. attrs: the attributes the op accepts, with their defaults
    (``pysofie.ops.base.REQUIRED`` for a required one). dtypes: the input element types accepted (default any).
    replace: allow overriding a built-in operator or an earlier custom registration.
    """
    reg = CustomOpRegistration(op_type, _norm_domain(domain), shape_fn, cpp, inputs, outputs, dict(attrs or {}),
                               function, dtypes)
    reg._register(replace)
    return reg


def unregister_custom_op(op_type: str, domain: str = "") -> bool:
    """Remove a custom op registered with register_custom_op; False if none was registered."""
    reg = _REGISTERED.get((_norm_domain(domain), op_type))
    if reg is None:
        return False
    reg.unregister()
    return True


def custom_ops() -> list[CustomOpRegistration]:
    """The custom ops registered now."""
    return list(_REGISTERED.values())


__all__ = ["register_custom_op", "unregister_custom_op", "custom_ops", "CustomOpRegistration", "CustomOp"]
