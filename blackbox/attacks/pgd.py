"""``attack=pgd``: projected gradient ascent on ``J`` with many steps: an upper bound.

``steps`` steps of size ``step_size·eps`` along the steepest unit direction, each followed by the
projection onto the ``eps`` ball and onto the valid pixel range (Madry et al., ICLR 2018). Under an
L-inf cap (``eps_inf``) the steps are the L-inf ones, ``step_size·cap·sign(∇J)``, and each iterate is
projected onto both balls (:meth:`~blackbox.core.perturbation.PerturbationBudget.project`): a dense
perturbation meets the cap long before the L2 ``eps``, and an L2 step, concentrated on the pixels
of largest gradient, would mostly be clamped away. It keeps the iterate with the best ``J``; no
Grad-CAM mask, so it is free to use the whole image.
"""

from __future__ import annotations

import torch

from blackbox.attacks._base import AttackProblem
from blackbox.attacks._gradients import loss_and_gradient
from blackbox.attacks._whitebox import WhiteBoxAttack
from targets import DifferentiableTarget


class PGD(WhiteBoxAttack):
    name = "pgd"

    def __init__(
        self, *, steps: int = 40, step_size: float = 0.1, temperature: float = 0.05, seed: int = 0
    ) -> None:
        super().__init__(temperature=temperature, seed=seed)
        if steps < 1 or not step_size > 0:
            raise ValueError(f"need steps >= 1 and step_size > 0, got {steps}, {step_size}")
        self.steps = int(steps)
        self.step_size = float(step_size)

    def perturbation(
        self, problem: AttackProblem, target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        budget = problem.budget
        cap = budget.cap
        delta = torch.zeros_like(image)
        best_delta, best_loss = delta, -float("inf")
        for _ in range(self.steps):
            loss, gradient = loss_and_gradient(target, image + delta, mask, self.temperature)
            self.gradient_steps += 1
            if loss > best_loss:
                best_loss, best_delta = loss, delta
            if cap is not None:
                step = self.step_size * cap * gradient.sign()
            else:
                step = self.step_size * budget.eps * budget.direction(gradient)
            delta = budget.project(delta + step)
            delta = (image + delta).clamp(0, 1) - image
        loss, _ = loss_and_gradient(target, image + delta, mask, self.temperature)
        return delta if loss > best_loss else best_delta
