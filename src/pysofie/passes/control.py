from __future__ import annotations

from ..ir import Graph
from .manager import Pass


class ResolveConstantIf(Pass):
    """An If whose condition is known at generation time is replaced by the chosen branch's outputs (the other
    branch then has no use left and dead-code elimination removes it)."""
    name = "resolve-if"

    def __call__(self, graph: Graph) -> bool:
        changed = False
        for node in list(graph.nodes):
            if node.op_type != "If" or node.op.constant_condition(node) is None:
                continue
            then_outs, else_outs = node.op.branches(node)
            chosen = then_outs if node.op.constant_condition(node) else else_outs
            graph.remove_node(node)
            for out, src in zip(node.outputs, chosen):
                graph.replace_all_uses_with(out, src)
            changed = True
        return changed
