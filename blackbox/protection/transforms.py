"""What the platform does to an upload before its cropper sees it: a resize, then JPEG re-encoding.

A :class:`PlatformTransform` is one such treatment: the long side resized to at most ``long_side``
px (never enlarged; Pillow's antialiased bicubic, as most image servers shrink), then the pixels
encoded as JPEG at ``quality`` (Pillow/libjpeg, 4:2:0 chroma subsampling, Pillow's default) and
decoded again. :class:`TransformRange` is the range of treatments to survive (the ``transforms.*``
settings: JPEG quality 75-95 and a long side of 1200-4096 px by default, what photo platforms are
documented or observed to serve) and the treatments drawn from it:

* :meth:`TransformRange.corners`: the range's extreme treatments (lowest and highest quality at the
  smallest and largest size), the ones the report measures;
* :meth:`TransformRange.search_samples`: the fixed treatments the search averages over (Expectation
  over Transformation, Athalye et al., ICML 2018, with a fixed sample so that comparing two
  candidates compares the same treatments): the harshest corner first.

:meth:`PlatformTransform.at_working_scale` carries a treatment to the working copy: the same JPEG
quality, and the same *relative* shrink (a 4000 px original served at 1200 px is shrunk to 30%; its
640 px working copy is shrunk only when 30% of the original is less than the working copy).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from targets import ConfigError

__all__ = ["PlatformTransform", "TransformRange"]


@dataclass(frozen=True, kw_only=True)
class PlatformTransform:
    """Resize the long side to at most ``long_side`` px, then JPEG at ``quality`` (1-100).

    ``long_side=None`` keeps the size; ``quality=None`` skips the JPEG step.
    """

    quality: int | None
    long_side: int | None

    @property
    def name(self) -> str:
        """``jpeg75@1200`` (JPEG quality 75 after a resize to 1200 px), ``jpeg95``, ``resize1200``."""
        parts = [] if self.quality is None else [f"jpeg{self.quality}"]
        if self.long_side is not None:
            parts.append(f"@{self.long_side}" if parts else f"resize{self.long_side}")
        return "".join(parts) or "none"

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after the resize: the long side at most ``long_side``, aspect kept."""
        long = max(width, height)
        if self.long_side is None or long <= self.long_side:
            return width, height
        factor = self.long_side / long
        return max(1, round(width * factor)), max(1, round(height * factor))

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 in, the served ``(H', W', 3)`` uint8 out."""
        image = Image.fromarray(pixels, "RGB")
        size = self.size_for(image.width, image.height)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
        if self.quality is not None:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(self.quality))
            buffer.seek(0)
            with Image.open(buffer) as decoded:
                image = decoded.convert("RGB")
        return np.asarray(image, dtype=np.uint8)

    def at_working_scale(
        self, original_size: tuple[int, int], working_size: tuple[int, int]
    ) -> PlatformTransform:
        """This treatment as applied to the working copy (module doc): same quality, same relative shrink."""
        if self.long_side is None:
            return self
        factor = min(1.0, self.long_side / max(original_size))
        working_long = max(working_size)
        target = math.floor(max(original_size) * factor)
        return PlatformTransform(quality=self.quality, long_side=None if target >= working_long else target)


@dataclass(frozen=True, kw_only=True)
class TransformRange:
    """The platform treatments to survive: JPEG ``qualities`` and resize ``long_sides`` ranges.

    Args:
        qualities: ``(lowest, highest)`` JPEG quality, 1-100 (default 75-95), or ``()`` for no JPEG.
        long_sides: ``(smallest, largest)`` served long side in px (default 1200-4096), or ``()``
            for no resize.
        search_samples: how many treatments the search scores each candidate after (>= 1).

    Raises:
        ConfigError: a range that is not one or two numbers in order, a quality outside 1-100, a
            side under 16 px, or ``search_samples`` < 1.
    """

    qualities: Sequence[int] = (75, 95)
    long_sides: Sequence[int] = (1200, 4096)
    samples: int = 2

    def __post_init__(self) -> None:
        for key, values, low, high in (
            ("transforms.jpeg_quality", self.qualities, 1, 100),
            ("transforms.long_side", self.long_sides, 16, 1 << 16),
        ):
            values = tuple(int(v) for v in values)
            if len(values) > 2 or any(not low <= v <= high for v in values) or list(values) != sorted(values):
                raise ConfigError(
                    f"{key} must be [lowest, highest] (or one value, or [] for none) with values in "
                    f"{low}-{high}, got {list(values)}"
                )
        if int(self.samples) < 1:
            raise ConfigError(f"transforms.search_samples must be >= 1, got {self.samples}")
        object.__setattr__(self, "qualities", tuple(int(v) for v in self.qualities))
        object.__setattr__(self, "long_sides", tuple(int(v) for v in self.long_sides))

    def corners(self, original_size: tuple[int, int]) -> list[PlatformTransform]:
        """The extreme treatments, harshest first; those that give the same image on this size once."""
        qualities = list(dict.fromkeys(self.qualities)) or [None]
        sides = list(dict.fromkeys(self.long_sides)) or [None]
        long = max(original_size)
        out: list[PlatformTransform] = []
        seen: set[tuple[int | None, tuple[int, int]]] = set()
        for side in sides:
            for quality in qualities:
                transform = PlatformTransform(quality=quality, long_side=side)
                # A long side at or above the image's own is no resize: those collapse into one.
                effective = (
                    transform
                    if side is None or side < long
                    else PlatformTransform(quality=quality, long_side=None)
                )
                key = (quality, effective.size_for(*original_size))
                if key not in seen:
                    seen.add(key)
                    out.append(effective)
        return out

    def search_samples(self, original_size: tuple[int, int]) -> list[PlatformTransform]:
        """The first ``samples`` treatments of :meth:`corners` in the order harshest, mildest, the rest.

        A fixed sample: the search compares every candidate after the same treatments.
        """
        corners = self.corners(original_size)
        order = [corners[0], corners[-1], *corners[1:-1]] if len(corners) > 1 else corners
        return order[: int(self.samples)]

    def describe(self) -> str:
        quality = "-".join(str(q) for q in dict.fromkeys(self.qualities)) or "none"
        sides = "-".join(str(s) for s in dict.fromkeys(self.long_sides)) or "none"
        return f"JPEG quality {quality}, long side resized to {sides} px"
