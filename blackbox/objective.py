"""Scores computed from a target's outputs only: what the black-box search maximises.

*Saliency margin* (targets that give a map): the best log-density inside the goal minus the best
outside it. It is positive exactly when the map's maximum lies in the goal, and it keeps improving
as the goal gets relatively more salient, so the search has a slope to climb well before success.

*Crop score* (targets that give only a point or only crops): ``-d`` where ``d`` is the distance,
as a fraction of the image width, from the salient point to the goal box (0 inside), plus the mean
over aspect ratios of the fraction of the goal box each crop contains. Without a point the salient
point is estimated from the crops: the cut side's window is centred on it unless slid at an edge.
It is piecewise constant, which TPE handles, but it gives less slope than the margin.
"""

from __future__ import annotations

import numpy as np

from blackbox.goal import Goal, goal_slices
from targets import CropBox, TargetOutput
from targets.crop import estimate_point  # the inverse of the crop policy; re-exported here


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


def crop_score(output: TargetOutput, goal: Goal, width: int, height: int, *, has_point: bool) -> float:
    point = output.salient_point if has_point else estimate_point(output.crops, width, height)
    dx = max(goal.x0 - point[0], 0.0, point[0] - goal.x1)
    dy = max(goal.y0 - point[1], 0.0, point[1] - goal.y1)
    distance = float(np.hypot(dx, dy)) / width
    coverage = float(np.mean([goal_coverage(c, goal) for c in output.crops])) if output.crops else 0.0
    return coverage - distance


def score(output: TargetOutput, goal: Goal, width: int, height: int, *, has_point: bool = True) -> float:
    """The margin when the output has a map, else the crop score."""
    if output.log_density is not None:
        return saliency_margin(output.log_density, goal)
    return crop_score(output, goal, width, height, has_point=has_point)


def succeeded(output: TargetOutput, goal: Goal, width: int, height: int, *, has_point: bool = True) -> bool:
    """Success: the (given or estimated) salient point lies in the goal."""
    point = output.salient_point if has_point else estimate_point(output.crops, width, height)
    return goal.contains(point)
