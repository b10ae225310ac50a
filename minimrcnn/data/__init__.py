"""Data: COCO files, your own images + masks, built-in synthetic sets, transforms, loaders.

    ds = CocoDataset(ann_file, image_dir)          ds[i] -> (image (3, H, W) float32, target dict)
    import_masks(image_dir, mask_dir, out_json)    folder of images + instance-id PNGs -> COCO json
    make_shapes(out_dir, n) / make_persons(...)    synthetic COCO json + PNGs (synthetic_data: cached)
    TrainLoader(ds, batch_size).batches(start)     shuffled, flipped, aspect-grouped, prefetched
    EvalLoader(ds, batch_size)                     the dataset in order, prefetched
    transforms: hflip, Resize, Compose, keypoint_flip_map
"""
from .coco import COCO_PERSON_KEYPOINTS, COCO_PERSON_SKELETON, CocoDataset, DatasetError  # noqa: F401
from .instance_masks import import_masks, parse_classes  # noqa: F401
from .loader import EvalLoader, LoaderError, TrainLoader  # noqa: F401
from .synthetic import SHAPE_CLASSES, default_cache_dir, make_persons, make_shapes, synthetic_data  # noqa: F401
from .transforms import Compose, Resize, hflip, keypoint_flip_map  # noqa: F401
from . import transforms  # noqa: F401

__all__ = ["CocoDataset", "DatasetError", "COCO_PERSON_KEYPOINTS", "COCO_PERSON_SKELETON",
           "import_masks", "parse_classes", "make_shapes", "make_persons", "synthetic_data",
           "SHAPE_CLASSES", "default_cache_dir", "TrainLoader", "EvalLoader", "LoaderError",
           "hflip", "Resize", "Compose", "keypoint_flip_map", "transforms"]
