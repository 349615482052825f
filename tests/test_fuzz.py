"""Seeded fuzzing of the example model and the rootbench models: truncations, byte flips, hostile names, bad
dimensions, bad attributes, broken structure. Every mutant either gives a pysofie error (PysofieError) or compiles,
runs without crashing (in a separate process) and equals onnxruntime whenever onnxruntime accepts it too.

PYSOFIE_FUZZ_CASES (default 240) sets the number of mutants; PYSOFIE_FUZZ_SEED the seed. Compilations are batched:
the mutants that load are compiled in a few shared libraries by one worker process."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import pysofie
from pysofie.api import generate_code
from tests.util import ROOTBENCH

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "models", "example_cnn.onnx")
BASES = [EXAMPLE] + [os.path.join(ROOTBENCH, f"{m}.onnx") for m in
                     ("Linear_16", "higgs_model_dense", "Conv2DTranspose_Relu_Sigmoid", "SimpleNN_Alice")]
N_CASES = int(os.environ.get("PYSOFIE_FUZZ_CASES", "240"))
SEED = int(os.environ.get("PYSOFIE_FUZZ_SEED", "14"))
MAX_RUN = 24  # mutants compiled and run (distinct ones; each adds a model to the batch)

HOSTILE = ["this", "errno", "size_t", "int", "class", "infer", "reader", "result0", "ensure_capacity", "NAN", "n",
           "o", "nc", "i", "x" * 300, "a b", "1x", "__x", "ü", "", "main", "std", "Session", "fCap_N", "tensor_x"]


def _bytes_mutant(rng, data: bytes, kind: str) -> bytes:
    if kind == "truncate":
        return data[:int(rng.integers(0, len(data)))]
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def _proto_mutant(rng, m: onnx.ModelProto) -> tuple[str, onnx.ModelProto]:
    m = onnx.load_from_string(m.SerializeToString())
    g = m.graph
    kind = str(rng.choice(["dim_param", "dim_value", "tensor_name", "graph_name", "attr_value", "attr_type",
                           "attr_float", "drop_node", "dup_init", "no_outputs", "rename_to_input", "extra_output",
                           "blank_input", "init_dtype"]))
    nodes = list(g.node)
    node = nodes[int(rng.integers(0, len(nodes)))] if nodes else None
    if kind == "dim_param":
        d = g.input[0].type.tensor_type.shape.dim[0]
        d.dim_param = str(rng.choice(HOSTILE))
    elif kind == "dim_value":
        dims = g.input[0].type.tensor_type.shape.dim
        d = dims[int(rng.integers(0, len(dims)))]
        d.dim_value = int(rng.choice([0, -1, -7, 2 ** 40, 1, 3]))
    elif kind == "tensor_name" and node is not None and node.output:
        old, new = node.output[0], str(rng.choice(HOSTILE)) or "y"
        for n in g.node:
            n.input[:] = [new if x == old else x for x in n.input]
            n.output[:] = [new if x == old else x for x in n.output]
        for o in g.output:
            if o.name == old:
                o.name = new
    elif kind == "graph_name":
        g.name = str(rng.choice(HOSTILE)) * int(rng.integers(1, 20))
    elif kind in ("attr_value", "attr_type", "attr_float") and node is not None and node.attribute:
        a = node.attribute[int(rng.integers(0, len(node.attribute)))]
        if kind == "attr_type":
            a.type = int(rng.choice([1, 2, 3, 6, 7, 8]))
        elif a.type == onnx.AttributeProto.INTS and a.ints:
            a.ints[int(rng.integers(0, len(a.ints)))] = int(rng.choice([-5, -1, 0, 2 ** 31, 7]))
        elif a.type == onnx.AttributeProto.INT:
            a.i = int(rng.choice([-5, -1, 0, 2 ** 31, 7]))
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = float(rng.choice([np.inf, -np.inf, np.nan, 1e39, 0.0]))
        elif a.type == onnx.AttributeProto.STRING:
            a.s = bytes(rng.integers(0, 256, 6, dtype=np.uint8))
    elif kind == "drop_node" and len(nodes) > 1:
        g.node.remove(node)
    elif kind == "dup_init" and g.initializer:
        g.initializer.append(g.initializer[0])
    elif kind == "no_outputs":
        del g.output[:]
    elif kind == "rename_to_input" and node is not None and node.output and g.input:
        node.output[0] = g.input[0].name
    elif kind == "extra_output" and node is not None:
        node.output.append("fuzz_extra")
    elif kind == "blank_input" and node is not None and node.input:
        node.input[int(rng.integers(0, len(node.input)))] = ""
    elif kind == "init_dtype" and g.initializer:
        t = g.initializer[int(rng.integers(0, len(g.initializer)))]
        arr = onnx.numpy_helper.to_array(t)
        t.CopyFrom(onnx.numpy_helper.from_array(arr.astype(rng.choice([np.int64, np.float64, np.int32])), t.name))
    return kind, m


def _mutants():
    rng = np.random.default_rng(SEED)
    bases = [p for p in BASES if os.path.exists(p)]
    protos = [onnx.load(p) for p in bases]
    raws = [open(p, "rb").read() for p in bases]
    for k in range(N_CASES):
        b = int(rng.integers(0, len(bases)))
        r = rng.random()
        if r < 0.15:
            yield f"{k}-truncate", _bytes_mutant(rng, raws[b], "truncate")
        elif r < 0.3:
            yield f"{k}-flip", _bytes_mutant(rng, raws[b], "flip")
        else:
            kind, m = _proto_mutant(rng, protos[b])
            yield f"{k}-{kind}", m


WORKER = r"""
import json, sys, numpy as np, onnx
from pysofie.build.batch import compile_many
cases = json.load(open(sys.argv[1]))
models = [onnx.load(c["path"]) for c in cases]
sessions = compile_many(models)
for c, s in zip(cases, sessions):
    print("START", c["id"], flush=True)
    if isinstance(s, Exception):
        print("RESULT", json.dumps({"id": c["id"], "error": type(s).__name__, "msg": str(s)[:300],
                                    "pysofie": isinstance(s, __import__("pysofie").PysofieError)}), flush=True)
        continue
    feeds = dict(np.load(c["feeds"]))
    try:
        out = s.run(None, feeds)
        np.savez(c["out"], *out)
        print("RESULT", json.dumps({"id": c["id"], "ok": True}), flush=True)
    except Exception as e:
        print("RESULT", json.dumps({"id": c["id"], "error": type(e).__name__, "msg": str(e)[:300],
                                    "pysofie": isinstance(e, __import__("pysofie").PysofieError)}), flush=True)
"""


def test_fuzz_mutants(tmp_path):
    import onnxruntime
    unclean, loaded, seen = [], [], set()
    counts = {"error": 0, "loaded": 0}
    for cid, m in _mutants():
        data = m if isinstance(m, bytes) else m.SerializeToString()
        try:
            gm = generate_code(data)
        except pysofie.PysofieError:
            counts["error"] += 1
            continue
        except Exception as e:  # anything else is a pysofie bug
            unclean.append(f"{cid}: {type(e).__name__}: {e}"[:300])
            continue
        counts["loaded"] += 1
        key = hashlib.sha256(gm.header.encode()).hexdigest()
        if key in seen or len(loaded) >= MAX_RUN:
            continue
        seen.add(key)
        loaded.append((cid, data))
    assert not unclean, "errors that are not pysofie's:\n" + "\n".join(unclean)
    # compile and run the loaded mutants in one worker process: a crash there cannot take pytest down
    cases = []
    for cid, data in loaded:
        sess_inputs = pysofie.load(data).inputs
        if any(int(np.prod([d if isinstance(d, int) else 2 for d in v.shape])) > 10 ** 7 for v in sess_inputs):
            continue  # a valid model with a huge input (a mutated dimension): nothing to feed it
        p = tmp_path / f"{cid}.onnx"
        p.write_bytes(data)
        rng = np.random.default_rng(1)
        feeds = {v.name: (rng.standard_normal([d if isinstance(d, int) else 2 for d in v.shape]).astype(v.dtype.np)
                          if v.dtype.is_float else np.zeros([d if isinstance(d, int) else 2 for d in v.shape],
                                                            v.dtype.np)) for v in sess_inputs}
        np.savez(tmp_path / f"{cid}.feeds.npz", **feeds)
        cases.append({"id": cid, "path": str(p), "feeds": str(tmp_path / f"{cid}.feeds.npz"),
                      "out": str(tmp_path / f"{cid}.out.npz")})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "worker.py").write_text(WORKER)
    r = subprocess.run([sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "cases.json")],
                       capture_output=True, text=True, timeout=1500, env=dict(os.environ))
    started = [ln.split(" ", 1)[1] for ln in r.stdout.splitlines() if ln.startswith("START ")]
    results = {d["id"]: d for d in (json.loads(ln.split(" ", 1)[1]) for ln in r.stdout.splitlines()
                                    if ln.startswith("RESULT "))}
    assert r.returncode == 0, (f"the worker crashed (exit {r.returncode}) running mutant "
                               f"{started[-1] if started else '(none: while compiling)'}:\n{r.stderr[-3000:]}")
    problems = []
    for c in cases:
        res = results.get(c["id"])
        if res is None or (not res.get("ok") and not res.get("pysofie")):
            problems.append(f"{c['id']}: {res}")
            continue
        if not res.get("ok"):
            continue
        feeds = dict(np.load(c["feeds"]))
        try:
            so = onnxruntime.SessionOptions()
            so.intra_op_num_threads = 1
            exp = onnxruntime.InferenceSession(c["path"], so, providers=["CPUExecutionProvider"]).run(None, feeds)
        except Exception:
            continue  # onnxruntime refuses the mutant: nothing to compare with
        got = np.load(c["out"])
        got = [got[f"arr_{k}"] for k in range(len(got.files))]
        if len(got) != len(exp) or not all(
                g.shape == np.asarray(e).shape and np.allclose(g, e, rtol=1e-4, atol=1e-5, equal_nan=True)
                for g, e in zip(got, exp)):
            problems.append(f"{c['id']}: results differ from onnxruntime")
    assert not problems, "\n".join(problems)
    assert counts["error"] > 0 and counts["loaded"] > 0  # the mutations both break and keep models
