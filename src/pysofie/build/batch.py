"""Compile many models into one shared library (one compiler run), falling back to smaller batches when one
model's code does not compile, so that a single bad model costs only itself."""
from __future__ import annotations

import re
from typing import Optional

from ..errors import CompileError, PysofieError
from ..backends.cpp.capi import source_name
from .library import build_library


def _culprits(message: str, sources: dict[str, int]) -> list[int]:
    """Indices of the models whose header the compiler reports an error in."""
    found = []
    for m in re.finditer(r"([A-Za-z0-9_]+\.hxx):\d+(?::\d+)?: (?:fatal )?error", message):
        i = sources.get(m.group(1))
        if i is not None and i not in found:
            found.append(i)
    return found


def compile_many(models: list, *, weights: str = "dat", opt_level=None, native=None, chunk: int = 64,
                 input_shapes=None, constant_inputs=None, extra_flags=()) -> list:
    """InferenceSessions for `models` (paths, ModelProtos or Graphs), compiled together.
    constant_inputs: None, or a list aligned with `models` of {input name: array} (see InferenceSession).
    extra_flags: compiler flags appended to pysofie's own (e.g. -mno-avx512f to build the AVX2 kernels on an
    AVX-512 machine).

    Returns a list aligned with `models`: an InferenceSession, or the exception that model raised.
    """
    from ..api import generate_code
    generated: list = []
    for k, m in enumerate(models):
        try:
            generated.append(generate_code(m, namespace=f"pysofie_batch_{k}", weights=weights,
                                           input_shapes=input_shapes,
                                           constant_inputs=constant_inputs[k] if constant_inputs else None))
        except Exception as e:  # reported per model
            generated.append(e)
    return sessions_for(generated, opt_level=opt_level, native=native, chunk=chunk, extra_flags=extra_flags)


def sessions_for(generated: list, *, opt_level=None, native=None, chunk: int = 64, extra_flags=()) -> list:
    """InferenceSessions for generated models (GeneratedModels with distinct namespaces, or exceptions, which
    are passed through), compiled together in libraries of at most `chunk` models."""
    from ..session import InferenceSession
    results: list[Optional[object]] = [None] * len(generated)

    def build(idx: list[int]) -> None:
        gms = [generated[i] for i in idx]
        try:
            lib = build_library(gms, opt_level=opt_level, native=native, extra_flags=extra_flags)
        except CompileError as e:
            if len(idx) == 1:
                results[idx[0]] = e
                return
            # the compiler names the headers with errors: build those alone, the rest together again
            bad = _culprits(str(e), {source_name(generated[i]): i for i in idx})
            if bad and len(bad) < len(idx):
                for i in bad:
                    build([i])
                build([i for i in idx if i not in bad])
                return
            half = len(idx) // 2
            build(idx[:half])
            build(idx[half:])
            return
        for i, gm in zip(idx, gms):
            try:
                results[i] = InferenceSession(None, _generated=gm, _library=lib)
            except PysofieError as e:
                results[i] = e

    ok = [i for i, g in enumerate(generated) if not isinstance(g, Exception)]
    for i, g in enumerate(generated):
        if isinstance(g, Exception):
            results[i] = g
    for s in range(0, len(ok), chunk):
        build(ok[s:s + chunk])
    return results
