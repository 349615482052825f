"""Weight files: exact round trip of every value, and clear errors for missing, truncated, corrupted or
mismatching files (a std::runtime_error in C++ naming the file, surfaced as a Python exception)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pysofie
from pysofie.backends.cpp.weights import bin_bytes, dat_bytes, read_weights
from tests.util import ort

SPECIAL = np.array([0.0, -0.0, 1.0, -1.5, np.pi, 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, -3.4028235e38,
                    np.inf, -np.inf, 0.1, 1 / 3, 16777217.0], dtype=np.float32)


@pytest.mark.parametrize("fmt", ["dat", "bin"])
def test_python_round_trip_is_exact(tmp_path, fmt):
    rng = np.random.default_rng(0)
    vals = np.concatenate([SPECIAL, rng.standard_normal(1000).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 1000)])
    vals = vals.astype(np.float32)
    f = tmp_path / f"w.{fmt}"
    f.write_bytes((dat_bytes if fmt == "dat" else bin_bytes)([("a", vals), ("b", np.arange(3, dtype=np.float32))]))
    back = read_weights(str(f))
    np.testing.assert_array_equal(back["a"].astype(np.float32), vals)
    assert np.array_equal(np.signbit(back["a"].astype(np.float32)), np.signbit(vals))


def _model(weight: np.ndarray, idx: np.ndarray):
    """y = (x + W)[idx] along axis 0: a float and an int64 weight read at run time."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(weight.shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [helper.make_node("Add", ["x", "W"], ["s"]), helper.make_node("Gather", ["s", "idx"], ["y"], axis=0)]
    g = helper.make_graph(nodes, "wmodel", [x], [y], [numpy_helper.from_array(weight, "W"),
                                                      numpy_helper.from_array(idx, "idx")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("fmt", ["dat", "bin", "embed"])
def test_values_survive_every_format_exactly(fmt):
    W = SPECIAL.reshape(5, 3)
    idx = np.array([4, 0, 2, 2], dtype=np.int64)
    m = _model(W, idx)
    x = np.zeros((5, 3), np.float32)
    got = pysofie.InferenceSession(m, weights=fmt).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, W[idx])
    np.testing.assert_array_equal(got, ort(m, {"x": x})[0])


@pytest.fixture
def emitted(tmp_path):
    W = np.arange(15, dtype=np.float32).reshape(5, 3)
    m = _model(W, np.array([1, 3], np.int64))
    out = {}
    for fmt in ("dat", "bin"):
        out[fmt] = pysofie.emit(m, str(tmp_path / fmt), name="wmodel", weights=fmt)["weights"]
    return m, out


@pytest.mark.parametrize("fmt", ["dat", "bin"])
@pytest.mark.parametrize("say_format", [True, False])
def test_weight_file_given_explicitly(emitted, fmt, say_format):
    """weight_file with its format, or without it (then the file's extension decides: a .dat from pysofie.emit
    works although the session's own default is bin)."""
    m, files = emitted
    sess = pysofie.InferenceSession(m, weight_file=files[fmt], **({"weights": fmt} if say_format else {}))
    x = np.ones((5, 3), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], (x + np.arange(15).reshape(5, 3))[[1, 3]])


@pytest.mark.parametrize("fmt", ["dat", "bin"])
def test_missing_weight_file(emitted, tmp_path, fmt):
    m, _ = emitted
    missing = str(tmp_path / f"nope.{fmt}")
    with pytest.raises(pysofie.PysofieError, match="cannot open weight file .*nope"):
        pysofie.InferenceSession(m, weights=fmt, weight_file=missing)


@pytest.mark.parametrize("fmt", ["dat", "bin"])
def test_truncated_weight_file(emitted, tmp_path, fmt):
    m, files = emitted
    data = open(files[fmt], "rb").read()
    bad = tmp_path / f"trunc.{fmt}"
    bad.write_bytes(data[: len(data) - 20])
    with pytest.raises(pysofie.PysofieError, match=r"trunc\.%s.*(truncated|ends before|bad value)" % fmt):
        pysofie.InferenceSession(m, weights=fmt, weight_file=str(bad))


def test_corrupted_binary_weight_file(emitted, tmp_path):
    m, files = emitted
    data = bytearray(open(files["bin"], "rb").read())
    data[-5] ^= 0x40
    bad = tmp_path / "flip.bin"
    bad.write_bytes(bytes(data))
    with pytest.raises(pysofie.PysofieError, match=r"flip\.bin.*corrupted"):
        pysofie.InferenceSession(m, weights="bin", weight_file=str(bad))


@pytest.mark.parametrize("fmt", ["dat", "bin"])
def test_weight_file_of_another_model(emitted, tmp_path, fmt):
    m, _ = emitted
    other = onnx.load_from_string(_model(np.ones((5, 4), np.float32), np.array([0], np.int64)).SerializeToString())
    other_file = pysofie.emit(other, str(tmp_path / "other"), name="other", weights=fmt)["weights"]
    with pytest.raises(pysofie.PysofieError, match="other"):
        pysofie.InferenceSession(m, weights=fmt, weight_file=other_file)


def test_binary_file_that_is_not_a_weight_file(emitted, tmp_path):
    m, _ = emitted
    bad = tmp_path / "text.bin"
    bad.write_text("hello " * 20)
    with pytest.raises(pysofie.PysofieError, match="not a pysofie binary weight file"):
        pysofie.InferenceSession(m, weights="bin", weight_file=str(bad))




# -- damaged files: every one rejected by the Python reader and by the generated C++ with a message naming the file

def _bin_fields(data: bytes):
    """(index entries [(pos of dtype field, name)], start of data) of a version-2 .bin."""
    import struct
    count = struct.unpack_from("<I", data, 12)[0]
    pos, entries = 32, []
    for _ in range(count):
        ln = struct.unpack_from("<I", data, pos)[0]
        entries.append((pos + 4 + ln, data[pos + 4:pos + 4 + ln].decode()))
        pos += 4 + ln + 20
    return entries, (pos + 63) // 64 * 64


def _reseal(data: bytearray) -> bytes:
    """Recompute the CRC so that a deliberate change reaches the bounds checks behind it."""
    import struct
    import zlib
    struct.pack_into("<I", data, 24, zlib.crc32(bytes(data[32:])) & 0xFFFFFFFF)
    return bytes(data)


def _damaged_bins(good: bytes) -> dict[str, tuple[bytes, str]]:
    import struct
    entries, start = _bin_fields(good)
    (w_at, w_name), (i_at, i_name) = entries
    out = {}
    d = bytearray(good)
    struct.pack_into("<Q", d, 16, 2 ** 64 - 8)  # data byte count near 2^64: must not wrap the size check
    out["huge_nbytes"] = (_reseal(d), "truncated or corrupted")
    d = bytearray(good)
    struct.pack_into("<Q", d, w_at + 12, 2 ** 64 - 16)  # offset near 2^64
    out["huge_offset"] = (_reseal(d), f"'{w_name}' lies outside")
    d = bytearray(good)
    struct.pack_into("<Q", d, i_at + 12, struct.unpack_from("<Q", d, w_at + 12)[0])  # points at the other tensor
    out["overlap"] = (_reseal(d), "overlaps")
    d = bytearray(good)
    struct.pack_into("<Q", d, i_at + 12, 8)  # unflipped CRC: the index is covered too
    out["index_flip"] = (bytes(d), "checksum")
    d = bytearray(good)
    struct.pack_into("<I", d, 12, 2 ** 32 - 1)
    out["huge_count"] = (_reseal(d), "tensor count")
    d = bytearray(good)
    struct.pack_into("<I", d, 8, 1)
    out["version1"] = (bytes(d), "version 1.*regenerate")
    out["trailing"] = (good + b"\0" * 64, "truncated or corrupted")
    return out


def _damaged_dats(good: bytes) -> dict[str, tuple[bytes, str]]:
    body = good[:good.rindex(b"#pysofie")]
    lines = body.decode().splitlines()
    vals = lines[1].split()
    out = {}
    out["overflow"] = ("\n".join([lines[0], " ".join(["1e999"] + vals[1:])] + lines[2:]) + "\n", "bad value \\('1e999'\\)")
    out["int_range"] = ("\n".join(lines[:3] + ["99999999999999999999 1"]) + "\n", "bad value")
    out["infinity_word"] = ("\n".join([lines[0], " ".join(["infinity"] + vals[1:])] + lines[2:]) + "\n", "bad value")
    flipped = bytearray(good)
    flipped[len(lines[0]) + 1] ^= 0x01  # one digit changes: still a number, but the checksum sees it
    out["digit_flip"] = (bytes(flipped), "checksum")
    return {k: (v.encode() if isinstance(v, str) else v, m) for k, (v, m) in out.items()}


@pytest.mark.parametrize("fmt", ["dat", "bin"])
def test_damaged_weight_files_are_rejected(emitted, tmp_path, fmt):
    from pysofie.errors import WeightFileError
    m, files = emitted
    good = open(files[fmt], "rb").read()
    cases = _damaged_bins(good) if fmt == "bin" else _damaged_dats(good)
    for case, (data, msg) in cases.items():
        f = tmp_path / f"{case}.{fmt}"
        f.write_bytes(data)
        if case != "int_range":  # the Python reader does not know which tensors hold integers
            with pytest.raises(WeightFileError, match=msg):
                read_weights(str(f))
        with pytest.raises(WeightFileError, match=rf"{case}\.{fmt}.*" + msg.split(".*")[0]):
            pysofie.InferenceSession(m, weights=fmt, weight_file=str(f))


def test_dat_reads_non_finite_tokens_and_files_without_checksum(tmp_path):
    """inf/-inf/nan are explicit tokens; a file written by SOFIE (no checksum line) is still read."""
    W = np.array([[np.inf, -np.inf, np.nan], [1, 2, 3], [4, 5, 6], [7, 8, 9], [0, 0, 0]], np.float32)
    m = _model(W, np.array([0, 1], np.int64))
    path = pysofie.emit(m, str(tmp_path), name="nf", weights="dat")["weights"]
    text = open(path).read()
    assert "inf -inf nan" in text and text.rstrip().splitlines()[-1].startswith("#pysofie-crc32 ")
    x = np.zeros((5, 3), np.float32)
    for data in (text, text[:text.rindex("#pysofie")]):
        f = tmp_path / "w.dat"
        f.write_text(data)
        back = read_weights(str(f))["W"].astype(np.float32).reshape(5, 3)
        np.testing.assert_array_equal(back, W)
        got = pysofie.InferenceSession(m, weights="dat", weight_file=str(f)).run(None, {"x": x})[0]
        np.testing.assert_array_equal(got, ort(m, {"x": x})[0])
