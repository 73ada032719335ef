"""Twitter's published crop policy: from a salient point to one crop box per aspect ratio.

The policy (twitter-research/image-crop-analysis, ``image_manipulation.py``): aspect ratios are
height/width. If the requested ratio is below the image's own H/W the crop keeps the full width and
cuts height, else it keeps the full height and cuts width. The cut side's window is centred on the
salient point and slid back inside the image when it would cross an edge.

Reading crops back (:func:`estimate_point`, the crop-based success rules) treats a side that a crop
shortens by only a few pixels as uncut (:func:`is_cut`): real croppers round their sizes (a
"full-width" crop 638 px wide on a 640 px image), and such a sliver says nothing about where the
cropper looked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from targets._output import CropBox

DEFAULT_ASPECT_RATIOS: tuple[float, ...] = (0.56, 1.0, 1.14, 2.0)

# A crop cuts a side only if it removes more than this many pixels and this fraction of the side:
# less is a cropper's rounding (638 of 640 px, issue 16), not a choice of where to look.
MIN_CUT_PX = 2
MIN_CUT_FRACTION = 0.01


def _window(center: float, length: int, limit: int) -> int:
    """Start of a ``length``-long window centred on ``center``, slid back inside ``[0, limit)``."""
    start = math.floor(center - length / 2)
    return max(0, min(start, limit - length))


def crop_size(width: int, height: int, aspect_ratio: float) -> tuple[int, int]:
    """``(crop_width, crop_height)`` in pixels of the crop for one aspect ratio (``height / width``).

    Twitter's rule: a ratio below the image's own H/W keeps the full width and cuts the height to
    ``floor(width * ratio)``; otherwise the crop keeps the full height and cuts the width to
    ``floor(height / ratio)``. Both at least 1 px, at most the image's side. Raises ``ValueError``
    for a non-positive size or ratio.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not aspect_ratio > 0 or not math.isfinite(aspect_ratio):
        raise ValueError(f"aspect ratio must be a positive number (height/width), got {aspect_ratio}")
    if aspect_ratio < height / width:
        return width, max(1, min(height, math.floor(width * aspect_ratio)))
    return max(1, min(width, math.floor(height / aspect_ratio))), height


def crop_box(width: int, height: int, salient_point: tuple[float, float], aspect_ratio: float) -> CropBox:
    """The crop Twitter's policy gives for one aspect ratio (``height / width`` of the crop)."""
    crop_w, crop_h = crop_size(width, height, aspect_ratio)
    x, y = salient_point
    if crop_w == width:
        return CropBox(0, _window(y, crop_h, height), width, crop_h, aspect_ratio)
    return CropBox(_window(x, crop_w, width), 0, crop_w, height, aspect_ratio)


def crop_boxes(
    width: int,
    height: int,
    salient_point: tuple[float, float],
    aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
) -> tuple[CropBox, ...]:
    """One crop per aspect ratio, in the given order."""
    return tuple(crop_box(width, height, salient_point, r) for r in aspect_ratios)


def is_cut(length: float, full: int) -> bool:
    """Whether a crop side of ``length`` px really cuts an image side of ``full`` px.

    It must remove more than ``MIN_CUT_PX`` pixels and more than ``MIN_CUT_FRACTION`` of the side;
    a crop a few pixels short of the full side is a cropper's rounding and is read as the full side.
    """
    return full - length > max(MIN_CUT_PX, MIN_CUT_FRACTION * full)


def uncut(crop: CropBox, width: int, height: int) -> CropBox:
    """``crop`` with every side that :func:`is_cut` does not count as cut widened to the full side."""
    left, cw = (crop.left, crop.width) if is_cut(crop.width, width) else (0, width)
    top, ch = (crop.top, crop.height) if is_cut(crop.height, height) else (0, height)
    return CropBox(left, top, cw, ch, crop.aspect_ratio)


def estimate_point(crops: Sequence[CropBox], width: int, height: int) -> tuple[float, float]:
    """The salient point implied by crops (the policy's inverse): each crop's centre on the side it cuts.

    Exact unless a window was slid back at an edge; a crop-only service gives nothing better. Only
    sides that :func:`is_cut` counts as cut say anything; a side no crop cuts gives the image's middle.
    """
    xs = [c.left + c.width / 2 for c in crops if is_cut(c.width, width)]
    ys = [c.top + c.height / 2 for c in crops if is_cut(c.height, height)]
    return (float(np.mean(xs)) if xs else width / 2, float(np.mean(ys)) if ys else height / 2)
