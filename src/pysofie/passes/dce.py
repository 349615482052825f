from __future__ import annotations

from ..ir import Graph
from .manager import Pass


class DeadCodeElimination(Pass):
    """Removes nodes none of whose outputs reach a graph output through data read at run time."""
    name = "dce"

    def __call__(self, graph: Graph) -> bool:
        live = {id(v) for v in graph.outputs}
        keep = []
        for node in reversed(graph.nodes):
            if any(id(v) in live for v in node.outputs):
                keep.append(node)
                # inputs consumed at generation time (a Reshape's folded target shape) keep nothing alive
                live.update(id(node.inputs[i]) for i in node.op.runtime_inputs(node) if node.inputs[i] is not None)
        if len(keep) == len(graph.nodes):
            return False
        kept = {id(n) for n in keep}
        for node in list(graph.nodes):
            if id(node) not in kept:
                graph.remove_node(node)
        return True
