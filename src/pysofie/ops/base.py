"""Operator meaning: attributes with defaults, type and shape inference. No C++ here.

Each operator is a small class named exactly after its ONNX op type and registered with ``@register``.
A family base class (unary elementwise, binary broadcasting, pooling, ...) does the shared work so that most
operators are a line or two. Semantics follow the ONNX specification; front ends for other formats build
the same classes.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional

import numpy as np

from ..errors import ShapeInferenceError
from ..ir import DType, Node, Value
from ..ir.shapes import Dim

_REQUIRED = object()
REQUIRED: Any = _REQUIRED  # marks an attribute without default

OPS: dict[tuple[str, str], type["Op"]] = {}


def register(op_type: str | None = None, domain: str = ""):
    """Class decorator: register an operator class under its ONNX op type (the class name by default)."""

    def deco(cls):
        name = op_type or cls.__name__
        cls.op_type = name
        cls.domain = domain
        OPS[(domain, name)] = cls
        return cls

    return deco


def lookup(op_type: str, domain: str = "") -> Optional[type["Op"]]:
    if domain in ("ai.onnx",):
        domain = ""
    return OPS.get((domain, op_type))


class Op:
    op_type: ClassVar[str] = "?"
    domain: ClassVar[str] = ""
    ATTRS: ClassVar[dict[str, Any]] = {}
    # Spec names of inputs and outputs: the generated node functions use them as parameter names.
    INPUTS: ClassVar[tuple[str, ...]] = ("X",)
    OUTPUTS: ClassVar[tuple[str, ...]] = ("Y",)

    def __init__(self, **attrs):
        unknown = set(attrs) - set(self.ATTRS)
        if unknown:
            raise ShapeInferenceError(f"{self.op_type}: unknown attribute(s) {sorted(unknown)}")
        self.attrs: dict[str, Any] = {}
        for k, default in self.ATTRS.items():
            if k in attrs and attrs[k] is not None:
                self.attrs[k] = attrs[k]
            elif default is _REQUIRED:
                raise ShapeInferenceError(f"{self.op_type}: required attribute '{k}' is missing")
            else:
                self.attrs[k] = default
        self.opset = 0  # set by the ONNX front end; 0 means "latest semantics"

    def __getattr__(self, item):
        attrs = self.__dict__.get("attrs")
        if attrs is not None and item in attrs:
            return attrs[item]
        raise AttributeError(f"{type(self).__name__} has no attribute '{item}'")

    @classmethod
    def from_onnx(cls, attrs: dict[str, Any], opset: int) -> "Op":
        op = cls(**attrs)
        op.opset = opset
        return op

    # -- to be provided by operators -------------------------------------------------------------------
    def check(self, node: Node) -> list[str]:
        """Problems (unsupported attribute values, dtypes) that prevent code generation; [] if none."""
        return []

    def infer(self, node: Node) -> list[tuple[DType, tuple]]:
        raise NotImplementedError(f"{self.op_type}.infer")

    def fold_symbolic(self, node: Node) -> Optional[list[list[Dim]]]:
        """For ops on small int64 shape tensors: the output elements as dims when they are known at
        generation time but depend on symbolic sizes. None when not applicable."""
        return None

    def guards(self, node: Node) -> list[tuple[Dim, str]]:
        """Assumptions on the sizes this node's shapes rely on: (expression that must be >= 0, message). The
        generated code checks them at run time (e.g. a slice end computed from one input's length must not
        exceed a buffer's size)."""
        return []

    def runtime_inputs(self, node: Node) -> list[int]:
        """Indices of the inputs whose data the generated code reads (others, like a Reshape's target
        shape, are consumed at generation time)."""
        return [i for i, v in enumerate(node.inputs) if v is not None]

    def runtime_sizes(self, node: Node) -> dict[str, Dim]:
        """Sizes this node decides at run time from data (NonZero's count): {symbol: upper bound}. The symbol
        (see runtime_symbol) appears in its outputs' shapes; the bound is a Dim over size parameters and earlier
        run-time sizes. {} for the usual operators, whose output sizes follow from their input shapes."""
        return {}

    def folds(self, node: Node) -> bool:
        """Whether this node may be evaluated at generation time when all of its inputs are constant."""
        return True

    # -- helpers for subclasses ------------------------------------------------------------------------
    def onnx_attrs(self) -> dict[str, Any]:
        """Attributes as an ONNX node would carry them (defaults that mean 'absent' dropped)."""
        return {k: v for k, v in self.attrs.items() if v is not None}

    @staticmethod
    def const_input(node: Node, i: int, what: str = "") -> Optional[np.ndarray]:
        v = node.input(i)
        if v is None:
            return None
        if v.const is None:
            raise ShapeInferenceError(
                f"{node.describe()}: input {i} ('{v.name}'{', ' + what if what else ''}) must be known at "
                "generation time (a constant or computable from shapes), but it is computed at run time")
        return v.const

    @staticmethod
    def shape_input(node: Node, i: int, what: str = "shape") -> Optional[list[Dim]]:
        """An int64 1-D input holding dims: constant data or symbolic elements."""
        v = node.input(i)
        if v is None:
            return None
        if v.sym is not None:
            return list(v.sym)
        if v.const is not None:
            return [int(x) for x in np.asarray(v.const).reshape(-1)]
        raise ShapeInferenceError(
            f"{node.describe()}: input '{v.name}' ({what}) must be known at generation time, but it depends on "
            "run-time data")

    def fail(self, node: Node, msg: str) -> ShapeInferenceError:
        return ShapeInferenceError(f"{node.describe()}: {msg}")


def runtime_symbol(node: Node, k: int = 0) -> str:
    """Name of the k-th run-time size a node decides: 'rt_' + its name, reduced to a C++ identifier (the
    emitter reserves it in the generated code)."""
    import re
    s = re.sub(r"[^A-Za-z0-9_]", "_", node.name) or "node"
    return f"rt_{s}" + (f"_{k}" if k else "")


def norm_axis(axis: int, rank: int, node: Node | None = None) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        where = f"{node.describe()}: " if node else ""
        raise ShapeInferenceError(f"{where}axis {axis} is out of range for rank {rank}")
    return a


def values_info(vals: list[Optional[Value]]) -> str:
    return ", ".join(repr(v) for v in vals)
