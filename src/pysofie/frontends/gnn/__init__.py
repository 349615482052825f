"""Graph-network front ends. ``graph_from_graph_nets``: DeepMind graph_nets / Sonnet 2 models (GraphNetwork,
GraphIndependent, or any callable on a GraphsTuple returning a GraphsTuple or a list of them) -> IR.

The model is traced with ``tf.function`` on an example GraphsTuple (see trace.py) and the TensorFlow ops its
outputs depend on are converted (convert.py, tfops.py). The numbers of nodes, edges (and graphs) become the size
parameters ``n_nodes``, ``n_edges`` (``n_graphs``) of the generated code. TensorFlow, Sonnet and graph_nets are
imported only while converting.
"""
from __future__ import annotations

from typing import Optional

from ...ir import Graph


def graph_from_graph_nets(model, example_graph, *, name: Optional[str] = None, several_graphs=None) -> Graph:
    from .convert import graph_from_traced
    from .trace import trace
    source = f"graph_nets model {type(model).__name__}"
    traced = trace(model, example_graph, source, several_graphs)
    default = "".join(ch if ch.isalnum() else "_" for ch in type(model).__name__.lower()) or "gnn"
    return graph_from_traced(traced, name or default, source)
