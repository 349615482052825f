"""High-level functions: load a model into IR, check it, emit C++ files."""
from __future__ import annotations

import os
from typing import Optional

from .backends.cpp import GeneratedModel, generate
from .build.fs import atomic_write
from .errors import UnsupportedOperatorError
from .ir import Graph
from .passes import default_pipeline

TARGETS = ("cpp", "cuda")


def load(model, *, input_shapes=None, name: Optional[str] = None, optimize: bool = True,
         constant_inputs=None, target: str = "cpp") -> Graph:
    """Read a model (path, onnx.ModelProto, serialized bytes, torch module) into an optimized IR Graph.

    constant_inputs: {name: array} fixes those inputs (ONNX models): the code is specialized for the values,
    which is how inputs that determine shapes (axes, target shapes, sizes) become usable.
    target: "cpp" or "cuda": the passes that prepare kernels belong to the target."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    from .frontends import load_graph
    if isinstance(model, (bytes, bytearray)):
        import onnx
        from .errors import ModelLoadError
        try:
            model = onnx.load_from_string(bytes(model))
        except Exception as e:
            raise ModelLoadError(f"bytes given are not a serialized ONNX model ({e})") from None
    graph = load_graph(model, input_shapes=input_shapes, name=name, constant_inputs=constant_inputs)
    default_pipeline(optimize, target)(graph)
    return graph


def check(model, target: str = "cpp", **kw) -> list[str]:
    """Every problem (unsupported operator or attribute value) in the model for the target, all at once; [] if
    none."""
    try:
        g = load(model, target=target, **kw)
        if target == "cuda":
            from .backends.cuda import CudaEmitter
            CudaEmitter(g)
        else:
            from .backends.cpp import CppEmitter
            CppEmitter(g)
    except UnsupportedOperatorError as e:
        return list(e.problems)
    return []


def generate_code(model, *, name=None, namespace=None, weights="dat", input_shapes=None,
                  optimize=True, constant_inputs=None) -> GeneratedModel:
    graph = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes, name=name,
                                                         optimize=optimize, constant_inputs=constant_inputs)
    return generate(graph, name=name, namespace=namespace, weights=weights)


def generate_cuda_code(model, *, name=None, namespace=None, weights="bin", input_shapes=None, optimize=True,
                       constant_inputs=None):
    """The CUDA back end's GeneratedCudaModel (<name>.cuh + weights) of a model."""
    from .backends.cuda import generate as generate_cuda
    graph = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes, name=name,
                                                         optimize=optimize, constant_inputs=constant_inputs,
                                                         target="cuda")
    return generate_cuda(graph, name=name, namespace=namespace, weights=weights)


def emit(model, out_dir: str, *, name: Optional[str] = None, weights: str = "dat",
         namespace: Optional[str] = None, input_shapes=None, optimize: bool = True,
         constant_inputs=None, target: str = "cpp") -> dict[str, str]:
    """Write `<name>.hxx` (and `<name>.dat` / `.bin` unless weights='embed') into out_dir, without compiling;
    target="cuda" writes `<name>.cuh` instead.

    Returns {"header": path, "weights": path or None}. Files appear atomically (temporary file + rename).
    """
    gen = generate_cuda_code if target == "cuda" else generate_code
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    gm = gen(model, name=name, namespace=namespace, weights=weights, input_shapes=input_shapes,
             optimize=optimize, constant_inputs=constant_inputs)
    os.makedirs(out_dir, exist_ok=True)
    header = os.path.join(out_dir, gm.header_file)
    paths = {"header": header, "weights": None, "name": gm.name, "namespace": gm.namespace}
    if gm.weight_data is not None:
        wpath = os.path.join(out_dir, gm.weight_file)
        atomic_write(wpath, gm.weight_data)
        paths["weights"] = wpath
    atomic_write(header, gm.header)
    return paths
