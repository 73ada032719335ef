"""The goal region: where the attack wants the salient point to go.

The default follows the paper's protocol (Yoshida & Okuda): sum the clean saliency map over rows
into a column profile; its highest local maximum is the *peak*, its second-highest the *target*.
The goal is a full-height band of ``band_width`` x image width centred on the target column.

The protocol works along the axis the crops cut. On a landscape image the crops cut columns (some
keep the full width, others cut it), and the goal is that column band. On an image where *every*
crop keeps the full width and cuts rows (a tall image), a column band would be "shown" by every
crop before and after any attack; there the same protocol runs along rows: a row profile, and a
full-width band of ``band_width`` x image height (``axis="y"``, see :func:`goal_axis`).

Strongly blurred models often give a profile with a single maximum. Then the *fallback* goal is a
band ``fallback_distance`` x the extent away from the peak, on the side with more room (clamped
inside the image). Crop-only targets give no map: there the goal is the band just *beyond the
narrowest clean crop* (what that crop hides now). The same band replaces a protocol or fallback goal
that every clean crop already shows (:class:`blackbox.core.goal_rule.GoalRule`), so every picture
whose crops cut it gets a goal some clean crop leaves out. ``Goal.source`` records which rule made
the goal, so the kinds of image can be told apart in the results.

Edges, decided once: a goal box is *closed*, ``x0 <= x <= x1`` and ``y0 <= y <= y1``. A point
exactly on an edge is inside (a cropper whose salient point only takes grid-cell centres lands on
band edges often), and the map pixels the margin counts as inside are those whose index lies in the
closed box (:func:`goal_slices`), so a map's argmax is in the goal exactly when the margin is > 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy.signal import find_peaks

from targets import CropBox, UserError
from targets.crop import is_cut, uncut

GoalSource = Literal["protocol", "fallback", "beyond_crop", "user_box", "user_point"]
Axis = Literal["x", "y"]


class GoalError(UserError, ValueError):
    """The requested goal cannot be used on this image."""


@dataclass(frozen=True)
class Goal:
    """A closed box ``[x0, x1] x [y0, y1]`` in image pixels, with how it was chosen.

    ``axis`` is the axis the protocol worked along: ``"x"`` (columns, the paper's) or ``"y"`` (rows,
    for images whose crops all keep the full width). ``peak_x`` and ``target_x`` are positions
    along that axis: columns for ``"x"``, rows for ``"y"`` (the names are kept so that older
    results read back).
    """

    x0: float
    y0: float
    x1: float
    y1: float
    source: GoalSource
    peak_x: float  # the clean profile's peak along the axis (the salient point's without a map)
    target_x: float  # the position along the axis the attack pulls the peak towards
    axis: Axis = "x"

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def contains(self, point: tuple[float, float]) -> bool:
        """Whether ``point = (x, y)`` lies in the closed box (edges included, see module doc)."""
        x, y = point
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def shown_by(self, crop: CropBox, image_height: int, image_width: int | None = None) -> bool:
        """Whether ``crop`` shows the goal.

        A goal box must lie wholly inside the crop. A full-height band (the protocol's column goals)
        is about columns only: no crop that cuts the height could ever hold it whole, so there the
        crop need only hold the band's columns. A full-width band (row goals, ``image_width``
        given) is about rows only, likewise. With ``image_width`` given, a crop side a few pixels
        short of the image's is read as the full side first (a cropper's rounding,
        :func:`targets.crop.uncut`).
        """
        if image_width is not None:
            crop = uncut(crop, image_width, image_height)
        if self.y0 <= 0 and self.y1 >= image_height:
            return crop.left <= self.x0 and self.x1 <= crop.right
        if image_width is not None and self.x0 <= 0 and self.x1 >= image_width:
            return crop.top <= self.y0 and self.y1 <= crop.bottom
        return crop.contains_box(self.box)

    def extent(self, width: int, height: int) -> int:
        """The image's size along the goal's axis (what shifts are a percentage of)."""
        return width if self.axis == "x" else height

    def as_dict(self) -> dict:
        return asdict(self)


def goal_slices(goal: Goal, height: int, width: int) -> tuple[slice, slice]:
    """Row and column slices of the map pixels inside the closed goal box (at least one each)."""
    x0, x1 = max(0, math.ceil(goal.x0)), min(width - 1, math.floor(goal.x1))
    y0, y1 = max(0, math.ceil(goal.y0)), min(height - 1, math.floor(goal.y1))
    # A box narrower than a pixel, between two indices, keeps the pixel it overlaps.
    x1, y1 = max(x1, min(x0, width - 1)), max(y1, min(y0, height - 1))
    x0, y0 = min(x0, x1), min(y0, y1)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def goal_axis(crops: Sequence[CropBox], width: int, height: int) -> Axis:
    """``"y"`` if every crop keeps the full width and one cuts rows (a tall image), else ``"x"``."""
    if not crops:
        return "x"
    keep_width = all(not is_cut(c.width, width) for c in crops)  # within rounding (crop.py)
    cut_rows = any(is_cut(c.height, height) for c in crops)
    return "y" if keep_width and cut_rows else "x"


def column_profile(log_density: np.ndarray) -> np.ndarray:
    """Saliency summed over rows: one value per column (the paper's 1-D sequence)."""
    return np.exp(log_density.astype(np.float64)).sum(axis=0)


def axis_profile(log_density: np.ndarray, axis: Axis = "x") -> np.ndarray:
    """The 1-D profile along ``axis``: per column (``"x"``) or per row (``"y"``)."""
    return np.exp(log_density.astype(np.float64)).sum(axis=0 if axis == "x" else 1)


def profile_peak(log_density: np.ndarray, axis: Axis = "x") -> float:
    """The position of the profile's maximum along ``axis``: where the paper measures the peak."""
    return float(np.argmax(axis_profile(log_density, axis)))


def peak_along(log_density: np.ndarray | None, salient_point: tuple[float, float], axis: Axis) -> float:
    """The peak along ``axis``: the profile's maximum with a map, else the salient point's coordinate."""
    if log_density is not None:
        return profile_peak(log_density, axis)
    return float(salient_point[0 if axis == "x" else 1])


def local_maxima(profile: np.ndarray) -> np.ndarray:
    """Columns of the profile's local maxima, highest first (plateaus count once)."""
    # A tiny prominence ignores float noise on flat stretches.
    peaks, _ = find_peaks(profile, prominence=1e-9 * float(profile.max()))
    return peaks[np.argsort(profile[peaks])[::-1]]


def _band(
    center: float, width: int, height: int, band_width: float, axis: Axis = "x"
) -> tuple[float, float, float, float]:
    extent = width if axis == "x" else height
    half = max(1.0, band_width * extent / 2)
    low = min(max(0.0, center - half), extent - 2 * half)
    low, high = max(0.0, low), min(float(extent), low + 2 * half)
    return (low, 0.0, high, float(height)) if axis == "x" else (0.0, low, float(width), high)


def _beyond_narrowest_crop(
    crops: Sequence[CropBox], width: int, height: int, band_width: float, axis: Axis
) -> float | None:
    """The centre of a band just outside the narrowest crop cutting ``axis``; None if none fits."""
    extent = width if axis == "x" else height
    spans = [
        (c.left, c.right) if axis == "x" else (c.top, c.bottom)
        for c in crops
        if is_cut(c.width if axis == "x" else c.height, extent)
    ]
    if not spans:
        return None
    start, end = min(spans, key=lambda span: span[1] - span[0])
    half = max(1.0, band_width * extent / 2)
    # One pixel clear of the crop: goal boxes are closed, so a shared edge would count as shown.
    room_before, room_after = start - 1, extent - end - 1
    if max(room_before, room_after) < 2 * half:
        return None
    return end + 1 + half if room_after >= room_before else start - 1 - half


def beyond_crop_goal(
    *, crops: Sequence[CropBox], width: int, height: int, peak: float, band_width: float, axis: Axis
) -> Goal | None:
    """The band just beyond the narrowest clean crop cutting ``axis`` (source ``beyond_crop``).

    What that crop hides now, one pixel clear of it, on the side with more room; ``None`` when no
    crop cuts ``axis`` or no band fits beside the crop. ``peak`` is the clean peak along ``axis``.
    """
    beyond = _beyond_narrowest_crop(crops, width, height, band_width, axis)
    if beyond is None:
        return None
    return Goal(*_band(beyond, width, height, band_width, axis), "beyond_crop", peak, beyond, axis)


def default_goal(
    *,
    width: int,
    height: int,
    log_density: np.ndarray | None,
    salient_point: tuple[float, float],
    band_width: float = 0.1,
    fallback_distance: float = 0.15,
    axis: Axis = "x",
    crops: Sequence[CropBox] = (),
) -> Goal:
    """The protocol goal if the profile along ``axis`` has two maxima or more, else the fallback.

    ``axis="y"`` (from :func:`goal_axis`) runs the protocol along rows: the band is full-width and
    ``band_width`` x the height tall. A target without a map (crops, perhaps a point) has no
    profile: given its clean ``crops``, the goal is the band just beyond the narrowest crop that
    cuts along ``axis``, on the side with more room (source ``beyond_crop``): what that crop hides
    now and would show after moving by one band. A band ``fallback_distance`` from the point
    usually lies inside every clean crop, and such a goal can never be a success.
    """
    extent = width if axis == "x" else height
    if log_density is not None:
        maxima = local_maxima(axis_profile(log_density, axis))
        peak = float(maxima[0]) if len(maxima) else profile_peak(log_density, axis)
        if len(maxima) >= 2:
            target = float(maxima[1])
            return Goal(*_band(target, width, height, band_width, axis), "protocol", peak, target, axis)
    else:
        peak = float(salient_point[0 if axis == "x" else 1])
        beyond = beyond_crop_goal(
            crops=crops, width=width, height=height, peak=peak, band_width=band_width, axis=axis
        )
        if beyond is not None:
            return beyond
    room_after = extent - 1 - peak
    direction = 1.0 if room_after >= peak else -1.0
    target = float(np.clip(peak + direction * fallback_distance * extent, 0, extent - 1))
    return Goal(*_band(target, width, height, band_width, axis), "fallback", peak, target, axis)


def user_goal(
    *,
    width: int,
    height: int,
    peak_x: float,
    box: tuple[float, float, float, float] | None = None,
    point: tuple[float, float] | None = None,
    band_width: float = 0.1,
    axis: Axis = "x",
) -> Goal:
    """A goal the user gave: a box ``[x0, y0, x1, y1]`` or a point (a band-sized square around it).

    ``peak_x`` is the clean peak along ``axis``; the goal's target is its centre along that axis.
    """
    if box is not None:
        if len(box) != 4:
            raise GoalError(f"goal.box must be [x0, y0, x1, y1], got {list(box)}")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (x0 < x1 and y0 < y1):
            raise GoalError(f"goal.box must have x0 < x1 and y0 < y1, got {[x0, y0, x1, y1]}")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise GoalError(
                f"goal.box {[x0, y0, x1, y1]} is outside the {width}x{height} working image "
                "(coordinates are in working-resolution pixels)"
            )
        centre = (x0 + x1) / 2 if axis == "x" else (y0 + y1) / 2
        return Goal(x0, y0, x1, y1, "user_box", peak_x, centre, axis)
    if point is not None:
        if len(point) != 2:
            raise GoalError(f"goal.point must be [x, y], got {list(point)}")
        x, y = (float(v) for v in point)
        if not (0 <= x < width and 0 <= y < height):
            raise GoalError(
                f"goal.point {[x, y]} is outside the {width}x{height} working image "
                "(coordinates are in working-resolution pixels)"
            )
        half = max(1.0, band_width * width / 2)
        return Goal(
            max(0.0, x - half),
            max(0.0, y - half),
            min(float(width), x + half),
            min(float(height), y + half),
            "user_point",
            peak_x,
            x if axis == "x" else y,
            axis,
        )
    raise GoalError("user_goal needs a box or a point")
