"""High-level functions: load a model into IR, check it, emit C++ files."""
from __future__ import annotations

import os
from typing import Optional

from .backends.cpp import GeneratedModel, generate
from .build.fs import atomic_write
from .errors import UnsupportedOperatorError
from .ir import Graph
from .passes import default_pipeline


def load(model, *, input_shapes=None, name: Optional[str] = None, optimize: bool = True,
         constant_inputs=None, example_graph=None) -> Graph:
    """Read a model (path, onnx.ModelProto, serialized bytes, torch module) into an optimized IR Graph.

    constant_inputs: {name: array} fixes those inputs (ONNX models): the code is specialized for the values,
    which is how inputs that determine shapes (axes, target shapes, sizes) become usable."""
    from .frontends import load_graph
    if isinstance(model, (bytes, bytearray)):
        import onnx
        from .errors import ModelLoadError
        try:
            model = onnx.load_from_string(bytes(model))
        except Exception as e:
            raise ModelLoadError(f"bytes given are not a serialized ONNX model ({e})") from None
    graph = load_graph(model, input_shapes=input_shapes, name=name, constant_inputs=constant_inputs,
                       example_graph=example_graph)
    default_pipeline(optimize)(graph)
    return graph


def check(model, **kw) -> list[str]:
    """Every problem (unsupported operator or attribute value) in the model, all at once; [] if none."""
    try:
        g = load(model, **kw)
        from .backends.cpp import CppEmitter
        CppEmitter(g)
    except UnsupportedOperatorError as e:
        return list(e.problems)
    return []


def generate_code(model, *, name=None, namespace=None, weights="dat", input_shapes=None,
                  optimize=True, constant_inputs=None, example_graph=None) -> GeneratedModel:
    graph = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes, name=name,
                                                         optimize=optimize, constant_inputs=constant_inputs,
                                                         example_graph=example_graph)
    return generate(graph, name=name, namespace=namespace, weights=weights)


def emit(model, out_dir: str, *, name: Optional[str] = None, weights: str = "dat",
         namespace: Optional[str] = None, input_shapes=None, optimize: bool = True,
         constant_inputs=None, example_graph=None) -> dict[str, str]:
    """Write `<name>.hxx` (and `<name>.dat` / `.bin` unless weights='embed') into out_dir, without compiling.

    Returns {"header": path, "weights": path or None}. Files appear atomically (temporary file + rename).
    """
    gm = generate_code(model, name=name, namespace=namespace, weights=weights, input_shapes=input_shapes,
                       optimize=optimize, constant_inputs=constant_inputs, example_graph=example_graph)
    os.makedirs(out_dir, exist_ok=True)
    header = os.path.join(out_dir, gm.header_file)
    paths = {"header": header, "weights": None, "name": gm.name, "namespace": gm.namespace}
    if gm.weight_data is not None:
        wpath = os.path.join(out_dir, gm.weight_file)
        atomic_write(wpath, gm.weight_data)
        paths["weights"] = wpath
    atomic_write(header, gm.header)
    return paths
