"""Weight files: SOFIE's text .dat and pysofie's checksummed binary .bin (formats in runtime/pysofie_runtime.h)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ...ir import DType
from .emitter import format_values

BIN_MAGIC = b"PYSOFIEW"


def dat_bytes(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    parts = []
    for name, arr in tensors:
        parts.append(f"tensor_{name} {arr.size}\n")
        vals = format_values(arr)
        for k in range(0, len(vals), 64):
            parts.append(" ".join(vals[k:k + 64]) + "\n")
    return "".join(parts).encode()


def bin_bytes(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    index = []
    data = bytearray()
    for name, arr in tensors:
        off = (len(data) + 63) // 64 * 64
        data.extend(b"\0" * (off - len(data)))
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        nb = name.encode()
        index.append(struct.pack("<I", len(nb)) + nb + struct.pack("<IQQ", DType.from_numpy(arr.dtype).onnx,
                                                                    arr.size, off))
        data.extend(raw)
    head = BIN_MAGIC + struct.pack("<IIQII", 1, len(tensors), len(data), zlib.crc32(bytes(data)) & 0xFFFFFFFF, 0)
    body = head + b"".join(index)
    pad = (len(body) + 63) // 64 * 64 - len(body)
    return body + b"\0" * pad + bytes(data)


def read_weights(path: str) -> dict[str, np.ndarray]:
    """Read a .dat or .bin weight file back (for tests and tools). Float values are exact. A .root file (SOFIE's
    ROOT weights) is read by root_weights.py (uproot, else ROOT)."""
    if str(path).endswith(".root"):
        from .root_weights import read_root_weights
        return read_root_weights(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(BIN_MAGIC):
        version, count, nbytes, crc, _ = struct.unpack_from("<IIQII", raw, 8)
        pos = 32
        entries = []
        for _ in range(count):
            (ln,) = struct.unpack_from("<I", raw, pos)
            name = raw[pos + 4:pos + 4 + ln].decode()
            dt, n, off = struct.unpack_from("<IQQ", raw, pos + 4 + ln)
            pos += 4 + ln + 20
            entries.append((name, DType.from_onnx(dt), n, off))
        start = (pos + 63) // 64 * 64
        data = raw[start:start + nbytes]
        if len(data) != nbytes or zlib.crc32(data) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: truncated or corrupted weight file")
        return {name: np.frombuffer(data, dt.np.newbyteorder("<"), n, off).astype(dt.np) for name, dt, n, off in entries}
    out = {}
    toks = raw.decode().split()
    i = 0
    while i < len(toks):
        name, n = toks[i][len("tensor_"):], int(toks[i + 1])
        out[name] = np.array([float(t) for t in toks[i + 2:i + 2 + n]], dtype=np.float64)
        i += 2 + n
    return out
