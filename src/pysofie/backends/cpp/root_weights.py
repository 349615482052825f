"""ROOT weight files, as SOFIE writes them: a directory ``<model>_weights`` holding one ``std::vector<float>``
(``double``, ``int64_t``) per tensor under the key ``tensor_<name>``.

- Writing needs ROOT (PyROOT: ``pip install root``); reading works with uproot alone (or ROOT when uproot is
  missing).
- Generated code with ``weights="root"`` reads the file with ROOT's TFile in the Session's constructor, so it
  compiles with ROOT's headers and links libCore and libRIO (root_build_flags / ``pysofie config --root``).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ...errors import PysofieError

# SOFIE's element types for .root weights, and the C++ vector element each is stored as
ROOT_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double", np.dtype(np.int64): "int64_t"}


def weights_dir(model_name: str) -> str:
    return f"{model_name}_weights"


def check_root_tensors(model_name: str, tensors: list[tuple[str, np.ndarray]]) -> None:
    bad = [f"'{n}' ({a.dtype})" for n, a in tensors if a.dtype not in ROOT_TYPES]
    if bad:
        raise PysofieError(f"model '{model_name}': .root weight files hold float, double and int64 tensors (as "
                           f"SOFIE's do); not {', '.join(bad)}: use weights='bin' or 'dat'")


def root_bytes(model_name: str, tensors: list[tuple[str, np.ndarray]]) -> bytes:
    """The content of a .root weight file for these tensors (written by PyROOT into a temporary file)."""
    check_root_tensors(model_name, tensors)
    try:
        import ROOT
    except ImportError as e:
        raise PysofieError(f"model '{model_name}': writing .root weight files needs ROOT (pip install root): {e}") \
            from None
    with tempfile.TemporaryDirectory(prefix="pysofie-root-") as d:
        path = os.path.join(d, "weights.root")
        f = ROOT.TFile.Open(path, "RECREATE")
        if not f or f.IsZombie():
            raise PysofieError(f"model '{model_name}': ROOT could not create a temporary file in {d}")
        try:
            out = f.mkdir(weights_dir(model_name))
            for name, arr in tensors:
                ctype = ROOT_TYPES[arr.dtype]
                vec = ROOT.std.vector[ctype](np.ascontiguousarray(arr).reshape(-1).tolist() if ctype == "int64_t"
                                             else np.ascontiguousarray(arr).reshape(-1))
                if out.WriteObjectAny(vec, f"std::vector<{ctype}>", f"tensor_{name}") <= 0:
                    raise PysofieError(f"model '{model_name}': ROOT could not write tensor '{name}'")
        finally:
            f.Close()
        with open(path, "rb") as fh:
            return fh.read()


def read_root_weights(path: str, model_name: str | None = None) -> dict[str, np.ndarray]:
    """{tensor name: array} of a SOFIE .root weight file (uproot, else ROOT). model_name picks the directory
    ``<model_name>_weights`` when the file holds several."""
    try:
        import uproot
    except ImportError:
        uproot = None
    if uproot is not None:
        try:
            f = uproot.open(path)
        except Exception as e:
            raise PysofieError(f"{path}: not a readable ROOT file ({type(e).__name__}: {e})") from None
        with f:
            dirname = _pick_dir(path, [k.split(";")[0] for k, c in f.classnames().items()
                                       if c == "TDirectory" and "/" not in k], model_name)
            out = {}
            for key, cls in f[dirname].classnames().items():
                key = key.split(";")[0]
                if not key.startswith("tensor_"):
                    continue
                if not cls.startswith("vector<"):
                    raise PysofieError(f"{path}: '{dirname}/{key}' is a {cls}, not a std::vector")
                out[key[len("tensor_"):]] = np.asarray(f[f"{dirname}/{key}"], dtype=_np_type(path, key, cls))
            return out
    return _read_with_root(path, model_name)


def _np_type(path, key, cls):
    elem = cls[len("vector<"):-1].strip()
    types = {"float": np.float32, "double": np.float64, "long": np.int64, "int64_t": np.int64, "Long64_t": np.int64,
             "long long": np.int64}
    if elem not in types:
        raise PysofieError(f"{path}: tensor '{key}' is a {cls}: .root weights are float, double or int64")
    return types[elem]


def _pick_dir(path, dirs, model_name):
    weights = [d for d in dirs if d.endswith("_weights")]
    if model_name is not None:
        want = weights_dir(model_name)
        if want not in dirs:
            raise PysofieError(f"{path}: no directory '{want}' (weight directories: {weights})")
        return want
    if len(weights) != 1:
        raise PysofieError(f"{path}: expected one '<model>_weights' directory, found {weights}: give the model name")
    return weights[0]


def _read_with_root(path, model_name):
    try:
        import ROOT
    except ImportError:
        raise PysofieError(f"{path}: reading .root weight files needs uproot (pip install uproot) or ROOT") from None
    f = ROOT.TFile.Open(path, "READ")
    if not f or f.IsZombie():
        raise PysofieError(f"{path}: not a readable ROOT file")
    try:
        dirs = [k.GetName() for k in f.GetListOfKeys() if k.GetClassName() == "TDirectoryFile"]
        dirname = _pick_dir(path, dirs, model_name)
        out = {}
        for k in f.Get(dirname).GetListOfKeys():
            name = k.GetName()
            if name.startswith("tensor_"):
                cls = str(k.GetClassName()).replace("std::", "")
                obj = f.Get(f"{dirname}/{name}")
                out[name[len("tensor_"):]] = np.asarray(list(obj), dtype=_np_type(path, name, cls))
        return out
    finally:
        f.Close()


# -- compiling code that reads .root weights ----------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def root_build_flags() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(compile flags, link flags) for code that uses TFile: a ROOT installation's root-config when its headers
    exist, else the ROOT of the Python environment (pip install root), found without importing it."""
    inc = lib = None
    rc = shutil.which("root-config")
    if rc:
        try:
            inc, lib = subprocess.run([rc, "--incdir", "--libdir"], capture_output=True, text=True,
                                      check=True).stdout.split()[:2]
        except (subprocess.SubprocessError, ValueError, OSError):
            inc = lib = None
    if not (inc and os.path.exists(os.path.join(inc, "TFile.h"))):
        spec = importlib.util.find_spec("ROOT")
        locs = list(spec.submodule_search_locations or []) if spec else []
        for d in locs:
            if os.path.exists(os.path.join(d, "include", "TFile.h")):
                inc, lib = os.path.join(d, "include"), os.path.join(d, "lib")
                break
        else:
            raise PysofieError("weights='root' needs ROOT's headers and libraries (TFile): install ROOT "
                               "(pip install root) or put a ROOT installation's root-config on PATH")
    return (("-isystem", inc), (f"-L{lib}", "-lCore", "-lRIO", f"-Wl,-rpath,{lib}"))


def constructor_lines(model_name: str, reads: list[tuple[str, str, str, int]]) -> list[str]:
    """C++ lines of the Session constructor reading the tensors [(tensor name, C++ type, destination pointer,
    length)] from ``weight_file`` (errors name the file and the tensor)."""
    from .names import c_string
    lines = [
        "std::unique_ptr<TFile> root_file(TFile::Open(weight_file.c_str(), \"READ\"));",
        "if (!root_file || root_file->IsZombie())",
        "   throw std::runtime_error(\"pysofie: cannot open ROOT weight file '\" + weight_file + \"'\");",
        f"const std::string root_dir = {c_string(weights_dir(model_name) + '/')};",
        "auto read_tensor = [&](const char* name, auto* dst, size_t length) {",
        "   using T = std::remove_pointer_t<decltype(dst)>;",
        "   std::unique_ptr<std::vector<T>> v(root_file->Get<std::vector<T>>((root_dir + \"tensor_\" + name).c_str()));",
        "   if (!v)",
        "      throw std::runtime_error(\"pysofie: ROOT weight file '\" + weight_file + \"' has no tensor '\" + "
        "root_dir + \"tensor_\" + name + \"' of the expected type\");",
        "   if (v->size() != length)",
        "      throw std::runtime_error(\"pysofie: ROOT weight file '\" + weight_file + \"': tensor '\" + "
        "std::string(name) + \"' has \" + std::to_string(v->size()) + \" values, expected \" + "
        "std::to_string(length));",
        "   std::copy(v->begin(), v->end(), dst);",
        "};",
    ]
    for name, _ctype, dst, length in reads:
        lines.append(f"read_tensor({c_string(name)}, {dst}, {length});")
    return lines


def _candidates(value_name: str, cname: str) -> list[str]:
    import re
    return list(dict.fromkeys([cname, value_name, re.sub(r"[^A-Za-z0-9_]", "", value_name),
                               re.sub(r"[^A-Za-z0-9_]", "_", value_name)]))


def tensors_from_root(path: str, model) -> list[tuple[str, np.ndarray]]:
    """The model's weight tensors [(name, array)] taken from a .root weight file (SOFIE's or pysofie's), matched
    by name; every tensor that is missing or has another size is reported at once."""
    found = read_root_weights(path, model.name if _has_dir(path, model.name) else None)
    out, problems = [], []
    for v, cname in model.emitter.consts:
        arr = next((found[n] for n in _candidates(v.name, cname) if n in found), None)
        if arr is None:
            problems.append(f"tensor '{v.name}' is missing")
        elif arr.size != v.const.size:
            problems.append(f"tensor '{v.name}' has {arr.size} values, the model needs {v.const.size}")
        else:
            out.append((cname, np.ascontiguousarray(arr.reshape(v.const.shape).astype(v.const.dtype))))
    if problems:
        raise PysofieError(f"{path}: the weights do not fit model '{model.name}' (its optimized graph may hold "
                           f"tensors that the file's model had not): {'; '.join(problems)}; the file has "
                           f"{sorted(found)}")
    return out


def _has_dir(path: str, model_name: str) -> bool:
    try:
        import uproot
        with uproot.open(path) as f:
            return any(k.split(";")[0] == weights_dir(model_name) for k in f.keys(recursive=False))
    except Exception:
        return False


def bin_file_from_root(path: str, model) -> str:
    """A cached .bin weight file for `model` (a GeneratedModel) with the weights of a .root file, so that a
    session built without ROOT runs with SOFIE's .root weights (uproot reads them)."""
    import hashlib
    from ...build.fs import atomic_write, cache_dir
    from .weights import bin_bytes
    data = bin_bytes(tensors_from_root(path, model))
    key = hashlib.sha256(data).hexdigest()
    out = os.path.join(cache_dir(), "weights", key[:2], f"{key}.bin")
    if not os.path.exists(out):
        atomic_write(out, data)
    return out


def onnx_with_root_weights(model, path: str, name: str | None = None):
    """(ONNX ModelProto with its initializers replaced by the tensors of a SOFIE .root weight file, model name), or
    None when `model` is not an ONNX model. SOFIE names the tensors after the initializers (cleaned up), so its
    files fit the original graph, not pysofie's optimized one; the model is then generated anew (the code stays the
    same: weights are not part of it). Initializers the file lacks (SOFIE skips constants) keep their values."""
    import onnx
    from onnx import numpy_helper
    if isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx"):
        proto = onnx.load(os.fspath(model))
        name = name or os.path.splitext(os.path.basename(os.fspath(model)))[0]
    elif isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    elif isinstance(model, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(model))
    else:
        return None
    want = name or proto.graph.name or "model"
    found = read_root_weights(path, want if _has_dir(path, want) else None)
    replaced, problems = 0, []
    for init in proto.graph.initializer:
        key = next((n for n in _candidates(init.name, init.name) if n in found), None)
        if key is None:
            continue
        old = numpy_helper.to_array(init)
        arr = found[key]
        if arr.size != old.size:
            problems.append(f"tensor '{init.name}' has {arr.size} values, the model needs {old.size}")
            continue
        init.CopyFrom(numpy_helper.from_array(arr.reshape(old.shape).astype(old.dtype), init.name))
        replaced += 1
    if problems or not replaced:
        raise PysofieError(f"{path}: the weights do not fit this model: "
                           f"{'; '.join(problems) or 'no tensor matches an initializer'} (the file has {sorted(found)})")
    return proto, name
