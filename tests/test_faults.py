"""Fault kinds users hit (issue 19), each on inputs made here, plus the shared cases when present.

Kind 1 (decoding), 3 (limits at the working size) and 4 (nothing dropped) are in test_images.py;
this file has 2 (non-finite maps and gradients), 5 (perturbations that cannot exist), 6 (damaged
state files) and 7 (goals that fit the crops).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from blackbox.attacks import PGD, AttackFailedError, AttackProblem, GaussianNoise, IterativeFGM
from blackbox.core.goal import default_goal
from blackbox.core.images import LoadedImage
from blackbox.experiment.pipeline import Pipeline
from blackbox.experiment.run import EXIT_NOTHING_DONE
from blackbox.settings.commands import run
from blackbox.settings.preflight import compose_overrides
from targets import DifferentiableTarget, NonFiniteOutputError, Target, TargetOutput
from targets._functional import centre_bias_log_prior, log_softmax_2d, upsample_log_density
from targets.classic import ClassicSaliency
from tests.test_patch_search import CountingTarget, make_search

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases"
SMALL = ["attack=blackbox", "working_width=96", "budget=6", "batch_size=3", "progress=false"]


def quiet_run(run_dir: Path, *overrides: str, target: Target | None = None, name: str = "classic"):
    cfg = compose_overrides([*SMALL, *overrides])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        summary = run(cfg, run_dir, target_name=name, target=target)
    return summary, err.getvalue()


def problem_on(pixels: np.ndarray, target: Target, eps: float = 3.0) -> AttackProblem:
    pipeline = Pipeline(target=target, target_name=target.name)
    clean = pipeline.clean(LoadedImage("x", "test", pixels, pixels.shape[1::-1]))
    return pipeline.problem(clean, pipeline.goal(clean), eps=eps)


# --- Kind 2: non-finite maps and gradients are caught and named, never scored ---

FLAT = [
    np.zeros((48, 64, 3), np.uint8),
    np.full((48, 64, 3), 255, np.uint8),
    np.full((48, 64, 3), 77, np.uint8),
]


@pytest.mark.parametrize("pixels", FLAT, ids=["black", "white", "grey"])
def test_classic_gives_a_finite_map_on_flat_images(pixels) -> None:
    output = ClassicSaliency().query([pixels.astype(np.float32) / 255])[0]
    assert output.log_density is not None and np.isfinite(output.log_density).all()
    assert np.isclose(np.exp(output.log_density).sum(), 1.0)


@pytest.mark.parametrize("name", ["classic", "twitter", "surrogate", "deepgaze"])
def test_every_local_target_gives_a_finite_map_on_flat_images(name) -> None:
    from targets import load
    from targets.weights import MissingModelFileError

    try:
        target = load(name, aspect_ratios=(0.56, 1.0))
    except MissingModelFileError:
        pytest.skip(f"{name}: model files not in ../shared/models")
    for pixels in FLAT:
        output = target.query([np.asarray(pixels, np.float32) / 255])[0]  # check_finite would raise
        assert output.log_density is None or np.isfinite(output.log_density).all()


class NaNMap(Target):
    """A target whose map overflowed: what a broken model or service might answer."""

    name = "nan_map"

    def __init__(self, value: float = np.nan) -> None:
        super().__init__()
        self.value = value

    def answer(self, images):
        out = []
        for image in images:
            log_density = np.full(image.shape[:2], -np.log(image.shape[0] * image.shape[1]))
            log_density[3, 5] = self.value
            out.append(TargetOutput((5.0, 3.0), (), log_density))
        return out


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_any_target_answering_non_finite_values_is_named(value) -> None:
    with pytest.raises(NonFiniteOutputError, match=r"'nan_map'.*1 of 3072 log-density values"):
        NaNMap(value).query([np.zeros((48, 64, 3), np.float32)])


def test_a_run_skips_an_image_whose_map_is_not_finite(tmp_path) -> None:
    summary, err = quiet_run(tmp_path, "dataset.names=[chelsea]", target=NaNMap(), name="nan_map")
    assert summary.exit_code == EXIT_NOTHING_DONE and not summary.records
    assert "NaN or infinite" in summary.skipped[0]["error"] and "nan_map" in err


class NaNGradient(DifferentiableTarget):
    """A finite map with a NaN gradient (sqrt at 0): what an unguarded division does."""

    name = "nan_gradient"

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        prior = centre_bias_log_prior(8, 8, sigma=0.3, device=images.device)[None]
        logits = prior + 0.0 * torch.sqrt(images - images).mean(dim=(1, 2, 3))[:, None, None]
        return upsample_log_density(log_softmax_2d(logits), height, width)


class FlatModel(DifferentiableTarget):
    """A map that ignores the image: its gradient is zero everywhere."""

    name = "flat_model"

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        prior = centre_bias_log_prior(8, 8, sigma=0.3, device=images.device)[None]
        logits = prior + 0.0 * images.mean(dim=(1, 2, 3))[:, None, None]
        return upsample_log_density(log_softmax_2d(logits), height, width)


@pytest.mark.parametrize("attack", [IterativeFGM(steps=2), PGD(steps=2)], ids=["iterative_fgm", "pgd"])
def test_a_non_finite_gradient_is_named_not_used(photo, attack) -> None:
    target = NaNGradient()
    problem = problem_on(photo, target)
    with pytest.raises(AttackFailedError, match=r"'nan_gradient'.*NaN or infinite"):
        attack.run(problem, target)


def test_a_white_box_attack_that_changes_nothing_says_so_and_spends_no_query(photo) -> None:
    target = CountingTarget(FlatModel())
    problem = problem_on(photo, target.inner)
    with pytest.raises(AttackFailedError, match="rounds to the clean image"):
        IterativeFGM(steps=2, gradcam=False).run(problem, FlatModel())  # zero gradient: L2 would be 0
    with pytest.raises(AttackFailedError, match="rounds to the clean image"):
        GaussianNoise(seed=0).run(problem_on(photo, target.inner, eps=0.004), target)
    assert target.seen == 0


@pytest.mark.skipif(
    not (CASES / "flat_black_320x240.png").exists(), reason="../shared/cases not beside the clone"
)
def test_shared_case_flat_black_gives_a_finite_classic_map() -> None:
    from blackbox.core.images import load_image

    image = load_image(CASES / "flat_black_320x240.png")
    output = ClassicSaliency().query([image.as_float])[0]
    assert np.isfinite(output.log_density).all()


# --- Kind 5: perturbations that cannot exist ---


def test_no_query_is_spent_on_a_candidate_that_rounds_to_the_clean_image(photo) -> None:
    target = CountingTarget(ClassicSaliency())
    problem = problem_on(photo, target.inner, eps=0.005)  # >= one level, spread below it per pixel
    with pytest.raises(AttackFailedError, match=r"rounded to the clean image.*none was sent"):
        make_search(6).run(problem, target)
    assert target.seen == 0


def test_a_run_refuses_an_eps_below_one_level(tmp_path) -> None:
    from blackbox.settings.checks import ConfigError

    for norm, eps in (("l2", "0.001"), ("linf", "0.003")):
        with pytest.raises(ConfigError, match=r"below one 8-bit level.*eps >= 0.0039"):
            quiet_run(tmp_path / norm, f"norm={norm}", f"eps={eps}", "dataset.names=[chelsea]")
        assert not (tmp_path / norm / "results.jsonl").exists()


# --- Kind 6: damage in any file the product keeps is exit 2 with the file, the line and what to do ---


def _finished_run(run_dir: Path) -> None:
    summary, _ = quiet_run(run_dir, "dataset.names=[chelsea]", "budget=3")
    assert summary.records


def _tear_line(path: Path, number: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[number - 1] = lines[number - 1][: len(lines[number - 1]) // 2]  # cut mid-record, newline gone
    path.write_bytes(b"".join(lines))


def test_a_journal_torn_mid_file_is_named_with_its_line(tmp_path) -> None:
    from blackbox.experiment.jsonl import JsonlError

    _finished_run(tmp_path)
    journal = tmp_path / "optuna.journal"
    _tear_line(journal, 3)
    with pytest.raises(JsonlError, match=r"optuna.journal, line 3 is not a whole Optuna journal record.*mv "):
        quiet_run(tmp_path, "dataset.names=[chelsea]", "budget=3")


@pytest.mark.skipif(
    not (CASES / "journal_torn_mid_line.journal").exists(), reason="../shared/cases not beside the clone"
)
def test_shared_case_torn_journal_is_exit_2_naming_the_line(tmp_path) -> None:
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO

    run_dir = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "blackbox",
        *SMALL,
        "budget=3",
        "dataset.names=[chelsea]",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(args, cwd=REPO, env=env, capture_output=True, timeout=300).returncode == 0
    shutil.copyfile(CASES / "journal_torn_mid_line.journal", run_dir / "optuna.journal")
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "optuna.journal, line 15 is not a whole Optuna journal record" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_damaged_resume_json_is_named(tmp_path) -> None:
    from blackbox.settings.checks import ConfigError

    _finished_run(tmp_path)
    (tmp_path / "resume.json").write_text('{"budget": 3, "eps"')
    with pytest.raises(ConfigError, match=r"resume.json is damaged.*delete .*resume.json"):
        quiet_run(tmp_path, "dataset.names=[chelsea]", "budget=3")


def test_a_damaged_results_line_is_named(tmp_path) -> None:
    from omegaconf import OmegaConf

    from blackbox.experiment.jsonl import JsonlError
    from blackbox.settings.replay import main as replay_main

    overrides = ("dataset.names=[chelsea,coffee]", "budget=3")
    summary, _ = quiet_run(tmp_path, *overrides)
    assert len(summary.records) == 2
    (tmp_path / ".hydra").mkdir()  # what Hydra writes beside a CLI run, and replay reads
    OmegaConf.save(compose_overrides([*SMALL, *overrides]), tmp_path / ".hydra" / "config.yaml")
    _tear_line(tmp_path / "results.jsonl", 1)
    with pytest.raises(JsonlError, match=r"results.jsonl, line 1 is not JSON"):
        quiet_run(tmp_path, "dataset.names=[chelsea,coffee]", "budget=3")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert replay_main([f"run={tmp_path}", "image=coffee", f"out={tmp_path / 'r.png'}"]) == 2
    assert "results.jsonl, line 1" in err.getvalue()


def test_a_damaged_compare_results_row_is_named(tmp_path) -> None:
    from blackbox.evaluate.compare import COLUMNS, ResultsTable
    from blackbox.settings.checks import ConfigError

    path = tmp_path / "results.csv"
    header = ",".join(COLUMNS)
    good = ",".join({"eps": "2.0", "bisection": "False", "success": "True"}.get(c, "x") for c in COLUMNS)
    path.write_text(f"{header}\n{good}\n{good[: len(good) // 2]}\n{good}\n")
    with pytest.raises(ConfigError, match=r"results.csv, line 3 is not a whole results row"):
        ResultsTable(path)
    path.write_text(f"{header}\n{good}\n{good[:10]}")  # a torn last row: set aside, not an error
    assert len(ResultsTable(path).rows) == 1
    assert (tmp_path / "results.csv.torn").read_text() == good[:10]


# --- Kind 7: goals that fit the crops ---


def _two_spots(height: int, width: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """A log-density with two Gaussian spots at (cols[i], rows[i]); the first is the stronger."""
    ys, xs = np.mgrid[0:height, 0:width]
    density = sum(
        weight * np.exp(-((xs - c) ** 2 + (ys - r) ** 2) / (2 * 12.0**2))
        for weight, r, c in zip((1.0, 0.6), rows, cols, strict=True)
    )
    density = density + 1e-9
    return np.log(density / density.sum())


def test_on_a_tall_image_the_goal_works_along_rows() -> None:
    from blackbox.core.goal import goal_axis
    from targets import crop_boxes

    width, height = 64, 320
    log_density = _two_spots(height, width, rows=(280, 40), cols=(30, 34))
    point = (30.0, 280.0)
    crops = crop_boxes(width, height, point, (0.56, 1.0, 1.14, 2.0))
    assert goal_axis(crops, width, height) == "y"  # every crop keeps the full width
    goal = default_goal(width=width, height=height, log_density=log_density, salient_point=point, axis="y")
    assert goal.axis == "y" and goal.source == "protocol"
    assert (goal.x0, goal.x1) == (0.0, width) and goal.y0 <= 40 <= goal.y1 and goal.y1 - goal.y0 == 32
    assert not any(goal.shown_by(c, height, width) for c in crops)  # the crops show the bottom spot
    moved = crop_boxes(width, height, (34.0, 40.0), (0.56, 1.0, 1.14, 2.0))
    assert all(goal.shown_by(c, height, width) for c in moved)  # ...and the top one once moved
    assert goal_axis(crop_boxes(320, 64, (30.0, 30.0), (0.56, 1.0)), 320, 64) == "x"  # a wide image


def test_a_goal_every_clean_crop_shows_is_refused_not_counted_a_success() -> None:
    from blackbox.core.goal import GoalError
    from blackbox.settings.build import goal_rule
    from targets import crop_boxes

    width, height = 64, 320
    image = LoadedImage("tall", "test", np.zeros((height, width, 3), np.uint8), (width, height))
    crops = crop_boxes(width, height, (30.0, 160.0), (0.56, 1.0))
    clean = TargetOutput((30.0, 160.0), crops, None)
    cfg = compose_overrides(["goal.box=[20,150,40,170]"])  # inside every clean crop
    with pytest.raises(GoalError, match="every clean crop already shows the goal"):
        goal_rule(cfg).goal_for(image, clean)
    # The same situation the old column band made on every tall image: refused, not a "success".
    band = compose_overrides(["goal.box=[20,0,40,320]"])
    with pytest.raises(GoalError, match="cannot be a success"):
        goal_rule(band).goal_for(image, clean)


@pytest.mark.skipif(
    not (CASES / "tall_two_spots_320x1600.png").exists(), reason="../shared/cases not beside the clone"
)
def test_shared_case_tall_image_gets_a_row_goal_no_clean_crop_shows(tmp_path) -> None:
    summary, _ = quiet_run(tmp_path, f"image={CASES / 'tall_two_spots_320x1600.png'}", "budget=3")
    (record,) = summary.records
    assert record["goal"]["axis"] == "y" and record["goal"]["x1"] - record["goal"]["x0"] == 96
    assert sum(record["clean_crop_contains_goal"].values()) == 0
    # The goal is the other spot's rows (the top one), away from the clean salient point (bottom).
    height = record["height"]
    assert record["goal"]["y1"] < height / 2 < record["salient_point_clean"][1]
    assert record["success"] == (
        record["goal"]["y0"] <= record["salient_point_adversarial"][1] <= record["goal"]["y1"]
    )


# --- Newcomer snags ---


def test_replay_of_a_trial_that_does_not_exist_says_so(tmp_path) -> None:
    from omegaconf import OmegaConf

    from blackbox.settings.replay import main as replay_main

    overrides = ("dataset.names=[chelsea]", "budget=3", "early_stop=false")
    quiet_run(tmp_path, *overrides)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(compose_overrides([*SMALL, *overrides]), tmp_path / ".hydra" / "config.yaml")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert replay_main([f"run={tmp_path}", "image=chelsea", "trial=99"]) == 2
    assert "trial 99 does not exist for 'chelsea': its study has 3 trials (numbers 0 to 2)" in err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()):
        assert replay_main([f"run={tmp_path}", "image=chelsea", "trial=2"]) == 0
    (tmp_path / ".hydra" / "config.yaml").write_text("budget: [3\nstorage: {")  # damaged settings
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert replay_main([f"run={tmp_path}", "image=chelsea"]) == 2
    assert "config.yaml is damaged" in err.getvalue()


def test_a_comparison_skips_an_image_whose_map_is_not_finite(tmp_path) -> None:
    from hydra import compose, initialize_config_dir

    from blackbox.settings.commands import comparison
    from tests.conftest import REPO

    overrides = ["working_width=96", "dataset.names=[chelsea]", "methods=[random]", "eps_list=[20]"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="compare", overrides=[*overrides, "budget=3", "progress=false"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert comparison(cfg, tmp_path, target_name="nan_map", target=NaNMap()).run() == EXIT_NOTHING_DONE
    assert "NaN or infinite" in (tmp_path / "selection.json").read_text()
