"""SOFIE-compatible C++ interface of graph_nets models: ``GNN_Data`` and ``Session::infer(GNN_Data&)``.

Emitted next to the ordinary ``infer(n_nodes, n_edges, nodes, edges, globals, senders, receivers, outputs...)``
for models converted by the graph_nets front end with one graph per call and one output graph (the front end
marks them with ``graph.gnn_shim = True``). As in ROOT's SOFIE, ``edge_index`` holds the receivers in its first
row and the senders in its second, and ``infer(GNN_Data&)`` replaces the data with the model's output graph.
"""
from __future__ import annotations

from ...ir.shapes import cpp_symbol_names, cpp_dim, numel

_STRUCT = """\
// The graph of a SOFIE GNN call: features row by row (float), edge_index 2 x num_edges (row 0: receivers,
// row 1: senders, as ROOT's SOFIE). Session::infer(GNN_Data&) replaces node, edge and global data with the
// model's output graph.
struct GNN_Data {
   std::vector<float> node_data;    // num_nodes x node features
   std::vector<float> edge_data;    // num_edges x edge features
   std::vector<float> global_data;  // global features
   std::vector<int> edge_index;     // 2 x num_edges
};"""

_FIELD = {"nodes": "node_data", "edges": "edge_data", "globals": "global_data"}


def _eligible(em) -> bool:
    g = em.graph
    if not getattr(g, "gnn_shim", False):
        return False
    names = [v.name for v in g.inputs]
    return {"nodes", "senders", "receivers"} <= set(names) and [v.name for v in g.outputs] and all(
        v.name in _FIELD for v in g.outputs)


def gnn_data_struct(em) -> str:
    return _STRUCT if _eligible(em) else ""


def _features(v) -> str:
    return cpp_dim(numel(v.shape[1:]))


def gnn_data_infer(em) -> str:
    if not _eligible(em):
        return ""
    g = em.graph
    ins = {v.name: v for v in g.inputs}
    lines = ["// SOFIE's interface: runs the model on `data` and replaces its features with the output graph.",
             "void infer(GNN_Data& data) {"]
    b = []
    # locals named apart from the size parameters (which the emitter names after the finished text)
    local = {"n_nodes": "gnn_num_nodes", "n_edges": "gnn_num_edges"}
    b.append(f"const size_t gnn_num_nodes = data.node_data.size() / {_features(ins['nodes'])};")
    b.append(f"if (gnn_num_nodes * {_features(ins['nodes'])} != data.node_data.size()) "
             "throw std::invalid_argument(\"GNN_Data: node_data is not num_nodes x node features\");")
    b.append("if (data.edge_index.size() % 2) "
             "throw std::invalid_argument(\"GNN_Data: edge_index is not 2 x num_edges\");")
    b.append("const size_t gnn_num_edges = data.edge_index.size() / 2;")
    if "edges" in ins:
        b.append(f"if (data.edge_data.size() != gnn_num_edges * {_features(ins['edges'])}) "
                 "throw std::invalid_argument(\"GNN_Data: edge_data is not num_edges x edge features\");")
    if "globals" in ins:
        b.append(f"if (data.global_data.size() != {_features(ins['globals'])}) "
                 "throw std::invalid_argument(\"GNN_Data: global_data does not hold the global features\");")
    b.append("const int* receivers = data.edge_index.data();")
    b.append("const int* senders = data.edge_index.data() + gnn_num_edges;")
    args = []
    for p in em.params:
        args.append(local[p])
    for v in g.inputs:
        args.append({"nodes": "data.node_data.data()", "edges": "data.edge_data.data()",
                     "globals": "data.global_data.data()", "senders": "senders", "receivers": "receivers"}[v.name])
    for k, v in enumerate(g.outputs):
        with cpp_symbol_names(local):
            b.append(f"std::vector<float> out{k}({cpp_dim(numel(v.shape))});")
        args.append(f"out{k}.data()")
    b.append(f"infer({', '.join(args)});")
    for k, v in enumerate(g.outputs):
        b.append(f"data.{_FIELD[v.name]} = std::move(out{k});")
    lines += ["   " + x for x in b] + ["}"]
    return "\n".join(lines)
