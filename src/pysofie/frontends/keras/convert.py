"""A Keras model configuration (Sequential, Functional, nested models) -> IR Graph."""
from __future__ import annotations

import os
import re

from typing import Any, Optional

from ...errors import ModelLoadError, ShapeInferenceError, UnsupportedOperatorError
from ...ir import DType, Graph, Value
from ...ir.shapes import Sym
from ...passes.infer import InferShapesAndFold
from .builder import _Builder, _Ctx, _LayerProblem, _WHY
from .files import _Weights, _read_file
from .registry import _LAYERS, layer_key


_NP_DTYPES = {"float32": DType.FLOAT, "float64": DType.DOUBLE, "int32": DType.INT32, "int64": DType.INT64,
              "int8": DType.INT8, "uint8": DType.UINT8, "int16": DType.INT16, "bool": DType.BOOL}


def _input_dtype(cfg) -> DType:
    dt = cfg.get("dtype", "float32")
    if isinstance(dt, dict):
        dt = (dt.get("config") or {}).get("name", "float32")
    dt = str(dt)
    if dt not in _NP_DTYPES:
        raise _LayerProblem(f"input dtype '{dt}' is not supported")
    return _NP_DTYPES[dt]


def _layer_list(config: dict) -> tuple[str, list[dict], dict]:
    cls = config.get("class_name")
    cfg = config.get("config")
    if cls not in ("Sequential", "Functional", "Model"):
        raise ModelLoadError(f"model class '{cls}' is not supported (only Sequential and Functional models)")
    if isinstance(cfg, list):  # Keras 2.2 Sequential: the config is the list of layers
        cfg = {"layers": cfg, "name": "sequential"}
    if not isinstance(cfg, dict) or "layers" not in cfg:
        raise ModelLoadError("the model configuration has no layer list")
    return cls, cfg["layers"], cfg


def _ref_parse_v3(arg, resolve):
    """Replace Keras 3 serialized tensors (recursively) by Values via resolve((layer, node, tensor))."""
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__":
            hist = arg["config"]["keras_history"]
            return resolve((hist[0], int(hist[1]), int(hist[2])))
        return {k: _ref_parse_v3(v, resolve) for k, v in arg.items()}
    if isinstance(arg, list):
        return [_ref_parse_v3(v, resolve) for v in arg]
    return arg


def _is_v2_ref(x) -> bool:
    return isinstance(x, list) and len(x) >= 3 and isinstance(x[0], str) and isinstance(x[1], int) \
        and isinstance(x[2], int)


def _ref_parse_v2(arg, resolve):
    if _is_v2_ref(arg):
        return resolve((arg[0], arg[1], arg[2]))
    if isinstance(arg, list):
        return [_ref_parse_v2(v, resolve) for v in arg]
    if isinstance(arg, dict):
        return {k: _ref_parse_v2(v, resolve) for k, v in arg.items()}
    return arg


class _Missing(Exception):
    pass


def _io_refs(spec) -> list[tuple[str, int, int]]:
    if spec is None:
        return []
    if isinstance(spec, dict):
        return [r for v in spec.values() for r in _io_refs(v)]
    if _is_v2_ref(spec):
        return [(spec[0], spec[1], spec[2])]
    return [r for v in spec for r in _io_refs(v)]


def graph_from_keras(path: str, *, name: Optional[str] = None, input_shapes=None) -> Graph:
    """Read a Keras model file. ``input_shapes`` (optional, one per model input, in the model's input order)
    replaces the shapes in the file, e.g. to fix the batch size; a str entry is a symbolic size."""
    path = os.fspath(path)
    config, weights, major, handles = _read_file(path)
    try:
        _WHY.clear()
        return _convert(path, config, weights, major, name, input_shapes)
    finally:
        _WHY.clear()
        for h in handles:
            try:
                h.close()
            except Exception:
                pass


_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _scan(layers: list, unknown: list, classes: set, masked: list) -> None:
    for k, L in enumerate(layers):
        lcls = L.get("class_name", "?")
        cfg = L.get("config") or {}
        lname = L.get("name") or cfg.get("name") or f"layer_{k}"
        classes.add(lcls)
        if lcls in _MODEL_CLASSES:
            try:
                _, sub, _ = _layer_list({"class_name": lcls, "config": cfg})
            except ModelLoadError as e:
                unknown.append(f"{lname} ({lcls}): {e}")
            else:
                _scan(sub, unknown, classes, masked)
        elif lcls != "InputLayer" and layer_key(L) not in _LAYERS:
            what = "operation (keras.ops)" if layer_key(L) != lcls else "layer"
            unknown.append(f"{lname} ({lcls}): {what} not supported")
        if lcls == "Embedding" and cfg.get("mask_zero", False):
            masked.append(lname)


_MASK_USERS = {"SimpleRNN", "GRU", "LSTM", "Bidirectional", "GlobalAveragePooling1D", "GlobalMaxPooling1D",
               "GlobalAvgPool1D", "GlobalMaxPool1D"}


def _convert(path: str, config: dict, weights: _Weights, major: int, name: Optional[str],
             input_shapes=None) -> Graph:
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: the model configuration is not a JSON object")
    try:
        mcls, layers, mcfg = _layer_list(config)
    except ModelLoadError as e:
        raise ModelLoadError(f"{path}: {e}") from None
    stem = os.path.splitext(os.path.basename(path))[0]
    graph = Graph(name or stem or mcfg.get("name", "model"))
    graph.source = path
    b = _Builder(graph)

    # every layer must be known: report all unknown ones at once (nested models included)
    unknown: list[str] = []
    classes: set[str] = set()
    masked: list[str] = []
    _scan(layers, unknown, classes, masked)
    # masks (Embedding(mask_zero=True)) change what recurrent layers and 1-D pooling compute
    if classes & _MASK_USERS:
        unknown += [f"{n} (Embedding): mask_zero=True (masking of later layers) is not supported" for n in masked]
    if unknown:
        raise UnsupportedOperatorError(unknown, path)
    # the model's inputs, in order, for input_shapes
    if mcls == "Sequential":
        input_order = [None]
    else:
        input_order = [r[0] for r in _io_refs(mcfg.get("input_layers"))]
    given: dict = {}
    if input_shapes is not None:
        shapes = list(input_shapes)
        if len(shapes) != len(input_order):
            raise ModelLoadError(f"{path}: {len(shapes)} input shape(s) given but the model has "
                                 f"{len(input_order)} input(s)")
        given = dict(zip(input_order, shapes))

    problems: list[str] = []
    batch = Sym.var("N")
    graph.size_params.append("N")

    def make_input(lname: str, cfg: dict, shape=None, key=None) -> Value:
        shp = shape if shape is not None else (cfg.get("batch_shape") or cfg.get("batch_input_shape"))
        if shp is None:
            raise ModelLoadError(f"{path}: input '{lname}' has no shape in the configuration")
        user = given.get(key)
        if user is not None:
            user = list(user)
            if len(user) != len(shp):
                raise ModelLoadError(f"{path}: input '{lname}' has rank {len(shp)} but the shape given is "
                                     f"{tuple(user)}")
            for ax, (u, d) in enumerate(zip(user, shp)):
                if d is not None and not isinstance(u, str) and int(u) != int(d):
                    raise ModelLoadError(f"{path}: input '{lname}' axis {ax} has size {d} in the model, "
                                         f"{u} given")
            shp = [None if isinstance(u, str) else int(u) for u in user]
            names = [u if isinstance(u, str) else None for u in user]
        else:
            names = [None] * len(shp)
        dims: list = []
        for ax, d in enumerate(shp):
            if names[ax] is not None:
                sname = re.sub(r"[^A-Za-z0-9_]", "_", names[ax])
                if sname not in graph.size_params:
                    graph.size_params.append(sname)
                dims.append(Sym.var(sname))
            elif ax == 0 and d is None:
                dims.append(batch)
            elif d is None:
                sname = re.sub(r"[^A-Za-z0-9_]", "_", f"{lname}_dim{ax}")
                if sname not in graph.size_params:
                    graph.size_params.append(sname)
                dims.append(Sym.var(sname))
            else:
                dims.append(int(d))
        try:
            dt = _input_dtype(cfg)
        except _LayerProblem as e:
            raise ModelLoadError(f"{path}: input '{lname}': {e}") from None
        b.names.add(lname)
        v = Value(lname, dt, tuple(dims))
        graph.add_input(v)
        return v

    def run_layer(lname: str, lcls: str, lcfg: dict, inputs, kw, wts, prefix: str) -> Optional[list[Value]]:
        b.layer = re.sub(r"[^A-Za-z0-9_]", "_", prefix + lname)
        try:
            if lcls in _MODEL_CLASSES:  # a nested model: its layers run on the inputs given here
                scls, slayers, scfg = _layer_list({"class_name": lcls, "config": lcfg})
                ins = inputs if isinstance(inputs, list) else [inputs]
                res = build_model(scls, slayers, scfg, wts.child(lname), ins, f"{prefix}{lname}_")
                return None if res is None else [v for _, v in res]
            ctx = _Ctx(b, wts.get(lname), major, lname, lcls)
            return _LAYERS[lcls](ctx, lcfg, inputs, kw)
        except (_LayerProblem, ShapeInferenceError, ModelLoadError) as e:
            problems.append(f"{lname} ({lcls}): {e}")
        return None

    def build_model(mcls: str, layers: list, mcfg: dict, wts, provided: Optional[list], prefix: str = ""):
        """Layers of one (possibly nested) model: [(output name, Value)], or None after a problem."""
        wts.bind_v3_fallback([(L.get("name") or (L.get("config") or {}).get("name") or f"layer_{k}",
                               L.get("class_name", "?")) for k, L in enumerate(layers)])
        outputs: list[tuple[str, Value]] = []
        if mcls == "Sequential":
            first = layers[0] if layers else None
            if first is None:
                raise ModelLoadError(f"{path}: the Sequential model '{mcfg.get('name')}' has no layers")
            rest = layers[1:] if first.get("class_name") == "InputLayer" else layers
            if provided is not None:
                if len(provided) != 1:
                    problems.append(f"{mcfg.get('name')} (Sequential): called with {len(provided)} inputs")
                    return None
                x = provided[0]
            elif first.get("class_name") == "InputLayer":
                icfg = first["config"]
                x = make_input(icfg.get("name", "input"), icfg, key=None)
            else:
                fcfg = first.get("config", {})
                shp = fcfg.get("batch_input_shape") or fcfg.get("batch_shape") or mcfg.get("build_input_shape")
                if shp is None:
                    raise ModelLoadError(f"{path}: the Sequential model declares no input shape")
                x = make_input(f"{fcfg.get('name', 'layer')}_input", fcfg, shp, key=None)
            cur: Value = x
            last = mcfg.get("name", "output") if provided is not None else "output"
            for L in rest:
                lcfg = L.get("config", {})
                lname = lcfg.get("name") or L.get("name")
                if provided is None:
                    last = lname
                res = run_layer(lname, layer_key(L), lcfg, cur, {}, wts, prefix)
                if res is None:
                    return None
                cur = res[0]
            return [(last, cur)]

        tensors: dict[tuple[str, int], list[Value]] = {}
        pending: list[tuple[str, str, dict, int, Any]] = []
        in_order = [r[0] for r in _io_refs(mcfg.get("input_layers"))]
        for L in layers:
            lcls = layer_key(L)
            lcfg = L.get("config", {})
            lname = L.get("name") or lcfg.get("name")
            if lcls == "InputLayer":
                if provided is None:
                    tensors[(lname, 0)] = [make_input(lname, lcfg, key=lname)]
                else:
                    if lname not in in_order or len(provided) != len(in_order):
                        problems.append(f"{mcfg.get('name')} ({mcls}): its inputs do not match the call")
                        return None
                    tensors[(lname, 0)] = [provided[in_order.index(lname)]]
                continue
            for k, node in enumerate(L.get("inbound_nodes", [])):
                pending.append((lname, lcls, lcfg, k, node))

        failed: set[tuple[str, int]] = set()

        # a nested functional model's node 0 is its own construction call, left out of the configuration
        skip: dict[str, int] = {}
        for L in layers:
            c = L.get("class_name")
            if c in ("Functional", "Model") or (c == "Sequential" and major < 3 and (
                    (L.get("config") or {}).get("layers") or [{}])[0].get("class_name") == "InputLayer"):
                skip[L.get("name") or (L.get("config") or {}).get("name")] = 1

        def resolve(ref):
            key = (ref[0], ref[1] - skip.get(ref[0], 0))
            if key in failed:
                raise _Missing("failed")
            if key not in tensors:
                raise _Missing("pending")
            outs = tensors[key]
            if ref[2] >= len(outs):
                raise _Missing("failed")
            return outs[ref[2]]

        progressed = True
        while pending and progressed:
            progressed = False
            rest = []
            for item in pending:
                lname, lcls, lcfg, k, node = item
                try:
                    if isinstance(node, dict):  # Keras 3
                        args = _ref_parse_v3(node.get("args", []), resolve)
                        kw = _ref_parse_v3(node.get("kwargs", {}), resolve)
                        inputs = args[0] if len(args) == 1 else list(args)
                    else:  # Keras 2: a list of [layer, node, tensor, kwargs]
                        ins = [resolve((r[0], int(r[1]), int(r[2]))) for r in node]
                        kw = {}
                        if node and len(node[0]) > 3 and isinstance(node[0][3], dict):
                            kw = _ref_parse_v2(node[0][3], resolve)
                        inputs = ins[0] if len(ins) == 1 else ins
                except _Missing as e:
                    if str(e) == "failed":
                        failed.add((lname, k))
                        progressed = True
                    else:
                        rest.append(item)
                    continue
                res = run_layer(lname, lcls, lcfg, inputs, kw, wts, prefix)
                if res is None:
                    failed.add((lname, k))
                else:
                    tensors[(lname, k)] = res
                progressed = True
            pending = rest
        if pending and not problems:
            problems.append(f"layers {sorted({p[0] for p in pending})} cannot be connected (a cycle or a "
                            "reference to a missing layer)")
        used: dict[str, int] = {}
        for ref in _io_refs(mcfg.get("output_layers")):
            v = tensors.get((ref[0], ref[1] - skip.get(ref[0], 0)))
            if v is None or ref[2] >= len(v):
                if not problems:
                    problems.append(f"model output {list(ref)} is not produced by any layer")
                return None
            oname = ref[0]
            n = used.get(oname, 0)
            used[oname] = n + 1
            outputs.append((oname if n == 0 else f"{oname}_{n}", v[ref[2]]))
        if provided is None and in_order:  # inputs in the model's declared order
            byname = {v.name: v for v in graph.inputs}
            if all(n in byname for n in in_order):
                graph.inputs = [byname[n] for n in in_order] + [v for v in graph.inputs if v.name not in in_order]
        return outputs

    outputs = build_model(mcls, layers, mcfg, weights, None) or []
    if problems or not outputs:
        raise UnsupportedOperatorError(problems or ["the model has no outputs"], path)

    b.layer = "output"
    for oname, v in outputs:
        if v.is_input or v.is_const or any(o is v for o in graph.outputs) or v.producer is None:
            v = b.op("Identity", [v])
        b.names.discard(v.name)
        oname = b.fresh(oname) if oname in b.names else oname
        b.names.add(oname)
        v.name = oname
        graph.outputs.append(v)
    # drop inputs the outputs do not depend on? Keras keeps them: keep them too.
    graph.size_params = [s for s in graph.size_params if any(
        isinstance(d, Sym) and s in d.symbols() for v in graph.inputs for d in v.shape)]
    InferShapesAndFold()(graph)
    return graph
