r"""Weights: torchvision-format state dicts in, our checkpoint format out.

**torchvision's key names.** Our modules carry torchvision's attribute names, so a torchvision
``maskrcnn_resnet50_fpn`` state dict loads key for key -- except that torchvision renamed a few
keys over the years (its modules' ``_version = 2``; the COCO checkpoints still have the old
names). :data:`KEY_RENAMES` is the one table of old -> new names:

    old (torchvision < 0.13, the released .pth files)     new (torchvision >= 0.13, ours)
    rpn.head.conv.weight                                  rpn.head.conv.0.0.weight
    backbone.fpn.inner_blocks.0.weight                    backbone.fpn.inner_blocks.0.0.weight
    backbone.fpn.layer_blocks.0.weight                    backbone.fpn.layer_blocks.0.0.weight
    roi_heads.mask_head.mask_fcn1.weight                  roi_heads.mask_head.0.0.weight

and a BatchNorm's ``num_batches_tracked`` counter (saved by torch's BatchNorm2d, meaningless for
a frozen or group norm) is dropped. :func:`upgrade_torchvision_keys` applies both.

**Our checkpoint format.** A NumPy ``.npz`` of ``{name: array}`` (the state dict), plus one
``__meta__`` entry (a JSON string: format version, source), loadable with
``allow_pickle=False`` -- no pickled objects ever. Every write is atomic: the file is written to
a temporary name in the destination directory, flushed to disk, then renamed over the target
(``os.replace``), so a crash leaves either the old file or the new one, never half a file.
"""
import json
import os
import re
from collections import OrderedDict

import numpy as np

from .backend import as_numpy
from .files import atomic_write

__all__ = ["KEY_RENAMES", "upgrade_torchvision_keys", "to_numpy_state_dict", "save_state_dict",
           "load_state_dict_file", "save_weights", "load_weights", "convert_torchvision_checkpoint"]

FORMAT_VERSION = 1
_META_KEY = "__meta__"

# (pattern on the old key, replacement): one row per rename torchvision made
KEY_RENAMES = [
    # RPNHead: one conv -> Sequential of conv blocks (conv_depth)
    (re.compile(r"^(.*rpn\.head\.conv)\.(weight|bias)$"), r"\1.0.0.\2"),
    # FeaturePyramidNetwork: Conv2d -> Conv2dNormActivation
    (re.compile(r"^(.*fpn\.(?:inner_blocks|layer_blocks)\.\d+)\.(weight|bias)$"), r"\1.0.\2"),
    # MaskRCNNHeads: mask_fcn{i+1} -> {i}.0 (Conv2dNormActivation)
    (re.compile(r"^(.*mask_head)\.mask_fcn(\d+)\.(weight|bias)$"),
     lambda m: f"{m.group(1)}.{int(m.group(2)) - 1}.0.{m.group(3)}"),
]
_DROPPED = re.compile(r"(^|\.)num_batches_tracked$")


def _to_array(value, key):
    """A torch tensor (via ``.detach().cpu().numpy()``), Tensor or array -> NumPy array of real
    numbers (bool, int or float: a string or complex entry is refused, never cast)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):          # torch.Tensor, no torch import
        return _check_real(value.detach().cpu().numpy(), key)
    try:
        array = as_numpy(value)
    except Exception as e:  # noqa: BLE001 - report the key
        raise TypeError(f"state dict entry {key!r}: cannot convert {type(value).__name__} to an array") from e
    return _check_real(array, key)


def _check_real(array, key):
    if array.dtype.kind not in "biuf":
        raise TypeError(f"state dict entry {key!r} has dtype {array.dtype}: weights must be real "
                        f"numbers (bool, int or float)")
    return array


def to_numpy_state_dict(state_dict):
    """``{name: torch tensor | Tensor | array}`` -> OrderedDict ``{name: numpy array}``."""
    if not hasattr(state_dict, "items"):
        raise TypeError(f"state_dict must be a mapping of name -> array, got {type(state_dict).__name__}")
    return OrderedDict((str(k), _to_array(v, k)) for k, v in state_dict.items())


def upgrade_torchvision_keys(state_dict):
    """Rename old torchvision keys to the current names (:data:`KEY_RENAMES`) and drop
    ``num_batches_tracked``. Returns a new OrderedDict; keys already new pass through, so
    applying it twice changes nothing. Two keys that end up with the same name raise."""
    out = OrderedDict()
    for key, value in state_dict.items():
        if _DROPPED.search(key):
            continue
        new_key = key
        for pattern, replacement in KEY_RENAMES:
            new_key = pattern.sub(replacement, new_key)
        if new_key in out:
            raise ValueError(f"state dict has both {key!r} and another key that also maps to {new_key!r} "
                             f"(old and new torchvision names of the same weight)")
        out[new_key] = value
    return out


# ---- atomic .npz files ---------------------------------------------------------------------
def _atomic_savez(path, arrays):
    """Write ``arrays`` ({name: ndarray}) to ``path`` as an uncompressed .npz, atomically
    (:func:`minimrcnn.files.atomic_write`: temporary, fsync, umask mode, rename, directory fsync;
    stale temporaries of killed saves are removed)."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def save_state_dict(state_dict, path, meta=None):
    """Save ``{name: array}`` to ``path`` (.npz, atomic) with a ``__meta__`` JSON entry
    (``meta``: a dict of JSON values)."""
    arrays = to_numpy_state_dict(state_dict)
    if _META_KEY in arrays:
        raise ValueError(f"state dict key {_META_KEY!r} is reserved for the checkpoint's metadata")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    info = {"format": "minimrcnn", "version": FORMAT_VERSION, **(meta or {})}
    arrays[_META_KEY] = np.array(json.dumps(info))
    _atomic_savez(path, arrays)


def load_state_dict_file(path):
    """(state_dict, meta) from an .npz written by :func:`save_state_dict` (no unpickling).

    Refused with the path in the message: a file that is not an .npz (a .npy array, a torch
    .pth), an entry that is not real numbers (strings, complex), a ``__meta__`` that is not a
    JSON object."""
    path = os.fspath(path)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:     # a pickle (a .pth, an object array) or not a NumPy file at all
        with open(path, "rb") as f:
            pickled = f.read(1) == b"\x80"       # a pickle's protocol byte (an old-style .pth)
        what = ("it holds pickled objects, which minimrcnn never loads; a torchvision .pth converts "
                "with `python -m minimrcnn convert`" if pickled or "object arrays" in str(e)
                else "not a NumPy .npz file")
        raise ValueError(f"{path}: not a minimrcnn .npz checkpoint ({what})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an .npz checkpoint (it holds one array of shape "
                         f"{getattr(data, 'shape', '?')}: a .npy file?); save weights with "
                         f"minimrcnn.weights.save_weights")
    with data:
        state_dict = OrderedDict((k, _read_entry(data, k, path)) for k in data.files if k != _META_KEY)
        meta = _read_meta(data[_META_KEY], path) if _META_KEY in data.files else {}
    return state_dict, meta


def _read_entry(data, key, path):
    try:
        value = data[key]
    except ValueError as e:      # an object array: it would need unpickling
        raise ValueError(f"{path}: entry {key!r}: {e}") from None
    if not isinstance(value, np.ndarray):   # a zip member that is no .npy: a torch .pth, say
        raise ValueError(f"{path}: entry {key!r} is not a NumPy array (a torch .pth? convert it with "
                         f"python -m minimrcnn convert)")
    try:
        return _check_real(value, key)
    except TypeError as e:
        raise TypeError(f"{path}: {e}") from None


def _read_meta(entry, path):
    if entry.dtype.kind != "U" or entry.ndim != 0:
        raise ValueError(f"{path}: {_META_KEY} must be a JSON string, got an array of dtype "
                         f"{entry.dtype} and shape {entry.shape}")
    try:
        meta = json.loads(str(entry))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {_META_KEY} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: {_META_KEY} must be a JSON object, got {type(meta).__name__} "
                         f"{str(entry)[:80]}")
    return meta


def save_weights(model, path, meta=None):
    """Save ``model.state_dict()`` to ``path`` (.npz, atomic write)."""
    save_state_dict(model.state_dict(), path, meta)


def load_weights(model, path, strict=True):
    """Load an .npz checkpoint into ``model`` (old torchvision key names accepted); returns the
    checkpoint's metadata dict."""
    state_dict, meta = load_state_dict_file(path)
    model.load_state_dict(upgrade_torchvision_keys(state_dict), strict=strict)
    return meta


def convert_torchvision_checkpoint(pth_path, out_path):
    """Convert a torchvision ``.pth`` checkpoint (e.g. maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth)
    into our .npz format, with the keys upgraded to the current names. Needs torch (imported
    here only); the .pth is read with ``weights_only=True``. A state dict nested under "model"
    or "state_dict" is found. Returns the number of arrays written."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("converting a .pth checkpoint needs torch (pip install torch); "
                           "our .npz checkpoints load without it") from e
    try:
        checkpoint = torch.load(os.fspath(pth_path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for a file it cannot read
        raise ValueError(f"{pth_path}: not a torch checkpoint that torch.load(weights_only=True) "
                         f"can read ({type(e).__name__}: {e})") from e
    for key in ("model", "state_dict"):
        if isinstance(checkpoint, dict) and key in checkpoint and isinstance(checkpoint[key], dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(f"{pth_path}: expected a state dict (name -> tensor), got {type(checkpoint).__name__}")
    arrays = upgrade_torchvision_keys(to_numpy_state_dict(
        {k: v for k, v in checkpoint.items() if hasattr(v, "shape")}))
    save_state_dict(arrays, out_path, meta={"source": os.path.basename(os.fspath(pth_path))})
    return len(arrays)
