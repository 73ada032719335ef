"""Every sampler the project ships runs the sampler conformance suite (blackbox/search/testing.py):
Optuna's own sampler test cases, then the budget and resume rules inside the search.

Each is built as ``conf/sampler/<name>.yaml`` builds it; ``SparseRSSampler``, no longer in ``conf/``,
as its file did.
"""

from __future__ import annotations

import optuna
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from blackbox.search.sparse_rs import SparseRSSampler
from blackbox.search.testing import RelativeSamplerConformance, SamplerConformance
from targets._zoo import group_config


def from_conf(name: str, budget: int, **changes):
    root = OmegaConf.create({"budget": budget, "sampler": group_config("sampler", name)})
    build = instantiate(OmegaConf.merge(root.sampler.factory, changes))
    return lambda seed: build(seed=seed)


class TestTPE(RelativeSamplerConformance):
    @pytest.fixture
    def sampler_factory(self):
        return from_conf("tpe", self.budget)

    @pytest.fixture
    def sampler(self):
        # Optuna's relative tests sample relatively after one trial: no random startup trials there.
        return lambda: from_conf("tpe", self.budget, n_startup_trials=0)(0)


class TestRandom(SamplerConformance):
    @pytest.fixture
    def sampler_factory(self):
        return from_conf("random", self.budget)


class TestCmaEs(SamplerConformance):
    @pytest.fixture
    def sampler_factory(self):
        return from_conf("cmaes", self.budget)


class TestGP(SamplerConformance):
    @pytest.fixture
    def sampler_factory(self):
        return from_conf("gp", self.budget)


class TestSparseRS(SamplerConformance):
    # Not in conf/sampler/ (it won on no picture set: docs/benchmarks.md); the class stays a library
    # sampler, built as its removed conf file built it.
    @pytest.fixture
    def sampler_factory(self):
        return lambda seed: SparseRSSampler(budget=self.budget, p_init=0.8, seed=seed)


class DrawCounting(optuna.samplers.RandomSampler):
    """A sampler with state outside the storage: it draws differently after every ask it made."""

    made = 0

    def __init__(self, seed: int) -> None:
        DrawCounting.made += 1
        super().__init__(seed=seed + DrawCounting.made)


def test_the_rules_catch_a_sampler_whose_state_is_not_in_the_storage() -> None:
    from targets.classic import ClassicSaliency

    suite = SamplerConformance()
    with pytest.raises(AssertionError):
        suite.test_same_seed_same_trials(DrawCounting, ClassicSaliency())
    with pytest.raises(AssertionError):
        suite.test_stopped_between_batches_resumes_to_the_same_trials(DrawCounting, ClassicSaliency())
