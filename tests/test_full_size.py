"""The adversarial image at the original size (``blackbox.core.full_size``): the budget rule, tested."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blackbox.core.full_size import full_size_adversarial, full_size_budget, resize_perturbation
from blackbox.core.metrics import perturbation_norms
from blackbox.core.perturbation import PerturbationBudget


def attacked(rng: np.random.Generator, height: int, width: int, budget: PerturbationBudget):
    """A clean working copy and an adversarial one within ``budget``: a dense perturbation, smooth over
    8 px as blobs and textures of cells are (white noise would average away when shrunk)."""
    clean = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    delta = resize_perturbation(rng.normal(size=(height // 8 + 1, width // 8 + 1, 3)), height, width)
    return clean, budget.apply(clean, budget.rescale(delta))


@pytest.mark.parametrize(
    ("budget", "working", "full"),
    [
        (PerturbationBudget(eps=5.0), (96, 64), (300, 200)),  # a photo larger than the working copy
        (PerturbationBudget(eps=5.0, eps_inf=4 / 255), (96, 64), (401, 263)),  # the cap holds too
        (PerturbationBudget(eps=8.0), (96, 64), (48, 32)),  # a thumbnail smaller than the working copy
        (PerturbationBudget(eps=6 / 255, norm="linf"), (96, 64), (250, 170)),
    ],
)
def test_the_full_size_image_keeps_the_budget_measured_at_its_size(budget, working, full) -> None:
    rng = np.random.default_rng(0)
    clean, adversarial = attacked(rng, working[1], working[0], budget)
    original = rng.integers(0, 256, (full[1], full[0], 3), dtype=np.uint8)
    out = full_size_adversarial(original, clean, adversarial, budget)
    assert out.shape == original.shape and out.dtype == np.uint8
    at_working = perturbation_norms(clean, adversarial)
    at_full = perturbation_norms(original, out)
    # L-inf: never more than at the working size (so within eps_inf, or eps under norm=linf).
    assert at_full["linf"] <= at_working["linf"] + 1e-12
    if budget.cap is not None:
        assert at_full["linf"] <= budget.cap + 1e-12
    if budget.norm == "l2":  # L2: within eps * sqrt(pixel ratio), the rule stated in the docs
        ratio = (full[0] * full[1]) / (working[0] * working[1])
        assert full_size_budget(budget, working, full).eps == pytest.approx(budget.eps * math.sqrt(ratio))
        assert at_full["l2"] <= budget.eps * math.sqrt(ratio) + 1e-9
        # ... and it is the same perturbation, not one shrunk to nothing: most of the budget is used.
        assert at_full["l2"] >= 0.5 * at_working["l2"] * math.sqrt(ratio)


def test_at_the_same_size_it_is_the_working_adversarial_itself() -> None:
    rng = np.random.default_rng(1)
    budget = PerturbationBudget(eps=10.0, eps_inf=8 / 255)
    clean, adversarial = attacked(rng, 70, 90, budget)
    assert np.array_equal(full_size_adversarial(clean, clean, adversarial, budget), adversarial)


def test_resizing_a_perturbation_never_grows_its_largest_value() -> None:
    rng = np.random.default_rng(2)
    delta = rng.uniform(-0.1, 0.1, (40, 60, 3))
    for size in ((130, 170), (17, 23), (40, 200)):
        resized = resize_perturbation(delta, *size)
        assert resized.shape == (*size, 3)
        assert np.abs(resized).max() <= np.abs(delta).max() + 1e-12


def test_bad_arrays_are_refused_with_their_shapes() -> None:
    good = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"original must be an \(H, W, 3\) uint8"):
        full_size_adversarial(good.astype(np.float32), good, good, PerturbationBudget(eps=1.0))
    with pytest.raises(ValueError, match="must have one shape"):
        full_size_adversarial(good, good, good[:30], PerturbationBudget(eps=1.0))
