"""Detection ops: boxes, anchors, NMS, RoIAlign / RoIPool / RoIWarp.

Each op runs on NumPy arrays through a Cython kernel (minimrcnn._ext) and on CuPy arrays through
a CUDA kernel (ext/*.cu), with a plain NumPy reference beside it for reading and testing.
"""
from .boxes import *  # noqa: F401,F403
from .anchors import *  # noqa: F401,F403
from .nms import *  # noqa: F401,F403
from .roi_align import *  # noqa: F401,F403
from .roi_pool import *  # noqa: F401,F403
from .roi_warp import *  # noqa: F401,F403
