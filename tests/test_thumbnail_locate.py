"""Finding a thumbnail's crop box back in the image sent (``targets._locate``), on thumbnails made here."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from targets import TargetQueryError
from targets._locate import AmbiguousThumbnailError, ThumbnailNotFoundError, locate_thumbnail
from targets.crop import crop_size

FILTERS = ("NEAREST", "BOX", "BILINEAR", "HAMMING", "BICUBIC", "LANCZOS")


def _picture(name: str, width: int = 640) -> np.ndarray:
    array = getattr(skimage.data, name)()
    array = np.asarray(array[0] if isinstance(array, tuple) else array)
    picture = Image.fromarray(array).convert("RGB")
    height = round(picture.height * width / picture.width)
    return np.asarray(picture.resize((width, height), Image.Resampling.BICUBIC))


PICTURES = {name: _picture(name) for name in ("astronaut", "coffee", "camera", "page")}


def _thumbnail(
    image: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], resample: str, quality: int
) -> np.ndarray:
    left, top, width, height = box
    window = Image.fromarray(image[top : top + height, left : left + width])
    small = window.resize(size, getattr(Image.Resampling, resample))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _jpeg(picture: Image.Image, quality: int = 75) -> np.ndarray:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.mark.parametrize("resample", FILTERS)
@pytest.mark.parametrize("quality", [60, 75, 95])
def test_found_within_2_px_for_every_filter_and_jpeg_quality(resample: str, quality: int) -> None:
    rng = np.random.default_rng(FILTERS.index(resample) * 100 + quality)
    for name, image in PICTURES.items():
        height, width = image.shape[:2]
        for ratio in (0.56, 1.0, 1.14, 2.0):
            crop_w, crop_h = crop_size(width, height, ratio)
            for scale in (1.0, 0.5, 0.3):
                size = (max(1, round(crop_w * scale)), max(1, round(crop_h * scale)))
                left = int(rng.integers(0, width - crop_w + 1))
                top = int(rng.integers(0, height - crop_h + 1))
                thumbnail = _thumbnail(image, (left, top, crop_w, crop_h), size, resample, quality)
                found = locate_thumbnail(image, thumbnail, requested=size)
                where = f"{name} ratio {ratio} scale {scale}"
                assert abs(found.left - left) <= 2 and abs(found.top - top) <= 2, where
                assert abs(found.width - crop_w) <= 2 and abs(found.height - crop_h) <= 2, where
                # One side is the image's whole side, as the services crop.
                assert found.width == width or found.height == height, where


def _watermark(picture: Image.Image) -> Image.Image:
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    draw.rectangle([width * 0.7, height * 0.8, width * 0.97, height * 0.97], fill=(255, 255, 255))
    return picture


@pytest.mark.parametrize(
    "change",
    [
        _watermark,
        lambda p: ImageOps.grayscale(p).convert("RGB"),
        lambda p: ImageOps.colorize(ImageOps.grayscale(p), "#3b2a1a", "#f0e0c0"),
        lambda p: ImageEnhance.Brightness(p).enhance(1.3),
        lambda p: ImageOps.mirror(p),
    ],
    ids=["watermark", "grey", "sepia", "brighter", "mirrored"],
)
def test_a_changed_picture_is_a_named_failure_not_a_box(change) -> None:
    image = PICTURES["coffee"]
    height, width = image.shape[:2]
    crop_w, crop_h = crop_size(width, height, 1.0)
    window = Image.fromarray(image[:, 100 : 100 + crop_w]).resize((crop_w // 2, crop_h // 2))
    thumbnail = _jpeg(change(window))
    with pytest.raises(ThumbnailNotFoundError, match="the service changed the picture") as caught:
        locate_thumbnail(image, thumbnail, requested=(crop_w // 2, crop_h // 2), where="thumbnail 1")
    assert isinstance(caught.value, TargetQueryError)
    assert str(caught.value).startswith("thumbnail 1: the ")


def test_another_size_than_asked_is_a_named_failure() -> None:
    image = PICTURES["coffee"]
    thumbnail = _jpeg(Image.fromarray(image).resize((320, 213)))  # a fit-in: the whole image, shrunk
    with pytest.raises(ThumbnailNotFoundError, match=r"asked for 213x213, the service answered 320x213"):
        locate_thumbnail(image, thumbnail, requested=(213, 213))


def test_the_whole_image_when_nothing_is_cut() -> None:
    image = PICTURES["coffee"]
    height, width = image.shape[:2]
    thumbnail = _jpeg(Image.fromarray(image).resize((width // 2, height // 2)))
    found = locate_thumbnail(image, thumbnail)
    assert (found.left, found.top, found.width, found.height) == (0, 0, width, height)


def test_a_flat_or_repeating_picture_is_ambiguous_not_guessed() -> None:
    flat = np.full((200, 320, 3), 120, dtype=np.uint8)
    with pytest.raises(AmbiguousThumbnailError, match="single flat colour"):
        locate_thumbnail(flat, flat[:, :100].copy())
    # Vertical stripes every 40 px: a window fits every 40 px alike.
    stripes = np.zeros((200, 320, 3), dtype=np.uint8)
    stripes[:, (np.arange(320) // 20) % 2 == 0] = 255
    thumbnail = stripes[:, 40:140].copy()
    with pytest.raises(AmbiguousThumbnailError, match="alike"):
        locate_thumbnail(stripes, thumbnail)
