from __future__ import annotations

import numpy as np
import pytest

from blackbox.core.perturbation import Patch, apply, norm_of, perturb, render, scale_to_budget


def random_patches(rng: np.random.Generator, n: int, width: int, height: int) -> list[Patch]:
    return [
        Patch(
            x=int(rng.integers(0, width)),
            y=int(rng.integers(0, height)),
            size=float(rng.uniform(2, 20)),
            amplitude=tuple(rng.uniform(-1, 1, 3)),
            frequency=float(rng.uniform(0, 0.3)),
            angle=float(rng.uniform(0, np.pi)),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize(("norm", "eps"), [("l2", 0.5), ("l2", 5.0), ("l2", 20.0), ("linf", 0.03)])
def test_quantised_perturbation_never_exceeds_the_budget(photo, norm, eps) -> None:
    rng = np.random.default_rng(0)
    height, width = photo.shape[:2]
    for _ in range(20):
        adversarial = perturb(photo, random_patches(rng, 4, width, height), eps=eps, norm=norm)
        assert adversarial.dtype == np.uint8 and adversarial.shape == photo.shape
        delta = (adversarial.astype(np.float64) - photo) / 255.0
        assert norm_of(delta, norm) <= eps + 1e-12
        assert np.abs(delta).sum() > 0


def test_l2_budget_is_mostly_used(photo) -> None:
    patches = random_patches(np.random.default_rng(1), 4, photo.shape[1], photo.shape[0])
    adversarial = perturb(photo, patches, eps=10.0, norm="l2")
    assert norm_of((adversarial.astype(np.float64) - photo) / 255.0, "l2") > 8.0


def test_rendering_is_deterministic(photo) -> None:
    patches = random_patches(np.random.default_rng(2), 3, photo.shape[1], photo.shape[0])
    first = perturb(photo, patches, eps=5.0, norm="l2")
    second = perturb(photo.copy(), list(patches), eps=5.0, norm="l2")
    assert first.tobytes() == second.tobytes()


def test_patch_is_centred_where_asked() -> None:
    delta = render([Patch(x=30, y=10, size=3.0, amplitude=(1.0, 0.0, 0.0))], 40, 64)
    y, x = np.unravel_index(np.argmax(delta[..., 0]), delta.shape[:2])
    assert (x, y) == (30, 10)
    assert np.all(delta[..., 1:] == 0)


def test_patch_outside_the_image_adds_nothing() -> None:
    assert not render([Patch(x=500, y=500, size=2.0, amplitude=(1, 1, 1))], 40, 64).any()


def test_zero_perturbation_stays_zero(photo) -> None:
    zero = np.zeros(photo.shape)
    assert np.array_equal(apply(photo, scale_to_budget(zero, 5.0, "l2"), 5.0, "l2"), photo)


def test_clipping_keeps_pixels_in_range() -> None:
    white = np.full((40, 40, 3), 255, dtype=np.uint8)
    out = perturb(white, [Patch(x=20, y=20, size=5.0, amplitude=(1, 1, 1))], eps=30.0, norm="l2")
    assert np.array_equal(out, white)  # nothing can brighten white


def test_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm"):
        norm_of(np.ones(3), "l1")  # type: ignore[arg-type]
