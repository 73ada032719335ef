"""Optional dependencies (pyproject's extras), imported where they are needed, with a message that
names the extra to install when one is missing.

``pysaliency`` (extra ``distill``) serves only distillation and ``dataset=cat2000_pysaliency``; it
pins ``numpy<2`` and ``setuptools<82``, so the core does not depend on it.
"""

from __future__ import annotations

import warnings
from types import ModuleType

from targets import UserError

__all__ = ["MissingExtraError", "import_pysaliency"]


class MissingExtraError(UserError, ImportError):
    """A feature needs an optional dependency that is not installed; the message says which extra."""


def import_pysaliency(feature: str) -> ModuleType:
    """``pysaliency``, or a :class:`MissingExtraError` saying that ``feature`` needs the extra ``distill``."""
    try:
        with warnings.catch_warnings():  # pysaliency imports pkg_resources, which warns on import
            warnings.simplefilter("ignore")
            import pysaliency
            import pysaliency.metrics
            import pysaliency.roc
    except ImportError as error:
        raise MissingExtraError(
            f"{feature} needs pysaliency, which the core install leaves out (it pins numpy<2): "
            "pip install -e '.[distill]' (in a virtual environment of its own, e.g. make setup-distill; "
            f"then run it with .venv-distill/bin/python) [{error}]"
        ) from None
    return pysaliency
