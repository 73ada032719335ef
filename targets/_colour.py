"""Embedded ICC colour profiles: an image's numbers converted to the sRGB a viewer shows.

A file tagged with a profile (Adobe RGB, Display P3, a printer's CMYK, a gray gamma) holds numbers
that mean other colours than the same numbers in sRGB; a colour-managed viewer converts them to
the display. :func:`to_srgb` does the same with Pillow's ``ImageCms`` (LittleCMS), with the rendering
intent the profile's header declares, so a target, the perturbation budget and the written file all
refer to the picture a person sees. A profile whose colour space does not match the pixels (a gray
profile on RGB data) is ignored, as the PNG and JPEG specifications tell decoders to do.
"""

from __future__ import annotations

import io
from functools import cache

from PIL import Image, ImageCms

__all__ = ["ColourProfileError", "embedded_profile", "to_srgb"]

# The profile's colour space (its header's ``xcolor_space``) -> the mode its numbers are read in,
# and the image modes whose numbers it describes.
_SPACES = {
    "RGB": ("RGB", frozenset({"RGB", "RGBA", "RGBa", "RGBX", "P", "PA"})),
    "GRAY": ("L", frozenset({"1", "L", "LA"})),
    "CMYK": ("CMYK", frozenset({"CMYK"})),
}
_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "PA"})


class ColourProfileError(ValueError):
    """The image's embedded ICC profile cannot be read or applied."""


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def embedded_profile(image: Image.Image) -> ImageCms.ImageCmsProfile | None:
    """The ICC profile ``image`` carries (``info["icc_profile"]``, any format), or ``None``.

    Raises:
        ColourProfileError: the profile's bytes are not an ICC profile LittleCMS can read.
    """
    data = image.info.get("icc_profile")
    if not data:
        return None
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(data))
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as error:
        raise ColourProfileError(f"its embedded ICC colour profile cannot be read ({error})") from None


def to_srgb(image: Image.Image, profile: ImageCms.ImageCmsProfile) -> Image.Image:
    """``image`` (8-bit: ``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``CMYK``...) as ``RGB``
    or, when it has an alpha channel or a transparency key, ``RGBA`` in sRGB.

    The alpha channel is kept as it was (compositing is left to the caller). An image whose mode
    the profile does not describe is returned unchanged.

    Raises:
        ColourProfileError: LittleCMS cannot build the transform (a damaged or unusable profile).
    """
    space = str(profile.profile.xcolor_space).strip()
    base, modes = _SPACES.get(space, (None, frozenset()))
    if base is None or image.mode not in modes:
        return image
    alpha = None
    if image.mode in _WITH_ALPHA or "transparency" in image.info:
        alpha = image.convert("RGBA").getchannel("A")
    try:
        intent = ImageCms.Intent(int(profile.profile.rendering_intent))
    except ValueError:
        intent = ImageCms.Intent.PERCEPTUAL
    source = image.convert(base) if image.mode != base else image
    try:
        shown = ImageCms.profileToProfile(source, profile, _srgb(), renderingIntent=intent, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        description = profile.profile.profile_description or "unnamed"
        raise ColourProfileError(
            f"its embedded ICC colour profile ({description}) cannot be applied ({error})"
        ) from None
    assert shown is not None  # not in place
    if alpha is not None:
        shown.putalpha(alpha)
    return shown
