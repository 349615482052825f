"""CUDA generators per operator family (imported explicitly: registration happens on import)."""
from . import conv  # noqa: F401
from . import elementwise  # noqa: F401
from . import gemm  # noqa: F401
from . import norm  # noqa: F401  (BatchNorm, LayerNorm, Softmax, pooling, reductions)
from . import shape  # noqa: F401  (views, Transpose, Concat, Slice, Gather, Cast)
from . import recurrent  # noqa: F401  (RNN, GRU, LSTM)
