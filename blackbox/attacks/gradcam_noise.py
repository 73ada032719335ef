"""``attack=gradcam_noise``: the paper's second baseline, Gaussian noise masked by Grad-CAM."""

from __future__ import annotations

import torch

from blackbox.attacks._base import AttackProblem
from blackbox.attacks._gradients import grad_cam
from blackbox.attacks._whitebox import WhiteBoxAttack
from targets import DifferentiableTarget


class GradCamNoise(WhiteBoxAttack):
    name = "gradcam_noise"

    def perturbation(
        self, problem: AttackProblem, target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(self.seed))
        self.gradient_steps += 1
        masked = noise * grad_cam(target, image, mask, self.temperature)
        return problem.budget.rescale_clipped(masked, image)
