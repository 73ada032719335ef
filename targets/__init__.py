"""The zoo of croppers behind one interface (:class:`Target`), and Twitter's crop policy."""

from targets._base import ALL_OUTPUTS, DifferentiableTarget, Output, Target
from targets._errors import NonFiniteOutputError, TargetQueryError
from targets._output import CropBox, TargetOutput
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_box, crop_boxes, estimate_point

__all__ = [
    "ALL_OUTPUTS",
    "DEFAULT_ASPECT_RATIOS",
    "CropBox",
    "DifferentiableTarget",
    "NonFiniteOutputError",
    "Output",
    "Target",
    "TargetOutput",
    "TargetQueryError",
    "crop_box",
    "crop_boxes",
    "estimate_point",
]
