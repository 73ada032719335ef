"""``target=faces``: focal points from OpenCV face detection, else corner features; crops centred on them.

What open-source thumbnail services do for a "smart" crop when their detectors are on (thumbor's
``face_detector`` then ``feature_detector``, ``thumbor/detectors/``), here in process with the
OpenCV wheel (``opencv-python-headless``), whose Haar cascade files ship inside it
(``cv2.data.haarcascades``):

1. **faces**: a Viola-Jones Haar cascade (``haarcascade_frontalface_alt.xml``, thumbor's default) on the
   8-bit grey image (Pillow's ``L``, ITU-R 601 luma), ``detectMultiScale`` with scale factor 1.2,
   4 neighbours and a smallest face of ``max(20, min(W, H) // 15)`` px. Each face is a focal point at
   its centre (moved up by ``hair_offset`` = 12% of its height, unless that leaves the image),
   weighed by its area.
2. **corners**, only when no face is found: ``cv2.goodFeaturesToTrack`` (Shi-Tomasi) with at most 20
   corners of quality >= 4% of the strongest, 1 px apart; each a focal point of weight 1.
3. neither: the image's centre.

The salient point is the focal points' weighted centre of mass (floor division of the weighted sums
as thumbor does); the crops follow Twitter's policy around it (:func:`targets.crop.crop_boxes`;
thumbor rounds the window's start where the policy floors it: a pixel at most). Crops and the point,
no map. Images arrive as float RGB in [0, 1] and are read as the 8-bit pixels an uploaded PNG of them
decodes to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from targets._base import Output, Target
from targets._opencv import load_cv2
from targets._output import TargetOutput
from targets._protocol import to_uint8
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_boxes

__all__ = ["FaceFocus", "FocalPoint", "opencv_version"]

ORIGINS = ("face", "corner", "centre")


def opencv_version() -> str:
    """The version of the OpenCV that answers, e.g. ``"4.11.0"``."""
    return str(load_cv2().__version__)


@dataclass(frozen=True)
class FocalPoint:
    """One detection: ``(x, y)`` in whole pixels, its weight, and what found it (``face``, ``corner``,
    ``centre``)."""

    x: int
    y: int
    weight: float
    origin: str


class FaceFocus(Target):
    """Faces, else corners, else the centre: their weighted centre is the point the crops centre on.

    Args:
        cascade: a cascade file name inside ``cv2.data.haarcascades`` or a path to one.
        scale_factor, min_neighbors: ``detectMultiScale``'s (thumbor: 1.2 and 4).
        min_face: the smallest face side in pixels (thumbor: 20), raised to ``min(W, H) //
            min_face_divisor`` on large images (thumbor: 15).
        hair_offset: faces' focal points move up by this fraction of their height (thumbor: 0.12).
        max_corners, quality_level, min_distance: ``goodFeaturesToTrack``'s (thumbor: 20, 0.04, 1).
        aspect_ratios: heights/widths of the crops.

    Raises ``ValueError`` for a cascade file that is missing or not a cascade, or a bad number.
    """

    name = "faces"

    def __init__(
        self,
        *,
        cascade: str = "haarcascade_frontalface_alt.xml",
        scale_factor: float = 1.2,
        min_neighbors: int = 4,
        min_face: int = 20,
        min_face_divisor: int = 15,
        hair_offset: float = 0.12,
        max_corners: int = 20,
        quality_level: float = 0.04,
        min_distance: float = 1.0,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        cv2 = load_cv2()
        if not scale_factor > 1:
            raise ValueError(f"scale_factor must be > 1 (each pyramid step's scale), got {scale_factor!r}")
        for key, value, least in (
            ("min_neighbors", min_neighbors, 0),
            ("min_face", min_face, 1),
            ("min_face_divisor", min_face_divisor, 1),
            ("max_corners", max_corners, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{key} must be a whole number >= {least}, got {value!r}")
        if not 0 < quality_level <= 1:
            raise ValueError(f"quality_level must be in (0, 1], got {quality_level!r}")
        if not 0 <= hair_offset < 1 or not min_distance >= 0:
            raise ValueError(
                f"hair_offset must be in [0, 1) and min_distance >= 0, got {hair_offset!r}, {min_distance!r}"
            )
        path = Path(cascade) if Path(cascade).is_absolute() else Path(cv2.data.haarcascades) / cascade
        if not path.is_file():
            shipped = sorted(p.name for p in Path(cv2.data.haarcascades).glob("haarcascade_*.xml"))
            raise ValueError(
                f"cascade: no file {path}; give a path or one of the cascades OpenCV ships: "
                + ", ".join(shipped)
            )
        try:
            self._cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError) as error:  # OpenCV raises from inside the constructor
            raise ValueError(f"cascade: {path} is not a Haar cascade OpenCV can read ({error})") from None
        if self._cascade.empty():
            raise ValueError(f"cascade: {path} is not a Haar cascade OpenCV can read")
        self.cascade = cascade
        self.scale_factor, self.min_neighbors = float(scale_factor), min_neighbors
        self.min_face, self.min_face_divisor = min_face, min_face_divisor
        self.hair_offset = float(hair_offset)
        self.max_corners, self.quality_level = max_corners, float(quality_level)
        self.min_distance = float(min_distance)
        self._cv2 = cv2

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.POINT, Output.CROPS})

    def focal_points(self, image: np.ndarray) -> list[FocalPoint]:
        """The detections for one ``(H, W, 3)`` float RGB image in [0, 1] (never empty)."""
        grey = np.asarray(Image.fromarray(to_uint8(image), "RGB").convert("L"))
        height, width = grey.shape
        side = max(self.min_face, min(width, height) // self.min_face_divisor)
        faces = self._cascade.detectMultiScale(
            grey, self.scale_factor, self.min_neighbors, minSize=(side, side)
        )
        points = []
        for left, top, w, h in (tuple(int(v) for v in face) for face in faces):
            shift = 0.0 if top - h * self.hair_offset < 0 else -h * self.hair_offset
            points.append(FocalPoint(left + w // 2, int(top + shift + h // 2), float(w * h), "face"))
        if points:
            return points
        corners = self._cv2.goodFeaturesToTrack(
            grey,
            maxCorners=self.max_corners,
            qualityLevel=self.quality_level,
            minDistance=self.min_distance,
            useHarrisDetector=False,
        )
        if corners is not None:
            return [FocalPoint(int(x), int(y), 1.0, "corner") for x, y in corners.reshape(-1, 2)]
        return [FocalPoint(width // 2, height // 2, 1.0, "centre")]

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        results = []
        for image in images:
            height, width = image.shape[:2]
            points = self.focal_points(image)
            total = sum(p.weight for p in points)
            x = sum(p.x * p.weight for p in points) // total
            y = sum(p.y * p.weight for p in points) // total
            point = (float(min(x, width - 1)), float(min(y, height - 1)))
            results.append(TargetOutput(point, crop_boxes(width, height, point, self.aspect_ratios)))
        return results
