"""A conformance suite every sampler runs: Optuna's own sampler tests, then ours inside the search.

A sampler's test module subclasses :class:`SamplerConformance` and provides a ``sampler_factory``
fixture: a callable making the sampler from a seed, as ``conf/sampler/*.yaml`` builds it::

    class TestMySampler(SamplerConformance):
        @pytest.fixture
        def sampler_factory(self):
            return lambda seed: MySampler(seed=seed)

Optuna's part is :class:`optuna.testing.pytest_samplers.BasicSamplerTestCase` (independent
sampling stays in every kind of distribution, NaN objectives, fixed parameters, conditional and
dynamic spaces), run on the sampler made with seed 0. A sampler whose relative sampling covers any
search space (TPE multivariate, CMA-ES, GP) also subclasses :class:`RelativeSamplerConformance`,
which adds Optuna's ``RelativeSamplerTestCase``.

Our rules, inside :class:`~blackbox.search.PatchSearch` on the ``classic`` target and the
small image of :mod:`blackbox.attacks.testing`:

- the search spends exactly its query budget, counted by the target, and stores one completed
  trial per query;
- the same seed gives the same trials;
- a search stopped mid-way (Ctrl-C while the target answers a batch) and resumed from its storage
  ends with the same budget spent, no answered trial lost and none drawn twice; the batch that
  was out counts as spent;
- a search stopped between two batches resumes to exactly the trials of an uninterrupted one
  (the sampler is re-seeded per batch from the storage: it must keep no other state).

Third-party samplers run the same suite: it needs pytest, Optuna's testing module and this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, RelativeSamplerTestCase
from optuna.trial import FrozenTrial, TrialState

from blackbox.attacks.testing import counting, sample_problem
from blackbox.search.patch_search import PatchSearch
from targets import Target, TargetOutput

__all__ = ["RelativeSamplerConformance", "SamplerConformance", "StopAfter"]

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]

#: The search space the rules search: two Gabor-like patches (14 parameters).
SEARCH: Mapping = {
    "n_patches": 2,
    "region": "goal",
    "margin": 0.5,
    "space": {
        "size": {"low": 2.0, "high": 10.0, "log": True},
        "amplitude": {"low": -1.0, "high": 1.0},
        "frequency": {"low": 0.0, "high": 0.3},
        "angle": {"low": 0.0, "high": 3.14},
    },
}


class StopAfter(Target):
    """Answers as ``inner`` does for ``calls`` target calls, then raises ``KeyboardInterrupt`` (Ctrl-C)."""

    def __init__(self, inner: Target, calls: int) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner, self.calls, self.name = inner, calls, inner.name

    @property
    def outputs(self):  # type: ignore[override]
        return self.inner.outputs

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.inner.query(images)


def _stored(storage: optuna.storages.BaseStorage) -> list[FrozenTrial]:
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)


def _draws(trials: list[FrozenTrial]) -> list[tuple]:
    return [(t.number, t.state.name, t.params, t.value) for t in trials]


class SamplerConformance(BasicSamplerTestCase):
    """What every sampler promises, alone and inside the search. Subclasses provide ``sampler_factory``."""

    #: Queries per image in the rules' searches, and candidates per target call.
    budget: ClassVar[int] = 9
    batch_size: ClassVar[int] = 3

    @pytest.fixture
    def sampler_factory(self) -> SamplerFactory:  # pragma: no cover - always overridden
        raise NotImplementedError("provide a `sampler_factory` fixture: seed -> sampler")

    @pytest.fixture
    def sampler(self, sampler_factory: SamplerFactory) -> Callable[[], optuna.samplers.BaseSampler]:
        """What Optuna's test cases call: a fresh sampler, seeded 0."""
        return lambda: sampler_factory(0)

    @pytest.fixture
    def target(self) -> Target:
        from targets.classic import ClassicSaliency

        return ClassicSaliency()

    def search(
        self,
        sampler_factory: SamplerFactory,
        *,
        storage: optuna.storages.BaseStorage | None = None,
        budget: int | None = None,
        **settings: object,
    ) -> PatchSearch:
        """The search the rules run: :data:`SEARCH`, no early stop, the project's other defaults."""
        return PatchSearch(
            sampler_factory=sampler_factory,
            sampler_name="under_test",
            search=SEARCH,
            budget=budget or self.budget,
            batch_size=self.batch_size,
            early_stop=False,
            storage=storage,
            progress=False,
            **settings,  # type: ignore[arg-type]
        )

    def test_search_spends_its_query_budget(self, sampler_factory: SamplerFactory, target: Target) -> None:
        counted = counting(target)
        problem = sample_problem(counted, eps=2.0)
        before = counted.counters()["images_answered"]
        storage = optuna.storages.InMemoryStorage()
        result = self.search(sampler_factory, storage=storage).run(problem, counted)
        assert counted.counters()["images_answered"] - before == result.queries == self.budget
        complete = [t for t in _stored(storage) if t.state == TrialState.COMPLETE]
        assert len(complete) == self.budget
        assert sorted(t.user_attrs["queries"] for t in complete) == list(range(1, self.budget + 1))

    def test_same_seed_same_trials(self, sampler_factory: SamplerFactory, target: Target) -> None:
        problem = sample_problem(target, eps=2.0)
        runs = []
        for _ in range(2):
            storage = optuna.storages.InMemoryStorage()
            self.search(sampler_factory, storage=storage).run(problem, target)
            runs.append(_draws(_stored(storage)))
        assert runs[0] == runs[1]

    def test_stopped_mid_batch_then_resumed_loses_and_repeats_nothing(
        self, sampler_factory: SamplerFactory, target: Target, tmp_path: Path
    ) -> None:
        def journal() -> optuna.storages.BaseStorage:  # a file, opened afresh by each session
            backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
            return optuna.storages.JournalStorage(backend)

        problem = sample_problem(target, eps=2.0)
        answered_calls = 1  # the second call is cut off by Ctrl-C, its batch already sent
        with pytest.raises(KeyboardInterrupt):
            self.search(sampler_factory, storage=journal()).run(problem, StopAfter(target, answered_calls))
        before = _stored(journal())
        answered = [t for t in before if t.state == TrialState.COMPLETE]
        assert len(answered) == answered_calls * self.batch_size, "an answered trial was not stored"
        counted = counting(target)
        result = self.search(sampler_factory, storage=journal()).run(problem, counted)
        after = _stored(journal())
        # The same budget: the cut-off batch may have reached the target, so it counts as spent.
        assert result.queries == self.budget
        spent_again = counted.counters()["images_answered"] - int(result.extra["resumed_best_requeries"])
        assert spent_again == self.budget - (answered_calls + 1) * self.batch_size
        interrupted = [t for t in after if t.user_attrs.get("fail_reason", "").startswith("interrupted")]
        assert len(interrupted) == self.batch_size
        # Nothing lost: every answered trial is still there, as it was.
        kept = {t.number: t for t in after}
        for trial in answered:
            assert (kept[trial.number].params, kept[trial.number].value) == (trial.params, trial.value)
        # Nothing repeated: one trial per number, and no candidate drawn twice.
        assert [t.number for t in after] == list(range(len(after)))
        drawn = [tuple(sorted(t.params.items())) for t in after if t.params]
        assert len(drawn) == len(set(drawn)), "a candidate was drawn again after the resume"

    def test_stopped_between_batches_resumes_to_the_same_trials(
        self, sampler_factory: SamplerFactory, target: Target
    ) -> None:
        problem = sample_problem(target, eps=2.0)
        whole = optuna.storages.InMemoryStorage()
        self.search(sampler_factory, storage=whole, ask_ahead=False).run(problem, target)
        resumed = optuna.storages.InMemoryStorage()
        # Two batches, then the same command with the whole budget (a stop between batches).
        first = 2 * self.batch_size
        self.search(sampler_factory, storage=resumed, budget=first, ask_ahead=False).run(problem, target)
        self.search(sampler_factory, storage=resumed, ask_ahead=False).run(problem, target)
        assert _draws(_stored(resumed)) == _draws(_stored(whole))


class RelativeSamplerConformance(SamplerConformance, RelativeSamplerTestCase):
    """:class:`SamplerConformance` plus Optuna's relative sampler tests, for samplers whose relative
    sampling covers any search space (not only the search's own parameter names)."""
