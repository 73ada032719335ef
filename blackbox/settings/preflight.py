"""Check a command line's settings before Hydra makes a run folder, loads a target or reads an image.

``python -m blackbox key=value ...`` composes the config the way Hydra will and runs the same checks
the run makes (:func:`blackbox.settings.checks.check_run_config`), plus the sampler's and attack's
constructors and the image list, so a bad setting ends the command at once with exit code 2 and a
message that names the key, instead of a Hydra traceback (exit 1) or a half-made run folder.
:func:`check_planned_folder` then checks the run folder the command would use (busy, read-only,
made with other settings, damaged) before Hydra makes or touches it. A multirun (``-m``) sweep is
left to Hydra: each job still checks its own settings and folder on start.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from blackbox.core.datasets import sources_from_config
from blackbox.experiment.run_folder import check_run_folder, resume_settings
from blackbox.settings.auto import SEARCH_ATTACKS, check_search_used
from blackbox.settings.checks import ConfigError, check_run_config
from targets._zoo import CONF, UnknownChoiceError, group_names

_GROUP_MISSING = re.compile(r"Could not find '(\w+)/([^']*)'")
_KEY_UNKNOWN = re.compile(r"Could not override '([^']+)'")


def expand_home(argv: Sequence[str]) -> list[str]:
    """``key=~/x`` becomes ``key=/home/<user>/x``: the shell leaves ``~`` after ``key=`` alone, and
    Hydra's parser refuses an unquoted ``~`` in a value, so every path setting (``dataset.path``,
    ``image``, ``hydra.run.dir``...) is expanded here, before Hydra reads the command line.
    """
    expanded = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and (value == "~" or value.startswith("~/")):
            arg = f"{key}={Path(value).expanduser()}"
        expanded.append(arg)
    return expanded


def wants_preflight(argv: Sequence[str]) -> bool:
    """A plain run: every argument is a ``key=value`` override (no ``-m``, ``--cfg``, ``--help``...)."""
    return all(not arg.startswith("-") for arg in argv)


def compose_overrides(overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """The run config Hydra would compose from ``overrides``; a bad one raises :class:`ConfigError`."""
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except ConfigCompositionException as error:
        kind = UnknownChoiceError if _GROUP_MISSING.search(str(error)) else ConfigError
        raise kind(_explain(error, overrides)) from None
    except HydraException as error:  # e.g. an override Hydra cannot parse
        first = str(error).splitlines()[0]
        raise ConfigError(
            f"cannot read the settings {' '.join(overrides)}: {first}; write each as key=value "
            f"(lists as key=[a,b]){_quote_hint(overrides)}"
        ) from None


def _quote_hint(overrides: Sequence[str]) -> str:
    """How to quote: Hydra reads a second ``=`` (or a space) in a value as syntax unless it is quoted."""
    # A value holding "=" is the likeliest culprit (a URL's query string), then other syntax.
    for override in sorted(overrides, key=lambda o: "=" not in o.partition("=")[2]):
        key, _, value = override.partition("=")
        if any(c in value for c in "= ,:?&") and value[:1] not in ("'", '"', "["):
            return (
                f"; the value of {key} holds characters Hydra reads as syntax: quote it for Hydra inside "
                f"the shell's quotes, e.g. '{key}=\"{value}\"'"
            )
    return "; quote a value holding =, spaces or commas for Hydra inside the shell's quotes: 'key=\"a=b\"'"


def preflight(overrides: Sequence[str], config_name: str = "config") -> None:
    """Every check that needs no target, model or image decoding; raises :class:`ConfigError`.

    ``config_name="compare"`` checks ``python -m blackbox.compare``'s settings: the run's, and its
    methods and ``eps_list``; ``"robustness"`` ``python -m blackbox.robustness``'s targets and sweep.
    """
    cfg = compose_overrides(overrides, config_name)
    try:
        settings = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:  # e.g. an interpolation to a key that does not exist
        raise ConfigError(f"{_key_of(error)}: {str(error).splitlines()[0]}") from None
    assert isinstance(settings, dict)
    check_run_config(settings)
    for key in ("measure", "warm_start"):
        if settings.get(key) and settings[key] not in group_names("target"):
            choices = ", ".join(group_names("target"))
            raise UnknownChoiceError(f"{key}={settings[key]} is not a zoo target; the choices are: {choices}")
    if config_name == "compare":
        from blackbox.settings.sweeps import check_compare_config  # imports the attacks, which is heavy

        check_compare_config(cfg)
    elif config_name == "robustness":
        from blackbox.settings.sweeps import check_robustness_config  # imports the attacks, which is heavy

        check_robustness_config(cfg)
        _check_constructors(cfg)
    else:
        check_search_used(cfg, overrides)
        _check_constructors(cfg)
    if (
        settings["dataset"].get("kind") != "cat2000_pysaliency"
    ):  # that one opens an HDF5 file: left to the run
        sources_from_config(image=settings.get("image"), dataset=settings["dataset"])


def check_planned_folder(overrides: Sequence[str], config_name: str = "config") -> None:
    """Check the run folder ``overrides`` name (``hydra.run.dir``) as the run will, without changing it.

    Raises what :func:`~blackbox.experiment.run_folder.check_run_folder` raises; for
    ``python -m blackbox`` (``config_name="config"``) also a re-run with other settings than the
    folder's (compare and robustness check their own records when they start).
    """
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
        run_dir = Path(str(cfg.hydra.run.dir))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"hydra.run.dir: {str(error).splitlines()[0]}") from None
    settings = None
    if config_name == "config":
        target = str(cfg.hydra.runtime.choices.get("target") or "target")
        with open_dict(cfg):
            del cfg["hydra"]  # the run's settings, as the run composes them
        settings = resume_settings(cfg, target)
    check_run_folder(run_dir, settings)


def _check_constructors(cfg: DictConfig) -> None:
    """The sampler (black-box) or the attack (white-box) built once with the given settings: cheap."""
    try:
        if cfg.attack.name in SEARCH_ATTACKS:  # auto may become the patch search: its sampler
            instantiate(cfg.sampler.factory)(seed=0)
        else:
            instantiate({k: v for k, v in cfg.attack.items() if k != "name"})
    except InstantiationException as error:
        group = "sampler" if cfg.attack.name in SEARCH_ATTACKS else "attack"
        cause = error.__cause__ or error
        raise ConfigError(f"{group} settings ({group}={cfg[group].name}): {cause}") from None
    except (TypeError, ValueError) as error:
        group = "sampler" if cfg.attack.name in SEARCH_ATTACKS else "attack"
        raise ConfigError(f"{group} settings ({group}={cfg[group].name}): {error}") from None


def _explain(error: ConfigCompositionException, overrides: Sequence[str]) -> str:
    message = str(error)
    if match := _GROUP_MISSING.search(message):
        group, name = match.groups()
        return f"unknown {group} {name!r}; the choices are: {', '.join(group_names(group))}"
    if match := _KEY_UNKNOWN.search(message):
        key = match.group(1)
        named = [o for o in overrides if o.startswith("search=") and o != "search=auto"]
        if key.startswith("search.") and not named:
            return (
                f"{key} is a setting of a named search space, and search=auto (the default) leaves the "
                f"space to the target; name one first, e.g. search=blobs {key}=... (conf/search/)"
            )
        hint = _closest(key, [o for o in overrides if not o.lstrip("~+").startswith(f"{key}=")])
        return (
            f"unknown setting {key!r}{hint}; see conf/config.yaml, or `python -m blackbox --cfg job` for "
            f"every setting (+{key}=... adds a new key on purpose)"
        )
    return message.splitlines()[0]


def _closest(key: str, other_overrides: Sequence[str]) -> str:
    """`` (did you mean ...?)`` for the first part of ``key`` missing from the config the other
    overrides make, from the keys beside it."""
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            node = compose(config_name="config", overrides=list(other_overrides))
    except (HydraException, OmegaConfBaseException):
        return ""
    path: list[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return ""
        if part not in node:
            close = difflib.get_close_matches(part, [str(k) for k in node], n=1)
            return f" (did you mean {'.'.join([*path, close[0]])}?)" if close else ""
        path.append(part)
        node = node[part]
    return ""


def _key_of(error: OmegaConfBaseException) -> str:
    return str(getattr(error, "full_key", None) or "settings")
