from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import pyvips  # a core dependency: missing is a failure, not a skip

from blackbox.settings.checks import ConfigError
from targets import DEFAULT_ASPECT_RATIOS, Output, load
from targets.crop import crop_size
from targets.testing import TargetConformance
from targets.vips import VipsSmartcrop, libvips_version


class TestVipsAttentionConformance(TargetConformance):
    @pytest.fixture
    def target(self) -> VipsSmartcrop:
        return VipsSmartcrop(interesting="attention")


class TestVipsEntropyConformance(TargetConformance):
    @pytest.fixture
    def target(self) -> VipsSmartcrop:
        return VipsSmartcrop(interesting="entropy")


def _scene(width: int, height: int, spot_x: int, seed: int = 0) -> np.ndarray:
    """A dull grey picture with one saturated, textured spot centred at column ``spot_x``."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 0.45, dtype=np.float32)
    image += rng.normal(0, 0.005, image.shape).astype(np.float32)
    y0, x0 = height // 2 - 20, spot_x - 20
    texture = rng.random((40, 40, 1)).astype(np.float32)
    image[y0 : y0 + 40, x0 : x0 + 40] = texture * np.array([0.95, 0.25, 0.1], dtype=np.float32)
    return np.clip(np.rint(image * 255) / 255, 0, 1).astype(np.float32)


def test_the_wheels_libvips_answers() -> None:
    # pyvips-binary ships libvips as the `_libvips` extension: no system library is loaded.
    assert pyvips.API_mode
    files = [str(f) for f in importlib.metadata.files("pyvips-binary") or []]
    assert any(Path(f).name.startswith("_libvips") for f in files)
    major, minor = (int(v) for v in libvips_version().split(".")[:2])
    assert (major, minor) >= (8, 18)


@pytest.mark.parametrize("size", [(320, 200), (200, 320), (256, 256), (300, 299)])
@pytest.mark.parametrize("interesting", ["attention", "entropy"])
def test_crop_sizes_follow_the_ratio_rule(size: tuple[int, int], interesting: str) -> None:
    width, height = size
    image = _scene(width, height, spot_x=width // 3)
    output = VipsSmartcrop(interesting=interesting).query([image])[0]
    for crop, ratio in zip(output.crops, DEFAULT_ASPECT_RATIOS, strict=True):
        assert (crop.width, crop.height) == crop_size(width, height, ratio)


@pytest.mark.parametrize("interesting", ["attention", "entropy"])
def test_crop_boxes_are_where_libvips_cut(interesting: str) -> None:
    # The box read from xoffset/yoffset holds exactly the pixels libvips' own crop returned.
    image = _scene(320, 200, spot_x=250)
    pixels = np.rint(image * 255).astype(np.uint8)
    output = VipsSmartcrop(interesting=interesting).query([image])[0]
    whole = pyvips.Image.new_from_array(pixels)
    for crop in output.crops:
        cut = whole.smartcrop(crop.width, crop.height, interesting=interesting).numpy()
        np.testing.assert_array_equal(cut, pixels[crop.top : crop.bottom, crop.left : crop.right])


@pytest.mark.parametrize("spot_x", [50, 270])
def test_attention_follows_a_saturated_spot(spot_x: int) -> None:
    output = VipsSmartcrop(interesting="attention").query([_scene(320, 200, spot_x)])[0]
    x, _ = output.salient_point
    assert abs(x - spot_x) <= 320 / 32 * 2  # libvips places it on a 32-cell grid
    narrow = output.crops[-1]  # ratio 2: 100 px of 320
    assert narrow.left <= spot_x - 20 and spot_x + 20 <= narrow.right


@pytest.mark.parametrize("spot_x", [50, 270])
def test_entropy_keeps_the_textured_side(spot_x: int) -> None:
    output = VipsSmartcrop(interesting="entropy").query([_scene(320, 200, spot_x)])[0]
    narrow = output.crops[-1]
    assert narrow.left <= spot_x <= narrow.right
    assert Output.POINT not in VipsSmartcrop(interesting="entropy").outputs


def test_floats_are_read_as_the_8_bit_file() -> None:
    # k/255 in float32 or float64, or a hair off it, is the same upload: the same crops.
    image = _scene(320, 200, spot_x=80)
    target = VipsSmartcrop(interesting="entropy")
    base = target.query([image])[0]
    assert target.query([image.astype(np.float64)])[0] == base
    assert target.query([np.clip(image + 1e-4, 0, 1)])[0] == base


def test_a_point_for_every_ratio_is_the_same_point() -> None:
    # The attention point does not depend on which ratios are asked for.
    image = _scene(320, 200, spot_x=90)
    one = VipsSmartcrop(aspect_ratios=(1.0,)).query([image])[0].salient_point
    four = VipsSmartcrop().query([image])[0].salient_point
    assert one == four


def test_unknown_strategy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="attention, entropy"):
        VipsSmartcrop(interesting="centre")
    with pytest.raises(ConfigError, match="interesting must be one of attention, entropy"):
        load("vips_attention", interesting="x")


@pytest.mark.parametrize("name", ["vips_attention", "vips_entropy"])
def test_in_the_zoo(name: str) -> None:
    target = load(name, aspect_ratios=(0.56, 2.0))
    assert isinstance(target, VipsSmartcrop)
    assert target.name == name
    assert target.aspect_ratios == (0.56, 2.0)
