"""Differentiable ops on Tensors, one family per file, with torch.nn.functional's signatures.

Importing this package also gives Tensor its operators (``+ - * / @ **``, indexing) and
methods (``.sum()``, ``.reshape()``, ...), and registers every op's gradient-check cases.
"""
from .elementwise import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .resize import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from . import _tensor_methods  # noqa: F401  (binds operators and methods onto Tensor)
