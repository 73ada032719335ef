"""Settings of the two sweeping commands, read at the edge: ``methods`` and ``eps_list`` of
``python -m blackbox.compare``, ``targets`` and ``target_settings`` of ``python -m blackbox.robustness``.

The checks run in the pre-flight (:func:`blackbox.settings.preflight.preflight`), before any folder,
target or image; the builders give the typed objects :mod:`blackbox.settings.commands` hands the core.
"""

from __future__ import annotations

import copy

from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.attack_spec import AttackSpec
from blackbox.settings.build import attack_spec
from blackbox.settings.checks import ConfigError, check_eps
from targets._zoo import UnknownChoiceError, group_config, group_names


def method_configs(cfg: DictConfig) -> list[DictConfig]:
    """Per name of ``methods``, the run config with that method's attack (and sampler) in place:
    white-box from ``conf/attack/``, black-box samplers from ``conf/sampler/``.

    Raises:
        UnknownChoiceError: a name of neither group (the message lists both).
        ConfigError: ``methods`` is empty.
    """
    white, black = set(group_names("attack")) - {"blackbox"}, set(group_names("sampler"))
    configs = []
    for name in cfg.methods:
        name = str(name)
        if name in white:
            configs.append(_replacing(cfg, attack=group_config("attack", name)))
        elif name in black:
            configs.append(
                _replacing(cfg, attack={"name": "blackbox"}, sampler=group_config("sampler", name))
            )
        else:
            raise UnknownChoiceError(
                f"unknown method {name!r}; white-box: {', '.join(sorted(white))}; "
                f"black-box samplers: {', '.join(sorted(black))}"
            )
    if not configs:
        raise ConfigError("methods is empty: name at least one attack or sampler")
    return configs


def methods(cfg: DictConfig) -> list[AttackSpec]:
    """``methods`` as attack specs, in the order given."""
    return [attack_spec(config) for config in method_configs(cfg)]


def _replacing(cfg: DictConfig, **groups: object) -> DictConfig:
    """A copy of the run config with whole config groups swapped (Hydra's struct mode forbids merging)."""
    config = copy.deepcopy(cfg)
    OmegaConf.set_struct(config, False)
    for group, value in groups.items():
        config[group] = value
    return config


def eps_list(cfg: DictConfig) -> list[float]:
    """``eps_list``, ascending, each a valid eps for ``norm``; raises :class:`ConfigError` otherwise."""
    try:
        values = [float(e) for e in cfg.eps_list]
    except (TypeError, ValueError):
        raise ConfigError(f"eps_list must be numbers, e.g. eps_list=[10,20], got {cfg.eps_list}") from None
    if not values or any(not e > 0 for e in values):
        raise ConfigError(f"eps_list must be positive perturbation sizes, got {values}")
    for eps in values:
        check_eps(eps, str(cfg.norm), key="eps_list")
    return sorted(set(values))


def check_compare_config(cfg: DictConfig) -> None:
    """The comparison's own settings, checked before any folder, target or image (exit 2 if bad).

    The run's settings are checked by :func:`blackbox.settings.preflight.preflight`, which calls this.
    """
    method_configs(cfg)
    eps_list(cfg)
    steps = cfg.smallest_eps.bisection_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"smallest_eps.bisection_steps must be a whole number >= 0, got {steps!r}")


def target_names(cfg: DictConfig) -> list[str]:
    """``targets``, each a zoo name; raises :class:`ConfigError` naming the choices otherwise."""
    targets = cfg.get("targets")
    if isinstance(targets, str) or not targets:
        raise ConfigError(
            f"targets must be a list of zoo names, e.g. targets=[classic,vips_entropy], got {targets!r}"
        )
    names = [str(t) for t in targets]
    zoo = group_names("target")
    unknown = [n for n in names if n not in zoo]
    if unknown:
        raise ConfigError(f"unknown target(s) {', '.join(unknown)} in targets; the zoo: {', '.join(zoo)}")
    if len(set(names)) < len(names):
        raise ConfigError(f"targets names one twice: {names}; name each once")
    return names


def check_robustness_config(cfg: DictConfig) -> None:
    """The report's own settings, checked before any folder, target or image (exit 2 if bad).

    The run's settings are checked by :func:`blackbox.settings.preflight.preflight`, which calls this.
    """
    target_names(cfg)
    eps_list(cfg)
    if cfg.attack.name != "blackbox":
        raise ConfigError(
            f"the robustness report runs the black-box attack; attack={cfg.attack.name} is white-box "
            "(drop it; choose the search with sampler= and search=)"
        )
    if not isinstance(cfg.get("stop_at_first_success"), bool):
        raise ConfigError(
            f"stop_at_first_success must be true or false, got {cfg.get('stop_at_first_success')!r}"
        )
    settings = cfg.get("target_settings") or {}
    if not isinstance(settings, DictConfig):
        raise ConfigError(
            "target_settings must map a target to its settings, e.g. target_settings.http.url=..."
        )
    for name in settings:
        if str(name) not in group_names("target"):
            raise ConfigError(
                f"target_settings.{name}: {name} is not a zoo target; "
                f"the zoo: {', '.join(group_names('target'))}"
            )
    for name in settings:
        target_config(cfg, str(name))  # an unknown key shows now, not after the first target's attacks


def target_config(cfg: DictConfig, name: str) -> DictConfig:
    """The run config with ``target`` replaced by ``conf/target/<name>.yaml`` and its ``target_settings``.

    Raises :class:`ConfigError` for a ``target_settings`` key the target's file does not have.
    """
    target = group_config("target", name)
    extra = (cfg.get("target_settings") or {}).get(name)
    if extra:
        unknown = [str(k) for k in extra if str(k) not in target]
        if unknown:
            raise ConfigError(
                f"target_settings.{name}.{unknown[0]} is not a setting of target {name}; "
                f"its settings: {', '.join(str(k) for k in target if k != '_target_')}"
            )
        target = OmegaConf.merge(target, extra)
    config = copy.deepcopy(cfg)
    OmegaConf.set_struct(config, False)  # Hydra's struct mode forbids swapping a whole group
    config.target = target
    return config
