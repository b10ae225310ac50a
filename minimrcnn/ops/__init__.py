"""Detection ops: boxes, anchors, NMS, RoIAlign / RoIPool / RoIWarp, pasting masks.

Each kernel op runs on NumPy arrays through a Cython kernel and on CuPy arrays through a CUDA
kernel (both found by minimrcnn._ext), with a plain NumPy reference beside it for reading and
testing. Their argument checks live in ops/checks.py.
"""
from .boxes import *  # noqa: F401,F403
from .anchors import *  # noqa: F401,F403
from .nms import *  # noqa: F401,F403
from .roi_align import *  # noqa: F401,F403
from .roi_pool import *  # noqa: F401,F403
from .roi_warp import *  # noqa: F401,F403
from .masks import *  # noqa: F401,F403
