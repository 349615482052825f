"""Tensor dimensions: an ``int`` or a symbolic polynomial over size parameters (``Sym``).

Symbolic dimensions come from an ONNX ``dim_param`` or an unknown batch size. They become size parameters
of the generated ``Session`` and ``infer``. Shape arithmetic that exporters generate (Reshape to ``[N, -1]``,
Flatten, Concat along the batch axis) stays exact because a ``Sym`` is a polynomial with integer
coefficients: ``N*12 / N == 12``.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterable, Mapping, Union

Monomial = tuple  # sorted tuple of symbol names (repeated for powers); () is the constant term

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
            return None
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

    def __eq__(self, o) -> bool:
        if isinstance(o, (int,)) or hasattr(o, "__index__"):
            return self.terms == ({(): int(o)} if int(o) else {})
        if isinstance(o, Sym):
            return self.terms == o.terms
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    def symbols(self) -> set:
        return {s for m in self.terms for s in m}

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for m, c in self.terms.items():
            v = c
            for s in m:
                v *= int(env[s])
            total += v
        return total

    def cpp(self) -> str:
        names = _CPP_NAMES.get() or {}
        parts = []
        for m, c in sorted(self.terms.items(), key=lambda mc: (-len(mc[0]), mc[0])):
            factors = [names.get(s, s) for s in m]
            if c != 1 or not factors:
                factors = [str(c)] + factors
            parts.append("*".join(factors))
        s = " + ".join(parts).replace("+ -", "- ")
        return f"({s})" if len(parts) > 1 or "*" in s else s

    def __repr__(self) -> str:
        return self.cpp()


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
