r"""Batches for training and evaluation, decoded in a background thread.

**Training order.** :class:`TrainLoader` turns a dataset of N images into an endless sequence
of batches, batch $i$ (iteration $i$) a function of ``(seed, i)`` alone:

1. with $B$ batches per epoch, iteration $i$ is batch $b = i \bmod B$ of epoch $e = \lfloor i / B \rfloor$;
2. epoch $e$ shuffles the image indices with a generator seeded by ``(seed, e)``;
3. aspect-ratio grouping (torchvision's ``GroupedBatchSampler`` with one split at 1): the
   shuffled indices are split into the images with $W / H < 1$ and those with $W / H \ge 1$, so
   that a batch's images pad to little more than their own size. Each group, in shuffled order,
   is cut into batches of ``batch_size``; a group's last, short batch is filled up with that
   group's first images of the epoch. $B = \sum_g \lceil N_g / \text{batch\_size} \rceil$ is
   therefore the same in every epoch;
4. the epoch's batches are put in an order drawn from the same generator;
5. image $j$ is flipped left to right in epoch $e$ when $u_{e,j} <$ ``flip_prob``, $u_{e,j}$ a
   uniform draw from a second generator seeded by ``(seed, e)``.

So ``batches(start_iter=k)`` yields exactly what an uninterrupted run yields from its k-th batch
on: a resumed training run sees the same data in the same order.

**Background decoding.** Batches are loaded (PNG decoding, mask decoding, flips) by one worker
thread into a queue of ``prefetch`` batches while the model computes on the previous one (NumPy
and Pillow release the GIL in their heavy loops). The iterator stops its thread when it is
closed (``close()``, the end of a ``with`` block, or garbage collection after a ``for`` loop's
``break``); an exception in the worker is raised in the consumer as a :class:`LoaderError`
naming the image, with the original as its ``__cause__``.
"""
import numbers
import queue
import threading

import numpy as np

from .transforms import hflip

__all__ = ["TrainLoader", "EvalLoader", "LoaderError"]


class LoaderError(RuntimeError):
    """Loading an image failed in the loader's worker thread; the message names the image id and
    the dataset index, ``__cause__`` is the original exception."""


_END = object()


class _ImageFailed(Exception):
    """Raised inside the worker by a load function: which image failed, and why."""

    def __init__(self, where, error):
        super().__init__(where)
        self.where, self.error = where, error


def _load_one(dataset, index, load, detail=""):
    """load(index), or _ImageFailed naming the image id and the dataset index."""
    try:
        return load(index)
    except Exception as e:
        raise _ImageFailed(f"loading image id {_image_id(dataset, index)} (dataset index {index}{detail})",
                           e) from e


class _Failure:
    def __init__(self, message, error):
        self.message, self.error = message, error


class _Prefetcher:
    """Iterator over ``load(step)`` for step = first, first + 1, ... (``last`` excluded; None:
    forever), run ``prefetch`` steps ahead in a daemon thread.

    The worker holds no reference to this object, so dropping the iterator runs ``__del__``,
    which stops the thread; ``close()`` does it at once and joins the thread.
    """

    def __init__(self, load, first, last, prefetch, name):
        # name: the loader's name, which starts every error message
        self._queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_work, name="minimrcnn-loader", daemon=True,
                                        args=(load, first, last, self._queue, self._stop, name))
        self._done = False
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():   # died without a word
                    self.close()
                    raise LoaderError("the loader's worker thread stopped unexpectedly") from None
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise LoaderError(item.message) from item.error
        return item

    def close(self):
        """Stop the worker thread (it finishes the item it is loading) and wait for it."""
        self._done = True
        self._stop.set()
        while True:                 # unblock a worker waiting to put into a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _work(load, first, last, out, stop, name):
    """The worker thread: put load(step) for each step into ``out`` until ``stop`` is set."""
    step = first
    while not stop.is_set() and (last is None or step < last):
        try:
            item = load(step)
        except _ImageFailed as e:       # raised in the consumer, never lost in the thread
            item = _Failure(f"{name} {e.where} failed: {type(e.error).__name__}: {e.error}", e.error)
        except BaseException as e:
            item = _Failure(f"{name} step {step} failed: {type(e).__name__}: {e}", e)
        _put(out, item, stop)
        if isinstance(item, _Failure):
            return
        step += 1
    _put(out, _END, stop)


def _put(out, item, stop):
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _check_loader_args(name, dataset, batch_size, prefetch):
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"{name}: dataset must support len() and ds[i], got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"{name}: the dataset is empty (0 images)")
    for arg, v in (("batch_size", batch_size), ("prefetch", prefetch)):
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: {arg} must be an int >= 1, got {v!r}")


def _image_id(dataset, index):
    try:
        return dataset.ids[index]
    except Exception:
        return "?"


class TrainLoader:
    """Shuffled, flipped, aspect-grouped training batches; batch i depends on (seed, i) only.

    ``TrainLoader(dataset, batch_size, seed=0, flip_prob=0.5, group_by_aspect=True, prefetch=2,
    transform=None)``: dataset as :class:`~minimrcnn.data.CocoDataset` (``ds[i]``, ``len``;
    ``image_info(i)`` for the grouping, ``keypoint_flip_map`` where it has keypoints);
    transform: an optional ``(image, target) -> (image, target)`` applied after the flip (e.g.
    :class:`~minimrcnn.data.transforms.Resize`).

    ``batches(start_iter=0)`` -> iterator of ``(images, targets)`` (lists of ``batch_size``
    (3, H, W) float32 arrays and target dicts) for iterations start_iter, start_iter + 1, ...
    forever; use it in a ``with`` block or ``close()`` it to stop the worker at once.
    ``indices(i)`` -> the ``[(dataset index, flipped), ...]`` of batch i (no loading).
    ``batches_per_epoch``: B. See the module docstring for the order.
    """

    def __init__(self, dataset, batch_size, seed=0, flip_prob=0.5, group_by_aspect=True, prefetch=2,
                 transform=None):
        _check_loader_args("TrainLoader", dataset, batch_size, prefetch)
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"TrainLoader: seed must be an int >= 0, got {seed!r}")
        if not isinstance(flip_prob, numbers.Real) or not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"TrainLoader: flip_prob must be in [0, 1], got {flip_prob!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"TrainLoader: transform must be callable (image, target) -> (image, target), "
                            f"got {transform!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.flip_prob = float(flip_prob)
        self.group_by_aspect = bool(group_by_aspect)
        self.prefetch = int(prefetch)
        self.transform = transform
        n = len(dataset)
        if self.group_by_aspect:
            if not hasattr(dataset, "image_info"):
                raise TypeError("TrainLoader: group_by_aspect=True needs dataset.image_info(i) (width and "
                                "height without decoding); pass group_by_aspect=False for this dataset")
            infos = [dataset.image_info(i) for i in range(n)]
            self._group = np.asarray([info["width"] >= info["height"] for info in infos], dtype=np.int64)
        else:
            self._group = np.zeros(n, dtype=np.int64)
        sizes = np.bincount(self._group, minlength=2)
        self.batches_per_epoch = int(sum(-(-int(s) // self.batch_size) for s in sizes if s))
        self._epoch_cache = (None, None, None)

    def _epoch(self, epoch):
        """(batches, flips) of one epoch: a list of B index arrays and an (N,) bool array."""
        cached_epoch, batches, flips = self._epoch_cache      # one read: safe across threads
        if cached_epoch == epoch:
            return batches, flips
        order_rng = np.random.default_rng([self.seed, epoch, 0])
        flip_rng = np.random.default_rng([self.seed, epoch, 1])
        perm = order_rng.permutation(len(self.dataset))
        batches = []
        for g in (0, 1):
            members = perm[self._group[perm] == g]          # this group, in shuffled order
            if members.size == 0:
                continue
            short = -members.size % self.batch_size        # fill the last batch from the start
            members = np.concatenate([members, np.resize(members, short)])
            batches.extend(members.reshape(-1, self.batch_size))
        batches = [batches[k] for k in order_rng.permutation(len(batches))]
        flips = flip_rng.random(len(self.dataset)) < self.flip_prob
        self._epoch_cache = (epoch, batches, flips)
        return batches, flips

    def indices(self, iteration):
        """[(dataset index, flipped), ...] of batch ``iteration`` (an int >= 0)."""
        if not isinstance(iteration, numbers.Integral) or isinstance(iteration, bool) or iteration < 0:
            raise ValueError(f"TrainLoader: iteration must be an int >= 0, got {iteration!r}")
        epoch, b = divmod(int(iteration), self.batches_per_epoch)
        batches, flips = self._epoch(epoch)
        return [(int(j), bool(flips[j])) for j in batches[b]]

    def load(self, index, flip):
        """(image, target) of dataset[index], flipped if ``flip``, then ``transform``."""
        image, target = self.dataset[index]
        if flip:
            image, target = hflip(image, target, getattr(self.dataset, "keypoint_flip_map", None))
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def _load_batch(self, iteration):
        images, targets = [], []
        for index, flip in self.indices(iteration):
            image, target = _load_one(self.dataset, index, lambda j: self.load(j, flip),
                                      f", iteration {iteration}")
            images.append(image)
            targets.append(target)
        return images, targets

    def batches(self, start_iter=0):
        """Iterator of (images, targets) for iterations start_iter, start_iter + 1, ... (forever)."""
        if not isinstance(start_iter, numbers.Integral) or isinstance(start_iter, bool) or start_iter < 0:
            raise ValueError(f"TrainLoader.batches: start_iter must be an int >= 0, got {start_iter!r}")
        return _Prefetcher(self._load_batch, int(start_iter), None, self.prefetch, "TrainLoader:")

    def __repr__(self):
        return (f"TrainLoader({len(self.dataset)} images, batch_size={self.batch_size}, seed={self.seed}, "
                f"flip_prob={self.flip_prob}, group_by_aspect={self.group_by_aspect}): "
                f"{self.batches_per_epoch} batches per epoch")


class EvalLoader:
    """The dataset in its own order, in batches (no shuffle, no flip), decoded in a thread.

    ``EvalLoader(dataset, batch_size=1, prefetch=2, transform=None, max_images=None)``;
    iterating yields ``(images, targets)`` for images 0..n-1 (n = ``max_images`` or all; the
    last batch may be shorter); ``len()`` is the number of batches.
    """

    def __init__(self, dataset, batch_size=1, prefetch=2, transform=None, max_images=None):
        _check_loader_args("EvalLoader", dataset, batch_size, prefetch)
        if max_images is not None and (not isinstance(max_images, numbers.Integral) or max_images < 1):
            raise ValueError(f"EvalLoader: max_images must be None or an int >= 1, got {max_images!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.prefetch = int(prefetch)
        self.transform = transform
        self.num_images = len(dataset) if max_images is None else min(int(max_images), len(dataset))

    def __len__(self):
        return -(-self.num_images // self.batch_size)

    def load(self, index):
        """(image, target) of dataset[index], then ``transform``."""
        image, target = self.dataset[index]
        if self.transform is not None:
            image, target = self.transform(image, target)
        return image, target

    def _load_batch(self, b):
        images, targets = [], []
        for index in range(b * self.batch_size, min((b + 1) * self.batch_size, self.num_images)):
            image, target = _load_one(self.dataset, index, self.load)
            images.append(image)
            targets.append(target)
        return images, targets

    def __iter__(self):
        return _Prefetcher(self._load_batch, 0, len(self), self.prefetch, "EvalLoader:")
