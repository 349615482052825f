"""PyTorch Geometric layers and hand-written message passing, through the torch front end (ONNX export with a
symbolic number of nodes N, edges E and graphs B; Gather + ScatterElements with add / max reductions; the
hand-written module also through the dynamo exporter: GatherND + ScatterElements), compared
with the modules themselves at several graph sizes (1 node, isolated nodes, graphs larger than the export's
example). Tolerance: 1e-5 relative to the output's scale. All models compile in one batch.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pyg_nn = pytest.importorskip("torch_geometric.nn")
pyg_utils = pytest.importorskip("torch_geometric.utils")

import pysofie  # noqa: E402
from pysofie.build.batch import compile_many  # noqa: E402
from pysofie.errors import InvalidInputError  # noqa: E402

nn = torch.nn
F, FE, FU = 4, 3, 2
RTOL = 1e-5
GRAPH = [("N", F), ("int64", (2, "E"))]


class Layer(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x, edge_index):
        return self.conv(x, edge_index)


class MessagePassing(nn.Module):
    """Gather per edge, an edge MLP, scatter-add and scatter-amax into the receivers, a node update."""

    def __init__(self, h=6):
        super().__init__()
        self.msg, self.upd = nn.Linear(2 * F, h), nn.Linear(F + 2 * h, h)

    def forward(self, x, edge_index):
        src, dst = edge_index[0], edge_index[1]
        m = torch.relu(self.msg(torch.cat([x[src], x[dst]], 1)))
        idx = dst.unsqueeze(1).expand_as(m)
        agg = torch.zeros(x.shape[0], m.shape[1]).scatter_add(0, idx, m)
        amax = torch.zeros(x.shape[0], m.shape[1]).scatter_reduce(0, idx, m, reduce="amax", include_self=True)
        return self.upd(torch.cat([x, agg, amax], 1))


class EdgeModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * F + FE + FU, 8), nn.ReLU(), nn.Linear(8, FE))

    def forward(self, src, dst, edge_attr, u, batch):
        return self.mlp(torch.cat([src, dst, edge_attr, u[batch]], 1))


class NodeModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp1 = nn.Sequential(nn.Linear(F + FE, 8), nn.ReLU())
        self.mlp2 = nn.Linear(F + 8 + FU, F)

    def forward(self, x, edge_index, edge_attr, u, batch):
        row, col = edge_index
        out = pyg_utils.scatter(self.mlp1(torch.cat([x[row], edge_attr], 1)), col, dim=0, dim_size=x.size(0),
                                reduce="mean")
        return self.mlp2(torch.cat([x, out, u[batch]], 1))


class GlobalModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(FU + F, FU)

    def forward(self, x, edge_index, edge_attr, u, batch):
        return self.mlp(torch.cat([u, pyg_utils.scatter(x, batch, dim=0, dim_size=u.size(0), reduce="sum")], 1))


class Meta(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = pyg_nn.MetaLayer(EdgeModel(), NodeModel(), GlobalModel())

    def forward(self, x, edge_index, edge_attr, u, batch):
        return self.layer(x, edge_index, edge_attr, u, batch)


class Pool(nn.Module):
    """A SAGE layer, then mean and sum pooling per graph with a batch vector."""

    def __init__(self):
        super().__init__()
        self.conv = pyg_nn.SAGEConv(F, 5, aggr="sum")

    def forward(self, x, edge_index, batch, u):
        h = self.conv(x, edge_index)
        b = u.shape[0]
        return torch.cat([pyg_nn.global_mean_pool(h, batch, b), pyg_nn.global_add_pool(h, batch, b)], 1)


class MaxModel(nn.Module):
    """EdgeConv with max aggregation, then max pooling per graph: PyG's scatter-max, which the TorchScript exporter
    cannot export; the front end then takes the dynamo exporter."""

    def __init__(self):
        super().__init__()
        self.conv = pyg_nn.EdgeConv(nn.Sequential(nn.Linear(2 * F, 6), nn.Tanh()), aggr="max")

    def forward(self, x, edge_index, batch, u):
        h = self.conv(x, edge_index)
        return torch.cat([h.sum(1, keepdim=True), pyg_nn.global_max_pool(h, batch, u.shape[0])[batch]], 1)


def _has_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def _models():
    torch.manual_seed(0)
    batched = [("N", F), ("int64", (2, "E")), ("int64", ("N",)), ("B", FU)]
    meta = [("N", F), ("int64", (2, "E")), ("E", FE), ("B", FU), ("int64", ("N",))]
    return {
        "message_passing": (MessagePassing(), GRAPH),
        "gin": (Layer(pyg_nn.GINConv(nn.Sequential(nn.Linear(F, 8), nn.ReLU(), nn.Linear(8, 3)), eps=0.1)), GRAPH),
        "sage_mean": (Layer(pyg_nn.SAGEConv(F, 5)), GRAPH),
        "sage_sum": (Layer(pyg_nn.SAGEConv(F, 5, aggr="sum", root_weight=False)), GRAPH),
        "edgeconv": (Layer(pyg_nn.EdgeConv(nn.Sequential(nn.Linear(2 * F, 6), nn.Tanh()), aggr="mean")), GRAPH),
        "meta": (Meta(), meta),
        "pool": (Pool(), batched),
        **({"max": (MaxModel(), batched)} if _has_onnxscript() else {}),
    }


@pytest.fixture(scope="module")
def sessions():
    models = _models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = [pysofie.load(m.eval(), input_shapes=shapes, name=name) for name, (m, shapes) in models.items()]
        dynamo = _dynamo_export(models["message_passing"][0])
        if dynamo is not None:  # the same module through the dynamo exporter (GatherND, ScatterElements)
            models["message_passing_dynamo"] = (models["message_passing"][0], None)
            graphs.append(pysofie.load(dynamo, name="message_passing_dynamo"))
    built = compile_many(graphs)
    for s in built:
        if isinstance(s, Exception):
            raise s
    return {name: (m, s) for (name, (m, _)), s in zip(models.items(), built)}


def _dynamo_export(module):
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    x, ei = torch.rand(5, F), torch.randint(0, 5, (2, 12))
    dims = {"x": {0: torch.export.Dim("N", min=2)}, "edge_index": {1: torch.export.Dim("E", min=2)}}
    prog = torch.onnx.export(module, (x, ei), dynamo=True, dynamic_shapes=dims, input_names=["x", "edge_index"],
                             verbose=False)
    return prog.model_proto


def _graph(n, e, b=1, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, F)).astype(np.float32)
    ei = rng.integers(0, n, (2, e)).astype(np.int64)
    batch = np.sort(rng.integers(0, b, n)).astype(np.int64)
    return x, ei, batch


def _compare(got, ref):
    assert got.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-6) if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=0, atol=RTOL * scale)


SIZES = [(1, 1), (5, 12), (6, 2), (300, 1000)]  # (6, 2): isolated nodes; 300 > the export's example


@pytest.mark.parametrize("name", ["message_passing", "message_passing_dynamo", "gin", "sage_mean", "sage_sum",
                                  "edgeconv"])
def test_layer(sessions, name):
    if name not in sessions:
        pytest.skip("the dynamo exporter needs onnxscript")
    model, sess = sessions[name]
    for k, (n, e) in enumerate(SIZES):
        x, ei, _ = _graph(n, e, seed=k)
        with torch.no_grad():
            ref = model(torch.from_numpy(x), torch.from_numpy(ei)).numpy()
        (got,) = sess.run(None, {"x": x, "edge_index": ei})
        _compare(got, ref)


def test_meta_layer(sessions):
    model, sess = sessions["meta"]
    rng = np.random.default_rng(7)
    for n, e, b in [(1, 1, 1), (9, 20, 3), (200, 700, 5)]:
        x, ei, batch = _graph(n, e, b, seed=n)
        ea = rng.normal(size=(e, FE)).astype(np.float32)
        u = rng.normal(size=(b, FU)).astype(np.float32)
        with torch.no_grad():
            refs = [r.numpy() for r in model(*(torch.from_numpy(a) for a in (x, ei, ea, u, batch)))]
        got = sess.run(None, {"x": x, "edge_index": ei, "edge_attr": ea, "u": u, "batch": batch})
        for g, r in zip(got, refs):
            _compare(g, r)


def test_pooling_with_batch_vector(sessions):
    model, sess = sessions["pool"]
    for n, e, b in [(1, 1, 1), (10, 30, 3), (400, 1200, 7)]:
        x, ei, batch = _graph(n, e, b, seed=n)
        u = np.zeros((b, FU), np.float32)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(a) for a in (x, ei, batch, u))).numpy()
        (got,) = sess.run(None, {"x": x, "edge_index": ei, "batch": batch, "u": u})
        _compare(got, ref)


def test_max_aggregation_and_pooling(sessions):
    if "max" not in sessions:
        pytest.skip("needs onnxscript (the dynamo exporter)")
    model, sess = sessions["max"]
    for n, e, b in [(1, 1, 1), (6, 2, 2), (10, 30, 3), (300, 900, 5)]:  # (6, 2): nodes no edge reaches
        x, ei, batch = _graph(n, e, b, seed=n)
        u = np.zeros((b, FU), np.float32)
        with torch.no_grad():
            ref = model(*(torch.from_numpy(a) for a in (x, ei, batch, u))).numpy()
        (got,) = sess.run(None, {"x": x, "edge_index": ei, "batch": batch, "u": u})
        _compare(got, ref)


def test_index_out_of_range(sessions):
    _, sess = sessions["message_passing"]
    x, ei, _ = _graph(4, 5)
    ei[1, 3] = 4
    with pytest.raises(InvalidInputError, match="index out of range"):
        sess.run(None, {"x": x, "edge_index": ei})
    with pytest.raises(InvalidInputError, match="x"):
        sess.run(None, {"x": x[:, :3], "edge_index": ei})


def test_gcn_and_gat_layers():
    """GCNConv and GATConv exports add self-loops with NonZero/Range on the data (sizes decided at run time):
    compared with the layers themselves at several graph sizes, in one compiled library."""
    torch.manual_seed(3)
    layers = {"gcn": Layer(pyg_nn.GCNConv(F, 5)).eval(), "gat": Layer(pyg_nn.GATConv(F, 5, heads=2)).eval()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graphs = [pysofie.load(m, input_shapes=GRAPH, name=name) for name, m in layers.items()]
    built = compile_many(graphs)
    for (name, model), sess in zip(layers.items(), built):
        if isinstance(sess, Exception):
            raise sess
        for k, (n, e) in enumerate(SIZES + [(5, 0)]):  # (5, 0): no edge, only the self-loops
            x, ei, _ = _graph(n, e, seed=10 + k)
            with torch.no_grad():
                ref = model(torch.from_numpy(x), torch.from_numpy(ei)).numpy()
            (got,) = sess.run(None, {"x": x, "edge_index": ei})
            _compare(got, ref)
