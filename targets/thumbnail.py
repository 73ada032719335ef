"""``target=thumbnail``: a real cropping service as it answers, with the cropped thumbnail image itself.

Image services answer a thumbnail URL (thumbor's ``/unsafe/<w>x<h>/smart/<image URL>``, imgproxy's
``.../gravity:sm/...``, this project's reference ``python -m targets.serve response=thumbnail``) with
the picture, cut and resized, not with a box. This target asks one thumbnail per image and aspect
ratio, and recovers each crop box from the pixels (:func:`targets._locate.locate_thumbnail`: scale
from the size asked for, position by normalised cross-correlation, a check that the thumbnail *is*
that window): a crop-only target for every black-box attack.

* **Request** (:class:`targets._template.RequestTemplate`): ``url`` is a template with ``{width}``,
  ``{height}`` (the thumbnail asked for: the crop Twitter's rule gives for the ratio,
  :func:`targets.crop.crop_size`, shrunk to about ``thumbnail_scale`` with its exact aspect ratio:
  :meth:`ThumbnailTarget.thumbnail_size`), ``{aspect_ratio}``, and with
  ``body: none`` the image's URL (``{image_url}``, ``{image_url_quoted}``, ``{image_url_b64}``) on a
  loopback file server this target runs (:mod:`targets._fileserver`); ``body: raw`` POSTs the PNG,
  ``body: multipart`` sends it as form field ``form_field``. ``headers`` maps header names to the
  names of environment variables holding their values: values are read at start, never stored, and
  redacted from any error message that quotes them.
* **Rate and cost**: at most ``rate_limit`` requests a second over all threads; every request sent
  costs ``cost_per_request``, and once ``max_cost`` would be passed the target refuses to send
  (:class:`SpendingLimitError`). A ``Retry-After`` (on 429 or 5xx) holds every thread back at least
  that long; retries follow :mod:`targets._retry` as ``target=http``'s do.
* **Counting**: the budget counts images asked about, as for every target (one query is
  ``len(aspect_ratios)`` requests); :meth:`ThumbnailTarget.counters` counts ``requests``, ``answered``,
  ``retries``, ``throttled`` (429s), ``failed``, ``unlocated`` thumbnails, ``images`` and ``cost``, which
  a run records with each image's result and sums in its summary.

A thumbnail that is not a window of the image sent (a filter, a watermark, a fit-in size) raises
:class:`~targets._locate.ThumbnailNotFoundError` naming its figures; one that fits two places alike
:class:`~targets._locate.AmbiguousThumbnailError`. Both are :class:`~targets.TargetQueryError`, so the
attack records the failed query and never scores a guessed box.
"""

from __future__ import annotations

import concurrent.futures
import io
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import requests
from PIL import Image, UnidentifiedImageError

from targets._base import Output, Target
from targets._errors import TargetQueryError
from targets._fileserver import FileServer
from targets._image_modes import to_rgb
from targets._locate import AmbiguousThumbnailError, ThumbnailNotFoundError, locate_thumbnail
from targets._output import CropBox, TargetOutput
from targets._protocol import PNG_TYPE, MalformedAnswerError, encode_png, to_uint8
from targets._retry import RetryPolicy, is_retryable_status, parse_retry_after
from targets._template import RateLimiter, RequestTemplate
from targets.crop import DEFAULT_ASPECT_RATIOS, crop_size, estimate_point
from targets.http import RequestRejectedError, ServiceUnavailableError

__all__ = [
    "AmbiguousThumbnailError",
    "SpendingLimitError",
    "ThumbnailNotFoundError",
    "ThumbnailTarget",
]

COUNTERS = (
    "requests",
    "answered",
    "images",
    "retries",
    "throttled",
    "rejected",
    "malformed",
    "failed",
    "unlocated",
)
MAX_THUMBNAIL_BYTES = 64 << 20


class SpendingLimitError(TargetQueryError):
    """The next request would cost more than ``max_cost`` allows; nothing was sent."""


class ThumbnailTarget(Target):
    """A thumbnail service, its crops found back in the thumbnails it answers (see the module doc)."""

    name = "thumbnail"

    def __init__(
        self,
        *,
        url: str,
        method: str = "GET",
        body: str = "none",
        form_field: str = "image",
        headers: Mapping[str, str] | None = None,
        thumbnail_scale: float = 0.5,
        rate_limit: float | None = None,
        cost_per_request: float = 0.0,
        max_cost: float | None = None,
        max_concurrency: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        file_host: str = "127.0.0.1",
        file_port: int = 0,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        self.template = RequestTemplate(
            url=url, method=method, body=body, form_field=form_field, headers=dict(headers or {})
        )
        if not (isinstance(thumbnail_scale, (int, float)) and 0 < thumbnail_scale <= 1):
            raise ValueError(
                f"thumbnail_scale must be in (0, 1] (the thumbnail's size as a fraction of the crop's), "
                f"got {thumbnail_scale!r}"
            )
        for key, value in (("cost_per_request", cost_per_request), ("max_cost", max_cost)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}")
        for key, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{key} must be a positive number of seconds, got {value!r}")
        self.thumbnail_scale = float(thumbnail_scale)
        self.cost_per_request = float(cost_per_request)
        self.max_cost = None if max_cost is None else float(max_cost)
        self.max_concurrency = max_concurrency
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.retry = RetryPolicy(
            max_retries=max_retries, backoff=backoff, backoff_max=backoff_max, retry_after_max=retry_after_max
        )
        self._sleep = sleep
        self.limiter = RateLimiter(rate_limit, sleep=sleep)
        self._rng = random.Random(seed)
        self._headers = {"User-Agent": "blackbox-thumbnail-target/0.1", **self.template.header_values()}
        self._secrets = [v for k, v in self._headers.items() if k != "User-Agent" and v]
        self._file_address = (file_host, file_port)
        self._files: FileServer | None = None
        self._lock = threading.Lock()
        self._counts: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self._counts["cost"] = 0.0
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.CROPS})

    def counters(self) -> dict[str, float]:
        """``requests`` sent (retries included), ``answered`` (2xx), ``retries``, ``throttled`` (429s),
        ``rejected`` (other 4xx), ``malformed`` answers, ``failed`` requests given up, ``unlocated``
        thumbnails, ``images`` answered, and ``cost`` (``cost_per_request`` per request sent)."""
        with self._lock:
            return dict(self._counts)

    def _count(self, key: str, n: float = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def thumbnail_size(self, width: int, height: int, ratio: float) -> tuple[int, int]:
        """The ``(width, height)`` asked for: the ratio's crop (Twitter's sizes,
        :func:`targets.crop.crop_size`) shrunk to about ``thumbnail_scale``, keeping its aspect ratio
        exactly in whole pixels (a multiple of the crop's sides over their greatest common divisor;
        a crop whose sides share no factor is asked at full size). A thumbnail of a slightly other
        ratio would be another crop size, which a cropper may place elsewhere."""
        crop_w, crop_h = crop_size(width, height, ratio)
        common = math.gcd(crop_w, crop_h)
        times = max(1, round(common * self.thumbnail_scale))
        return crop_w // common * times, crop_h // common * times

    # -- queries -------------------------------------------------------------------------------

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        pixels = [np.ascontiguousarray(to_uint8(image)) for image in images]
        payloads = [encode_png(image) for image in images]
        served: list[str] = []
        try:
            if self.template.body == "none":
                files = self._file_server()
                served = [files.put(payload) for payload in payloads]
            jobs = [
                partial(self._ask, pixels[i], payloads[i], served[i] if served else None, ratio)
                for i in range(len(images))
                for ratio in self.aspect_ratios
            ]
            boxes = self._run(jobs)
        except TargetQueryError as error:
            raise self._redacted(error) from None
        finally:
            for url in served:
                self._files.remove(url)  # type: ignore[union-attr]
        per_image = len(self.aspect_ratios)
        outputs = []
        for i, image in enumerate(pixels):
            crops = tuple(boxes[i * per_image : (i + 1) * per_image])
            height, width = image.shape[:2]
            outputs.append(TargetOutput(estimate_point(crops, width, height), crops))
        self._count("images", len(images))
        return outputs

    def _ask(self, pixels: np.ndarray, payload: bytes, image_url: str | None, ratio: float) -> CropBox:
        height, width = pixels.shape[:2]
        size = self.thumbnail_size(width, height, ratio)
        url = self.template.fill(width=size[0], height=size[1], aspect_ratio=ratio, image_url=image_url)
        response = self._send(url, payload)
        where = f"the thumbnail for aspect ratio {ratio:g} ({size[0]}x{size[1]})"
        thumbnail = self._decode(response, where)
        try:
            found = locate_thumbnail(pixels, thumbnail, requested=size, where=where)
        except ThumbnailNotFoundError:
            self._count("unlocated")
            raise
        return CropBox(found.left, found.top, found.width, found.height, ratio)

    def _decode(self, response: requests.Response, where: str) -> np.ndarray:
        kind = response.headers.get("Content-Type", "")
        try:
            with Image.open(io.BytesIO(response.content)) as picture:
                picture.load()
                return np.asarray(to_rgb(picture), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            self._count("malformed")
            raise MalformedAnswerError(
                f"{where}: the service answered {kind or 'no Content-Type'}, not an image Pillow reads "
                f"({error}); it starts {response.content[:80]!r}. Check target.url: it must answer the "
                "thumbnail itself"
            ) from None

    def _run(self, jobs: list[Callable[[], CropBox]]) -> list[CropBox]:
        """Run the requests, up to ``max_concurrency`` at once; the first failure is raised."""
        if len(jobs) == 1 or self.max_concurrency == 1:
            return [job() for job in jobs]
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="thumbnail-target"
            )
        futures = [self._executor.submit(job) for job in jobs]
        done, pending = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            for future in pending:
                future.cancel()
            concurrent.futures.wait(pending)  # requests in flight finish, so the counters are whole
            raise failed[0].exception()  # type: ignore[misc]
        return [f.result() for f in futures]

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _charge(self, url: str) -> None:
        """Count one request and its cost, or refuse it if it would pass ``max_cost``."""
        with self._lock:
            cost = self._counts["cost"] + self.cost_per_request
            if self.max_cost is not None and cost > self.max_cost + 1e-12:
                raise SpendingLimitError(
                    f"{self.template.method} {url} not sent: it would cost {cost:g} in all, more than "
                    f"target.max_cost={self.max_cost:g} ({int(self._counts['requests'])} requests sent at "
                    f"{self.cost_per_request:g} each). Raise target.max_cost or lower the budget"
                )
            self._counts["requests"] += 1
            self._counts["cost"] = cost

    def _send(self, url: str, payload: bytes) -> requests.Response:
        """The request with retries; a 2xx response, or a :class:`TargetQueryError` saying why not."""
        method = self.template.method
        for attempt in range(self.retry.max_retries + 1):
            self.limiter.wait()
            self._charge(url)
            retry_after = None
            try:
                response = self._session().request(method, url, timeout=self.timeout, **self._body(payload))
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as error:
                reason = f"{type(error).__name__}: {error}"
            else:
                if response.ok:
                    self._count("answered")
                    if len(response.content) > MAX_THUMBNAIL_BYTES:
                        self._count("malformed")
                        raise MalformedAnswerError(
                            f"{method} {url}: the answer is over {MAX_THUMBNAIL_BYTES} bytes"
                        )
                    return response
                reason = (
                    f"HTTP {response.status_code} {response.reason}: {response.text[:300] or '(empty body)'}"
                )
                if not is_retryable_status(response.status_code):
                    self._count("rejected")
                    raise RequestRejectedError(
                        f"{method} {url} was refused, not retried: {reason} (a 4xx means the request itself "
                        "is wrong: check target.url, target.method, target.body and target.headers)"
                    )
                if response.status_code == 429:
                    self._count("throttled")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt == self.retry.max_retries:
                break
            if retry_after is not None and retry_after > self.retry.retry_after_max:
                self._count("failed")
                raise ServiceUnavailableError(
                    f"{method} {url}: the service asks to wait {retry_after:.0f} s (Retry-After), more than "
                    f"target.retry_after_max={self.retry.retry_after_max:g}; last: {reason}. "
                    "Re-run later to resume"
                )
            with self._lock:
                delay = self.retry.delay(attempt, self._rng, retry_after)
            if retry_after is not None:
                self.limiter.hold(retry_after)  # every thread waits, not only this one
            self._count("retries")
            self._sleep(delay)
        self._count("failed")
        raise ServiceUnavailableError(
            f"{method} {url} failed after {self.retry.max_retries + 1} attempts "
            f"({self.retry.max_retries} retries); last: {reason}. Re-run later to resume"
        )

    def _body(self, payload: bytes) -> dict:
        if self.template.body == "raw":
            return {"data": payload, "headers": {"Content-Type": PNG_TYPE}}
        if self.template.body == "multipart":
            return {"files": {self.template.form_field: ("image.png", payload, PNG_TYPE)}}
        return {}

    def _file_server(self) -> FileServer:
        with self._lock:
            if self._files is None:
                host, port = self._file_address
                self._files = FileServer(host=host, port=port)
            return self._files

    def _redacted(self, error: TargetQueryError) -> TargetQueryError:
        """``error`` with any header value it quotes replaced: secrets never reach a log or a run folder."""
        text = str(error)
        if not any(secret in text for secret in self._secrets):
            return error
        for secret in self._secrets:
            text = text.replace(secret, "<header value>")
        return type(error)(text)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            sessions, self._sessions = self._sessions, []
            files, self._files = self._files, None
        for session in sessions:
            session.close()
        if files is not None:
            files.close()
        self._local = threading.local()
