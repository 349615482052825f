from __future__ import annotations

from ..ir import Graph


class Pass:
    name = "pass"

    def __call__(self, graph: Graph) -> bool:
        raise NotImplementedError


class PassManager:
    """Runs a list of passes in order, repeating the list until no pass changes the graph."""

    def __init__(self, passes: list, max_rounds: int = 20):
        self.passes = list(passes)
        self.max_rounds = max_rounds

    def __call__(self, graph: Graph) -> bool:
        changed_any = False
        for _ in range(self.max_rounds):
            changed = False
            for p in self.passes:
                changed |= bool(p(graph))
            changed_any |= changed
            if not changed:
                break
        return changed_any


def default_pipeline(optimize: bool = True, target_passes=()) -> PassManager:
    """The target-neutral clean-up passes, then (optimize) the target's rewrites and kernel choices, which its
    back end provides (``backends/<target>.optimization_passes()``; passes/ never imports from backends/)."""
    from .control import ResolveConstantIf
    from .dce import DeadCodeElimination
    passes = [ResolveConstantIf(), DeadCodeElimination()]
    if optimize:
        passes += list(target_passes)
    return PassManager(passes)
