"""libvips' own smartcrop (``vips_smartcrop``), behind sharp, imgproxy and thumbor's libvips engine.

Run in process through pyvips with the self-contained libvips of the ``pyvips-binary`` wheel: no
system library, nothing downloaded at run time (:func:`libvips_version` says which libvips answers).

For every aspect ratio (``height / width``) the crop size is the one Twitter's policy gives
(:func:`targets.crop.crop_size`): a ratio below the image's own H/W keeps the full width and cuts the
height to ``floor(width * ratio)``, else the crop keeps the full height and cuts the width to
``floor(height / ratio)``. libvips is asked for exactly that many pixels
(``image.smartcrop(crop_width, crop_height, interesting=...)``) and chooses only the position; it
reports it as the output's ``xoffset``/``yoffset``, the negated left and top of the crop (libvips'
``vips_smartcrop`` documentation: "test xoffset / yoffset on out to find the location of the crop").

What libvips does (``libvips/conversion/smartcrop.c``, 8.18):

* ``attention``: shrinks the image to 32 x 32 (each axis on its own), scores edges (a Laplacian on
  CIE Y), skin tones (distance to smartcrop.js's skin colour, bright pixels only) and colour (CIE a*),
  sums them, blurs with sigma = the crop's diagonal on that 32 x 32 grid / 10 (at least 1), and
  centres the crop on the maximum, clamped inside the image. It reports that maximum as
  ``attention_x``/``attention_y`` (image pixels, on the 32-cell grid). The blur depends on the crop
  size, so each aspect ratio may have its own centre; the salient point given here is libvips'
  attention centre for the whole image (``smartcrop(width, height)``), one point for every ratio.
* ``entropy``: trims slices (about 8 steps) from whichever end of the cut side has the lower
  histogram entropy. It has no point: the salient point is estimated from the crops
  (:func:`targets.crop.estimate_point`), as for any crop-only cropper.

Images arrive as float RGB in [0, 1]; they are rounded to the 8-bit pixels an uploaded PNG of them
decodes to (the attack's images are exactly such pixels / 255) and handed to libvips as sRGB.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from targets._base import Output, Target
from targets._output import CropBox, TargetOutput
from targets._protocol import to_uint8
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_size, estimate_point

INTERESTING = ("attention", "entropy")


def _pyvips() -> Any:
    """The ``pyvips`` module, or an ImportError that says how to install it with its libvips."""
    try:
        import pyvips
    except (ImportError, OSError) as error:  # OSError: pyvips found no libvips to load
        raise ImportError(
            f"target vips_* needs pyvips with a libvips: pip install 'pyvips>=3.2' 'pyvips-binary>=8.18' "
            f"(both are dependencies of this project: pip install -e .); the import said: {error}"
        ) from error
    # pyvips forwards libvips' chatter ("VIPS: shrinkh by 10", a dozen lines per crop) to Python's
    # logging at INFO; a Hydra run logs INFO to the terminal and its log file. Warnings still show.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    return pyvips


def libvips_version() -> str:
    """The version of the libvips that pyvips loaded, e.g. ``"8.18.7"``."""
    pyvips = _pyvips()
    return ".".join(str(pyvips.version(i)) for i in range(3))


class VipsSmartcrop(Target):
    """libvips' ``smartcrop`` with ``interesting=attention`` or ``entropy``; one crop per aspect ratio.

    ``attention`` gives crops and libvips' attention point; ``entropy`` gives crops only. No map.
    Raises ``ValueError`` for another ``interesting`` and ``ImportError`` (saying what to install)
    when pyvips or its libvips is missing.
    """

    name = "vips"

    def __init__(
        self, *, interesting: str = "attention", aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        if interesting not in INTERESTING:
            raise ValueError(f"interesting must be one of {', '.join(INTERESTING)}, got {interesting!r}")
        self.interesting = interesting
        self.name = f"vips_{interesting}"
        self._vips = _pyvips()

    @property
    def outputs(self) -> frozenset[Output]:
        if self.interesting == "attention":
            return frozenset({Output.POINT, Output.CROPS})
        return frozenset({Output.CROPS})

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        return [self._crop(image) for image in images]

    def _crop(self, image: np.ndarray) -> TargetOutput:
        height, width = image.shape[:2]
        pixels = np.ascontiguousarray(to_uint8(image))
        vips_image = self._vips.Image.new_from_memory(pixels.data, width, height, 3, "uchar")
        crops = []
        for ratio in self.aspect_ratios:
            crop_w, crop_h = crop_size(width, height, ratio)
            out = vips_image.smartcrop(crop_w, crop_h, interesting=self.interesting)
            left, top = -int(out.xoffset), -int(out.yoffset)
            if not (0 <= left <= width - crop_w and 0 <= top <= height - crop_h):
                raise RuntimeError(
                    f"libvips {libvips_version()} placed a {crop_w}x{crop_h} crop at ({left}, {top}) "
                    f"outside the {width}x{height} image; this libvips reports offsets differently"
                )
            crops.append(CropBox(left, top, crop_w, crop_h, ratio))
        if self.interesting == "attention":
            _, extra = vips_image.smartcrop(
                width, height, interesting="attention", attention_x=True, attention_y=True
            )
            point = (float(extra["attention_x"]), float(extra["attention_y"]))
        else:
            point = estimate_point(crops, width, height)
        return TargetOutput(point, tuple(crops))
