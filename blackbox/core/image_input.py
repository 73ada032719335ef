"""Images in every form a user holds them, to :class:`~blackbox.core.images.LoadedImage`.

:func:`load_images` takes one image or a batch and gives the same :class:`LoadedImage` for the same
picture in every form:

* one image: a file path, a PIL image, a :class:`LoadedImage`, or an array (numpy, or a torch tensor,
  read on the CPU) of one of these layouts: ``(H, W)`` gray, ``(H, W, C)`` or ``(C, H, W)`` with ``C``
  1 (gray), 3 (RGB) or 4 (RGBA); a 3-D array is always one image, read as ``(H, W, C)`` when its last
  axis is 1, 3 or 4, else as ``(C, H, W)``;
* a batch: a list or tuple of such images (any mix), or a 4-D array ``(N, H, W, C)`` or
  ``(N, C, H, W)`` (NHWC when the last axis is 1, 3 or 4).

Values: ``uint8`` (0-255), floats in [0, 1] (rounded to the nearest 8-bit level, so
``x.astype(np.float32) / 255`` gives back ``x`` exactly), or other integer types holding 0-255. Every
array becomes a PIL image and goes the way a file does (:func:`~blackbox.core.images.prepare`): RGBA
composited on white, gray repeated into RGB, resized to the working width, so a PNG of the picture,
the PIL image and each array form give one and the same working copy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from blackbox.core.images import ImageLoadError, LoadedImage, load_image, prepare

if TYPE_CHECKING:
    import torch

__all__ = ["ImageInput", "load_images"]

#: One image in any accepted form (a batch is a list of these, or a 4-D array).
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, "torch.Tensor", LoadedImage]

_CHANNELS = (1, 3, 4)
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load_images(
    images: ImageInput | Sequence[ImageInput], *, working_width: int | None
) -> tuple[list[LoadedImage], bool]:
    """``(the images, at the working width; whether a batch was given)``.

    Ids: a file's stem, ``image`` for one in-memory image, ``image<i>`` for the ``i``-th of a batch;
    a repeated id gets ``-<i>`` appended, so each image of a batch has its own study.

    Raises:
        ImageLoadError: an input that is no image, or not in a layout or value range above; the
            message says what is accepted and how to convert.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ImageLoadError("an empty batch: pass at least one image")
        items, batch = list(images), True
    else:
        array = _as_array(images)
        if array is not None and array.ndim == 4:
            items, batch = [_batch_item(array, i) for i in range(array.shape[0])], True
        else:
            items, batch = [images], False
    loaded = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        default = f"image{index}" if batch else "image"
        image = _load_one(item, default_id=default, working_width=working_width, where=_where(batch, index))
        if image.image_id in seen:
            image = LoadedImage(
                f"{image.image_id}-{index}", image.source, image.pixels, image.original_size, image.original
            )
        seen.add(image.image_id)
        loaded.append(image)
    return loaded, batch


def _where(batch: bool, index: int) -> str:
    return f"image {index} of the batch" if batch else "the image"


def _batch_item(array: np.ndarray, index: int) -> np.ndarray:
    """The ``index``-th image of an NHWC or NCHW batch, as ``(H, W, C)``."""
    if array.shape[-1] in _CHANNELS:
        return array[index]
    if array.shape[1] in _CHANNELS:
        return np.moveaxis(array[index], 0, -1)
    raise ImageLoadError(
        f"a 4-D batch must be (N, H, W, C) or (N, C, H, W) with C 1, 3 or 4 channels, got {array.shape}"
    )


def _as_array(value: object) -> np.ndarray | None:
    """A numpy array or a torch tensor as numpy (on the CPU, detached); ``None`` for anything else."""
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        return value.detach().cpu().numpy()  # type: ignore[attr-defined]
    return None


def _load_one(item: object, *, default_id: str, working_width: int | None, where: str) -> LoadedImage:
    if isinstance(item, LoadedImage):
        return item
    if isinstance(item, (str, os.PathLike)):
        return load_image(Path(item).expanduser(), working_width=working_width)
    array = _as_array(item)
    if array is not None:
        item = to_pil(array, where=where)
    if isinstance(item, Image.Image):
        return prepare(item, image_id=default_id, source=f"in memory ({where})", working_width=working_width)
    raise ImageLoadError(
        f"{where}: cannot attack a {type(item).__name__}; pass a file path, a PIL image, a numpy array "
        "or torch tensor ((H, W), (H, W, C) or (C, H, W); uint8 or floats in [0, 1]), or a list of them"
    )


def to_pil(array: np.ndarray, *, where: str = "the image") -> Image.Image:
    """One array image as a PIL image of mode ``L``, ``RGB`` or ``RGBA`` (8 bits a channel).

    Raises:
        ImageLoadError: not 2-D or 3-D with 1, 3 or 4 channels, or values outside what its type means.
    """
    if array.ndim == 2:
        hwc = array[:, :, None]
    elif array.ndim == 3 and array.shape[-1] in _CHANNELS:
        hwc = array
    elif array.ndim == 3 and array.shape[0] in _CHANNELS:
        hwc = np.moveaxis(array, 0, -1)
    else:
        raise ImageLoadError(
            f"{where}: an array of shape {array.shape} is no image; pass (H, W) gray, (H, W, C) or "
            "(C, H, W) with C 1, 3 or 4 channels, or a batch as a list or an (N, H, W, C) / (N, C, H, W) "
            "array"
        )
    levels = _to_uint8(hwc, where)
    channels = levels.shape[2]
    mode = _MODES[channels]
    return Image.fromarray(levels[:, :, 0] if channels == 1 else np.ascontiguousarray(levels), mode)


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        raise ImageLoadError(
            f"{where}: a boolean array is a mask, not an image; pass uint8 or floats in [0, 1]"
        )
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageLoadError(f"{where}: the array holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0 or high > 1:
            hint = "; divide by 255 first" if high <= 255 and low >= 0 else ""
            raise ImageLoadError(
                f"{where}: float pixels must lie in [0, 1], these lie in [{low:g}, {high:g}]{hint}"
            )
        return np.rint(values * 255.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.dtype == np.uint16:
            raise ImageLoadError(
                f"{where}: a uint16 array is 16-bit data; pass floats in [0, 1] (x / 65535) or uint8"
            )
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageLoadError(
                f"{where}: integer pixels must lie in 0-255 (8-bit levels), these lie in [{low}, {high}]; "
                "pass uint8, or floats in [0, 1]"
            )
        return array.astype(np.uint8)
    raise ImageLoadError(
        f"{where}: pixels of type {array.dtype} are no image; pass uint8 or floats in [0, 1]"
    )
