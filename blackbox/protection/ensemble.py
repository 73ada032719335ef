"""The ensemble objective: one number for how well a candidate keeps the box in every crop.

The search scores a candidate on every (cropper, treatment) pair (:mod:`.transforms`). Each pair
gives a *margin* in [-1, 1] that is > 0 or == 0 exactly when every judged crop of that cropper keeps
the box (:func:`pair_margin`):

* **a cropper with a map whose crops follow Twitter's policy** (``classic``, ``twitter``): the crops
  keep the box exactly when the map's maximum lies in the *keep region*, the salient points whose
  crops all hold the box (:func:`keep_region`). The margin is ``tanh`` of the best log-density inside
  that region minus the best outside it, the saliency margin of :mod:`blackbox.core.objective`
  against this region instead of the box: it has a slope well before the crops move.
* **any other cropper** (crops only, or a point and its own crops): the crops score of the ``crops``
  rule (:func:`blackbox.core.objective.crops_score`: per judged crop, coverage minus the distance it
  must still move), minus 1 and floored at -1, so 0 exactly when every crop keeps the box.

The pairs' margins become one value by a *rule* (:data:`RULES`):

* ``worst`` (the default): the smallest margin, plus a hundredth of the mean to break ties (the
  search first repairs the pair that holds out, as a max-min / worst-case ensemble does);
* ``mean``: the mean margin (every pair's progress counts alike).

docs/protect.md gives the figures the default was chosen on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from blackbox.core.goal import Goal
from blackbox.core.objective import crops_rule, crops_score
from targets import Target, TargetOutput
from targets.crop import crop_box

Rule = Literal["worst", "mean"]
RULES: tuple[Rule, ...] = ("worst", "mean")
# The share of the mean margin the ``worst`` rule adds to break ties between equal minima.
TIE_BREAK = 0.01

__all__ = ["RULES", "PairScore", "aggregate", "box_goal", "keep_region", "pair_margin", "policy_map"]


def box_goal(box: Sequence[float], size: tuple[int, int], full_size: tuple[int, int]) -> Goal:
    """The goal for ``box`` (``[x0, y0, x1, y1]`` in pixels of an image of ``full_size``) on an image
    of ``size`` (both ``(width, height)``): the box scaled with the image."""
    sx, sy = size[0] / full_size[0], size[1] / full_size[1]
    x0, y0, x1, y1 = (float(v) for v in box)
    return Goal(x0 * sx, y0 * sy, min(x1 * sx, size[0]), min(y1 * sy, size[1]), "user_box", 0.0, 0.0)


@lru_cache(maxsize=64)
def _keep_axes(
    goal_box: tuple[float, float, float, float], width: int, height: int, ratios: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    goal = Goal(*goal_box, "user_box", 0.0, 0.0)
    xs = np.ones(width, dtype=bool)
    ys = np.ones(height, dtype=bool)
    mid_x, mid_y = width / 2, height / 2
    for ratio in ratios:
        # A crop cuts one side only (Twitter's policy); its position follows the point along that side.
        probe = crop_box(width, height, (mid_x, mid_y), ratio)
        if probe.width < width:
            xs &= [
                goal.shown_by(crop_box(width, height, (x, mid_y), ratio), height, width) for x in range(width)
            ]
        else:
            ys &= [
                goal.shown_by(crop_box(width, height, (mid_x, y), ratio), height, width)
                for y in range(height)
            ]
    return xs, ys


def keep_region(goal: Goal, width: int, height: int, aspect_ratios: Sequence[float]) -> np.ndarray:
    """``(H, W)`` bool: the salient points whose Twitter-policy crops (one per ratio) all keep ``goal``."""
    xs, ys = _keep_axes(goal.box, int(width), int(height), tuple(float(r) for r in aspect_ratios))
    return ys[:, None] & xs[None, :]


def policy_map(target: Target, output: TargetOutput) -> bool:
    """Whether ``output``'s crops are Twitter's policy around its map's maximum (the map rule applies)."""
    return output.log_density is not None and target.differentiable


@dataclass(frozen=True)
class PairScore:
    """One (cropper, treatment) pair: its margin in [-1, 1] and whether every judged crop keeps the box."""

    margin: float
    kept: bool


def pair_margin(target: Target, output: TargetOutput, goal: Goal, width: int, height: int) -> PairScore:
    """The margin of one cropper's answer on one treated image (module doc).

    ``width``, ``height``: the treated image's size; ``goal`` in its pixels.
    """
    kept = bool(crops_rule(output.crops, goal, width, height, every=True))
    if policy_map(target, output):
        assert output.log_density is not None
        region = keep_region(goal, width, height, target.aspect_ratios)
        if region.all():
            return PairScore(1.0, kept)
        if not region.any():
            return PairScore(-1.0, kept)
        inside = float(output.log_density[region].max())
        outside = float(output.log_density[~region].max())
        return PairScore(math.tanh(inside - outside), kept)
    value = crops_score(output, goal, width, height, every=True, has_point=target.gives_point)
    return PairScore(max(-1.0, min(0.0, value - 1.0)), kept)


def aggregate(scores: Sequence[PairScore], rule: Rule = "worst") -> float:
    """The ensemble's value under ``rule`` (module doc). Raises ``ValueError`` for another rule or no pair."""
    if rule not in RULES:
        raise ValueError(f"ensemble must be one of {', '.join(RULES)}, got {rule!r}")
    if not scores:
        raise ValueError("no (cropper, treatment) pair to score")
    margins = np.array([s.margin for s in scores], dtype=np.float64)
    if rule == "mean":
        return float(margins.mean())
    return float(margins.min() + TIE_BREAK * margins.mean())
