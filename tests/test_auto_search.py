"""``attack=auto`` and ``search=auto`` (the defaults): each target's declared best search."""

from __future__ import annotations

import contextlib
import csv
import io

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.run_folder import record_settings, stored_config
from blackbox.settings.auto import resolved, resolved_for
from blackbox.settings.checks import ConfigError
from blackbox.settings.commands import robustness, run
from blackbox.settings.preflight import compose_overrides, preflight
from targets import BestSearch, FunctionTarget, Output, Target, TargetOutput, crop_boxes
from targets.classic import ClassicSaliency
from tests.conftest import REPO

MAP = BestSearch(attack="square", search="texture_blobs")
NO_MAP = BestSearch(attack="blackbox", search="grid")
SMALL = ["working_width=96", "budget=3", "batch_size=3", "progress=false", "dataset.names=[chelsea]"]


def config(*overrides: str, name: str = "config") -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


class CropsOnly(Target):
    name = "crops_only"

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.CROPS})

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        return [
            TargetOutput((0.0, 0.0), crop_boxes(i.shape[1], i.shape[0], 0.0, 0.0, self.aspect_ratios))
            for i in images
        ]


def test_a_map_target_declares_the_square_search_and_a_crop_only_one_the_grid() -> None:
    assert ClassicSaliency(scales=[32]).best_search == MAP
    assert CropsOnly().best_search == NO_MAP
    point_only = FunctionTarget(
        lambda image: {"salient_point": [1.0, 1.0]}, outputs=frozenset({Output.POINT, Output.CROPS})
    )
    assert point_only.best_search == NO_MAP  # no map to aim the squares: the shrink grid's features


def test_the_defaults_are_auto() -> None:
    cfg = config()
    assert cfg.attack.name == "auto" and cfg.search.kind == "auto"


def test_auto_with_a_cap_runs_the_declared_attack() -> None:
    cfg = resolved(config(), MAP)
    assert cfg.attack.name == "square" and cfg.attack._target_ == "blackbox.search.SquareSearch"
    assert cfg.search.kind == "staged"  # the patch search's space is resolved too (compare, replay)
    assert resolved(config(), NO_MAP).attack.name == "blackbox"


def test_auto_without_a_cap_runs_the_patch_search_the_square_search_needs_one() -> None:
    cfg = resolved(config("eps_inf=null"), MAP)
    assert cfg.attack.name == "blackbox" and cfg.search.kind == "staged"
    # the composed texture_blobs: the same as Hydra composes for search=texture_blobs
    assert OmegaConf.to_container(cfg.search) == OmegaConf.to_container(config("search=texture_blobs").search)


def test_the_minimisation_is_on_where_auto_runs_the_patch_search() -> None:
    assert resolved(config(), NO_MAP).shrink.enabled is True
    assert resolved(config(), MAP).shrink.enabled is False  # the square search prunes by itself
    assert resolved(config("shrink.enabled=false"), NO_MAP).shrink.enabled is False  # as written
    assert not config("attack=blackbox").shrink.enabled  # off where the patch search was asked for


def test_an_explicit_search_asks_for_the_patch_search() -> None:
    cfg = resolved(config("search=grid"), MAP)
    assert cfg.attack.name == "blackbox" and cfg.search.kind == "grid"


def test_explicit_choices_are_kept() -> None:
    for attack in ("square", "pgd"):
        cfg = config(f"attack={attack}")
        assert resolved(cfg, NO_MAP).attack == cfg.attack
    cfg = config("attack=blackbox", "search=blobs")
    assert resolved(cfg, NO_MAP) == cfg


def test_a_budget_too_small_for_the_staged_space_gets_its_second_stage() -> None:
    cfg = resolved(config("eps_inf=null", "budget=4"), MAP)
    assert cfg.search == config("search=blobs").search


def test_a_search_the_attack_would_ignore_is_refused() -> None:
    for attack in ("square", "pgd"):
        with pytest.raises(ConfigError, match=f"attack={attack} does not read it.*attack=blackbox"):
            preflight([f"attack={attack}", "search=grid"])
    preflight(["attack=blackbox", "search=grid"])
    preflight(["search=grid"])  # auto: the patch search
    for attack in ("auto", "square"):  # auto runs the square search on a map target: no sampler there
        with pytest.raises(ConfigError, match=r"sampler= picks the patch search's sampler.*attack=blackbox"):
            preflight([f"attack={attack}", "sampler=random"])
    preflight(["attack=blackbox", "sampler=random"])


def test_a_run_records_what_auto_became(tmp_path) -> None:
    cfg = compose_overrides([*SMALL, "target=vips_entropy"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run(cfg, tmp_path, target_name="vips_entropy", record=lambda c: record_settings(tmp_path, c))
    recorded = stored_config(tmp_path)
    assert recorded.attack.name == "blackbox" and recorded.search.kind == "grid"
    # the same folder resumes with the same command: resume.json keeps the choice as written (auto)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run(cfg, tmp_path, target_name="vips_entropy")


def test_the_api_runs_the_declared_search_of_a_function_target() -> None:
    import blackbox

    calls: list[int] = []

    def crops_only(image: np.ndarray) -> dict:
        calls.append(1)
        width = image.shape[1]
        return {"crops": [{"aspect_ratio": 0.5, "box": [0, 0, width, width // 2]}]}

    target = FunctionTarget(crops_only, outputs=frozenset({Output.CROPS}), aspect_ratios=[0.5])
    assert target.best_search == NO_MAP
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 96, 3), dtype=np.uint8)
    outcome = blackbox.attack(image, target=target, budget=3, goal_box=[0, 40, 96, 60], working_width=None)
    assert outcome.record["queries"] <= 3 and calls


def test_robustness_names_each_targets_search(tmp_path) -> None:
    cfg = config(
        "working_width=96",
        "budget=4",
        "batch_size=2",
        "dataset.names=[chelsea]",
        "targets=[classic,vips_entropy]",
        "eps_list=[5]",
        "progress=false",
        name="robustness",
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        robustness(cfg, tmp_path)
    with (tmp_path / "results.csv").open(newline="") as handle:
        searches = {row["target"]: row["search"] for row in csv.DictReader(handle)}
    # budget 4 leaves texture_blobs' second stage nothing: auto gives classic that stage, blobs
    assert searches == {"classic": "blobs", "vips_entropy": "grid"}


def test_resolved_for_reads_the_targets_declaration() -> None:
    assert resolved_for(config(), CropsOnly()).attack.name == "blackbox"
