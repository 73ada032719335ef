"""``python -m blackbox.distill student=deepgaze``: DeepGaze II's readout trained on fixture weights.

A random VGG-19 in torchvision's exact key layout stands in for the ImageNet one (nothing is
downloaded), tiny images, a few steps; the fixation set is made here in pysaliency's own cache
layout, so pysaliency's real loader reads it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

# pysaliency (the extra "distill", which pins numpy<2): run by `make test-distill`, skipped in the core.
pytest.importorskip("pysaliency", reason="needs the extra distill (make test-distill runs it)")
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

import blackbox.training.data as data_module
import blackbox.training.distill_deepgaze as deepgaze_module
import blackbox.training.fixations as fixations_module
from blackbox.core.images import ImageLoadError
from blackbox.evaluate.fidelity import fidelity
from blackbox.settings.checks import ConfigError
from blackbox.training.deepgaze_checkpoint import CHECKPOINT_FORMAT
from blackbox.training.deepgaze_student import initial_readout_state
from blackbox.training.distill import distill
from blackbox.training.fixations import fixation_metrics, load_fixation_data, scaled, split_fixation_data
from blackbox.training.losses import fixation_nll, teacher_loss
from targets import load
from targets._deepgaze_checkpoint import SIGMA_KEY, load_state_dict_file
from targets._functional import gaussian_blur
from targets.classic import ClassicSaliency
from targets.deepgaze import READOUT_FILE, VGG19_FILE, DeepGazeII
from targets.fixtures import random_vgg19_state_dict
from targets.weights import MissingModelFileError
from tests.conftest import REPO, SHARED_MODELS
from tests.test_cli import FAST, blackbox

TINY = [
    "student=deepgaze",
    "teacher=classic",
    "steps=6",
    "batch_size=2",
    "image_size=64",
    "eval_width=64",
    "fixations=20",
    "checkpoint_every=2",
    "lr=0.01",
    "progress=false",
]


@pytest.fixture(scope="module")
def vgg(tmp_path_factory) -> Path:
    """Random VGG-19 features (80 MB) under torchvision's file name, written once."""
    path = tmp_path_factory.mktemp("vgg") / VGG19_FILE.filename
    torch.save(random_vgg19_state_dict(seed=0), path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five small real photos (scikit-image's) in a folder."""
    import skimage.data

    root = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((96, 72))
        image.save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def mit1003(tmp_path_factory) -> Path:
    """A pysaliency location holding a tiny 'MIT1003', as pysaliency caches a dataset: 8 dimmed photos
    (96x72 and 72x96), each with a white square somewhere, and 12 fixations (3 scanpaths, seeded) on it:
    something a readout can learn even from random features."""
    import pysaliency
    import skimage.data

    location = tmp_path_factory.mktemp("pysaliency")
    prepared = location / "MIT1003"
    (prepared / "stimuli").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ("astronaut", "chelsea", "coffee", "rocket", "camera", "cat", "hubble_deep_field", "coins")
    files, xs, ys, ts, ns, subjects = [], [], [], [], [], []
    for n, name in enumerate(names):
        width, height = (96, 72) if n % 3 else (72, 96)
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((width, height))
        pixels = np.asarray(photo) // 3
        left, top = int(rng.integers(4, width - 20)), int(rng.integers(4, height - 20))
        pixels[top : top + 16, left : left + 16] = 255
        path = prepared / "stimuli" / f"{name}.png"
        Image.fromarray(pixels).save(path)
        files.append(str(path))
        for subject in range(3):  # scanpaths of 4 fixations, as MIT1003's cache holds FixationTrains
            xs.append(np.clip(rng.normal(left + 8, 3, 4), 0, width - 1))
            ys.append(np.clip(rng.normal(top + 8, 3, 4), 0, height - 1))
            ts.append(np.arange(4.0))
            ns.append(n)
            subjects.append(subject)
    pysaliency.FileStimuli(files).to_hdf5(str(prepared / "stimuli.hdf5"))
    fixations = pysaliency.FixationTrains.from_fixation_trains(xs, ys, ts, ns, subjects)
    fixations.to_hdf5(str(prepared / "fixations.hdf5"))
    return location


def config(folder: Path, vgg: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(
            config_name="distill",
            overrides=[*TINY, f"images={folder}", f"student.vgg_weights={vgg}", *overrides],
        )


def readout(path: Path) -> dict[str, torch.Tensor]:
    return dict(load_state_dict_file(path))


# --- From a teacher's maps ---------------------------------------------------------------------------------


def test_teacher_run_lowers_the_loss_and_round_trips_into_target_deepgaze(tmp_path, folder, vgg) -> None:
    summary = distill(config(folder, vgg, "steps=12"), tmp_path)
    assert summary.step == 12 and all(math.isfinite(x) for x in summary.losses)
    assert summary.initial is not None and summary.final is not None
    saved = readout(tmp_path / READOUT_FILE.filename)
    untrained = initial_readout_state(seed=0)
    # Training lowers the loss: on the crops it trained on, the trained readout is nearer the teacher.
    images = data_module.load_images(str(folder))
    train, held_images = data_module.split(images, 0.25, 0)
    augment = {"scale": [0.35, 1.0], "flip": True, "jitter": 0.1}  # conf/distill.yaml's
    batches = [
        data_module.augment_batch(train, np.random.default_rng([0, step]), size=64, batch=2, augment=augment)
        for step in range(12)
    ]
    teacher = ClassicSaliency()
    losses = []
    for state in (untrained, saved):
        student = DeepGazeII(weights=state, vgg_weights=vgg)
        with torch.no_grad():
            losses.append(sum(teacher_loss(student, teacher, b, point_sigma=1.0).item() for b in batches))
    assert losses[1] < 0.9 * losses[0], losses
    assert set(saved) == set(untrained)
    assert not torch.equal(saved["readout_network.conv0.weight"], untrained["readout_network.conv0.weight"])
    assert float(saved[SIGMA_KEY]) != float(untrained[SIGMA_KEY])  # σ is learned too
    # The file loads as target=deepgaze (by path, and last.pt too), and gives what was measured in training.
    target = load(
        "deepgaze",
        aspect_ratios=(0.56, 1.0, 1.14, 2.0),
        weights=str(tmp_path / READOUT_FILE.filename),
        vgg_weights=str(vgg),
    )
    assert isinstance(target, DeepGazeII)
    for key, tensor in target.network.readout_state_dict().items():
        torch.testing.assert_close(tensor, saved[key], rtol=0, atol=0, msg=key)
    from_last = DeepGazeII(weights=tmp_path / "last.pt", vgg_weights=vgg)
    images = data_module.evaluation_images(held_images, 64)
    mean, _ = fidelity(teacher, target, images, fixations=20, seed=0)
    assert mean["kl_div"] == pytest.approx(summary.final["kl_div"], rel=1e-5)
    np.testing.assert_array_equal(target.query(images)[0].log_density, from_last.query(images)[0].log_density)
    assert json.loads((tmp_path / "fidelity_initial.json").read_text())["step"] == 0
    assert "| classic | deepgaze (distilled) |" in (tmp_path / "summary.md").read_text()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 12
    assert state["metadata"]["source"] == "teacher classic"


@pytest.mark.skipif(
    not (SHARED_MODELS / "fastgaze.vxm").is_file(), reason="the shared models folder lacks fastgaze.vxm"
)
def test_twitter_is_a_teacher(tmp_path, folder, vgg, monkeypatch) -> None:
    monkeypatch.setenv("BLACKBOX_MODELS", str(SHARED_MODELS))  # fastgaze.vxm found by name
    overrides = ("teacher=twitter", "steps=2")
    summary = distill(config(folder, vgg, *overrides), tmp_path)
    assert summary.step == 2 and all(math.isfinite(x) for x in summary.losses)
    assert summary.final is not None and summary.final["kl_div"] > 0 and -1 <= summary.final["cc"] <= 1
    assert "| twitter | deepgaze (distilled) |" in (tmp_path / "summary.md").read_text()


def test_interrupted_teacher_run_resumes_to_the_same_weights(tmp_path, folder, vgg, monkeypatch) -> None:
    distill(config(folder, vgg), tmp_path / "straight")
    real_augment = deepgaze_module.augment_batch
    calls = {"n": 0}

    def interrupt_at_fourth_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_augment(*args, **kwargs)

    monkeypatch.setattr(deepgaze_module, "augment_batch", interrupt_at_fourth_step)
    first = distill(config(folder, vgg), tmp_path / "resumed")
    assert first.interrupted and first.step == 3
    monkeypatch.setattr(deepgaze_module, "augment_batch", real_augment)
    second = distill(config(folder, vgg), tmp_path / "resumed")
    assert second.resumed_from == 3 and second.step == 6 and not second.interrupted
    straight = readout(tmp_path / "straight" / READOUT_FILE.filename)
    for key, tensor in readout(tmp_path / "resumed" / READOUT_FILE.filename).items():
        torch.testing.assert_close(tensor, straight[key], msg=key)
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ConfigError, match="image_size"):
        distill(config(folder, vgg, "steps=7", "image_size=80"), tmp_path / "resumed")


# --- From fixations, through pysaliency -------------------------------------------------------------------


def test_fixation_run_learns_and_measures_pysaliency_metrics_on_the_held_out_split(
    tmp_path, folder, vgg, mit1003
) -> None:
    overrides = ("fixation_data=mit1003", f"fixation_location={mit1003}", "steps=20", "image_size=128")
    summary = distill(config(folder, vgg, *overrides), tmp_path)
    assert summary.initial is not None and summary.final is not None
    assert len(summary.held_out_ids) == 2 and len(summary.train_ids) == 6
    assert not set(summary.held_out_ids) & set(summary.train_ids)
    # Measured on the held-out stimuli's fixations only: 2 stimuli of 12.
    assert summary.final["fixations"] == 24 and summary.final["stimuli"] == 2
    assert 0 <= summary.final["auc"] <= 1 and math.isfinite(summary.final["nss"])
    stimuli, fixations = load_fixation_data("mit1003", str(mit1003))
    train_stimuli, train_fixations, held_stimuli, held_fixations, held = split_fixation_data(
        stimuli, fixations, 0.25, 0
    )
    assert [Path(stimuli.filenames[i]).name for i in held] == summary.held_out_ids
    # Training lowers the loss (the fixations' negative log-likelihood: information gain up), on the
    # training stimuli and on the held-out ones.
    trained = DeepGazeII(weights=tmp_path / READOUT_FILE.filename, vgg_weights=vgg)
    untrained = DeepGazeII(weights=initial_readout_state(seed=0), vgg_weights=vgg)
    gains = [
        fixation_metrics(model, train_stimuli, train_fixations, size=128)["information_gain"]
        for model in (untrained, trained)
    ]
    assert gains[1] > gains[0] + 0.5, gains
    assert summary.final["information_gain"] > summary.initial["information_gain"] + 0.5
    # Recomputed independently with pysaliency on the held-out split, from the file target=deepgaze loads.
    again = fixation_metrics(trained, held_stimuli, held_fixations, size=128)
    for key in ("information_gain", "auc", "nss"):
        assert again[key] == pytest.approx(summary.final[key], rel=1e-6), key
    table = (tmp_path / "summary.md").read_text()
    assert "| mit1003 (trained) | 6 / 2 | 20 |" in table


def test_interrupted_fixation_run_resumes_to_the_same_weights(
    tmp_path, folder, vgg, mit1003, monkeypatch
) -> None:
    overrides = ("fixation_data=mit1003", f"fixation_location={mit1003}", "steps=4")
    distill(config(folder, vgg, *overrides), tmp_path / "straight")
    real_scaled = fixations_module.scaled
    calls = {"n": 0}

    def interrupt_in_third_step(*args, **kwargs):
        # 2 calls for the initial evaluation (2 held-out stimuli), then 2 per step (batch_size=2).
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real_scaled(*args, **kwargs)

    monkeypatch.setattr(fixations_module, "scaled", interrupt_in_third_step)
    first = distill(config(folder, vgg, *overrides), tmp_path / "resumed")
    assert first.interrupted and first.step == 2
    monkeypatch.setattr(fixations_module, "scaled", real_scaled)
    second = distill(config(folder, vgg, *overrides), tmp_path / "resumed")
    assert second.resumed_from == 2 and second.step == 4
    straight = readout(tmp_path / "straight" / READOUT_FILE.filename)
    for key, tensor in readout(tmp_path / "resumed" / READOUT_FILE.filename).items():
        torch.testing.assert_close(tensor, straight[key], msg=key)
    # A teacher run cannot be resumed from this folder: the data differ.
    with pytest.raises(ConfigError, match="fixation_data"):
        distill(config(folder, vgg, "steps=4"), tmp_path / "resumed")


def test_a_folder_of_pysaliency_files_is_fixation_data(tmp_path, mit1003) -> None:
    stimuli, fixations = load_fixation_data(str(mit1003 / "MIT1003"), None)
    assert len(stimuli) == 8 and len(fixations.x) == 96


def test_missing_fixation_cache_says_how_to_prepare_it_and_downloads_nothing(tmp_path, folder, vgg) -> None:
    with pytest.raises(ImageLoadError, match=r"pysaliency\.get_mit1003\(location=") as raised:
        distill(
            config(folder, vgg, "fixation_data=mit1003", f"fixation_location={tmp_path / 'data'}"),
            tmp_path / "run",
        )
    assert "stimuli.hdf5" in str(raised.value) and not (tmp_path / "data").exists()
    with pytest.raises(ImageLoadError, match="neither mit1003 nor cat2000"):
        load_fixation_data(str(tmp_path), None)
    with pytest.raises(ConfigError, match="fixation_location"):
        load_fixation_data("cat2000", None)


def test_fixation_data_needs_the_deepgaze_student(tmp_path, folder, vgg) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="distill", overrides=["fixation_data=mit1003"])
    with pytest.raises(ConfigError, match="student=deepgaze"):
        distill(cfg, tmp_path)


def test_missing_vgg_file_is_named_with_its_url(tmp_path, folder, monkeypatch) -> None:
    monkeypatch.setenv("BLACKBOX_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="distill", overrides=[*TINY, f"images={folder}"])
    with pytest.raises(MissingModelFileError, match=r"vgg19-dcbb9e9d\.pth: not found; public URL"):
        distill(cfg, tmp_path / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_device_settings_are_checked(tmp_path, folder, vgg) -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU; use device=cpu"):
        distill(config(folder, vgg, "device=cuda"), tmp_path / "gpu")
    with pytest.raises(ConfigError, match="device must be cpu, cuda, cuda:N or auto"):
        distill(config(folder, vgg, "device=tpu"), tmp_path / "tpu")


def test_stimuli_are_scaled_to_rgb_and_the_loss_is_relative_to_uniform() -> None:
    gray = np.tile(np.arange(200, dtype=np.uint8)[None, :], (100, 1))  # MIT1003 has grayscale stimuli
    image = scaled(gray, 64)
    assert image.shape == (32, 64, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    with pytest.raises(ImageLoadError, match=r"\(H, W\) or \(H, W, 3\)"):
        scaled(np.zeros((4, 4, 2), np.uint8), 64)
    uniform = torch.full((4, 5), -math.log(20))
    xs, ys = torch.tensor([0, 4]), torch.tensor([3, 1])
    assert float(fixation_nll(uniform, xs, ys)) == pytest.approx(0.0, abs=1e-6)
    peaked = torch.log_softmax(torch.where(torch.arange(20).view(4, 5) == 19, 5.0, 0.0).flatten(), 0).view(
        4, 5
    )
    assert float(fixation_nll(peaked, torch.tensor([4]), torch.tensor([3]))) < 0  # better than uniform


def test_initial_readout_is_seeded_and_checked() -> None:
    first, again = initial_readout_state(seed=1), initial_readout_state(seed=1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(
        first["readout_network.conv0.weight"], initial_readout_state(seed=2)["readout_network.conv0.weight"]
    )
    with pytest.raises(ConfigError, match="ending in 1"):
        initial_readout_state((16, 2))


def test_the_blur_is_differentiable_in_sigma() -> None:
    maps = torch.rand(1, 1, 20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = torch.tensor(2.3, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(gaussian_blur(maps, sigma)[0, 0, 3, 4], sigma)
    step = 1e-6
    with torch.no_grad():
        numeric = (gaussian_blur(maps, sigma + step) - gaussian_blur(maps, sigma - step))[0, 0, 3, 4] / (
            2 * step
        )
    torch.testing.assert_close(gradient, numeric, rtol=1e-4, atol=1e-9)
    # A float σ gives the same blur as before.
    torch.testing.assert_close(gaussian_blur(maps, 2.3), gaussian_blur(maps, sigma.detach()))


# --- The README's path: train, put the file where target=deepgaze looks, run it ---------------------------


def test_cli_trains_then_runs_target_deepgaze_by_file_name(tmp_path, folder, vgg) -> None:
    run_dir = tmp_path / "distill"
    done = blackbox(
        tmp_path,
        *TINY,
        "steps=2",
        f"images={folder}",
        f"student.vgg_weights={vgg}",
        f"hydra.run.dir={run_dir}",
        module="blackbox.distill",
    )
    assert done.returncode == 0, done.stderr
    assert f"target.weights={run_dir / READOUT_FILE.filename}" in done.stdout
    models = tmp_path / "models"
    models.mkdir()
    (models / READOUT_FILE.filename).symlink_to(run_dir / READOUT_FILE.filename)
    (models / VGG19_FILE.filename).symlink_to(vgg)
    env = {"BLACKBOX_MODELS": str(models), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    ran = blackbox(
        tmp_path, *FAST, "target=deepgaze", "budget=20", "batch_size=4", "dataset.names=[chelsea]", env=env
    )
    assert ran.returncode == 0, ran.stderr
    record = json.loads((tmp_path / "run" / "results.jsonl").read_text())
    assert record["target"] == "deepgaze" and 1 <= record["queries"] <= 20


def test_missing_readout_error_names_the_training_command(tmp_path) -> None:
    env = {"BLACKBOX_MODELS": str(tmp_path / "models"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = blackbox(tmp_path, *FAST, "target=deepgaze", "dataset.names=[chelsea]", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "python -m blackbox.distill student=deepgaze teacher=twitter" in done.stderr
    assert "runs/distill/twitter-deepgaze-seed0/deepgaze2_readout.pth" in done.stderr
    assert "planned" not in done.stderr
