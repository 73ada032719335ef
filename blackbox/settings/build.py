"""The settings edge: a composed Hydra config turned into the typed objects the core takes.

Nothing below ``blackbox/settings/`` (and the ``python -m`` entry points) reads a Hydra config; every
command and :func:`blackbox.attack` goes through these functions once, at its start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from blackbox.attacks import AttackProblem, IterativeFGM
from blackbox.core.goal_rule import GoalRule
from blackbox.experiment.attack_spec import AttackSpec, ConfiguredSpec, Family, SearchSpec
from blackbox.experiment.options import RunOptions, StorageSettings
from blackbox.experiment.run_folder import stored_config
from blackbox.search import ShrinkSettings
from targets import Capability, ConfigError, DifferentiableTarget, load, require

# Settings that say where or how a run is kept, not what is attacked: not part of an experiment's name.
NOT_IDENTITY = ("storage", "progress", "artifacts", "worker", "torch_threads")
# The run folders' result settings (run_folder.RESULT_SETTINGS) that decide a study's trials and are
# not in its name (eps, norm, goal and the success rule are): a study resumes only with these, whatever
# storage keeps it (a journal file given to blackbox.attack, a shared database).
STUDY_SETTINGS = (
    "budget",
    "seed",
    "early_stop",
    "working_width",
    "aspect_ratios",
    "search",
    "warm_start",
    "shrink",
)


def goal_rule(cfg: Mapping) -> GoalRule:
    """``goal.*`` as a :class:`GoalRule`."""
    goal = cfg.get("goal") or {}
    box, point = goal.get("box"), goal.get("point")
    return GoalRule(
        band_width=float(goal.get("band_width", 0.1)),
        fallback_distance=float(goal.get("fallback_distance", 0.15)),
        box=tuple(float(v) for v in box) if box is not None else None,  # type: ignore[arg-type]
        point=tuple(float(v) for v in point) if point is not None else None,  # type: ignore[arg-type]
    )


def eps_inf(cfg: Mapping) -> float | None:
    """``eps_inf`` (8-bit levels, or null) as the budget's L-inf cap in [0, 1] units."""
    levels = cfg.get("eps_inf")
    return None if levels is None else float(levels) / 255.0


def run_options(cfg: DictConfig, *, eps: float | None = None) -> RunOptions:
    """The settings every image of a run shares (``eps`` overrides ``cfg.eps``, for sweeps)."""
    threads = cfg.get("torch_threads")
    width = cfg.get("working_width")
    return RunOptions(
        eps=float(cfg.eps if eps is None else eps),
        norm=str(cfg.norm),
        eps_inf=eps_inf(cfg),
        success=str(cfg.get("success", "auto")),
        goal=goal_rule(cfg),
        working_width=int(width) if width is not None else None,
        aspect_ratios=tuple(float(r) for r in cfg.aspect_ratios),
        progress=bool(cfg.get("progress", True)),
        artifacts=str(cfg.get("artifacts", "best")),
        torch_threads=int(threads) if threads else None,
        measure=str(cfg.measure) if cfg.get("measure") else None,
    )


def attack_family(attack: Mapping) -> Family:
    """``black-box`` for the searches in ``conf/attack/`` (``_target_`` under ``blackbox.search``), else
    ``white-box`` (the gradient attacks and their noise baselines)."""
    return "black-box" if str(attack.get("_target_", "")).startswith("blackbox.search.") else "white-box"


def attack_spec(cfg: DictConfig, *, search_name: str = "") -> AttackSpec:
    """``attack=``: the black-box search (with ``sampler=``, ``search=``...) or a white-box attack.

    ``cfg`` has ``attack=auto`` and ``search=auto`` resolved (:mod:`blackbox.settings.auto`);
    ``search_name`` names its search space in tables.

    Raises:
        ValueError: ``cfg`` still holds ``attack=auto`` (or ``search=auto`` under the patch search):
            a caller's mistake, resolve it with :func:`blackbox.settings.auto.resolved_for` first.
    """
    if cfg.attack.name == "auto" or (cfg.attack.name == "blackbox" and cfg.search.get("kind") == "auto"):
        raise ValueError("attack=auto or search=auto unresolved: call blackbox.settings.auto.resolved_for")
    if cfg.attack.name != "blackbox":
        settings = {k: v for k, v in OmegaConf.to_container(cfg.attack, resolve=True).items() if k != "name"}  # type: ignore[union-attr]
        family = attack_family(cfg.attack)
        return ConfiguredSpec(name=str(cfg.attack.name), factory=lambda: instantiate(settings), family=family)
    composed = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(composed, dict)
    return SearchSpec(
        sampler_name=str(cfg.sampler.name),
        sampler_factory=instantiate(cfg.sampler.factory),
        search=OmegaConf.to_container(cfg.search, resolve=True),  # type: ignore[arg-type]
        budget=int(cfg.budget),
        batch_size=int(cfg.batch_size),
        early_stop=bool(cfg.early_stop),
        seed=int(cfg.seed),
        progress=bool(cfg.get("progress", True)),
        write_behind=bool(cfg.storage.get("write_behind", True)),
        ask_ahead=bool(cfg.get("ask_ahead", True)),
        warm_start=warm_start(cfg),
        shrink=shrink_settings(cfg),
        study_settings={key: composed.get(key) for key in STUDY_SETTINGS},
        search_name=search_name,
    )


def shrink_settings(cfg: DictConfig) -> ShrinkSettings:
    """``shrink:`` (PatchSearch's L2 shrink after the first success; off when the key is absent).

    Raises:
        ConfigError: ``shrink.steps``, ``tolerance``, ``rounds`` or ``factor`` out of range.
    """
    node = cfg.get("shrink") or {}
    try:
        return ShrinkSettings(
            enabled=bool(node.get("enabled", False)),
            steps=int(node.get("steps", 8)),
            tolerance=float(node.get("tolerance", 1.0 / 256)),
            rounds=int(node.get("rounds", 0)),
            factor=float(node.get("factor", 0.7)),
            patience=int(node.get("patience", 20)),
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None


def load_stand_in(setting: str, name: str, aspect_ratios: Sequence[float]) -> DifferentiableTarget:
    """The zoo target ``name`` as a differentiable stand-in (for ``warm_start=``, ``whitebox_target=``).

    Raises:
        ConfigError: the target gives no gradients.
    """
    stand_in = load(name, aspect_ratios=aspect_ratios)
    advice = f"name a zoo target that gives gradients (a local saliency model, e.g. {setting}=classic)"
    require(stand_in, {Capability.GRADIENTS}, by=setting, name=name, advice=advice)
    return cast(DifferentiableTarget, stand_in)  # the targets that give gradients are these


def warm_start(cfg: DictConfig):
    """``warm_start=<zoo name>``: iterative FGM on that local, differentiable stand-in (or ``None``)."""
    name = cfg.get("warm_start")
    if not name:
        return None
    stand_in = load_stand_in("warm_start", str(name), cfg.aspect_ratios)
    crafter = IterativeFGM(steps=3, gradcam=stand_in.feature_layer() is not None, seed=int(cfg.seed))

    def transfer_perturbation(problem: AttackProblem) -> np.ndarray:
        result = crafter.run(problem, stand_in)
        return (result.adversarial.astype(np.float64) - problem.image.pixels) / 255.0

    return transfer_perturbation


def storage_settings(cfg: DictConfig, *, recorded: Path | None = None) -> StorageSettings:
    """``storage.*``; for ``postgres`` the experiment's name is resolved here (:func:`experiment_name`).

    ``recorded``: a run folder's ``experiment.json``; a run read back names the experiment and artifact
    folder it used, whatever the config resolves to now.
    """
    storage = cfg.storage
    kind = str(storage.kind)
    if kind != "postgres":
        return StorageSettings(
            kind=kind, url=storage.get("url"), write_behind=bool(storage.get("write_behind", True))
        )
    name, artifacts = experiment_name(cfg), storage.get("artifacts_dir")
    if recorded is not None and recorded.exists():
        described = json.loads(recorded.read_text())
        name, artifacts = described["experiment"], described["artifacts_dir"]
    poll = storage.get("poll_interval")
    worker = cfg.get("worker")
    return StorageSettings(
        kind=kind,
        url=storage.get("url"),
        write_behind=bool(storage.get("write_behind", False)),
        experiment=name,
        heartbeat_interval=float(storage.get("heartbeat_interval", 10)),
        grace_period=float(storage.get("grace_period", 30)),
        max_retry=int(storage.get("max_retry", 3)),
        poll_interval=float(poll) if poll else None,
        artifacts_dir=Path(artifacts) if artifacts else None,
        worker=str(worker) if worker not in (None, "") else None,
    )


def experiment_name(cfg: DictConfig) -> str:
    """``storage.experiment``, or a digest of what the run attacks and how (every setting except
    :data:`NOT_IDENTITY`): the same command started again joins the same experiment."""
    explicit = cfg.storage.get("experiment")
    if explicit:
        return str(explicit)
    settings = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(settings, dict)
    identity = {key: value for key, value in settings.items() if key not in NOT_IDENTITY}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    target = (cfg.get("target") or {}).get("name") or "run"
    return f"{target}_{digest}"


def stored_storage(run_dir: Path) -> StorageSettings | None:
    """The storage settings a run folder's saved config names; ``None`` when it has none (a run made
    from Python, or a comparison, whose trials are in ``optuna.journal``)."""
    if not (run_dir / ".hydra" / "config.yaml").exists():
        return None
    cfg = stored_config(run_dir)
    if "storage" not in cfg:
        return None
    return storage_settings(cfg, recorded=run_dir / "experiment.json")
