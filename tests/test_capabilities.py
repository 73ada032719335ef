"""Capabilities declared once: a target says what it gives, an attack what it needs, one check decides."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from blackbox.attacks import PGD, Attack, GaussianNoise, IterativeFGM, WhiteBoxAttack
from blackbox.attacks.testing import sample_problem
from blackbox.search import PatchSearch
from blackbox.settings.build import load_stand_in
from blackbox.settings.checks import ConfigError
from blackbox.settings.commands import comparison, run
from blackbox.settings.preflight import compose_overrides
from targets import (
    Capability,
    MissingCapabilityError,
    Target,
    UserError,
    describe,
    require,
)
from targets.classic import ClassicSaliency
from targets.http import HttpTarget
from targets.vips import VipsSmartcrop
from tests.test_compare import CropOnly, compare_config, rows

SMALL = ["working_width=96", "budget=3", "batch_size=3", "progress=false", "dataset.names=[chelsea]"]


def problem_on(photo: np.ndarray, target: Target):
    return sample_problem(target, eps=20.0, pixels=photo)


def test_each_target_declares_what_it_gives() -> None:
    assert ClassicSaliency(scales=(32,)).capabilities == frozenset(Capability)
    assert VipsSmartcrop(interesting="entropy").capabilities == {Capability.CROPS}
    assert VipsSmartcrop(interesting="attention").capabilities == {Capability.POINT, Capability.CROPS}
    # http declares from its settings: what the service is expected to answer, never gradients.
    url = "http://127.0.0.1:9/v1/saliency"
    assert HttpTarget(url=url, expect=["crops"]).capabilities == {Capability.CROPS}
    assert HttpTarget(url=url, expect=["point"]).capabilities == {Capability.POINT, Capability.CROPS}
    assert HttpTarget(url=url).capabilities == {Capability.SALIENCY, Capability.POINT, Capability.CROPS}
    # A wrapper that is not a DifferentiableTarget gives no gradients, whatever it wraps.
    assert Capability.GRADIENTS not in CropOnly().capabilities
    assert not CropOnly().gives_point and VipsSmartcrop(interesting="attention").gives_point


def test_attacks_declare_what_they_need() -> None:
    assert Attack.requires == frozenset() and PatchSearch.requires == frozenset()
    assert WhiteBoxAttack.requires == {Capability.GRADIENTS} == PGD.requires == IterativeFGM.requires
    assert GaussianNoise.requires == frozenset()  # noise only: any target


def test_describe_names_what_a_target_gives() -> None:
    assert describe({Capability.CROPS}) == "crops only"
    assert describe({Capability.POINT, Capability.CROPS}) == "a salient point and crops, no gradients"
    assert describe(set(Capability)) == "a saliency map, a salient point, crops and gradients"


def test_require_passes_on_a_target_that_gives_it() -> None:
    require(ClassicSaliency(scales=(32,)), PGD.requires, by="attack=pgd")
    require(VipsSmartcrop(interesting="entropy"), PatchSearch.requires, by="attack=blackbox")


def test_white_box_attack_on_crop_only_targets_says_what_is_missing_and_what_to_do(photo) -> None:
    vips = VipsSmartcrop(interesting="entropy")
    with pytest.raises(MissingCapabilityError) as caught:
        IterativeFGM().run(problem_on(photo, vips), vips)
    message = str(caught.value)
    assert message.startswith("iterative_fgm needs gradients; target=vips_entropy gives crops only: ")
    assert "attack=blackbox" in message and "measure=vips_entropy" in message
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, UserError)

    http = HttpTarget(url="http://127.0.0.1:9/v1/saliency", expect=["crops"])
    with pytest.raises(MissingCapabilityError, match="pgd needs gradients; target=http gives crops only"):
        require(http, PGD.requires, by="attack=pgd")
    # A map is not enough either: gradients are.
    with pytest.raises(
        MissingCapabilityError, match="gives a saliency map, a salient point and crops, no grad"
    ):
        require(HttpTarget(url="http://127.0.0.1:9/v1/saliency"), PGD.requires, by="attack=pgd")


def test_white_box_attack_on_classic_works(photo) -> None:
    target = ClassicSaliency(scales=(32,))
    result = IterativeFGM(steps=1).run(problem_on(photo, target), target)
    assert result.method == "iterative_fgm" and result.queries == 1
    # And the noise baseline, which needs nothing, runs on the crop-only target.
    vips = VipsSmartcrop(interesting="entropy")
    assert GaussianNoise(reference_width=160).run(problem_on(photo, vips), vips).queries == 1


def test_a_run_refuses_a_white_box_attack_on_a_crop_only_target_before_any_image(tmp_path: Path) -> None:
    cfg = compose_overrides([*SMALL, "target=vips_entropy", "attack=pgd"])
    with pytest.raises(MissingCapabilityError) as caught, contextlib.redirect_stdout(io.StringIO()):
        run(cfg, tmp_path, target_name="vips_entropy")
    assert str(caught.value).startswith("attack=pgd needs gradients; target=vips_entropy gives crops only")
    assert not (tmp_path / "results.jsonl").exists() and not (tmp_path / "errors.jsonl").exists()
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "optuna.journal").exists()


def test_a_stand_in_must_give_gradients() -> None:
    with pytest.raises(MissingCapabilityError, match="warm_start needs gradients; target=vips_entropy gives"):
        load_stand_in("warm_start", "vips_entropy", (0.56, 1.0))
    assert Capability.GRADIENTS in load_stand_in("whitebox_target", "classic", (1.0,)).capabilities


def test_compare_white_box_on_a_crop_only_target_gives_the_same_message(tmp_path: Path) -> None:
    cfg = compare_config("methods=[pgd,random]", "eps_list=[20]", "dataset.names=[chelsea]", "budget=3")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = comparison(cfg, tmp_path, target_name="crop_only", target=CropOnly()).run()
    assert code == 3  # the black-box method ran, the white-box one was skipped with the reason
    skipped = (tmp_path / "selection.json").read_text()
    assert "pgd needs gradients; target=crop_only gives crops only: set whitebox_target=" in skipped
    assert {r["method"] for r in rows(tmp_path)} == {"random"}
