"""Two searches on one query budget: a short first stage, then a second search space (``kind: staged``).

On saliency networks no one search space wins everywhere (README, "Search design on saliency
networks"): ``search=texture`` moves most pictures with its first batch (a fine texture on each of
the goal's most salient clean cells) and then rarely with more queries, while ``search=blobs``
needs tens of queries but moves pictures the textures never do. A staged search spends the first
``first_queries`` queries on the ``first`` space; if none of them succeeds, the ``then`` space is
searched with the rest of the budget. A first stage that succeeds keeps the whole budget, so its
own shrink (``shrink.enabled``) goes on from its success.

Each stage is an ordinary :class:`~blackbox.search.patch_search.PatchSearch` with its own study
(named ``<sampler>:first`` and ``<sampler>:then``), so every trial replays (``blackbox.replay
study=...``) and an interrupted run resumes: the first stage's stored queries decide, as before, which
stage goes on. The result is one :class:`~blackbox.attacks.AttackResult` over both stages:
``queries`` and ``queries_to_success`` count the first stage's queries too, and ``extra`` names the
stage that gave it (``stage``) and the first stage's study (``first_study``).

Config (``conf/search/texture_blobs.yaml``)::

    kind: staged
    first_queries: 4    # the first stage's queries when none succeeds (its prior batch)
    first: {...}        # a search space (conf/search/texture.yaml)
    then: {...}         # a search space (conf/search/blobs.yaml)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import optuna

from blackbox.attacks._base import Attack, AttackProblem, AttackResult
from blackbox.search.patch_search import NothingChangedError
from blackbox.search.search_space import SearchSpaceError
from targets import Target

#: ``search.kind`` of a staged search.
KIND = "staged"
STAGES = ("first", "then")

#: ``make_stage(search_space=..., budget=..., stage=..., shrink=..., memory=...)``: one stage's
#: PatchSearch, the other settings (sampler, batch size, storage, seed...) those of the run; ``memory``
#: is the storage to use when the run keeps none (one per image, so the first stage's study outlives
#: its probe run).
StageFactory = Callable[..., Attack]


def is_staged(search: Mapping) -> bool:
    """Whether ``search`` declares a staged search (``kind: staged``) rather than one space."""
    return search.get("kind") == KIND


def check_staged(search: Mapping, budget: int | None = None) -> None:
    """Raise :class:`~blackbox.search.search_space.SearchSpaceError` naming the first unusable key.

    ``first_queries`` is a whole number >= 1 (below ``budget`` when given: the second stage needs
    queries), ``first`` and ``then`` are search spaces and neither is itself staged.
    """
    count = search.get("first_queries")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SearchSpaceError(
            f"search.first_queries must be a whole number >= 1 (the first stage's queries), got {count!r}"
        )
    if budget is not None and count >= budget:
        raise SearchSpaceError(
            f"search.first_queries={count} leaves nothing of budget={budget} for the second stage; "
            "raise budget or lower search.first_queries"
        )
    for stage in STAGES:
        space = search.get(stage)
        if not isinstance(space, Mapping) or not space:
            raise SearchSpaceError(
                f"search.{stage} must be a search space (e.g. the keys of conf/search/texture.yaml), "
                f"got {space!r}"
            )
        if is_staged(space):
            raise SearchSpaceError(f"search.{stage} is itself staged: a stage must be one search space")


class StagedSearch(Attack):
    """``first`` for ``first_queries`` queries, then ``then`` with the rest of ``budget`` (module doc).

    ``make_stage(search_space=space, budget=queries, stage="first" | "then", shrink=bool,
    memory=storage)`` builds one stage's search (a :class:`~blackbox.search.patch_search.PatchSearch`
    whose study name holds the stage); ``shrink=False`` asks for a stage without its shrink (the
    first stage's probe); ``memory`` is an in-memory Optuna storage, one per :meth:`run`, for a run
    that keeps no storage of its own: the first stage's success is resumed from it.

    Raises:
        SearchSpaceError: ``search`` is not a usable staged search (:func:`check_staged`).
    """

    def __init__(self, *, make_stage: StageFactory, search: Mapping, budget: int, name: str) -> None:
        check_staged(search, budget)
        self.make_stage = make_stage
        self.search = dict(search)
        self.budget = int(budget)
        self.first_queries = int(search["first_queries"])
        self.name = name

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        """Search ``problem``'s first stage, and the second when the first finds no success.

        Raises:
            AttackFailedError: a stage's target calls failed (re-run to resume), or the second stage
                could not change the image.
        """
        first_space, then_space = self.search["first"], self.search["then"]
        make_stage = functools.partial(self.make_stage, memory=optuna.storages.InMemoryStorage())
        probe = make_stage(search_space=first_space, budget=self.first_queries, stage="first", shrink=False)
        try:
            first = probe.run(problem, target)
        except NothingChangedError:  # e.g. an eps too small for the first space: the second has all
            then = make_stage(search_space=then_space, budget=self.budget, stage="then", shrink=True)
            return self._relabel(then.run(problem, target), "then", None)
        if first.success:
            # The same study again with the whole budget: it resumes at the success and shrinks.
            whole = make_stage(search_space=first_space, budget=self.budget, stage="first", shrink=True)
            return self._relabel(whole.run(problem, target), "first", first.extra.get("study"))
        then = make_stage(
            search_space=then_space, budget=self.budget - first.queries, stage="then", shrink=True
        ).run(problem, target)
        # A failed second stage reports the better-scoring of the two stages' best images.
        stage, best = ("then", then) if then.success or then.score >= first.score else ("first", first)
        return dataclasses.replace(
            self._relabel(best, stage, first.extra.get("study")),
            success=then.success,
            queries=first.queries + then.queries,
            queries_to_success=None
            if then.queries_to_success is None
            else first.queries + then.queries_to_success,
            failed_queries=first.failed_queries + then.failed_queries,
        )

    def _relabel(self, result: AttackResult, stage: str, first_study: str | None) -> AttackResult:
        """``result`` under this search's name, saying which stage gave it and the first stage's study
        (``None``: the first stage sent nothing)."""
        extra = {**result.extra, "stage": stage, "first_study": first_study}
        return dataclasses.replace(result, method=self.name, extra=extra)
