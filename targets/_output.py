"""What a target answers for one image: its salient point, its crops, and maybe its saliency map."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CropBox:
    """A crop in image pixels, ``[left, top, width, height]``, for one aspect ratio (height/width)."""

    left: int
    top: int
    width: int
    height: int
    aspect_ratio: float

    @property
    def right(self) -> int:
        return self.left + self.width

    @property
    def bottom(self) -> int:
        return self.top + self.height

    def contains_box(self, box: tuple[float, float, float, float]) -> bool:
        """Whether ``box = (x0, y0, x1, y1)`` lies wholly inside this crop."""
        x0, y0, x1, y1 = box
        return self.left <= x0 and self.top <= y0 and x1 <= self.right and y1 <= self.bottom

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.width, self.height]


@dataclass(frozen=True)
class TargetOutput:
    """One image's answer.

    ``salient_point`` is ``(x, y)`` in image pixels. ``crops`` has one box per configured aspect
    ratio, in the configured order. ``log_density`` is an ``(H, W)`` float64 array at image
    resolution whose ``exp`` sums to one, or ``None`` for targets that expose no map (most real
    services give only crops).
    """

    salient_point: tuple[float, float]
    crops: tuple[CropBox, ...]
    log_density: np.ndarray | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:  # ndarray fields need an explicit comparison
        if not isinstance(other, TargetOutput):
            return NotImplemented
        if self.salient_point != other.salient_point or self.crops != other.crops:
            return False
        if self.log_density is None or other.log_density is None:
            return self.log_density is other.log_density
        return bool(np.array_equal(self.log_density, other.log_density))

    __hash__ = None  # type: ignore[assignment]
