"""Any image file's pixels as the 8-bit RGB a viewer shows: the mode handling shared by the framework
(``blackbox.core.images``) and the reference server (``python -m targets.serve``).

Pure Pillow and numpy. :func:`to_rgb` takes an opened :class:`PIL.Image.Image` of any mode;
:func:`declared_peak` reads a deep image's full scale from the file's own tags.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from targets._colour import embedded_profile, to_srgb

__all__ = ["DEEP_MODES", "declared_peak", "to_rgb"]

# Modes that hold more than 8 bits per sample; their scale comes from the file, never from the data.
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def declared_peak(image: Image.Image) -> float:
    """The full-scale value the file declares for an ``I`` / ``I;16`` image (65535 when it declares none).

    ``I;16*`` is 16-bit. ``I`` is how Pillow opens 16-bit PNG, PPM and most TIFF data; a TIFF's
    ``BitsPerSample`` and ``SampleFormat`` tags say when it is wider or signed (a signed 32-bit TIFF
    peaks at 2**31 - 1). Read it from the opened file: a copy of the image no longer has the tags.
    """
    if image.mode.startswith("I;16"):
        return 65535.0
    tags = getattr(image, "tag_v2", None)
    if tags is not None and tags.get(258):  # TIFF BitsPerSample
        bits = int(tags[258][0])
        signed = tags.get(339) in (2, (2,))  # SampleFormat 2: two's complement integers
        return float(2 ** (bits - 1 if signed else bits) - 1)
    return 65535.0


def to_rgb(image: Image.Image, *, peak: float | None = None) -> Image.Image:
    """Any PIL mode to the 8-bit RGB a viewer shows.

    * Deeper-than-8-bit data is scaled by its *declared* full scale ``peak`` (from
      :func:`declared_peak` on the opened file; 65535 if not given): a dark 16-bit picture stays dark
      whatever its brightest pixel. Float (``F``) data is read as [0, 1], as viewers show it;
      values outside are clipped.
    * Transparency, whether an alpha channel (``RGBA``, ``LA``, ``PA``, premultiplied ``RGBa``/``La``)
      or a transparency key (``info["transparency"]`` on ``1``, ``L``, ``I;16``, ``RGB`` or ``P``), is
      composited on white.
    * CMYK, YCbCr, LAB and HSV are converted by Pillow.
    * An embedded ICC profile (any format) is applied: the numbers become the sRGB a colour-managed
      viewer shows (:func:`targets._colour.to_srgb`), before transparency is composited.

    Raises:
        targets._colour.ColourProfileError: the embedded profile cannot be read or applied.
    """
    profile = embedded_profile(image)  # read first: conversions below may drop ``info``
    if peak is None and image.mode in DEEP_MODES:
        peak = declared_peak(image)  # before exif_transpose: its copy has no TIFF tags
    image = ImageOps.exif_transpose(image)
    if image.mode in DEEP_MODES:
        array = np.asarray(image, dtype=np.float64)
        key = image.info.get("transparency")
        if image.mode == "F":
            peak = 1.0
        assert peak is not None
        gray = Image.fromarray(np.clip(np.rint(array / peak * 255.0), 0, 255).astype(np.uint8), "L")
        if isinstance(key, (int, float)):  # a 16-bit key matches the raw values, not the scaled ones
            alpha = Image.fromarray(np.where(array == key, 0, 255).astype(np.uint8), "L")
            gray = Image.merge("LA", (gray, alpha))
        image = gray
    if image.mode == "La":  # premultiplied: Pillow converts it to nothing, so undo it here
        values = np.asarray(image, dtype=np.float64)
        alpha = values[..., 1]
        gray = np.where(alpha > 0, np.clip(values[..., 0] * 255.0 / np.maximum(alpha, 1), 0, 255), 0)
        image = Image.fromarray(np.stack([np.rint(gray), alpha], axis=-1).astype(np.uint8), "LA")
    if profile is not None:
        image = to_srgb(image, profile)
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")
