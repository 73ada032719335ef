from __future__ import annotations

import numpy as np

from blackbox.core.goal import Goal
from blackbox.core.objective import crop_score, estimate_point, saliency_margin, score, succeeded
from targets import TargetOutput, crop_boxes

GOAL = Goal(100, 0, 120, 50, "user_box", peak_x=30, target_x=110)


def density(peak: tuple[int, int], width: int = 200, height: int = 50) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    logits = -((xx - peak[0]) ** 2 + (yy - peak[1]) ** 2) / 50.0
    return logits - np.log(np.exp(logits).sum())


def test_margin_sign_matches_where_the_maximum_is() -> None:
    assert saliency_margin(density((110, 25)), GOAL) > 0
    assert saliency_margin(density((30, 25)), GOAL) < 0


def test_margin_grows_as_the_peak_approaches() -> None:
    far, near = saliency_margin(density((30, 25)), GOAL), saliency_margin(density((90, 25)), GOAL)
    assert near > far


def test_crop_score_without_a_map() -> None:
    inside = TargetOutput((110, 25), crop_boxes(200, 50, (110, 25)))
    outside = TargetOutput((20, 25), crop_boxes(200, 50, (20, 25)))
    assert crop_score(inside, GOAL, 200, 50, has_point=True) > crop_score(
        outside, GOAL, 200, 50, has_point=True
    )
    assert score(inside, GOAL, 200, 50) == crop_score(inside, GOAL, 200, 50, has_point=True)


def test_point_estimated_from_crops() -> None:
    crops = crop_boxes(200, 50, (110, 25), (1.0,))
    x, _ = estimate_point(crops, 200, 50)
    assert abs(x - 110) <= 1
    assert succeeded(TargetOutput((0, 0), crops), GOAL, 200, 50, has_point=False)
