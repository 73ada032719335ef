"""The zoo of croppers behind one interface (:class:`Target`), and Twitter's crop policy.

``targets.load("twitter")`` builds a zoo target by name (:func:`names` lists them);
``targets.FunctionTarget(my_function)`` makes one of a plain function; a target declares
what it gives (:attr:`Target.capabilities`) and :func:`require` checks that against what an attack
needs. Every error a user can act on is a :class:`UserError`. Nothing here imports ``blackbox``.
"""

from targets._base import ALL_OUTPUTS, BestSearch, DifferentiableTarget, Output, Target
from targets._capabilities import Capability, MissingCapabilityError, describe, require
from targets._errors import ConfigError, NonFiniteOutputError, TargetQueryError, UserError
from targets._output import CropBox, TargetOutput
from targets._zoo import UnknownChoiceError, load, names
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_box, crop_boxes, estimate_point
from targets.function import CropperFunction, FunctionTarget

__all__ = [
    "ALL_OUTPUTS",
    "DEFAULT_ASPECT_RATIOS",
    "BestSearch",
    "Capability",
    "ConfigError",
    "CropBox",
    "CropperFunction",
    "DifferentiableTarget",
    "FunctionTarget",
    "MissingCapabilityError",
    "NonFiniteOutputError",
    "Output",
    "Target",
    "TargetOutput",
    "TargetQueryError",
    "UnknownChoiceError",
    "UserError",
    "crop_box",
    "crop_boxes",
    "describe",
    "estimate_point",
    "load",
    "names",
    "require",
]
