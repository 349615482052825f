"""Element types known to pysofie, with their numpy, ONNX and C++ spellings."""
from __future__ import annotations

import enum

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

    def __init__(self, ctype: str, np_type, onnx_code: int, ort_name: str):
        self.ctype = ctype
        self.np = np.dtype(np_type)
        self.onnx = onnx_code
        self.ort_name = ort_name

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT, DType.DOUBLE)

    @property
    def is_int(self) -> bool:
        return not self.is_float and self is not DType.BOOL

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
