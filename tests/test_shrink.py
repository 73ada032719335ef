"""PatchSearch's decision-based L2 shrink after the first success (``shrink.enabled``, issue 18)."""

from __future__ import annotations

import optuna
import pytest
from omegaconf import OmegaConf

from blackbox.core.metrics import perturbation_norms
from blackbox.search import PatchSearch, ShrinkSettings, render_trial
from blackbox.search._shrink import OF, ROUND, SCALE
from blackbox.settings.build import shrink_settings
from targets import ConfigError
from targets.classic import ClassicSaliency
from tests.test_patch_search import SEARCH, CountingTarget, problem_for

EPS = 30.0  # large enough for the random search to succeed within a few queries on chelsea


def shrinking(budget: int, *, storage=None, shrink: ShrinkSettings | None = None) -> PatchSearch:
    return PatchSearch(
        sampler_factory=lambda s: optuna.samplers.RandomSampler(seed=s),
        sampler_name="random",
        search=SEARCH,
        budget=budget,
        batch_size=2,
        storage=storage,
        progress=False,
        shrink=shrink or ShrinkSettings(enabled=True),
    )


@pytest.fixture
def setup(photo):
    target = CountingTarget(ClassicSaliency())
    problem = problem_for(photo, target, eps=EPS)
    target.seen = 0
    return target, problem


def test_shrunk_result_is_a_smaller_success_within_budget_and_eps(setup, photo) -> None:
    target, problem = setup
    result = shrinking(60).run(problem, target)
    l2 = perturbation_norms(photo, result.adversarial)["l2"]
    assert result.success and problem.goal.contains(result.adversarial_output.salient_point)
    # The reported image is a success when asked again, not only in the search's bookkeeping.
    assert problem.goal.contains(target.inner.query([result.adversarial / 255.0])[0].salient_point)
    assert target.seen == result.queries <= 60
    assert l2 <= EPS + 1e-9
    assert result.queries_to_success is not None and result.queries > result.queries_to_success
    # The search stopped with its batch of 2 (the first success, perhaps one more); the rest probed.
    assert result.queries - result.extra["shrink_queries"] - result.queries_to_success in (0, 1)
    assert l2 <= result.extra["first_success_l2"]
    assert l2 < 0.5 * result.extra["first_success_l2"]  # on chelsea the bisection halves it at least
    assert result.extra["shrink_queries"] <= ShrinkSettings().steps


def test_the_shrink_spends_no_more_than_the_budget(setup) -> None:
    target, problem = setup
    whole = shrinking(60).run(problem, target)
    tight = whole.queries_to_success + 2  # the search's last batch may hold one more query
    target.seen = 0
    result = shrinking(tight).run(problem, target)
    assert target.seen == result.queries == tight
    assert result.success and result.queries_to_success == whole.queries_to_success


def test_off_by_default_changes_nothing(setup) -> None:
    target, problem = setup
    off = shrinking(60, shrink=ShrinkSettings(enabled=False)).run(problem, target)
    plain = PatchSearch(
        sampler_factory=lambda s: optuna.samplers.RandomSampler(seed=s),
        sampler_name="random",
        search=SEARCH,
        budget=60,
        batch_size=2,
        progress=False,
    ).run(problem, target)
    assert off.adversarial.tobytes() == plain.adversarial.tobytes()
    assert (off.queries, off.best_trial, off.extra) == (plain.queries, plain.best_trial, plain.extra)
    assert "first_success_l2" not in off.extra


def test_same_seed_same_shrunk_image(setup) -> None:
    target, problem = setup
    first, second = shrinking(60).run(problem, target), shrinking(60).run(problem, target)
    assert first.adversarial.tobytes() == second.adversarial.tobytes()
    assert (first.queries, first.best_trial, first.perturbation) == (
        second.queries,
        second.best_trial,
        second.perturbation,
    )


def test_a_shrink_probe_replays_byte_for_byte(setup) -> None:
    target, problem = setup
    storage = optuna.storages.InMemoryStorage()
    result = shrinking(60, storage=storage).run(problem, target)
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    best = study.trials[result.best_trial]
    assert SCALE in best.user_attrs and OF in best.user_attrs  # the result is a probe
    assert 0 < best.user_attrs[SCALE] < 1
    assert best.user_attrs["perturbation"]["eps"] == pytest.approx(EPS * best.user_attrs[SCALE])
    assert best.params == study.trials[best.user_attrs[OF]].params  # the bisected trial's params
    assert render_trial(problem, best.user_attrs["perturbation"]).tobytes() == result.adversarial.tobytes()
    assert best.user_attrs["success"] and best.user_attrs["queries"] > result.queries_to_success


def test_an_interrupted_shrink_resumes_where_it_stopped(setup, tmp_path) -> None:
    from blackbox.experiment.storage import make_storage

    target, problem = setup
    whole = shrinking(60).run(problem, target)
    cut = whole.queries_to_success + 3
    shrinking(cut, storage=make_storage("journal", tmp_path)).run(problem, target)
    target.seen = 0
    resumed = shrinking(60, storage=make_storage("journal", tmp_path)).run(problem, target)
    assert resumed.adversarial.tobytes() == whole.adversarial.tobytes()
    assert resumed.queries == whole.queries
    assert resumed.queries_to_success == whole.queries_to_success
    assert resumed.extra["first_success_l2"] == whole.extra["first_success_l2"]
    # Only the missing probes were asked, and one more (reported apart) for an old best's map.
    assert target.seen == whole.queries - cut + resumed.extra["resumed_best_requeries"]


@pytest.mark.parametrize(
    ("node", "words"),
    [
        ({"enabled": True, "steps": 0}, "shrink.steps"),
        ({"enabled": True, "tolerance": 2}, "shrink.tolerance"),
        ({"enabled": True, "rounds": -1}, "shrink.rounds"),
        ({"enabled": True, "factor": 1.0}, "shrink.factor"),
        ({"enabled": True, "patience": 0}, "shrink.patience"),
    ],
)
def test_bad_shrink_settings_say_which_key(node, words) -> None:
    with pytest.raises(ConfigError, match=words):
        shrink_settings(OmegaConf.create({"shrink": node}))


def test_missing_shrink_key_is_off() -> None:
    assert shrink_settings(OmegaConf.create({})) == ShrinkSettings()


ROUNDS = ShrinkSettings(enabled=True, rounds=10, factor=0.7, patience=6)


def test_rounds_search_again_below_the_smallest_success(setup, photo) -> None:
    target, problem = setup
    storage = optuna.storages.InMemoryStorage()
    once = shrinking(80).run(problem, target)
    target.seen = 0
    result = shrinking(80, storage=storage, shrink=ROUNDS).run(problem, target)
    l2 = perturbation_norms(photo, result.adversarial)["l2"]
    assert result.success and target.seen == result.queries <= 80
    assert problem.goal.contains(target.inner.query([result.adversarial / 255.0])[0].salient_point)
    # The same search and first bisection, then the rounds: never worse, and here better.
    assert result.queries_to_success == once.queries_to_success
    assert l2 < perturbation_norms(photo, once.adversarial)["l2"]
    study = optuna.load_study(study_name=result.extra["study"], storage=storage)
    searched = [
        t for t in study.trials if ROUND in t.user_attrs.get("perturbation", {}) and OF not in t.user_attrs
    ]
    assert searched, "no round was searched"
    for number in {t.user_attrs["perturbation"][ROUND] for t in searched}:
        asked = [
            t for t in searched if t.user_attrs["perturbation"][ROUND] == number and "queries" in t.user_attrs
        ]
        assert len(asked) <= ROUNDS.patience  # a round that finds nothing ends
        assert max(t.user_attrs["perturbation"]["eps"] for t in asked) < EPS
    best = study.trials[result.best_trial]
    assert render_trial(problem, best.user_attrs["perturbation"]).tobytes() == result.adversarial.tobytes()
    assert l2 <= best.user_attrs["perturbation"]["eps"] + 1e-9


@pytest.mark.parametrize("cut_after", [3, 12, 25])
def test_interrupted_rounds_resume_to_the_uninterrupted_result(setup, tmp_path, cut_after) -> None:
    from blackbox.experiment.storage import make_storage

    target, problem = setup
    whole = shrinking(80, shrink=ROUNDS).run(problem, target)
    cut = whole.queries_to_success + cut_after
    assert cut < whole.queries
    shrinking(cut, storage=make_storage("journal", tmp_path), shrink=ROUNDS).run(problem, target)
    resumed = shrinking(80, storage=make_storage("journal", tmp_path), shrink=ROUNDS).run(problem, target)
    assert resumed.adversarial.tobytes() == whole.adversarial.tobytes()
    assert (resumed.queries, resumed.queries_to_success) == (whole.queries, whole.queries_to_success)
    assert resumed.extra["first_success_l2"] == whole.extra["first_success_l2"]


def test_rounds_are_seeded(setup) -> None:
    target, problem = setup
    first = shrinking(80, shrink=ROUNDS).run(problem, target)
    second = shrinking(80, shrink=ROUNDS).run(problem, target)
    assert first.adversarial.tobytes() == second.adversarial.tobytes()
    assert (first.queries, first.best_trial) == (second.queries, second.best_trial)
