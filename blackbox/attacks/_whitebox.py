"""What every white-box attack shares: it needs gradients, and it ends like the black-box attack.

A white-box attack returns a dense perturbation; :meth:`WhiteBoxAttack.run` adds it to the clean
8-bit image, clips and quantises exactly as the black-box attack does (:func:`perturbation.apply`),
asks the target once for the result, and builds the shared :class:`AttackResult`.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np
import torch

from blackbox.attacks._base import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.attacks._gradients import goal_mask, to_delta_array, to_tensor
from blackbox.core.objective import score, succeeded
from targets import Capability, DifferentiableTarget, Target, require


class WhiteBoxAttack(Attack):
    """Base of the gradient attacks and the paper's baselines."""

    #: Gradients of the target's log-density; baselines that only add noise need nothing (``frozenset()``).
    requires: ClassVar[frozenset[Capability]] = frozenset({Capability.GRADIENTS})

    def __init__(self, *, temperature: float = 0.05, seed: int = 0) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.gradient_steps = 0

    @abc.abstractmethod
    def perturbation(
        self, problem: AttackProblem, target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The ``(1, 3, H, W)`` perturbation in [0, 1] units, of norm ``problem.eps``."""

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        require(target, self.requires, by=self.name, name=problem.target_name)
        image = problem.image
        self.gradient_steps = 0
        torch.manual_seed(self.seed)
        clean = to_tensor(image.pixels)
        mask = goal_mask(problem.goal, image.height, image.width)
        delta = self.perturbation(problem, target, clean, mask)  # type: ignore[arg-type]
        delta_array = to_delta_array(delta)
        if not np.isfinite(delta_array).all():
            raise AttackFailedError(
                f"{self.name} on target {problem.target_name!r}: the perturbation holds NaN or infinite "
                "values; the image is skipped, not scored"
            )
        adversarial = problem.budget.apply(image.pixels, delta_array)
        if np.array_equal(adversarial, image.pixels):
            # Asking the target about the clean image again would report an attack that did nothing.
            raise AttackFailedError(
                f"{self.name} on target {problem.target_name!r}: the perturbation rounds to the clean "
                f"image at eps={problem.eps:g} ({problem.norm}), e.g. a zero gradient on a flat image; "
                "no query was spent on it. A larger eps, or a black-box sampler, may move it"
            )
        return self.evaluate(problem, target, adversarial)

    def evaluate(self, problem: AttackProblem, target: Target, adversarial: np.ndarray) -> AttackResult:
        """Ask ``target`` once about the final image and build the result."""
        width, height = problem.image.width, problem.image.height
        output = target.query([adversarial.astype(np.float32) / 255.0])[0]
        has_point = target.gives_point
        rule = self.success_rule(problem, target)
        success = succeeded(output, problem.goal, width, height, has_point=has_point, rule=rule)
        return AttackResult(
            image_id=problem.image.image_id,
            method=self.name,
            success=success,
            adversarial=adversarial,
            adversarial_output=output,
            goal=problem.goal,
            eps=problem.eps,
            norm=problem.norm,
            eps_inf=problem.eps_inf,
            queries=1,
            # Its one query is the one that succeeded (None, as for a search that never hit, if not).
            queries_to_success=1 if success else None,
            score=score(output, problem.goal, width, height, has_point=has_point, rule=rule),
            extra={"gradient_steps": self.gradient_steps},
            success_rule=rule,
        )
