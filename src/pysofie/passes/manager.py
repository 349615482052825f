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


def default_pipeline(optimize: bool = True, target: str = "cpp") -> PassManager:
    """The passes for a target: "cpp" (the CPU kernels' packing, Winograd, ...) or "cuda" (only the
    target-neutral rewrites: the CUDA kernels read weights in their ONNX layout)."""
    from .control import ResolveConstantIf
    from .dce import DeadCodeElimination
    from .fusion import neutral_passes, optimization_passes
    passes = [ResolveConstantIf(), DeadCodeElimination()]
    if optimize:
        passes += optimization_passes() if target == "cpp" else neutral_passes()
    return PassManager(passes)
