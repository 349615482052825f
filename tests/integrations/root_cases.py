"""pysofie.root with the PyPI ROOT: the compiled and jit declarations, RDataFrame (1 and 2 threads), string
expressions, and the distributed RDataFrame recipe on a 2-worker Dask LocalCluster. References: InferenceSession
(exact, for the same batch) and onnxruntime (tolerance)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pytest.importorskip("ROOT")

import pysofie  # noqa: E402
import pysofie.root as pr  # noqa: E402

from ..util import ATOL, RTOL, ort  # noqa: E402
from .models import features, mlp  # noqa: E402

COLS = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def model():
    return mlp(4, 16, 2, name="rootmlp")


@pytest.fixture(scope="module")
def declared(model):
    return pr.declare(model)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A TTree of 4000 events in clusters of 500 (so that 2 threads share the work)."""
    path = str(tmp_path_factory.mktemp("root") / "events.root")
    df = ROOT.RDataFrame(4000).Define("idx", "rdfentry_")  # the event number (rdfentry_ is not one under IMT)
    for k, c in enumerate(COLS):
        typ = "double" if c == "c" else "float"  # a double column: converted to the model's float input
        df = df.Define(c, f"({typ})(std::sin(rdfentry_ * {k + 1} * 0.37) * {k + 1})")
    opts = ROOT.RDF.RSnapshotOptions()
    opts.fAutoFlush = 500
    df.Snapshot("events", path, COLS + ["idx"], opts)
    return path


def _per_event(sess, x):
    return np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])


def test_import_pysofie_does_not_import_root():
    code = "import sys, pysofie, pysofie.columnar, pysofie.root; print('ROOT' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    assert r.stdout.strip() == "False", r.stderr


def test_declare_compiled_matches_the_session(declared, model):
    assert declared.mode == "compiled" and os.path.isabs(declared.library)
    s = declared.make_session()
    x = features(12)
    y = np.zeros((12, 2), np.float32)
    s.infer(12, x, y)
    ref = declared.session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, ref)  # the same compiled code: bit-identical
    np.testing.assert_allclose(y, ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
    one = np.asarray(s.infer(1, x[:1]))  # the allocating form
    np.testing.assert_array_equal(one, declared.session.run(None, {"x": x[:1]})[0][0])


def test_declare_is_idempotent_and_checks_namespaces(declared, model):
    assert pr.declare(model) is declared
    with pytest.raises(pysofie.PysofieError, match="already declared"):
        pr.declare(mlp(4, 8, 2, name="rootmlp", seed=5))
    with pytest.raises(pysofie.PysofieError, match="already declared"):
        pr.declare(model, jit=True)


def test_bad_weight_file_raises(declared):
    with pytest.raises(Exception, match="cannot open|weight file"):
        declared.make_session("/nonexistent/w.bin")


def test_declare_jit(model):
    dm = pr.declare(mlp(4, 16, 2, name="rootjit"), jit=True)
    assert dm.mode == "jit" and dm.library == ""
    s = dm.make_session()
    x = features(12)
    y = np.zeros((12, 2), np.float32)
    s.infer(12, x, y)
    np.testing.assert_allclose(y, dm.session.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)


def _scores(df):
    out = df.AsNumpy(["score", "idx"] + COLS)
    order = np.argsort(out["idx"])
    scores = np.stack([np.asarray(r) for r in out["score"]])[order]
    x = np.stack([out[c][order] for c in COLS], 1).astype(np.float32)
    return scores, x


def test_define_with_one_and_two_threads(declared, model, tree):
    assert not ROOT.IsImplicitMTEnabled()
    one, x = _scores(pr.define(ROOT.RDataFrame("events", tree), "score", model, columns=COLS))
    ROOT.EnableImplicitMT(2)
    try:
        df = ROOT.RDataFrame("events", tree)
        assert df.GetNSlots() == 2
        two, x2 = _scores(pr.define(df, "score", model, columns=COLS))
    finally:
        ROOT.DisableImplicitMT()
    assert one.shape == (4000, 2)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, _per_event(declared.session, x))  # event by event, as in the loop
    np.testing.assert_allclose(one, ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)


@pytest.fixture(scope="module")
def wide():
    """A model with 20 outputs per event: more than an RVec's own storage (12 floats)."""
    m = mlp(4, 16, 20, name="rootwide", seed=3)
    return m, pr.declare(m)


def test_define_views_are_copied_by_take_cache_and_snapshot(wide, tree, tmp_path):
    """SofieFunctor's RVec is a view of the slot's buffer, valid for the event: what keeps values past their event
    (Take, Cache, Snapshot, AsNumpy) must hold each event's own values, with 1 and 2 threads."""
    model, dm = wide
    for threads in (1, 2):
        if threads == 2:
            ROOT.EnableImplicitMT(2)
        try:
            df = pr.define(ROOT.RDataFrame("events", tree), "score", model, columns=COLS)
            taken = df.Take["ROOT::RVec<float>"]("score")
            idx = df.Take["unsigned long long"]("idx")
            cached = df.Cache(["score", "idx"] + COLS)
            out = str(tmp_path / f"snap{threads}.root")
            df.Snapshot("scored", out, ["score", "idx"] + COLS)
            scores, x = _scores(cached)
        finally:
            if threads == 2:
                ROOT.DisableImplicitMT()
        ref = dm.session.run(None, {"x": x})[0]
        assert scores.shape == (4000, 20)
        np.testing.assert_array_equal(scores, _per_event(dm.session, x))
        np.testing.assert_allclose(scores, ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
        order = np.argsort(np.asarray(idx.GetValue()))
        t = np.stack([np.asarray(r) for r in taken.GetValue()])[order]
        np.testing.assert_array_equal(t, scores)
        snap, _ = _scores(ROOT.RDataFrame("scored", out))
        np.testing.assert_array_equal(snap, scores)
        np.testing.assert_allclose(ref, scores, rtol=1e-5, atol=1e-6)


def test_one_functor_in_two_defines_keeps_both_columns(wide, tree):
    """A copy of the functor gets buffers of its own: one functor given to two Defines (inputs in another order)
    gives two columns that each hold their own values."""
    model, dm = wide
    pr._functor_prelude(ROOT)
    assert ROOT.gInterpreter.Declare(f"""
ROOT::RDF::RNode rootwide_twice(ROOT::RDF::RNode df, const std::string& weights) {{
   pysofie::SofieFunctor<{dm.session_class}, float, float, float, float, double, float> f(df.GetNSlots(), 20,
                                                                                              weights);
   return df.DefineSlot("score", f, {{"a", "b", "c", "d"}}).DefineSlot("rev", f, {{"b", "a", "c", "d"}})
            .Define("both", [](const ROOT::RVecF& s, const ROOT::RVecF& r) {{
               return ROOT::VecOps::Concatenate(s, r); }}, {{"score", "rev"}});
}}""")
    df = ROOT.rootwide_twice(ROOT.RDF.AsRNode(ROOT.RDataFrame("events", tree)), dm.weight_file)
    out = df.AsNumpy(["both", "idx"] + COLS)
    order = np.argsort(out["idx"])
    both = np.stack([np.asarray(r) for r in out["both"]])[order]
    x = np.stack([out[c][order] for c in COLS], 1).astype(np.float32)
    np.testing.assert_array_equal(both[:, :20], _per_event(dm.session, x))
    np.testing.assert_array_equal(both[:, 20:], _per_event(dm.session, np.ascontiguousarray(x[:, [1, 0, 2, 3]])))


def test_functor_sessions_one_per_slot_on_own_lines_and_freed():
    """SofieFunctor's Sessions (one per slot, in one allocation): each slot reaches its own Session, on cache lines
    of its own; the copies share them; all are destroyed with the last copy; a Session constructor that throws
    destroys those already made and the functor constructor throws."""
    pr._functor_prelude(ROOT)
    assert ROOT.gInterpreter.Declare("""
namespace rootcase_sessions {
int live = 0, made = 0, fail_at = -1;
struct Counting {
   char pad[40];  // not a multiple of the cache line
   int id;
   explicit Counting(const std::string& w) : id(made) {
      if (made == fail_at) throw std::runtime_error("session " + std::to_string(made) + " of " + w);
      ++made;
      ++live;
   }
   ~Counting() { --live; }
   void infer(std::size_t n, const float* x, float* y) { y[0] = x[0] + 1000.f * id; y[1] = float(reinterpret_cast<std::uintptr_t>(this) % 64); (void)n; }
};
using F = pysofie::SofieFunctor<Counting, float, float, float>;
std::vector<float> run(unsigned nslots) {
   std::vector<float> out;
   {
      F f(nslots, 2, "w");
      F copy = f;
      for (unsigned s = 0; s < nslots; ++s) {
         auto r = copy(s, 0.5f);
         out.push_back(r[0]);
         out.push_back(r[1]);
      }
      out.push_back(float(live));
   }
   out.push_back(float(live));
   return out;
}
std::string beyond(unsigned nslots) {  // a slot the functor was not made for: an exception, not a stray Session
   F f(nslots, 2, "w");
   try {
      f(nslots, 0.5f);
   } catch (const std::out_of_range& e) {
      return e.what();
   }
   return "";
}
}""")
    ns = ROOT.rootcase_sessions
    out = list(ns.run(3))
    assert out == [0.5, 0.0, 1000.5, 0.0, 2000.5, 0.0, 3.0, 0.0]  # slot s: Session s, 64-byte aligned; freed
    assert "called for slot 2, made for 2 slot(s)" in str(ns.beyond(2))
    ns.made, ns.fail_at = 0, 2
    with pytest.raises(Exception, match="session 2 of w"):
        ns.run(4)
    assert ns.live == 0


def test_define_errors(declared, model, tree):
    df = ROOT.RDataFrame("events", tree)
    with pytest.raises(pysofie.InvalidInputError, match="4 values per event, 3 columns"):
        pr.define(df, "score", model, columns=COLS[:3])
    with pytest.raises(pysofie.InvalidInputError, match="'nope'"):
        pr.define(df, "score", model, columns=["a", "b", "c", "nope"])
    with pytest.raises(pysofie.InvalidInputError, match="scalar"):
        pr.define(df.Define("v", "ROOT::RVecF{a, b}"), "score", model, columns=["a", "b", "c", "v"])
    with pytest.raises(pysofie.InvalidInputError, match="nslots=0, but the RDataFrame runs 1 slots"):
        pr.define(df, "score", model, columns=COLS, nslots=0)
    # RDataFrame's own refusals, as pysofie errors naming the column (not cppyy's wrapper of the C++ exception)
    with pytest.raises(pysofie.InvalidInputError, match="column 'a'.*already present"):
        pr.define(df, "a", model, columns=COLS)
    with pytest.raises(pysofie.InvalidInputError, match="column 'my score'.*Not a valid C\\+\\+ variable name"):
        pr.define(df, "my score", model, columns=COLS)


def test_declare_function_for_string_expressions(declared, model, tree):
    with pytest.raises(pysofie.InvalidInputError, match=re.escape("not C++ type names: ['float); abort(); (float']")):
        pr.declare_function(model, "rootmlp_bad", ["float", "float", "float); abort(); (float", "float"])
    pr.declare_function(model, "rootmlp_score", ["float", "float", "double", "float"])
    scores, x = _scores(ROOT.RDataFrame("events", tree).Define("score", "rootmlp_score(a, b, c, d)"))
    np.testing.assert_array_equal(scores, _per_event(declared.session, x))
    # two threads, each alternating between two functions of the same type (each thread keeps the Session of the
    # function it called last, without a lock): every value still from that function's Session for that thread
    pr.declare_function(model, "rootmlp_score2", ["float", "float", "double", "float"])
    ROOT.EnableImplicitMT(2)
    try:
        df = ROOT.RDataFrame("events", tree)
        out = df.Define("s1", "rootmlp_score(a, b, c, d)").Define("s2", "rootmlp_score2(d, c, b, a)") \
            .AsNumpy(["s1", "s2", "idx"] + COLS)
    finally:
        ROOT.DisableImplicitMT()
    order = np.argsort(out["idx"])
    x = np.stack([out[c][order] for c in COLS], 1).astype(np.float32)
    for col, xin in (("s1", x), ("s2", np.ascontiguousarray(x[:, ::-1]))):
        got = np.stack([np.asarray(r) for r in out[col]])[order]
        np.testing.assert_array_equal(got, _per_event(declared.session, xin))


def test_config_cflags_has_the_functor_header():
    from pysofie.cli import main
    import io
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["config", "--cflags"]) == 0
    inc = [f[2:] for f in buf.getvalue().split() if f.startswith("-I")]
    assert any(os.path.exists(os.path.join(d, "pysofie", "SofieFunctor.hxx")) for d in inc)


def _init_worker(sess):
    import pysofie.root
    pysofie.root.declare_function(sess, "distmlp_score", ["float", "float", "double", "float"])


def test_distributed_rdataframe_on_dask(model, tree):
    """The README's recipe: the session pickled to 2 Dask worker processes, initialized there through the cache."""
    distributed = pytest.importorskip("distributed")
    sess = pysofie.InferenceSession(mlp(4, 16, 2, name="distmlp"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        ROOT.RDF.Experimental.Distributed.initialize(_init_worker, sess)
        df = ROOT.RDataFrame("events", tree, executor=client, npartitions=2)
        out = df.Define("score", "distmlp_score(a, b, c, d)").AsNumpy(["score", "idx"] + COLS)
        pids = client.run(os.getpid)
    assert len(pids) == 2 and os.getpid() not in pids.values()
    order = np.argsort(out["idx"])
    scores = np.stack([np.asarray(r) for r in out["score"]])[order]
    x = np.stack([out[c][order] for c in COLS], 1).astype(np.float32)
    assert scores.shape == (4000, 2)
    np.testing.assert_array_equal(scores, _per_event(sess, x))
