"""The zoo by name: ``targets.load("twitter")`` builds a target from ``conf/target/twitter.yaml``.

Every zoo target has one config file, ``conf/target/<name>.yaml`` (a Hydra ``_target_`` and its
settings), the same file ``python -m blackbox target=<name>`` reads. :func:`load` and :func:`names`
are the Python side of that; :func:`group_config` and :func:`group_names` read any config group the
same way (``blackbox.evaluate.compare`` resolves ``methods`` against ``conf/attack/`` and
``conf/sampler/`` with them).

A file is read as Hydra would compose it into the root config, so its interpolations
(``${aspect_ratios}``, and ``${seed}``, ``${budget}`` in other groups) resolve against the settings
given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from targets._base import Target
from targets._errors import ConfigError, UserError
from targets.crop import DEFAULT_ASPECT_RATIOS

__all__ = [
    "CONF",
    "UnknownChoiceError",
    "group_config",
    "group_names",
    "instantiate_target",
    "load",
    "names",
]

#: The repository's Hydra config folder; the zoo is its ``target/`` group.
CONF = Path(__file__).resolve().parents[1] / "conf"


class UnknownChoiceError(ConfigError):
    """A name that is not a file of its config group (a target, sampler, attack...); the message lists
    the choices. A :class:`~targets.ConfigError`, as every bad setting is."""


def group_names(group: str) -> list[str]:
    """The names in ``conf/<group>/``, sorted (``group_names("target")`` is the zoo)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def names() -> list[str]:
    """The zoo: every name :func:`load` accepts, sorted (``["classic", "deepgaze", ...]``)."""
    return group_names("target")


def group_config(group: str, name: str) -> DictConfig:
    """The settings of ``conf/<group>/<name>.yaml``, interpolations left unresolved.

    Raises :class:`UnknownChoiceError`, listing the choices, if ``name`` is not one of the group's.
    """
    choices = group_names(group)
    if name not in choices:  # also refuses paths ("../attack/pgd") and non-strings
        what = "target" if group == "target" else group
        raise UnknownChoiceError(f"unknown {what} {name!r}; the choices are: {', '.join(choices)}")
    config = OmegaConf.load(CONF / group / f"{name}.yaml")
    assert isinstance(config, DictConfig)
    return config


def load(name: str, /, **overrides: Any) -> Target:
    """The zoo target ``name`` with its config file's settings, ``overrides`` replacing some of them.

    ``targets.load("classic", scales=[64])``; ``aspect_ratios`` (heights/widths of the crops, default
    Twitter's :data:`~targets.DEFAULT_ASPECT_RATIOS`) is one of the overrides. Raises
    :class:`UnknownChoiceError` (listing the zoo) for an unknown name, :class:`~targets.ConfigError`
    for a bad or unknown setting, and the model-file errors (``MissingModelFileError``,
    ``BadModelFileError``) when a model's weights are missing or damaged; all are
    :class:`~targets.UserError`.
    """
    aspect_ratios = overrides.pop("aspect_ratios", DEFAULT_ASPECT_RATIOS)
    root = OmegaConf.create({"aspect_ratios": list(aspect_ratios), "target": group_config("target", name)})
    if overrides:
        root = OmegaConf.merge(root, {"target": overrides})
    return instantiate_target(root.target)


def instantiate_target(config: DictConfig) -> Target:
    """``instantiate(config)``, but what a constructor raises surfaces as an error a user can act on.

    Hydra wraps whatever a constructor raises in an ``InstantiationException`` whose message is a
    ``repr``. A :class:`~targets.UserError` (a missing model file, a damaged checkpoint) carries the
    message that says what to do, so it passes through; a bad setting (``ValueError``, or
    ``TypeError`` for an unknown key) becomes a :class:`~targets.ConfigError`. Anything else is a bug
    and is raised as Hydra gave it.
    """
    try:
        return instantiate(config)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"target settings: {cause}") from cause
        raise
