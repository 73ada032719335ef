"""Checks every target applies to its input, so every target fails the same clear way."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_SIDE = 32  # below this no saliency model here has a meaningful output grid


def validate_images(images: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """Return ``images`` as a list of ``(H, W, 3)`` float arrays in [0, 1], or raise.

    A single ``(H, W, 3)`` array is a mistake worth catching: it would be read as a batch of rows.
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            raise ValueError(
                f"query() takes a batch; got one image of shape {images.shape}. Pass [image] or images[None]."
            )
        if images.ndim != 4:
            raise ValueError(f"a batch array must have shape (B, H, W, 3); got shape {images.shape}")
        images = list(images)
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise TypeError(f"query() takes a sequence of (H, W, 3) float arrays; got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("query() got an empty batch")
    return [_validate_one(i, image) for i, image in enumerate(images)]


def _validate_one(index: int, image: object) -> np.ndarray:
    where = f"image {index}"
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{where}: expected a numpy array, got {type(image).__name__}")
    if image.dtype not in (np.float32, np.float64):
        hint = " (divide uint8 images by 255)" if image.dtype == np.uint8 else ""
        raise TypeError(f"{where}: expected float32 or float64 values in [0, 1], got {image.dtype}{hint}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}: expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"{where}: {width}x{height} is too small; both sides must be at least {MIN_SIDE} px")
    if not np.isfinite(image).all():
        raise ValueError(f"{where}: contains NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{where}: values must lie in [0, 1], found [{low:.4g}, {high:.4g}]"
            + (" (divide by 255?)" if high > 1.0 else "")
        )
    return image
