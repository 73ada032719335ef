"""blackbox: find near-invisible perturbations that move where a saliency-based cropper crops.

``blackbox.attack(images, target="classic", budget=20, eps=20)`` attacks one image or a batch from
Python (:func:`blackbox._api.attack`) and returns an :class:`Outcome` per image; the commands are
``python -m blackbox``, ``blackbox.compare``, ``blackbox.robustness`` and the others. Every exception
the API and the commands raise on purpose is importable from here: :class:`UserError` is the base of
those a user fixes (the message says how), :class:`ImageSkipped` an image that could not be attacked.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> the module that defines it. Imported on first use: ``python -m blackbox.<command>``
# and ``import targets`` stay light.
_PUBLIC = {
    "attack": "blackbox._api",
    "protect": "blackbox.protect",
    "ProtectResult": "blackbox.protection._protect",
    "Outcome": "blackbox.experiment.pipeline",
    "Skipped": "blackbox.experiment.pipeline",
    "FunctionTarget": "targets.function",
    # Errors: the base, then by what went wrong.
    "UserError": "targets._errors",
    "ConfigError": "targets._errors",
    "UnknownChoiceError": "targets._zoo",
    "MissingCapabilityError": "targets._capabilities",
    "StudySettingsError": "blackbox.search._study",
    "SearchSpaceError": "blackbox.search.search_space",
    "FeatureSpaceError": "blackbox.search.features",
    "PerturbationBudgetError": "blackbox.core.perturbation",
    "UnusableBudgetError": "blackbox.core.perturbation",
    "GoalError": "blackbox.core.goal",
    "ImageLoadError": "blackbox.core.images",
    "ImageSkipped": "blackbox.experiment.pipeline",
    "BoxTooLargeError": "blackbox.protection._protect",
    "NothingToProtectError": "blackbox.protection._protect",
    "CropperUnavailableError": "blackbox.protection._protect",
    "AttackFailedError": "blackbox.attacks._base",
    "TargetQueryError": "targets._errors",
    "NonFiniteOutputError": "targets._errors",
    "MalformedAnswerError": "targets._protocol",
    "ServiceUnavailableError": "targets.http",
    "RequestRejectedError": "targets.http",
    "ThumbnailNotFoundError": "targets._locate",
    "AmbiguousThumbnailError": "targets._locate",
    "SpendingLimitError": "targets.thumbnail",
    "MissingModelFileError": "targets.weights",
    "BadModelFileError": "targets.weights",
    "VxmFormatError": "targets.vxm",
    "SurrogateCheckpointError": "targets.surrogate",
    "MissingExtraError": "blackbox.core.extras",
    "StorageVersionError": "blackbox.experiment.storage",
    "JsonlError": "blackbox.experiment.jsonl",
    "RunFolderError": "blackbox.experiment.folder_access",
    "RunFolderBusyError": "blackbox.experiment.run_folder",
    "MergeError": "blackbox.evaluate.merge",
    "ReplayError": "blackbox.settings.replay",
    "DashboardError": "blackbox.settings.dashboard",
}
__all__ = [
    "AmbiguousThumbnailError",
    "AttackFailedError",
    "BadModelFileError",
    "BoxTooLargeError",
    "ConfigError",
    "CropperUnavailableError",
    "DashboardError",
    "FeatureSpaceError",
    "FunctionTarget",
    "GoalError",
    "ImageLoadError",
    "ImageSkipped",
    "JsonlError",
    "MalformedAnswerError",
    "MergeError",
    "MissingCapabilityError",
    "MissingExtraError",
    "MissingModelFileError",
    "NonFiniteOutputError",
    "NothingToProtectError",
    "Outcome",
    "PerturbationBudgetError",
    "ProtectResult",
    "ReplayError",
    "RequestRejectedError",
    "RunFolderBusyError",
    "RunFolderError",
    "SearchSpaceError",
    "ServiceUnavailableError",
    "Skipped",
    "SpendingLimitError",
    "StorageVersionError",
    "StudySettingsError",
    "SurrogateCheckpointError",
    "TargetQueryError",
    "ThumbnailNotFoundError",
    "UnknownChoiceError",
    "UnusableBudgetError",
    "UserError",
    "VxmFormatError",
    "attack",
    "protect",
]

if TYPE_CHECKING:
    from blackbox._api import attack
    from blackbox.attacks._base import AttackFailedError
    from blackbox.core.extras import MissingExtraError
    from blackbox.core.goal import GoalError
    from blackbox.core.images import ImageLoadError
    from blackbox.core.perturbation import PerturbationBudgetError, UnusableBudgetError
    from blackbox.evaluate.merge import MergeError
    from blackbox.experiment.folder_access import RunFolderError
    from blackbox.experiment.jsonl import JsonlError
    from blackbox.experiment.pipeline import ImageSkipped, Outcome, Skipped
    from blackbox.experiment.run_folder import RunFolderBusyError
    from blackbox.experiment.storage import StorageVersionError
    from blackbox.protect import protect
    from blackbox.protection._protect import (
        BoxTooLargeError,
        CropperUnavailableError,
        NothingToProtectError,
        ProtectResult,
    )
    from blackbox.search._study import StudySettingsError
    from blackbox.search.features import FeatureSpaceError
    from blackbox.search.search_space import SearchSpaceError
    from blackbox.settings.dashboard import DashboardError
    from blackbox.settings.replay import ReplayError
    from targets._capabilities import MissingCapabilityError
    from targets._errors import ConfigError, NonFiniteOutputError, TargetQueryError, UserError
    from targets._locate import AmbiguousThumbnailError, ThumbnailNotFoundError
    from targets._protocol import MalformedAnswerError
    from targets._zoo import UnknownChoiceError
    from targets.function import FunctionTarget
    from targets.http import RequestRejectedError, ServiceUnavailableError
    from targets.surrogate import SurrogateCheckpointError
    from targets.thumbnail import SpendingLimitError
    from targets.vxm import VxmFormatError
    from targets.weights import BadModelFileError, MissingModelFileError


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'blackbox' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
