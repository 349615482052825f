"""Reading Keras files: .h5 (Keras 2 / tf.keras HDF5, Keras 3 legacy HDF5) and .keras (Keras 3 zip), weights
in ``layer.weights`` order whatever the format. Only h5py, zipfile and json: neither TensorFlow nor Keras."""
from __future__ import annotations

import io
import json
import os
import re
import zipfile

from typing import Any
import numpy as np

from ...errors import ModelLoadError


def _as_str(x) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray) and x.dtype.kind in "SO" and x.shape == ():
        return _as_str(x.item())
    return str(x)


class _Weights:
    """A layer's weights in ``layer.weights`` order, whatever the file format."""

    def __init__(self, h5file, kind: str):
        self.f = h5file
        self.kind = kind  # "legacy" (model_weights/<layer>/weight_names) or "v3" (layers/<group>/vars/<k>)
        self.v3_groups: dict[str, Any] = {}
        if kind == "v3" and "layers" in self.f and hasattr(self.f["layers"], "items"):
            for gname, grp in self.f["layers"].items():
                nm = grp["vars"].attrs.get("name") if "vars" in grp else None
                if nm is not None:
                    self.v3_groups[_as_str(nm)] = grp

    def bind_v3_fallback(self, layer_specs: list[tuple[str, str]]) -> None:
        """Older Keras 3 files lack the 'name' attribute: groups are named snake_case(class) with a counter."""
        if self.kind != "v3" or "layers" not in self.f:
            return
        counts: dict[str, int] = {}
        for lname, cls in layer_specs:
            if lname in self.v3_groups:
                continue
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
            base = re.sub(r"_+", "_", base)
            k = counts.get(base, 0)
            counts[base] = k + 1
            gname = base if k == 0 else f"{base}_{k}"
            if gname in self.f["layers"]:
                self.v3_groups[lname] = self.f["layers"][gname]

    def child(self, layer: str):
        """The weights of a nested model."""
        if self.kind == "legacy":
            root = self.f["model_weights"] if "model_weights" in self.f else self.f
            if layer not in root:
                return _LegacyScoped(None, [])
            grp = root[layer]
            return _LegacyScoped(grp, [_as_str(n) for n in grp.attrs.get("weight_names", [])])
        grp = self.v3_groups.get(layer)
        return _Weights(grp if grp is not None else {}, "v3")

    def get(self, layer: str) -> list[np.ndarray]:
        if self.kind == "legacy":
            root = self.f["model_weights"] if "model_weights" in self.f else self.f
            if layer not in root:
                return []
            grp = root[layer]
            names = [_as_str(n) for n in grp.attrs.get("weight_names", [])]
            return [np.asarray(grp[n]) for n in names]
        grp = self.v3_groups.get(layer)
        if grp is None:
            return []
        return _collect_v3(grp)


class _LegacyScoped:
    """Weights of a nested model in a legacy HDF5 file: the layer's weight names, as paths with its name."""

    def __init__(self, grp, names: list[str]):
        self.grp = grp
        self.names = names

    def _mine(self, layer: str) -> list[str]:
        return [n for n in self.names if layer in n.split("/")[:-1]]

    def bind_v3_fallback(self, specs) -> None:
        pass

    def child(self, layer: str):
        return _LegacyScoped(self.grp, self._mine(layer))

    def get(self, layer: str) -> list[np.ndarray]:
        return [np.asarray(self.grp[n]) for n in self._mine(layer)]


def _collect_v3(grp) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    if "vars" in grp:
        keys = sorted(grp["vars"].keys(), key=lambda k: int(k) if k.isdigit() else 1 << 30)
        out += [np.asarray(grp["vars"][k]) for k in keys]
    subs = [k for k in grp.keys() if k != "vars" and hasattr(grp[k], "keys")]
    order = {"forward_layer": 0, "backward_layer": 1, "cell": -1,
             "query_dense": 0, "key_dense": 1, "value_dense": 2, "output_dense": 3}
    for k in sorted(subs, key=lambda s: (order.get(s, 2), s)):
        out += _collect_v3(grp[k])
    return out


def _read_file(path: str):
    """(model config dict, _Weights, keras major version, open handles to close)."""
    if not os.path.exists(path):
        raise ModelLoadError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ModelLoadError(f"{path}: is a directory, not a Keras model file")
    try:
        import h5py
    except ImportError as e:  # pragma: no cover
        raise ModelLoadError(f"{path}: reading Keras files needs h5py ({e})") from None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
                if "config.json" not in names:
                    raise ModelLoadError(f"{path}: a zip file without config.json is not a Keras 3 model")
                config = json.loads(z.read("config.json"))
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
                wdata = z.read("model.weights.h5") if "model.weights.h5" in names else None
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(f"{path}: not a readable Keras model ({type(e).__name__}: {e})") from None
        if wdata is None:
            raise ModelLoadError(f"{path}: the Keras archive holds no model.weights.h5 "
                                 "(weights stored in another form are not supported)")
        try:
            f = h5py.File(io.BytesIO(wdata), "r")
        except Exception as e:
            raise ModelLoadError(f"{path}: model.weights.h5 in the archive is not readable ({e})") from None
        version = str(meta.get("keras_version", "3"))
        return config, _Weights(f, "v3"), _major(version), [f]
    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise ModelLoadError(f"{path}: not a readable HDF5/Keras file ({type(e).__name__}: {e})") from None
    try:
        raw = f.attrs.get("model_config")
        if raw is None:
            f.close()
            raise ModelLoadError(f"{path}: the HDF5 file has no 'model_config' attribute (a weights-only file, or "
                                 "not a Keras model)")
        config = json.loads(_as_str(raw))
    except ModelLoadError:
        raise
    except Exception as e:
        f.close()
        raise ModelLoadError(f"{path}: the model configuration cannot be read ({e})") from None
    version = _as_str(f.attrs.get("keras_version", b"2"))
    if "model_weights" in f and "keras_version" in f["model_weights"].attrs:
        version = _as_str(f["model_weights"].attrs["keras_version"])
    return config, _Weights(f, "legacy"), _major(version), [f]


def _major(version: str) -> int:
    m = re.match(r"\s*(\d+)", version)
    return int(m.group(1)) if m else 3
