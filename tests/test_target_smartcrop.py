"""``target=smartcrop``: smartcrop.js's algorithm through the smartcrop.py port, checked against the port."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import smartcrop  # a core dependency: missing is a failure, not a skip
from PIL import Image

from targets import DEFAULT_ASPECT_RATIOS, ConfigError, Output, load
from targets.crop import crop_size
from targets.smartcrop import Smartcrop, smartcrop_version
from targets.testing import TargetConformance, sample_images


class TestSmartcropConformance(TargetConformance):
    @pytest.fixture
    def target(self) -> Smartcrop:
        return Smartcrop()


def _photo(name: str, width: int, height: int) -> np.ndarray:
    picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((width, height))
    return (np.asarray(picture, dtype=np.float32) / 255).astype(np.float32)


def _scene(width: int, height: int, spot_x: int, seed: int = 0) -> np.ndarray:
    """A dull grey picture with one saturated, textured spot centred at column ``spot_x``."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 0.45, dtype=np.float32)
    y0, x0 = height // 2 - 20, spot_x - 20
    texture = rng.random((40, 40, 1)).astype(np.float32)
    image[y0 : y0 + 40, x0 : x0 + 40] = 0.2 + texture * np.array([0.75, 0.25, 0.1], dtype=np.float32)
    return np.clip(np.rint(image * 255) / 255, 0, 1).astype(np.float32)


def test_the_port_is_installed() -> None:
    assert tuple(int(v) for v in smartcrop_version().split(".")[:2]) >= (0, 5)


@pytest.mark.parametrize(
    ("name", "size"),
    [("astronaut", (320, 240)), ("coffee", (240, 320)), ("chelsea", (300, 299)), ("rocket", (256, 256))],
)
def test_every_crop_is_the_ports_own(name: str, size: tuple[int, int]) -> None:
    # Features computed once for every ratio give exactly what the port's crop() gives ratio by ratio.
    width, height = size
    image = _photo(name, width, height)
    picture = Image.fromarray(np.rint(image * 255).astype(np.uint8), "RGB")
    ratios = (0.3, 0.56, 1.0, 1.14, 2.0, 3.0)
    output = Smartcrop(aspect_ratios=ratios).query([image])[0]
    port = smartcrop.SmartCrop()
    for crop, ratio in zip(output.crops, ratios, strict=True):
        crop_w, crop_h = crop_size(width, height, ratio)
        top = port.crop(picture, crop_w, crop_h, min_scale=1.0)["top_crop"]
        assert crop.as_list() == [top["x"], top["y"], top["width"], top["height"]]


@pytest.mark.parametrize("size", [(320, 200), (200, 320), (256, 256)])
def test_crop_sizes_follow_the_ratio_rule(size: tuple[int, int]) -> None:
    width, height = size
    output = Smartcrop().query([_scene(width, height, spot_x=width // 3)])[0]
    for crop, ratio in zip(output.crops, DEFAULT_ASPECT_RATIOS, strict=True):
        assert (crop.width, crop.height) == crop_size(width, height, ratio)


@pytest.mark.parametrize("spot_x", [50, 270])
def test_follows_a_saturated_textured_spot(spot_x: int) -> None:
    narrow = Smartcrop().query([_scene(320, 200, spot_x)])[0].crops[-1]  # ratio 2: 100 px of 320
    assert narrow.left <= spot_x - 20 and spot_x + 20 <= narrow.right


def test_crop_only_and_the_point_is_the_crops_centre() -> None:
    target = Smartcrop()
    assert target.outputs == {Output.CROPS} and not target.gives_point
    output = target.query([_scene(320, 200, 270)])[0]
    narrow = output.crops[-1]
    assert output.salient_point[0] == pytest.approx(
        np.mean([c.left + c.width / 2 for c in output.crops if c.width < 320])
    )
    assert narrow.left < output.salient_point[0] < narrow.right


def test_settings_reach_the_scorer() -> None:
    image = sample_images()[0]
    plain = Smartcrop(aspect_ratios=(2.0,)).query([image])[0]
    no_edges = Smartcrop(aspect_ratios=(2.0,), settings={"detail_weight": 0.0, "saturation_weight": 0.0})
    assert no_edges._scorer.detail_weight == 0.0
    assert no_edges.query([image])[0].crops[0].height == plain.crops[0].height


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown smartcrop setting\(s\) \['skin'\]; known: .*skin_weight"):
        Smartcrop(settings={"skin": 1})
    with pytest.raises(ValueError, match="step"):
        Smartcrop(step=0)
    with pytest.raises(ConfigError, match="unknown smartcrop setting"):
        load("smartcrop", settings={"nosuch": 1})


def test_in_the_zoo() -> None:
    target = load("smartcrop", aspect_ratios=(0.56, 2.0))
    assert isinstance(target, Smartcrop)
    assert target.name == "smartcrop" and target.aspect_ratios == (0.56, 2.0)
