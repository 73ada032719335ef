"""``target=twitter``: FastGaze from the shared ``fastgaze.vxm`` (tests never download)."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from targets._fastgaze import AlphaActivation, GridInput, grid_salient_point
from targets.testing import DifferentiableTargetConformance
from targets.twitter import FASTGAZE, TwitterSaliency
from targets.vxm import ConvLayer, PoolLayer, VxmFormatError, encode_records, read_records, read_vxm
from targets.weights import MissingModelFileError
from tests.conftest import SHARED_MODELS
from tests.test_cli import blackbox

WEIGHTS = SHARED_MODELS / "fastgaze.vxm"
pytestmark = pytest.mark.skipif(
    not WEIGHTS.is_file(), reason=f"{WEIGHTS} is absent (the shared models folder holds fastgaze.vxm)"
)


@pytest.fixture(scope="module")
def twitter() -> TwitterSaliency:
    return TwitterSaliency(weights=WEIGHTS)


class TestTwitterConformance(DifferentiableTargetConformance):
    @pytest.fixture
    def target(self, twitter: TwitterSaliency) -> TwitterSaliency:
        return twitter


def reference_grid(image: np.ndarray, *, blur: bool = False) -> np.ndarray:
    """The network written out layer by layer from the file's arrays, independently of FastGazeNet.

    As Twitter's binary ran it: long side to 320 px, short side in proportion, plain bilinear; pools
    that keep a partial last window; no blur unless ``blur``.
    """
    model = read_vxm(WEIGHTS)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    height, width = image.shape[:2]
    scale = 320 / max(height, width)
    x = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bilinear")
    x = x * 255 - torch.tensor([123.68, 116.779, 103.939], dtype=torch.float64).view(1, 3, 1, 1)
    for layer in model.layers:
        if isinstance(layer, PoolLayer):
            x = F.max_pool2d(x, 2, ceil_mode=True)
        elif isinstance(layer, ConvLayer):
            weight, bias = torch.from_numpy(layer.weight).double(), torch.from_numpy(layer.bias).double()
            x = F.conv2d(x, weight, bias, padding=layer.kernel_size // 2)
            x = F.relu(x) if layer.activation == "relu" else torch.where(x > 0, x, layer.alpha * x)
    if not blur:
        logits = x[0, 0]
        return (logits - torch.logsumexp(logits.flatten(), 0)).numpy()
    radius = 9
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / 3.0) ** 2)
    taps /= taps.sum()
    pad_x, pad_y = min(radius, x.shape[-1] - 1), min(radius, x.shape[-2] - 1)
    kx = taps[radius - pad_x : radius + pad_x + 1]
    ky = taps[radius - pad_y : radius + pad_y + 1]
    x = F.conv2d(F.pad(x, (pad_x, pad_x, 0, 0), mode="replicate"), (kx / kx.sum()).view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, pad_y, pad_y), mode="replicate"), (ky / ky.sum()).view(1, 1, -1, 1))
    logits = x[0, 0]
    return (logits - torch.logsumexp(logits.flatten(), 0)).numpy()


def test_network_matches_the_file_layer_by_layer(twitter: TwitterSaliency, photo: np.ndarray) -> None:
    image = photo.astype(np.float32) / 255
    with torch.no_grad():
        grid = twitter.grid_log_density(torch.from_numpy(image).permute(2, 0, 1)[None])[0].double().numpy()
    np.testing.assert_allclose(grid, reference_grid(image), atol=2e-4)


def test_blur_setting_is_the_files_declared_blur(photo: np.ndarray) -> None:
    image = photo.astype(np.float32) / 255
    blurred = TwitterSaliency(weights=WEIGHTS, blur=True)
    with torch.no_grad():
        grid = blurred.grid_log_density(torch.from_numpy(image).permute(2, 0, 1)[None])[0].double().numpy()
    np.testing.assert_allclose(grid, reference_grid(image, blur=True), atol=2e-4)
    assert not np.allclose(grid, reference_grid(image), atol=1e-2)


def test_structure_follows_the_file(twitter: TwitterSaliency) -> None:
    convs = [m for m in twitter.net.trunk if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [43, 44, 49, 56, 44, 38, 31, 20, 18, 10]
    alphas = [m for m in twitter.net.readout if isinstance(m, AlphaActivation)]
    assert [round(float(a.alpha), 4) for a in alphas] == [0.2747, 0.2713, 0.3741, 0.3894]
    assert twitter.net.stride == 16 and twitter.net.blur_kernel_size == 19 and twitter.net.blur_sigma == 3.0
    assert isinstance(twitter.feature_layer(), torch.nn.ReLU)
    assert not any(p.requires_grad for p in twitter.net.parameters())


def test_feature_layer_is_the_trunks_output(twitter: TwitterSaliency) -> None:
    captured = []
    handle = twitter.feature_layer().register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            twitter.log_density(torch.rand(1, 3, 96, 128))
    finally:
        handle.remove()
    assert captured[0].shape == (1, 10, 15, 20)


@pytest.mark.parametrize(
    ("height", "width", "grid"),
    [
        (480, 640, (15, 20)),
        (640, 480, (20, 15)),
        (300, 451, (14, 20)),  # 213 px: 13 whole cells and a partial one
        (851, 1034, (17, 20)),  # Twitter's sample image: the binary printed 17 x 20
        (100, 1000, (2, 20)),
        (40, 900, (1, 20)),
    ],
)
def test_grid_geometry(height: int, width: int, grid: tuple[int, int]) -> None:
    assert GridInput(grid_cells=20).grid_size(height, width) == grid
    with torch.no_grad():
        net_input = GridInput(grid_cells=20)(torch.zeros(1, 3, height, width))
    assert net_input.shape[-2:] == GridInput(grid_cells=20).input_size(height, width)
    assert max(net_input.shape[-2:]) == 320


def test_salient_point_is_the_argmax_cell_centre(twitter: TwitterSaliency, photo: np.ndarray) -> None:
    image = photo.astype(np.float32) / 255
    output = twitter.query([image])[0]
    with torch.no_grad():
        grid = twitter.grid_log_density(torch.from_numpy(image).permute(2, 0, 1)[None])[0].numpy()
    row, column = np.unravel_index(int(grid.argmax()), grid.shape)
    height, width = image.shape[:2]
    assert output.salient_point == pytest.approx(
        ((column + 0.5) * width / grid.shape[1], (row + 0.5) * height / grid.shape[0])
    )
    assert grid_salient_point(np.zeros((2, 4)), 100, 200) == (25.0, 25.0)  # ties: the first cell


def test_cat_photo_puts_the_point_on_the_cat_face(twitter: TwitterSaliency) -> None:
    import skimage.data

    image = skimage.data.chelsea().astype(np.float32) / 255  # 451x300, the face fills the middle
    x, y = twitter.query([image])[0].salient_point
    assert 0.25 * 451 < x < 0.75 * 451 and 0.2 * 300 < y < 0.95 * 300


def test_gradient_matches_finite_differences() -> None:
    target = TwitterSaliency(weights=WEIGHTS, grid_cells=4)  # a 64 px input keeps float64 cheap
    target.net.double()
    image = (
        torch.rand(1, 3, 48, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    )
    weights = torch.linspace(-1, 1, 48 * 64, dtype=torch.float64).view(1, 48, 64)

    def objective(x: torch.Tensor) -> torch.Tensor:
        return (target.log_density(x) * weights).sum()

    tensor = image.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(objective(tensor), tensor)
    rng = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = torch.randn(image.shape, dtype=torch.float64, generator=rng)
        step = 1e-8  # small: ReLU and max-pool kinks must not fall inside the step
        with torch.no_grad():
            numeric = (objective(image + step * direction) - objective(image - step * direction)) / (2 * step)
        assert float(numeric) == pytest.approx(float((gradient * direction).sum()), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize(
    "settings",
    [
        {"channel_order": "grb"},
        {"grid_cells": 0},
        {"mean": [1.0, 2.0]},
        {"alpha_activation": "tanh"},
        {"pool": "median"},
        {"resize": "lanczos"},
        {"value_scale": 0.0},
        {"aspect_ratios": [0.0]},
    ],
)
def test_bad_settings_are_clear_errors(settings: dict) -> None:
    with pytest.raises(ValueError):
        TwitterSaliency(weights=WEIGHTS, **settings)


def test_missing_file_offline_names_url_variable_and_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BLACKBOX_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BLACKBOX_OFFLINE", "1")
    with pytest.raises(MissingModelFileError) as caught:
        TwitterSaliency()
    message = str(caught.value)
    assert FASTGAZE.url is not None and FASTGAZE.url in message
    assert "BLACKBOX_MODELS" in message and str(tmp_path / "cache" / "blackbox" / "models") in message
    with pytest.raises(MissingModelFileError, match="no file at the given path"):
        TwitterSaliency(weights=tmp_path / "nope.vxm")


def test_models_directory_and_cache_are_used(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache" / "blackbox" / "models"
    cache.mkdir(parents=True)
    shutil.copy(WEIGHTS, cache / "fastgaze.vxm")
    monkeypatch.setenv("BLACKBOX_MODELS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert TwitterSaliency().weights_path == cache / "fastgaze.vxm"
    monkeypatch.setenv("BLACKBOX_MODELS", str(SHARED_MODELS))
    assert TwitterSaliency().weights_path == WEIGHTS


def test_corrupt_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "fastgaze.vxm"
    path.write_bytes(WEIGHTS.read_bytes()[:-100])
    with pytest.raises(VxmFormatError, match="truncated"):
        TwitterSaliency(weights=path)


def test_a_modified_file_warns(tmp_path) -> None:
    records = read_records(WEIGHTS.read_bytes())
    weight = bytearray(records["4w"])
    weight[0] ^= 1  # the lowest mantissa bit of one weight: still a valid file
    path = tmp_path / "changed.vxm"
    path.write_bytes(encode_records({**records, "4w": bytes(weight)}))
    with pytest.warns(UserWarning, match="not the released fastgaze.vxm"):
        TwitterSaliency(weights=path)
    assert struct.unpack("<f", bytes(weight[:4]))[0] != struct.unpack("<f", records["4w"][:4])[0]


def test_same_photo_other_channel_order_differs(twitter: TwitterSaliency, photo: np.ndarray) -> None:
    image = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)[None]
    bgr = TwitterSaliency(weights=WEIGHTS, channel_order="bgr")
    with torch.no_grad():
        assert not torch.allclose(twitter.log_density(image), bgr.log_density(image), atol=1e-3)
    # The mean is given per R, G, B of the image; the order only changes what the first layer sees.
    mean = [100.0, 110.0, 120.0]
    rgb = TwitterSaliency(weights=WEIGHTS, mean=mean)
    bgr = TwitterSaliency(weights=WEIGHTS, mean=mean[::-1], channel_order="bgr")
    with torch.no_grad():
        swapped = image.flip(1)  # BGR pixels into the BGR model = RGB pixels into the RGB model
        torch.testing.assert_close(bgr.log_density(swapped), rgb.log_density(image), atol=1e-4, rtol=0)


def test_attack_runs_end_to_end(tmp_path) -> None:
    done = blackbox(tmp_path, "target=twitter", "budget=8", "progress=false", "dataset.names=[chelsea]")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    assert record["target"] == "twitter" and record["image"] == "chelsea" and record["queries"] <= 8
    assert (tmp_path / "run" / "side_by_side" / "chelsea.png").exists()


def test_white_box_attack_runs_end_to_end(tmp_path) -> None:
    done = blackbox(
        tmp_path, "target=twitter", "attack=iterative_fgm", "progress=false", "dataset.names=[rocket]"
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    assert record["target"] == "twitter" and record["l2"] <= 20.0 + 1e-6


def test_cli_missing_weights_is_one_clear_line(tmp_path) -> None:
    done = blackbox(tmp_path, "target=twitter", f"target.weights={tmp_path / 'absent.vxm'}")
    assert done.returncode == 2
    assert "no file at the given path" in done.stderr and "Traceback" not in done.stderr


def test_cli_corrupt_weights_is_one_clear_line(tmp_path) -> None:
    path = tmp_path / "broken.vxm"
    path.write_bytes(b"\x01tPM" + bytes(20))
    done = blackbox(tmp_path, "target=twitter", f"target.weights={path}")
    assert done.returncode == 2
    assert "broken.vxm" in done.stderr and "Traceback" not in done.stderr
