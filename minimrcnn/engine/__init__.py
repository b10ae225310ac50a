"""Training and evaluation: the evaluator (COCOeval) here; the trainer joins it."""
from .evaluator import (IOU_TYPES, STAT_NAMES, coco_evaluate, evaluate, format_per_class,
                        predictions_to_coco, write_json_atomic)

__all__ = ["evaluate", "predictions_to_coco", "coco_evaluate", "write_json_atomic", "format_per_class",
           "IOU_TYPES", "STAT_NAMES"]
