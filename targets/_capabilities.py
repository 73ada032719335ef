"""What a target can do for an attack, declared once by the target, and the one check every attack uses.

A target declares its *outputs* (:attr:`Target.outputs <targets.Target.outputs>`: a saliency map, a
salient point, crops; a remote service declares them from its settings) and whether it gives
*gradients* (:class:`~targets.DifferentiableTarget` does). :attr:`Target.capabilities
<targets.Target.capabilities>` is the two together, as a set of :class:`Capability`. An attack
declares what it needs (``Attack.requires`` in ``blackbox.attacks``), and :func:`require` is the one
place that compares the two: every attack and every entry point calls it, so a missing capability
gives the same error everywhere, naming what is missing and what to do.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from typing import TYPE_CHECKING

from targets._errors import ConfigError

if TYPE_CHECKING:
    from targets._base import Target


class Output(str, enum.Enum):
    """What a target can give back for an image."""

    SALIENCY = "saliency"
    POINT = "point"
    CROPS = "crops"


ALL_OUTPUTS = frozenset(Output)


class Capability(str, enum.Enum):
    """What an attack may need of a target: one of its outputs, or gradients of its log-density."""

    SALIENCY = "saliency"
    POINT = "point"
    CROPS = "crops"
    GRADIENTS = "gradients"


# How a message names each capability ("needs a saliency map", "gives crops").
_WORDS = {
    Capability.SALIENCY: "a saliency map",
    Capability.POINT: "a salient point",
    Capability.CROPS: "crops",
    Capability.GRADIENTS: "gradients",
}


class MissingCapabilityError(ConfigError):
    """An attack (or a setting) needs something the target does not give; the message says what to do.

    A :class:`~targets.ConfigError` (exit 2 on the command line): it is raised before any query.
    """


def capabilities_of(outputs: Collection[Output], *, gradients: bool) -> frozenset[Capability]:
    """The capabilities of a target with these ``outputs`` that does (or does not) give ``gradients``."""
    found = {Capability(Output(output).value) for output in outputs}
    if gradients:
        found.add(Capability.GRADIENTS)
    return frozenset(found)


def describe(capabilities: Collection[Capability]) -> str:
    """``"crops only"``, ``"a salient point and crops, no gradients"``, ...: what a target gives."""
    given = [_WORDS[c] for c in Capability if c in capabilities]
    if not given:
        return "nothing"
    if len(given) == 1:
        return f"{given[0]} only"
    text = _and(given)
    return text if Capability.GRADIENTS in capabilities else f"{text}, no gradients"


def require(
    target: Target,
    needs: Collection[Capability],
    *,
    by: str,
    name: str | None = None,
    advice: str | None = None,
) -> None:
    """Raise :class:`MissingCapabilityError` unless ``target`` gives everything in ``needs``.

    ``by`` names who needs it (``"attack=pgd"``, ``"warm_start=vips_entropy"``), ``name`` the zoo name
    the user gave the target (default ``target.name``), ``advice`` what to do instead (default: what
    suits the missing capability). The message reads, e.g., "attack=pgd needs gradients;
    target=vips_entropy gives crops only: use the black-box attack ...".
    """
    missing = [c for c in Capability if c in needs and c not in target.capabilities]
    if not missing:
        return
    name = name if name is not None else target.name
    advice = advice if advice is not None else _advice(missing, name)
    raise MissingCapabilityError(
        f"{by} needs {_and([_WORDS[c] for c in missing])}; target={name} gives "
        f"{describe(target.capabilities)}: "
        f"{advice}"
    )


def _advice(missing: list[Capability], name: str) -> str:
    if Capability.GRADIENTS in missing:
        return (
            "use the black-box attack (attack=blackbox), which needs only the target's outputs, or craft on "
            "a target that gives gradients (a local saliency model, e.g. target=classic) and score on "
            f"this one with measure={name} (a transfer attack)"
        )
    return "use a target that gives it, or an attack that needs less (attack=blackbox needs only crops)"


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
