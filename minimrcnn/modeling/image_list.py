"""ImageList: a batch of images of different sizes, zero-padded into one tensor.

The backbone needs one (N, 3, Hp, Wp) array, but the images of a batch differ in size after the
resize (shorter side 800, longer side at most 1333). The transform pads each image at the bottom
and right to a common size (a multiple of 32) and remembers each image's size before padding:

    images.tensors       # (N, 3, Hp, Wp) Tensor, padded batch
    images.image_sizes   # [(h_0, w_0), ..., (h_{N-1}, w_{N-1})], h_i <= Hp, w_i <= Wp

The anchors are laid out on the padded size; proposals are clipped to each image's own size.
Same fields as ``torchvision.models.detection.image_list.ImageList``.
"""
from ..autograd import Tensor
from ..checks import is_int

__all__ = ["ImageList"]


class ImageList:
    """A padded image batch and the size of every image before padding.

    tensors: Tensor (or array) of shape (N, C, Hp, Wp); image_sizes: N pairs (h, w) of ints with
    0 < h <= Hp and 0 < w <= Wp.
    """

    def __init__(self, tensors, image_sizes):
        if not isinstance(tensors, Tensor):
            if not hasattr(tensors, "shape") or not hasattr(tensors, "dtype"):
                raise TypeError(f"ImageList: tensors must be a Tensor or an array of shape (N, C, H, W), "
                                f"got {type(tensors).__name__}")
            tensors = Tensor(tensors)
        if tensors.ndim != 4:
            raise ValueError(f"ImageList: tensors must have shape (N, C, H, W), got shape {tuple(tensors.shape)}")
        n, _, hp, wp = tensors.shape
        try:
            sizes = [tuple(s) for s in image_sizes]
        except TypeError:
            raise ValueError(f"ImageList: image_sizes must be a list of (h, w) pairs, got {image_sizes!r}") from None
        if len(sizes) != n:
            raise ValueError(f"ImageList: image_sizes has {len(sizes)} entries but the batch has {n} images")
        checked = []
        for i, size in enumerate(sizes):
            ok = len(size) == 2 and all(is_int(v) for v in size)
            if not ok or not (0 < size[0] <= hp and 0 < size[1] <= wp):
                raise ValueError(f"ImageList: image_sizes[{i}] = {size!r} must be (h, w) integers with "
                                 f"0 < h <= {hp} and 0 < w <= {wp} (the padded size)")
            checked.append((int(size[0]), int(size[1])))
        self.tensors = tensors          # (N, C, Hp, Wp)
        self.image_sizes = checked      # N x (h, w)

    def to(self, device):
        """The same batch with ``tensors`` on ``device`` ('cpu' or 'cuda')."""
        return ImageList(self.tensors.to(device), self.image_sizes)

    def __len__(self):
        return len(self.image_sizes)

    def __repr__(self):
        return f"ImageList(tensors shape={tuple(self.tensors.shape)}, image_sizes={self.image_sizes})"
