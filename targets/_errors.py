"""The errors a user acts on, and the one error a target raises when it could not answer a query.

Every error whose message tells a user what to change (a setting, an input file, a model file, a
service) subclasses :class:`UserError`, wherever it is defined (here, in the zoo, or in
``blackbox``). The command lines catch ``UserError`` alone: they print its message and exit 2. A
programming bug (``KeyError``, ``AssertionError``, a plain ``ValueError`` from deep inside a library)
is never a ``UserError``, so it still ends in a traceback (exit 1) and gets reported.

This module is the bottom of the import graph: it imports nothing of the project.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error a user fixes by changing a setting or an input; the message says how.

    Subclasses keep their builtin base as well (``ConfigError`` is a ``ValueError``,
    ``MissingModelFileError`` a ``FileNotFoundError``, ``TargetQueryError`` a ``RuntimeError``), so
    code that catches those keeps working.
    """


class ConfigError(UserError, ValueError):
    """A setting is out of range or of the wrong kind; the message names it and what to use."""


class TargetQueryError(UserError, RuntimeError):
    """A target could not answer: a service failed even after retries, refused, or answered nonsense.

    The black-box attack ends the trials of that query as failed with this message as their reason
    (the study keeps every completed trial and resumes on a re-run); a run skips the image and says so.
    """


class NonFiniteOutputError(TargetQueryError):
    """A target answered a map, point or crop with NaN or infinite values: named, never scored.

    A run skips the image with this reason (and the search ends those trials as failed), so no
    success is ever built on a NaN argmax.
    """
