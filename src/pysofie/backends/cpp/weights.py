"""Weight files: SOFIE's text .dat and pysofie's checksummed binary .bin (formats in runtime/pysofie_runtime.h)."""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ...errors import WeightFileError
from ...ir import DType
from .emitter import format_values

BIN_MAGIC = b"PYSOFIEW"
BIN_VERSION = 2  # version 1 had no checksum over the index
DAT_CRC_TAG = b"#pysofie-crc32 "
_FLOAT_TOKENS = {"inf": np.inf, "+inf": np.inf, "-inf": -np.inf, "nan": np.nan, "-nan": np.nan}


def dat_bytes(tensors: list[tuple[str, np.ndarray]]) -> bytes:
    """SOFIE's text format, plus a last line with the CRC-32 of everything before it (SOFIE's readers stop after
    the last tensor and never read it). Non-finite floats are written as the tokens inf, -inf and nan."""
    parts = []
    for name, arr in tensors:
        parts.append(f"tensor_{name} {arr.size}\n")
        vals = format_values(arr)
        for k in range(0, len(vals), 64):
            parts.append(" ".join(vals[k:k + 64]) + "\n")
    body = "".join(parts).encode()
    return body + DAT_CRC_TAG + b"%08x\n" % (zlib.crc32(body) & 0xFFFFFFFF)


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
    body = b"".join(index)
    body += b"\0" * ((32 + len(body) + 63) // 64 * 64 - 32 - len(body)) + bytes(data)
    head = BIN_MAGIC + struct.pack("<IIQII", BIN_VERSION, len(tensors), len(data), zlib.crc32(body) & 0xFFFFFFFF, 0)
    return head + body


def read_weights(path: str) -> dict[str, np.ndarray]:
    """Read a .dat or .bin weight file back (for tests and tools). Float values are exact. A damaged file raises
    WeightFileError naming the file (and the tensor, where one is concerned). A .root file (SOFIE's ROOT weights)
    is read by root_weights.py (uproot, else ROOT)."""
    if str(path).endswith(".root"):
        from .root_weights import read_root_weights
        return read_root_weights(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise WeightFileError(f"cannot open weight file '{path}' ({e.strerror})") from None
    if raw.startswith(BIN_MAGIC):
        return _read_bin(path, raw)
    return _read_dat(path, raw)


def _read_bin(path: str, raw: bytes) -> dict[str, np.ndarray]:
    def bad(msg: str) -> WeightFileError:
        return WeightFileError(f"weight file '{path}' {msg}")
    if len(raw) < 32:
        raise bad("is truncated (no complete header)")
    version, count, nbytes, crc, _ = struct.unpack_from("<IIQII", raw, 8)
    if version == 1:
        raise bad("has format version 1, written by an older pysofie: regenerate it")
    if version != BIN_VERSION:
        raise bad(f"has unknown version {version}")
    if count > (len(raw) - 32) // 24:
        raise bad(f"is corrupted (tensor count {count} does not fit in the file)")
    pos = 32
    entries = []
    for t in range(count):
        if len(raw) - pos < 4:
            raise bad(f"is truncated or corrupted (index entry {t})")
        (ln,) = struct.unpack_from("<I", raw, pos)
        if ln > len(raw) - pos - 4 - 20:
            raise bad(f"is truncated or corrupted (index entry {t})")
        name = raw[pos + 4:pos + 4 + ln].decode("utf-8", "replace")
        dt, n, off = struct.unpack_from("<IQQ", raw, pos + 4 + ln)
        pos += 4 + ln + 20
        entries.append((name, dt, n, off))
    start = (pos + 63) // 64 * 64
    if start > len(raw) or len(raw) - start != nbytes:
        raise bad(f"is truncated or corrupted ({len(raw)} bytes, its header promises {nbytes} bytes of data "
                  f"after {start})")
    if zlib.crc32(raw[32:]) & 0xFFFFFFFF != crc:
        raise bad("is corrupted (checksum mismatch)")
    data = raw[start:]
    out: dict[str, np.ndarray] = {}
    spans = []
    for name, code, n, off in entries:
        try:
            dt = DType.from_onnx(code)
        except TypeError:
            raise bad(f": tensor '{name}' has unknown element type {code}") from None
        size = dt.np.itemsize
        if off > nbytes or n > (nbytes - off) // size:  # no sum or product that could wrap
            raise bad(f": tensor '{name}' lies outside the data")
        spans.append((off, off + n * size, name))
        out[name] = np.frombuffer(data, dt.np.newbyteorder("<"), n, off).astype(dt.np)
    spans.sort()
    for (a0, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1 and b1 > b0 and a1 > a0:
            raise bad(f": tensor '{bn}' overlaps tensor '{an}' (corrupted file)")
    return out


def _read_dat(path: str, raw: bytes) -> dict[str, np.ndarray]:
    def bad(msg: str) -> WeightFileError:
        return WeightFileError(f"weight file '{path}' {msg}")
    body = raw
    stripped = raw.rstrip(b"\r\n ")
    line = stripped.rfind(b"\n") + 1
    if stripped[line:].startswith(DAT_CRC_TAG):
        body = raw[:line]
        hexd = stripped[line + len(DAT_CRC_TAG):]
        if len(hexd) != 8 or int(hexd, 16) != zlib.crc32(body) & 0xFFFFFFFF:
            raise bad("is corrupted (checksum mismatch)")
    try:
        toks = body.decode("ascii").split()
    except (UnicodeDecodeError, ValueError):
        raise bad("is not a text weight file (bytes that are not ASCII)") from None
    out = {}
    i = 0
    while i < len(toks):
        if toks[i].startswith("#"):
            raise bad("is truncated or corrupted (damaged checksum line)")
        if not toks[i].startswith("tensor_") or i + 1 >= len(toks) or not toks[i + 1].isdigit():
            raise bad(f"holds '{toks[i][:40]}' where a line 'tensor_<name> <length>' was expected")
        name, n = toks[i][len("tensor_"):], int(toks[i + 1])
        vals = toks[i + 2:i + 2 + n]
        if len(vals) != n:
            raise bad(f": tensor '{name}' is truncated ({len(vals)} of {n} values)")
        arr = np.empty(n, np.float64)
        for k, t in enumerate(vals):
            v = _FLOAT_TOKENS.get(t)
            if v is None:
                try:
                    v = float(t)
                except ValueError:
                    v = None
                if v is None or not np.isfinite(v) or t.lower().startswith(("0x", "-0x", "+0x")):
                    raise bad(f": tensor '{name}' has a bad value ('{t[:40]}') at index {k}")
            arr[k] = v
        out[name] = arr
        i += 2 + n
    return out
