"""The intermediate representation: a Graph of Nodes connected by Values, with use lists.

A ``Value`` is a tensor: element type, shape (ints and ``Sym`` dims), its producer and its uses. A constant
Value carries its data (``const``); a small int64 shape tensor whose elements depend on symbolic dims carries
them in ``sym`` so that exporter shape arithmetic folds away even with a dynamic batch size.
"""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np

from .dtypes import DType
from .shapes import Dim, Shape, fmt_shape


class Value:
    __slots__ = ("name", "dtype", "shape", "producer", "uses", "const", "sym", "is_input")

    def __init__(self, name: str, dtype: DType | None = None, shape: Shape | None = None, *,
                 const: np.ndarray | None = None):
        self.name = name
        self.dtype = dtype
        self.shape: Optional[tuple] = tuple(shape) if shape is not None else None
        self.producer: Optional[Node] = None
        self.uses: list[tuple[Node, int]] = []
        self.const: Optional[np.ndarray] = None
        self.sym: Optional[list[Dim]] = None
        self.is_input = False
        if const is not None:
            self.set_const(const)

    def set_const(self, data: np.ndarray) -> None:
        data = np.asarray(data)
        self.const = data
        self.dtype = DType.from_numpy(data.dtype)
        self.shape = tuple(int(d) for d in data.shape)

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        dt = self.dtype.name.lower() if self.dtype else "?"
        sh = fmt_shape(self.shape) if self.shape is not None else "?"
        return f"%{self.name}:{dt}{sh}"


class Node:
    __slots__ = ("op", "inputs", "outputs", "name")

    def __init__(self, op, inputs: list[Optional[Value]], outputs: list[Value], name: str):
        self.op = op
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.name = name

    @property
    def op_type(self) -> str:
        return self.op.op_type

    def input(self, i: int) -> Optional[Value]:
        return self.inputs[i] if i < len(self.inputs) else None

    def describe(self) -> str:
        return f"node '{self.name}' ({self.op_type})"

    def __repr__(self) -> str:
        ins = ", ".join(repr(v) if v else "-" for v in self.inputs)
        outs = ", ".join(repr(v) for v in self.outputs)
        return f"{outs} = {self.op_type}({ins})  # {self.name}"


class Graph:
    def __init__(self, name: str = "model"):
        self.name = name
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.nodes: list[Node] = []
        self.size_params: list[str] = []  # names of symbolic dims, in the order infer() takes them
        self.zero_size_params: set[str] = set()  # size parameters that may be 0 (a graph without edges)
        self.source: str = ""  # file name or description, for error messages
        # what the model file says about itself (producer, version, metadata_props...): see session.ModelMetadata
        self.metadata: dict = {}
        self.guards: list[tuple[Dim, str]] = []  # (symbolic expression that must be >= 0, message), see Op.guards

    # -- construction ----------------------------------------------------------------------------------
    def add_input(self, value: Value) -> Value:
        value.is_input = True
        self.inputs.append(value)
        return value

    def add_node(self, op, inputs: Iterable[Optional[Value]], outputs: Iterable[Value], name: str,
                 index: int | None = None) -> Node:
        node = Node(op, list(inputs), list(outputs), name)
        for i, v in enumerate(node.inputs):
            if v is not None:
                v.uses.append((node, i))
        for v in node.outputs:
            v.producer = node
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        return node

    def remove_node(self, node: Node) -> None:
        for i, v in enumerate(node.inputs):
            if v is not None:
                v.uses = [(n, j) for (n, j) in v.uses if not (n is node and j == i)]
        for v in node.outputs:
            if v.producer is node:
                v.producer = None
        self.nodes.remove(node)

    def set_input(self, node: Node, i: int, value: Optional[Value]) -> None:
        old = node.inputs[i]
        if old is not None:
            old.uses = [(n, j) for (n, j) in old.uses if not (n is node and j == i)]
        node.inputs[i] = value
        if value is not None:
            value.uses.append((node, i))

    def replace_all_uses_with(self, old: Value, new: Value) -> None:
        for node, i in list(old.uses):
            node.inputs[i] = new
            new.uses.append((node, i))
        old.uses = []
        self.outputs = [new if v is old else v for v in self.outputs]

    # -- queries ---------------------------------------------------------------------------------------
    def values(self) -> list[Value]:
        seen: dict[int, Value] = {}
        for v in self.inputs:
            seen[id(v)] = v
        for n in self.nodes:
            for v in n.inputs + n.outputs:
                if v is not None:
                    seen.setdefault(id(v), v)
        for v in self.outputs:
            seen.setdefault(id(v), v)
        return list(seen.values())

    def constants(self) -> list[Value]:
        """Constant values that some node (or the graph output) still reads."""
        out = []
        for v in self.values():
            if v.is_const and (v.uses or v in self.outputs):
                out.append(v)
        return out

    def is_output(self, v: Value) -> bool:
        return any(o is v for o in self.outputs)

    def toposort(self) -> None:
        """Order nodes so that every node follows the producers of its inputs (stable)."""
        ready = {id(v) for v in self.inputs} | {id(v) for v in self.values() if v.is_const and v.producer is None}
        pending = list(self.nodes)
        ordered: list[Node] = []
        while pending:
            progressed = False
            rest = []
            for n in pending:
                if all(v is None or id(v) in ready or v.producer is None for v in n.inputs):
                    ordered.append(n)
                    ready.update(id(v) for v in n.outputs)
                    progressed = True
                else:
                    rest.append(n)
            if not progressed:
                raise ValueError(f"graph '{self.name}' has a cycle through {rest[0].describe()}")
            pending = rest
        self.nodes = ordered

    def __repr__(self) -> str:
        lines = [f"graph {self.name}({', '.join(map(repr, self.inputs))}) -> ({', '.join(map(repr, self.outputs))})"]
        lines += ["  " + repr(n) for n in self.nodes]
        return "\n".join(lines)
