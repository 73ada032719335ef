"""The reference server's thumbnail routes (``response=thumbnail``): a zoo cropper as an image service.

``GET /thumbnail/<w>x<h>/smart/<image URL>`` fetches the image (from the hosts of ``fetch_hosts`` only:
loopback by default, so the server is no open proxy), ``POST /thumbnail/<w>x<h>/smart`` takes it as the
raw body or as the ``image`` field of a multipart form. Either way the target crops the window of
aspect ratio ``h / w`` it chooses, which is resized to ``w x h`` (``resample``) and answered as JPEG
(``jpeg_quality``) or PNG: the answer a real thumbnail service gives, which ``target=thumbnail`` reads.
``rate_limit`` (requests a second, over any one-second window) answers 429 with ``Retry-After`` beyond
it, as rate-limited services do.
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import io
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

import numpy as np
import requests
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from targets._base import Target
from targets._serve_request import decode_image, read_body
from targets.crop import crop_size

FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}
RESAMPLE = {
    name.lower(): getattr(Image.Resampling, name)
    for name in ("NEAREST", "BOX", "BILINEAR", "HAMMING", "BICUBIC", "LANCZOS")
}
MAX_THUMBNAIL_SIDE = 8192


class SlidingWindowLimit:
    """At most ``rate`` requests in any one-second window; beyond it, how long until a slot frees."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._starts: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def admit(self) -> float | None:
        """``None`` when admitted, else the seconds to wait (for ``Retry-After``)."""
        with self._lock:
            now = time.monotonic()
            while self._starts and self._starts[0] <= now - 1.0:
                self._starts.popleft()
            if len(self._starts) >= self.rate:
                return self._starts[0] + 1.0 - now
            self._starts.append(now)
            return None


def check_thumbnail_settings(
    *, image_format: str, resample: str, jpeg_quality: int, rate_limit: float | None
) -> None:
    if image_format not in FORMATS:
        raise ValueError(f"thumbnail_format must be one of {', '.join(FORMATS)}, got {image_format!r}")
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE)}, got {resample!r}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int) or not 1 <= jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality must be a whole number in [1, 95], got {jpeg_quality!r}")
    if rate_limit is not None and not (isinstance(rate_limit, (int, float)) and rate_limit > 0):
        raise ValueError(
            f"rate_limit must be a positive number of requests a second or null, got {rate_limit!r}"
        )


def add_thumbnail_routes(
    app: FastAPI,
    target: Target,
    *,
    model_lock: threading.Lock,
    count: Callable[[str, int], None],
    check_auth: Callable[[Request], None],
    crop_for: Callable[[Target, list[np.ndarray], Sequence[float]], list],
    image_format: str = "jpeg",
    jpeg_quality: int = 75,
    resample: str = "lanczos",
    rate_limit: float | None = None,
    fetch_hosts: Sequence[str] = ("127.0.0.1", "localhost", "::1"),
    max_body_bytes: int = 16 << 20,
    max_pixels: int = 40_000_000,
) -> None:
    """Add the thumbnail routes to ``app`` (see the module doc)."""
    check_thumbnail_settings(
        image_format=image_format, resample=resample, jpeg_quality=jpeg_quality, rate_limit=rate_limit
    )
    limit = SlidingWindowLimit(rate_limit) if rate_limit else None
    hosts = {h.lower().strip("[]") for h in fetch_hosts}

    def admit(request: Request) -> None:
        check_auth(request)
        if limit is not None:
            wait = limit.admit()
            if wait is not None:
                raise HTTPException(
                    429,
                    f"over {rate_limit:g} requests a second: retry after {math.ceil(wait)} s",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )

    def size_of(width: int, height: int) -> tuple[int, int]:
        if not (1 <= width <= MAX_THUMBNAIL_SIDE and 1 <= height <= MAX_THUMBNAIL_SIDE):
            raise HTTPException(
                400, f"thumbnail size {width}x{height}: each side 1 to {MAX_THUMBNAIL_SIDE} px"
            )
        return width, height

    def thumbnail(data: bytes, size: tuple[int, int], where: str) -> bytes:
        """Decode, crop with the target, resize, encode: in the thread pool, off the event loop."""
        pixels = decode_image(data, max_pixels, where=where)
        width, height = size
        ratio = ratio_for(pixels.shape[1], pixels.shape[0], width, height)
        try:
            with model_lock:
                crop = crop_for(target, [pixels.astype(np.float32) / 255.0], [ratio])[0].crops[0]
        except ValueError as error:  # the target's own input checks (e.g. too small)
            raise HTTPException(400, str(error)) from None
        window = Image.fromarray(pixels[crop.top : crop.bottom, crop.left : crop.right])
        small = window.resize((width, height), RESAMPLE[resample])
        buffer = io.BytesIO()
        if image_format == "jpeg":
            small.save(buffer, format="JPEG", quality=jpeg_quality)
        else:
            small.save(buffer, format="PNG", compress_level=1)
        count("images", 1)
        return buffer.getvalue()

    def fetch(image_url: str) -> bytes:
        url = image_url if "://" in image_url else urllib.parse.unquote(image_url)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in hosts:
            raise HTTPException(
                400,
                f"image URL {url[:200]!r}: this server fetches http(s) images only from "
                f"{', '.join(sorted(hosts))} (fetch_hosts)",
            )
        try:
            reply = requests.get(url, timeout=(5, 30))
        except requests.RequestException as error:
            raise HTTPException(502, f"could not fetch {url[:200]}: {error}") from None
        if not reply.ok:
            raise HTTPException(502, f"fetching {url[:200]} answered HTTP {reply.status_code}")
        if len(reply.content) > max_body_bytes:
            raise HTTPException(
                413, f"the image at {url[:200]} is over {max_body_bytes} bytes (max_body_bytes)"
            )
        return reply.content

    @app.get("/thumbnail/{width}x{height}/smart/{image_url:path}", response_class=Response)
    async def thumbnail_by_url(request: Request, width: int, height: int, image_url: str) -> Response:
        """The thumbnail of the image at ``image_url`` (raw or percent-encoded)."""
        admit(request)
        size = size_of(width, height)
        data = await run_in_threadpool(fetch, image_url)
        content = await run_in_threadpool(thumbnail, data, size, "the image fetched")
        return Response(content, media_type=FORMATS[image_format])

    @app.post("/thumbnail/{width}x{height}/smart", response_class=Response)
    async def thumbnail_of_body(request: Request, width: int, height: int) -> Response:
        """The thumbnail of the image sent as the body, or as the ``image`` field of a multipart form."""
        admit(request)
        size = size_of(width, height)
        content_type = request.headers.get("content-type", "")
        body = await read_body(request, max_body_bytes + 64 * 1024)
        if content_type.split(";")[0].strip().lower() == "multipart/form-data":
            data = _form_field(content_type, body, "image")
        elif content_type.lower().startswith("image/"):
            data = body
        else:
            raise HTTPException(
                415, f"Content-Type is {content_type or 'missing'}: send image/png, or multipart/form-data"
            )
        if len(data) > max_body_bytes:
            raise HTTPException(413, f"the image is over {max_body_bytes} bytes (max_body_bytes)")
        content = await run_in_threadpool(thumbnail, data, size, "the body")
        return Response(content, media_type=FORMATS[image_format])


def ratio_for(width: int, height: int, thumb_width: int, thumb_height: int) -> float:
    """The aspect ratio to ask the cropper for, so that its crop is the window a ``thumb_width x
    thumb_height`` thumbnail of a ``width x height`` image implies (thumbor's rounding: the kept side
    whole, the other ``round(kept * thumbnail ratio)``). ``thumb_height / thumb_width`` itself may floor
    a pixel short in :func:`targets.crop.crop_size` (``480 / (480 / 421)`` is a hair under 421), so it
    is nudged by a few ulps until the sizes agree."""
    ratio = thumb_height / thumb_width
    keeps_width = ratio < height / width
    wanted = (
        round(width * thumb_height / thumb_width)
        if keeps_width
        else round(height * thumb_width / thumb_height)
    )
    nudged = ratio
    for _ in range(16):
        crop_w, crop_h = crop_size(width, height, nudged)
        got = crop_h if keeps_width else crop_w
        if got == wanted:
            return nudged
        # A larger ratio is a taller crop: more height when the width is kept, less width otherwise.
        nudged = float(np.nextafter(nudged, np.inf if (got < wanted) == keeps_width else -np.inf))
    return ratio


def _form_field(content_type: str, body: bytes, name: str) -> bytes:
    """The bytes of form field ``name`` of a multipart/form-data body (the standard library's parser)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    if message.is_multipart():
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == name:
                return part.get_payload(decode=True) or b""
    raise HTTPException(400, f"the multipart form has no field {name!r}: send the image as field {name!r}")
