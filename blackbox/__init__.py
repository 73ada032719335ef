"""blackbox: find near-invisible perturbations that move where a saliency-based cropper crops.

``blackbox.attack(image, target="classic", budget=20, eps=20)`` attacks one image from Python (see
:func:`blackbox._api.attack`) and returns an :class:`~blackbox.experiment.pipeline.Outcome`; the
commands are ``python -m blackbox``, ``blackbox.compare``, ``blackbox.robustness`` and the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Outcome", "attack"]

if TYPE_CHECKING:
    from blackbox._api import attack
    from blackbox.experiment.pipeline import Outcome


def __getattr__(name: str) -> object:
    # Imported on first use: ``python -m blackbox.<command>`` and ``import targets`` stay light.
    if name == "attack":
        from blackbox._api import attack

        return attack
    if name == "Outcome":
        from blackbox.experiment.pipeline import Outcome

        return Outcome
    raise AttributeError(f"module 'blackbox' has no attribute {name!r}")
