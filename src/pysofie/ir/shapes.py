"""Tensor dimensions: an ``int`` or a symbolic polynomial over size parameters (``Sym``).

Symbolic dimensions come from an ONNX ``dim_param`` or an unknown batch size. They become size parameters
of the generated ``Session`` and ``infer``. Shape arithmetic that exporters generate (Reshape to ``[N, -1]``,
Flatten, Concat along the batch axis) stays exact because a ``Sym`` is a polynomial with integer
coefficients: ``N*12 / N == 12``.

What a polynomial cannot say (a convolution's output length ``(L - 10) // 5 + 1``, a clamp ``min(S, 64)``)
is an ``Atom``: a compound factor of a monomial that carries its operation and arguments. Its text is its
C++ expression over ``size_t`` size parameters, so equal atoms compare and hash equal and sort like names.
Sizes are never negative; ``nonneg``/``le``/``lt``/``eq`` use that to decide comparisons (``S != -1``).
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterable, Mapping, Union

Monomial = tuple  # sorted tuple of symbol names or Atoms (repeated for powers); () is the constant term


class Atom(str):
    """A compound factor: ``floordiv`` (args: numerator Dim, positive int), ``min`` / ``max`` (two Dims).
    The string is the C++ expression."""
    kind: str
    args: tuple

    def __new__(cls, kind: str, args: tuple, text: str):
        a = str.__new__(cls, text)
        a.kind, a.args = kind, tuple(args)
        return a

    def __reduce__(self):
        return (Atom, (self.kind, self.args, str(self)))

    def symbols(self) -> set:
        out: set = set()
        for x in self.args:
            if isinstance(x, Sym):
                out |= x.symbols()
        return out

    def evaluate(self, env: Mapping[str, int]) -> int:
        vals = [x.evaluate(env) if isinstance(x, Sym) else int(x) for x in self.args]
        if self.kind == "floordiv":
            return vals[0] // vals[1]
        return min(vals) if self.kind == "min" else max(vals)

    def cpp(self) -> str:
        """The C++ text under the symbol names in force (cpp_symbol_names): the stored text uses the plain names."""
        if self.kind == "floordiv":
            rest, k = self.args
            num = _text(rest) if nonneg(rest) else f"size_t(std::max<int64_t>({_signed(rest)}, 0))"
            return f"({num} / {k})"
        x, y = self.args
        return f"size_t(std::{self.kind}<int64_t>({_signed(x)}, {_signed(y)}))"

    def nonneg(self) -> bool:
        if self.kind == "floordiv":
            return nonneg(self.args[0])
        if self.kind == "min":
            return all(nonneg(x) for x in self.args)
        return any(nonneg(x) for x in self.args)

# The identifiers that C++ text uses for the symbols (set by a back end while it writes code); a symbol not in the
# mapping is written under its own name.
_CPP_NAMES: contextvars.ContextVar = contextvars.ContextVar("pysofie_cpp_symbol_names", default=None)


@contextlib.contextmanager
def cpp_symbol_names(mapping: Mapping[str, str]):
    """Within the block, Sym.cpp() and cpp_dim() write symbol s as mapping[s]."""
    token = _CPP_NAMES.set(dict(mapping))
    try:
        yield
    finally:
        _CPP_NAMES.reset(token)


class Sym:
    __slots__ = ("terms",)

    def __init__(self, terms: Mapping[Monomial, int]):
        self.terms = {m: c for m, c in terms.items() if c != 0}

    @staticmethod
    def var(name: str) -> "Sym":
        return Sym({(name,): 1})

    # -- arithmetic -------------------------------------------------------------------------------------
    @staticmethod
    def _lift(x: "Dim") -> "Sym":
        return x if isinstance(x, Sym) else Sym({(): int(x)})

    def __add__(self, o: "Dim") -> "Dim":
        o = Sym._lift(o)
        t = dict(self.terms)
        for m, c in o.terms.items():
            t[m] = t.get(m, 0) + c
        return simplify(Sym(t))

    __radd__ = __add__

    def __neg__(self) -> "Sym":
        return Sym({m: -c for m, c in self.terms.items()})

    def __sub__(self, o: "Dim") -> "Dim":
        return self + (-Sym._lift(o))

    def __rsub__(self, o: "Dim") -> "Dim":
        return Sym._lift(o) - self

    def __mul__(self, o: "Dim") -> "Dim":
        o = Sym._lift(o)
        t: dict = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in o.terms.items():
                m = tuple(sorted(m1 + m2))
                t[m] = t.get(m, 0) + c1 * c2
        return simplify(Sym(t))

    __rmul__ = __mul__

    def exact_div(self, o: "Dim") -> "Dim | None":
        """self / o when the division is exact for every value of the symbols, else None."""
        o = Sym._lift(o)
        if len(o.terms) != 1:
            if Sym._lift(self) == o:
                return 1
            return self._long_div(o)
        (dm, dc), = o.terms.items()
        t = {}
        for m, c in self.terms.items():
            rest = list(m)
            for s in dm:
                if s not in rest:
                    return None
                rest.remove(s)
            if c % dc:
                return None
            t[tuple(rest)] = c // dc
        return simplify(Sym(t))

    def _long_div(self, o: "Sym") -> "Dim | None":
        """self / o for a divisor of several terms (B*(L - 1) into 32*B*(L - 1)) by eliminating leading terms;
        the quotient is checked by multiplying back."""
        def lead(p: "Sym"):
            return max(p.terms.items(), key=lambda mc: (len(mc[0]), mc[0]))
        dm, dc = lead(o)
        r: Dim = self
        q: Dim = 0
        for _ in range(64):
            if not isinstance(r, Sym):
                break
            rm, rc = lead(r)
            rest = list(rm)
            for a in dm:
                if a not in rest:
                    return None
                rest.remove(a)
            if rc % dc:
                return None
            t = Sym({tuple(rest): rc // dc})
            q = q + t
            r = r - t * o
        if not (isinstance(r, int) and r == 0):
            return None
        return q if dims_equal(Sym._lift(q) * o, self) else None

    def __eq__(self, o) -> bool:
        if isinstance(o, (int,)) or hasattr(o, "__index__"):
            return self.terms == ({(): int(o)} if int(o) else {})
        if isinstance(o, Sym):
            return self.terms == o.terms
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    def symbols(self) -> set:
        """The size parameters the expression depends on (inside atoms too)."""
        out: set = set()
        for m in self.terms:
            for s in m:
                out |= s.symbols() if isinstance(s, Atom) else {s}
        return out

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for m, c in self.terms.items():
            v = c
            for s in m:
                v *= s.evaluate(env) if isinstance(s, Atom) else int(env[s])
            total += v
        return total

    def cpp(self) -> str:
        names = _CPP_NAMES.get() or {}
        parts = []
        for m, c in sorted(self.terms.items(), key=lambda mc: (-len(mc[0]), mc[0])):
            factors = [s.cpp() if isinstance(s, Atom) else names.get(s, s) for s in m]
            if c != 1 or not factors:
                factors = [str(c)] + factors
            parts.append("*".join(factors))
        s = " + ".join(parts).replace("+ -", "- ")
        return f"({s})" if len(parts) > 1 or "*" in s else s

    def __repr__(self) -> str:
        return self.cpp()


class TensorDim(Sym):
    """A Sym that is the extent of a tensor's axis (what Shape returns), hence never negative whatever its
    expression: ``Equal(Shape(x)[1], -1)`` is false even for an extent such as ``seq - 1``. Arithmetic on it
    gives plain Syms again."""
    __slots__ = ()

    def __reduce__(self):
        return (TensorDim, (self.terms,))


def tensor_dim(d: "Dim") -> "Dim":
    return TensorDim(d.terms) if isinstance(d, Sym) and not isinstance(d, TensorDim) else d


Dim = Union[int, Sym]
Shape = tuple


def simplify(d: Dim) -> Dim:
    if isinstance(d, Sym):
        if not d.terms:
            return 0
        if list(d.terms) == [()]:
            return d.terms[()]
        return d
    return int(d)


def is_static(shape: Iterable[Dim]) -> bool:
    return all(isinstance(d, int) for d in shape)


def dims_equal(a: Dim, b: Dim) -> bool:
    return Sym._lift(a) == Sym._lift(b) if isinstance(a, Sym) or isinstance(b, Sym) else int(a) == int(b)


def dim_div(a: Dim, b: Dim) -> Dim | None:
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b and a % b == 0 else None
    return Sym._lift(a).exact_div(b)


def numel(shape: Iterable[Dim]) -> Dim:
    n: Dim = 1
    for d in shape:
        n = n * d if isinstance(n, Sym) or isinstance(d, Sym) else n * int(d)
    return simplify(n) if isinstance(n, Sym) else n


def cpp_dim(d: Dim) -> str:
    return d.cpp() if isinstance(d, Sym) else str(int(d))


def shape_symbols(shape: Iterable[Dim]) -> set:
    out: set = set()
    for d in shape:
        if isinstance(d, Sym):
            out |= d.symbols()
    return out


def eval_shape(shape: Iterable[Dim], env: Mapping[str, int]) -> tuple:
    return tuple(d.evaluate(env) if isinstance(d, Sym) else int(d) for d in shape)


def fmt_shape(shape: Iterable[Dim]) -> str:
    return "[" + ", ".join(repr(d) if isinstance(d, Sym) else str(d) for d in shape) + "]"


# -- floor division, min, max and comparisons on dims ------------------------------------------------------
def _text(d: Dim) -> str:
    return d.cpp() if isinstance(d, Sym) else str(int(d))


def _signed(d: Dim) -> str:
    return f"int64_t({_text(d)})"


def floordiv(a: Dim, k: int) -> Dim:
    """floor(a / k) for a positive int k. Whole multiples of k leave the atom: (5*S + 7) // 5 == S + 1 + (2 // 5)."""
    k = int(k)
    if k <= 0:
        raise ValueError(f"floordiv by {k}")
    if not isinstance(a, Sym):
        return int(a) // k
    if k == 1:
        return a
    whole = Sym({m: c // k for m, c in a.terms.items()})
    rest = simplify(Sym({m: c % k for m, c in a.terms.items()}))
    if isinstance(rest, int):
        return simplify(whole + rest // k)
    (m, c), = rest.terms.items() if len(rest.terms) == 1 else ((None, 0),)
    if c == 1 and len(m) == 1 and isinstance(m[0], Atom) and m[0].kind == "floordiv":
        return simplify(whole + floordiv(m[0].args[0], m[0].args[1] * k))  # (x // a) // b == x // (a*b)
    num = _text(rest) if nonneg(rest) else f"size_t(std::max<int64_t>({_signed(rest)}, 0))"
    atom = Atom("floordiv", (rest, k), f"({num} / {k})")
    return simplify(whole + Sym.var(atom))


def ceildiv(a: Dim, k: int) -> Dim:
    return floordiv(a + (int(k) - 1), k)


def _minmax(kind: str, a: Dim, b: Dim) -> Dim:
    if not isinstance(a, Sym) and not isinstance(b, Sym):
        return min(int(a), int(b)) if kind == "min" else max(int(a), int(b))
    if le(a, b):
        return a if kind == "min" else b
    if le(b, a):
        return b if kind == "min" else a
    x, y = sorted((a, b), key=_text)
    return Sym.var(Atom(kind, (x, y), f"size_t(std::{kind}<int64_t>({_signed(x)}, {_signed(y)}))"))


def dim_min(a: Dim, b: Dim) -> Dim:
    return _minmax("min", a, b)


def dim_max(a: Dim, b: Dim) -> Dim:
    return _minmax("max", a, b)


def nonneg(d: Dim) -> bool:
    """True when d >= 0 for every value of the sizes (all >= 0); False when that cannot be shown."""
    if not isinstance(d, Sym):
        return int(d) >= 0
    if isinstance(d, TensorDim):
        return True
    for m, c in d.terms.items():
        if c < 0 or not all(s.nonneg() if isinstance(s, Atom) else True for s in m):
            return False
    return True


def le(a: Dim, b: Dim) -> bool | None:
    """a <= b for every size: True, False (a > b for every size), or None (depends on the sizes)."""
    if nonneg(_sub(b, a)) or (isinstance(b, TensorDim) and isinstance(a, int) and a <= 0):
        return True
    if isinstance(a, TensorDim) and isinstance(b, int) and b < 0:
        return False
    if nonneg(_sub(a, b) - 1):
        return False
    return None


def _sub(a: Dim, b: Dim) -> Dim:
    return simplify(Sym._lift(a) - b) if isinstance(a, Sym) or isinstance(b, Sym) else int(a) - int(b)


def lt(a: Dim, b: Dim) -> bool | None:
    return le(_sub(a, -1), b)


def eq(a: Dim, b: Dim) -> bool | None:
    if dims_equal(a, b):
        return True
    if lt(a, b) or lt(b, a):
        return False
    return None
