"""Graph passes. Each pass is an object whose ``__call__(graph)`` returns whether it changed the graph."""
from .manager import PassManager, default_pipeline
from .infer import InferShapesAndFold
from .dce import DeadCodeElimination

__all__ = ["PassManager", "default_pipeline", "InferShapesAndFold", "DeadCodeElimination"]
