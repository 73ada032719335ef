"""The OpenCV module (``opencv-python-headless``), loaded where first needed, with an error that says how
to install it (``target=faces`` and ``target=thumbnail`` use it)."""

from __future__ import annotations

from typing import Any


def load_cv2() -> Any:
    """The ``cv2`` module, or an ImportError that says how to install it."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            "OpenCV is missing: pip install 'opencv-python-headless>=4.8,<4.12' (a dependency of this "
            f"project: pip install -e .); the import said: {error}"
        ) from error
    return cv2
