"""Success judged on the crops (``success=crops|any_crop``), the point rule, and crop rounding (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from blackbox.core.goal import Goal
from blackbox.core.objective import (
    crop_shows_goal,
    crops_rule,
    crops_score,
    estimate_point,
    score,
    succeeded,
    success_by_rule,
    success_rule,
)
from blackbox.experiment.run import EXIT_BAD_CONFIG
from blackbox.experiment.summary import rule_success_rate, success_rate, summary_table
from blackbox.settings.checks import ConfigError
from blackbox.settings.preflight import preflight
from targets import CropBox, TargetOutput, crop_boxes
from targets.classic import ClassicSaliency
from targets.crop import is_cut, uncut
from targets.vips import VipsSmartcrop
from tests.conftest import REPO

W, H = 640, 427
RATIOS = (0.56, 1.0, 1.14, 2.0)
BAND = Goal(448, 0, 512, H, "fallback", peak_x=200, target_x=480)  # a full-height band on the right


def crops_at(x: float, *, rounded: bool = False) -> tuple[CropBox, ...]:
    """Twitter-policy crops for a point at column ``x``; ``rounded``: the full-width one 2 px short."""
    crops = crop_boxes(W, H, (x, 200), RATIOS)
    if rounded:  # a real cropper's rounding (../shared/cases/README.md): 638 px of 640
        crops = (CropBox(1, crops[0].top, W - 2, crops[0].height, 0.56), *crops[1:])
    return crops


def crop_only(crops: tuple[CropBox, ...]) -> TargetOutput:
    return TargetOutput(estimate_point(crops, W, H), crops)


# --- the rounding artefact -----------------------------------------------------------------


def test_a_few_pixels_short_of_the_side_is_not_a_cut() -> None:
    assert not is_cut(638, 640) and not is_cut(640, 640) and not is_cut(634, 640)
    assert is_cut(600, 640) and is_cut(358, 427)
    widened = uncut(CropBox(1, 30, 638, 358, 0.56), 640, 427)
    assert (widened.left, widened.width, widened.top, widened.height) == (0, 640, 30, 358)


def test_a_rounded_full_width_crop_does_not_drag_the_point() -> None:
    # Every crop sits at the left (point at x=100); the 638-px crop must not pull x toward 320.
    exact, rounded = crops_at(100), crops_at(100, rounded=True)
    assert estimate_point(rounded, W, H) == estimate_point(exact, W, H)
    # The three crops that cut the width centre at 213.5, 187 and 106.5 (two slid at the edge); the
    # 638-px crop read as a cut would have added 320 (mean 206.75).
    assert estimate_point(rounded, W, H)[0] == pytest.approx((213.5 + 187 + 106.5) / 3)


def test_a_rounded_crop_is_not_a_success_by_any_rule() -> None:
    # The clean crops of the artefact: nothing moved toward the band on the right.
    output = crop_only(crops_at(100, rounded=True))
    verdicts = success_by_rule(output, BAND, W, H, has_point=False)
    assert verdicts == {"point": False, "crops": False, "any_crop": False}


def test_a_rounded_full_width_crop_still_shows_a_band_at_the_edge() -> None:
    edge = Goal(576, 0, 640, H, "fallback", peak_x=100, target_x=608)
    assert crop_shows_goal(CropBox(0, 0, 638, 358, 0.56), edge, W, H)
    assert not crop_shows_goal(CropBox(0, 0, 600, H, 0.7), edge, W, H)


# --- the rules -----------------------------------------------------------------------------


def test_crops_rule_judges_the_crops_that_cut_across_the_goal() -> None:
    assert crops_rule(crops_at(480), BAND, W, H) is True
    assert crops_rule(crops_at(100), BAND, W, H) is False
    # Only the 2.0 crop (213 px) misses the band when the point is at 400.
    partly = crops_at(400)
    assert [crop_shows_goal(c, BAND, W, H) for c in partly] == [True, True, True, False]
    assert crops_rule(partly, BAND, W, H, every=True) is False
    assert crops_rule(partly, BAND, W, H, every=False) is True


def test_a_crop_bound_to_show_the_goal_is_not_judged() -> None:
    # The full-width crop shows the band wherever it is: alone it makes any_crop hold trivially,
    # so any_crop looks only at the crops that cut across the band.
    assert crops_rule(crops_at(100), BAND, W, H, every=False) is False


def test_crops_that_always_show_the_goal_make_the_clean_image_succeed() -> None:
    # A tall picture (../shared/cases/tall_two_spots_320x1600.png): every crop keeps the full width.
    width, height = 320, 1600
    band = Goal(0, 0, 32, height, "fallback", peak_x=200, target_x=16)
    crops = crop_boxes(width, height, (200, 100), RATIOS)
    assert all(c.width == width for c in crops)
    assert crops_rule(crops, band, width, height) is True  # trivial: counted as clean, never as a success


def test_no_crop_can_hold_the_goal_the_rule_does_not_apply() -> None:
    tall_box = Goal(300, 0, 340, 400, "user_box", peak_x=100, target_x=320)
    crops = crop_boxes(W, H, (100, 200), (0.56,))  # 358 px high: cannot hold 400 px
    assert crops_rule(crops, tall_box, W, H) is None
    assert not succeeded(crop_only(crops), tall_box, W, H, has_point=False, rule="crops")


def test_a_box_goal_is_judged_along_both_axes() -> None:
    box = Goal(100, 10, 140, 50, "user_box", peak_x=400, target_x=120)
    top_left = crop_boxes(W, H, (120, 30), RATIOS)
    bottom_right = crop_boxes(W, H, (600, 400), RATIOS)
    assert crops_rule(top_left, box, W, H) is True
    assert crops_rule(bottom_right, box, W, H) is False


# --- the objective -------------------------------------------------------------------------


@pytest.mark.parametrize("every", [True, False])
def test_crops_score_climbs_as_the_crops_move_toward_the_goal(every: bool) -> None:
    scores = [crops_score(crop_only(crops_at(x)), BAND, W, H, every=every) for x in (60, 200, 300, 400, 480)]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    assert scores[-1] == 1.0  # 1 exactly when the rule holds
    # At x=300 the square crop (427 px) already holds the band: any_crop holds from there.
    assert all(s < 1.0 for s in scores[: 3 if every else 2])


def test_crops_score_has_a_slope_where_no_crop_covers_any_of_the_goal() -> None:
    # Far from the band no judged crop covers any of it; the distance still ranks positions.
    far, nearer = crops_at(10), crops_at(120)
    assert crops_score(crop_only(far), BAND, W, H) < crops_score(crop_only(nearer), BAND, W, H)


def test_score_follows_the_rule_for_a_target_without_a_map() -> None:
    output = crop_only(crops_at(400))
    assert score(output, BAND, W, H, has_point=False, rule="crops") == crops_score(output, BAND, W, H)
    assert score(output, BAND, W, H, has_point=False, rule="any_crop") == 1.0
    assert succeeded(output, BAND, W, H, has_point=False, rule="any_crop")
    assert not succeeded(output, BAND, W, H, has_point=False, rule="crops")


# --- the setting ---------------------------------------------------------------------------


def test_auto_means_point_with_a_point_and_crops_without() -> None:
    assert success_rule("auto", ClassicSaliency()) == "point"
    assert success_rule("auto", VipsSmartcrop(interesting="attention")) == "point"
    assert success_rule("auto", VipsSmartcrop(interesting="entropy")) == "crops"
    assert success_rule("any_crop", ClassicSaliency()) == "any_crop"
    with pytest.raises(ValueError, match="auto, point, crops, any_crop"):
        success_rule("crop", ClassicSaliency())


@pytest.mark.parametrize("value", ["bogus", "crop", "[crops]", "1", "true", "null"])
def test_a_bad_success_value_names_the_key_and_the_choices(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        preflight([f"success={value}"])
    assert "success must be one of auto, point, crops, any_crop" in str(caught.value)


def test_good_success_values_pass() -> None:
    for value in ("auto", "point", "crops", "any_crop"):
        preflight([f"success={value}", "target=vips_entropy"])


def test_the_cli_exits_2_on_a_bad_success(tmp_path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "blackbox", "success=everywhere", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_BAD_CONFIG
    assert done.stderr.startswith("error: success must be one of auto, point, crops, any_crop")
    assert not run_dir.exists()


# --- the search ----------------------------------------------------------------------------


def test_each_rule_searches_in_its_own_study(photo) -> None:
    # Trials scored by one rule must never seed a search for another: one study each.
    import optuna

    from blackbox.attacks import AttackProblem
    from blackbox.core.goal import default_goal
    from blackbox.core.images import LoadedImage
    from blackbox.search import PatchSearch, study_name

    target = VipsSmartcrop(interesting="entropy")
    image = LoadedImage("chelsea", "test", photo, photo.shape[1::-1])
    clean = target.query([image.as_float])[0]
    goal = default_goal(
        width=image.width, height=image.height, log_density=None, salient_point=clean.salient_point
    )
    storage = optuna.storages.InMemoryStorage()
    results = {}
    for setting in ("point", "crops", "auto"):
        problem = AttackProblem(image, clean, goal, 5.0, "l2", "vips_entropy", setting)
        search = PatchSearch(
            sampler_factory=lambda seed: optuna.samplers.RandomSampler(seed=seed),
            sampler_name="random",
            search={
                "n_patches": 1,
                "region": "image",
                "margin": 0.0,
                "space": {"size": {"low": 2.0, "high": 8.0}, "amplitude": {"low": -1.0, "high": 1.0}},
            },
            budget=3,
            batch_size=3,
            early_stop=False,
            storage=storage,
            progress=False,
        )
        results[setting] = search.run(problem, target)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    base = study_name(AttackProblem(image, clean, goal, 5.0, "l2", "vips_entropy"), "random")
    assert names == [base, base + "|success=crops"]  # auto is crops here: it resumed that study
    assert results["crops"].success_rule == results["auto"].success_rule == "crops"
    assert results["point"].success_rule == "point"
    assert results["auto"].queries == 3  # the crops study's 3 trials count: nothing more was asked


# --- what a run reports --------------------------------------------------------------------


def test_a_crop_only_run_reports_every_rule(tmp_path) -> None:
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "blackbox",
            "target=vips_entropy",
            "dataset.names=[chelsea,coffee]",
            "working_width=160",
            # The default fallback goal lies inside every clean crop of these two (such an image is
            # skipped, experiment/run.py): one farther from the point gives the crops something to do.
            "goal.fallback_distance=0.35",
            "budget=4",
            "batch_size=2",
            "progress=false",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "VIPS:" not in done.stdout + done.stderr  # libvips' INFO chatter stays out of the terminal
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert r["success_rule"] == "crops"  # auto, on a target without a point
        assert set(r["success_by_rule"]) == set(r["clean_success_by_rule"]) == {"point", "crops", "any_crop"}
        assert r["success"] == bool(r["success_by_rule"]["crops"])
        assert r["clean_in_goal"] == bool(r["clean_success_by_rule"]["crops"])
    assert "point / crops / any crop" in (run_dir / "summary.md").read_text()
    for r in records:  # no map: the paper's profile peak does not exist, the salient point's move does
        assert r["shift_pct_distance"] is None and r["point_shift_pct_distance"] is not None


def test_the_summary_gives_each_rules_rate() -> None:
    base = {
        "goal": {"source": "fallback"},
        "shift_pct_distance": 0.0,
        "shift_pct_width": 0.0,
        "queries": 4,
        "queries_to_success": None,
        "l2": 1.0,
        "linf": 0.1,
        "psnr": 40.0,
        "crop_contains_goal": {},
        "clean_crop_contains_goal": {},
        "success_rule": "crops",
    }
    clean = {"point": False, "crops": False, "any_crop": False}
    records = [
        {**base, "image": "a", "success": True, "clean_in_goal": False, "clean_success_by_rule": clean,
         "success_by_rule": {"point": False, "crops": True, "any_crop": True}},
        {**base, "image": "b", "success": False, "clean_in_goal": False, "clean_success_by_rule": clean,
         "success_by_rule": {"point": True, "crops": False, "any_crop": True}},
        {**base, "image": "c", "success": False, "clean_in_goal": False,
         "clean_success_by_rule": {**clean, "crops": None},
         "success_by_rule": {"point": False, "crops": None, "any_crop": None}},
    ]  # fmt: skip
    assert rule_success_rate(records, "crops") == pytest.approx(0.5)  # c: the rule does not apply
    assert rule_success_rate(records, "point") == pytest.approx(1 / 3)
    assert rule_success_rate(records, "any_crop") == pytest.approx(1.0)
    assert success_rate(records) == pytest.approx(0.5)
    table = summary_table(records)
    assert "| a | fallback | no | yes | no / yes / yes |" in table
    assert "| c | fallback | no | no | no / n/a / n/a |" in table
    assert "| 50% | 33% of 3 / 50% of 2 / 100% of 2 |" in table
    # A rule the clean image already met reads "clean" in its row, and its rate leaves that image out.
    met = {**records[1], "image": "d", "clean_success_by_rule": {**clean, "any_crop": True}}
    table = summary_table([*records, met])
    assert "| d | fallback | no | no | yes / no / clean |" in table
    assert "/ 100% of 2 |" in table


def test_each_movement_column_means_one_thing_for_every_target() -> None:
    """The point's move and the map's profile peak's move are separate columns; a target without a
    map shows ``-`` for the peak, not the point's move under the peak's name."""
    from blackbox.experiment.summary import summary_table

    by_rule = {"point": True, "crops": True, "any_crop": True}
    base = {
        "goal": {"source": "protocol"},
        "clean_in_goal": False,
        "success": True,
        "success_rule": "point",
        "success_by_rule": by_rule,
        "clean_success_by_rule": dict.fromkeys(by_rule, False),
        "queries": 8,
        "queries_to_success": 3,
        "l2": 19.9,
        "linf": 0.2,
        "psnr": 40.0,
        "crop_contains_goal": {"1": True},
        "clean_crop_contains_goal": {"1": False},
    }
    with_map = {**base, "image": "coffee", "point_shift_pct_distance": 104.0, "shift_pct_distance": 0.0,
                "shift_pct_width": 0.0}  # fmt: skip
    crops_only = {**base, "image": "page", "point_shift_pct_distance": 87.5, "shift_pct_distance": None,
                  "shift_pct_width": None}  # fmt: skip
    table = summary_table([with_map, crops_only])
    header, _, coffee, page, mean = table.splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    point, peak = columns.index("point moved %"), columns.index("peak moved %")
    cells = {row: [c.strip() for c in row.strip("|").split("|")] for row in (coffee, page, mean)}
    assert (cells[coffee][point], cells[coffee][peak]) == ("104.0", "0.0")  # moved; its profile did not
    assert (cells[page][point], cells[page][peak]) == ("87.5", "-")
    assert (cells[mean][point], cells[mean][peak]) == ("95.8", "0.0")  # each mean over its own rows
    assert "shift" not in header
