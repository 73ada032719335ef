"""The zoo by name: ``conf/target/<name>.yaml`` instantiated outside a Hydra app (e.g. ``measure=``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from targets import Target
from targets.weights import BadModelFileError, MissingModelFileError

TARGET_CONF = Path(__file__).resolve().parents[1] / "conf" / "target"


class UnknownTargetError(ValueError):
    pass


def zoo_names() -> list[str]:
    return sorted(p.stem for p in TARGET_CONF.glob("*.yaml"))


def load_target(name: str, *, aspect_ratios: Sequence[float], overrides: Mapping | None = None) -> Target:
    """Instantiate the zoo target ``name`` with its config file's settings and ``overrides``."""
    path = TARGET_CONF / f"{name}.yaml"
    if not path.exists():
        raise UnknownTargetError(f"unknown target {name!r}; the zoo has: {', '.join(zoo_names())}")
    root = OmegaConf.create({"aspect_ratios": list(aspect_ratios), "target": OmegaConf.load(path)})
    if overrides:
        root = OmegaConf.merge(root, {"target": dict(overrides)})
    return instantiate_target(root.target)


def instantiate_target(config: DictConfig) -> Target:
    """``instantiate(config)``, but a missing or bad model file surfaces as itself.

    Hydra wraps whatever a constructor raises in an ``InstantiationException`` whose message is a
    ``repr``; the model-file errors carry the message that says what to do, so they pass through.
    """
    try:
        return instantiate(config)
    except InstantiationException as error:
        if isinstance(error.__cause__, (MissingModelFileError, BadModelFileError)):
            raise error.__cause__ from None
        raise
