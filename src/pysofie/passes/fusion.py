"""Optimization passes that rewrite the graph for speed. Each has a test against the unoptimized path."""
from __future__ import annotations


def optimization_passes() -> list:
    return []
