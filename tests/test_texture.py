"""``search=texture``: fine textures on a network's square cells, and the salient-cell first trial."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from blackbox.attacks import AttackProblem
from blackbox.core.goal import Goal
from blackbox.core.images import load_bundled
from blackbox.search import PatchSearch, render_trial
from blackbox.search.features import (
    FeatureSpaceError,
    check_feature_space,
    feature_distributions,
    grid_shape,
    prior_params,
    render_delta,
)
from targets import CropBox, TargetOutput, load
from tests.test_faults import compose_overrides

TEXTURE = {
    "kind": "grid",
    "n_features": 1,
    "grid": 20,
    "cells": "square",
    "margin": 0.5,
    "kinds": ["texture"],
    "prior": "salient_cell",
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


def _map_with_peak(x: int, y: int) -> TargetOutput:
    density = np.full((427, 640), -20.0, dtype=np.float32)
    density[200, 100] = 0.0  # the global peak, outside the goal
    density[y, x] = -1.0  # the goal's most salient pixel
    return TargetOutput(
        crops=[CropBox(0, 0, 427, 427, 1.0)], log_density=density, salient_point=(100.0, 200.0)
    )


def test_the_prior_picks_the_goals_most_salient_cell() -> None:
    params = prior_params(TEXTURE, BAND, 640, 427, _map_with_peak(x=430, y=300))
    assert params is not None
    assert (params["p0_x"], params["p0_y"]) == (13.5, 9.5)  # 430 // 32, 300 // 32
    assert params["p0_kind"] == "texture" and params["p0_weight"] == 1.0 and params["p0_squares"] == 4.0
    space = feature_distributions(TEXTURE, BAND, 640, 427)
    assert set(params) == set(space)
    assert all(space[k]._contains(space[k].to_internal_repr(v)) for k, v in params.items())


def test_without_a_map_the_prior_uses_the_clean_point_clipped_into_the_goal() -> None:
    crops_only = TargetOutput(
        crops=[CropBox(0, 0, 427, 427, 1.0)], log_density=None, salient_point=(100.0, 150.0)
    )
    params = prior_params(TEXTURE, BAND, 640, 427, crops_only)
    assert params is not None and (params["p0_x"], params["p0_y"]) == (12.5, 4.5)  # x 400, y 150


def test_no_prior_means_no_first_trial() -> None:
    assert prior_params({**TEXTURE, "prior": "none"}, BAND, 640, 427, _map_with_peak(430, 300)) is None
    assert (
        prior_params({k: v for k, v in TEXTURE.items() if k != "prior"}, BAND, 640, 427, _map_with_peak(1, 1))
        is None
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"cells": "round"}, "search.cells must be one of stretched, square"),
        ({"prior": "best"}, "search.prior must be one of none, salient_cell"),
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
    assert search.kinds == ["texture"] and search.cells == "square" and search.prior == "salient_cell"


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
    first = study.trials[0]
    assert first.params == pytest.approx(prior_params(TEXTURE, goal, 640, 426, clean))
    best = study.trials[result.best_trial]
    assert render_trial(problem, best.user_attrs["perturbation"]).tobytes() == result.adversarial.tobytes()
    l2 = np.sqrt((((result.adversarial.astype(float) - chelsea.pixels) / 255) ** 2).sum())
    assert l2 <= 10.0 + 1e-9
