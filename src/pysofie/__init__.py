"""pysofie: trained models (ONNX, Keras, PyTorch) -> standalone C++ inference code, callable from Python."""
__version__ = "0.1.0"

from .errors import (CompileError, InvalidInputError, ModelLoadError, PysofieError, ShapeInferenceError,  # noqa: E402
                     UnsupportedOperatorError)
from .errors import GeneratedCodeError, InvalidModelError, WeightFileError  # noqa: E402
from .api import check, emit, load  # noqa: E402
from .session import InferenceSession, ModelMetadata, NodeArg  # noqa: E402
from .options import ExecutionMode, GraphOptimizationLevel, SessionOptions, get_available_providers  # noqa: E402
from .ortvalue import IOBinding, OrtValue  # noqa: E402
from .custom import custom_ops, register_custom_op, unregister_custom_op  # noqa: E402

__all__ = ["InferenceSession", "emit", "check", "load", "PysofieError", "ModelLoadError",
           "UnsupportedOperatorError", "ShapeInferenceError", "CompileError", "InvalidInputError", "__version__"]
__all__ += ["register_custom_op", "unregister_custom_op", "custom_ops"]
__all__ += ["SessionOptions", "GraphOptimizationLevel", "ExecutionMode", "get_available_providers", "OrtValue",
            "IOBinding", "ModelMetadata", "NodeArg"]
__all__ += ["InvalidModelError", "GeneratedCodeError", "WeightFileError"]
