from .dtypes import DType
from .graph import Graph, Node, Value
from .shapes import Dim, Sym, cpp_dim, dims_equal, is_static, numel, shape_symbols

__all__ = ["DType", "Graph", "Node", "Value", "Dim", "Sym", "cpp_dim", "dims_equal", "is_static", "numel",
           "shape_symbols"]
