"""``attack=auto`` and ``search=auto`` (the defaults): the search each target declares it is best
attacked with (:attr:`targets.Target.best_search`), put in the run's config once the target is built.

The rule, measured in docs/invisible.md and docs/benchmarks.md:

* ``attack=auto`` becomes the target's attack (``square`` for a saliency-map target, the patch search
  ``blackbox`` for a cropper without a map); ``square`` needs an L-inf cap, so with ``eps_inf=null``
  the patch search runs instead. An explicit ``search=<space>`` asks for the patch search, so
  ``attack=auto search=grid`` runs ``attack=blackbox search=grid``.
* Where ``attack=auto`` becomes the patch search, its L2 shrink after the first success is on
  (``shrink.enabled=null``, the default; ``true`` or ``false`` is kept), as the square search prunes:
  the minimisation after the first success is on by default on every target.
* ``search=auto`` becomes the target's patch-search space (``conf/search/<name>.yaml``); a staged
  space whose first stage would leave a budget of a few queries nothing becomes its second stage.

The run records the resolved config (``.hydra/config.yaml``), so replay, the dashboard and a reader of
the folder see what ran; ``resume.json`` keeps ``auto``, which resolves the same for the same target.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf

from blackbox.settings.checks import check_search
from targets import BestSearch, ConfigError, Target
from targets._zoo import group_config

#: The choice name that means "what the target declares", in ``conf/attack/`` and ``conf/search/``.
AUTO = "auto"
#: The attacks that read ``search=`` (the patch search, and auto which may become it).
SEARCH_ATTACKS = ("blackbox", AUTO)


def is_auto_search(cfg: DictConfig) -> bool:
    """Whether ``search=`` is left to the target (``search=auto``)."""
    return str(cfg.search.get("kind", "")) == AUTO


def check_search_used(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """Refuse a ``search=<space>`` or ``sampler=<name>`` that the chosen attack would ignore.

    ``overrides``: the command line's, where ``sampler=`` is looked for (its default is a name too).

    Raises:
        ConfigError: ``search=`` names a space and ``attack=`` is neither ``blackbox`` nor ``auto``;
            or ``sampler=`` is given and ``attack=`` is not ``blackbox`` (``auto`` runs the square
            search on a map target, whose own sampler is ``attack.sampler``).
    """
    attack = str(cfg.attack.name)
    if attack not in SEARCH_ATTACKS and not is_auto_search(cfg):
        raise ConfigError(
            f"search= picks a space of the patch search (attack=blackbox); attack={attack} does not "
            f"read it. Drop search= to run attack={attack}, or write attack=blackbox to run the space"
        )
    if attack != "blackbox" and any(o.lstrip("+").startswith("sampler=") for o in overrides):
        raise ConfigError(
            f"sampler= picks the patch search's sampler (attack=blackbox); attack={attack} does not read "
            "it. Write attack=blackbox to run the patch search with it (the square search's own is "
            "attack.sampler=random|tpe, with attack=square)"
        )


def resolved(cfg: DictConfig, best: BestSearch) -> DictConfig:
    """A copy of ``cfg`` with ``attack=auto`` and ``search=auto`` replaced by ``best`` (see the module).

    ``cfg`` is a composed run config (``conf/config.yaml``); one without ``auto`` comes back equal.
    Raises :class:`ConfigError` if ``best`` names a file ``conf/`` does not have, or a space the
    run's ``budget`` or ``working_width`` cannot hold (:func:`~blackbox.settings.checks.check_search`).
    """
    return resolved_naming_search(cfg, best)[0]


def resolved_naming_search(cfg: DictConfig, best: BestSearch) -> tuple[DictConfig, str]:
    """:func:`resolved`, and the ``conf/search/`` name ``search=auto`` became (``""`` when
    ``search=`` was set), for tables."""
    attack = str(cfg.attack.name)
    if attack != AUTO and not is_auto_search(cfg):
        return cfg, ""
    config = copy.deepcopy(cfg)
    OmegaConf.set_struct(config, False)
    search_name = ""
    if is_auto_search(config):
        config.search, search_name = _fitting(config, best)
    elif attack == AUTO:
        attack = "blackbox"  # an explicit search= is the patch search's
    if attack == AUTO:
        capped = config.get("eps_inf") is not None
        attack = best.attack if capped or best.attack == "blackbox" else "blackbox"
    if attack != str(cfg.attack.name):
        config.attack = _group("attack", attack, best)
    shrink = config.get("shrink")
    if shrink is not None and shrink.get("enabled") is None:  # the default: minimise where auto chose
        shrink.enabled = attack == "blackbox" and str(cfg.attack.name) == AUTO
    OmegaConf.set_struct(config, True)
    return config, search_name


def resolved_for(cfg: DictConfig, target: Target) -> DictConfig:
    """:func:`resolved` with ``target``'s own :attr:`~targets.Target.best_search`."""
    return resolved(cfg, target.best_search)


def _fitting(config: DictConfig, best: BestSearch) -> tuple[DictConfig, str]:
    """The declared space and its name, or its second stage when the budget leaves a staged search's
    second stage nothing (a budget of a few queries: the first stage alone would stop before it)."""
    from blackbox.search.staged import is_staged  # imports the search: only once a run resolves

    search, name = _group("search", best.search, best), best.search
    width, budget = config.get("working_width"), int(config.budget)
    try:
        check_search(search, working_width=width, budget=budget)
    except ConfigError as error:
        if not is_staged(search):
            raise ConfigError(f"search=auto chose {best.search} for this target: {error}") from None
        search, name = search.then, _stage_file(best.search, "then")
        check_search(search, working_width=width, budget=budget)
    return search, name


def _stage_file(name: str, stage: str) -> str:
    """The ``conf/search/`` file a staged space's defaults list puts at ``stage``."""
    defaults = group_config("search", name).get("defaults") or []
    return next(str(e).partition("@")[0] for e in defaults if str(e).endswith(f"@{stage}"))


def _group(group: str, name: str, best: BestSearch) -> DictConfig:
    """``conf/<group>/<name>.yaml`` as Hydra composes it: a defaults list of ``<name>@<key>``
    entries (``texture_blobs``' two stages) puts those files of the same group under those keys."""
    try:
        config = group_config(group, name)
    except ConfigError as error:
        raise ConfigError(f"the target's best_search {best} names no {group} file: {error}") from None
    defaults = config.pop("defaults", None)
    if not defaults:
        return config
    composed = OmegaConf.create()
    for entry in defaults:
        if entry == "_self_":
            composed = OmegaConf.merge(composed, config)
            continue
        other, _, key = str(entry).partition("@")
        composed = OmegaConf.merge(
            composed, {key: _group(group, other, best)} if key else _group(group, other, best)
        )
    if "_self_" not in defaults:
        composed = OmegaConf.merge(composed, config)
    assert isinstance(composed, DictConfig)
    return composed
