"""``target=twitter`` against what Twitter's own cropping binary printed for its sample image.

The evidence is read from ``../shared/evidence/twitter-binary/`` (see its README): the binary's 17 x 20
score grid (``show_all_points``), and the salient point and crops its figure shows. These tests fail,
never skip, when the evidence is missing: they are the only check that ``twitter`` is Twitter's cropper.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from targets.twitter import TwitterSaliency
from tests.conftest import REPO, SHARED_MODELS

EVIDENCE = REPO.parent / "shared" / "evidence" / "twitter-binary"
BINARY_ARGMAX_CELL = (6, 2)  # row, column: the evidence README
MAX_CROP_OFFSET_PX = 8


@pytest.fixture(scope="module")
def evidence() -> tuple[np.ndarray, np.ndarray]:
    image_path, grid_path = EVIDENCE / "dummy.jpeg", EVIDENCE / "binary_grid.csv"
    missing = [str(p) for p in (image_path, grid_path) if not p.is_file()]
    assert not missing, f"the evidence files are missing: {missing} (shared/ must sit beside the checkout)"
    with Image.open(image_path) as opened:
        image = np.asarray(opened.convert("RGB"), dtype=np.float32) / 255
    return image, np.loadtxt(grid_path, delimiter=",")


@pytest.fixture(scope="module")
def twitter() -> TwitterSaliency:
    weights = SHARED_MODELS / "fastgaze.vxm"
    assert weights.is_file(), f"{weights} is missing (shared/models holds Twitter's released model)"
    return TwitterSaliency(weights=weights)


def test_the_evidence_is_what_its_readme_says(evidence: tuple[np.ndarray, np.ndarray]) -> None:
    image, binary = evidence
    assert image.shape == (851, 1034, 3) and binary.shape == (17, 20)
    assert np.unravel_index(int(binary.argmax()), binary.shape) == BINARY_ARGMAX_CELL


def test_score_grid_has_the_binarys_shape_and_correlates(
    twitter: TwitterSaliency, evidence: tuple[np.ndarray, np.ndarray]
) -> None:
    image, binary = evidence
    with torch.no_grad():
        grid = twitter.grid_log_density(torch.from_numpy(image).permute(2, 0, 1)[None])[0].double().numpy()
    assert grid.shape == binary.shape
    correlation = float(np.corrcoef(grid.ravel(), binary.ravel())[0, 1])
    assert correlation >= 0.95, f"Pearson correlation with the binary's 340 scores is {correlation:.3f}"
    assert np.unravel_index(int(grid.argmax()), grid.shape) == BINARY_ARGMAX_CELL


def test_salient_point_and_crops_are_the_binarys(
    twitter: TwitterSaliency, evidence: tuple[np.ndarray, np.ndarray]
) -> None:
    image, _ = evidence
    output = twitter.query([image])[0]
    x, y = output.salient_point
    assert (int(x // (1034 / 20)), int(y // (851 / 17))) == BINARY_ARGMAX_CELL[::-1]
    crops = {crop.aspect_ratio: crop for crop in output.crops}
    assert set(crops) == {0.56, 1.0, 1.14, 2.0}
    # The figure: the 0.56 crop is the full width, 36-44 px from the top, 579 px tall; the others are
    # anchored at the left edge, full height (their widths follow from the ratio).
    wide = crops[0.56]
    assert (wide.left, wide.width) == (0, 1034) and abs(wide.height - 579) <= MAX_CROP_OFFSET_PX
    assert 36 - MAX_CROP_OFFSET_PX <= wide.top <= 44 + MAX_CROP_OFFSET_PX
    for ratio in (1.0, 1.14, 2.0):
        crop = crops[ratio]
        assert crop.left <= MAX_CROP_OFFSET_PX and (crop.top, crop.height) == (0, 851)
        assert abs(crop.width - 851 / ratio) <= MAX_CROP_OFFSET_PX
