"""``target=http``: any cropper behind an HTTP service that speaks the protocol in README.md.

Each image is POSTed as an 8-bit PNG (what a platform receives) and the JSON answer is checked field
by field (:mod:`targets._protocol`). A batch goes out as concurrent single requests, up to
``max_concurrency`` at a time, or, with ``batch_url``, as batch requests of up to ``max_batch`` images.

Failures: connection errors, timeouts, 5xx and 429 are retried with exponential backoff and full
jitter, honouring ``Retry-After`` (:mod:`targets._retry`); other 4xx never are. So is an answer that
takes longer than ``answer_timeout`` as a whole (``read_timeout`` only bounds each wait for a byte:
a service sending one byte every second would never trip it) or grows past ``max_answer_mb`` (a
body that never ends). A redirect never changes the method silently: a 301, 302 or 303 (which
clients follow as a body-less GET) is refused with the new address to put in ``target.url``; a 307
or 308, which keeps the method and body, is followed to the same host and said once (a warning).
A query that still fails raises a :class:`~targets.TargetQueryError`, which the attack records on
the trials of that query. The budget counts images asked about (the framework's job); retries are
counted here, in :meth:`HttpTarget.counters`, and a run records them with each image's result.

The auth header's value is read from the environment variable ``auth_env`` names, so it is never
part of a config, a log or a run folder.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import random
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import requests
import urllib3

from targets._base import ALL_OUTPUTS, Output, Target
from targets._errors import TargetQueryError
from targets._output import TargetOutput
from targets._protocol import PNG_TYPE, MalformedAnswerError, encode_png, parse_answer
from targets._retry import RetryPolicy, is_retryable_status, parse_retry_after
from targets.crop import DEFAULT_ASPECT_RATIOS

__all__ = ["HttpTarget", "MalformedAnswerError", "RequestRejectedError", "ServiceUnavailableError"]

COUNTERS = ("requests", "answered", "images", "retries", "rejected", "malformed", "failed")
_HINTS = {
    401: "check the auth header: target.auth_env names the environment variable holding its value",
    403: "check the auth header: target.auth_env names the environment variable holding its value",
    404: "check target.url (and target.batch_url)",
    405: "check target.url: the service does not take POST there",
    413: "the service refuses an image this large; use a smaller working_width",
    415: "the service does not take PNG bodies at this URL",
}
# Redirects that keep the method and the body (RFC 9110, 15.4.8 and 15.4.9): these may be followed.
_KEEPS_THE_BODY = (307, 308)
_MAX_REDIRECTS = 5
_READ_SIZE = 1 << 16


class AnswerLimitError(requests.RequestException):
    """An answer took longer than ``answer_timeout`` or grew past ``max_answer_mb`` (retried)."""


class ServiceUnavailableError(TargetQueryError):
    """The service did not answer (connection errors, timeouts, 5xx, 429), even after the retries."""


class RequestRejectedError(TargetQueryError):
    """The service refused the request with a 4xx other than 429; retrying would not help."""


class HttpTarget(Target):
    """A cropper behind HTTP (see the module doc and README "HTTP protocol")."""

    name = "http"

    def __init__(
        self,
        *,
        url: str,
        expect: Sequence[str | Output] = ("saliency", "point", "crops"),
        batch_url: str | None = None,
        max_batch: int = 16,
        max_concurrency: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        answer_timeout: float = 300.0,
        max_answer_mb: float = 256.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 30.0,
        retry_after_max: float = 120.0,
        auth_header: str = "Authorization",
        auth_env: str | None = None,
        send_aspect_ratios: bool = True,
        seed: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        aspect_ratios: Sequence[float] = DEFAULT_ASPECT_RATIOS,
    ) -> None:
        super().__init__(aspect_ratios=aspect_ratios)
        self.url = _check_url(url, "url")
        self.batch_url = _check_url(batch_url, "batch_url") if batch_url else None
        self.expect = _check_expect(expect)
        for key, value in (("max_batch", max_batch), ("max_concurrency", max_concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a whole number >= 1, got {value!r}")
        for key, value in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("answer_timeout", answer_timeout),
        ):
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{key} must be a positive number of seconds, got {value!r}")
        if isinstance(max_answer_mb, bool) or not (
            isinstance(max_answer_mb, (int, float)) and max_answer_mb > 0
        ):
            raise ValueError(f"max_answer_mb must be a positive number of MiB, got {max_answer_mb!r}")
        self.max_batch = max_batch
        self.max_concurrency = max_concurrency
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.answer_timeout = float(answer_timeout)
        self.max_answer_bytes = int(max_answer_mb * 2**20)
        self.retry = RetryPolicy(
            max_retries=max_retries, backoff=backoff, backoff_max=backoff_max, retry_after_max=retry_after_max
        )
        self.send_aspect_ratios = send_aspect_ratios
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._headers = {"User-Agent": "blackbox-http-target/0.1"}
        self._secret: str | None = None
        if auth_env:
            value = os.environ.get(str(auth_env))
            if not value:
                raise ValueError(
                    f"target.auth_env={auth_env} names an environment variable that is not set; "
                    f"export {auth_env}='<the {auth_header} header value>' or set target.auth_env=null"
                )
            self._headers[str(auth_header)] = value  # held here only: never logged, never in a config
            self._secret = value
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._redirects_said: set[tuple[str, str]] = set()

    @property
    def outputs(self) -> frozenset[Output]:
        # A map gives the point (argmax) and so the crops (policy); a point gives the crops.
        if Output.SALIENCY in self.expect:
            return ALL_OUTPUTS
        if Output.POINT in self.expect:
            return frozenset({Output.POINT, Output.CROPS})
        return frozenset({Output.CROPS})

    @property
    def retries(self) -> int:
        """Requests sent again after a connection error, timeout, 5xx or 429 (not in the budget)."""
        return self._counts["retries"]

    def counters(self) -> dict[str, int]:
        """``requests`` sent (retries included), ``answered`` (2xx), ``images`` answered, ``retries``,
        ``rejected`` (4xx), ``malformed`` answers, and ``failed`` requests given up after retries."""
        with self._lock:
            return dict(self._counts)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # -- queries -------------------------------------------------------------------------------

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        if self.batch_url:
            chunks = [images[i : i + self.max_batch] for i in range(0, len(images), self.max_batch)]
            jobs = [partial(self._ask_batch, chunk) for chunk in chunks]
        else:
            jobs = [partial(self._ask_one, image) for image in images]
        try:
            return [output for part in self._run(jobs) for output in part]
        except TargetQueryError as error:
            # Messages quote what the service said; one echoing the auth header must not leak it into
            # the trials' fail reasons or errors.jsonl.
            if self._secret and self._secret in str(error):
                raise type(error)(str(error).replace(self._secret, "<auth header value>")) from None
            raise

    def _run(self, jobs: list[Callable[[], list[TargetOutput]]]) -> list[list[TargetOutput]]:
        """Run the requests, up to ``max_concurrency`` at once; the first failure is raised."""
        if len(jobs) == 1 or self.max_concurrency == 1:
            return [job() for job in jobs]
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="http-target"
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

    def _params(self) -> dict[str, str]:
        return (
            {"aspect_ratios": ",".join(f"{r:g}" for r in self.aspect_ratios)}
            if self.send_aspect_ratios
            else {}
        )

    def _ask_one(self, image: np.ndarray) -> list[TargetOutput]:
        height, width = image.shape[:2]
        url, body = self._post(self.url, encode_png(image), PNG_TYPE)
        output = self._parse(
            url, body, "answer", lambda answer: [self._read(answer, width, height, "answer")]
        )
        self._count("images")
        return output

    def _ask_batch(self, images: list[np.ndarray]) -> list[TargetOutput]:
        assert self.batch_url is not None
        pngs = [base64.b64encode(encode_png(image)).decode("ascii") for image in images]
        body = json.dumps({"images": pngs}).encode()
        url, answer_body = self._post(self.batch_url, body, "application/json")

        def read(answer: object) -> list[TargetOutput]:
            answers = answer.get("answers") if isinstance(answer, dict) else None
            if not isinstance(answers, list) or len(answers) != len(images):
                got = f"{len(answers)} answers" if isinstance(answers, list) else repr(answer)[:80]
                raise MalformedAnswerError(f"answers: expected a list of {len(images)} answers, got {got}")
            return [
                self._read(a, image.shape[1], image.shape[0], f"answers[{i}]")
                for i, (a, image) in enumerate(zip(answers, images, strict=True))
            ]

        outputs = self._parse(url, answer_body, "batch answer", read)
        self._count("images", len(images))
        return outputs

    def _read(self, answer: object, width: int, height: int, where: str) -> TargetOutput:
        return parse_answer(
            answer,
            width=width,
            height=height,
            expect=self.expect,
            aspect_ratios=self.aspect_ratios,
            where=where,
        )

    def _parse(
        self, url: str, body: bytes, what: str, read: Callable[[object], list[TargetOutput]]
    ) -> list[TargetOutput]:
        try:
            try:
                answer = json.loads(body)
            except ValueError as error:
                start = body[:80].decode("utf-8", "replace")
                raise MalformedAnswerError(
                    f"{what} from {url} is not JSON ({error}); it starts {start!r}"
                ) from None
            return read(answer)
        except MalformedAnswerError:
            self._count("malformed")
            raise

    def _session(self) -> requests.Session:
        """One keep-alive session per thread (requests' sessions are not documented thread-safe)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _post(self, url: str, body: bytes, content_type: str) -> tuple[str, bytes]:
        """POST with retries; the URL that answered 2xx and its body, or a :class:`TargetQueryError`."""
        for attempt in range(self.retry.max_retries + 1):
            self._count("requests")
            retry_after = None
            try:
                response, content = self._exchange(url, body, content_type)
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.HTTPError,
                AnswerLimitError,
            ) as error:
                reason = f"{type(error).__name__}: {error}"
            else:
                if 200 <= response.status_code < 300:
                    self._count("answered")
                    return response.url, content
                reason = f"HTTP {response.status_code} {response.reason}: {_detail(content)}"
                if not is_retryable_status(response.status_code):
                    self._count("rejected")
                    hint = _HINTS.get(response.status_code, "a 4xx means the request itself is wrong")
                    if 300 <= response.status_code < 400:
                        hint = "a redirect without a Location the client may follow; check target.url"
                    raise RequestRejectedError(f"POST {url} was refused, not retried: {reason} ({hint})")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt == self.retry.max_retries:
                break
            if retry_after is not None and retry_after > self.retry.retry_after_max:
                self._count("failed")
                raise ServiceUnavailableError(
                    f"POST {url}: the service asks to wait {retry_after:.0f} s (Retry-After), more than "
                    f"target.retry_after_max={self.retry.retry_after_max:g}; last: {reason}. "
                    "Re-run later to resume"
                )
            with self._lock:
                delay = self.retry.delay(attempt, self._rng, retry_after)
            self._count("retries")
            self._sleep(delay)
        self._count("failed")
        raise ServiceUnavailableError(
            f"POST {url} failed after {self.retry.max_retries + 1} attempts "
            f"({self.retry.max_retries} retries); last: {reason}. Re-run later to resume"
        )

    def _exchange(self, url: str, body: bytes, content_type: str) -> tuple[requests.Response, bytes]:
        """One POST and its whole answer, within ``answer_timeout`` and ``max_answer_mb``.

        A 307 or 308 to the same host is followed (the method and body kept) and said once; any
        other redirect raises :class:`RequestRejectedError` naming where the service moved.
        """
        deadline = time.monotonic() + self.answer_timeout
        first_wait = (self.timeout[0], min(self.timeout[1], self.answer_timeout))
        params, setting = self._params(), self._setting_for(url)
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._session().post(
                url,
                data=body,
                headers={"Content-Type": content_type},
                params=params,
                timeout=first_wait,
                stream=True,
                allow_redirects=False,
            )
            try:
                content = self._read_answer(response, deadline)
            finally:
                response.close()
            if not (response.is_redirect and response.headers.get("Location")):
                return response, content
            url = self._redirect(url, response, setting)
            # A Location that kept this client's query needs it no more; one without gets it again.
            kept = "aspect_ratios" in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            params = {} if kept else self._params()
        self._count("rejected")
        raise RequestRejectedError(
            f"POST {url} was refused, not retried: more than {_MAX_REDIRECTS} redirects in a row; "
            f"check {setting}"
        )

    def _redirect(self, url: str, response: requests.Response, setting: str) -> str:
        """Where a 307 or 308 leads (said once); a :class:`RequestRejectedError` for any other."""
        location = urllib.parse.urljoin(response.url, response.headers["Location"])
        moved = _without_our_query(location)
        status = f"HTTP {response.status_code} {response.reason}"
        if response.status_code not in _KEEPS_THE_BODY:
            self._count("rejected")
            raise RequestRejectedError(
                f"POST {url} was redirected ({status}) to {moved}; clients follow this redirect as a "
                f"GET without the image, so it is not followed: the service moved, set {setting}={moved}"
            )
        old, new = urllib.parse.urlsplit(response.url), urllib.parse.urlsplit(location)
        if new.hostname != old.hostname or (old.scheme == "https" and new.scheme != "https"):
            self._count("rejected")
            raise RequestRejectedError(
                f"POST {url} was redirected ({status}) to {moved}, another host (or from https to "
                f"http), where the auth header must not go; if you trust it, set {setting}={moved}"
            )
        if (url, moved) not in self._redirects_said:
            self._redirects_said.add((url, moved))
            warnings.warn(
                f"POST {url} is redirected ({status}) to {moved}, which keeps the image: following it. "
                f"Set {setting}={moved} to save the extra round trip",
                stacklevel=2,
            )
        return location

    def _setting_for(self, url: str) -> str:
        return "target.batch_url" if url == self.batch_url else "target.url"

    def _read_answer(self, response: requests.Response, deadline: float) -> bytes:
        """The whole body, or :class:`AnswerLimitError` past the deadline or ``max_answer_mb``.

        Each read takes what has arrived (``read1``) and waits at most until the deadline, so a body
        trickling in a byte at a time ends at the deadline, not after it.
        """
        limit = self.max_answer_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise AnswerLimitError(
                f"the answer declares {int(declared):,} bytes, over target.max_answer_mb="
                f"{limit / 2**20:g} (the service sent more than a crop answer needs)"
            )
        parts, size = [], 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AnswerLimitError(
                    f"the answer took longer than target.answer_timeout={self.answer_timeout:g} s "
                    f"({size:,} bytes of it by then); the service is too slow or never ends its answer"
                )
            _wait_at_most(response, min(self.timeout[1], remaining))
            try:
                part = response.raw.read1(_READ_SIZE, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                if deadline - time.monotonic() <= 0:
                    continue  # the deadline, not read_timeout: say so above
                raise
            if not part:
                return b"".join(parts)
            size += len(part)
            if size > limit:
                raise AnswerLimitError(
                    f"the answer grew past target.max_answer_mb={limit / 2**20:g} (a body that never "
                    "ends, or far more than a crop answer needs)"
                )
            parts.append(part)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()


def _detail(body: bytes) -> str:
    """The error a service gave: FastAPI-style ``{"detail": ...}`` or the start of the body."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = str(detail) if detail is not None else body[:300].decode("utf-8", "replace")
    return text[:300] if text else "(empty body)"


def _wait_at_most(response: requests.Response, seconds: float) -> None:
    """Let the next read of ``response``'s socket wait at most ``seconds`` (urllib3 sets the socket's
    timeout again for the next request on this connection)."""
    sock = getattr(getattr(response.raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _without_our_query(url: str) -> str:
    """``url`` without the ``aspect_ratios`` this client adds: the value to put in ``target.url``."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "aspect_ratios"
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _check_url(url: object, key: str) -> str:
    if not isinstance(url, str):
        raise ValueError(f"target.{key} must be an http(s) URL, got {url!r}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"target.{key} must be an http(s) URL like http://127.0.0.1:8000/v1/saliency, got {url!r}"
        )
    if parts.username or parts.password:
        raise ValueError(
            f"target.{key} carries credentials; URLs are stored in run outputs. Remove them and put "
            "the header value in an environment variable named by target.auth_env"
        )
    return url


def _check_expect(expect: Sequence[str | Output]) -> frozenset[Output]:
    if isinstance(expect, str):
        expect = [expect]
    names = ", ".join(o.value for o in Output)
    outputs = set()
    for item in expect:
        try:
            outputs.add(Output(item))
        except ValueError:
            raise ValueError(f"target.expect: unknown output {item!r}; choose among {names}") from None
    if not outputs:
        raise ValueError(
            f"target.expect must name at least one output among {names} (a crop-only service: [crops])"
        )
    return frozenset(outputs)
