from __future__ import annotations

import numpy as np
import pytest

from blackbox.core.perturbation import Patch, PerturbationBudget, perturb, render


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
        budget = PerturbationBudget(eps=eps, norm=norm)
        adversarial = perturb(photo, random_patches(rng, 4, width, height), budget)
        assert adversarial.dtype == np.uint8 and adversarial.shape == photo.shape
        delta = (adversarial.astype(np.float64) - photo) / 255.0
        assert budget.size(delta) <= eps + 1e-12
        assert np.abs(delta).sum() > 0


def test_l2_budget_is_mostly_used(photo) -> None:
    patches = random_patches(np.random.default_rng(1), 4, photo.shape[1], photo.shape[0])
    budget = PerturbationBudget(eps=10.0, norm="l2")
    adversarial = perturb(photo, patches, budget)
    assert budget.size((adversarial.astype(np.float64) - photo) / 255.0) > 8.0


def test_rendering_is_deterministic(photo) -> None:
    patches = random_patches(np.random.default_rng(2), 3, photo.shape[1], photo.shape[0])
    first = perturb(photo, patches, PerturbationBudget(eps=5.0, norm="l2"))
    second = perturb(photo.copy(), list(patches), PerturbationBudget(eps=5.0, norm="l2"))
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
    budget = PerturbationBudget(eps=5.0, norm="l2")
    assert np.array_equal(budget.apply(photo, budget.rescale(zero)), photo)


def test_clipping_keeps_pixels_in_range() -> None:
    white = np.full((40, 40, 3), 255, dtype=np.uint8)
    out = perturb(white, [Patch(x=20, y=20, size=5.0, amplitude=(1, 1, 1))], PerturbationBudget(eps=30.0))
    assert np.array_equal(out, white)  # nothing can brighten white


def test_unknown_norm() -> None:
    with pytest.raises(ValueError, match="norm"):
        PerturbationBudget(eps=1.0, norm="l1")  # type: ignore[arg-type]


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_budget_arithmetic_is_the_same_in_numpy_and_torch(norm) -> None:
    import torch

    budget = PerturbationBudget(eps=0.7 if norm == "l2" else 0.05, norm=norm)
    delta = np.random.default_rng(0).normal(size=(12, 10, 3)) * 0.1
    tensor = torch.from_numpy(delta)
    assert budget.size(tensor) == pytest.approx(budget.size(delta))
    for method in (budget.rescale, budget.project, budget.direction):
        np.testing.assert_allclose(method(tensor).numpy(), method(delta), rtol=1e-12)
    image = np.random.default_rng(1).random((12, 10, 3))
    clipped = budget.rescale_clipped(delta, image)
    np.testing.assert_allclose(budget.rescale_clipped(tensor, torch.from_numpy(image)).numpy(), clipped)
    assert budget.size(clipped) == pytest.approx(budget.eps, rel=1e-5)
    assert np.all((image + clipped >= -1e-12) & (image + clipped <= 1 + 1e-12))


def test_budget_rescale_project_and_direction() -> None:
    budget = PerturbationBudget(eps=2.0)
    assert budget.size(budget.rescale(np.full(4, 3.0))) == pytest.approx(2.0)
    assert budget.size(budget.project(np.full(4, 3.0))) == pytest.approx(2.0)
    small = np.full(4, 0.1)
    assert np.array_equal(budget.project(small), small)  # already inside the ball
    assert budget.size(budget.direction(np.full(4, 3.0))) == pytest.approx(1.0)
    assert not budget.rescale(np.zeros(4)).any() and not budget.direction(np.zeros(4)).any()
    linf = PerturbationBudget(eps=0.1, norm="linf")
    assert np.array_equal(linf.project(np.array([-1.0, 0.05, 1.0])), [-0.1, 0.05, 0.1])
    assert np.array_equal(linf.direction(np.array([-3.0, 0.0, 2.0])), [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf"), "10", True])
def test_budget_refuses_an_eps_that_cannot_be_a_size(eps) -> None:
    from blackbox.core.perturbation import PerturbationBudgetError

    with pytest.raises(PerturbationBudgetError, match="eps"):
        PerturbationBudget(eps=eps)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_an_eps_below_one_level_is_refused_with_the_smallest_usable_value(norm) -> None:
    from blackbox.core.perturbation import ONE_LEVEL, UnusableBudgetError

    with pytest.raises(UnusableBudgetError, match=r"below one 8-bit level.*use eps >= 0\.0039"):
        PerturbationBudget(eps=0.003, norm=norm).check_quantisable()
    PerturbationBudget(eps=ONE_LEVEL, norm=norm).check_quantisable()  # one level is usable


def test_budget_round_trips_through_a_trial_config() -> None:
    budget = PerturbationBudget(eps=20, norm="linf")
    assert budget.eps == 20.0 and isinstance(budget.eps, float)
    assert PerturbationBudget.from_mapping({"patches": [], **budget.as_dict()}) == budget
    assert str(budget) == "linf=20"
    with pytest.raises(TypeError):
        PerturbationBudget(20.0, "l2")  # type: ignore[misc]  # keyword-only


def bisection_apply(budget: PerturbationBudget, clean: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The quantisation as first written (a 12-step bisection of the scale): the bytes to keep."""
    moved = np.any(delta != 0, axis=2)
    rows, cols = np.flatnonzero(moved.any(axis=1)), np.flatnonzero(moved.any(axis=0))
    if rows.size == 0:
        return clean.copy()
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    base, step = clean[box].astype(np.float64), delta[box] * 255.0
    active = np.flatnonzero(np.abs(step) >= 0.5)
    base_active, step_active = base.reshape(-1)[active], step.reshape(-1)[active]

    def rounded(scale: float) -> np.ndarray:
        return np.rint(np.clip(base_active + scale * step_active, 0.0, 255.0))

    def fits(candidate: np.ndarray) -> bool:
        return budget.fits((candidate - base_active) / 255.0)

    best = rounded(1.0)
    if not fits(best):
        low, high, best = 0.0, 1.0, None
        for _ in range(12):
            middle = (low + high) / 2
            candidate = rounded(middle)
            if fits(candidate):
                low, best = middle, candidate
            else:
                high = middle
        if best is None:
            best = base_active + np.trunc(np.clip(base_active + step_active, 0.0, 255.0) - base_active)
    window = clean[box].copy()
    window.reshape(-1)[active] = best.astype(np.uint8)
    out = clean.copy()
    out[box] = window
    return out


@pytest.mark.parametrize(
    ("norm", "eps"), [("l2", 0.01), ("l2", 1.0), ("l2", 20.0), ("linf", 0.004), ("linf", 0.05)]
)
def test_quantisation_gives_the_bytes_of_the_bisection(photo, norm, eps) -> None:
    """Every stored trial must re-render to its bytes: the faster search finds the bisection's scale.

    Wide blobs (the default search space), small Gabor patches, perturbations clipped hard at 0 and
    255, and the sizes where rounding misses the budget by one level (the linear guess is off by most).
    """
    rng = np.random.default_rng(7)
    height, width = photo.shape[:2]
    budget = PerturbationBudget(eps=eps, norm=norm)
    searched = 0
    for index in range(60):
        patches = random_patches(rng, int(rng.integers(1, 6)), width, height)
        if index % 3 == 0:  # wide plain blobs
            patches = [
                Patch(x=p.x, y=p.y, size=float(rng.uniform(20, 80)), amplitude=p.amplitude) for p in patches
            ]
        delta = budget.rescale(render(patches, height, width))
        if index % 4 == 1:  # most of the budget lost to clipping
            delta = delta * float(rng.uniform(2, 50))
        clean = photo if index % 5 else np.where(photo > 127, 255, 0).astype(np.uint8)
        expected = bisection_apply(budget, clean, delta)
        step = delta * 255.0
        over = budget.size((np.rint(np.clip(clean + step, 0, 255)) - clean) / 255.0) > eps
        searched += int(over)
        assert np.array_equal(budget.apply(clean, delta), expected), index
    assert searched >= 10  # the search itself was exercised, not only the first rounding


@pytest.mark.parametrize(("eps", "levels"), [(0.5, 2), (5.0, 1), (20.0, 3), (20.0, 4), (2.0, 40)])
def test_a_capped_budget_holds_both_norms_after_quantisation(photo, eps, levels) -> None:
    """The L-inf cap holds together with the L2 eps on the 8-bit image, for any perturbation."""
    rng = np.random.default_rng(3)
    height, width = photo.shape[:2]
    budget = PerturbationBudget(eps=eps, norm="l2", eps_inf=levels / 255)
    assert budget.cap_levels == levels
    for index in range(20):
        delta = render(random_patches(rng, 4, width, height), height, width)
        delta = budget.rescale(delta) if index % 2 else delta * 3  # filled, or far over both bounds
        adversarial = budget.apply(photo, delta)
        moved = adversarial.astype(np.int64) - photo
        assert np.abs(moved).max() <= levels
        assert budget.size(moved / 255.0) <= eps + 1e-12
        assert budget.fits(moved / 255.0)
        # A perturbation far over both bounds moves some pixel (at L2 0.5 a uniform scale may move none).
        assert moved.any() or index % 2 or eps < 1


def test_the_cap_bounds_every_method_and_is_the_smaller_bound_under_linf() -> None:
    budget = PerturbationBudget(eps=2.0, eps_inf=0.01)
    big = np.full(16, 3.0)
    for delta in (budget.rescale(big), budget.project(big)):
        assert np.abs(delta).max() <= 0.01 and budget.size(delta) <= 2.0 + 1e-12
    spread = np.full(100_000, 0.01)  # within the cap, over the L2 eps: shrunk into both
    projected = budget.project(spread)
    assert budget.size(projected) == pytest.approx(2.0) and np.abs(projected).max() <= 0.01
    assert not budget.fits(spread) and budget.fits(projected)
    assert PerturbationBudget(eps=0.05, norm="linf", eps_inf=0.02).cap == 0.02
    assert PerturbationBudget(eps=0.01, norm="linf", eps_inf=0.02).cap == 0.01
    assert PerturbationBudget(eps=2.0).cap is None and PerturbationBudget(eps=2.0).cap_levels is None


def test_a_cap_below_one_level_is_refused_and_a_bad_cap_named() -> None:
    from blackbox.core.perturbation import PerturbationBudgetError, UnusableBudgetError

    with pytest.raises(UnusableBudgetError, match=r"eps_inf=0\.5 levels is below one 8-bit level"):
        PerturbationBudget(eps=20.0, eps_inf=0.5 / 255).check_quantisable()
    PerturbationBudget(eps=20.0, eps_inf=1 / 255).check_quantisable()
    for cap in (0.0, -1.0, float("nan"), "3", True):
        with pytest.raises(PerturbationBudgetError, match="eps_inf"):
            PerturbationBudget(eps=20.0, eps_inf=cap)  # type: ignore[arg-type]


def test_a_capped_budget_round_trips_and_old_configs_have_no_cap() -> None:
    budget = PerturbationBudget(eps=20.0, eps_inf=3 / 255)
    assert PerturbationBudget.from_mapping(budget.as_dict()) == budget
    assert str(budget) == "l2=20,linf<=3/255"
    assert PerturbationBudget.from_mapping({"eps": 20.0, "norm": "l2"}).eps_inf is None  # stored before caps
    assert budget.with_eps(5.0) == PerturbationBudget(eps=5.0, eps_inf=3 / 255)


def test_capped_budget_arithmetic_is_the_same_in_numpy_and_torch() -> None:
    import torch

    budget = PerturbationBudget(eps=0.7, eps_inf=0.05)
    delta = np.random.default_rng(0).normal(size=(12, 10, 3)) * 0.1
    tensor = torch.from_numpy(delta)
    for method in (budget.rescale, budget.project, budget.clamp):
        np.testing.assert_allclose(method(tensor).numpy(), method(delta), rtol=1e-12)
