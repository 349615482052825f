"""Front ends: each turns a model of some format into a pysofie IR Graph."""
from __future__ import annotations

import os

from ..errors import ModelLoadError


def load_graph(model, *, input_shapes=None, name: str | None = None, constant_inputs=None, example_graph=None):
    """Dispatch on the model's kind: path (.onnx/.h5/.keras/.pt), onnx.ModelProto, torch nn.Module, or (with
    example_graph, a GraphsTuple) a graph_nets model."""
    if example_graph is not None:
        from .gnn import graph_from_graph_nets
        graph = graph_from_graph_nets(model, example_graph, name=name)
    else:
        graph = _load_graph(model, input_shapes=input_shapes, name=name, constant_inputs=constant_inputs)
    if not graph.metadata:  # Keras, torch and graph_nets models: what onnxruntime would report for their ONNX export
        lower = graph.source.lower()
        producer = ("keras" if lower.endswith((".h5", ".hdf5", ".keras")) else
                    "graph_nets" if example_graph is not None else "pytorch")
        graph.metadata = {"producer_name": producer, "graph_name": graph.name, "graph_description": "",
                          "domain": "", "description": "", "custom_metadata_map": {},
                          "version": 2 ** 63 - 1, "overridable_initializers": []}
    return graph


def _load_graph(model, *, input_shapes, name, constant_inputs):
    import onnx
    if isinstance(model, onnx.ModelProto):
        from .onnx import graph_from_onnx
        return graph_from_onnx(model, name=name, input_shapes=input_shapes, constant_inputs=constant_inputs)
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        ext = os.path.splitext(path)[1].lower()
        if ext in (".h5", ".hdf5", ".keras"):
            try:
                from .keras import graph_from_keras
            except ImportError as e:  # pragma: no cover - the Keras front end is optional
                raise ModelLoadError(f"{path}: reading Keras files needs h5py ({e})") from e
            return graph_from_keras(path, name=name, input_shapes=input_shapes)
        if ext in (".pt", ".pth", ".torchscript"):
            from .torch import graph_from_torch
            return graph_from_torch(path, input_shapes=input_shapes, name=name)
        from .onnx import graph_from_onnx_file
        return graph_from_onnx_file(path, name=name, input_shapes=input_shapes, constant_inputs=constant_inputs)
    if type(model).__module__.startswith("torch") or hasattr(model, "forward"):
        from .torch import graph_from_torch
        return graph_from_torch(model, input_shapes=input_shapes, name=name)
    raise ModelLoadError(f"cannot read a model from an object of type {type(model).__name__}")
