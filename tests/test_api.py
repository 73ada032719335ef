"""The Python API (``blackbox.attack``): the README's example runs, and it matches the command line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import blackbox
from blackbox.core.images import ImageLoadError
from blackbox.experiment.pipeline import ImageSkipped
from blackbox.settings.checks import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README's Python API section has no python code block"
    return match.group(1)


def test_the_readme_example_runs(capsys) -> None:
    exec(compile(readme_example(), str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "crop moved to the goal:" in printed and "after 8 queries" in printed


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
    assert first.adversarial.dtype == np.uint8 and first.adversarial.shape == (106, 160, 3)
    assert first.clean_output.crops and first.adversarial_output.crops


def test_a_journal_storage_resumes_the_study(photo, tmp_path) -> None:
    journal = tmp_path / "trials.journal"
    first = blackbox.attack(
        photo, budget=3, working_width=160, storage=journal, settings=["early_stop=false"]
    )
    assert journal.stat().st_size > 0 and first.queries == 3
    # Its 3 trials count against the same budget: nothing more is asked of the target.
    again = blackbox.attack(
        photo, budget=3, working_width=160, storage=journal, settings=["early_stop=false"]
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
        ({"method": "nope"}, ConfigError, "unknown method 'nope'"),
        ({"target": "nope"}, ConfigError, "unknown target 'nope'"),
        ({"settings": ["batch_sise=4"]}, ConfigError, "did you mean batch_size"),
        ({"target": "vips_entropy", "method": "pgd"}, ConfigError, "needs gradients"),
    ],
)
def test_bad_settings_are_the_command_lines_errors(photo, settings, error, message) -> None:
    with pytest.raises(error, match=message):
        blackbox.attack(photo, working_width=160, **settings)


def test_bad_images_say_what_is_accepted(photo) -> None:
    with pytest.raises(ImageLoadError, match=r"\(H, W, 3\) uint8"):
        blackbox.attack(photo.astype(np.float32) / 255, working_width=160)
    with pytest.raises(ImageLoadError, match="cannot attack a list"):
        blackbox.attack([[0]], working_width=160)  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="no such file"):
        blackbox.attack("no/such/photo.png", working_width=160)


def test_an_image_that_cannot_be_attacked_is_skipped_with_the_reason(photo) -> None:
    x, y = blackbox.attack(photo, budget=1, working_width=160).clean_output.salient_point
    with pytest.raises(ImageSkipped, match="every clean crop already shows the goal"):
        blackbox.attack(photo, goal_box=[x - 2, y - 2, x + 2, y + 2], working_width=160)
    with pytest.raises(ImageSkipped, match=r"outside the 160x106 working image"):
        blackbox.attack(photo, goal_box=[0, 0, 160, 107], working_width=160)


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
