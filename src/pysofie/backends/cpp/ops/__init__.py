"""C++ generators per operator family (imported explicitly: registration happens on import)."""
# one import per family
from . import control  # noqa: F401
from . import conv  # noqa: F401
from . import elementwise  # noqa: F401
from . import gemm  # noqa: F401
from . import norm  # noqa: F401
from . import pool  # noqa: F401
from . import index, reduce  # noqa: F401  (operator coverage families)
from . import recurrent  # noqa: F401
from . import image, loss, signal  # noqa: F401  (loss, signal and image families)
from . import shape  # noqa: F401
from . import cast  # noqa: F401  (Cast, CastLike and the low-precision types)
from . import transformer  # noqa: F401  (Attention, LinearAttention, RMSNormalization, RotaryEmbedding)
from . import dynamic  # noqa: F401  (output sizes decided by the data at run time: NonZero, ...)
from . import gnn  # noqa: F401  (GatherRows, SegmentReduce, SegmentIds: graph networks)
