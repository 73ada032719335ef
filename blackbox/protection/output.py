"""Writing the protected image as the user's file was: same size, format, colour profile, orientation.

The search works on the picture as a viewer shows it (:mod:`blackbox.core.images`: EXIF-rotated,
converted to sRGB). The file keeps its own pixel grid and colour numbers: the perturbation, carried
to the original size (:func:`blackbox.core.full_size.full_size_adversarial`), is turned back into
the file's stored orientation (the inverse of its EXIF ``Orientation``) and added to the stored
numbers, and the file is written with the same EXIF block (orientation included) and the same ICC
profile. Pixels the perturbation leaves alone keep their values. (Under a wide-gamut profile, a
perturbation of a few sRGB levels added to the stored numbers is a change of about the same size in
that space; what the croppers see of the written file is measured on the file itself.)

Formats: JPEG in, JPEG out, at ``jpeg_quality`` (``"keep"``, the default: the input's own
quantisation tables and chroma subsampling, so the file's quality is what it was; or a number,
1-100); PNG in, PNG out (lossless); any other format is written as PNG (the report says so). An
alpha channel is kept as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from targets import ConfigError

__all__ = ["WrittenImage", "inverse_orientation", "write_protected"]

# EXIF Orientation -> the numpy operation that turns stored pixels into shown ones
# (Pillow's ImageOps.exif_transpose) and its inverse.
_SHOWN = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
_STORED = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, -1),
}


def inverse_orientation(shown: np.ndarray, orientation: int) -> np.ndarray:
    """``shown`` (``(H, W, ...)``, as a viewer shows it) in the file's stored orientation (EXIF 1-8)."""
    return np.ascontiguousarray(_STORED.get(orientation, lambda a: a)(shown))


def shown_orientation(stored: np.ndarray, orientation: int) -> np.ndarray:
    """``stored`` pixels as a viewer shows them (EXIF ``Orientation`` 1-8)."""
    return np.ascontiguousarray(_SHOWN.get(orientation, lambda a: a)(stored))


@dataclass(frozen=True)
class WrittenImage:
    """Where the protected file went and how: ``format`` (``JPEG``/``PNG``), the JPEG ``quality``
    stated (``"keep"`` or a number; ``None`` for PNG), and ``note`` (why the format changed, if it did)."""

    path: Path
    format: str
    quality: str | int | None
    note: str = ""


def check_quality(value: object) -> str | int:
    """``"keep"`` or an int in 1-100, else :class:`~targets.ConfigError`."""
    if value == "keep":
        return "keep"
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ConfigError(f"jpeg_quality must be keep (the input's own tables) or 1-100, got {value!r}")
    return value


def write_protected(
    source: Path,
    shown_clean: np.ndarray,
    shown_protected: np.ndarray,
    out_dir: Path,
    *,
    jpeg_quality: str | int = "keep",
) -> WrittenImage:
    """Write ``source`` with the perturbation ``shown_protected - shown_clean`` (both ``(H, W, 3)``
    uint8, as shown) to ``out_dir/<stem>_protected.<ext>``; see the module doc.

    Raises:
        ConfigError: a bad ``jpeg_quality``.
    """
    quality = check_quality(jpeg_quality)
    with Image.open(source) as handle:
        handle.load()
        fmt = handle.format or "PNG"
        exif = handle.info.get("exif")
        icc = handle.info.get("icc_profile")
        orientation = int(handle.getexif().get(0x0112, 1) or 1)
        qtables = getattr(handle, "quantization", None)
        sampling = JpegImagePlugin.get_sampling(handle) if fmt in ("JPEG", "MPO") else -1
        mode = handle.mode
        stored = handle.copy()
    delta = shown_protected.astype(np.int16) - shown_clean.astype(np.int16)
    note = ""
    if mode in ("RGB", "RGBA"):
        stored_delta = inverse_orientation(delta, orientation)
        pixels = np.asarray(stored.convert("RGB"), dtype=np.int16)
        if pixels.shape != stored_delta.shape:  # an orientation tag that does not match the size
            raise ValueError(f"{source}: stored {pixels.shape} and perturbation {stored_delta.shape} differ")
        rgb = Image.fromarray(np.clip(pixels + stored_delta, 0, 255).astype(np.uint8), "RGB")
        image = rgb if mode == "RGB" else Image.merge("RGBA", (*rgb.split(), stored.getchannel("A")))
    else:
        # Grey, palette, CMYK or 16-bit data cannot carry a colour perturbation as they are: the
        # picture as shown (sRGB, upright) is written, without the orientation tag or profile.
        image, exif, icc, orientation = Image.fromarray(shown_protected, "RGB"), None, None, 1
        note = f"the input's mode {mode} cannot hold a colour perturbation: written as sRGB RGB, upright"
    kwargs: dict = {}
    if exif:
        kwargs["exif"] = exif
    if icc:
        kwargs["icc_profile"] = icc
    if fmt in ("JPEG", "MPO") and image.mode == "RGB":
        path = out_dir / f"{source.stem}_protected.jpg"
        if quality == "keep" and qtables and mode == "RGB":
            kwargs.update(qtables=qtables, subsampling=sampling if sampling >= 0 else 2)
        else:
            quality = 95 if quality == "keep" else quality  # no tables to keep (should not happen)
            kwargs["quality"] = quality
        image.save(path, format="JPEG", **kwargs)
        return WrittenImage(path, "JPEG", quality, note)
    if fmt not in ("PNG",):
        note = note or f"the input's format {fmt} is written as PNG (lossless)"
    path = out_dir / f"{source.stem}_protected.png"
    image.save(path, format="PNG", **kwargs)
    return WrittenImage(path, "PNG", None, note)
