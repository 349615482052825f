"""Tracing a graph_nets model into a TensorFlow graph (TensorFlow is imported only here, while converting).

The model is called once eagerly on the example graph (Sonnet creates its variables then), and traced with
``tf.function`` on a signature whose numbers of nodes, edges (and graphs) are unknown. While tracing,
``tf.repeat`` is wrapped so that each repetition is recorded with its operands: graph_nets broadcasts globals to
nodes/edges and builds the graph index of every node/edge with it, and its TensorFlow expansion (a boolean mask)
has a data-dependent size that the converter rather recognizes as what it is.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import numpy as np

from ...errors import ModelLoadError

FIELDS = ("nodes", "edges", "globals", "senders", "receivers")
COUNTS = ("n_node", "n_edge")
OUT_FIELDS = ("nodes", "edges", "globals")


@dataclasses.dataclass
class Traced:
    tfgraph: Any                 # the FuncGraph
    inputs: list                 # (field name, placeholder tensor, example numpy array)
    captured: dict               # placeholder tensor name -> numpy value (variables and captured constants)
    repeats: dict                # output tensor name -> (tensor, repeats tensor, axis)
    outputs: list                # (output name, tensor or None)
    several: bool                # whether the call holds several graphs (n_node, n_edge are inputs)


def is_graphs_tuple(x) -> bool:
    return all(hasattr(x, f) for f in FIELDS + COUNTS) and hasattr(x, "replace")


@contextlib.contextmanager
def _recording_repeat(tf, registry: dict):
    original = tf.repeat

    def repeat(input, repeats, axis=None, name=None):  # noqa: A002 - TensorFlow's own parameter name
        out = original(input, repeats, axis=axis, name=name)
        if axis is not None and tf.is_tensor(out) and hasattr(out, "graph") and not tf.executing_eagerly():
            registry[out.name] = (tf.convert_to_tensor(input), tf.convert_to_tensor(repeats), int(axis))
        return out

    tf.repeat = repeat
    try:
        yield
    finally:
        tf.repeat = original


def _numpy(x):
    return None if x is None else np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def trace(model, example, source: str, several: bool | None = None) -> Traced:
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ModelLoadError(f"{source}: converting a graph_nets model needs tensorflow ({e})") from None
    if not is_graphs_tuple(example):
        raise ModelLoadError(f"{source}: example_graph must be a graph_nets GraphsTuple, got {type(example).__name__}")
    ex = {f: _numpy(getattr(example, f)) for f in FIELDS + COUNTS}
    if ex["nodes"] is None:
        raise ModelLoadError(f"{source}: the example graph has no node features (nodes=None); pysofie needs them "
                             "to know the number of nodes")
    if (ex["senders"] is None) != (ex["receivers"] is None):
        raise ModelLoadError(f"{source}: the example graph has only one of senders / receivers")
    if several is None:
        several = ex["n_node"] is not None and ex["n_node"].size != 1
    try:
        model(example)  # creates the variables of Sonnet modules
    except Exception as e:
        raise ModelLoadError(f"{source}: calling the model on the example graph failed "
                             f"({type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})"
                             ) from None

    fields = [f for f in FIELDS if ex[f] is not None] + (list(COUNTS) if several else [])
    specs = []
    for f in fields:
        a = ex[f]
        dt = tf.as_dtype(a.dtype)
        first = 1 if (f == "globals" and not several) else None
        specs.append(tf.TensorSpec((first,) + tuple(a.shape[1:]), dt, name=f))

    def call(*args):
        given = dict(zip(fields, args))
        g = {f: given.get(f) for f in FIELDS}
        if not several:
            g["n_node"] = tf.shape(g["nodes"], out_type=tf.int32)[0:1]
            if g["senders"] is not None:
                g["n_edge"] = tf.shape(g["senders"], out_type=tf.int32)[0:1]
            elif g["edges"] is not None:
                g["n_edge"] = tf.shape(g["edges"], out_type=tf.int32)[0:1]
            else:
                g["n_edge"] = tf.zeros([1], tf.int32)
        else:
            g["n_node"], g["n_edge"] = given["n_node"], given["n_edge"]
        return model(example.replace(**g))

    registry: dict = {}
    try:
        with _recording_repeat(tf, registry):
            cf = tf.function(call, autograph=False).get_concrete_function(*specs)
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelLoadError(f"{source}: tracing the model with tf.function failed ({type(e).__name__}: "
                             f"{msg[0][:300] if msg else ''})") from None

    placeholders = list(cf.inputs[:len(fields)])
    inputs = [(f, t, ex[f]) for f, t in zip(fields, placeholders)]
    captured = {}
    for ext, internal in cf.graph.captures:
        if ext.dtype == tf.resource:
            try:
                captured[internal.name] = ("resource", ext)
            except Exception:  # pragma: no cover
                continue
        else:
            captured[internal.name] = ("const", _numpy(ext))

    result = cf.structured_outputs
    outputs: list = []
    if is_graphs_tuple(result):
        for f in OUT_FIELDS:
            outputs.append((f, getattr(result, f)))
    elif isinstance(result, (list, tuple)) and result and all(is_graphs_tuple(r) for r in result):
        for k, r in enumerate(result):
            for f in OUT_FIELDS:
                outputs.append((f"{f}_{k}", getattr(r, f)))
    else:
        raise ModelLoadError(f"{source}: the model must return a GraphsTuple or a list of them, got "
                             f"{type(result).__name__}")
    return Traced(cf.graph, inputs, captured, registry, outputs, several)


def read_resource(handle, dtype) -> np.ndarray:
    """The current value of a captured variable (resource handle), read eagerly."""
    import tensorflow as tf
    return np.asarray(tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype).numpy())
