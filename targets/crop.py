"""Twitter's published crop policy: from a salient point to one crop box per aspect ratio.

The policy (twitter-research/image-crop-analysis, ``image_manipulation.py``): aspect ratios are
height/width. If the requested ratio is below the image's own H/W the crop keeps the full width and
cuts height, else it keeps the full height and cuts width. The cut side's window is centred on the
salient point and slid back inside the image when it would cross an edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from targets._output import CropBox

DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (0.56, 1.0, 1.14, 2.0)


def _window(center: float, length: int, limit: int) -> int:
    """Start of a ``length``-long window centred on ``center``, slid back inside ``[0, limit)``."""
    start = math.floor(center - length / 2)
    return max(0, min(start, limit - length))


def crop_box(width: int, height: int, salient_point: tuple[float, float], aspect_ratio: float) -> CropBox:
    """The crop Twitter's policy gives for one aspect ratio (``height / width`` of the crop)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not aspect_ratio > 0 or not math.isfinite(aspect_ratio):
        raise ValueError(f"aspect ratio must be a positive number (height/width), got {aspect_ratio}")
    x, y = salient_point
    if aspect_ratio < height / width:
        crop_h = max(1, min(height, math.floor(width * aspect_ratio)))
        return CropBox(0, _window(y, crop_h, height), width, crop_h, aspect_ratio)
    crop_w = max(1, min(width, math.floor(height / aspect_ratio)))
    return CropBox(_window(x, crop_w, width), 0, crop_w, height, aspect_ratio)


def crop_boxes(
    width: int,
    height: int,
    salient_point: tuple[float, float],
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
) -> tuple[CropBox, ...]:
    """One crop per aspect ratio, in the given order."""
    return tuple(crop_box(width, height, salient_point, r) for r in aspect_ratios)


def keeps_full_side(side: float, full: int) -> bool:
    """Whether a crop side of ``side`` px keeps the image's ``full`` px side: within 2 px or 1%.

    Real croppers round: a 638 px crop of a 640 px image does not cut the width, and reading it as
    a cut would drag an estimated salient point to the middle.
    """
    return side >= full - max(2.0, 0.01 * full)


def estimate_point(crops: Sequence[CropBox], width: int, height: int) -> tuple[float, float]:
    """The salient point implied by crops (the policy's inverse): each crop's centre on the side it cuts.

    Exact unless a window was slid back at an edge; a crop-only service gives nothing better.
    """
    xs = [c.left + c.width / 2 for c in crops if not keeps_full_side(c.width, width)]
    ys = [c.top + c.height / 2 for c in crops if not keeps_full_side(c.height, height)]
    return (float(np.mean(xs)) if xs else width / 2, float(np.mean(ys)) if ys else height / 2)
