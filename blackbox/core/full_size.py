"""The adversarial image at the user's own size: the working copy's perturbation carried over.

The attack runs on a working copy (``working_width`` px wide, as the paper resized CAT2000 to 640 px),
but a user publishes the picture they have. :func:`full_size_adversarial` takes the perturbation the
attack found (adversarial minus clean working copy), resizes it to the original size, adds it to the
original pixels and quantises the sum to 8 bits within the budget *as measured at that size*
(:func:`full_size_budget`):

* **L-inf is the same at every size.** The perturbation is resized with bilinear weights (triangle
  weights, antialiased, when it shrinks): every value is a weighted mean of working-size values with
  non-negative weights, so no channel of any pixel moves further than it did at the working size,
  and ``eps_inf`` (or ``eps`` under ``norm="linf"``) holds unchanged.
* **L2 grows with the square root of the pixel count.** A perturbation resized to ``k`` times the
  pixels has about ``sqrt(k)`` times the L2 norm for the same per-pixel change. The rule: at a size
  with ``k`` times the working copy's pixels the L2 budget is ``eps * sqrt(k)``. That is the same
  root-mean-square change per pixel, so the same PSNR, at both sizes; ``eps=20`` at 640 x 427 allows
  L2 37.5 on the 1200 x 800 original and 10 on a 320 x 213 one.

Quantising at the full size goes through :meth:`PerturbationBudget.apply`: clamped to the cap's
whole levels, rounded, and scaled down if the rounding pushed the L2 over the full-size budget, so
the written image never exceeds it. Whether the written image still moves the crop depends on how
the platform resizes it; :func:`full_size_adversarial` does not query any target.
"""

from __future__ import annotations

import math

import numpy as np

from blackbox.core.perturbation import PerturbationBudget

__all__ = ["full_size_adversarial", "full_size_budget"]


def full_size_budget(
    budget: PerturbationBudget, working_size: tuple[int, int], full_size: tuple[int, int]
) -> PerturbationBudget:
    """The budget at ``full_size`` that matches ``budget`` at ``working_size`` (both ``(width, height)``).

    L2: ``eps * sqrt(full pixels / working pixels)`` (the same root-mean-square change per pixel);
    L-inf (``norm="linf"``, and the cap ``eps_inf``): unchanged.
    """
    if budget.norm == "linf":
        return budget
    ratio = (full_size[0] * full_size[1]) / (working_size[0] * working_size[1])
    return budget.with_eps(budget.eps * math.sqrt(ratio))


def resize_perturbation(delta: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(h, w, 3)`` float64 to ``(height, width, 3)``: bilinear, antialiased when it shrinks.

    Every output value is a convex combination of input values (non-negative weights summing to 1),
    so the largest absolute value never grows.
    """
    if delta.shape[:2] == (height, width):
        return delta.astype(np.float64, copy=True)
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(delta, dtype=np.float64)).permute(2, 0, 1)[None]
    shrinks = height < delta.shape[0] or width < delta.shape[1]
    resized = F.interpolate(
        tensor, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinks
    )
    return resized[0].permute(1, 2, 0).numpy()


def full_size_adversarial(
    original: np.ndarray, clean: np.ndarray, adversarial: np.ndarray, budget: PerturbationBudget
) -> np.ndarray:
    """The 8-bit adversarial image at the original size.

    Args:
        original: ``(H0, W0, 3)`` uint8 RGB, the user's image at its own size.
        clean: ``(h, w, 3)`` uint8, the working copy the attack started from.
        adversarial: ``(h, w, 3)`` uint8, the working copy's adversarial image (within ``budget``).
        budget: the attack's budget at the working size (:class:`PerturbationBudget`).

    Returns:
        ``(H0, W0, 3)`` uint8: ``original`` plus the resized perturbation, quantised within
        :func:`full_size_budget` (L2 ``eps * sqrt(H0 W0 / (h w))``, L-inf unchanged). When the sizes
        are equal and ``original`` is ``clean``, it is ``adversarial`` itself.

    Raises:
        ValueError: the arrays are not ``(H, W, 3)`` uint8, or ``clean`` and ``adversarial`` differ in shape.
    """
    for name, array in (("original", original), ("clean", clean), ("adversarial", adversarial)):
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    if clean.shape != adversarial.shape:
        raise ValueError(f"clean {clean.shape} and adversarial {adversarial.shape} must have one shape")
    height, width = original.shape[:2]
    delta = (adversarial.astype(np.float64) - clean.astype(np.float64)) / 255.0
    full = resize_perturbation(delta, height, width)
    target_budget = full_size_budget(budget, (clean.shape[1], clean.shape[0]), (width, height))
    return target_budget.apply(original, full)
