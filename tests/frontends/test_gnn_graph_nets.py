"""graph_nets front end: GraphNetwork, GraphIndependent and encode-process-decode callables, compared with
graph_nets/TensorFlow itself at several graph sizes (1 node, 0 edges, isolated nodes, graphs larger than the
example), one graph or several per call, and bad graphs rejected with errors naming the input.

All models are traced and converted once, and compiled in one batch (module-scoped fixture). Tolerance: 1e-5
relative to the output's scale (its largest magnitude). The encode-process-decode models stack several
LayerNorm'd steps on small latent sizes, which amplify float32 rounding (rows of near-equal features): there
pysofie and TensorFlow (both float32) are each compared with the same model run by TensorFlow in float64, and
pysofie's error must stay within 4e-5 of the scale or within 4x TensorFlow's own float32 error (in the
worst case seen, 3e-5 of the scale where TensorFlow happened to be within 4e-6).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
snt = pytest.importorskip("sonnet")
gn = pytest.importorskip("graph_nets")

import pysofie  # noqa: E402
from pysofie.build.batch import compile_many  # noqa: E402
from pysofie.errors import InvalidInputError  # noqa: E402

from tests.util import compile_cpp_main  # noqa: E402

RTOL = 1e-5
FEAT = {"nodes": 5, "edges": 3, "globals": 2}


def graph_dicts(sizes, seed=0, edges_feat=True):
    rng = np.random.default_rng(seed)
    out = []
    for n, e in sizes:
        d = {"globals": rng.normal(size=FEAT["globals"]).astype(np.float32),
             "nodes": rng.normal(size=(n, FEAT["nodes"])).astype(np.float32),
             "senders": rng.integers(0, max(n, 1), e).astype(np.int32),
             "receivers": rng.integers(0, max(n, 1), e).astype(np.int32)}
        d["edges"] = rng.normal(size=(e, FEAT["edges"])).astype(np.float32) if edges_feat else None
        out.append(d)
    return gn.utils_tf.data_dicts_to_graphs_tuple(out)


def mlp_ln(sizes, act=tf.nn.relu):
    return lambda: snt.Sequential([snt.nets.MLP(sizes, activation=act, activate_final=True),
                                   snt.LayerNorm(axis=-1, create_offset=True, create_scale=True)])


class EncodeProcessDecode(snt.Module):
    """ROOT's GNN tutorial model (small): encoder, a core looped in Python on concat(latent0, latent), decoder
    and output transform; returns one GraphsTuple per processing step (node_out: the output transform's node
    features, default latent)."""

    def __init__(self, latent=6, steps=2, node_out=None):
        super().__init__(name="encode_process_decode")
        ind = lambda nout=latent: gn.modules.GraphIndependent(  # noqa: E731
            edge_model_fn=lambda: snt.nets.MLP([latent, latent], activate_final=True),
            node_model_fn=lambda: snt.nets.MLP([latent, nout], activate_final=True),
            global_model_fn=lambda: snt.nets.MLP([latent, latent], activate_final=True))
        self.encoder, self.decoder, self.transform = ind(), ind(), ind(node_out or latent)
        self.core = gn.modules.GraphNetwork(mlp_ln([latent, latent]), mlp_ln([latent, latent]),
                                            mlp_ln([latent, latent]))
        self.steps = steps

    def __call__(self, g):
        latent = self.encoder(g)
        latent0 = latent
        outs = []
        for _ in range(self.steps):
            latent = self.core(gn.utils_tf.concat([latent0, latent], axis=1))
            outs.append(self.transform(self.decoder(latent)))
        return outs


class Reducers(snt.Module):
    """Every reducer straight to the outputs (TF's values for empty segments: lowest/highest for max/min)."""

    def __call__(self, g):
        seg = gn.blocks
        reducers = [tf.math.unsorted_segment_sum, tf.math.unsorted_segment_mean, tf.math.unsorted_segment_max,
                    tf.math.unsorted_segment_min, tf.math.unsorted_segment_prod, seg.unsorted_segment_max_or_zero,
                    seg.unsorted_segment_min_or_zero]
        nodes = [seg.ReceivedEdgesToNodesAggregator(r)(g) for r in reducers]
        nodes += [seg.SentEdgesToNodesAggregator(r)(g) for r in reducers[:3]]
        glob = [seg.EdgesToGlobalsAggregator(r)(g) for r in reducers] + [seg.NodesToGlobalsAggregator(r)(g)
                                                                        for r in reducers]
        return g.replace(nodes=tf.concat(nodes, axis=1), globals=tf.concat(glob, axis=1), edges=g.edges * 2.0)


def _models():
    """name -> (model, example graph, several graphs per call)"""
    tf.random.set_seed(1)
    one = graph_dicts([(4, 6)])
    many = graph_dicts([(3, 4), (2, 0), (4, 5)], seed=1)
    m = {}
    m["graph_network"] = (gn.modules.GraphNetwork(mlp_ln([8, 8]), mlp_ln([8, 8]), mlp_ln([8, 4])), one)
    seg = gn.blocks
    m["options"] = (gn.modules.GraphNetwork(
        edge_model_fn=lambda: snt.nets.MLP([7], activation=tf.nn.tanh),
        node_model_fn=lambda: snt.Sequential([snt.Linear(6), tf.nn.elu, snt.Linear(5), tf.nn.sigmoid]),
        global_model_fn=lambda: snt.nets.MLP([4], activation=tf.nn.leaky_relu, activate_final=True),
        reducer=tf.math.unsorted_segment_mean,
        edge_block_opt={"use_globals": False, "use_sender_nodes": False},
        node_block_opt={"use_sent_edges": True, "use_received_edges": True,
                        "received_edges_reducer": seg.unsorted_segment_max_or_zero,
                        "sent_edges_reducer": tf.math.unsorted_segment_sum},
        global_block_opt={"use_edges": True, "use_nodes": True,
                          "edges_reducer": seg.unsorted_segment_min_or_zero,
                          "nodes_reducer": tf.math.unsorted_segment_mean}), many)
    m["independent"] = (gn.modules.GraphIndependent(
        edge_model_fn=lambda: snt.Sequential([snt.Linear(4), snt.LayerNorm(-1, False, False)]),
        node_model_fn=lambda: snt.Sequential([snt.nets.MLP([5, 3], activation=tf.nn.selu),
                                              snt.LayerNorm(-1, create_scale=True, create_offset=False)])),
        one)
    m["interaction"] = (gn.modules.InteractionNetwork(
        edge_model_fn=lambda: snt.nets.MLP([5]), node_model_fn=lambda: snt.nets.MLP([4]),
        reducer=tf.math.unsorted_segment_sum), one)
    m["reducers"] = (Reducers(), many)
    epd = EncodeProcessDecode()
    m["encode_process_decode"] = (epd, one)
    # latent 8: the encoded part's products with the core's first layers are shared by the steps
    m["encode_process_decode_many"] = (EncodeProcessDecode(latent=8, steps=3, node_out=5), many)
    # latent 32: each step's copy of the core's, decoder's and transform's weight matrices (32 x 32: 4 KiB) is
    # stored once (ShareConstants)
    m["encode_process_decode_wide"] = (EncodeProcessDecode(latent=32, steps=3), one)
    return m


@pytest.fixture(scope="module")
def sessions():
    models = _models()
    graphs = []
    for name, (model, example) in models.items():
        graphs.append(pysofie.load(model, example_graph=example, name=name))
    built = compile_many(graphs)
    out = {}
    for (name, (model, example)), s, g in zip(models.items(), built, graphs):
        if isinstance(s, Exception):
            raise s
        out[name] = (model, example, s)
        GRAPHS[name] = g
    return out


GRAPHS: dict = {}  # the optimized graphs of the sessions fixture


def _feed(sess, g):
    feed = {}
    for a in sess.get_inputs():
        feed[a.name] = np.asarray(getattr(g, a.name).numpy())
    return feed


def _reference(model, g):
    r = model(g)
    refs = {}
    if not hasattr(r, "nodes"):
        for k, x in enumerate(r):
            for f in ("nodes", "edges", "globals"):
                refs[f"{f}_{k}"] = getattr(x, f)
    else:
        for f in ("nodes", "edges", "globals"):
            refs[f] = getattr(r, f)
    return {k: np.asarray(v.numpy()) for k, v in refs.items() if v is not None}


def check(sess, model, g, rtol=RTOL, twin64=None):
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, _feed(sess, g))))
    ref = _reference(model, g)
    assert set(got) == set(ref)
    exact = _reference(twin64, _as_float64(g)) if twin64 is not None else None
    for k, r in ref.items():
        assert got[k].shape == r.shape, k
        if not r.size:
            continue
        scale = max(float(np.abs(r).max()), 1e-6)
        if exact is None:
            np.testing.assert_allclose(got[k], r, rtol=0, atol=rtol * scale, err_msg=k)
            continue
        ours = float(np.abs(got[k] - exact[k]).max())
        theirs = float(np.abs(r - exact[k]).max())
        assert ours <= max(4e-5 * scale, 4 * theirs), f"{k}: error {ours:.3g} vs TF float32's {theirs:.3g}"


def _as_float64(g):
    cast = {f: tf.cast(getattr(g, f), tf.float64) for f in ("nodes", "edges", "globals") if getattr(g, f) is not None}
    return g.replace(**cast)


_EPD = {"encode_process_decode": dict(), "encode_process_decode_many": dict(latent=8, steps=3, node_out=5)}


@pytest.fixture(scope="module")
def twins(sessions):
    out = {}
    for name, kw in _EPD.items():
        model, example, _ = sessions[name]
        twin = EncodeProcessDecode(**kw)
        twin(_as_float64(example))
        src, dst = model.variables, twin.variables
        assert [v.shape for v in src] == [v.shape for v in dst]
        for a, b in zip(src, dst):
            b.assign(tf.cast(a, tf.float64))
        out[name] = twin
    return out


ONE_GRAPH_SIZES = [(4, 6), (1, 0), (1, 1), (7, 0), (30, 90), (200, 50), (120, 300)]
MANY_GRAPH_SIZES = [[(3, 4), (2, 0), (4, 5)], [(1, 0)], [(3, 4), (0, 0), (2, 1)], [(5, 9), (1, 0), (6, 2), (40, 100)], [(1, 1)] * 7]


@pytest.mark.parametrize("name", ["graph_network", "independent", "interaction", "encode_process_decode",
                                  "encode_process_decode_wide"])
def test_one_graph(sessions, twins, name):
    model, example, sess = sessions[name]
    for k, sizes in enumerate(ONE_GRAPH_SIZES):
        check(sess, model, graph_dicts([sizes], seed=10 + k), twin64=twins.get(name))


@pytest.mark.parametrize("name", ["options", "reducers", "encode_process_decode_many"])
def test_several_graphs(sessions, twins, name):
    model, example, sess = sessions[name]
    names = [a.name for a in sess.get_inputs()]
    assert names == ["nodes", "edges", "globals", "senders", "receivers", "n_node", "n_edge"]
    for k, sizes in enumerate(MANY_GRAPH_SIZES):
        check(sess, model, graph_dicts(sizes, seed=20 + k), twin64=twins.get(name))


def test_isolated_nodes_and_empty_graphs(sessions):
    """Nodes no edge reaches: TF's value of an empty segment (0 for sum/mean, max/min_or_zero)."""
    model, _, sess = sessions["options"]
    g = graph_dicts([(6, 2), (3, 0)], seed=3)
    g = g.replace(senders=tf.constant([0, 1], tf.int32), receivers=tf.constant([1, 1], tf.int32))
    check(sess, model, g)


def test_interface(sessions):
    _, _, sess = sessions["graph_network"]
    ins = {a.name: a.shape for a in sess.get_inputs()}
    assert ins == {"nodes": ["n_nodes", 5], "edges": ["n_edges", 3], "globals": [1, 2], "senders": ["n_edges"],
                   "receivers": ["n_edges"]}
    assert [o.name for o in sess.get_outputs()] == ["nodes", "edges", "globals"]
    _, _, epd = sessions["encode_process_decode"]
    assert [o.name for o in epd.get_outputs()] == ["nodes_0", "edges_0", "globals_0", "nodes_1", "edges_1",
                                                  "globals_1"]


def test_bad_graphs(sessions):
    model, _, sess = sessions["graph_network"]
    g = graph_dicts([(5, 4)], seed=4)
    feed = _feed(sess, g)
    bad = dict(feed, senders=np.array([0, 1, 5, 2], np.int32))
    with pytest.raises(InvalidInputError, match="senders.*index 5 is out of range"):
        sess.run(None, bad)
    bad = dict(feed, receivers=np.array([0, -1, 2, 2], np.int32))
    with pytest.raises(InvalidInputError, match="receivers"):
        sess.run(None, bad)
    bad = dict(feed, nodes=np.zeros((5, 4), np.float32))
    with pytest.raises(InvalidInputError, match="nodes"):
        sess.run(None, bad)
    bad = dict(feed, senders=np.zeros(3, np.int32))
    with pytest.raises(InvalidInputError, match="senders"):
        sess.run(None, bad)
    check(sess, model, g)  # still fine after the errors

    model, _, sess = sessions["options"]
    g = graph_dicts([(3, 2), (2, 1)], seed=5)
    feed = _feed(sess, g)
    with pytest.raises(InvalidInputError, match="n_node"):
        sess.run(None, dict(feed, n_node=np.array([4, 2], np.int32)))
    with pytest.raises(InvalidInputError, match="n_node"):
        sess.run(None, dict(feed, n_node=np.array([6, -1], np.int32)))
    with pytest.raises(InvalidInputError, match="n_edge"):
        sess.run(None, dict(feed, n_edge=np.array([1, 1], np.int32)))


def test_emit_and_check(tmp_path):
    model = gn.modules.GraphIndependent(node_model_fn=lambda: snt.Linear(3))
    g = graph_dicts([(3, 2)])
    paths = pysofie.emit(model, str(tmp_path), example_graph=g, name="gi")
    text = open(paths["header"]).read()
    assert "size_t n_nodes" in text and os.path.exists(paths["weights"])
    assert pysofie.check(model, example_graph=g) == []


def test_unsupported_listed():
    class Odd(snt.Module):
        def __call__(self, g):
            return g.replace(nodes=tf.math.cumsum(g.nodes, axis=0), edges=tf.math.cumprod(g.edges, axis=1))

    problems = pysofie.check(Odd(), example_graph=graph_dicts([(3, 2)]))
    assert any("Cumsum" in p for p in problems) and any("Cumprod" in p for p in problems)


# raw float files in and out, for the C++ programs below
CPP_IO = r"""#include <cstdio>
#include <fstream>
#include <iostream>

template <typename T> static std::vector<T> read_raw(const std::string& f, size_t n) {
   std::vector<T> v(n);
   std::ifstream in(f, std::ios::binary);
   in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
   return v;
}
static void write_raw(const std::string& f, const std::vector<float>& v) {
   std::ofstream(f, std::ios::binary).write(reinterpret_cast<const char*>(v.data()),
                                            static_cast<std::streamsize>(v.size() * sizeof(float)));
}
"""

CPP_MAIN = r"""
#include "gnet.hxx"
""" + CPP_IO + r"""
int main(int argc, char** argv) {
   if (argc != 4) return 2;
   const std::string dir = argv[1];
   const size_t n = std::stoul(argv[2]), e = std::stoul(argv[3]);
   auto nodes = read_raw<float>(dir + "/nodes.raw", n * 5);
   auto edges = read_raw<float>(dir + "/edges.raw", e * 3);
   auto glob = read_raw<float>(dir + "/globals.raw", 2);
   auto snd = read_raw<int>(dir + "/senders.raw", e), rcv = read_raw<int>(dir + "/receivers.raw", e);
   gnet::Session s(dir + "/gnet.bin");
   auto outs = s.infer(n, e, nodes.data(), edges.data(), glob.data(), snd.data(), rcv.data());  // ordinary API
   for (size_t k = 0; k < outs.size(); ++k) write_raw(dir + "/out" + std::to_string(k) + ".raw", outs[k]);
   gnet::GNN_Data data;  // SOFIE's API: edge_index row 0 receivers, row 1 senders
   data.node_data = nodes; data.edge_data = edges; data.global_data = glob;
   data.edge_index = rcv; data.edge_index.insert(data.edge_index.end(), snd.begin(), snd.end());
   s.infer(data);
   write_raw(dir + "/sofie0.raw", data.node_data);
   write_raw(dir + "/sofie1.raw", data.edge_data);
   write_raw(dir + "/sofie2.raw", data.global_data);
   data.node_data = nodes; data.edge_data = edges; data.global_data = glob;
   data.edge_index[0] = static_cast<int>(n);
   try { s.infer(data); } catch (const std::out_of_range& ex) { std::cout << "caught: " << ex.what() << "\n"; }
   return 0;
}
"""


def test_cpp_api_and_sofie_shim(sessions, tmp_path):
    """The emitted header in a plain C++ program: infer(n_nodes, n_edges, ...) and infer(GNN_Data&)."""
    import subprocess

    model = sessions["graph_network"][0]
    example = sessions["graph_network"][1]
    pysofie.emit(model, str(tmp_path), example_graph=example, name="gnet", namespace="gnet")
    exe = compile_cpp_main(tmp_path, CPP_MAIN)
    g = graph_dicts([(40, 120)], seed=9)
    for f in ("nodes", "edges", "globals", "senders", "receivers"):
        np.asarray(getattr(g, f).numpy()).tofile(tmp_path / f"{f}.raw")
    r = subprocess.run([str(exe), str(tmp_path), "40", "120"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "caught: input 'receivers': index 40 is out of range" in r.stdout
    ref = _reference(model, g)
    for k, f in enumerate(("nodes", "edges", "globals")):
        for prefix in ("out", "sofie"):
            got = np.fromfile(tmp_path / f"{prefix}{k}.raw", np.float32).reshape(ref[f].shape)
            np.testing.assert_allclose(got, ref[f], rtol=0, atol=RTOL * float(np.abs(ref[f]).max()))


CPP_MANY = r"""
#include "epd.hxx"
""" + CPP_IO + r"""
int main(int argc, char** argv) {
   if (argc != 5) return 2;
   const std::string dir = argv[1];
   const size_t n = std::stoul(argv[2]), e = std::stoul(argv[3]), g = std::stoul(argv[4]);
   epd::GNN_Data data;  // several graphs in one call: counts per graph, global indices in edge_index
   data.node_data = read_raw<float>(dir + "/nodes.raw", n * 5);
   data.edge_data = read_raw<float>(dir + "/edges.raw", e * 3);
   data.global_data = read_raw<float>(dir + "/globals.raw", g * 2);
   data.edge_index = read_raw<int>(dir + "/receivers.raw", e);
   auto snd = read_raw<int>(dir + "/senders.raw", e);
   data.edge_index.insert(data.edge_index.end(), snd.begin(), snd.end());
   data.n_node = read_raw<int>(dir + "/n_node.raw", g);
   data.n_edge = read_raw<int>(dir + "/n_edge.raw", g);
   epd::Session s(dir + "/epd.bin");
   auto all = s.infer_all(data);
   for (size_t k = 0; k < all.size(); ++k) {
      write_raw(dir + "/nodes_" + std::to_string(k) + ".out", all[k].node_data);
      write_raw(dir + "/edges_" + std::to_string(k) + ".out", all[k].edge_data);
      write_raw(dir + "/globals_" + std::to_string(k) + ".out", all[k].global_data);
   }
   s.infer(data);  // SOFIE's call: the last output graph replaces the data
   write_raw(dir + "/last.out", data.node_data);
   data.n_edge.pop_back();
   try { s.infer(data); } catch (const std::invalid_argument& ex) { std::cout << "caught: " << ex.what() << "\n"; }
   std::cout << all.size() << " graphs\n";
   return 0;
}
"""


def test_sofie_shim_several_graphs(sessions, tmp_path):
    """GNN_Data with several graphs per call (n_node, n_edge) and a list of output graphs (infer_all)."""
    import subprocess

    model, example, _ = sessions["encode_process_decode_many"]
    pysofie.emit(model, str(tmp_path), example_graph=example, name="epd", namespace="epd")
    exe = compile_cpp_main(tmp_path, CPP_MANY)
    g = graph_dicts([(5, 9), (1, 0), (40, 100)], seed=12)
    for f in ("nodes", "edges", "globals", "senders", "receivers", "n_node", "n_edge"):
        np.asarray(getattr(g, f).numpy()).astype(np.float32 if f in ("nodes", "edges", "globals")
                                                  else np.int32).tofile(tmp_path / f"{f}.raw")
    r = subprocess.run([str(exe), str(tmp_path), "46", "109", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "caught: GNN_Data: n_node and n_edge differ in length" in r.stdout
    assert "3 graphs" in r.stdout  # steps=3: one output graph per step
    ref = _reference(model, g)
    for k in range(3):
        for f in ("nodes", "edges", "globals"):
            want = ref[f"{f}_{k}"]
            got = np.fromfile(tmp_path / f"{f}_{k}.out", np.float32).reshape(want.shape)
            np.testing.assert_allclose(got, want, rtol=0, atol=4e-5 * float(np.abs(want).max()), err_msg=f"{f}_{k}")
    np.testing.assert_array_equal(np.fromfile(tmp_path / "last.out", np.float32),
                                  np.fromfile(tmp_path / "nodes_2.out", np.float32))


def test_bad_index_with_two_threads():
    """The fused edge MLP checks the indices before its threads start: a clean error, not a crash."""
    tf.random.set_seed(3)
    model = gn.modules.GraphNetwork(mlp_ln([8, 8]), mlp_ln([8, 8]), mlp_ln([8, 4]))
    example = graph_dicts([(4, 6)])
    sess = pysofie.InferenceSession(model, example_graph=example, intra_op_num_threads=2)
    g = graph_dicts([(300, 900)], seed=6)
    check(sess, model, g)
    feed = _feed(sess, g)
    snd = feed["senders"].copy()
    snd[700] = 300
    with pytest.raises(InvalidInputError, match="senders.*index 300 is out of range"):
        sess.run(None, dict(feed, senders=snd))


def test_encoded_products_computed_once(sessions):
    """Encode-process-decode: every step's core reads concat(encoded, latent) with the same weights; the products
    of the encoded edges and nodes with the edge and node blocks' first layers are computed once
    (backends/cpp/passes/shared_products.py) and added into each step's first layer (RowMLP addends). The
    numbers are checked against graph_nets by test_several_graphs."""
    sessions["encode_process_decode_many"]
    g = GRAPHS["encode_process_decode_many"]
    mlps = [n for n in g.nodes if n.op_type == "RowMLP" and ("edge_block" in n.name or "node_block" in n.name)]
    assert len(mlps) == 6, [n.name for n in mlps]  # edge and node blocks, 3 steps
    assert all(n.op.spec.get("adds", 0) >= 1 for n in mlps), [n.op.spec for n in mlps]


def test_step_weights_stored_once(sessions):
    """The model's loop traces a copy of the core's, decoder's and output transform's weights per processing step;
    byte-identical weight matrices (>= 4 KiB) are one constant (backends/cpp/passes/shared_products.py
    ShareConstants), read by every step's RowMLP. The numbers are checked against graph_nets by test_one_graph."""
    import hashlib
    sessions["encode_process_decode_wide"]
    g = GRAPHS["encode_process_decode_wide"]
    consts = [v for v in g.constants() if v.const.nbytes >= 4096]
    digests = [hashlib.sha256(np.ascontiguousarray(v.const).tobytes()).hexdigest() for v in consts]
    assert len(set(digests)) == len(digests), "byte-identical weight matrices kept as separate constants"
    dec = [n for n in g.nodes if n.op_type == "RowMLP" and n.outputs[0].name.startswith("edges_")]
    assert len(dec) == 3, [n.outputs[0].name for n in dec]  # decoder + output transform of the edges, per step
    w = [{id(v) for v in n.inputs if v is not None and v.const is not None and v.const.nbytes >= 4096} for n in dec]
    assert w[0] and w[0] == w[1] == w[2], "the steps' edge decoders do not share their weights"
