"""A conformance suite every attack runs, in the manner of ``optuna.testing`` and :mod:`targets.testing`.

An attack's test module subclasses :class:`AttackConformance` and provides an ``attack`` fixture: a
callable that makes a *fresh* attack, seeded the same way each time (the suite calls it twice to
check determinism), and the query budget that attack promises::

    class TestMyAttack(AttackConformance):
        query_budget = 1  # target queries per image it may spend

        @pytest.fixture
        def attack(self):
            return lambda: MyAttack(seed=0)

What every attack promises, checked on a small synthetic image (:func:`sample_problem`) and, by
default, the ``classic`` target (override the ``target`` fixture for another):

- it returns one :class:`~blackbox.attacks.AttackResult` with valid fields, whose
  ``adversarial_output`` is what the target says of ``adversarial`` and whose ``success`` follows it;
- it spends at most ``query_budget`` queries, counted by the target (:func:`counting`), and reports
  what it spent;
- its 8-bit adversarial image is within ``eps`` (L2 and L-inf) after quantisation;
- the same seed gives the same image, queries and perturbation;
- it leaves the clean image as it was;
- it refuses a target lacking what it needs (by default: gradients, for an attack whose
  :attr:`~blackbox.attacks.Attack.requires` names them) before spending any query.

Third-party attacks run the same suite: it needs pytest, this module and the ``classic`` target.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from blackbox.attacks._base import Attack, AttackProblem, AttackResult
from blackbox.core.goal import default_goal
from blackbox.core.images import LoadedImage
from blackbox.core.objective import SUCCESS_RULES, succeeded
from targets import Capability, DifferentiableTarget, Output, Target, TargetOutput

__all__ = ["AttackConformance", "counting", "sample_image", "sample_problem"]


def sample_image(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A small ``(height, width, 3)`` uint8 photo stand-in: two bright blobs on smooth noise.

    Two blobs give the saliency profile two maxima, so the paper's protocol sets its goal on the
    second one, away from the salient point.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = 0.35 + 0.1 * rng.random((height, width, 3))
    for (cy, cx), colour, sigma in [
        ((0.45 * height, 0.25 * width), (1.0, 0.3, 0.2), 0.09 * width),
        ((0.55 * height, 0.75 * width), (0.2, 0.4, 1.0), 0.07 * width),
    ]:
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        image = image + 0.6 * blob[..., None] * np.asarray(colour)
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)


def sample_problem(
    target: Target,
    *,
    eps: float,
    norm: str = "l2",
    pixels: np.ndarray | None = None,
    eps_inf: float | None = None,
) -> AttackProblem:
    """The problem an attack is checked on: :func:`sample_image` (or ``pixels``) and its protocol goal.

    ``eps_inf`` is the L-inf cap beside ``eps`` ([0, 1] units; ``None``: none). Asks ``target`` once,
    for the clean image's outputs.
    """
    pixels = sample_image() if pixels is None else pixels
    image = LoadedImage("sample", "attacks.testing", pixels, (pixels.shape[1], pixels.shape[0]))
    clean = target.query([image.as_float])[0]
    goal = default_goal(
        width=image.width,
        height=image.height,
        log_density=clean.log_density,
        salient_point=clean.salient_point,
        crops=clean.crops,
    )
    return AttackProblem(image, clean, goal, eps, norm, target.name, eps_inf=eps_inf)


class _Counting(Target):
    """Answers as ``inner`` does and counts every image it answers (its ``counters()``)."""

    def __init__(self, inner: Target) -> None:
        super().__init__(aspect_ratios=inner.aspect_ratios)
        self.inner = inner
        self.name = inner.name
        self.answered = 0

    @property
    def outputs(self) -> frozenset[Output]:
        return self.inner.outputs

    def answer(self, images: list[np.ndarray]) -> list[TargetOutput]:
        self.answered += len(images)
        return self.inner.query(images)

    def counters(self) -> dict[str, int]:
        return {**self.inner.counters(), "images_answered": self.answered}

    def __getattr__(self, name: str) -> Any:
        # Whatever else a target declares (now or in a later version) is the inner target's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class _CountingDifferentiable(_Counting, DifferentiableTarget):
    """A counted differentiable target: gradients (``log_density``) are not queries."""

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.log_density(images)  # type: ignore[attr-defined]

    def feature_layer(self) -> torch.nn.Module | None:
        return self.inner.feature_layer()  # type: ignore[attr-defined]


def counting(target: Target, *, gradients: bool = True) -> _Counting:
    """``target``, counting the images it answers in ``counters()["images_answered"]``.

    A differentiable ``target`` stays differentiable unless ``gradients=False`` (a black-box view of
    it: the same answers, no gradients).
    """
    if gradients and isinstance(target, DifferentiableTarget):
        return _CountingDifferentiable(target)
    return _Counting(target)


def _answered(target: Target) -> int:
    return target.counters()["images_answered"]


class AttackConformance:
    """What every :class:`~blackbox.attacks.Attack` promises. Subclasses provide an ``attack`` fixture."""

    #: Target queries per image the attack may spend (a white-box attack asks once, for its result).
    query_budget: ClassVar[int] = 1
    #: The perturbation sizes checked, per norm (L2 in [0, 1] pixel units; L-inf a fraction of the range).
    eps_by_norm: ClassVar[dict[str, float]] = {"l2": 2.0, "linf": 0.03}
    #: The L-inf cap beside ``eps`` under ``norm="l2"`` ([0, 1] units; ``None``: none). An attack that
    #: works only under a cap (``attack=square``) sets it.
    eps_inf: ClassVar[float | None] = None
    #: What a refusal may raise (a user error: the message says what target to use instead).
    refusal_errors: ClassVar[tuple[type[Exception], ...]] = (TypeError, ValueError)

    @pytest.fixture
    def attack(self) -> Callable[[], Attack]:  # pragma: no cover - always overridden
        raise NotImplementedError("provide an `attack` fixture: a callable making a fresh, seeded attack")

    @pytest.fixture
    def target(self) -> Target:
        """The target the attack is checked on (``classic``: differentiable, all outputs, fast)."""
        from targets.classic import ClassicSaliency

        return ClassicSaliency()

    @pytest.fixture
    def lacking_target(self, attack: Callable[[], Attack], target: Target) -> Target | None:
        """A target lacking what the attack needs; ``None`` if it needs nothing a target can lack."""
        if Capability.GRADIENTS in attack().requires:
            return counting(target, gradients=False)
        return None

    def _run(
        self, attack: Attack, target: Target, *, norm: str = "l2"
    ) -> tuple[AttackProblem, AttackResult, int]:
        """Attack :func:`sample_problem` on ``target``; also return the images the target answered."""
        counted = counting(target)
        cap = self.eps_inf if norm == "l2" else None
        problem = sample_problem(counted, eps=self.eps_by_norm[norm], norm=norm, eps_inf=cap)
        before = _answered(counted)
        result = attack.run(problem, counted)
        return problem, result, _answered(counted) - before

    def test_returns_one_attack_result(self, attack: Callable[[], Attack], target: Target) -> None:
        made = attack()
        problem, result, _ = self._run(made, target)
        assert isinstance(result, AttackResult)
        assert result.image_id == problem.image.image_id and result.method == made.name
        assert result.goal == problem.goal
        assert (result.eps, result.norm) == (problem.eps, problem.norm)
        assert isinstance(result.success, bool) and result.success_rule in SUCCESS_RULES
        assert isinstance(result.adversarial, np.ndarray) and result.adversarial.dtype == np.uint8
        assert result.adversarial.shape == problem.image.pixels.shape
        assert isinstance(result.adversarial_output, TargetOutput)
        assert isinstance(result.queries, int) and result.queries >= 1
        assert result.failed_queries >= 0 and isinstance(result.score, float)
        if result.queries_to_success is not None:
            assert result.success and 1 <= result.queries_to_success <= result.queries
        # The output is the target's answer for the adversarial image, and success follows it.
        again = target.query([result.adversarial.astype(np.float32) / 255.0])[0]
        assert again.salient_point == result.adversarial_output.salient_point
        assert again.crops == result.adversarial_output.crops
        has_point = Output.POINT in target.outputs or Output.SALIENCY in target.outputs
        width, height = problem.image.width, problem.image.height
        verdict = succeeded(again, problem.goal, width, height, has_point=has_point, rule=result.success_rule)
        assert result.success == verdict
        # What the attack itself puts into a results.jsonl line (blackbox.experiment.record): plain JSON.
        json.dumps({"extra": result.extra, "best_trial": result.best_trial}, allow_nan=False)

    def test_query_budget_is_respected(self, attack: Callable[[], Attack], target: Target) -> None:
        _, result, spent = self._run(attack(), target)
        # A resumed search may ask its best old trial once more, outside the budget, and says so.
        requeries = int(result.extra.get("resumed_best_requeries", 0))
        assert spent == result.queries + requeries
        assert result.queries <= self.query_budget

    @pytest.mark.parametrize("norm", ["l2", "linf"])
    def test_eps_is_respected_after_quantisation(
        self, attack: Callable[[], Attack], target: Target, norm: str
    ) -> None:
        problem, result, _ = self._run(attack(), target, norm=norm)
        delta = (result.adversarial.astype(np.float64) - problem.image.pixels) / 255.0
        assert problem.budget.size(delta) <= problem.eps * (1 + 1e-9)
        assert np.abs(delta).sum() > 0, "the adversarial image is the clean one"

    def test_deterministic_with_a_seed(self, attack: Callable[[], Attack], target: Target) -> None:
        _, first, _ = self._run(attack(), target)
        _, second, _ = self._run(attack(), target)
        assert first.adversarial.tobytes() == second.adversarial.tobytes()
        assert (first.queries, first.success, first.perturbation) == (
            second.queries,
            second.success,
            second.perturbation,
        )

    def test_leaves_the_clean_image_as_it_was(self, attack: Callable[[], Attack], target: Target) -> None:
        counted = counting(target)
        problem = sample_problem(counted, eps=self.eps_by_norm["l2"], eps_inf=self.eps_inf)
        kept = problem.image.pixels.copy()
        attack().run(problem, counted)
        assert np.array_equal(problem.image.pixels, kept)

    def test_refuses_a_target_lacking_what_it_needs(
        self, attack: Callable[[], Attack], target: Target, lacking_target: Target | None
    ) -> None:
        if lacking_target is None:
            pytest.skip("the attack needs nothing of a target beyond its answers")
        problem = sample_problem(target, eps=self.eps_by_norm["l2"])
        before = _answered(lacking_target)
        with pytest.raises(self.refusal_errors) as refused:
            attack().run(problem, lacking_target)
        assert target.name in str(refused.value), "the refusal names the target"
        assert _answered(lacking_target) == before, "a refused target was queried"
