"""The CUDA back end: IR Graph -> <name>.cuh (a Session on a CUDA device) + the weight file."""
from __future__ import annotations

import dataclasses
from typing import Optional

from . import ops  # noqa: F401  (registers the generators)
from ..cpp.weights import bin_bytes, dat_bytes
from .emitter import GENERATORS, CudaEmitter


@dataclasses.dataclass
class GeneratedCudaModel:
    name: str
    namespace: str
    header: str  # the text of <name>.cuh
    weights_mode: str  # "dat" | "bin"
    weight_data: bytes
    emitter: CudaEmitter

    @property
    def header_file(self) -> str:
        return f"{self.name}.cuh"

    @property
    def weight_file(self) -> str:
        return f"{self.name}.{self.weights_mode}"


def generate(graph, *, name: Optional[str] = None, namespace: Optional[str] = None,
             weights: str = "bin") -> GeneratedCudaModel:
    em = CudaEmitter(graph, name=name, namespace=namespace, weights=weights)
    header = em.generate()
    tensors = em.weight_tensors()
    data = dat_bytes(tensors) if weights == "dat" else bin_bytes(tensors)
    return GeneratedCudaModel(em.name, em.namespace, header, weights, data, em)


__all__ = ["generate", "GeneratedCudaModel", "CudaEmitter", "GENERATORS"]
