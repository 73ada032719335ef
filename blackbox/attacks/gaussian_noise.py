"""``attack=gaussian_noise``: the paper's first baseline, Gaussian noise near the target only.

I.i.d. Gaussian noise limited to a full-height band ``band_px`` wide (100 px at 640 px wide, as in
the paper) centred on the goal's target column, rescaled to the budget. It uses no gradient at all:
it is the floor every attack must beat. Seeded, so reruns are identical.
"""

from __future__ import annotations

import torch

from blackbox.attacks._base import AttackProblem
from blackbox.attacks._whitebox import WhiteBoxAttack
from targets import DifferentiableTarget


def band_mask(problem: AttackProblem, band_px: float, reference_width: int) -> torch.Tensor:
    """``(1, 1, H, W)`` mask of the band around the target column (or row, for a row goal).

    Its width scales with the image: ``band_px`` at ``reference_width`` px along the goal's axis.
    """
    width, height = problem.image.width, problem.image.height
    extent = problem.goal.extent(width, height)
    half = band_px * extent / reference_width / 2
    inside = (torch.arange(extent, dtype=torch.float32) - problem.goal.target_x).abs() <= half
    if problem.goal.axis == "y":
        return inside.view(1, 1, height, 1).expand(1, 1, height, width).float()
    return inside.view(1, 1, 1, width).expand(1, 1, height, width).float()


class GaussianNoise(WhiteBoxAttack):
    name = "gaussian_noise"
    requires = frozenset()  # noise only: runs on any target

    def __init__(
        self, *, band_px: float = 100.0, reference_width: int = 640, temperature: float = 0.05, seed: int = 0
    ) -> None:
        super().__init__(temperature=temperature, seed=seed)
        if band_px <= 0:
            raise ValueError(f"band_px must be positive, got {band_px}")
        self.band_px = float(band_px)
        self.reference_width = int(reference_width)

    def perturbation(
        self, problem: AttackProblem, target: DifferentiableTarget, image: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(self.seed))
        banded = noise * band_mask(problem, self.band_px, self.reference_width)
        return problem.budget.rescale_clipped(banded, image)
