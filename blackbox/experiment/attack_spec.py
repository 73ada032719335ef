"""How a command builds its attacks: one spec per method, a fresh attack per image and eps.

The settings edge (:mod:`blackbox.settings.build`, or :func:`blackbox.attack`) turns ``attack=`` /
``sampler=`` / ``search=`` into a spec; the core builds attacks from it, giving the black-box search
the run's Optuna storage and trial callbacks (artifacts, a worker's lease guard).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import optuna

from blackbox.attacks import Attack, AttackProblem
from blackbox.search import PatchSearch, ShrinkSettings, StagedSearch
from blackbox.search.features import is_feature_space
from blackbox.search.staged import is_staged

Family = Literal["white-box", "black-box"]


@runtime_checkable
class KeepsTrials(Protocol):
    """An attack from ``conf/attack/`` that writes its queries as trials to the run's Optuna storage
    (:class:`~blackbox.search.SquareSearch`); the others keep none."""

    def keeping_trials(self, storage: optuna.storages.BaseStorage | str | None) -> Attack: ...


class AttackSpec(abc.ABC):
    """One method: its name, its family, and how to build its attack."""

    name: str
    family: Family

    @abc.abstractmethod
    def build(
        self,
        *,
        storage: optuna.storages.BaseStorage | str | None = None,
        trial_callbacks: Sequence[Callable] = (),
    ) -> Attack:
        """A fresh attack; ``storage`` and ``trial_callbacks`` matter to the black-box search only."""


@dataclass(frozen=True, kw_only=True)
class ConfiguredSpec(AttackSpec):
    """An attack from ``conf/attack/``, built by its ``factory``: the white-box attacks, and the black-box
    searches kept there (``attack=accumulate``, ``family="black-box"``: no eps bisection for them).

    Args:
        name: the method's name (``iterative_fgm``, ``pgd``, ``accumulate``...).
        factory: no arguments, returns the attack (its seed restarts each run).
        family: ``white-box`` (default) or ``black-box``.
    """

    name: str
    factory: Callable[[], Attack] = field(repr=False)
    family: Family = "white-box"

    def build(self, *, storage=None, trial_callbacks=()) -> Attack:
        attack = self.factory()
        if isinstance(attack, KeepsTrials):  # the square search: its trials go to the run's storage
            return attack.keeping_trials(storage)
        return attack


@dataclass(frozen=True, kw_only=True)
class SearchSpec(AttackSpec):
    """The black-box patch search (:class:`~blackbox.search.PatchSearch`) and its settings.

    Args:
        sampler_name: the sampler's name (``tpe``, ``random``...): the method's name, part of study names.
        sampler_factory: ``sampler_factory(seed=int)`` gives a fresh Optuna sampler.
        search: the declared search space (``conf/search/``: ``n_patches``, ``region``, ``space``...).
        budget: target queries per image (> 0).
        batch_size: candidates per target call (> 0).
        early_stop: stop an image's search at its first success.
        seed: the study seed.
        progress: show the search's progress bar.
        write_behind: search in memory, write each answered batch to the storage at once.
        ask_ahead: ask the next batch while the target answers this one.
        warm_start: gives a dense transfer perturbation (H, W, 3) in [-1, 1] for a problem; its fitted
            patches are the first trial (``warm_start=<zoo name>``), or ``None``.
        shrink: after the first success, bisect toward the smallest successful L2 (default off).
        study_settings: the settings a study records when made and requires when resumed (JSON
            values; ``None``: no check), so a study is never resumed by a search with other ones.
        search_name: the ``conf/search/`` name of ``search`` where known (``search=auto`` resolved to
            the target's), for tables; ``""`` otherwise.
    """

    sampler_name: str
    sampler_factory: Callable[..., optuna.samplers.BaseSampler] = field(repr=False)
    search: Mapping
    budget: int
    batch_size: int = 4
    early_stop: bool = True
    seed: int = 0
    progress: bool = True
    write_behind: bool = True
    ask_ahead: bool = True
    warm_start: Callable[[AttackProblem], np.ndarray] | None = field(default=None, repr=False)
    shrink: ShrinkSettings = field(default_factory=ShrinkSettings)
    study_settings: Mapping | None = None
    search_name: str = ""
    family: Family = "black-box"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.sampler_name

    def build(self, *, storage=None, trial_callbacks=()) -> Attack:
        factory = self.sampler_factory

        def search(
            space: Mapping,
            budget: int,
            sampler_name: str,
            shrink: bool,
            warm_start: Callable[[AttackProblem], np.ndarray] | None,
            store: optuna.storages.BaseStorage | str | None,
        ) -> PatchSearch:
            return PatchSearch(
                sampler_factory=lambda seed: factory(seed=seed),
                sampler_name=sampler_name,
                search=dict(space),
                budget=budget,
                batch_size=self.batch_size,
                early_stop=self.early_stop,
                storage=store,
                seed=self.seed,
                progress=self.progress,
                warm_start=warm_start,
                trial_callbacks=trial_callbacks,
                write_behind=self.write_behind,
                ask_ahead=self.ask_ahead,
                shrink=self.shrink if shrink else None,
                study_settings=self.study_settings,
            )

        if not is_staged(self.search):
            return search(self.search, self.budget, self.sampler_name, True, self.warm_start, storage)

        def stage(
            *,
            search_space: Mapping,
            budget: int,
            stage: str,
            shrink: bool,
            memory: optuna.storages.BaseStorage,
        ) -> PatchSearch:
            # Each stage its own study (<sampler>:<stage>), in the run's storage or the staged
            # search's memory; the warm start fits Gaussian patches, so only a patch stage takes it.
            warm = None if is_feature_space(search_space) else self.warm_start
            name = f"{self.sampler_name}:{stage}"
            return search(
                search_space, budget, name, shrink, warm, storage if storage is not None else memory
            )

        return StagedSearch(make_stage=stage, search=self.search, budget=self.budget, name=self.sampler_name)
