"""Small models for the integration tests (ROOT, columnar data, Dask): an MLP over a few scalar features, the
shape of a typical per-event classifier."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def mlp(n_in: int = 4, hidden: int = 16, n_out: int = 2, *, name: str = "mlp", seed: int = 0,
        batch="N") -> onnx.ModelProto:
    """x[N, n_in] -> Gemm -> Relu -> Gemm -> Sigmoid -> y[N, n_out]."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((n_in, hidden)).astype(np.float32) * 0.5, "W1"),
             numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32) * 0.1, "B1"),
             numpy_helper.from_array(rng.standard_normal((hidden, n_out)).astype(np.float32) * 0.5, "W2"),
             numpy_helper.from_array(rng.standard_normal(n_out).astype(np.float32) * 0.1, "B2")]
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "W2", "B2"], ["z"]),
             helper.make_node("Sigmoid", ["z"], ["y"])]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, n_in])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, n_out])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def features(n: int, n_in: int = 4, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n_in)).astype(np.float32)
