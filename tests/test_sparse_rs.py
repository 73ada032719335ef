from __future__ import annotations

import optuna
import pytest

from blackbox.search.sparse_rs import SparseRSSampler


def space() -> dict[str, optuna.distributions.BaseDistribution]:
    dims = {}
    for p in range(4):
        dims[f"p{p}_x"] = optuna.distributions.IntDistribution(0, 200)
        dims[f"p{p}_y"] = optuna.distributions.IntDistribution(0, 100)
        dims[f"p{p}_size"] = optuna.distributions.FloatDistribution(1.0, 10.0)
    return dims


def test_schedule_halves_at_fixed_fractions_of_the_budget() -> None:
    sampler = SparseRSSampler(budget=1000, p_init=0.8)
    assert sampler.schedule(0) == pytest.approx(0.8)
    assert sampler.schedule(30) == pytest.approx(0.8 / 8)  # past 0.1%, 0.5% and 2%
    assert sampler.schedule(999) == pytest.approx(0.8 / 2**9)


def test_each_proposal_mutates_the_best_so_far_in_location_or_content() -> None:
    dims = space()
    study = optuna.create_study(direction="maximize", sampler=SparseRSSampler(budget=30, seed=0))
    for _ in range(30):
        trial = study.ask(dims)
        best = (
            study.best_trial if study.trials[:-1] and any(t.value is not None for t in study.trials) else None
        )
        if best is not None:
            changed = {name for name in dims if trial.params[name] != best.params[name]}
            kinds = {"location" if name.endswith(("_x", "_y")) else "content" for name in changed}
            assert len(kinds) <= 1, f"one kind of change per proposal, got {changed}"
        study.tell(
            trial,
            -sum(abs(trial.params[f"p{p}_x"] - 150) + abs(trial.params[f"p{p}_y"] - 50) for p in range(4)),
        )
    # Greedy acceptance makes progress on a simple objective.
    assert study.best_value > study.trials[0].value


def test_bad_settings() -> None:
    with pytest.raises(ValueError, match="p_init"):
        SparseRSSampler(budget=10, p_init=0)


def test_a_content_move_redraws_categorical_parameters() -> None:
    # Grid features (search=grid) have a categorical kind: a content move must be able to change it.
    dims = {
        "p0_x": optuna.distributions.FloatDistribution(0.0, 10.0),
        "p0_kind": optuna.distributions.CategoricalDistribution(("checker", "noise", "colour")),
    }
    study = optuna.create_study(direction="maximize", sampler=SparseRSSampler(budget=40, seed=0))
    for _ in range(40):
        trial = study.ask(dims)
        study.tell(trial, 1.0 if study.trials[0].number == trial.number else 0.0)  # the first stays best
    first = study.trials[0].params["p0_kind"]
    kinds = {t.params["p0_kind"] for t in study.trials[1:]}
    assert kinds - {first}, "no proposal ever changed the kind"
    assert kinds <= {"checker", "noise", "colour"}
