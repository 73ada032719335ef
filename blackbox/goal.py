"""The goal region: where the attack wants the salient point to go.

The default follows the paper's protocol (Yoshida & Okuda): sum the clean saliency map over rows
into a column profile; its highest local maximum is the *peak*, its second-highest the *target*.
The goal is a full-height band of ``band_width`` x image width centred on the target column.

Strongly blurred models often give a profile with a single maximum. Then the *fallback* goal is a
band ``fallback_distance`` x width away from the peak, on the side with more room (clamped inside
the image). Crop-only targets give no map: there the peak is the salient point's column and the
fallback applies. ``Goal.source`` records which rule made the goal, so protocol and fallback images
can be told apart in the results.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy.signal import find_peaks

from targets import CropBox

GoalSource = Literal["protocol", "fallback", "user_box", "user_point"]


class GoalError(ValueError):
    """The requested goal cannot be used on this image."""


@dataclass(frozen=True)
class Goal:
    """A box ``(x0, y0, x1, y1)`` in image pixels (x1, y1 exclusive), with how it was chosen."""

    x0: float
    y0: float
    x1: float
    y1: float
    source: GoalSource
    peak_x: float  # the clean profile's peak column (the salient point's column without a map)
    target_x: float  # the column the attack pulls the peak towards

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def contains(self, point: tuple[float, float]) -> bool:
        x, y = point
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def shown_by(self, crop: CropBox, image_height: int) -> bool:
        """Whether ``crop`` shows the goal.

        A goal box must lie wholly inside the crop. A full-height band (the protocol's goals) is
        about columns only: no crop that cuts the height could ever hold it whole, so there the crop
        need only hold the band's columns.
        """
        if self.y0 <= 0 and self.y1 >= image_height:
            return crop.left <= self.x0 and self.x1 <= crop.right
        return crop.contains_box(self.box)

    def as_dict(self) -> dict:
        return asdict(self)


def column_profile(log_density: np.ndarray) -> np.ndarray:
    """Saliency summed over rows: one value per column (the paper's 1-D sequence)."""
    return np.exp(log_density.astype(np.float64)).sum(axis=0)


def profile_peak(log_density: np.ndarray) -> float:
    """The column of the profile's maximum: where the paper measures the peak."""
    return float(np.argmax(column_profile(log_density)))


def local_maxima(profile: np.ndarray) -> np.ndarray:
    """Columns of the profile's local maxima, highest first (plateaus count once)."""
    # A tiny prominence ignores float noise on flat stretches.
    peaks, _ = find_peaks(profile, prominence=1e-9 * float(profile.max()))
    return peaks[np.argsort(profile[peaks])[::-1]]


def _band(center_x: float, width: int, height: int, band_width: float) -> tuple[float, float, float, float]:
    half = max(1.0, band_width * width / 2)
    x0 = min(max(0.0, center_x - half), width - 2 * half)
    return (max(0.0, x0), 0.0, min(float(width), x0 + 2 * half), float(height))


def default_goal(
    *,
    width: int,
    height: int,
    log_density: np.ndarray | None,
    salient_point: tuple[float, float],
    band_width: float = 0.1,
    fallback_distance: float = 0.15,
) -> Goal:
    """The protocol goal if the profile has two maxima or more, else the documented fallback."""
    if log_density is not None:
        maxima = local_maxima(column_profile(log_density))
        peak_x = float(maxima[0]) if len(maxima) else profile_peak(log_density)
        if len(maxima) >= 2:
            target_x = float(maxima[1])
            return Goal(*_band(target_x, width, height, band_width), "protocol", peak_x, target_x)
    else:
        peak_x = float(salient_point[0])
    room_right = width - 1 - peak_x
    direction = 1.0 if room_right >= peak_x else -1.0
    target_x = float(np.clip(peak_x + direction * fallback_distance * width, 0, width - 1))
    return Goal(*_band(target_x, width, height, band_width), "fallback", peak_x, target_x)


def user_goal(
    *,
    width: int,
    height: int,
    peak_x: float,
    box: tuple[float, float, float, float] | None = None,
    point: tuple[float, float] | None = None,
    band_width: float = 0.1,
) -> Goal:
    """A goal the user gave: a box ``[x0, y0, x1, y1]`` or a point (a band-sized square around it)."""
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
        return Goal(x0, y0, x1, y1, "user_box", peak_x, (x0 + x1) / 2)
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
            x,
        )
    raise GoalError("user_goal needs a box or a point")
