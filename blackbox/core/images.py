"""Reading images as a platform would receive them: 8-bit RGB, at the working resolution.

Every image is decoded, EXIF-rotated, converted to the RGB a viewer shows (:func:`to_rgb`: an
embedded ICC profile converted to sRGB, alpha and transparency keys composited on white, 16-bit data
scaled by its declared depth), resized to ``working_width`` px wide, and quantised to 8 bits. The
clean image the target sees is that 8-bit image, so clean and adversarial images go through the
same path. Size limits hold at the working size, checked before any resizing; animations are
refused, not cut to their first frame. Written images (:func:`save_png`) are sRGB and say so (a
PNG ``sRGB`` chunk).
"""

from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from targets import UserError
from targets._colour import ColourProfileError
from targets._image_modes import DEEP_MODES, declared_peak, to_rgb
from targets._validation import MIN_SIDE

BUNDLED_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)
# Above this many pixels a file is treated as a decompression bomb, not decoded (Pillow's own guard
# starts a little higher, at 89 Mpx; both are reported as this limit).
MAX_PIXELS = 80_000_000
# What a refused file's message ends with: how to go on.
_REMOVE = "or leave it out of the dataset"
# What Pillow's PNG reader says when a text or profile chunk would expand past its limits
# (``MAX_TEXT_CHUNK``, ``MAX_TEXT_MEMORY``): a metadata decompression bomb, not damaged pixels.
_METADATA_LIMITS = ("MAX_TEXT_CHUNK", "MAX_TEXT_MEMORY")


class ImageLoadError(UserError, ValueError):
    """An input could not be used as an image; the message says why and what to do."""


@dataclass(frozen=True)
class LoadedImage:
    """An image ready to attack: ``pixels`` is ``(H, W, 3)`` uint8 at the working resolution.

    ``original_size`` is ``(width, height)`` before resizing, as shown (after its EXIF orientation);
    ``original`` the ``(H0, W0, 3)`` uint8
    RGB at that size (the same colour conversion, no resize), kept where it differs from ``pixels``
    so that results can be written at the size the user gave (:attr:`original_pixels`).
    """

    image_id: str
    source: str
    pixels: np.ndarray
    original_size: tuple[int, int]  # (width, height) before resizing
    original: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def original_pixels(self) -> np.ndarray:
        """``(H0, W0, 3)`` uint8 at the original size (``pixels`` itself when no resize was made)."""
        return self.pixels if self.original is None else self.original

    @property
    def scale(self) -> tuple[float, float]:
        """``(x, y)`` working pixels per original pixel (``(1.0, 1.0)`` when no resize was made)."""
        return self.width / self.original_size[0], self.height / self.original_size[1]

    @property
    def as_float(self) -> np.ndarray:
        return self.pixels.astype(np.float32) / 255.0

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def working_size(size: tuple[int, int], width: int | None) -> tuple[int, int]:
    """``(width, height)`` of an image of ``size`` at the working width (aspect ratio kept)."""
    if width is None or size[0] == width:
        return size
    return width, max(1, round(size[1] * width / size[0]))


def resize_to_width(image: Image.Image, width: int | None) -> Image.Image:
    """Resize keeping the aspect ratio (the paper resized CAT2000 images to 640 px wide)."""
    size = working_size(image.size, width)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def prepare(
    image: Image.Image, *, image_id: str, source: str, working_width: int | None, peak: float | None = None
) -> LoadedImage:
    """A decoded PIL image to a :class:`LoadedImage` at the working resolution.

    ``peak`` is the file's declared full scale for deep modes (:func:`declared_peak`). Raises
    :class:`ImageLoadError` when either side is under ``MIN_SIDE`` px, or the working size is over
    ``MAX_PIXELS`` (checked before resizing, so an upscaled strip never allocates its pixels).
    """
    original_size = image.size
    # Upscaling a thumbnail makes pixels, not content: refuse tiny originals as well.
    if min(original_size) < MIN_SIDE:
        raise ImageLoadError(
            f"{source}: {original_size[0]}x{original_size[1]} px is too small; both sides must be at "
            f"least {MIN_SIDE} px for a crop to mean anything: use a larger version, {_REMOVE}"
        )
    _check_working_pixels(original_size, working_width, source)
    try:
        shown = to_rgb(image, peak=peak)
    except ColourProfileError as error:
        raise ImageLoadError(
            f"{source}: {error}; re-save it with its colours converted to sRGB (or without a profile), "
            f"{_REMOVE}"
        ) from None
    if shown.size != original_size:  # turned by its EXIF orientation: the picture as shown is the original
        original_size = shown.size
        _check_working_pixels(original_size, working_width, source)
    rgb = resize_to_width(shown, working_width)
    if min(rgb.size) < MIN_SIDE:
        raise ImageLoadError(
            f"{source}: {rgb.width}x{rgb.height} px at the working resolution is too small; "
            f"both sides must be at least {MIN_SIDE} px (original {original_size[0]}x{original_size[1]})"
        )
    original = None if rgb is shown else np.asarray(shown, dtype=np.uint8).copy()
    return LoadedImage(image_id, source, np.asarray(rgb, dtype=np.uint8).copy(), original_size, original)


def _check_working_pixels(size: tuple[int, int], working_width: int | None, source: str) -> None:
    """Refuse an image whose working copy would be over ``MAX_PIXELS`` (before it is made)."""
    working = working_size(size, working_width)
    if working[0] * working[1] > MAX_PIXELS:
        raise ImageLoadError(
            f"{source}: {size[0]}x{size[1]} px becomes {working[0]}x{working[1]} px at "
            f"working_width={working_width}, over the {MAX_PIXELS:,} pixel limit (a very long strip); "
            f"crop it to a less extreme shape, or run with a smaller working_width, {_REMOVE}"
        )


def load_image(
    path: str | Path, *, working_width: int | None = 640, image_id: str | None = None
) -> LoadedImage:
    """Read an image file; raise :class:`ImageLoadError` with a clear reason if it is unusable."""
    path = Path(path)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if not path.is_file():
        raise ImageLoadError(f"{path}: not a file (pass an image file, or use dataset=folder)")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes); re-export or re-download it, {_REMOVE}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as handle:
                if handle.width * handle.height > MAX_PIXELS:
                    raise ImageLoadError(_too_many_pixels(path, f"{handle.width}x{handle.height} px"))
                frames = int(getattr(handle, "n_frames", 1))
                # A phone's JPEG (MPO) carries previews after its one picture: frame 0 is the photo.
                if frames > 1 and handle.format != "MPO":
                    # Attacking frame 0 alone would report on a picture the user never meant.
                    raise ImageLoadError(
                        f"{path}: an animation or multi-page file ({frames} frames); only still images "
                        f"are attacked: export the frame you mean as PNG, {_REMOVE}"
                    )
                peak = declared_peak(handle) if handle.mode in DEEP_MODES else None
                handle.load()
                decoded = handle.copy()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(_too_many_pixels(path, str(error).split(" exceeds")[0])) from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"{path}: not an image file Pillow can read, whatever its extension says; convert it to PNG "
            f"or JPEG, {_REMOVE}"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        if any(limit in str(error) for limit in _METADATA_LIMITS):
            raise ImageLoadError(_metadata_bomb(path, error)) from error
        raise ImageLoadError(
            f"{path}: damaged or truncated image ({error}); re-export or re-download it, {_REMOVE}"
        ) from error
    return prepare(
        decoded, image_id=image_id or path.stem, source=str(path), working_width=working_width, peak=peak
    )


def _too_many_pixels(path: Path, size: str) -> str:
    return (
        f"{path}: {size} is over the {MAX_PIXELS:,} pixel limit (a decompression bomb, or a photo "
        f"far larger than the working width needs); downscale it below the limit first, {_REMOVE}"
    )


def _metadata_bomb(path: Path, error: BaseException) -> str:
    """The reason for a file whose text or profile chunk would expand past Pillow's limits."""
    # Pillow's reader names neither the chunk nor its size: the chunk is the one it was reading.
    frames = traceback.extract_tb(error.__traceback__)
    chunk = next((f.name[6:] for f in reversed(frames) if f.name.startswith("chunk_")), None)
    what, limit = (f"its {chunk} chunk" if chunk else "a metadata chunk"), PngImagePlugin.MAX_TEXT_CHUNK
    if "MAX_TEXT_MEMORY" in str(error):
        what, limit = "its text chunks together", PngImagePlugin.MAX_TEXT_MEMORY
    return (
        f"{path}: {what} would expand past Pillow's {limit / 2**20:g} MiB limit for metadata (a "
        "metadata decompression bomb); the pixels may be fine: re-save the pixels without that "
        f"metadata (e.g. exiftool -all= {path.name}, or an editor's export without metadata), {_REMOVE}"
    )


def load_bundled(name: str, *, working_width: int | None = 640) -> LoadedImage:
    """One of scikit-image's bundled photos (available offline)."""
    import skimage.data

    if name not in BUNDLED_PHOTOS:
        raise ImageLoadError(f"unknown bundled photo {name!r}; choose from {', '.join(BUNDLED_PHOTOS)}")
    pixels = getattr(skimage.data, name)()
    return prepare(
        Image.fromarray(pixels), image_id=name, source=f"skimage.data.{name}", working_width=working_width
    )


def save_png(pixels: np.ndarray, path: Path) -> None:
    """Write uint8 RGB pixels as an sRGB PNG (it says so in an ``sRGB`` chunk) with fixed settings, so
    a replay gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(
        path, format="PNG", optimize=False, compress_level=6, pnginfo=srgb_png_info()
    )


def srgb_png_info() -> PngImagePlugin.PngInfo:
    """A PNG ``sRGB`` chunk (rendering intent 0, perceptual, as for photographs) for ``save(pnginfo=)``:
    every image this project writes holds sRGB numbers (:func:`to_rgb` converts embedded profiles)."""
    info = PngImagePlugin.PngInfo()
    info.add(b"sRGB", b"\x00")
    return info
