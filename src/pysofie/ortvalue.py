"""OrtValue and IOBinding as onnxruntime spells them, for CPU memory (the only device pysofie runs on)."""
from __future__ import annotations

import ctypes
from typing import Optional, Sequence

import numpy as np

from .errors import InvalidInputError
from .ir.dtypes import DType


def _dtype_of(element_type) -> np.dtype:
    """numpy dtype from a numpy type or an ONNX TensorProto element type (int), as onnxruntime accepts."""
    if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, bool):
        try:
            return np.dtype(DType.from_onnx(int(element_type)).np)
        except Exception:
            raise InvalidInputError(f"element type {element_type} is not a supported ONNX tensor type") from None
    try:
        return np.dtype(element_type)
    except TypeError:
        raise InvalidInputError(f"element type {element_type!r} is not a numpy type") from None


def _check_device(device_type) -> None:
    if str(device_type).lower() != "cpu":
        raise InvalidInputError(f"device '{device_type}' is not available: pysofie runs on the CPU "
                                "(device_type='cpu')")


def _from_pointer(ptr: int, element_type, shape) -> np.ndarray:
    """A numpy view of caller-owned memory (no copy), like onnxruntime's buffer_ptr bindings."""
    dt = _dtype_of(element_type)
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise InvalidInputError(f"shape {list(shape)} has a negative size")
    if not isinstance(ptr, (int, np.integer)) or int(ptr) == 0:
        raise InvalidInputError(f"buffer_ptr must be a non-null address (an int), got {ptr!r}")
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    buf = (ctypes.c_char * max(n, 1)).from_address(int(ptr))
    return np.frombuffer(buf, dtype=dt, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)


class OrtValue:
    """A tensor in CPU memory. ``ortvalue_from_numpy`` shares the array's memory, as onnxruntime does on the
    CPU; ``numpy()`` returns a view of it."""

    def __init__(self, array: np.ndarray):
        self._array = array

    @classmethod
    def ortvalue_from_numpy(cls, numpy_obj, device_type: str = "cpu", device_id: int = 0, vendor_id: int = -1):
        _check_device(device_type)
        a = np.asarray(numpy_obj)
        if not a.flags.c_contiguous:
            a = np.ascontiguousarray(a)
        return cls(a)

    @classmethod
    def ortvalue_from_shape_and_type(cls, shape: Sequence[int], element_type, device_type: str = "cpu",
                                     device_id: int = 0, vendor_id: int = -1):
        _check_device(device_type)
        return cls(np.zeros(tuple(int(d) for d in shape), _dtype_of(element_type)))

    def numpy(self) -> np.ndarray:
        return self._array

    def __array__(self, dtype=None, copy=None):
        a = self._array
        if dtype is not None:
            a = a.astype(dtype, copy=False)
        return a.copy() if copy else a

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def data_type(self) -> str:
        return DType.from_numpy(self._array.dtype).ort_name

    def element_type(self) -> int:
        return int(DType.from_numpy(self._array.dtype).onnx)

    def data_ptr(self) -> int:
        return int(self._array.ctypes.data)

    def device_name(self) -> str:
        return "cpu"

    def tensor_size_in_bytes(self) -> int:
        return int(self._array.nbytes)

    def has_value(self) -> bool:
        return True

    def is_tensor(self) -> bool:
        return True

    def is_sparse_tensor(self) -> bool:
        return False

    def is_tensor_sequence(self) -> bool:
        return False

    def update_inplace(self, data) -> None:
        data = np.asarray(data)
        if data.shape != self._array.shape or data.dtype != self._array.dtype:
            raise InvalidInputError(f"update_inplace: got {data.dtype} {list(data.shape)}, the value holds "
                                    f"{self._array.dtype} {list(self._array.shape)}")
        self._array[...] = data

    def __repr__(self) -> str:
        return f"OrtValue({self.data_type()}, shape={self.shape()})"


class IOBinding:
    """Inputs and outputs bound ahead of ``session.run_with_iobinding(binding)``. An output bound to caller
    memory (``buffer_ptr``, or an OrtValue) is written there in place; other bound outputs are allocated by the
    run. Outputs come back in the order they were bound."""

    def __init__(self, session):
        self._session = session
        self._inputs: dict[str, np.ndarray] = {}
        self._outputs: dict[str, Optional[np.ndarray]] = {}  # name -> caller memory, or None
        self._results: list[np.ndarray] = []

    def _input_name(self, name: str) -> str:
        if name not in self._session._in_index:
            raise InvalidInputError(f"model '{self._session._gm.name}' has no input '{name}' "
                                    f"(inputs: {', '.join(self._session._in_index)})")
        return name

    def bind_cpu_input(self, name: str, arr_on_cpu) -> None:
        self._inputs[self._input_name(name)] = arr_on_cpu  # read when the run starts, as onnxruntime does

    def bind_input(self, name: str, device_type, device_id, element_type, shape, buffer_ptr) -> None:
        _check_device(device_type)
        self._inputs[self._input_name(name)] = _from_pointer(buffer_ptr, element_type, shape)

    def bind_ortvalue_input(self, name: str, ortvalue: OrtValue) -> None:
        self._inputs[self._input_name(name)] = ortvalue.numpy()

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0, element_type=None,
                    shape=None, buffer_ptr=None) -> None:
        _check_device(device_type)
        if buffer_ptr is None:
            self._outputs[name] = None
            return
        if element_type is None or shape is None:
            raise ValueError("`element_type` and `shape` are to be provided if pre-allocated memory is provided")
        self._outputs[name] = _from_pointer(buffer_ptr, element_type, shape)

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        self._outputs[name] = ortvalue.numpy()

    def synchronize_inputs(self) -> None:
        pass  # CPU memory: nothing to wait for

    def synchronize_outputs(self) -> None:
        pass

    def get_outputs(self) -> list[OrtValue]:
        return [OrtValue(a) for a in self._results]

    def get_outputs_as_ortvaluevector(self) -> list[OrtValue]:
        return self.get_outputs()

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        return [a.copy() for a in self._results]

    def clear_binding_inputs(self) -> None:
        self._inputs.clear()

    def clear_binding_outputs(self) -> None:
        self._outputs.clear()
        self._results = []
