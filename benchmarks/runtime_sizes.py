#!/usr/bin/env python
"""Per-call overhead of InferenceSession.run on tiny models, by how their sizes are known: all static, a dynamic
batch (a size parameter), a size the data decides with a bound (NonZero) and one without a bound (a Range up to
a computed maximum). Their compute is negligible, so the time is the Python / C call path (also that of the
checked ctypes path, which unusual feeds take, and which models with sizes decided by the data took before they
got the C hot path). pysofie against
onnxruntime (1 intra-op / 1 inter-op thread) in the same process, repetitions interleaved, medians.

    python benchmarks/runtime_sizes.py [--budget SECONDS] [--out STEM]

Writes benchmarks/results/runtime_sizes.{json,md} (no plot: four numbers per side)."""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto as T, helper, numpy_helper  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import RESULTS, _cpu_name, _isa, interleaved  # noqa: E402
from common import write_results  # noqa: E402


def _model(name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(*i) for i in inputs],
                          [helper.make_tensor_value_info(*o) for o in outputs], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def models() -> dict:
    w = numpy_helper.from_array(np.random.default_rng(0).random((4, 4)).astype(np.float32), "w")
    dense = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    zero = helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64)))
    one = helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1, np.int64)))
    return {
        "static [1,4]": (_model("static", dense, [("x", T.FLOAT, [1, 4])], [("y", T.FLOAT, [1, 4])], [w]),
                         {"x": np.ones((1, 4), np.float32)}),
        "dynamic batch [N,4]": (_model("dyn", dense, [("x", T.FLOAT, ["N", 4])], [("y", T.FLOAT, ["N", 4])], [w]),
                                {"x": np.ones((1, 4), np.float32)}),
        "NonZero (bounded)": (_model("nz", [helper.make_node("NonZero", ["x"], ["y"])], [("x", T.FLOAT, ["N", 4])],
                                     [("y", T.INT64, [2, None])]), {"x": np.eye(1, 4, dtype=np.float32)}),
        "Range to max(x) (no bound)": (_model("rg", [zero, one, helper.make_node("ReduceMax", ["x"], ["mx"], keepdims=0),
                                                     helper.make_node("Range", ["zero", "mx", "one"], ["y"])],
                                              [("x", T.INT64, ["N"])], [("y", T.INT64, [None])]),
                                       {"x": np.array([3, 1], np.int64)}),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=4.0, help="seconds of timing per model")
    ap.add_argument("--out", default=os.path.join(RESULTS, "runtime_sizes"), help="output path stem")
    args = ap.parse_args(argv)
    import onnxruntime as ort
    from pysofie.build.batch import compile_many
    ms = models()
    built = compile_many([m for m, _ in ms.values()], weights="bin")
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    rows = []
    for (label, (m, feed)), sess in zip(ms.items(), built):
        if isinstance(sess, BaseException):
            raise sess
        ref = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        t = interleaved({"pysofie": lambda: sess.run(None, feed), "ort": lambda: ref.run(None, feed),
                         "checked": lambda: sess._run_checked(feed)}, reps=41, budget_s=args.budget)
        rows.append({"model": label, "pysofie_us": t["pysofie"] * 1e6, "ort_us": t["ort"] * 1e6,
                     "checked_ctypes_us": t["checked"] * 1e6,
                     "ratio": t["pysofie"] / t["ort"], "c_hot_path": sess._fast is not None})
    meta = {"cpu": _cpu_name(), "isa": _isa(), "onnxruntime": ort.__version__}
    lines = [f"Per-call time of run() on tiny models ({meta['cpu']}; {', '.join(meta['isa'])}; medians of "
             "interleaved repetitions)", "",
             "| model | pysofie (us) | onnxruntime (us) | pysofie / ORT | C hot path | checked ctypes path (us) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['pysofie_us']:.2f} | {r['ort_us']:.2f} | {r['ratio']:.3f} | "
                     f"{'yes' if r['c_hot_path'] else 'no'} | {r['checked_ctypes_us']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_results(args.out, {"meta": meta, "rows": rows}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
