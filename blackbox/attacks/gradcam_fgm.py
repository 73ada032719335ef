"""``attack=gradcam_fgm``: the paper's gradient baseline, single-step FGM masked by Grad-CAM.

``δ = eps · (m ⊙ g) / ||m ⊙ g||₂`` with ``g = ∇J(x)`` and ``m`` the Grad-CAM map of ``x``.
"""

from __future__ import annotations

import torch

from blackbox.attacks._base import AttackProblem
from blackbox.attacks._gradients import grad_cam, loss_and_gradient
from blackbox.attacks._whitebox import WhiteBoxAttack
from targets import DifferentiableTarget


class GradCamFGM(WhiteBoxAttack):
    name = "gradcam_fgm"

    def perturbation(
        self, problem: AttackProblem, target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        _, gradient = loss_and_gradient(target, image, mask, self.temperature)
        self.gradient_steps += 1
        masked = gradient * grad_cam(target, image, mask, self.temperature)
        budget = problem.budget
        return budget.rescale_clipped(budget.direction(masked), image)
