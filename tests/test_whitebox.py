from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from blackbox.attacks import (
    PGD,
    AttackProblem,
    GaussianNoise,
    GradCamFGM,
    GradCamNoise,
    IterativeFGM,
)
from blackbox.attacks._gradients import goal_mask, grad_cam, loss_and_gradient, smooth_margin, to_tensor
from blackbox.core.goal import Goal
from blackbox.core.images import LoadedImage
from blackbox.core.perturbation import PerturbationBudget
from blackbox.experiment.pipeline import Pipeline
from targets import DifferentiableTarget, MissingCapabilityError
from targets._functional import log_softmax_2d, upsample_log_density
from targets.classic import ClassicSaliency
from targets.testing import DifferentiableTargetConformance


class TinyTarget(DifferentiableTarget):
    """A two-layer convolutional saliency model with fixed random weights: fast, differentiable."""

    name = "tiny"

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus())
        self.readout = nn.Conv2d(4, 1, 1)
        for p in [*self.features.parameters(), *self.readout.parameters()]:
            p.data = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(dtype)
        self.dtype = dtype

    def feature_layer(self) -> nn.Module:
        return self.features

    def log_density(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        small = nn.functional.avg_pool2d(images.to(self.dtype), 4)
        logits = self.readout(self.features(small))[:, 0]
        return upsample_log_density(log_softmax_2d(logits), height, width)


class TestTinyTargetConformance(DifferentiableTargetConformance):
    @pytest.fixture
    def target(self) -> TinyTarget:
        return TinyTarget()


GOAL = Goal(20, 0, 40, 48, "user_box", peak_x=50, target_x=30)


def test_attack_loss_gradient_matches_finite_differences() -> None:
    target = TinyTarget(torch.float64)
    image = torch.rand(1, 3, 48, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mask = goal_mask(GOAL, 48, 64)
    _, gradient = loss_and_gradient(target, image, mask, temperature=0.5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        c, y, x = int(rng.integers(3)), int(rng.integers(48)), int(rng.integers(64))
        bump = torch.zeros_like(image)
        bump[0, c, y, x] = 1e-6
        with torch.no_grad():
            up = smooth_margin(target.log_density(image + bump), mask, 0.5)
            down = smooth_margin(target.log_density(image - bump), mask, 0.5)
        numeric = float((up - down) / 2e-6)
        assert numeric == pytest.approx(float(gradient[0, c, y, x]), rel=1e-4, abs=1e-8)


def test_smooth_margin_approaches_the_hard_margin() -> None:
    from blackbox.core.objective import saliency_margin

    with torch.no_grad():
        log_density = TinyTarget().log_density(torch.rand(1, 3, 48, 64))
    soft = float(smooth_margin(log_density, goal_mask(GOAL, 48, 64), 1e-4))
    hard = saliency_margin(log_density[0].detach().double().numpy(), GOAL)
    assert soft == pytest.approx(hard, abs=1e-2)


def test_grad_cam_shape_and_range() -> None:
    image = torch.rand(1, 3, 48, 64)
    cam = grad_cam(TinyTarget(), image, goal_mask(GOAL, 48, 64), 0.05)
    assert cam.shape == (1, 1, 48, 64)
    assert float(cam.min()) >= 0 and float(cam.max()) == pytest.approx(1.0)


def test_grad_cam_needs_a_feature_layer() -> None:
    class NoFeatures(TinyTarget):
        def feature_layer(self):
            return None

    with pytest.raises(ValueError, match="gradcam=false"):
        grad_cam(NoFeatures(), torch.rand(1, 3, 48, 64), goal_mask(GOAL, 48, 64), 0.05)


def problem_on(photo: np.ndarray, target, eps: float) -> AttackProblem:
    pipeline = Pipeline(target=target, target_name=target.name)
    clean = pipeline.clean(LoadedImage("chelsea", "test", photo, photo.shape[1::-1]))
    return pipeline.problem(clean, pipeline.goal(clean), eps=eps)


ATTACKS = [
    IterativeFGM(),
    GradCamFGM(),
    GradCamNoise(),
    GaussianNoise(band_px=100, reference_width=160),
    PGD(steps=8),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
@pytest.mark.parametrize("eps", [1.0, 5.0])
def test_final_norm_meets_eps_within_quantisation(photo, attack, eps) -> None:
    target = ClassicSaliency()
    result = attack.run(problem_on(photo, target, eps), target)
    size = PerturbationBudget(eps=eps).size((result.adversarial.astype(np.float64) - photo) / 255.0)
    assert size <= eps + 1e-9
    # Rounding to 8 bits drops elements below half a level; the rest of the budget is kept.
    # PGD may stop inside the ball; every other method fills it.
    if attack.name != "pgd":
        assert size >= 0.7 * eps
    assert result.queries == 1 and result.method == attack.name


def test_gaussian_noise_stays_in_its_band(photo) -> None:
    target = ClassicSaliency()
    problem = problem_on(photo, target, 5.0)
    result = GaussianNoise(band_px=20, reference_width=160).run(problem, target)
    changed = np.abs(result.adversarial.astype(int) - photo).sum(axis=(0, 2)) > 0
    columns = np.flatnonzero(changed)
    assert columns.min() >= problem.goal.target_x - 11 and columns.max() <= problem.goal.target_x + 11


def test_iterative_fgm_moves_the_peak_towards_the_goal(photo) -> None:
    target = ClassicSaliency()
    problem = problem_on(photo, target, 3.0)
    noise = GaussianNoise(reference_width=160).run(problem, target)
    fgm = IterativeFGM().run(problem, target)
    assert fgm.score > noise.score
    assert fgm.extra["gradient_steps"] == 3


def test_gradient_attack_refuses_a_black_box_target(photo) -> None:
    from tests.test_patch_search import CountingTarget

    target = CountingTarget(ClassicSaliency())
    with pytest.raises(MissingCapabilityError, match="needs gradients"):
        IterativeFGM().run(problem_on(photo, target, 2.0), target)


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"temperature": 0.0}])
def test_bad_settings(kwargs) -> None:
    with pytest.raises(ValueError):
        IterativeFGM(**kwargs)


def test_to_tensor_layout(photo) -> None:
    tensor = to_tensor(photo)
    assert tensor.shape == (1, 3, *photo.shape[:2]) and float(tensor.max()) <= 1.0


def test_transfer_reports_both_targets(tmp_path) -> None:
    import contextlib
    import io

    from benchmarks._compose import compose_run
    from blackbox.settings.commands import run

    cfg = compose_run(
        ["attack=iterative_fgm", "measure=classic", "eps=3", "working_width=160", "dataset.names=[chelsea]"]
    )
    crafting = ClassicSaliency(scales=(32,), centre_bias_weight=0.0)  # a different model than the measure
    with contextlib.redirect_stdout(io.StringIO()):
        summary = run(cfg, tmp_path, target_name="classic-32", target=crafting)
    (record,) = summary.records
    assert record["measure"] == "classic" and record["target"] == "classic-32"
    assert set(record["on_target"]) >= {"success", "shift_pct_distance", "shift_pct_width"}
    assert record["method"] == "iterative_fgm"


def test_warm_start_enqueues_fitted_patches_first(photo) -> None:
    import optuna

    from tests.test_patch_search import SEARCH, make_search

    target = ClassicSaliency()
    problem = problem_on(photo, target, 3.0)
    transfer = IterativeFGM().run(problem, target)
    delta = (transfer.adversarial.astype(np.float64) - photo) / 255.0
    storage = optuna.storages.InMemoryStorage()
    search = make_search(3, storage=storage)
    search.warm_start = lambda _problem: delta
    result = search.run(problem, target)
    first = optuna.load_study(study_name=result.extra["study"], storage=storage).trials[0]
    assert first.system_attrs.get("fixed_params")  # it was the enqueued, fitted trial
    assert len(first.params) == SEARCH["n_patches"] * 8  # x, y, size, r, g, b, frequency, angle


def test_fit_patches_finds_the_energy() -> None:
    from blackbox.search.search_space import Region
    from blackbox.search.warm_start import fit_patches
    from tests.test_patch_search import SEARCH

    delta = np.zeros((60, 80, 3))
    delta[20:24, 50:54, 0] = 0.5
    params = fit_patches(delta, n_patches=2, region=Region(0, 0, 79, 59), space=SEARCH)
    assert abs(params["p0_x"] - 51.5) <= 2 and abs(params["p0_y"] - 21.5) <= 2
    assert params["p0_r"] == pytest.approx(1.0) and params["p0_g"] == pytest.approx(0.0)


def test_a_successful_white_box_attack_succeeded_at_its_one_query(photo) -> None:
    from blackbox.experiment.record import measurement
    from blackbox.experiment.summary import summary_table

    target = ClassicSaliency()
    problem = problem_on(photo, target, 20.0)
    result = IterativeFGM().run(problem, target)
    assert result.success and result.queries == 1
    assert result.queries_to_success == 1
    record = measurement(result, problem.image, problem.clean_output)
    assert record["queries_to_success"] == 1
    row = summary_table([record]).splitlines()[2].split(" | ")
    header = summary_table([]).splitlines()[0].split(" | ")
    assert row[header.index("to success")] == "1"


def test_to_success_follows_the_measured_verdict(photo) -> None:
    from dataclasses import replace

    from blackbox.experiment.pipeline import measured

    target = ClassicSaliency()
    problem = problem_on(photo, target, 20.0)
    result = IterativeFGM().run(problem, target)
    assert result.success
    # Measured on the target itself, the verdict stands; told "no" by the measure, it has none.
    assert measured(result, target, problem.image).queries_to_success == 1
    # A goal box in the corner, where the salient point is not.
    failing = replace(result, goal=replace(result.goal, x0=0.0, y0=0.0, x1=1.0, y1=1.0))
    assert measured(failing, target, problem.image).queries_to_success is None
