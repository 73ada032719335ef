"""Grid features (``search=grid``, blackbox/search/features.py): layout, budget, replay, bad input, effect."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import optuna
import pytest
import skimage.data
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from blackbox.attacks import AttackProblem
from blackbox.core.goal import Goal, default_goal, goal_axis
from blackbox.core.images import LoadedImage
from blackbox.core.objective import succeeded
from blackbox.search import PatchSearch, render_trial
from blackbox.search.features import (
    FeatureSpaceError,
    cell_region,
    check_feature_space,
    feature_config,
    feature_distributions,
    render_delta,
    render_features,
)
from blackbox.search.proposals import make_proposal
from blackbox.settings.commands import run
from blackbox.settings.preflight import preflight
from targets import UserError
from targets.vips import VipsSmartcrop
from tests.test_faults import SMALL, compose_overrides
from tests.test_patch_search import CountingTarget
from tests.test_replay import replays_to_the_saved_image

GRID = {
    "kind": "grid",
    "n_features": 2,
    "grid": 32,
    "margin": 0.5,
    "kinds": ["checker", "noise", "colour"],
    "space": {"w": {"low": 1.0, "high": 8.0}, "h": {"low": 1.0, "high": 32.0}},
}
BAND = Goal(320.0, 0.0, 384.0, 479.0, "beyond_crop", 100.0, 352.0)  # a full-height band on 640x480


def _feature(kind: str, **values) -> dict:
    return {
        "x": 16.0,
        "y": 16.0,
        "w": 2,
        "h": 2,
        "kind": kind,
        "weight": 1.0,
        "colour": [1.0, 0.0, 0.0],
    } | values


def test_feature_centres_stay_near_the_goal_in_grid_cells() -> None:
    x0, y0, x1, y1 = cell_region(GRID, BAND, 640, 480)
    # The band grown by half its width on each side: columns 288..416 px, 20 px a cell.
    assert (x0, x1) == pytest.approx((14.4, 20.8))
    assert y0 == 0.0 and y1 == pytest.approx(32.0)  # the band's full height, inside the last cell
    dims = feature_distributions(GRID, BAND, 640, 480)
    assert (dims["p1_x"].low, dims["p1_x"].high) == pytest.approx((14.4, 20.8))
    assert dims["p0_kind"].choices == ("checker", "noise", "colour")
    assert {"p0_r", "p0_g", "p0_b"} <= set(dims)
    no_colour = feature_distributions({**GRID, "kinds": ["checker"]}, BAND, 640, 480)
    assert "p0_r" not in no_colour and no_colour["p0_kind"].choices == ("checker",)


def test_a_checker_alternates_on_the_shrink_grid_cells() -> None:
    delta = render_delta([_feature("checker", x=3.0, y=3.0, w=2, h=2)], 480, 640)
    # Cells 2..3 x 2..3: 20 x 15 px cells, the sign flips from cell to cell (even cells -1), grey.
    assert np.all(delta[30:45, 40:60] == -1.0) and np.all(delta[30:45, 60:80] == 1.0)
    assert np.all(delta[45:60, 40:60] == 1.0) and np.all(delta[45:60, 60:80] == -1.0)
    assert np.count_nonzero(delta[..., 0]) == 30 * 40
    assert np.array_equal(delta[..., 0], delta[..., 2])
    flipped = render_delta([_feature("checker", x=3.0, y=3.0, w=2, h=2, weight=-1.0)], 480, 640)
    assert np.array_equal(flipped, -delta)


def test_noise_is_seeded_and_colour_is_flat() -> None:
    noise = render_delta([_feature("noise", w=4, h=4)], 480, 640)
    assert np.array_equal(noise, render_delta([_feature("noise", w=4, h=4)], 480, 640))
    inside = noise[210:270, 280:360, 0]
    assert set(np.unique(inside)) == {-1.0, 1.0} and np.count_nonzero(noise[..., 0]) == inside.size
    colour = render_delta([_feature("colour", weight=0.5, colour=[1.0, -0.5, 0.0])], 480, 640)
    assert np.array_equal(np.unique(colour[225:255, 300:340].reshape(-1, 3), axis=0), [[0.5, -0.25, 0.0]])


@pytest.mark.parametrize("eps", [1.0, 10.0, 40.0])
def test_the_budget_holds_and_a_render_replays_byte_identically(eps: float) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    dims = feature_distributions(GRID, BAND, 640, 480)
    for _ in range(5):
        trial = study.ask(dims)
        config = feature_config(GRID, params=trial.params, eps=eps, norm="l2")
        adversarial = render_features(clean, config)
        assert adversarial.dtype == np.uint8
        l2 = np.sqrt((((adversarial.astype(float) - clean) / 255) ** 2).sum())
        assert 0 < l2 <= eps + 1e-9
        assert render_features(clean, config).tobytes() == adversarial.tobytes()
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"n_features": 0}, "search.n_features must be a whole number >= 1"),
        ({"grid": 1}, "search.grid must be a whole number >= 2"),
        ({"kinds": ["sparkles"]}, "search.kinds must be a non-empty list of checker, noise, colour"),
        ({"kinds": []}, "search.kinds must be a non-empty list"),
        ({"margin": -1}, "search.margin must be a number >= 0"),
        ({"space": {"w": {"low": 0.5, "high": 2.0}}}, "search.space.w is in grid cells"),
        ({"space": {"h": {"low": 9.0, "high": 2.0}}}, "search.space.h: need low <= high"),
        ({"space": {"size": {"low": 1.0, "high": 2.0}}}, "search.space has unknown keys ['size']"),
    ],
)
def test_bad_grid_spaces_are_refused_saying_what_to_use(change: dict, says: str) -> None:
    with pytest.raises(FeatureSpaceError, match=None) as caught:
        check_feature_space({**GRID, **change})
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["search=grid", "search.kinds=[sparkles]"], "search.kinds must be a non-empty list"),
        (["search=grid", "search.n_features=0"], "search.n_features must be a whole number >= 1"),
        (["search=grid", "warm_start=classic"], "warm_start fits Gaussian patches"),
    ],
)
def test_the_cli_refuses_bad_grid_settings_up_front(overrides: list[str], says: str) -> None:
    with pytest.raises(UserError) as caught:
        preflight(["target=vips_attention", *overrides])
    assert says in str(caught.value)
    preflight(["target=vips_attention", "search=grid", "success=crops"])  # the shipped space passes


@pytest.fixture(scope="module")
def chelsea() -> LoadedImage:
    pixels = np.asarray(Image.fromarray(skimage.data.chelsea()).resize((640, 426), Image.Resampling.LANCZOS))
    return LoadedImage("chelsea", "test", pixels, (451, 300))


def _problem(image: LoadedImage, target: VipsSmartcrop, eps: float) -> AttackProblem:
    clean = target.query([image.as_float])[0]
    goal = default_goal(
        width=image.width,
        height=image.height,
        log_density=None,
        salient_point=clean.salient_point,
        crops=clean.crops,
        axis=goal_axis(clean.crops, image.width, image.height),
    )
    return AttackProblem(image, clean, goal, eps, "l2", target.name, "crops")


def test_a_checker_band_on_the_goal_moves_libvips_attention(chelsea: LoadedImage) -> None:
    # What the space is for (README, "Search design"): one checker band on the goal's cells.
    target = VipsSmartcrop(interesting="attention")
    problem = _problem(chelsea, target, eps=20.0)
    goal = problem.goal
    assert not succeeded(problem.clean_output, goal, 640, 426, has_point=False, rule="crops")
    centre = (goal.x0 + goal.x1) / 2 * 32 / 640
    config = {**GRID, "eps": 20.0, "norm": "l2", "features": [_feature("checker", x=centre, w=3, h=8)]}
    output = target.query([render_features(chelsea.pixels, config).astype(np.float32) / 255])[0]
    assert succeeded(output, goal, 640, 426, has_point=False, rule="crops")


def test_a_grid_search_spends_its_budget_and_replays(chelsea: LoadedImage) -> None:
    target = VipsSmartcrop(interesting="entropy")
    problem = _problem(chelsea, target, eps=10.0)
    storage = optuna.storages.InMemoryStorage()
    search = PatchSearch(
        sampler_factory=lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        sampler_name="tpe",
        search=GRID,
        budget=7,
        batch_size=3,
        early_stop=False,
        storage=storage,
        progress=False,
    )
    result = search.run(problem, target)
    assert result.queries == 7
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 7
    best = study.trials[result.best_trial]
    assert best.user_attrs["perturbation"]["kind"] == "grid"
    assert render_trial(problem, best.user_attrs["perturbation"]).tobytes() == result.adversarial.tobytes()
    l2 = np.sqrt((((result.adversarial.astype(float) - chelsea.pixels) / 255) ** 2).sum())
    assert l2 <= 10.0 + 1e-9


def test_warm_start_is_refused_with_grid_features(chelsea: LoadedImage) -> None:
    target = VipsSmartcrop(interesting="entropy")
    search = PatchSearch(
        sampler_factory=lambda seed: optuna.samplers.RandomSampler(seed=seed),
        sampler_name="random",
        search=GRID,
        budget=2,
        progress=False,
        warm_start=lambda problem: np.zeros((426, 640, 3)),
    )
    with pytest.raises(ValueError, match="warm_start fits Gaussian patches"):
        search.run(_problem(chelsea, target, eps=10.0), target)


def test_a_grid_run_replays_to_its_saved_adversarial(tmp_path) -> None:
    # The whole pipeline (python -m blackbox's run, journal storage) and blackbox.replay on its folder.
    cfg = compose_overrides(
        [
            *SMALL,
            "attack=blackbox",
            "target=vips_entropy",
            "search=grid",
            "dataset.names=[chelsea]",
            "working_width=160",
            "eps=4",
        ]
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        summary = run(cfg, tmp_path, target_name="vips_entropy")
    assert [r["image"] for r in summary.records] == ["chelsea"]
    assert summary.records[0]["success_rule"] == "crops" and summary.records[0]["l2"] <= 4.0 + 1e-9
    assert replays_to_the_saved_image(tmp_path, cfg, "chelsea")


def test_the_grid_proposal_renders_one_unit_feature_near_the_goal() -> None:
    proposal = make_proposal("grid", {"kinds": ["checker", "noise"]})
    proposal.setup(480, 640, BAND, (100.0, 200.0))
    space = proposal.space()
    assert (space["p0_x"].low, space["p0_x"].high) == pytest.approx((14.4, 20.8))
    assert space["p0_kind"].choices == ("checker", "noise") and "p0_r" not in space
    params = {"p0_x": 17.0, "p0_y": 10.0, "p0_w": 3.0, "p0_h": 4.0, "p0_kind": "checker", "p0_sign": -1.0}
    change = proposal.change(params)
    assert np.sqrt(np.sum(change**2)) == pytest.approx(1.0)
    moved = np.flatnonzero(np.abs(change[..., 0]).sum(axis=0))
    assert (moved.min(), moved.max()) == (320, 379)  # 3 cells centred on cell 17: 16..18, 20 px each
    flipped = proposal.change({**params, "p0_sign": 1.0})
    assert np.array_equal(flipped, -change)
    whole = make_proposal("grid", {"region": "image"})
    whole.setup(480, 640, BAND, (100.0, 200.0))
    assert whole.space()["p0_x"].low == 0.0


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"region": "near"}, "region must be 'goal' or 'image'"),
        ({"kinds": ["sparkles"]}, "proposal_settings.kinds must be a non-empty list"),
        ({"max_w": 0.5}, "max_w must be >= 1 grid cell"),
        ({"max_h": 0}, "max_h must be >= 1 grid cell"),
        ({"cells_long": 20}, "bad settings for proposal 'grid'"),
    ],
)
def test_bad_grid_proposal_settings_are_refused(settings: dict, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        make_proposal("grid", settings)
    assert says in str(caught.value)


def test_accumulate_with_grid_features_keeps_its_budget_and_eps(chelsea: LoadedImage) -> None:
    # attack=accumulate with proposal=grid (its conf file, accumulate_grid, won nowhere and is gone)
    target = CountingTarget(VipsSmartcrop(interesting="entropy"))
    problem = _problem(chelsea, target, eps=10.0)
    cfg = compose_overrides(
        [
            "attack=accumulate",
            "attack.proposal=grid",
            "~attack.proposal_settings",
            "+attack.proposal_settings={grid: 32, kinds: [checker, noise, colour]}",
            "budget=12",
            "target=vips_entropy",
            "early_stop=false",
        ]
    )
    settings = OmegaConf.to_container(cfg.attack, resolve=True)
    attack = instantiate({k: v for k, v in settings.items() if k != "name"})  # type: ignore[union-attr]
    target.seen = 0
    result = attack.run(problem, target)
    assert result.queries == 12 == target.seen
    l2 = np.sqrt((((result.adversarial.astype(float) - chelsea.pixels) / 255) ** 2).sum())
    assert l2 <= 10.0 + 1e-9
