#!/usr/bin/env python
"""Single PyTorch Geometric layers on one graph of (5000 nodes, 20000 edges), one thread: pysofie against torch
(PyG eager) and ONNX Runtime on the same ONNX export (legacy TorchScript exporter, symbolic N and E; the export
pysofie's torch front end makes).

    python benchmarks/gnn_layers.py [--nodes 5000 --edges 20000] [--features 64] [--layers gcn,gin,...]

Layers: GCNConv, GATConv (both add self-loops through NonZero: output sizes decided at run time), GINConv
(2-layer MLP), SAGEConv (mean), EdgeConv (mean, 2-layer MLP), MetaLayer (edge, node and global models with a
batch vector of 4 graphs), SAGEConv then global mean + add pooling per graph. Interleaved repetitions, medians;
each output checked against torch first. Writes benchmarks/results/gnn_layers.{json,md}.
"""
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# the standard library's `profile` (torch._dynamo, imported by PyG, needs it) before benchmarks/profile.py can
# shadow it: run.py puts this folder first on the path
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
import cProfile  # noqa: E402,F401
sys.path.insert(0, HERE)
from run import _cpu_name, interleaved, ort_session  # noqa: E402
from common import write_results  # noqa: E402

RESULTS = os.path.join(HERE, "results")
GRAPHS = 4  # graphs in the batch vector of the MetaLayer and pooling models


def layers(F: int):
    import torch
    import torch_geometric.nn as pyg
    from torch_geometric.utils import scatter
    nn = torch.nn

    class Conv(nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.conv = conv

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, F), nn.ReLU(), nn.Linear(F, o))

    class EdgeModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = mlp(2 * F + F + F, F)

        def forward(self, src, dst, edge_attr, u, batch):
            return self.mlp(torch.cat([src, dst, edge_attr, u[batch]], 1))

    class NodeModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = mlp(F + F + F, F)

        def forward(self, x, edge_index, edge_attr, u, batch):
            agg = scatter(edge_attr, edge_index[1], dim=0, dim_size=x.size(0), reduce="sum")
            return self.mlp(torch.cat([x, agg, u[batch]], 1))

    class GlobalModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = mlp(F + F, F)

        def forward(self, x, edge_index, edge_attr, u, batch):
            return self.mlp(torch.cat([u, scatter(x, batch, dim=0, dim_size=u.size(0), reduce="mean")], 1))

    class Meta(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = pyg.MetaLayer(EdgeModel(), NodeModel(), GlobalModel())

        def forward(self, x, edge_index, edge_attr, u, batch):
            return self.layer(x, edge_index, edge_attr, u, batch)

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = pyg.SAGEConv(F, F)

        def forward(self, x, edge_index, batch, u):
            h = self.conv(x, edge_index)
            b = u.shape[0]
            return torch.cat([pyg.global_mean_pool(h, batch, b), pyg.global_add_pool(h, batch, b)], 1)

    graph = [("N", F), ("int64", (2, "E"))]
    return {
        "GCNConv": (Conv(pyg.GCNConv(F, F)), graph),
        "GATConv": (Conv(pyg.GATConv(F, F, heads=1)), graph),
        "GINConv": (Conv(pyg.GINConv(mlp(F, F), eps=0.1)), graph),
        "SAGEConv": (Conv(pyg.SAGEConv(F, F)), graph),
        "EdgeConv": (Conv(pyg.EdgeConv(mlp(2 * F, F), aggr="mean")), graph),
        "MetaLayer": (Meta(), [("N", F), ("int64", (2, "E")), ("E", F), ("B", F), ("int64", ("N",))]),
        "SAGE+pooling": (Pool(), [("N", F), ("int64", (2, "E")), ("int64", ("N",)), ("B", F)]),
    }


def onnx_export(module, shapes):
    """The export of pysofie's torch front end (same exporter, opset, names and dynamic axes)."""
    import onnx
    import torch
    from pysofie.frontends.torch import OPSET, _examples, _input_names
    names = _input_names(module, len(shapes))
    args, dynamic = _examples(shapes, names, "benchmark")
    with torch.no_grad():
        probe = module.eval()(*args)
    k = len(probe) if isinstance(probe, tuple) else 1
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["output"] if k == 1 else [f"output_{j}" for j in range(k)],
                          dynamic_axes=dynamic or None, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue()), names


def feeds_for(names, shapes, n, e, rng):
    out = {}
    for name, s in zip(names, shapes):
        if isinstance(s[0], str) and s[0] == "int64":
            dims = s[1]
            if dims == (2, "E"):
                out[name] = rng.integers(0, n, (2, e)).astype(np.int64)
            else:  # the batch vector: GRAPHS graphs of consecutive nodes
                out[name] = np.sort(rng.integers(0, GRAPHS, n)).astype(np.int64)
        else:
            rows = {"N": n, "E": e, "B": GRAPHS}[s[0]]
            out[name] = rng.normal(size=(rows, s[1])).astype(np.float32)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--edges", type=int, default=20000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--layers", default="", help="comma-separated subset of the layer names")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timing per layer")
    ap.add_argument("--out", default=os.path.join(RESULTS, "gnn_layers"))
    args = ap.parse_args(argv)
    import onnxruntime
    import torch
    onnxruntime.set_default_logger_severity(3)  # GCN/GAT exports declare 1-D shapes where 2-D ones flow
    torch.set_num_threads(1)
    import pysofie
    torch.manual_seed(0)
    n, e = args.nodes, args.edges
    todo = layers(args.features)
    if args.layers:
        todo = {k: v for k, v in todo.items() if k in args.layers.split(",")}
    load0 = os.getloadavg()[0]
    rows = []
    for k, (name, (module, shapes)) in enumerate(todo.items()):
        proto, names = onnx_export(module, shapes)
        sess = pysofie.InferenceSession(proto, intra_op_num_threads=1)
        ort = ort_session(proto)
        feed = feeds_for(names, shapes, n, e, np.random.default_rng(k))
        targs = [torch.from_numpy(feed[nm]) for nm in names]
        with torch.no_grad():
            ref = module(*targs)
        ref = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
        got = sess.run(None, feed)
        err = max(float(np.abs(g - r).max()) / max(float(np.abs(r).max()), 1e-12) for g, r in zip(got, ref))

        def run_torch():
            with torch.no_grad():
                module(*targs)
        times = interleaved({"pysofie": lambda: sess.run(None, feed), "torch": run_torch,
                             "onnxruntime": lambda: ort.run(None, feed)}, reps=31, budget_s=args.budget)
        row = {"layer": name, "nodes": n, "edges": e, "features": args.features,
               **{f"{t}_s": v for t, v in times.items()}, "rel_error_vs_torch": err,
               "ratio_vs_ort": times["pysofie"] / times["onnxruntime"],
               "ratio_vs_torch": times["pysofie"] / times["torch"]}
        rows.append(row)
        print(f"{name:14s} pysofie {times['pysofie'] * 1e3:8.3f} ms  torch {times['torch'] * 1e3:8.3f} ms  "
              f"ORT {times['onnxruntime'] * 1e3:8.3f} ms  pysofie/ORT {row['ratio_vs_ort']:.2f}  err {err:.1e}",
              flush=True)
    meta = {"cpu": _cpu_name(), "machine": platform.machine(), "python": platform.python_version(), "threads": 1,
            "torch": torch.__version__, "load_average_1min_at_start_end": [load0, os.getloadavg()[0]],
            "cpus": os.cpu_count()}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    write_results(args.out, {"meta": meta, "rows": rows}, markdown(meta, rows))
    print(f"wrote {args.out}.json, .md")
    return 0


def markdown(meta, rows) -> str:
    r0 = rows[0] if rows else {"nodes": 0, "edges": 0, "features": 0}
    out = [f"Single PyG layers, one graph of {r0['nodes']} nodes and {r0['edges']} edges, {r0['features']} features, "
           f"one thread, {meta['cpu']}. Medians per call, ms of wall time, repetitions interleaved. "
           f"Load average during the run: "
           f"{meta['load_average_1min_at_start_end'][0]:.1f} at the start, "
           f"{meta['load_average_1min_at_start_end'][1]:.1f} at the end, on {meta['cpus']} CPUs.", "",
           "| layer | pysofie | torch (PyG eager) | ONNX Runtime | pysofie / ORT | pysofie / torch |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['layer']} | {r['pysofie_s'] * 1e3:.3f} | {r['torch_s'] * 1e3:.3f} | "
                   f"{r['onnxruntime_s'] * 1e3:.3f} | {r['ratio_vs_ort']:.2f} | {r['ratio_vs_torch']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
