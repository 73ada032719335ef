"""The black-box attack: an Optuna search over patch coordinates and patterns.

Every trial renders ``n_patches`` patches (see :mod:`blackbox.core.perturbation`), fills the budget,
quantises to 8 bits, and asks the target. It sees only the target's outputs and scores them with
:mod:`blackbox.core.objective`. The budget is counted in target queries
(:class:`~blackbox.search.budget.QueryBudget`); the search stops early on success if ``early_stop``.
With ``shrink`` enabled, the rest of the budget after the first success bisects the best success's
scale (and, with ``shrink.rounds``, searches again below it), and the result is the smallest
successful L2 found (:mod:`blackbox.search._shrink`). A grid-feature space may name a first trial
(``search.prior``, :mod:`blackbox.search.prior`), asked before the sampler's own.

The pieces, each in its module:

- :mod:`blackbox.search._study`: one Optuna study per (image, target, goal, eps) keeps every
  trial, with its full perturbation config as a user attribute, so a trial replays to the
  byte-identical image (``blackbox.settings.replay``). A study found in the storage is resumed:
  its completed trials count against the budget and are not redone. With ``write_behind`` (the
  default) the search runs on an in-memory copy and writes each answered batch at once. Seeds.
- :mod:`blackbox.search._session`: the loop. Batches of ``batch_size`` trials sent as one target
  call; with ``ask_ahead`` (the default) the next batch is asked while the target answers, always
  before this one is told, so the search is as deterministic as without.
- :mod:`blackbox.search._shrink`: the decision-based L2 shrink after the first success, and its
  rounds of search at smaller eps.
- :mod:`blackbox.search.search_space`: the declared space, its parameter names, trial configs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import optuna

from blackbox.attacks._base import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.search import features
from blackbox.search._session import (
    MAX_CONSECUTIVE_FAILURES,
    MIN_NO_CHANGE,
    SearchSession,
    SessionSettings,
    TrialCallback,
    TrialRecord,
    judge_for,
)
from blackbox.search._shrink import ShrinkSettings, Shrunk, shrink, stored_best
from blackbox.search._study import SearchStudy, batch_seed, study_seed
from blackbox.search.budget import QueryBudget
from blackbox.search.prior import prior_trials
from blackbox.search.search_space import Region, distributions, patch_regions, render_config, trial_config
from blackbox.search.warm_start import fit_patches
from targets import Target, require

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "MIN_NO_CHANGE",
    "NothingChangedError",
    "PatchSearch",
    "SamplerFactory",
    "ShrinkSettings",
    "TrialCallback",
    "TrialRecord",
    "batch_seed",
    "render_trial",
    "study_attrs",
    "study_name",
]


class NothingChangedError(AttackFailedError):
    """Every candidate rounded to the clean image at this eps, so the search sent nothing."""


def study_name(problem: AttackProblem, sampler_name: str, rule: str = "point") -> str:
    """One study per (image, target, goal, eps), sampler and success rule: none share trials.

    The ``point`` rule adds nothing to the name, so studies made before the rules existed resume.
    """
    g = problem.goal
    return (
        f"{problem.image.image_id}|{problem.target_name}|goal={g.source}:"
        f"{g.x0:.0f},{g.y0:.0f},{g.x1:.0f},{g.y1:.0f}|{problem.budget}|{sampler_name}"
        + (f"|success={rule}" if rule != "point" else "")
    )


def study_attrs(problem: AttackProblem, sampler_name: str, budget: int) -> dict[str, object]:
    """What a new study records of its problem (dashboards, replay and worker progress read them)."""
    image = problem.image
    return {
        "image": image.image_id,
        "source": image.source,
        "target": problem.target_name,
        "goal": problem.goal.as_dict(),
        "eps": problem.eps,
        "norm": problem.norm,
        "sampler": sampler_name,
        "budget": budget,
    }


def render_trial(problem: AttackProblem, config: Mapping) -> np.ndarray:
    """The 8-bit adversarial image a trial config describes (what replay re-does)."""
    return render_config(problem.image.pixels, config)


class PatchSearch(Attack):
    """Black-box patch search driven by any Optuna sampler (``tpe``, ``random``, ...).

    ``sampler_factory(seed)`` makes the sampler (re-seeded per batch); ``sampler_name`` names the
    method and its studies; ``search`` is the declared search space (``conf/search/*.yaml``);
    ``budget`` is in target queries per image, ``batch_size`` candidates per target call.
    ``storage`` (an Optuna storage or URL; ``None``: in memory) keeps the trials; ``trial_callbacks``
    see each trial before it is told; ``warm_start(problem)`` gives a dense ``(H, W, 3)``
    perturbation whose fitted patches are the first trial. ``shrink`` (default off): after the first
    success, bisect the best success's scale with the budget left (then search and bisect in
    ``shrink.rounds`` at smaller eps) and report the smallest successful L2 (``queries_to_success``
    stays the first success's; ``extra.first_success_l2`` keeps its L2). ``study_settings`` (JSON
    values, default none): recorded in a new study; a stored study that recorded others is refused
    (:class:`~blackbox.search.StudySettingsError`) instead of resumed.

    Raises:
        ValueError: ``budget`` or ``batch_size`` is not positive, or ``search`` is staged.
    """

    name = "blackbox"

    def __init__(
        self,
        *,
        sampler_factory: SamplerFactory,
        sampler_name: str,
        search: Mapping,
        budget: int,
        batch_size: int = 4,
        early_stop: bool = True,
        storage: optuna.storages.BaseStorage | str | None = None,
        seed: int = 0,
        progress: bool = True,
        trial_callbacks: Sequence[TrialCallback] = (),
        warm_start: Callable[[AttackProblem], np.ndarray] | None = None,
        write_behind: bool = True,
        ask_ahead: bool = True,
        shrink: ShrinkSettings | None = None,
        study_settings: Mapping[str, object] | None = None,
    ) -> None:
        if budget <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {budget}")
        if search.get("kind") == "staged":  # (blackbox.search.staged imports this module)
            raise ValueError(
                "a staged search (kind: staged) runs two PatchSearches: build it with "
                "blackbox.search.StagedSearch, or from config (blackbox.settings.build.attack_spec)"
            )
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler_factory = sampler_factory
        self.sampler_name = sampler_name
        self.search = dict(search)
        self.budget = int(budget)
        self.batch_size = int(batch_size)
        self.early_stop = early_stop
        self.storage = storage
        self.seed = int(seed)
        self.progress = progress
        # Called before each trial is told, while its user attributes can still be set.
        self.trial_callbacks = tuple(trial_callbacks)
        # Gives a dense transfer perturbation for a problem; its fitted patches are the first trial.
        self.warm_start = warm_start
        # Search in memory and write each answered batch to the storage at once (blackbox.search._study).
        self.write_behind = write_behind
        # Ask the next batch while the target answers this one (blackbox.search._session).
        self.ask_ahead = ask_ahead
        # After the first success, bisect toward the smallest successful L2 (off: None or disabled).
        self.shrink = shrink if shrink is not None and shrink.enabled else None
        # Recorded in a new study, required of a stored one (blackbox.search._study.StudySettingsError).
        self.study_settings = dict(study_settings) if study_settings is not None else None
        self.name = sampler_name

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        """Search ``problem`` on ``target`` within the query budget, resuming its stored study.

        Raises:
            AttackFailedError: no trial completed (the target failed, or every candidate rounded to
                the clean image), or the target failed too often with budget left (re-run to resume).
        """
        require(target, self.requires, by=self.name, name=problem.target_name)
        rule = self.success_rule(problem, target)
        width, height = problem.image.width, problem.image.height
        regions: list[Region] = []
        if features.is_feature_space(self.search):  # grid features for feature-scoring croppers
            if self.warm_start is not None:
                raise ValueError(
                    "warm_start fits Gaussian patches: use it with search=blobs or patches, not grid"
                )

            def configure(eps: float) -> Callable[[Mapping[str, object]], dict]:
                return features.config_maker(
                    self.search,
                    problem.goal,
                    width,
                    height,
                    eps=eps,
                    norm=problem.norm,
                    eps_inf=problem.eps_inf,
                )[1]

            space = features.feature_distributions(self.search, problem.goal, width, height)
        else:
            regions = patch_regions(
                self.search, problem.goal, width, height, problem.clean_output.salient_point
            )
            region = regions if len(set(regions)) > 1 else regions[0]
            space = distributions(self.search, region)

            def configure(eps: float) -> Callable[[Mapping[str, object]], dict]:
                budget = problem.budget.with_eps(eps)  # the L-inf cap holds at every eps the shrink tries
                return lambda params: trial_config(self.search, params=params, region=region, budget=budget)

        # A trial's params -> its config (the shrink's rounds configure smaller eps).
        make_config = configure(problem.eps)

        name = study_name(problem, self.sampler_name, rule)
        seed = study_seed(self.seed, name)
        study = SearchStudy.open(
            storage=self.storage,
            name=name,
            sampler=lambda: self.sampler_factory(seed),
            attrs=self._study_attrs(problem),
            write_behind=self.write_behind,
            settings=self.study_settings,
        )
        if features.is_feature_space(self.search) and not study.trials():
            # The space's best first guesses (search.prior), asked before the sampler's own.
            for params in prior_trials(self.search, problem.goal, width, height, problem.clean_output):
                study.live.enqueue_trial(params)
        if self.warm_start is not None and not study.trials():
            delta = self.warm_start(problem)
            n_patches = int(self.search["n_patches"])
            study.live.enqueue_trial(
                fit_patches(delta, n_patches=n_patches, region=regions, space=self.search)
            )
        used, completed = study.resume()
        best = stored_best(completed)  # the shrink rebuilds its probes and rounds from theirs
        session = SearchSession(
            settings=self._session_settings(),
            problem=problem,
            study=study,
            budget=QueryBudget(target, limit=self.budget, used=used),
            space=space,
            make_config=make_config,
            seed=seed,
            judge=judge_for(problem, has_point=target.gives_point, rule=rule),
            best=best,
        )
        session.run()
        self._check_finished(session, problem, name)
        shrunk = shrink(session, self.shrink, configure) if self.shrink is not None else None
        return self._result(session, problem, target, name, rule, shrunk)

    def _study_attrs(self, problem: AttackProblem) -> dict[str, object]:
        return study_attrs(problem, self.sampler_name, self.budget)

    def _session_settings(self) -> SessionSettings:
        return SessionSettings(
            sampler_factory=self.sampler_factory,
            search=self.search,
            budget=self.budget,
            batch_size=self.batch_size,
            early_stop=self.early_stop or self.shrink is not None,
            ask_ahead=self.ask_ahead,
            progress=self.progress,
            trial_callbacks=self.trial_callbacks,
        )

    @staticmethod
    def _check_finished(session: SearchSession, problem: AttackProblem, name: str) -> None:
        """Raise :class:`AttackFailedError` when the session has no result to give, saying why."""
        image_id, failed = problem.image.image_id, session.failed
        if session.gave_up is not None and session.budget.remaining > 0:
            # Budget is left: the image is not done. Its completed trials stay in the study for a re-run.
            completed = len(
                session.study.live.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            )
            raise AttackFailedError(
                f"{image_id}: gave up after {MAX_CONSECUTIVE_FAILURES} failed target calls in a row "
                f"({failed} queries failed; {completed} completed trials kept in the study {name!r}); "
                f"last error: {type(session.gave_up).__name__}: {session.gave_up}. Re-run the same command "
                "to resume"
            )
        if session.best.trial is None and session.no_change:
            raise NothingChangedError(
                f"{image_id}: every one of {session.no_change} candidate perturbations rounded to the clean "
                f"image at eps={problem.eps:g} ({problem.norm}), so none was sent to the target; raise "
                "eps, or use fewer, smaller patches (search.n_patches, search.space.size) so the budget "
                "is not spread below one 8-bit level per pixel"
            )
        if session.best.trial is None:
            raise AttackFailedError(
                f"{image_id}: no trial completed ({failed} queries failed); the study "
                f"{name!r} is kept, re-run the same command to resume"
            )

    def _result(
        self,
        session: SearchSession,
        problem: AttackProblem,
        target: Target,
        name: str,
        rule: str,
        shrunk: Shrunk | None = None,
    ) -> AttackResult:
        best, trials = session.best, session.study.live.trials
        assert best.trial is not None
        extra: dict[str, object] = {}
        if shrunk is not None:  # the smallest success replaces the best-scoring one
            best.trial, best.value = shrunk.trial, shrunk.value
            best.adversarial, best.output = shrunk.adversarial, shrunk.output
            extra = {"first_success_l2": shrunk.first_success_l2, "shrink_queries": shrunk.probes}
        # The best trial came from an earlier, resumed session: its image is re-rendered and asked
        # once more (its map was not stored). That query is outside the budget and reported apart.
        requeries = 0
        if best.adversarial is None:
            best.adversarial = render_trial(problem, trials[best.trial].user_attrs["perturbation"])
            best.output = target.query([best.adversarial.astype(np.float32) / 255.0])[0]
            requeries = 1
        assert best.output is not None
        return AttackResult(
            image_id=problem.image.image_id,
            method=self.name,
            success=best.success,
            adversarial=best.adversarial,
            adversarial_output=best.output,
            goal=problem.goal,
            eps=problem.eps,
            norm=problem.norm,
            eps_inf=problem.eps_inf,
            queries=session.budget.used,
            queries_to_success=best.first_success_queries,
            score=best.value,
            best_trial=best.trial,
            perturbation=trials[best.trial].user_attrs.get("perturbation"),
            failed_queries=session.failed,
            extra={"study": name, "resumed_best_requeries": requeries, **extra},
            success_rule=rule,  # type: ignore[arg-type]
        )
