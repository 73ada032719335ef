"""``target=deepgaze`` on random fixture files in the exact published layouts (nothing is downloaded)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blackbox.attacks._gradients import grad_cam
from targets._deepgaze_checkpoint import CENTRE_BIAS_WEIGHT_KEY, READOUT_PREFIX, SIGMA_KEY
from targets._vgg import IMAGENET_MEAN, IMAGENET_STD, LAYER_INDEX, check_vgg19_state_dict, vgg19_layout
from targets.deepgaze import CENTRE_BIAS_FILE, VGG19_FILE, DeepGazeII
from targets.fixtures import random_readout_state_dict, random_vgg19_state_dict, write_deepgaze2_fixtures
from targets.testing import DifferentiableTargetConformance, sample_images
from targets.weights import BadModelFileError, MissingModelFileError
from tests.test_cli import FAST, blackbox


@pytest.fixture(scope="session")
def deepgaze_files(tmp_path_factory) -> dict[str, Path]:
    """Random VGG-19 (features, 80 MB) and readout files under their real names, written once."""
    return write_deepgaze2_fixtures(tmp_path_factory.mktemp("deepgaze_models"))


@pytest.fixture(scope="session")
def deepgaze(deepgaze_files) -> DeepGazeII:
    return DeepGazeII(weights=deepgaze_files["readout"], vgg_weights=deepgaze_files["vgg"])


@pytest.fixture
def no_models(tmp_path, monkeypatch) -> Path:
    """An empty models folder and user cache, downloads off."""
    monkeypatch.setenv("BLACKBOX_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("BLACKBOX_OFFLINE", "1")
    return tmp_path


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image[None]).permute(0, 3, 1, 2).contiguous()


class TestDeepGazeConformance(DifferentiableTargetConformance):
    @pytest.fixture
    def target(self, deepgaze) -> DeepGazeII:
        return deepgaze


# --- Loading: strict on torchvision's VGG-19 layout and deepgaze_pytorch's readout layout ---------------


def test_the_published_layout_is_torchvisions_vgg19() -> None:
    layout = vgg19_layout()
    assert len(layout) == 38 and sum(math.prod(s) for s in layout.values()) == 143_667_240
    assert layout["features.34.weight"] == (512, 512, 3, 3) and layout["classifier.0.weight"] == (4096, 25088)
    assert [LAYER_INDEX[n] for n in ("conv5_1", "relu5_1", "relu5_2", "conv5_3", "relu5_4")] == [
        28,
        29,
        31,
        32,
        35,
    ]


def test_full_file_with_classifier_is_accepted_and_the_classifier_dropped() -> None:
    state = {k: torch.empty(shape, device="meta") for k, shape in vgg19_layout().items()}
    features = check_vgg19_state_dict(state, source="full")
    assert len(features) == 32 and all(k.startswith("features.") for k in features)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.pop("features.34.weight"), r"missing keys: features\.34\.weight"),
        (
            lambda s: s.__setitem__("features.37.weight", torch.zeros(1)),
            r"unexpected keys: features\.37\.weight",
        ),
        (
            lambda s: s.__setitem__("features.0.weight", torch.zeros(64, 3, 5, 5)),
            r"wrong shapes: features\.0\.weight",
        ),
        (
            lambda s: s.__setitem__("classifier.6.weight", torch.zeros(10, 4096)),
            "missing keys: classifier.0.weight",
        ),
        (lambda s: s.__setitem__("module.features.0.weight", torch.zeros(1)), "unexpected keys: module"),
    ],
    ids=["missing", "unexpected", "shape", "partial classifier", "prefixed"],
)
def test_vgg_layout_is_checked_strictly(edit, match) -> None:
    state = {k: torch.empty(shape, device="meta") for k, shape in vgg19_layout(classifier=False).items()}
    edit(state)
    with pytest.raises(BadModelFileError, match=match):
        check_vgg19_state_dict(state, source="vgg.pth")


def test_vgg_file_loads_name_for_name(deepgaze, deepgaze_files) -> None:
    state = torch.load(deepgaze_files["vgg"], weights_only=True)
    for index in (0, 28, 34):
        torch.testing.assert_close(
            deepgaze.network.vgg.features[index].weight, state[f"features.{index}.weight"]
        )
    # Only what DeepGaze II reads is built: features up to relu5_4, no pool5, no classifier.
    assert len(deepgaze.network.vgg.features) == 36
    assert not any(p.requires_grad for p in deepgaze.network.parameters())


def test_a_bad_vgg_file_is_a_clear_error(deepgaze_files, tmp_path) -> None:
    state = random_vgg19_state_dict()
    del state["features.30.bias"]
    torch.save(state, tmp_path / "vgg.pth")
    with pytest.raises(BadModelFileError, match=r"features\.30\.bias"):
        DeepGazeII(weights=deepgaze_files["readout"], vgg_weights=tmp_path / "vgg.pth")


def test_checkpoint_with_the_backbone_saved_along_needs_no_vgg_file(
    deepgaze, deepgaze_files, no_models
) -> None:
    combined = DeepGazeII(weights=deepgaze_files["combined"])
    images = sample_images()[:2]
    for a, b in zip(combined.query(images), deepgaze.query(images), strict=True):
        np.testing.assert_allclose(a.log_density, b.log_density, atol=1e-6)


def test_deepgaze_pytorch_readout_with_layernorm_and_separate_biases(deepgaze_files, tmp_path) -> None:
    generator = torch.Generator().manual_seed(3)
    state = {SIGMA_KEY: torch.tensor(4.0), CENTRE_BIAS_WEIGHT_KEY: torch.tensor([0.5])}
    for i, (c_in, c_out) in enumerate([(2560, 8), (8, 16), (16, 1)]):
        state[f"{READOUT_PREFIX}layernorm{i}.weight"] = torch.rand(c_in, generator=generator) + 0.5
        state[f"{READOUT_PREFIX}layernorm{i}.bias"] = torch.randn(c_in, generator=generator)
        state[f"{READOUT_PREFIX}conv{i}.weight"] = (
            torch.randn(c_out, c_in, 1, 1, generator=generator) / c_in**0.5
        )
        state[f"{READOUT_PREFIX}bias{i}.bias"] = torch.randn(c_out, generator=generator)
    torch.save(state, tmp_path / "iie_style.pth")
    with pytest.raises(BadModelFileError, match=r"readout_channels=\[8, 16, 1\]"):
        DeepGazeII(weights=tmp_path / "iie_style.pth", vgg_weights=deepgaze_files["vgg"])
    target = DeepGazeII(
        weights=tmp_path / "iie_style.pth", vgg_weights=deepgaze_files["vgg"], readout_channels=None
    )
    names = [name for name, _ in target.network.readout_network.named_children()]
    assert names[:4] == ["layernorm0", "conv0", "bias0", "softplus0"] and names[-1] == "bias2"
    output = target.query([sample_images()[0]])[0]
    assert np.isfinite(output.log_density).all()


def _save(tmp_path: Path, state: dict) -> Path:
    path = tmp_path / "checkpoint.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: {"models.0.saliency_networks.0.conv0.weight": torch.zeros(8, 2048, 1, 1)}, "DeepGaze IIE"),
        (
            lambda: {
                "features.features.1.features.0.weight": torch.zeros(1),
                "features.features.1.classifier.1.weight": torch.zeros(1),
                "readout_network.conv0.weight": torch.zeros(1, 256, 1, 1),
            },
            "DeepGaze I ",
        ),
        (lambda: {"saliency_network.conv0.weight": torch.zeros(8, 2048, 1, 1)}, "DeepGaze III"),
        (
            lambda: {k: v for k, v in random_readout_state_dict().items() if k != SIGMA_KEY},
            "missing finalizer",
        ),
        (lambda: {**random_readout_state_dict(), "extra.weight": torch.zeros(1)}, "unexpected keys extra"),
        (lambda: random_readout_state_dict(in_channels=512), "takes 512 input channels"),
        (lambda: random_readout_state_dict(channels=(16, 32, 2)), "must end in 1 channel"),
        (lambda: {**random_readout_state_dict(), SIGMA_KEY: torch.tensor(-1.0)}, "must be positive"),
        (
            lambda: {
                **random_readout_state_dict(),
                "readout_network.conv1.weight": torch.zeros(32, 15, 1, 1),
            },
            "takes 15 channels but block 0 gives 16",
        ),
        (lambda: {"not": "tensors"}, "expected a state dict"),
    ],
    ids=[
        "iie",
        "deepgaze1",
        "deepgaze3",
        "no sigma",
        "unexpected",
        "not vgg",
        "no 1 channel",
        "sigma",
        "chain",
        "junk",
    ],
)
def test_bad_readout_checkpoints_are_clear_errors(tmp_path, deepgaze_files, make, match) -> None:
    with pytest.raises(BadModelFileError, match=match):
        DeepGazeII(weights=_save(tmp_path, make()), vgg_weights=deepgaze_files["vgg"])


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, deepgaze_files) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(BadModelFileError, match="not a readable torch checkpoint"):
        DeepGazeII(weights=tmp_path / "junk.pth", vgg_weights=deepgaze_files["vgg"])


# --- Missing files: one error that names each file, its URL and where it goes ------------------------------


def test_missing_files_are_one_error_listing_each(no_models) -> None:
    with pytest.raises(MissingModelFileError) as raised:
        DeepGazeII(centre_bias="mit1003")
    message = str(raised.value)
    assert message.startswith("3 model file(s) missing")
    for expected in (
        "deepgaze2_readout.pth: not found; no public download; or pass its path as target.weights=PATH",
        f"vgg19-dcbb9e9d.pth: not found; public URL {VGG19_FILE.url}; or pass its path as target.vgg_weights",
        f"centerbias_mit1003.npy: not found; public URL {CENTRE_BIAS_FILE.url}",
        str(no_models / "models"),
        str(no_models / "cache" / "blackbox" / "models"),
        "BLACKBOX_OFFLINE",
    ):
        assert expected in message


def test_only_the_missing_file_is_listed(no_models, deepgaze_files) -> None:
    with pytest.raises(MissingModelFileError, match=r"^1 model file\(s\) missing") as raised:
        DeepGazeII(weights=deepgaze_files["readout"])
    assert "vgg19-dcbb9e9d.pth" in str(raised.value) and "deepgaze2_readout" not in str(raised.value)


def test_a_wrong_explicit_path_says_so(no_models) -> None:
    with pytest.raises(MissingModelFileError, match=r"no file at the given path /nowhere/readout\.pth"):
        DeepGazeII(weights="/nowhere/readout.pth")


def test_files_are_found_by_name_in_the_models_folder(deepgaze_files, monkeypatch) -> None:
    monkeypatch.setenv("BLACKBOX_MODELS", str(deepgaze_files["vgg"].parent))
    monkeypatch.setenv("BLACKBOX_OFFLINE", "1")
    target = DeepGazeII()
    assert target.query([sample_images()[0]])[0].log_density.shape == (96, 128)


# --- The model: shapes, normalisation, gradients, centre bias -----------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(96, 128), (80, 112), (99, 131), (32, 32)])
def test_shapes(deepgaze, height, width) -> None:
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = deepgaze.network.features(images)
        log_density = deepgaze.log_density(images)
    grid = (math.ceil((height // 2) / 16), math.ceil((width // 2) / 16))
    assert features.shape == (2, 2560, *grid)
    assert log_density.shape == (2, height, width)
    totals = torch.logsumexp(log_density.double().flatten(1), dim=1)
    torch.testing.assert_close(totals, torch.zeros(2, dtype=torch.float64), atol=1e-5, rtol=0)


def test_vgg_sees_the_halved_imagenet_normalised_image(deepgaze) -> None:
    image = as_tensor(sample_images()[0])
    seen = []
    handle = deepgaze.network.vgg.features[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            deepgaze.log_density(image)
    finally:
        handle.remove()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (F.avg_pool2d(image, 2) - mean) / std
    assert seen[0].shape == (1, 3, 48, 64)
    torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=0)


def test_gradient_matches_finite_differences(deepgaze) -> None:
    model = copy.deepcopy(deepgaze)
    model.network.double()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 64, 64, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    direction = torch.randn(image.shape, generator=generator, dtype=torch.float64)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return model.log_density(x)[0, :20, :20].logsumexp(dim=(0, 1))

    x = image.clone().requires_grad_()
    (gradient,) = torch.autograd.grad(loss(x), x)
    # ReLUs and max-pools are piecewise linear: a step must be small enough to cross no kink (at 1e-5
    # a few of VGG's 300k units do, and the quotient is off by 1%); float64 keeps 1e-7 exact enough.
    step = 1e-7
    with torch.no_grad():
        numeric = (loss(image + step * direction) - loss(image - step * direction)) / (2 * step)
    analytic = (gradient * direction).sum()
    assert analytic.abs() > 1e-6
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-9)


def test_area_downsampling_gives_every_pixel_a_gradient(deepgaze_files) -> None:
    # deepgaze_pytorch halves by nearest neighbour: three pixels in four then have no influence at all.
    image = as_tensor(sample_images()[0])
    for mode, fraction in (("area", 1.0), ("nearest", 0.25)):
        target = DeepGazeII(weights=deepgaze_files["combined"], downsample=mode)
        x = image.clone().requires_grad_()
        target.log_density(x)[0, :, :32].logsumexp(dim=(0, 1)).backward()
        assert x.grad is not None
        assert (x.grad.abs().sum(dim=1) > 0).float().mean().item() == pytest.approx(fraction, abs=0.02)


def test_feature_layer_is_the_readout_input_and_serves_gradcam(deepgaze) -> None:
    captured = []
    handle = deepgaze.feature_layer().register_forward_hook(lambda _m, _i, out: captured.append(out))
    image = as_tensor(sample_images()[0])
    try:
        with torch.no_grad():
            deepgaze.log_density(image)
    finally:
        handle.remove()
    assert captured[0].shape == (1, 2560, 3, 4)
    mask = torch.zeros(96, 128, dtype=torch.bool)
    mask[:, :32] = True
    cam = grad_cam(deepgaze, image, mask, temperature=0.1)
    assert cam.shape == (1, 1, 96, 128) and cam.min() >= 0 and cam.max() <= 1


def test_mit1003_centre_bias_file_is_used(deepgaze_files, tmp_path) -> None:
    yy, xx = np.mgrid[0:1024, 0:1024]
    # A sharp peak in the top-left quarter: with the weak random readout, the map's maximum follows it.
    template = -((yy - 256.0) ** 2 + (xx - 256.0) ** 2) / (2 * 60.0**2)
    np.save(tmp_path / "centerbias_mit1003.npy", template - np.log(np.exp(template).sum()))
    target = DeepGazeII(weights=deepgaze_files["combined"], centre_bias=tmp_path / "centerbias_mit1003.npy")
    assert target.centre_bias_source == str(tmp_path / "centerbias_mit1003.npy")
    x, y = target.query([sample_images()[0]])[0].salient_point
    assert abs(x - 32) <= 6 and abs(y - 24) <= 6  # (256/1024) of 128 x 96


def test_default_centre_bias_is_the_documented_prior(deepgaze) -> None:
    assert deepgaze.centre_bias_source == "prior"
    flat = np.full((96, 128, 3), 0.5, dtype=np.float32)
    x, y = deepgaze.query([flat])[0].salient_point
    assert abs(x - 64) <= 4 and abs(y - 48) <= 4


def test_bad_centre_bias_file_is_a_clear_error(deepgaze_files, tmp_path) -> None:
    np.save(tmp_path / "cb.npy", np.zeros((4, 4, 3)))
    with pytest.raises(BadModelFileError, match="2-D float log-density"):
        DeepGazeII(weights=deepgaze_files["combined"], centre_bias=tmp_path / "cb.npy")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"downsample": "cubic"}, "downsample must be one of area, nearest, bilinear"),
        ({"activation": "tanh"}, "activation must be one of softplus, relu"),
        ({"centre_bias_sigma": 0.0}, "centre_bias_sigma"),
        ({"aspect_ratios": ()}, "aspect_ratios"),
    ],
)
def test_bad_settings_are_clear_errors_before_any_file_is_looked_for(no_models, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        DeepGazeII(**kwargs)


# --- End to end: python -m blackbox target=deepgaze -------------------------------------------------------


def test_cli_runs_with_fixture_weights_given_by_path(tmp_path, deepgaze_files) -> None:
    done = blackbox(
        tmp_path,
        *FAST,
        "target=deepgaze",
        f"target.weights={deepgaze_files['combined']}",
        "budget=20",
        "batch_size=4",
        "dataset.names=[chelsea]",
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    assert record["target"] == "deepgaze" and record["image"] == "chelsea"
    assert 1 <= record["queries"] <= 20 and record["l2"] <= 20.0 + 1e-9


def test_cli_without_model_files_fails_clearly(tmp_path) -> None:
    env = {"BLACKBOX_MODELS": str(tmp_path / "models"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = blackbox(tmp_path, *FAST, "target=deepgaze", "dataset.names=[chelsea]", env=env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "error: 2 model file(s) missing" in done.stderr
    assert "deepgaze2_readout.pth" in done.stderr and VGG19_FILE.url in done.stderr  # type: ignore[operator]
