"""The training images of a distillation: a folder's images or scikit-image's bundled pictures, a fixed
held-out split, and each step's augmented crops (random area, aspect ratio, mirror, brightness/contrast).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from blackbox.core.datasets import folder_sources
from blackbox.core.images import ImageLoadError, prepare
from targets import ConfigError

# scikit-image's pictures that need no download: photos, textures, text, microscopy.
DISTILL_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "moon",
    "page",
    "retina",
    "rocket",
    "stereo_motorcycle",
    "text",
)
MAX_SIDE = 800  # training crops come from images no larger than this (memory, speed)
BATCH_ASPECTS = (0.5625, 0.75, 1.0, 1.3333)  # height/width of a step's crops


@dataclass(frozen=True)
class DistillImage:
    image_id: str
    pixels: np.ndarray  # (H, W, 3) uint8


def load_images(folder: str | None) -> list[DistillImage]:
    """The images of ``folder`` (unreadable files skipped with a note), or the bundled pictures."""
    images = []
    if folder:
        for source in folder_sources(folder):
            try:
                loaded = source.load(None)
            except ImageLoadError as error:
                print(f"skipped: {error}", file=sys.stderr)
                continue
            images.append(DistillImage(source.image_id, _shrink(loaded.pixels)))
    else:
        import skimage.data

        for name in DISTILL_PHOTOS:
            array = getattr(skimage.data, name)()
            array = array[0] if isinstance(array, tuple) else array
            loaded = prepare(Image.fromarray(array), image_id=name, source=name, working_width=None)
            images.append(DistillImage(name, _shrink(loaded.pixels)))
    if len(images) < 2:
        raise ImageLoadError(
            f"distillation needs at least 2 images (some to train on, some held out); got {len(images)}"
        )
    return images


def _shrink(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))


def split(images: Sequence[DistillImage], held_out: float, seed: int) -> tuple[list, list]:
    """A fixed random split: ``held_out`` of the images (at least one, never all) kept for evaluation."""
    if not 0 < held_out < 1:
        raise ConfigError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    order = np.random.default_rng(seed).permutation(len(images))
    count = min(len(images) - 1, max(1, round(held_out * len(images))))
    held = sorted(int(i) for i in order[:count])
    return [im for i, im in enumerate(images) if i not in held], [images[i] for i in held]


def augment_batch(
    images: Sequence[DistillImage], rng: np.random.Generator, *, size: int, batch: int, augment: dict
) -> np.ndarray:
    """``(B, H, W, 3)`` float32 crops in [0, 1], one aspect ratio per batch, long side ``size``."""
    aspect = float(rng.choice(BATCH_ASPECTS))
    out_w, out_h = (
        (size, max(32, round(size * aspect))) if aspect <= 1 else (max(32, round(size / aspect)), size)
    )
    low, high = augment.get("scale", (0.35, 1.0))
    jitter = float(augment.get("jitter", 0.0))
    crops = []
    for _ in range(batch):
        pixels = images[int(rng.integers(len(images)))].pixels
        height, width = pixels.shape[:2]
        area = rng.uniform(low, high) * width * height
        crop_w = math.sqrt(area / aspect)
        crop_h = crop_w * aspect
        shrink = min(1.0, width / crop_w, height / crop_h)
        crop_w, crop_h = max(8, int(crop_w * shrink)), max(8, int(crop_h * shrink))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        crop = Image.fromarray(pixels[top : top + crop_h, left : left + crop_w])
        array = np.asarray(crop.resize((out_w, out_h), Image.Resampling.BICUBIC), dtype=np.float32) / 255
        if augment.get("flip", True) and rng.random() < 0.5:
            array = array[:, ::-1]
        if jitter:
            contrast, brightness = rng.uniform(1 - jitter, 1 + jitter), rng.uniform(-jitter, jitter)
            array = (array - 0.5) * contrast + 0.5 + brightness
        # 8-bit, as any image a platform receives.
        crops.append(np.round(np.clip(array, 0, 1) * 255) / 255)
    return np.stack(crops).astype(np.float32)


def evaluation_images(images: Sequence[DistillImage], width: int) -> list[np.ndarray]:
    """The held-out images as the targets see them: ``(H, W, 3)`` float32 in [0, 1], ``width`` px wide."""
    return [
        prepare(
            Image.fromarray(im.pixels), image_id=im.image_id, source=im.image_id, working_width=width
        ).as_float
        for im in images
    ]
