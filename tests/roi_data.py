"""The RoI test set shared by the torchvision parity and the GPU tests of the RoI ops."""
import numpy as np


def roi_test_data(seed=0):
    """A (2, 6, 15, 19) float64 feature map and 40 RoIs (K, 5) [batch, x1, y1, x2, y2] in image
    pixels (use spatial_scale 0.25): random boxes partly outside, plus four edge cases."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 6, 15, 19))
    k = 40
    size = rng.uniform(0, 50, (k, 2))
    x1 = rng.uniform(-20, 76, k)
    y1 = rng.uniform(-20, 60, k)
    rois = np.stack([rng.integers(0, 2, k), x1, y1, x1 + size[:, 0], y1 + size[:, 1]], 1)
    rois[0] = [1, 8.0, 8.0, 8.0, 8.0]                  # empty
    rois[1] = [0, 30.25, 20.5, 30.75, 20.625]          # sub-pixel
    rois[2] = [0, -70.0, -50.0, -30.0, -10.0]          # outside
    rois[3] = [1, 0.0, 0.0, 76.0, 60.0]                # the whole image (scale 0.25)
    return x, rois
