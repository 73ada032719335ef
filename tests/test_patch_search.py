from __future__ import annotations

import numpy as np
import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from blackbox.attacks import AttackProblem
from blackbox.core.goal import default_goal
from blackbox.core.images import LoadedImage
from blackbox.search import PatchSearch, render_trial
from blackbox.search.budget import BudgetExhaustedError, QueryBudget
from blackbox.search.testing import SEARCH  # two Gabor-like patches, the suites' search space
from targets import Output, Target, TargetOutput
from targets._zoo import group_config
from targets.classic import ClassicSaliency


class CountingTarget(Target):
    """Wraps a target and counts the images it really answered."""

    name = "counting"

    def __init__(self, inner: Target, outputs: frozenset[Output] | None = None) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner, self.seen, self._outputs = inner, 0, outputs

    @property
    def outputs(self) -> frozenset[Output]:
        return self._outputs or self.inner.outputs

    def answer(self, images):
        self.seen += len(images)
        answers = self.inner.query(images)
        if Output.SALIENCY not in self.outputs:
            answers = [TargetOutput(a.salient_point, a.crops, None) for a in answers]
        return answers


def problem_for(photo: np.ndarray, target: Target, eps: float = 2.0) -> AttackProblem:
    image = LoadedImage("chelsea", "test", photo, photo.shape[1::-1])
    clean = target.query([image.as_float])[0]
    goal = default_goal(
        width=image.width,
        height=image.height,
        log_density=clean.log_density,
        salient_point=clean.salient_point,
    )
    return AttackProblem(image, clean, goal, eps, "l2", target.name)


def make_search(
    budget: int,
    *,
    sampler: str = "tpe",
    storage=None,
    early_stop: bool = False,
    seed: int = 0,
    write_behind: bool = True,
):
    """A search with the sampler exactly as ``conf/sampler/<sampler>.yaml`` builds it."""
    root = OmegaConf.create({"budget": budget, "sampler": group_config("sampler", sampler)})
    build = instantiate(root.sampler.factory)

    def factory(seed: int) -> optuna.samplers.BaseSampler:
        return build(seed=seed)

    return PatchSearch(
        sampler_factory=factory,
        sampler_name=sampler,
        search=SEARCH,
        budget=budget,
        batch_size=3,
        early_stop=early_stop,
        storage=storage,
        seed=seed,
        progress=False,
        write_behind=write_behind,
    )


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp"])
def test_budget_is_counted_in_target_queries(photo, sampler) -> None:
    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target)
    target.seen = 0
    result = make_search(10, sampler=sampler).run(problem, target)
    assert target.seen == 10 == result.queries  # 3 + 3 + 3 + 1: the last batch is cut to the budget
    assert result.adversarial.dtype == np.uint8
    delta = (result.adversarial.astype(float) - photo) / 255
    assert np.sqrt((delta**2).sum()) <= 2.0 + 1e-9


def test_early_stop_on_success(photo) -> None:
    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target, eps=30.0)
    target.seen = 0
    result = PatchSearch(
        sampler_factory=lambda s: optuna.samplers.RandomSampler(seed=s),
        sampler_name="random",
        search=SEARCH,
        budget=60,
        batch_size=2,
        early_stop=True,
        progress=False,
    ).run(problem, target)
    assert result.success
    assert result.queries_to_success is not None and result.queries < 60
    assert target.seen == result.queries
    assert problem.goal.contains(result.adversarial_output.salient_point)


def test_trials_store_a_replayable_config(photo) -> None:
    target = ClassicSaliency()
    problem = problem_for(photo, target)
    storage = optuna.storages.InMemoryStorage()
    result = make_search(6, storage=storage).run(problem, target)
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    best = study.trials[result.best_trial]
    assert render_trial(problem, best.user_attrs["perturbation"]).tobytes() == result.adversarial.tobytes()
    assert best.user_attrs["perturbation"]["n_patches"] == 2  # the declared space is in it too
    assert study.user_attrs["image"] == "chelsea" and study.user_attrs["eps"] == 2.0


def test_same_seed_same_trials(photo) -> None:
    target = ClassicSaliency()
    problem = problem_for(photo, target)
    first = make_search(9, seed=3).run(problem, target)
    second = make_search(9, seed=3).run(problem, target)
    assert first.adversarial.tobytes() == second.adversarial.tobytes()
    assert first.perturbation == second.perturbation


def test_resume_keeps_completed_trials(photo, tmp_path) -> None:
    from blackbox.experiment.storage import make_storage

    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target)
    make_search(6, storage=make_storage("journal", tmp_path)).run(problem, target)
    target.seen = 0
    result = make_search(9, storage=make_storage("journal", tmp_path)).run(problem, target)
    # Only the 3 missing queries were spent, and one more (reported apart) if the best trial was an
    # old one, whose image is asked again for its map.
    assert target.seen == 3 + result.extra["resumed_best_requeries"]
    assert result.queries == 9
    study = optuna.load_study(study_name=result.extra["study"], storage=make_storage("journal", tmp_path))
    assert len(study.trials) == 9


def test_crop_only_target(photo) -> None:
    target = CountingTarget(ClassicSaliency(), outputs=frozenset({Output.CROPS}))
    problem = problem_for(photo, target, eps=30.0)
    assert problem.goal.source == "fallback"
    result = make_search(6).run(problem, target)
    assert result.adversarial_output.log_density is None
    assert result.queries == 6


class FailingTarget(CountingTarget):
    def answer(self, images):
        raise ConnectionError("service unreachable")


def test_failing_target_ends_trials_cleanly(photo) -> None:
    inner = ClassicSaliency()
    problem = problem_for(photo, inner)
    storage = optuna.storages.InMemoryStorage()
    with pytest.raises(RuntimeError, match="resume"):
        make_search(9, storage=storage).run(problem, FailingTarget(inner))
    study = optuna.get_all_study_summaries(storage)[0]
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    assert trials and all(t.state == optuna.trial.TrialState.FAIL for t in trials)
    assert "service unreachable" in trials[0].user_attrs["fail_reason"]


def test_budget_wrapper_refuses_overspending(photo) -> None:
    budget = QueryBudget(ClassicSaliency(), limit=1)
    budget.query([photo.astype(np.float32) / 255])
    with pytest.raises(BudgetExhaustedError):
        budget.query([photo.astype(np.float32) / 255])
    with pytest.raises(ValueError, match="positive"):
        QueryBudget(ClassicSaliency(), limit=0)


@pytest.mark.parametrize(("budget", "batch"), [(0, 1), (-5, 1), (5, 0)])
def test_bad_search_settings(budget, batch) -> None:
    with pytest.raises(ValueError):
        PatchSearch(
            sampler_factory=lambda s: optuna.samplers.RandomSampler(seed=s),
            sampler_name="random",
            search=SEARCH,
            budget=budget,
            batch_size=batch,
        )


def test_trial_callbacks_see_every_trial(photo) -> None:
    seen = []
    search = make_search(5)
    search.trial_callbacks = (
        lambda record: seen.append((record.trial.number, record.queries, record.success)),
    )
    result = search.run(problem_for(photo, ClassicSaliency()), ClassicSaliency())
    assert [s[1] for s in seen] == [1, 2, 3, 4, 5]
    assert len(seen) == result.queries


def _stored_trials(tmp_path, study_name: str) -> list[optuna.trial.FrozenTrial]:
    from blackbox.experiment.storage import make_storage

    return optuna.load_study(study_name=study_name, storage=make_storage("journal", tmp_path)).trials


def test_write_behind_stores_what_direct_writes_store(photo, tmp_path) -> None:
    from blackbox.experiment.storage import make_storage

    target = ClassicSaliency()
    problem = problem_for(photo, target)
    runs = {}
    for write_behind in (True, False):
        folder = tmp_path / str(write_behind)
        search = make_search(9, storage=make_storage("journal", folder), seed=5, write_behind=write_behind)
        runs[write_behind] = (search.run(problem, target), _stored_trials(folder, search_name(problem)))
    (behind, behind_trials), (direct, direct_trials) = runs[True], runs[False]
    assert behind.adversarial.tobytes() == direct.adversarial.tobytes()
    assert [t.number for t in behind_trials] == list(range(9))
    for a, b in zip(behind_trials, direct_trials, strict=True):
        assert (a.params, a.value, a.state, a.user_attrs) == (b.params, b.value, b.state, b.user_attrs)


def search_name(problem: AttackProblem) -> str:
    from blackbox.search import study_name

    return study_name(problem, "tpe")


class InterruptedTarget(CountingTarget):
    """Answers ``calls`` target calls, then the user presses Ctrl-C."""

    def __init__(self, inner: Target, calls: int) -> None:
        super().__init__(inner)
        self.calls = calls

    def answer(self, images):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return super().answer(images)


def test_write_behind_keeps_every_answered_batch_on_interrupt(photo, tmp_path) -> None:
    from blackbox.experiment.storage import make_storage

    inner = ClassicSaliency()
    problem = problem_for(photo, inner)
    with pytest.raises(KeyboardInterrupt):
        make_search(12, storage=make_storage("journal", tmp_path)).run(problem, InterruptedTarget(inner, 2))
    stored = _stored_trials(tmp_path, search_name(problem))
    # Two batches of 3 were answered: all 6 are in the storage; the unanswered batch is not.
    assert [t.state for t in stored] == [optuna.trial.TrialState.COMPLETE] * 6
    target = CountingTarget(inner)
    result = make_search(12, storage=make_storage("journal", tmp_path)).run(problem, target)
    # The batch that was out when the run stopped may have reached the target: it counts as spent.
    assert target.seen == 3 + result.extra["resumed_best_requeries"]
    stored = _stored_trials(tmp_path, search_name(problem))
    reasons = [t.user_attrs.get("fail_reason", "") for t in stored]
    assert len(stored) == 12 and sum(r.startswith("interrupted") for r in reasons) == 3
    assert result.queries == 12


@pytest.mark.parametrize(("ask_ahead", "running"), [(True, 3 + 3), (False, 3)])
def test_ask_ahead_asks_the_next_batch_before_telling_this_one(photo, ask_ahead, running) -> None:
    seen = []
    search = make_search(9)
    search.ask_ahead = ask_ahead
    search.trial_callbacks = (
        lambda record: seen.append(
            len(record.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
        ),
    )
    target = CountingTarget(ClassicSaliency())
    result = search.run(problem_for(photo, target), target)
    # First trial of the first batch: its batch is running, and with ask-ahead the next one too.
    assert seen[0] == running
    assert seen[-1] == 1  # only itself: the last batch has nothing after it to ask ahead for
    assert result.queries == 9


def test_asked_ahead_trials_are_discarded_without_spending_queries(photo) -> None:
    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target, eps=30.0)
    storage = optuna.storages.InMemoryStorage()
    target.seen = 0
    result = make_search(30, storage=storage, early_stop=True, write_behind=False).run(problem, target)
    assert result.success and target.seen == result.queries < 30
    trials = optuna.load_study(study_name=search_name(problem), storage=storage).trials
    discarded = [t for t in trials if "discarded" in t.user_attrs]
    assert len(discarded) == 3 and all(t.state == optuna.trial.TrialState.FAIL for t in discarded)
    assert len(trials) - len(discarded) == result.queries


class RecordingTarget(CountingTarget):
    """Keeps every image it was sent, and the GIL switch interval while it answered."""

    def __init__(self, inner: Target) -> None:
        super().__init__(inner)
        self.images: list[np.ndarray] = []
        self.switch_intervals: list[float] = []

    def answer(self, images):
        import sys

        self.images += [image.copy() for image in images]
        self.switch_intervals.append(sys.getswitchinterval())
        return super().answer(images)


def test_ask_ahead_renders_the_next_batch_once_and_sends_what_rendering_later_sends(
    photo, monkeypatch
) -> None:
    import sys

    import blackbox.search._session as session_module

    rendered = []
    render_config = session_module.render_config
    monkeypatch.setattr(
        session_module,
        "render_config",
        lambda clean, config: rendered.append(config) or render_config(clean, config),
    )
    switch_interval = sys.getswitchinterval()
    lowered = min(switch_interval, session_module.ASK_AHEAD_SWITCH_INTERVAL_S)
    sent = []
    for render_ahead in (True, False):
        if not render_ahead:  # each batch rendered when its turn comes, as before render-ahead
            monkeypatch.setattr(session_module.SearchSession, "_render_ahead", lambda self: None)
        rendered.clear()
        target = RecordingTarget(ClassicSaliency())
        result = make_search(12).run(problem_for(photo, target), target)
        assert result.queries == 12 and len(rendered) == 12  # a batch rendered ahead is not rendered again
        sent.append(target.images)
        # While the target answers beside the sampler the GIL changes hands often; then as before.
        # (The first query is the clean image's, made by problem_for before the search.)
        assert target.switch_intervals == [switch_interval] + [lowered] * 4
        assert sys.getswitchinterval() == switch_interval
    assert all(np.array_equal(a, b) for a, b in zip(*sent, strict=True))
