"""PyTorch front end: TorchScript files (``torch.jit.save``) and in-memory ``nn.Module`` objects -> IR.

The module is exported to ONNX in memory with ``torch.onnx.export`` and read by the ONNX front end. The input
shapes must be given, as with ROOT's SOFIE (``input_shapes=[(2, 1, 8, 8)]``); a dimension given as a string
(``("N", 1, 8, 8)``) stays symbolic. An entry may also be an example tensor (torch or numpy), whose dtype is
then used, or name a dtype: ``("int64", (2, "E"))`` for a graph's edge_index. torch is imported only here.

Exporter: the TorchScript-based exporter (``dynamo=False``). It works offline with the torch wheel alone and
accepts ``torch.jit.ScriptModule`` objects, which is what a TorchScript file loads as; the dynamo exporter
needs the separate ``onnxscript`` package and cannot take ScriptModules. When the TorchScript exporter fails
(PyTorch Geometric's max aggregation, for one) and onnxscript is installed, the dynamo exporter is tried.
"""
from __future__ import annotations

import inspect
import io
import os
import re
import warnings
from typing import Optional

import numpy as np

from ..errors import ModelLoadError
from ..ir import Graph

OPSET = 17
_EXAMPLE_DIM = 2  # size used for a symbolic dimension in the example input
_DTYPES = {"float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
           "int64": "int64", "int32": "int32", "bool": "bool"}


def _load_torchscript(path: str):
    import torch
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a directory, not a TorchScript file")
    try:
        return torch.jit.load(path, map_location="cpu")
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"{path}: not a TorchScript file ({first[:200]}). Only files written by torch.jit.save are read; "
            "for a state_dict or a pickled module, build the nn.Module in Python and pass it instead") from None


def _input_names(model, n: int) -> list[str]:
    names: list[str] = []
    try:
        import torch
        if isinstance(model, torch.jit.ScriptModule):
            args = model.forward.schema.arguments[1:]
            names = [a.name for a in args]
        else:
            params = [p for p in inspect.signature(model.forward).parameters.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            names = [p.name for p in params]
    except Exception:
        names = []
    names = [re.sub(r"[^A-Za-z0-9_]", "_", s) for s in names[:n]]
    if len(names) != n or len(set(names)) != n or any(not s for s in names):
        names = ["input"] if n == 1 else [f"input_{k}" for k in range(n)]
    return names


def _examples(input_shapes, names: list[str], source: str):
    import torch
    args, dynamic = [], {}
    for k, (spec, nm) in enumerate(zip(input_shapes, names)):
        if isinstance(spec, torch.Tensor):
            args.append(spec.detach().cpu())
            continue
        if isinstance(spec, np.ndarray):
            args.append(torch.from_numpy(np.ascontiguousarray(spec)))
            continue
        dtype = None
        if (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)
                and isinstance(spec[1], (tuple, list))):
            dtype, spec = spec  # ("int64", (2, "E")): an index input such as edge_index
            if dtype not in _DTYPES:
                raise ModelLoadError(f"{source}: input shape #{k} names dtype {dtype!r}; supported: "
                                     f"{', '.join(_DTYPES)}")
        try:
            dims = list(spec)
        except TypeError:
            raise ModelLoadError(f"{source}: input shape #{k} ({spec!r}) is not a sequence of sizes") from None
        shape = []
        for ax, d in enumerate(dims):
            if isinstance(d, str):
                dynamic.setdefault(nm, {})[ax] = d
                shape.append(_EXAMPLE_DIM)
            elif isinstance(d, (int, np.integer)) and int(d) > 0:
                shape.append(int(d))
            else:
                raise ModelLoadError(f"{source}: input shape #{k} {tuple(dims)} has an invalid size {d!r}")
        g = torch.Generator().manual_seed(k)
        tdt = getattr(torch, _DTYPES[dtype or "float32"])
        if tdt.is_floating_point:
            args.append(torch.rand(shape, generator=g, dtype=tdt))
        elif tdt == torch.bool:
            args.append(torch.rand(shape, generator=g) > 0.5)
        else:  # indices: valid for any axis of the example size
            args.append(torch.randint(0, _EXAMPLE_DIM, shape, generator=g, dtype=tdt))
    return tuple(args), dynamic


class _no_fastpath:
    """Switch off the fused multi-head-attention fast path while exporting (restored afterwards)."""

    def __init__(self, torch):
        self.mha = getattr(getattr(torch, "backends", None), "mha", None)
        self.old = None

    def __enter__(self):
        if self.mha is not None and hasattr(self.mha, "get_fastpath_enabled"):
            self.old = self.mha.get_fastpath_enabled()
            self.mha.set_fastpath_enabled(False)

    def __exit__(self, *exc):
        if self.old is not None:
            self.mha.set_fastpath_enabled(self.old)
        return False


def _leaves(x) -> list:
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in _leaves(v)]
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in _leaves(v)]
    return [x]


def graph_from_torch(model, *, input_shapes=None, name: Optional[str] = None) -> Graph:
    try:
        import torch
    except ImportError as e:  # pragma: no cover
        raise ModelLoadError(f"reading PyTorch models needs torch ({e})") from None
    import onnx

    from .onnx import graph_from_onnx

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        source = path
        module = _load_torchscript(path)
        default_name = os.path.splitext(os.path.basename(path))[0]
    elif isinstance(model, torch.nn.Module):
        module = model
        source = f"PyTorch module {type(model).__name__}"
        default_name = type(model).__name__.lower()
    else:
        raise ModelLoadError(f"cannot read a PyTorch model from an object of type {type(model).__name__}")

    if not input_shapes:
        raise ModelLoadError(f"{source}: PyTorch models carry no input shapes; give them with "
                             "input_shapes=[(batch, ...), ...] (one shape per forward() argument)")
    if isinstance(input_shapes, tuple) and input_shapes and all(isinstance(d, (int, str)) for d in input_shapes):
        input_shapes = [input_shapes]  # a single shape given without the enclosing list
    input_shapes = list(input_shapes)
    names = _input_names(module, len(input_shapes))
    args, dynamic = _examples(input_shapes, names, source)

    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    proto = None
    try:
        with warnings.catch_warnings(), _no_fastpath(torch):
            warnings.simplefilter("ignore")
            with torch.no_grad():
                probe = module(*args)
            outs = _leaves(probe)
            out_names = ["output"] if len(outs) == 1 else [f"output_{k}" for k in range(len(outs))]
            # not under no_grad: fused inference kernels (nn.MultiheadAttention's fast path) have no ONNX form
            try:
                torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, input_names=names,
                                  output_names=out_names, dynamic_axes=dynamic or None, do_constant_folding=True)
            except Exception as legacy_error:
                # what the TorchScript exporter cannot take (PyG's max aggregation, for one) the dynamo exporter
                # may: tried when onnxscript is installed
                proto = _dynamo_export(torch, module, args, names, out_names, dynamic)
                if proto is None:
                    raise legacy_error
    except ModelLoadError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelLoadError(f"{source}: export to ONNX failed ({type(e).__name__}: "
                             f"{msg[0][:300] if msg else ''})") from None
    finally:
        if was_training:
            module.train()
    if proto is None:
        try:
            proto = onnx.load_from_string(buf.getvalue())
        except Exception as e:  # pragma: no cover
            raise ModelLoadError(f"{source}: the exported ONNX model cannot be read ({e})") from None
    return graph_from_onnx(proto, name=name or default_name, source=source)


def _dynamo_export(torch, module, args, names, out_names, dynamic):
    """The ONNX model from torch.onnx.export(dynamo=True), or None (no onnxscript, a ScriptModule, or it fails)."""
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return None
    if isinstance(module, torch.jit.ScriptModule):
        return None
    dims: dict = {}
    shapes = tuple({ax: dims.setdefault(sym, torch.export.Dim(re.sub(r"\W", "_", sym)))
                    for ax, sym in dynamic.get(nm, {}).items()} or None for nm in names)
    try:
        prog = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=shapes, input_names=names,
                                 output_names=out_names, verbose=False)
        return prog.model_proto
    except Exception:
        return None
