"""User errors share one base class, ``targets.UserError``; a programming bug never becomes one."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import blackbox
import targets
from blackbox.attacks import AttackFailedError
from blackbox.core.goal import GoalError
from blackbox.core.images import ImageLoadError
from blackbox.evaluate.merge import MergeError
from blackbox.experiment.folder_access import RunFolderError
from blackbox.experiment.jsonl import JsonlError
from blackbox.experiment.pipeline import ImageSkipped
from blackbox.experiment.run_folder import RunFolderBusyError
from blackbox.experiment.storage import StorageVersionError
from blackbox.search import StudySettingsError
from blackbox.search.budget import BudgetExhaustedError
from blackbox.search.search_space import SearchSpaceError
from blackbox.settings.checks import ConfigError
from blackbox.settings.dashboard import DashboardError
from blackbox.settings.replay import ReplayError
from targets import (
    MissingCapabilityError,
    NonFiniteOutputError,
    TargetQueryError,
    UnknownChoiceError,
    UserError,
)
from targets._colour import ColourProfileError
from targets._protocol import MalformedAnswerError
from targets._zoo import instantiate_target
from targets.http import AnswerLimitError, RequestRejectedError, ServiceUnavailableError
from targets.surrogate import SurrogateCheckpointError
from targets.vxm import VxmFormatError
from targets.weights import BadModelFileError, MissingModelFileError

USER_ERRORS = [
    ConfigError,
    GoalError,
    ImageLoadError,
    SearchSpaceError,
    JsonlError,
    TargetQueryError,
    NonFiniteOutputError,
    MalformedAnswerError,
    ServiceUnavailableError,
    RequestRejectedError,
    MissingModelFileError,
    BadModelFileError,
    VxmFormatError,
    SurrogateCheckpointError,
    UnknownChoiceError,
    MissingCapabilityError,
    ReplayError,
    RunFolderBusyError,
    DashboardError,
    MergeError,
    RunFolderError,
    StorageVersionError,
    StudySettingsError,
]

# Errors that are not the user's to fix, each with the reason. An error class added to blackbox/ or
# targets/ must be put in one list or the other (test_every_error_class_is_classified).
NOT_USER_ERRORS = {
    BudgetExhaustedError: "an attack asked past its budget: a bug in the attack",
    AttackFailedError: "one image's attack gave nothing; the run skips that image and goes on",
    ImageSkipped: "an image (or one attack on it) is left out with its reason; the run goes on (exit 3)",
    AnswerLimitError: "one HTTP answer too slow or too large: retried, then a ServiceUnavailableError",
    ColourProfileError: "an unusable ICC profile: the loader says so in an ImageLoadError",
}


def _error_classes() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for package in (targets, blackbox):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            loaded = importlib.import_module(module.name)
            found.update(
                value
                for value in vars(loaded).values()
                if inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.split(".")[0] in ("targets", "blackbox")
            )
    return found


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda e: e.__name__)
def test_every_user_error_subclasses_user_error(error: type[Exception]) -> None:
    assert issubclass(error, UserError)


def test_user_errors_keep_their_builtin_base() -> None:
    # Code that catches ValueError, FileNotFoundError or RuntimeError keeps working.
    assert issubclass(ConfigError, ValueError) and issubclass(GoalError, ValueError)
    assert issubclass(MissingModelFileError, FileNotFoundError)
    assert issubclass(TargetQueryError, RuntimeError)
    assert targets.ConfigError is ConfigError  # one class, defined with the zoo and re-exported


def test_every_error_class_is_classified() -> None:
    unclassified = {
        error.__qualname__
        for error in _error_classes()
        if not issubclass(error, UserError) and not any(issubclass(error, known) for known in NOT_USER_ERRORS)
    }
    assert not unclassified, f"subclass targets.UserError, or list in NOT_USER_ERRORS: {sorted(unclassified)}"
    assert not any(issubclass(error, UserError) for error in NOT_USER_ERRORS)


@pytest.mark.parametrize("bug", [KeyError, AssertionError, ValueError, TypeError, RuntimeError])
def test_a_bug_is_not_a_user_error(bug: type[Exception]) -> None:
    assert not issubclass(bug, UserError)
    with pytest.raises(bug):
        try:
            raise bug("a bug")
        except UserError:  # what every entry point catches
            pytest.fail("a bug was caught as a user error")


def raise_key_error(**_: object) -> None:
    raise KeyError("a bug in a target's constructor")


def raise_missing_file(**_: object) -> None:
    raise MissingModelFileError("fastgaze.vxm: put it in $BLACKBOX_MODELS")


def test_a_target_constructor_bug_is_not_turned_into_a_user_error() -> None:
    config = OmegaConf.create({"_target_": f"{__name__}.raise_key_error"})
    with pytest.raises(Exception) as caught:
        instantiate_target(config)
    assert not isinstance(caught.value, UserError)
    # ... while a user error passes through as it was raised, its message intact.
    config = OmegaConf.create({"_target_": f"{__name__}.raise_missing_file"})
    with pytest.raises(MissingModelFileError, match=r"^fastgaze.vxm: put it in"):
        instantiate_target(config)


def test_an_entry_point_exits_2_on_a_user_error_and_lets_a_bug_through(tmp_path: Path, monkeypatch) -> None:
    from blackbox.settings import replay as replay_module

    def user_error(*args, **kwargs):
        raise JsonlError("results.jsonl line 3 is damaged: remove it")

    def bug(*args, **kwargs):
        raise KeyError("trial")

    argv = [f"run={tmp_path}", "image=coffee"]
    monkeypatch.setattr(replay_module, "replay", user_error)
    assert replay_module.main(argv) == 2
    monkeypatch.setattr(replay_module, "replay", bug)
    with pytest.raises(KeyError):
        replay_module.main(argv)
