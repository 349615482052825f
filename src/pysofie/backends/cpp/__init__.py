"""The C++ back end: IR Graph -> <name>.hxx (+ weight file)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from . import ops  # noqa: F401  (registers the generators)
from .emitter import GENERATORS, CppEmitter
from .weights import bin_bytes, dat_bytes


@dataclasses.dataclass
class GeneratedModel:
    name: str
    namespace: str
    header: str  # the text of <name>.hxx
    weights_mode: str  # "dat" | "bin" | "embed" | "root"
    weight_data: Optional[bytes]  # the weight file's content (None for embed)
    emitter: CppEmitter

    @property
    def header_file(self) -> str:
        return f"{self.name}.hxx"

    @property
    def weight_file(self) -> Optional[str]:
        return None if self.weights_mode == "embed" else f"{self.name}.{self.weights_mode}"


def generate(graph, *, name: Optional[str] = None, namespace: Optional[str] = None,
             weights: str = "dat") -> GeneratedModel:
    em = CppEmitter(graph, name=name, namespace=namespace, weights=weights)
    header = em.generate()
    tensors = em.weight_tensors()
    if weights == "root":
        from .root_weights import root_bytes
        data = root_bytes(em.name, tensors)
    else:
        data = None if weights == "embed" else (dat_bytes(tensors) if weights == "dat" else bin_bytes(tensors))
    return GeneratedModel(em.name, em.namespace, header, weights, data, em)


__all__ = ["generate", "GeneratedModel", "CppEmitter", "GENERATORS"]
