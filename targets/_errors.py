"""The one error a target raises when it could not answer a query (a remote service failed)."""

from __future__ import annotations


class TargetQueryError(RuntimeError):
    """A target could not answer: a service failed even after retries, refused, or answered nonsense.

    The black-box attack ends the trials of that query as failed with this message as their reason
    (the study keeps every completed trial and resumes on a re-run); a run skips the image and says so.
    """


class NonFiniteOutputError(TargetQueryError):
    """A target answered a map, point or crop with NaN or infinite values: named, never scored.

    A run skips the image with this reason (and the search ends those trials as failed), so no
    success is ever built on a NaN argmax.
    """
