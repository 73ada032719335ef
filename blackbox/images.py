"""Reading images as a platform would receive them: 8-bit RGB, at the working resolution.

Every image is decoded, EXIF-rotated, converted to RGB (alpha composited on white, 16-bit and CMYK
converted), resized to ``working_width`` px wide, and quantised to 8 bits. The clean image the
target sees is that 8-bit image, so clean and adversarial images go through the same path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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


class ImageLoadError(ValueError):
    """An input could not be used as an image; the message says why and what to do."""


@dataclass(frozen=True)
class LoadedImage:
    """An image ready to attack: ``pixels`` is ``(H, W, 3)`` uint8 at the working resolution."""

    image_id: str
    source: str
    pixels: np.ndarray
    original_size: tuple[int, int]  # (width, height) before resizing

    @property
    def as_float(self) -> np.ndarray:
        return self.pixels.astype(np.float32) / 255.0

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB: alpha composited on white, 16-bit scaled, CMYK converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(array / peak * 255.0), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 1.0 if array.max() <= 1.0 else 255.0
        image = Image.fromarray(np.clip(np.rint(array / scale * 255.0), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def resize_to_width(image: Image.Image, width: int | None) -> Image.Image:
    """Resize keeping the aspect ratio (the paper resized CAT2000 images to 640 px wide)."""
    if width is None or image.width == width:
        return image
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.BICUBIC)


def prepare(image: Image.Image, *, image_id: str, source: str, working_width: int | None) -> LoadedImage:
    """A decoded PIL image to a :class:`LoadedImage` at the working resolution."""
    original_size = image.size
    # Upscaling a thumbnail makes pixels, not content: refuse tiny originals as well.
    if min(original_size) < MIN_SIDE:
        raise ImageLoadError(
            f"{source}: {original_size[0]}x{original_size[1]} px is too small; both sides must be at "
            f"least {MIN_SIDE} px for a crop to mean anything: use a larger version, {_REMOVE}"
        )
    rgb = resize_to_width(to_rgb(image), working_width)
    if min(rgb.size) < MIN_SIDE:
        raise ImageLoadError(
            f"{source}: {rgb.width}x{rgb.height} px at the working resolution is too small; "
            f"both sides must be at least {MIN_SIDE} px (original {original_size[0]}x{original_size[1]})"
        )
    return LoadedImage(image_id, source, np.asarray(rgb, dtype=np.uint8).copy(), original_size)


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
        raise ImageLoadError(
            f"{path}: damaged or truncated image ({error}); re-export or re-download it, {_REMOVE}"
        ) from error
    return prepare(decoded, image_id=image_id or path.stem, source=str(path), working_width=working_width)


def _too_many_pixels(path: Path, size: str) -> str:
    return (
        f"{path}: {size} is over the {MAX_PIXELS:,} pixel limit (a decompression bomb, or a photo "
        f"far larger than the working width needs); downscale it below the limit first, {_REMOVE}"
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
    """Write uint8 RGB pixels as a PNG with fixed settings, so a replay gives identical bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format="PNG", optimize=False, compress_level=6)
