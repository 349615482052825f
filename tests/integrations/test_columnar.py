"""Pickling an InferenceSession, evaluating over columnar data (numpy, pandas, awkward, uproot) and on Dask (a
LocalCluster of 2 worker processes). References: the session's own run (exact) and onnxruntime (tolerance)."""
import pickle

import numpy as np
import pytest

import pysofie
from pysofie.columnar import evaluate

from ..util import ATOL, RTOL, ort
from .models import features, mlp

COLS = ["pt", "eta", "phi", "mass"]


@pytest.fixture(scope="module")
def model():
    return mlp(4, 16, 2, name="colmlp")


@pytest.fixture(scope="module")
def sess(model):
    return pysofie.InferenceSession(model)


def test_pickle_round_trip(sess, model):
    x = features(64)
    s2 = pickle.loads(pickle.dumps(sess))
    assert s2._native.lib._name == sess._native.lib._name  # through the cache: no second build
    np.testing.assert_array_equal(s2.run(None, {"x": x})[0], sess.run(None, {"x": x})[0])
    np.testing.assert_allclose(s2.run(None, {"x": x})[0], ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
    assert [i.name for i in s2.get_inputs()] == ["x"]


def test_pickle_carries_a_user_weight_file(model, tmp_path):
    paths = pysofie.emit(model, str(tmp_path), weights="bin")
    s = pysofie.InferenceSession(model, weight_file=paths["weights"])
    blob = pickle.dumps(s)
    (tmp_path / "colmlp.bin").unlink()  # the receiving side does not have the file
    s2 = pickle.loads(blob)
    x = features(8)
    np.testing.assert_array_equal(s2.run(None, {"x": x})[0], s.run(None, {"x": x})[0])


def test_pickle_detects_different_code(sess):
    import pysofie.session_state as st
    state = st.session_state(sess)
    state["code_hash"] = "0" * 64
    bare = pysofie.InferenceSession.__new__(pysofie.InferenceSession)
    with pytest.raises(pysofie.PysofieError, match="differs"):
        st.restore_session(bare, state)


def _data(n):
    x = features(n)
    return x, {c: x[:, k].astype(np.float64) for k, c in enumerate(COLS)}  # double columns: converted


def test_columnar_kinds(sess, tmp_path):
    pd = pytest.importorskip("pandas")
    ak = pytest.importorskip("awkward")
    uproot = pytest.importorskip("uproot")
    x, cols = _data(500)
    ref = sess.run(None, {"x": x})[0]
    structured = np.zeros(500, dtype=[(c, "f8") for c in COLS] + [("other", "i4")])
    for c in COLS:
        structured[c] = cols[c]
    np.testing.assert_array_equal(evaluate(sess, structured, COLS), ref)
    np.testing.assert_array_equal(evaluate(sess, cols), ref)
    np.testing.assert_array_equal(evaluate(sess, pd.DataFrame(cols)), ref)
    np.testing.assert_array_equal(evaluate(sess, pd.DataFrame(cols)[COLS[::-1]], COLS), ref)  # by name
    np.testing.assert_array_equal(evaluate(sess, ak.Array(cols)), ref)
    np.testing.assert_array_equal(evaluate(sess, x, chunk_size=100)[:100], sess.run(None, {"x": x[:100]})[0])
    path = str(tmp_path / "events.root")
    with uproot.recreate(path) as f:
        f.mktree("events", {c: "float32" for c in COLS})
        f["events"].extend({c: x[:, k] for k, c in enumerate(COLS)})
    with uproot.open(path) as f:
        np.testing.assert_array_equal(evaluate(sess, f["events"], COLS), ref)
    assert evaluate(sess, cols, output="y").shape == (500, 2)


def test_columnar_errors(sess):
    _, cols = _data(10)
    with pytest.raises(pysofie.InvalidInputError, match="'nope'"):
        evaluate(sess, cols, ["pt", "eta", "phi", "nope"])
    with pytest.raises(pysofie.InvalidInputError, match="4 columns|3 columns"):
        evaluate(sess, cols, ["pt", "eta", "phi"])
    with pytest.raises(pysofie.InvalidInputError, match="no output 'z'"):
        evaluate(sess, cols, output="z")
    with pytest.raises(pysofie.InvalidInputError, match="type"):
        evaluate(sess, [1, 2, 3])
    # every column that cannot be taken, in one error: missing ones (a dict, a structured array), text, objects
    # that are not numbers, a list per event (awkward)
    with pytest.raises(pysofie.InvalidInputError, match="'pt' is not in the data; column 'mass' is not in the data"):
        evaluate(sess, {k: v for k, v in cols.items() if k in ("eta", "phi")}, COLS)
    st = np.zeros(10, dtype=[(c, "f4") for c in COLS[:3]])
    with pytest.raises(pysofie.InvalidInputError, match="'mass' is not in the data"):
        evaluate(sess, st, COLS)
    bad = dict(cols, eta=np.array(["1.5"] * 10), phi=np.array([1.0] * 9 + ["z"], dtype=object))
    with pytest.raises(pysofie.InvalidInputError, match="'eta' holds <U3 values, not numbers; column 'phi' holds "
                                                        "objects that are not numbers"):
        evaluate(sess, bad, COLS)
    objects = dict(cols, phi=cols["phi"].astype(object))  # numbers as Python objects (pandas' object columns): taken
    np.testing.assert_array_equal(evaluate(sess, objects, COLS), evaluate(sess, cols, COLS))
    ak = pytest.importorskip("awkward")
    jagged = ak.Array({c: [[1.0, 2.0], [3.0]] for c in COLS})
    with pytest.raises(pysofie.InvalidInputError, match="'pt' cannot be read as one value per event"):
        evaluate(sess, jagged, COLS)


def test_dask_local_kinds(sess, tmp_path):
    da = pytest.importorskip("dask.array")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    uproot = pytest.importorskip("uproot")
    x, cols = _data(1000)
    parts = [sess.run(None, {"x": x[i:i + 250]})[0] for i in range(0, 1000, 250)]
    exact = np.concatenate(parts)  # what the same partitions give locally
    got = evaluate(sess, da.from_array(x, chunks=(250, 4))).compute(scheduler="sync")
    np.testing.assert_array_equal(got, exact)
    got = evaluate(sess, dd.from_pandas(pd.DataFrame(cols), npartitions=4, sort=False), COLS)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), exact)
    path = str(tmp_path / "events.root")
    with uproot.recreate(path) as f:
        f.mktree("events", {c: "float32" for c in COLS})
        f["events"].extend({c: x[:, k] for k, c in enumerate(COLS)})
    lazy = uproot.dask({path: "events"}, library="np", step_size=250)
    np.testing.assert_array_equal(evaluate(sess, lazy, COLS).compute(scheduler="sync"), exact)


def test_dask_cluster_gives_the_local_result(sess, model):
    """A session pickled to a LocalCluster of 2 worker processes, evaluated over 100k events."""
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    x = features(100_000)
    chunks = 25_000
    local = np.concatenate([sess.run(None, {"x": x[i:i + chunks]})[0] for i in range(0, len(x), chunks)])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        result = evaluate(sess, da.from_array(x, chunks=(chunks, 4)))
        got = client.compute(result).result()
        import os
        pids = client.run(os.getpid)
        assert len(pids) == 2 and os.getpid() not in pids.values()
        # the session also ships as a plain object: each task unpickles it
        futures = [client.submit(lambda s, b: s.run(None, {"x": b})[0], sess, x[i:i + chunks])
                   for i in range(0, len(x), chunks)]
        plain = np.concatenate(client.gather(futures))
    np.testing.assert_array_equal(got, local)
    np.testing.assert_array_equal(plain, local)
    np.testing.assert_allclose(got, ort(model, {"x": x})[0], rtol=RTOL, atol=ATOL)
