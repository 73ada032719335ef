"""The Python API (``blackbox.attack``): the README's example runs, and it matches the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import blackbox
from blackbox import ConfigError, ImageLoadError, ImageSkipped, UnknownChoiceError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_examples() -> list[str]:
    """Every python block of the README, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_readme_examples_run(capsys, tmp_path, monkeypatch) -> None:
    """A new user's notebook, from the README alone: a batch of float images attacked with a cropper
    written as a function, the results shown; a Target subclass; one photo at its own size."""
    monkeypatch.chdir(tmp_path)  # the examples write under runs/
    monkeypatch.setattr("PIL.Image.Image.show", lambda self, *a, **k: None)  # no viewer in CI
    examples = readme_examples()
    assert len(examples) >= 3, "the README's API examples are missing"
    namespace: dict = {}
    for code in examples:
        exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.count("Outcome(image=") >= 4 and "target='my_cropper'" in printed
    assert "target='centre_of_mass'" in printed
    assert (tmp_path / "runs" / "first_attack.png").is_file()
    assert (tmp_path / "runs" / "coffee_adversarial.png").is_file()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage.data import chelsea

    return chelsea()


def test_the_same_seed_gives_the_same_image_and_the_record_of_a_run(photo, tmp_path) -> None:
    first = blackbox.attack(photo, budget=4, eps=20, method="random", working_width=160)
    again = blackbox.attack(photo, budget=4, eps=20, method="random", working_width=160)
    assert np.array_equal(first.adversarial, again.adversarial) and first.queries == again.queries == 4
    assert first.record["method"] == "random" and first.record["clean_queries"] == 1
    assert first.record["queries"] == 4 and first.record["success"] == first.success
    assert first.adversarial.dtype == np.uint8 and first.adversarial.shape == photo.shape  # its own size
    assert first.working_adversarial.shape == (106, 160, 3)  # what the target saw
    assert first.clean_output.crops and first.adversarial_output.crops


def test_a_journal_storage_resumes_the_study(photo, tmp_path) -> None:
    journal = tmp_path / "trials.journal"
    first = blackbox.attack(
        photo, budget=3, working_width=160, storage=journal, method="tpe", settings=["early_stop=false"]
    )
    assert journal.stat().st_size > 0 and first.queries == 3
    # Its 3 trials count against the same budget: nothing more is asked of the target.
    again = blackbox.attack(
        photo, budget=3, working_width=160, storage=journal, method="tpe", settings=["early_stop=false"]
    )
    assert again.queries == 3 and np.array_equal(again.adversarial, first.adversarial)


def test_a_white_box_method_on_a_target_instance(photo) -> None:
    from targets.classic import ClassicSaliency

    outcome = blackbox.attack(
        photo, target=ClassicSaliency(), method="iterative_fgm", eps=20, working_width=160
    )
    assert outcome.record["method"] == "iterative_fgm" and outcome.record["target"] == "classic"
    assert outcome.queries == 1


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"budget": 0}, ConfigError, "budget must be a positive whole number"),
        ({"eps": 0.001}, ConfigError, "8-bit"),
        ({"method": "nope"}, UnknownChoiceError, "unknown method 'nope'"),
        ({"target": "nope"}, UnknownChoiceError, "unknown target 'nope'"),
        ({"measure": "nope"}, UnknownChoiceError, "measure=nope is not a zoo target"),
        ({"settings": ["batch_sise=4"]}, ConfigError, "did you mean batch_size"),
        ({"target": "vips_entropy", "method": "pgd"}, ConfigError, "needs gradients"),
    ],
)
def test_bad_settings_are_the_command_lines_errors(photo, settings, error, message) -> None:
    with pytest.raises(error, match=message):
        blackbox.attack(photo, working_width=160, **settings)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (lambda p: p.astype(np.float32), r"float pixels must lie in \[0, 1\].*divide by 255 first"),
        (lambda p: p.astype(np.uint16) * 200, "16-bit"),
        (lambda p: p.astype(np.int64) - 1, r"integer pixels must lie in 0-255"),
        (lambda p: p[..., :2], r"no image; pass \(H, W\) gray"),
        (lambda p: p > 100, "a boolean array is a mask"),
        (lambda p: np.where(p > 100, np.nan, p / 255), "NaN"),
        (lambda p: [[0]], r"image 0 of the batch: cannot attack a list"),
        (lambda p: [], "an empty batch"),
        (lambda p: "no/such/photo.png", "no such file"),
        (lambda p: {"pixels": p}, "cannot attack a dict"),
    ],
)
def test_bad_images_say_what_is_accepted(photo, image, message) -> None:
    with pytest.raises(ImageLoadError, match=message):
        blackbox.attack(image(photo), working_width=160)


def test_an_image_that_cannot_be_attacked_is_skipped_with_the_reason(photo) -> None:
    x, y = blackbox.attack(photo, budget=1, working_width=160).clean_point  # the original's pixels
    with pytest.raises(ImageSkipped, match="every clean crop already shows the goal"):
        blackbox.attack(photo, goal_box=[x - 5, y - 5, x + 5, y + 5], working_width=160)
    with pytest.raises(ImageSkipped, match=r"outside the 451x300 image \(coordinates are in the original"):
        blackbox.attack(photo, goal_box=[0, 0, 451, 301], working_width=160)
    # In a batch each such image is a Skipped entry saying why, not an exception that loses the rest.
    outcomes = blackbox.attack([photo, photo], goal_point=[x, y], budget=2, working_width=160)
    assert [type(o).__name__ for o in outcomes] == ["Skipped", "Skipped"]
    assert "every clean crop already shows the goal" in outcomes[0].reason and not outcomes[0].success


def test_optuna_is_quiet_during_the_call_and_as_the_caller_left_it_after(photo, caplog) -> None:
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.enable_propagation()  # so caplog sees Optuna's records
    try:
        with caplog.at_level(logging.INFO, logger="optuna"):
            blackbox.attack(photo, target="classic", budget=4, eps=20, seed=0, settings=["early_stop=false"])
        assert not [r for r in caplog.records if "Trial" in r.getMessage()], "a trial was logged at INFO"
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
