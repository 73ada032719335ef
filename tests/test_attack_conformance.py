"""Every attack of the project runs the attack conformance suite (blackbox/attacks/testing.py).

White-box attacks on ``classic`` at the suite's small working size (96 x 64 px), with few steps;
the black-box search with every search space (``conf/search/``) and sampler (``conf/sampler/``)
it ships, on a budget of a few queries.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blackbox.attacks import PGD, Attack, GaussianNoise, GradCamFGM, GradCamNoise, IterativeFGM
from blackbox.attacks.testing import AttackConformance, counting
from blackbox.search import ShrinkSettings
from blackbox.settings.build import attack_spec
from blackbox.settings.preflight import compose_overrides

CONF = Path(__file__).resolve().parents[1] / "conf"
# auto is not a space: it names the target's own (tests/test_auto_search.py)
SEARCH_SPACES = sorted(p.stem for p in (CONF / "search").glob("*.yaml") if p.stem != "auto")
SAMPLERS = sorted(p.stem for p in (CONF / "sampler").glob("*.yaml"))
BUDGET = 7  # two batches of 3 and one cut to the budget


def test_every_shipped_search_space_and_sampler_is_covered() -> None:
    # A new conf/search or conf/sampler file joins the suite below by itself; this says it did.
    assert {"blobs", "patches", "grid", "texture", "texture_blobs"} <= set(SEARCH_SPACES)
    assert {"tpe", "random", "cmaes", "gp"} <= set(SAMPLERS)


class GradientAttackConformance(AttackConformance):
    """Attacks that need gradients: the refusal is checked whatever attribute declares the need."""

    @pytest.fixture
    def lacking_target(self, target):
        return counting(target, gradients=False)


class TestGradCamFGM(GradientAttackConformance):
    @pytest.fixture
    def attack(self):
        return lambda: GradCamFGM(seed=0)


class TestIterativeFGM(GradientAttackConformance):
    @pytest.fixture
    def attack(self):
        return lambda: IterativeFGM(steps=2, seed=0)


class TestPGD(GradientAttackConformance):
    @pytest.fixture
    def attack(self):
        return lambda: PGD(steps=3, seed=0)


class TestGaussianNoise(AttackConformance):
    @pytest.fixture
    def attack(self):
        return lambda: GaussianNoise(seed=0)


class TestGradCamNoise(GradientAttackConformance):
    @pytest.fixture
    def attack(self):
        return lambda: GradCamNoise(seed=0)


def patch_search(
    search: str, sampler: str, *, budget: int = BUDGET, shrink: ShrinkSettings | None = None
) -> Attack:
    """The black-box search as ``python -m blackbox search=<search> sampler=<sampler>`` builds it
    (a ``PatchSearch``, or a ``StagedSearch`` of two for ``kind: staged``)."""
    overrides = ["attack=blackbox", f"search={search}", f"sampler={sampler}", f"budget={budget}", "seed=1"]
    overrides += ["batch_size=3", "early_stop=false", "progress=false", "storage=memory"]
    spec = attack_spec(compose_overrides(overrides))
    if shrink is not None:
        spec = dataclasses.replace(spec, shrink=shrink)  # type: ignore[type-var]
    return spec.build()


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("search", SEARCH_SPACES)
class TestPatchSearch(AttackConformance):
    query_budget = BUDGET

    @pytest.fixture
    def attack(self, search: str, sampler: str):
        return lambda: patch_search(search, sampler)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
@pytest.mark.parametrize("search", SEARCH_SPACES)
class TestPatchSearchShrink(AttackConformance):
    """The search with the L2 shrink after its first success (``shrink.enabled=true``)."""

    query_budget = BUDGET

    @pytest.fixture
    def attack(self, search: str, sampler: str):
        return lambda: patch_search(search, sampler, shrink=ShrinkSettings(enabled=True, steps=3))


class Overspending(GaussianNoise):
    """Asks the target once more than it reports."""

    def run(self, problem, target):
        target.query([problem.image.as_float])
        return super().run(problem, target)


class Oversized(GaussianNoise):
    """Reports the budget it was given but perturbs with twice that."""

    def run(self, problem, target):
        import dataclasses

        result = super().run(dataclasses.replace(problem, eps=2 * problem.eps), target)
        return dataclasses.replace(result, eps=problem.eps)


class Unseeded(GaussianNoise):
    """Draws its noise from a new seed every time."""

    runs = 0

    def run(self, problem, target):
        Unseeded.runs += 1
        self.seed = Unseeded.runs
        return super().run(problem, target)


def test_the_suite_catches_attacks_that_break_its_rules() -> None:
    from targets.classic import ClassicSaliency

    suite, target = AttackConformance(), ClassicSaliency()
    with pytest.raises(AssertionError):
        suite.test_query_budget_is_respected(lambda: Overspending(seed=0), target)
    with pytest.raises(AssertionError):
        suite.test_eps_is_respected_after_quantisation(lambda: Oversized(seed=0), target, "l2")
    with pytest.raises(AssertionError):
        suite.test_deterministic_with_a_seed(lambda: Unseeded(seed=0), target)
    # An attack that never refuses a target without gradients (Overspending needs none, so it runs).
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        suite.test_refuses_a_target_lacking_what_it_needs(
            lambda: Overspending(seed=0), target, counting(target, gradients=False)
        )
