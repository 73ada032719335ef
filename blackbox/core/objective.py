"""Scores computed from a target's outputs only: what the black-box search maximises.

*Saliency margin* (targets that give a map): the best log-density inside the goal minus the best
outside it. It is positive exactly when the map's maximum lies in the goal, and it keeps improving
as the goal gets relatively more salient, so the search has a slope to climb well before success.

*Crop score* (targets that give only a point or only crops): ``-d`` where ``d`` is the distance,
as a fraction of the image width, from the salient point to the goal box (0 inside), plus the mean
over aspect ratios of the fraction of the goal box each crop contains. Without a point the salient
point is estimated from the crops: the cut side's window is centred on it unless slid at an edge.
It is piecewise constant, which TPE handles, but it gives less slope than the margin.

*Success rules* (the ``success`` setting, :data:`SUCCESS_SETTINGS`):

* ``point``: the salient point (given, or estimated from the crops) lies in the goal.
* ``crops``: the goal lies inside the crop of every aspect ratio whose crop can hold it.
* ``any_crop``: the goal lies inside the crop of at least one such aspect ratio.
* ``auto`` (the default): ``point`` for targets that give a point or a map, ``crops`` for crop-only ones.

For the crop rules, a crop is *judged* when it can hold the goal (it is at least as long as the
goal along every axis the goal constrains; a full-height band constrains columns only) and could
miss it (some position of a crop that size would not show it). A crop bound to show the goal
wherever it lies (say a full-width crop and a full-height band) tells nothing and is not judged;
when every crop that can hold the goal is bound to show it, both rules hold already (on the clean
image too, so the image counts as trivial, never as a success). When no crop can hold it, neither
rule applies (``None``). Every side is read with :func:`targets.crop.uncut`: a crop a few pixels
short of the full side is the full side (a cropper's rounding, not a cut).

*Crops score* (the objective under ``crops`` and ``any_crop`` for targets without a map): per judged
crop, the fraction of the goal it covers minus how far it must still move to hold the goal (in
fractions of the side it moves along), so the search has a slope toward every crop moving; the
mean over judged crops for ``crops``, the best crop for ``any_crop``. 1 exactly when the rule holds.
Targets with a map keep the margin under every rule: their crops follow the map's maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from blackbox.core.goal import Goal, goal_slices
from targets import CropBox, Target, TargetOutput
from targets.crop import estimate_point, uncut  # the inverse of the crop policy; re-exported here

SuccessRule = Literal["point", "crops", "any_crop"]
SUCCESS_RULES: tuple[SuccessRule, ...] = ("point", "crops", "any_crop")
#: The values the ``success`` setting takes: a rule, or ``auto`` (see :func:`success_rule`).
SUCCESS_SETTINGS: tuple[str, ...] = ("auto", *SUCCESS_RULES)


def success_rule(setting: str, target: Target) -> SuccessRule:
    """The rule a ``success`` setting means for ``target``.

    ``auto`` is ``point`` when the target gives a point or a map, else ``crops``. Raises
    ``ValueError`` naming the choices for any other value.
    """
    if setting not in SUCCESS_SETTINGS:
        raise ValueError(f"success must be one of {', '.join(SUCCESS_SETTINGS)}, got {setting!r}")
    if setting != "auto":
        return setting  # type: ignore[return-value]
    return "point" if target.gives_point else "crops"


def saliency_margin(log_density: np.ndarray, goal: Goal) -> float:
    height, width = log_density.shape
    inside_mask = np.zeros((height, width), dtype=bool)
    inside_mask[goal_slices(goal, height, width)] = True  # the closed box's pixels (goal.py's edges)
    inside = log_density[inside_mask]
    outside = log_density[~inside_mask]
    if inside.size == 0:
        raise ValueError("the goal box covers no pixel of the map")
    if outside.size == 0:
        return float("inf")
    return float(inside.max() - outside.max())


def goal_coverage(crop: CropBox, goal: Goal) -> float:
    """Fraction of the goal box's area inside ``crop``."""
    ix = max(0.0, min(crop.right, goal.x1) - max(crop.left, goal.x0))
    iy = max(0.0, min(crop.bottom, goal.y1) - max(crop.top, goal.y0))
    area = (goal.x1 - goal.x0) * (goal.y1 - goal.y0)
    return ix * iy / area if area > 0 else 0.0


def salient_point(output: TargetOutput, width: int, height: int, *, has_point: bool) -> tuple[float, float]:
    """The target's salient point, or (``has_point=False``: a crop-only target) the one its crops imply."""
    return output.salient_point if has_point else estimate_point(output.crops, width, height)


def crop_score(output: TargetOutput, goal: Goal, width: int, height: int, *, has_point: bool) -> float:
    """Mean goal coverage of the crops minus the point's distance to the goal (fraction of the width)."""
    point = salient_point(output, width, height, has_point=has_point)
    dx = max(goal.x0 - point[0], 0.0, point[0] - goal.x1)
    dy = max(goal.y0 - point[1], 0.0, point[1] - goal.y1)
    distance = float(np.hypot(dx, dy)) / width
    crops = [uncut(c, width, height) for c in output.crops]
    coverage = float(np.mean([goal_coverage(c, goal) for c in crops])) if crops else 0.0
    return coverage - distance


def _axes(goal: Goal, crop: CropBox, width: int, height: int) -> list[tuple[float, float, int, int, int]]:
    """Per axis the goal constrains: ``(goal start, goal end, crop start, crop length, image side)``.

    A goal spanning a whole side (the protocol's full-height band) does not constrain that axis.
    """
    axes = []
    if not (goal.x0 <= 0 and goal.x1 >= width):
        axes.append((goal.x0, goal.x1, crop.left, crop.width, width))
    if not (goal.y0 <= 0 and goal.y1 >= height):
        axes.append((goal.y0, goal.y1, crop.top, crop.height, height))
    return axes


def crop_shows_goal(crop: CropBox, goal: Goal, width: int, height: int) -> bool:
    """Whether ``crop`` (read with :func:`uncut`) holds the goal along every axis the goal constrains.

    The one definition is :meth:`Goal.shown_by`; this is its (crop, goal, width, height) spelling.
    """
    return goal.shown_by(crop, height, width)


def _can_hold(crop: CropBox, goal: Goal, width: int, height: int) -> bool:
    return all(length >= g1 - g0 for g0, g1, _, length, _ in _axes(goal, crop, width, height))


def _bound_to_show(crop: CropBox, goal: Goal, width: int, height: int) -> bool:
    # Every position 0..side-length of a crop this long holds [g0, g1].
    return all(
        g1 <= length and side - length <= g0 for g0, g1, _, length, side in _axes(goal, crop, width, height)
    )


def judged_crops(crops: Sequence[CropBox], goal: Goal, width: int, height: int) -> tuple[list[CropBox], bool]:
    """The crops (read with :func:`uncut`) the crop rules judge, and whether any crop can hold the goal."""
    snapped = [uncut(c, width, height) for c in crops]
    holding = [c for c in snapped if _can_hold(c, goal, width, height)]
    return [c for c in holding if not _bound_to_show(c, goal, width, height)], bool(holding)


def crops_rule(
    crops: Sequence[CropBox], goal: Goal, width: int, height: int, *, every: bool = True
) -> bool | None:
    """The ``crops`` rule (``every``) or the ``any_crop`` rule; ``None`` when no crop can hold the goal."""
    judged, any_holds = judged_crops(crops, goal, width, height)
    if not any_holds:
        return None
    if not judged:
        return True  # every crop that can hold the goal is bound to show it
    shown = [crop_shows_goal(c, goal, width, height) for c in judged]
    return all(shown) if every else any(shown)


def _crop_progress(crop: CropBox, goal: Goal, width: int, height: int) -> float:
    """Coverage of the goal by ``crop`` minus how far it must move to hold it (fractions of each side)."""
    cover, move = 1.0, 0.0
    for g0, g1, start, length, side in _axes(goal, crop, width, height):
        cover *= max(0.0, min(start + length, g1) - max(start, g0)) / (g1 - g0)
        # Positions holding [g0, g1] are g1 - length .. g0; the distance from there, over the side.
        move += max(0.0, (g1 - length) - start, start - g0) / side
    return cover - move


def crops_score(
    output: TargetOutput, goal: Goal, width: int, height: int, *, every: bool = True, has_point: bool = False
) -> float:
    """The objective of the ``crops`` (``every``) and ``any_crop`` rules; 1 exactly when the rule holds.

    Without a crop to judge it is 1 when the rule holds, else the point-based :func:`crop_score`.
    """
    judged, any_holds = judged_crops(output.crops, goal, width, height)
    if not judged:
        return 1.0 if any_holds else crop_score(output, goal, width, height, has_point=has_point)
    progress = [_crop_progress(c, goal, width, height) for c in judged]
    return float(np.mean(progress)) if every else float(max(progress))


def score(
    output: TargetOutput,
    goal: Goal,
    width: int,
    height: int,
    *,
    has_point: bool = True,
    rule: SuccessRule = "point",
) -> float:
    """The margin when the output has a map; else the crop score (``point``) or the crops score."""
    if output.log_density is not None:
        return saliency_margin(output.log_density, goal)
    if rule == "point":
        return crop_score(output, goal, width, height, has_point=has_point)
    return crops_score(output, goal, width, height, every=rule == "crops", has_point=has_point)


def success_by_rule(
    output: TargetOutput, goal: Goal, width: int, height: int, *, has_point: bool = True
) -> dict[str, bool | None]:
    """Every rule's verdict, ``{"point": ..., "crops": ..., "any_crop": ...}`` (``None``: does not apply)."""
    point = salient_point(output, width, height, has_point=has_point)
    return {
        "point": goal.contains(point),
        "crops": crops_rule(output.crops, goal, width, height, every=True),
        "any_crop": crops_rule(output.crops, goal, width, height, every=False),
    }


def succeeded(
    output: TargetOutput,
    goal: Goal,
    width: int,
    height: int,
    *,
    has_point: bool = True,
    rule: SuccessRule = "point",
) -> bool:
    """Success under ``rule`` (module doc); a rule that does not apply is no success."""
    if rule == "point":
        point = salient_point(output, width, height, has_point=has_point)
        return goal.contains(point)
    return bool(crops_rule(output.crops, goal, width, height, every=rule == "crops"))
