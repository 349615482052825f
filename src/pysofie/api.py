"""High-level functions: load a model into IR, check it, emit C++ files."""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

from .backends.cpp import GeneratedModel, generate
from .build.fs import atomic_write
from .errors import InvalidModelError, UnsupportedOperatorError
from .ir import Graph
from .passes import default_pipeline

log = logging.getLogger("pysofie")

# One weight format for InferenceSession, emit and the command line, so that the same model generates the same
# code (and compiles once) whichever way it is used: the checksummed binary format, fast to write and to read.
DEFAULT_WEIGHTS = "bin"

TARGETS = ("cpp", "cuda")


def target_passes(target: str = "cpp") -> list:
    """The passes that prepare a graph for a target's kernels (each back end owns its own)."""
    if target == "cuda":
        from .backends.cuda.passes import optimization_passes
    else:
        from .backends.cpp.passes import optimization_passes
    return optimization_passes()


def load(model, *, input_shapes=None, name: Optional[str] = None, optimize: bool = True,
         constant_inputs=None, target: str = "cpp", example_graph=None) -> Graph:
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
    t0 = time.perf_counter()
    graph = load_graph(model, input_shapes=input_shapes, name=name, constant_inputs=constant_inputs,
                       example_graph=example_graph)
    t1 = time.perf_counter()
    default_pipeline(optimize, target_passes(target) if optimize else ())(graph)
    log.debug("model '%s': read in %.2f s (%d nodes), optimized in %.2f s (%d nodes)", graph.name, t1 - t0,
              len(graph.nodes), time.perf_counter() - t1, len(graph.nodes))
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
    except (UnsupportedOperatorError, InvalidModelError) as e:
        return list(e.problems)
    return []


def generate_code(model, *, name=None, namespace=None, weights=DEFAULT_WEIGHTS, input_shapes=None,
                  optimize=True, constant_inputs=None, example_graph=None) -> GeneratedModel:
    graph = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes, name=name,
                                                         optimize=optimize, constant_inputs=constant_inputs,
                                                         example_graph=example_graph)
    t0 = time.perf_counter()
    gm = generate(graph, name=name, namespace=namespace, weights=weights)
    log.debug("model '%s': generated %d lines of C++ in %.2f s", gm.name, gm.header.count("\n"),
              time.perf_counter() - t0)
    return gm


def generate_cuda_code(model, *, name=None, namespace=None, weights=DEFAULT_WEIGHTS, input_shapes=None, optimize=True,
                       constant_inputs=None):
    """The CUDA back end's GeneratedCudaModel (<name>.cuh + weights) of a model."""
    from .backends.cuda import generate as generate_cuda
    graph = model if isinstance(model, Graph) else load(model, input_shapes=input_shapes, name=name,
                                                         optimize=optimize, constant_inputs=constant_inputs,
                                                         target="cuda")
    return generate_cuda(graph, name=name, namespace=namespace, weights=weights)


def emit(model, out_dir: str, *, name: Optional[str] = None, weights: str = DEFAULT_WEIGHTS,
         namespace: Optional[str] = None, input_shapes=None, optimize: bool = True,
         constant_inputs=None, target: str = "cpp", example_graph=None) -> dict[str, str]:
    """Write `<name>.hxx` (and `<name>.bin` / `.dat` unless weights='embed') into out_dir, without compiling;
    target="cuda" writes `<name>.cuh` instead.

    Returns {"header": path, "weights": path or None}. Files appear atomically (temporary file + rename).
    """
    gen = generate_cuda_code if target == "cuda" else generate_code
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    extra = {"example_graph": example_graph} if example_graph is not None else {}
    gm = gen(model, name=name, namespace=namespace, weights=weights, input_shapes=input_shapes,
             optimize=optimize, constant_inputs=constant_inputs, **extra)
    os.makedirs(out_dir, exist_ok=True)
    header = os.path.join(out_dir, gm.header_file)
    paths = {"header": header, "weights": None, "name": gm.name, "namespace": gm.namespace}
    if gm.weight_data is not None:
        wpath = os.path.join(out_dir, gm.weight_file)
        atomic_write(wpath, gm.weight_data)
        paths["weights"] = wpath
    atomic_write(header, gm.header)
    return paths
