from __future__ import annotations

import numpy as np
import pytest
import torch

from targets._functional import dct_matrix
from targets.classic import ClassicSaliency, ImageSignature
from targets.testing import DifferentiableTargetConformance, sample_images


class TestClassicConformance(DifferentiableTargetConformance):
    @pytest.fixture
    def target(self) -> ClassicSaliency:
        return ClassicSaliency()


def test_salient_point_finds_the_blob() -> None:
    # sample_images()[0] has a red blob at (x=90, y=30).
    output = ClassicSaliency(centre_bias_weight=0.0).query([sample_images()[0]])[0]
    x, y = output.salient_point
    assert abs(x - 90) < 12 and abs(y - 30) < 12


def test_centre_bias_pulls_towards_the_centre() -> None:
    flat = np.full((96, 128, 3), 0.5, dtype=np.float32)
    flat += np.random.default_rng(0).normal(0, 0.01, flat.shape).astype(np.float32)
    output = ClassicSaliency(centre_bias_weight=5.0).query([np.clip(flat, 0, 1)])[0]
    x, y = output.salient_point
    assert abs(x - 64) < 16 and abs(y - 48) < 16


def test_small_temperature_approaches_the_papers_sign() -> None:
    lab = torch.rand(1, 3, 24, 32)
    soft = ImageSignature(width=32, temperature=1e-6)(lab)
    dh, dw = dct_matrix(24), dct_matrix(32)
    coefficients = dh @ torch.nn.functional.interpolate(lab, size=(24, 32), mode="area") @ dw.T
    hard = dh.T @ torch.sign(coefficients) @ dw
    torch.testing.assert_close(soft, hard, atol=5e-2, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scales": ()},
        {"blur_sigma": 0.0},
        {"centre_bias_weight": -1.0},
        {"temperature": 0.0},
        {"scales": (4,)},
        {"aspect_ratios": (0.0,)},
    ],
)
def test_bad_settings_are_clear_errors(kwargs) -> None:
    with pytest.raises(ValueError):
        ClassicSaliency(**kwargs)
