"""``search=texture``: fine textures on a network's square cells, and the salient-cell first trial."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import optuna
import pytest

from blackbox.attacks import AttackProblem
from blackbox.core.goal import Goal
from blackbox.core.images import load_bundled
from blackbox.core.metrics import perturbation_norms
from blackbox.search import PatchSearch, render_trial
from blackbox.search.features import (
    FeatureSpaceError,
    check_feature_space,
    feature_distributions,
    grid_shape,
    render_delta,
)
from blackbox.search.prior import goal_cells, prior_trials
from blackbox.settings.commands import run
from targets import CropBox, TargetOutput, load
from tests.test_faults import SMALL, compose_overrides
from tests.test_replay import replays_to_the_saved_image

TEXTURE = {
    "kind": "grid",
    "n_features": 1,
    "grid": 20,
    "cells": "square",
    "margin": 0.5,
    "kinds": ["texture"],
    "prior": "salient_cells",
    "prior_cells": 3,
    "space": {
        "w": {"low": 1.0, "high": 2.0},
        "h": {"low": 1.0, "high": 2.0},
        "weight": {"low": -1.0, "high": 1.0},
        "squares": {"low": 2.0, "high": 8.0},
    },
}
BAND = Goal(400.0, 0.0, 464.0, 426.0, "protocol", 240.0, 432.0)  # a full-height band on 640 x 427


def _texture(**values) -> dict:
    return {"x": 13.5, "y": 2.5, "w": 1, "h": 1, "kind": "texture", "weight": 1.0, "squares": 4.0} | values


def test_square_cells_follow_the_long_side() -> None:
    # twitter: 20 cells of 16 px along its 320 px copy, i.e. 32 px on a 640 px side.
    assert grid_shape(TEXTURE, 427, 640) == (20, 14, 32.0, 32.0)
    assert grid_shape(TEXTURE, 640, 427) == (14, 20, 32.0, 32.0)
    assert grid_shape({**TEXTURE, "cells": "stretched"}, 427, 640) == (20, 20, 32.0, 427 / 20)


def test_a_texture_is_a_fine_checkerboard_in_its_cell_only() -> None:
    delta = render_delta([_texture()], 427, 640, grid=20, cells="square")
    inside = delta[64:96, 416:448]  # cell (row 2, col 13)
    assert set(np.unique(inside)) == {-1.0, 1.0}
    assert np.array_equal(inside[..., 0], inside[..., 2])  # grey
    assert np.count_nonzero(delta) == 32 * 32 * 3  # nothing outside the cell
    # 4 squares per 32 px side: 8 px squares, the sign flips every 8 px along a row.
    row = inside[0, :, 0]
    assert np.array_equal(row[:8], np.full(8, row[0])) and row[8] == -row[0]
    opposite = render_delta([_texture(weight=-1.0)], 427, 640, grid=20, cells="square")
    assert np.array_equal(opposite, -delta)
    two = render_delta([_texture(w=2, h=2, x=14.0, y=3.0)], 427, 640, grid=20, cells="square")
    assert np.count_nonzero(two) == 64 * 64 * 3


def test_the_last_square_cell_is_cut_at_the_image_edge() -> None:
    delta = render_delta([_texture(y=13.5)], 427, 640, grid=20, cells="square")
    assert np.count_nonzero(delta[..., 0]) == (427 - 13 * 32) * 32  # the 14th row holds 11 px


def _map_with(*salient: tuple[int, int, float]) -> TargetOutput:
    density = np.full((427, 640), -20.0, dtype=np.float32)
    density[200, 100] = 0.0  # the global peak, outside the goal
    for x, y, value in salient:
        density[y, x] = value
    crops = [CropBox(0, 0, 427, 427, 1.0)]
    return TargetOutput(crops=crops, log_density=density, salient_point=(100.0, 200.0))


def test_the_goals_cells_are_those_the_band_overlaps() -> None:
    cells = goal_cells(TEXTURE, BAND, 640, 427)  # columns 400..464 px: cells 12..14; every row
    assert cells[:3] == [(12, 0), (13, 0), (14, 0)] and len(cells) == 3 * 14


def test_the_prior_asks_the_goals_most_salient_cells_first() -> None:
    # Cell (13, 9) holds the goal's maximum, (12, 2) the next, (14, 5) the third.
    trials = prior_trials(
        TEXTURE, BAND, 640, 427, _map_with((430, 300, -1.0), (401, 70, -2.0), (450, 170, -3.0))
    )
    assert [(t["p0_x"], t["p0_y"]) for t in trials] == [(13.5, 9.5), (12.5, 2.5), (14.5, 5.5)]
    first = trials[0]
    assert first["p0_kind"] == "texture" and first["p0_weight"] == 1.0 and first["p0_squares"] == 4.0
    assert (first["p0_w"], first["p0_h"]) == (1.0, 1.0)
    space = feature_distributions(TEXTURE, BAND, 640, 427)
    for params in trials:
        assert set(params) == set(space)
        assert all(space[k]._contains(space[k].to_internal_repr(v)) for k, v in params.items())


def test_a_maximum_outside_the_goal_does_not_count() -> None:
    # The peak at x=100 is outside the band: only the band's own pixels rank its cells.
    trials = prior_trials({**TEXTURE, "prior_cells": 1}, BAND, 640, 427, _map_with((463, 420, -5.0)))
    [params] = trials
    # The last row's centre lies past the image (427 px): clipped into the space, still row 13.
    assert params["p0_x"] == 14.5 and int(params["p0_y"]) == 13 and params["p0_y"] == pytest.approx(427 / 32)


def test_without_a_map_the_prior_sweeps_the_goals_middle_column_nearest_the_point_first() -> None:
    crops = [CropBox(0, 0, 427, 427, 1.0)]
    crops_only = TargetOutput(crops=crops, log_density=None, salient_point=(100.0, 150.0))
    trials = prior_trials(TEXTURE, BAND, 640, 427, crops_only)  # prior_cells (3) caps only maps
    assert len(trials) == 14 and {t["p0_x"] for t in trials} == {13.5}  # the band's centre, 432 px
    rows = [int(t["p0_y"]) for t in trials]
    assert rows[0] == 4 and set(rows[1:3]) == {3, 5} and sorted(rows) == list(range(14))  # y 150 px first


def test_a_row_band_is_swept_along_its_columns() -> None:
    band = Goal(0.0, 200.0, 639.0, 264.0, "protocol", 100.0, 232.0, axis="y")
    crops_only = TargetOutput(
        crops=[CropBox(0, 0, 640, 300, 2.0)], log_density=None, salient_point=(330.0, 40.0)
    )
    trials = prior_trials(TEXTURE, band, 640, 427, crops_only)
    assert {t["p0_y"] for t in trials} == {7.5} and len(trials) == 20  # the band's centre row, 232 px
    assert int(trials[0]["p0_x"]) == 10  # x 330 px first


def test_no_prior_means_no_first_trials() -> None:
    assert prior_trials({**TEXTURE, "prior": "none"}, BAND, 640, 427, _map_with((430, 300, -1.0))) == []
    unset = {k: v for k, v in TEXTURE.items() if k != "prior"}
    assert prior_trials(unset, BAND, 640, 427, _map_with((430, 300, -1.0))) == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"cells": "round"}, "search.cells must be one of stretched, square"),
        ({"prior": "best"}, "search.prior must be one of none, salient_cells"),
        ({"prior_cells": 0}, "search.prior_cells must be a whole number >= 1"),
        ({"space": {"squares": {"low": 0.5, "high": 8.0}}}, "squares per cell side"),
        ({"kinds": ["texture", "stripes"]}, "search.kinds"),
    ],
)
def test_bad_texture_spaces_are_refused_saying_what_to_use(change: dict, says: str) -> None:
    with pytest.raises(FeatureSpaceError, match=says):
        check_feature_space({**TEXTURE, **change})


def test_the_shipped_config_is_this_space() -> None:
    search = compose_overrides(["search=texture"]).search
    check_feature_space(search)
    assert search.kinds == ["texture"] and search.cells == "square" and search.prior == "salient_cells"


def test_a_texture_search_asks_the_prior_first_and_replays() -> None:
    chelsea = load_bundled("chelsea")
    target = load("classic")
    clean = target.query([chelsea.as_float])[0]
    goal = Goal(400.0, 0.0, 464.0, 425.0, "protocol", 240.0, 432.0)
    problem = AttackProblem(chelsea, clean, goal, 10.0, "l2", "classic", "point")
    storage = optuna.storages.InMemoryStorage()
    search = PatchSearch(
        sampler_factory=lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=3),
        sampler_name="tpe",
        search=TEXTURE,
        budget=6,
        batch_size=2,
        early_stop=False,
        storage=storage,
        progress=False,
    )
    result = search.run(problem, target)
    assert result.queries == 6
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    expected = prior_trials(TEXTURE, goal, 640, 426, clean)
    assert len(expected) == 3
    for trial, params in zip(study.trials, expected, strict=False):
        assert trial.params == pytest.approx(params)
    best = study.trials[result.best_trial]
    assert render_trial(problem, best.user_attrs["perturbation"]).tobytes() == result.adversarial.tobytes()
    assert perturbation_norms(chelsea.pixels, result.adversarial)["l2"] <= 10.0 + 1e-9


def test_a_texture_run_with_shrink_rounds_replays_to_its_saved_adversarial(tmp_path) -> None:
    # The whole pipeline (python -m blackbox's run, journal storage) and blackbox.replay on its folder:
    # the reported image is a bisection probe or a round's trial (its config carries the round).
    overrides = [
        *SMALL,
        "attack=blackbox",
        "eps_inf=null",  # L2 alone: the shrink's rounds are what this test is about
        "search=texture",
        "dataset.names=[chelsea]",
        "eps=20",
        "budget=40",
    ]
    overrides += ["shrink.enabled=true", "shrink.rounds=5", "shrink.patience=4", "early_stop=true"]
    cfg = compose_overrides(overrides)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        summary = run(cfg, tmp_path, target_name="classic")
    [record] = summary.records
    assert record["success"] and record["l2"] < record["first_success_l2"] <= 20.0 + 1e-9
    assert replays_to_the_saved_image(tmp_path, cfg, "chelsea")
