"""The reference server's request decoding: the body read within its size limit, image bytes decoded to
RGB with decompression bombs refused from the header, and the ``aspect_ratios`` query; each refusal an
``HTTPException`` whose message says what to send instead.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from fastapi import HTTPException, Request
from PIL import Image, UnidentifiedImageError

from targets._image_modes import to_rgb

MAX_ASPECT_RATIOS = 16


def parse_ratios(text: str | None) -> list[float]:
    """The ``aspect_ratios`` query (comma-separated heights/widths) as numbers; ``[]`` when not given."""
    if text is None:
        return []
    try:
        ratios = [float(part) for part in text.split(",")]
    except ValueError:
        ratios = []
    if not ratios or len(ratios) > MAX_ASPECT_RATIOS or any(not (math.isfinite(r) and r > 0) for r in ratios):
        raise HTTPException(
            400, f"aspect_ratios={text!r}: give 1 to {MAX_ASPECT_RATIOS} positive numbers, e.g. 0.56,1,1.14,2"
        )
    return ratios


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    too_big = f"this server takes at most {limit} bytes per image (max_body_bytes)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is {declared} bytes; {too_big}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over {limit} bytes; {too_big}")
        chunks.append(chunk)
    if not size:
        raise HTTPException(400, "the body is empty: send the image bytes")
    return b"".join(chunks)


def decode_image(data: bytes, max_pixels: int, *, where: str = "the body") -> np.ndarray:
    """Bytes to ``(H, W, 3)`` uint8 RGB; bombs are refused from the header, before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    413,
                    f"{where} declares a {width}x{height} image ({width * height} pixels); this server "
                    f"decodes at most {max_pixels} pixels (a decompression-bomb guard)",
                )
            image.load()
            rgb = to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise HTTPException(413, f"{where} is a decompression bomb: {error}") from None
    except UnidentifiedImageError:
        raise HTTPException(400, f"{where} is not an image Pillow can read: send PNG bytes") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise HTTPException(400, f"{where} is a truncated or corrupt image: {error}") from None
    return np.asarray(rgb, dtype=np.uint8)
