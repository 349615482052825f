"""Element types known to pysofie, with their numpy, ONNX and C++ spellings."""
from __future__ import annotations

import enum

import ml_dtypes  # installed with onnx: numpy types for bfloat16, float8, int4... (what onnx.numpy_helper returns)
import numpy as np
from onnx import TensorProto


class DType(enum.Enum):
    FLOAT = ("float", np.float32, TensorProto.FLOAT, "tensor(float)")
    DOUBLE = ("double", np.float64, TensorProto.DOUBLE, "tensor(double)")
    INT64 = ("int64_t", np.int64, TensorProto.INT64, "tensor(int64)")
    INT32 = ("int32_t", np.int32, TensorProto.INT32, "tensor(int32)")
    INT16 = ("int16_t", np.int16, TensorProto.INT16, "tensor(int16)")
    INT8 = ("int8_t", np.int8, TensorProto.INT8, "tensor(int8)")
    UINT64 = ("uint64_t", np.uint64, TensorProto.UINT64, "tensor(uint64)")
    UINT32 = ("uint32_t", np.uint32, TensorProto.UINT32, "tensor(uint32)")
    UINT16 = ("uint16_t", np.uint16, TensorProto.UINT16, "tensor(uint16)")
    UINT8 = ("uint8_t", np.uint8, TensorProto.UINT8, "tensor(uint8)")
    BOOL = ("bool", np.bool_, TensorProto.BOOL, "tensor(bool)")
    # Low-precision types: stored in C++ as their bit patterns (one element per uint16_t / uint8_t; the 4-bit and
    # 2-bit types unpacked, one element per byte in its low bits, as ml_dtypes holds them in numpy). Only Cast,
    # CastLike and data movement compute on them (see backends/cpp/emitter.py LOWP_OPS).
    FLOAT16 = ("uint16_t", np.float16, TensorProto.FLOAT16, "tensor(float16)")
    BFLOAT16 = ("uint16_t", ml_dtypes.bfloat16, TensorProto.BFLOAT16, "tensor(bfloat16)")
    FLOAT8E4M3FN = ("uint8_t", ml_dtypes.float8_e4m3fn, TensorProto.FLOAT8E4M3FN, "tensor(float8e4m3fn)")
    FLOAT8E4M3FNUZ = ("uint8_t", ml_dtypes.float8_e4m3fnuz, TensorProto.FLOAT8E4M3FNUZ, "tensor(float8e4m3fnuz)")
    FLOAT8E5M2 = ("uint8_t", ml_dtypes.float8_e5m2, TensorProto.FLOAT8E5M2, "tensor(float8e5m2)")
    FLOAT8E5M2FNUZ = ("uint8_t", ml_dtypes.float8_e5m2fnuz, TensorProto.FLOAT8E5M2FNUZ, "tensor(float8e5m2fnuz)")
    FLOAT8E8M0 = ("uint8_t", ml_dtypes.float8_e8m0fnu, TensorProto.FLOAT8E8M0, "tensor(float8e8m0)")
    FLOAT4E2M1 = ("uint8_t", ml_dtypes.float4_e2m1fn, TensorProto.FLOAT4E2M1, "tensor(float4e2m1)")
    INT4 = ("uint8_t", ml_dtypes.int4, TensorProto.INT4, "tensor(int4)")
    UINT4 = ("uint8_t", ml_dtypes.uint4, TensorProto.UINT4, "tensor(uint4)")
    INT2 = ("uint8_t", ml_dtypes.int2, TensorProto.INT2, "tensor(int2)")
    UINT2 = ("uint8_t", ml_dtypes.uint2, TensorProto.UINT2, "tensor(uint2)")

    def __init__(self, ctype: str, np_type, onnx_code: int, ort_name: str):
        self.ctype = ctype
        self.np = np.dtype(np_type)
        self.onnx = onnx_code
        self.ort_name = ort_name

    @property
    def is_float(self) -> bool:
        """float or double: types the kernels compute on natively (the low-precision floats are not)."""
        return self in (DType.FLOAT, DType.DOUBLE)

    @property
    def is_int(self) -> bool:
        return not self.is_float and self is not DType.BOOL and not self.is_lowp

    @property
    def is_lowp(self) -> bool:
        """A low-precision type held as a bit pattern in C++ (float16, bfloat16, float8, float4, int4/uint4, int2/uint2)."""
        return self.name in _LOWP

    @property
    def bits(self) -> int:
        """Significant bits of one element (4 for int4/uint4/float4e2m1; otherwise 8 * itemsize)."""
        return 4 if self.name in ("INT4", "UINT4", "FLOAT4E2M1") else 2 if self.name in ("INT2", "UINT2") \
            else 8 * self.np.itemsize

    @property
    def storage_np(self) -> np.dtype:
        """numpy dtype of the C++ storage (the bit-pattern type for low-precision types)."""
        return np.dtype(np.uint16) if self.ctype == "uint16_t" and self.is_lowp else \
            np.dtype(np.uint8) if self.is_lowp else self.np

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @staticmethod
    def from_numpy(dt) -> "DType":
        dt = np.dtype(dt)
        for d in DType:
            if d.np == dt:
                return d
        raise TypeError(f"numpy dtype {dt} is not supported by pysofie")

    @staticmethod
    def from_onnx(code: int) -> "DType":
        for d in DType:
            if d.onnx == code:
                return d
        name = TensorProto.DataType.Name(code) if code in TensorProto.DataType.values() else str(code)
        raise TypeError(f"ONNX element type {name} is not supported by pysofie")

    def __repr__(self) -> str:
        return f"DType.{self.name}"


_LOWP = frozenset({"FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT8E8M0",
                   "FLOAT4E2M1", "INT4", "UINT4", "INT2", "UINT2"})
