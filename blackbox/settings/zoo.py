"""Config groups by name outside a Hydra app: the zoo (``measure=``), attacks and samplers (compare).

``conf/<group>/<name>.yaml`` is read as Hydra would compose it into the root config, so a file's
interpolations (``${aspect_ratios}``, ``${seed}``, ``${budget}``) resolve against the run's settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from blackbox.settings.checks import ConfigError
from targets import Target
from targets.vxm import VxmFormatError
from targets.weights import BadModelFileError, MissingModelFileError

CONF = Path(__file__).resolve().parents[2] / "conf"


class UnknownChoiceError(ValueError):
    """A name that is not a file of its config group; the message lists the choices."""


def group_names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def group_config(group: str, name: str) -> DictConfig:
    """The settings of ``conf/<group>/<name>.yaml``, interpolations left unresolved."""
    path = CONF / group / f"{name}.yaml"
    if not path.is_file():
        what = "target" if group == "target" else group
        raise UnknownChoiceError(f"unknown {what} {name!r}; the choices are: {', '.join(group_names(group))}")
    config = OmegaConf.load(path)
    assert isinstance(config, DictConfig)
    return config


def load_target(name: str, *, aspect_ratios: Sequence[float], overrides: Mapping | None = None) -> Target:
    """Instantiate the zoo target ``name`` with its config file's settings and ``overrides``."""
    root = OmegaConf.create({"aspect_ratios": list(aspect_ratios), "target": group_config("target", name)})
    if overrides:
        root = OmegaConf.merge(root, {"target": dict(overrides)})
    return instantiate_target(root.target)


def instantiate_target(config: DictConfig) -> Target:
    """``instantiate(config)``, but what a constructor raises surfaces as an error a user can act on.

    Hydra wraps whatever a constructor raises in an ``InstantiationException`` whose message is a
    ``repr``. Model-file errors carry the message that says what to do, so they pass through; a bad
    setting (``ValueError``, or ``TypeError`` for an unknown key) becomes a :class:`ConfigError`.
    """
    try:
        return instantiate(config)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, (MissingModelFileError, BadModelFileError, VxmFormatError)):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"target settings: {cause}") from cause
        raise
