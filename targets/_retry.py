"""When a failed HTTP request is tried again, and how long to wait first.

Exponential backoff with *full jitter* (a uniform wait in ``[0, min(cap, base * 2**retry)]``):
clients that failed together do not come back together. A server's ``Retry-After`` (on 429 and
5xx) is a floor on the wait; one longer than ``retry_after_max`` ends the query at once rather than
blocking a study for an unbounded time.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass


def is_retryable_status(status: int) -> bool:
    """429 (too many requests) and every 5xx are worth another try; other 4xx never are."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date), or ``None``.

    Fractional seconds are accepted though the standard has whole ones; a date in the past is 0.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT; a date without a zone is read as such
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and after how long a failed request is retried."""

    max_retries: int = 4
    backoff: float = 0.5  # seconds: the cap of the first retry's wait, doubled each retry
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise ValueError(f"max_retries must be a whole number >= 0, got {self.max_retries!r}")
        for name in ("backoff", "backoff_max", "retry_after_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """The wait before retry number ``retry`` (0 for the first retry)."""
        cap = min(self.backoff_max, self.backoff * 2.0**retry)
        jittered = rng.uniform(0.0, cap)
        return jittered if retry_after is None else max(retry_after, jittered)
