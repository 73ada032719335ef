"""How a request to a real service is written, and how fast and how many may go out.

:class:`RequestTemplate`: the URL (a template with ``{width}``, ``{height}``, ``{aspect_ratio}`` and the
image's URL in three spellings), the method and the body form (``none``: the image by URL; ``raw``:
its bytes; ``multipart``: a form field), and headers whose values come from environment variables
(never from a config, so never in a run folder or a log). :class:`RateLimiter` spaces requests to at
most ``rate`` a second over all threads, and holds them all back when a service says ``Retry-After``.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import string
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping

__all__ = ["BODIES", "PLACEHOLDERS", "RateLimiter", "RequestTemplate"]

BODIES = ("none", "raw", "multipart")
METHODS = ("GET", "POST", "PUT")
#: Placeholders of the URL template. The image's URL: as is, percent-encoded, or URL-safe base64
#: without padding (imgproxy's form).
PLACEHOLDERS = ("width", "height", "aspect_ratio", "image_url", "image_url_quoted", "image_url_b64")
IMAGE_URL = ("image_url", "image_url_quoted", "image_url_b64")


@dataclasses.dataclass(frozen=True)
class RequestTemplate:
    """One request per image and aspect ratio, written from settings.

    Raises ``ValueError`` for an unknown placeholder, a method or body form not listed, a ``GET`` with
    a body, an image URL placeholder with a body form that sends the bytes (or none without one), and
    a header whose environment variable is not set.
    """

    url: str
    method: str = "GET"
    body: str = "none"
    form_field: str = "image"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # header -> NAME of an env variable

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(
                "target.url must be an http(s) URL template like http://127.0.0.1:8000/thumbnail/"
                f"{{width}}x{{height}}/smart/{{image_url_quoted}}, got {self.url!r}"
            )
        parts = urllib.parse.urlsplit(self.url.split("{", 1)[0] + "x")
        if parts.username or parts.password:
            raise ValueError(
                "target.url carries credentials; URLs are stored in run outputs. Put the key in an "
                "environment variable and name it in target.headers"
            )
        names = {name for _, name, _, _ in string.Formatter().parse(self.url) if name is not None}
        unknown = sorted(names - set(PLACEHOLDERS))
        if unknown:
            raise ValueError(
                f"target.url: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        method = str(self.method).upper()
        object.__setattr__(self, "method", method)
        if method not in METHODS:
            raise ValueError(f"target.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.body not in BODIES:
            raise ValueError(f"target.body must be one of {', '.join(BODIES)}, got {self.body!r}")
        by_url = bool(names & set(IMAGE_URL))
        if self.body == "none" and not by_url:
            raise ValueError(
                "target.body=none sends the image by URL: put {image_url} (or {image_url_quoted}, "
                "{image_url_b64}) in target.url, or send it in the body (target.body=raw or multipart)"
            )
        if self.body != "none" and by_url:
            raise ValueError(
                f"target.body={self.body} sends the image's bytes: drop the image URL from target.url"
            )
        if self.body != "none" and method == "GET":
            raise ValueError(f"target.body={self.body} needs target.method=POST (or PUT): GET has no body")
        if "width" not in names or "height" not in names:
            # One request per aspect ratio: the service learns the size from the URL.
            raise ValueError("target.url must hold {width} and {height}: the thumbnail size asked for")
        for header, variable in dict(self.headers).items():
            if not os.environ.get(str(variable)):
                raise ValueError(
                    f"target.headers.{header}={variable} names an environment variable that is not set; "
                    f"export {variable}='<the {header} header value>' (the value is never stored)"
                )

    def header_values(self) -> dict[str, str]:
        """The headers with their values read from the environment now."""
        return {str(h): os.environ[str(v)] for h, v in dict(self.headers).items()}

    def fill(self, *, width: int, height: int, aspect_ratio: float, image_url: str | None = None) -> str:
        """The URL for one thumbnail of ``width`` x ``height`` pixels."""
        image_url = image_url or ""
        return self.url.format(
            width=width,
            height=height,
            aspect_ratio=f"{aspect_ratio:g}",
            image_url=image_url,
            image_url_quoted=urllib.parse.quote(image_url, safe=""),
            image_url_b64=base64.urlsafe_b64encode(image_url.encode()).decode("ascii").rstrip("="),
        )


class RateLimiter:
    """At most ``rate`` request starts a second, over every thread; ``hold`` pauses them all.

    Each :meth:`wait` takes the next free slot (slots ``1 / rate`` seconds apart) and sleeps until it.
    ``rate=None``: no limit, only holds.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(
                f"target.rate_limit must be a positive number of requests a second or null, got {rate!r}"
            )
        self.interval = 1.0 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = -math.inf
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, for the counters

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
            delay = slot - now
            self.waited += delay
        if delay > 0:
            self._sleep(delay)

    def hold(self, seconds: float) -> None:
        """No request starts for ``seconds`` from now (a service's ``Retry-After``)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
