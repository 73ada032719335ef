"""A conformance suite every target runs, in the manner of ``optuna.testing``.

A target's test module subclasses :class:`TargetConformance` and provides a ``target`` fixture::

    class TestClassic(TargetConformance):
        @pytest.fixture
        def target(self):
            return ClassicSaliency()

Differentiable targets subclass :class:`DifferentiableTargetConformance` as well. Third-party
targets can run the same suite: it needs only pytest and this module.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from targets._base import DifferentiableTarget, Output, Target
from targets._capabilities import Capability
from targets._output import TargetOutput
from targets.crop import is_cut


def sample_images(seed: int = 0) -> list[np.ndarray]:
    """Small, structured test images of two sizes: a bright blob on smooth noise."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width, (cy, cx) in [(96, 128, (30, 90)), (96, 128, (60, 30)), (80, 112, (40, 56))]:
        yy, xx = np.mgrid[0:height, 0:width]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 8.0**2))
        base = 0.35 + 0.1 * rng.random((height, width, 3))
        image = np.clip(base + 0.6 * blob[..., None] * np.array([1.0, 0.3, 0.2]), 0, 1)
        images.append(image.astype(np.float32))
    return images


class TargetConformance:
    """What every :class:`~targets.Target` promises. Subclasses provide a ``target`` fixture."""

    @pytest.fixture
    def target(self) -> Target:  # pragma: no cover - always overridden
        raise NotImplementedError("provide a `target` fixture")

    @pytest.fixture
    def images(self) -> list[np.ndarray]:
        return sample_images()

    def test_declares_outputs(self, target: Target) -> None:
        assert target.outputs, "a target must give at least one output"
        assert target.outputs <= set(Output)
        assert Output.CROPS in target.outputs or Output.POINT in target.outputs

    def test_declares_capabilities(self, target: Target) -> None:
        # Gradients exactly when the target is a DifferentiableTarget (it has log_density); the rest
        # are its outputs, so require() decides from the target's own declarations alone.
        gives = target.capabilities
        differentiable = isinstance(target, DifferentiableTarget)
        assert (Capability.GRADIENTS in gives) == differentiable == target.differentiable
        assert {Output(c.value) for c in gives - {Capability.GRADIENTS}} == set(target.outputs)
        assert target.gives_point == bool(target.outputs & {Output.POINT, Output.SALIENCY})

    def test_declares_a_search_conf_has(self, target: Target) -> None:
        # attack=auto and search=auto run these (blackbox/settings/auto.py): files conf/ has.
        from targets._zoo import group_names

        best = target.best_search
        assert best.attack in group_names("attack") and best.attack != "auto"
        assert best.search in group_names("search") and best.search != "auto"

    def test_one_output_per_image(self, target: Target, images: list[np.ndarray]) -> None:
        outputs = target.query(images)
        assert len(outputs) == len(images)
        assert all(isinstance(o, TargetOutput) for o in outputs)

    def test_salient_point_inside_image(self, target: Target, images: list[np.ndarray]) -> None:
        for image, output in zip(images, target.query(images), strict=True):
            height, width = image.shape[:2]
            x, y = output.salient_point
            assert 0 <= x < width and 0 <= y < height

    def test_crop_boxes_valid(self, target: Target, images: list[np.ndarray]) -> None:
        for image, output in zip(images, target.query(images), strict=True):
            height, width = image.shape[:2]
            assert len(output.crops) == len(target.aspect_ratios)
            for crop, ratio in zip(output.crops, target.aspect_ratios, strict=True):
                assert crop.aspect_ratio == pytest.approx(ratio)
                assert crop.left >= 0 and crop.top >= 0
                assert crop.right <= width and crop.bottom <= height
                assert crop.width >= 1 and crop.height >= 1
                # One side is kept whole: the policy only ever cuts one (a real cropper may round
                # the kept side by a few pixels, which is no cut: targets.crop.is_cut).
                assert not is_cut(crop.width, width) or not is_cut(crop.height, height)

    def test_log_density_shape_and_normalisation(self, target: Target, images: list[np.ndarray]) -> None:
        if Output.SALIENCY not in target.outputs:
            pytest.skip("target gives no saliency map")
        for image, output in zip(images, target.query(images), strict=True):
            assert output.log_density is not None
            assert output.log_density.shape == image.shape[:2]
            assert np.isfinite(output.log_density).all()
            total = np.exp(output.log_density.astype(np.float64)).sum()
            assert total == pytest.approx(1.0, abs=1e-4)

    def test_no_map_when_not_declared(self, target: Target, images: list[np.ndarray]) -> None:
        if Output.SALIENCY in target.outputs:
            pytest.skip("target gives a saliency map")
        assert all(o.log_density is None for o in target.query(images))

    def test_deterministic(self, target: Target, images: list[np.ndarray]) -> None:
        first, second = target.query(images), target.query(images)
        for a, b in zip(first, second, strict=True):
            assert a.salient_point == b.salient_point
            assert a.crops == b.crops
            if a.log_density is not None:
                np.testing.assert_array_equal(a.log_density, b.log_density)

    def test_batch_equals_singles(self, target: Target, images: list[np.ndarray]) -> None:
        batch = target.query(images)
        for image, together in zip(images, batch, strict=True):
            alone = target.query([image])[0]
            # Batched kernels may sum in another order: allow one pixel and float noise.
            assert np.allclose(together.salient_point, alone.salient_point, atol=1.0)
            if together.log_density is not None:
                np.testing.assert_allclose(together.log_density, alone.log_density, atol=1e-4)

    def test_accepts_a_4d_array_batch(self, target: Target, images: list[np.ndarray]) -> None:
        same_size = np.stack(images[:2])
        assert len(target.query(same_size)) == 2

    def test_float64_accepted(self, target: Target, images: list[np.ndarray]) -> None:
        assert len(target.query([images[0].astype(np.float64)])) == 1

    @pytest.mark.parametrize(
        ("make_bad", "error", "match"),
        [
            (lambda im: (im * 255).astype(np.uint8), TypeError, "uint8"),
            (lambda im: im * 255.0, ValueError, r"\[0, 1\]"),
            (lambda im: im - 0.5, ValueError, r"\[0, 1\]"),
            (lambda im: im[..., :2], ValueError, "shape"),
            (lambda im: im.mean(axis=2), ValueError, "shape"),
            (lambda im: np.dstack([im, im[..., :1]]), ValueError, "shape"),
            (lambda im: im[:8, :8], ValueError, "too small"),
            (lambda im: np.where(im > 0.5, np.nan, im).astype(np.float32), ValueError, "NaN"),
        ],
        ids=["uint8", "0-255 floats", "negative", "two channels", "grayscale", "rgba", "tiny", "nan"],
    )
    def test_bad_input_is_a_clear_error(
        self, target: Target, images: list[np.ndarray], make_bad, error, match
    ) -> None:
        with pytest.raises(error, match=match):
            target.query([make_bad(images[0])])

    def test_single_image_without_batch_is_an_error(self, target: Target, images: list[np.ndarray]) -> None:
        with pytest.raises(ValueError, match="batch"):
            target.query(images[0])

    def test_empty_batch_is_an_error(self, target: Target) -> None:
        with pytest.raises(ValueError, match="empty"):
            target.query([])


class DifferentiableTargetConformance(TargetConformance):
    """Extra promises of a :class:`~targets.DifferentiableTarget`."""

    def test_is_differentiable(self, target: DifferentiableTarget) -> None:
        assert target.differentiable
        assert Output.SALIENCY in target.outputs
        assert Capability.GRADIENTS in target.capabilities

    def test_log_density_tensor(self, target: DifferentiableTarget, images) -> None:
        tensor = torch.from_numpy(np.stack(images[:2])).permute(0, 3, 1, 2)
        log_density = target.log_density(tensor)
        assert log_density.shape == (2, *images[0].shape[:2])
        totals = torch.logsumexp(log_density.flatten(1).double(), dim=1)
        torch.testing.assert_close(totals, torch.zeros(2, dtype=torch.float64), atol=1e-4, rtol=0)

    def test_matches_query(self, target: DifferentiableTarget, images) -> None:
        tensor = torch.from_numpy(images[0][None]).permute(0, 3, 1, 2)
        with torch.no_grad():
            direct = target.log_density(tensor)[0].double().numpy()
        np.testing.assert_allclose(direct, target.query([images[0]])[0].log_density, atol=1e-5)

    def test_gradient_is_finite_and_nonzero(self, target: DifferentiableTarget, images) -> None:
        tensor = torch.from_numpy(images[0][None]).permute(0, 3, 1, 2).clone().requires_grad_()
        log_density = target.log_density(tensor)
        # Raise the density in a region away from the peak: a gradient must exist for that.
        log_density[0, :, : images[0].shape[1] // 4].logsumexp(dim=(0, 1)).backward()
        assert tensor.grad is not None
        assert torch.isfinite(tensor.grad).all()
        assert tensor.grad.abs().sum() > 0

    def test_feature_layer_is_a_module_or_none(self, target: DifferentiableTarget) -> None:
        layer = target.feature_layer()
        assert layer is None or isinstance(layer, torch.nn.Module)
