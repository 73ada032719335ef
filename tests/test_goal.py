from __future__ import annotations

import numpy as np
import pytest

from blackbox.core.goal import Goal, GoalError, column_profile, default_goal, local_maxima, user_goal
from targets import CropBox


def log_density_with_columns(width: int, height: int, peaks: list[tuple[int, float]]) -> np.ndarray:
    xs = np.arange(width)
    profile = sum(h * np.exp(-((xs - c) ** 2) / (2 * 4.0**2)) for c, h in peaks) + 1e-3
    density = np.tile(profile, (height, 1))
    return np.log(density / density.sum())


def test_protocol_goal_is_the_second_highest_maximum() -> None:
    log_density = log_density_with_columns(200, 50, [(40, 1.0), (150, 0.6), (100, 0.3)])
    goal = default_goal(width=200, height=50, log_density=log_density, salient_point=(40, 25))
    assert goal.source == "protocol"
    assert goal.peak_x == 40 and goal.target_x == 150
    assert goal.x0 <= 150 < goal.x1 and (goal.y0, goal.y1) == (0, 50)
    assert goal.x1 - goal.x0 == pytest.approx(20)  # band_width 0.1 of 200 px


def test_single_maximum_falls_back_to_the_side_with_more_room() -> None:
    log_density = log_density_with_columns(200, 50, [(150, 1.0)])
    goal = default_goal(width=200, height=50, log_density=log_density, salient_point=(150, 25))
    assert goal.source == "fallback"
    assert goal.target_x == pytest.approx(150 - 0.15 * 200)


def test_crop_only_target_uses_the_salient_point() -> None:
    goal = default_goal(width=200, height=50, log_density=None, salient_point=(20, 25))
    assert goal.source == "fallback" and goal.peak_x == 20 and goal.target_x == pytest.approx(50)


def test_crop_only_goal_lies_just_beyond_the_narrowest_crop() -> None:
    crops = [CropBox(0, 10, 640, 358, 0.56), CropBox(150, 0, 427, 427, 1.0), CropBox(200, 0, 213, 427, 2.0)]
    goal = default_goal(width=640, height=427, log_density=None, salient_point=(306, 200), crops=crops)
    assert goal.source == "beyond_crop"
    assert goal.x0 > 413 and goal.x1 - goal.x0 == pytest.approx(64)  # right of the 2.0 crop: more room
    assert not goal.shown_by(crops[2], 427, 640) and goal.shown_by(crops[0], 427, 640)
    # No room beside the narrowest crop for a band: the fallback rule.
    wide = [CropBox(10, 0, 620, 427, 1.0)]
    narrow_room = default_goal(width=640, height=427, log_density=None, salient_point=(320, 200), crops=wide)
    assert narrow_room.source == "fallback"
    # A map always runs the protocol or its fallback, crops or not.
    log_density = log_density_with_columns(640, 427, [(300, 1.0)])
    assert (
        default_goal(
            width=640, height=427, log_density=log_density, salient_point=(300, 200), crops=crops
        ).source
        == "fallback"
    )


def test_band_is_kept_inside_the_image() -> None:
    log_density = log_density_with_columns(200, 50, [(100, 1.0), (198, 0.5)])
    goal = default_goal(width=200, height=50, log_density=log_density, salient_point=(100, 25))
    assert goal.x1 <= 200 and goal.x0 >= 0 and goal.x1 - goal.x0 == pytest.approx(20)


def test_local_maxima_order_and_profile() -> None:
    log_density = log_density_with_columns(100, 10, [(20, 0.5), (70, 1.0)])
    assert list(local_maxima(column_profile(log_density))[:2]) == [70, 20]


def test_user_box_and_point() -> None:
    box = user_goal(width=200, height=100, peak_x=10, box=(150, 10, 190, 60))
    assert box.source == "user_box" and box.contains((160, 20)) and not box.contains((100, 20))
    point = user_goal(width=200, height=100, peak_x=10, point=(180, 50))
    assert point.source == "user_point" and point.contains((180, 50))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"box": (150, 10, 250, 60)},
        {"box": (-1, 0, 10, 10)},
        {"box": (50, 10, 40, 60)},
        {"box": (1, 2, 3)},
        {"point": (200, 50)},
        {"point": (10, -1)},
        {},
    ],
)
def test_goal_outside_the_image_is_a_clear_error(kwargs) -> None:
    with pytest.raises(GoalError):
        user_goal(width=200, height=100, peak_x=10, **kwargs)


def test_a_band_is_shown_by_a_crop_holding_its_columns() -> None:
    band = Goal(100, 0, 164, 400, "protocol", peak_x=300, target_x=132)
    # A crop that cuts the height can never hold a full-height band whole: only columns count.
    assert band.shown_by(CropBox(0, 20, 640, 358, 0.56), image_height=400)
    assert band.shown_by(CropBox(90, 0, 200, 400, 2.0), image_height=400)
    assert not band.shown_by(CropBox(120, 0, 200, 400, 2.0), image_height=400)


def test_a_box_must_be_wholly_inside_the_crop() -> None:
    box = Goal(100, 300, 164, 380, "user_box", peak_x=300, target_x=132)
    assert not box.shown_by(CropBox(0, 0, 640, 358, 0.56), image_height=400)
    assert box.shown_by(CropBox(0, 42, 640, 358, 0.56), image_height=400)


def test_band_edges_are_inside_decided_once_for_points_and_maps() -> None:
    """A goal box is closed: a salient point exactly on either edge is a success, and the margin the
    search maximises says so too (the map's argmax on the edge column gives a margin > 0)."""
    from blackbox.core.objective import saliency_margin, succeeded
    from targets import TargetOutput

    band = Goal(288.0, 0.0, 352.0, 400.0, "protocol", peak_x=100.0, target_x=320.0)
    for x in (288.0, 352.0, 320.0):
        assert band.contains((x, 200.0))
    for x in (287.99, 352.01):
        assert not band.contains((x, 200.0))
    # twitter's point takes grid-cell centres: one exactly on the right edge is inside.
    assert succeeded(TargetOutput((352.0, 8.0), ()), band, 640, 400)
    for column, inside in ((352, True), (288, True), (353, False), (287, False)):
        log_density = np.full((400, 640), -20.0)
        log_density[200, column] = -1.0
        assert (saliency_margin(log_density, band) > 0) == inside, column


def test_a_row_band_is_shown_by_a_crop_holding_its_rows() -> None:
    band = Goal(0, 100, 320, 260, "protocol", peak_x=1400, target_x=180, axis="y")
    assert band.shown_by(CropBox(0, 90, 320, 180, 0.56), image_height=1600, image_width=320)
    assert not band.shown_by(CropBox(0, 120, 320, 180, 0.56), image_height=1600, image_width=320)
    assert band.extent(320, 1600) == 1600
