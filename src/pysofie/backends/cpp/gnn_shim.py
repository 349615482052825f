"""SOFIE-compatible C++ interface of graph_nets models: ``GNN_Data`` and ``Session::infer(GNN_Data&)``.

Emitted next to the ordinary ``infer(n_nodes, n_edges, nodes, edges, globals, senders, receivers, outputs...)``
for models converted by the graph_nets front end (the front end marks them with ``graph.gnn_shim = True``). As in
ROOT's SOFIE, ``edge_index`` holds the receivers in its first row and the senders in its second, and
``infer(GNN_Data&)`` replaces the data with the model's output graph. Models converted from an example holding
several graphs take them in one GNN_Data: ``n_node`` and ``n_edge`` give each graph's counts (the indices of
``edge_index`` count the nodes of all graphs, as a GraphsTuple's), ``global_data`` one row per graph. Models that
return a list of graphs (encode-process-decode) also have ``infer_all(const GNN_Data&)``, one GNN_Data per output
graph; ``infer(GNN_Data&)`` keeps the last.
"""
from __future__ import annotations

import re

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
   std::vector<int> n_node;         // nodes of each graph, for models that take several graphs per call
   std::vector<int> n_edge;         // edges of each graph (the same)
};"""

_FIELD = {"nodes": "node_data", "edges": "edge_data", "globals": "global_data"}


_OUT = re.compile(r"^(nodes|edges|globals)(?:_(\d+))?$")


def _eligible(em) -> bool:
    g = em.graph
    if not getattr(g, "gnn_shim", False):
        return False
    names = [v.name for v in g.inputs]
    return {"nodes", "senders", "receivers"} <= set(names) and set(names) <= {
        "nodes", "edges", "globals", "senders", "receivers", "n_node", "n_edge"} and \
        ("n_node" in names) == ("n_edge" in names) and bool(g.outputs) and \
        all(_OUT.match(v.name) for v in g.outputs)


def gnn_data_struct(em) -> str:
    return _STRUCT if _eligible(em) else ""


def _features(v) -> str:
    return cpp_dim(numel(v.shape[1:]))


def gnn_data_infer(em) -> str:
    if not _eligible(em):
        return ""
    g = em.graph
    ins = {v.name: v for v in g.inputs}
    several = "n_node" in ins
    b = []
    # locals named apart from the size parameters (which the emitter names after the finished text)
    local = {"n_nodes": "gnn_num_nodes", "n_edges": "gnn_num_edges", "n_graphs": "gnn_num_graphs"}
    b.append(f"const size_t gnn_num_nodes = data.node_data.size() / {_features(ins['nodes'])};")
    b.append(f"if (gnn_num_nodes * {_features(ins['nodes'])} != data.node_data.size()) "
             "throw std::invalid_argument(\"GNN_Data: node_data is not num_nodes x node features\");")
    b.append("if (data.edge_index.size() % 2) "
             "throw std::invalid_argument(\"GNN_Data: edge_index is not 2 x num_edges\");")
    b.append("const size_t gnn_num_edges = data.edge_index.size() / 2;")
    if several:
        b.append("const size_t gnn_num_graphs = data.n_node.size();")
        b.append("if (data.n_edge.size() != gnn_num_graphs) "
                 "throw std::invalid_argument(\"GNN_Data: n_node and n_edge differ in length (graphs)\");")
    if "edges" in ins:
        b.append(f"if (data.edge_data.size() != gnn_num_edges * {_features(ins['edges'])}) "
                 "throw std::invalid_argument(\"GNN_Data: edge_data is not num_edges x edge features\");")
    if "globals" in ins:
        rows = "gnn_num_graphs * " if several else ""
        b.append(f"if (data.global_data.size() != {rows}{_features(ins['globals'])}) "
                 "throw std::invalid_argument(\"GNN_Data: global_data does not hold the global features"
                 + (" of every graph" if several else "") + "\");")
    srcs = {"nodes": "data.node_data.data()", "edges": "data.edge_data.data()", "globals": "data.global_data.data()",
            "receivers": "data.edge_index.data()", "senders": "data.edge_index.data() + gnn_num_edges",
            "n_node": "data.n_node.data()", "n_edge": "data.n_edge.data()"}
    counts = {"receivers": "gnn_num_edges", "senders": "gnn_num_edges", "n_node": "gnn_num_graphs",
              "n_edge": "gnn_num_graphs"}
    args = [local[p] for p in em.params]
    for v in g.inputs:
        src = srcs[v.name]
        if v.name in counts and v.dtype.ctype != "int32_t":
            b.append(f"std::vector<{v.dtype.ctype}> gnn_{v.name}({src}, {src} + {counts[v.name]});")
            src = f"gnn_{v.name}.data()"
        args.append(src)
    for k, v in enumerate(g.outputs):
        with cpp_symbol_names(local):
            b.append(f"std::vector<float> out{k}({cpp_dim(numel(v.shape))});")
        args.append(f"out{k}.data()")
    b.append(f"infer({', '.join(args)});")
    graphs: dict = {}
    for k, v in enumerate(g.outputs):
        field, idx = _OUT.match(v.name).groups()
        graphs.setdefault(int(idx) if idx is not None else 0, []).append((_FIELD[field], k))
    b.append(f"std::vector<GNN_Data> gnn_out({len(graphs)}, data);")
    for j, idx in enumerate(sorted(graphs)):
        for field, k in graphs[idx]:
            b.append(f"gnn_out[{j}].{field} = std::move(out{k});")
    b.append("return gnn_out;")
    lines = ["// Every output graph of the model on `data` (one GNN_Data each; edge_index, n_node, n_edge as given).",
             "std::vector<GNN_Data> infer_all(const GNN_Data& data) {"]
    lines += ["   " + x for x in b] + ["}", "",
              "// SOFIE's interface: runs the model on `data` and replaces its features with the (last) output graph.",
              "void infer(GNN_Data& data) {", "   data = std::move(infer_all(data).back());", "}"]
    return "\n".join(lines)
