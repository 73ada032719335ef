"""Protecting a region of an image against every cropper, after the platform's treatments.

:func:`protect` (``blackbox.protect``, ``python -m blackbox.protect``) is the entry point; the parts:
:mod:`.transforms` (the platform), :mod:`.ensemble` (the objective), :mod:`.search` (the EoT search),
:mod:`.output` (the file written back as it was), :mod:`.report` (report.md and thumbnails.png).
"""

from blackbox.protection._protect import (
    DEFAULT_CROPPERS,
    PROTECT_ASPECT_RATIOS,
    BoxTooLargeError,
    CropperUnavailableError,
    NothingToProtectError,
    ProtectResult,
    protect,
)
from blackbox.protection.ensemble import RULES, PairScore, aggregate, keep_region, pair_margin
from blackbox.protection.transforms import PlatformTransform, TransformRange

__all__ = [
    "DEFAULT_CROPPERS",
    "PROTECT_ASPECT_RATIOS",
    "RULES",
    "BoxTooLargeError",
    "CropperUnavailableError",
    "NothingToProtectError",
    "PairScore",
    "PlatformTransform",
    "ProtectResult",
    "TransformRange",
    "aggregate",
    "keep_region",
    "pair_margin",
    "protect",
]
