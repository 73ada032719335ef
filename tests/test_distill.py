"""``python -m blackbox.distill``: tiny runs (small images, a small student, a few steps)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

# Distillation measures fidelity with pysaliency (the extra "distill", which pins numpy<2): these tests
# run in `make test-distill`'s environment and skip in the core one.
pytest.importorskip("pysaliency", reason="needs the extra distill (make test-distill runs it)")
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

import blackbox.training.distill as distill_module
from blackbox.evaluate.fidelity import crop_iou, fidelity
from blackbox.settings.checks import ConfigError
from blackbox.training.data import DistillImage, augment_batch, split
from blackbox.training.distill import distill
from blackbox.training.losses import cell_targets, kl_loss
from targets import CropBox, Output, Target, load
from targets.classic import ClassicSaliency
from targets.surrogate import SurrogateSaliency, load_checkpoint
from tests.conftest import REPO
from tests.test_cli import blackbox

TINY = [
    "teacher=classic",
    "student.init=random",
    "student.trunk=[6,pool,8,pool,8]",
    "student.readout=[4,1]",
    "student.grid_cells=6",
    "steps=4",
    "batch_size=2",
    "image_size=48",
    "eval_width=64",
    "fixations=20",
    "checkpoint_every=2",
    "progress=false",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five small real photos (crops of scikit-image's) in a folder."""
    import skimage.data

    root = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera"):
        array = getattr(skimage.data, name)()
        image = Image.fromarray(array).convert("RGB").resize((96, 72))
        image.save(root / f"{name}.png")
    return root


def config(folder: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="distill", overrides=[*TINY, f"images={folder}", *overrides])


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def test_tiny_run_writes_checkpoint_log_and_fidelity(tmp_path, folder: Path) -> None:
    summary = distill(config(folder), tmp_path)
    assert summary.step == 4 and len(summary.losses) == 4 and all(math.isfinite(x) for x in summary.losses)
    assert len(summary.held_out_ids) == 1 and len(summary.train_ids) == 4  # 25% of 5 held out
    lines = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    final = json.loads((tmp_path / "fidelity.json").read_text())
    assert final["step"] == 4 and -1 <= final["cc"] <= 1 and final["kl_div"] >= 0 and 0 <= final["auc"] <= 1
    assert set(final["crop_iou"]) == {"0.56", "1", "1.14", "2"}
    assert json.loads((tmp_path / "fidelity_initial.json").read_text())["step"] == 0
    assert "| classic |" in (tmp_path / "summary.md").read_text()
    # The result is a target: `target=surrogate target.checkpoint=...`.
    student = load("surrogate", aspect_ratios=(1.0,), checkpoint=str(tmp_path / "last.pt"))
    assert isinstance(student, SurrogateSaliency) and student.metadata["teacher"] == "classic"
    assert student.metadata["held_out_images"] == summary.held_out_ids


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, folder: Path, monkeypatch) -> None:
    straight = distill(config(folder), tmp_path / "straight")

    real_augment = distill_module.augment_batch
    calls = {"n": 0}

    def interrupt_at_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_augment(*args, **kwargs)

    monkeypatch.setattr(distill_module, "augment_batch", interrupt_at_third_step)
    first = distill(config(folder), tmp_path / "resumed")
    assert (
        first.interrupted
        and first.step == 2
        and load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 2
    )
    monkeypatch.setattr(distill_module, "augment_batch", real_augment)

    second = distill(config(folder), tmp_path / "resumed")
    assert second.resumed_from == 2 and second.step == 4 and not second.interrupted
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    for name, tensor in weights_of(tmp_path / "straight" / "last.pt").items():
        torch.testing.assert_close(weights_of(tmp_path / "resumed" / "last.pt")[name], tensor, msg=name)
    assert second.final is not None and straight.final is not None
    assert second.final["cc"] == pytest.approx(straight.final["cc"], abs=1e-6)

    # More steps continue the run; other settings are refused, not mixed in.
    more = distill(config(folder, "steps=5"), tmp_path / "resumed")
    assert more.resumed_from == 4 and more.step == 5
    with pytest.raises(ConfigError, match="batch_size"):
        distill(config(folder, "steps=6", "batch_size=3"), tmp_path / "resumed")


class CropsOnly(Target):
    """A cropper that gives only crops (as most services do): classic behind a crops-only face."""

    name = "crops-only"

    def __init__(self) -> None:
        super().__init__()
        self.inner = ClassicSaliency()
        self.queries = 0

    @property
    def outputs(self) -> frozenset[Output]:
        return frozenset({Output.CROPS})

    def answer(self, images):
        self.queries += len(images)
        return [type(o)(o.salient_point, o.crops, None) for o in self.inner.query(images)]


def test_crops_only_teacher(tmp_path, folder: Path) -> None:
    teacher = CropsOnly()
    summary = distill(config(folder, "steps=2"), tmp_path, teacher=teacher)
    assert summary.step == 2 and all(math.isfinite(x) for x in summary.losses)
    assert teacher.queries >= 2 * 2  # every training crop was one query
    final = summary.final
    assert final is not None and math.isnan(final["cc"]) and 0 <= final["crop_iou"]["1"] <= 1


def test_cell_targets_from_maps_points_and_crops() -> None:
    classic = ClassicSaliency()
    image = np.random.default_rng(0).random((60, 80, 3)).astype(np.float32)
    output = classic.query([image])[0]
    cells = cell_targets(classic, [output], (6, 8), 60, 80, point_sigma=1.0)
    assert cells.shape == (1, 6, 8) and float(cells.sum()) == pytest.approx(1.0)
    # A crops-only answer whose crops keep the full height: x is known, y is not.
    crops = (CropBox(40, 0, 30, 60, 2.0),)
    teacher = CropsOnly()
    cells = cell_targets(teacher, [type(output)((0.0, 0.0), crops, None)], (6, 8), 60, 80, point_sigma=0.5)[0]
    assert int(cells.sum(dim=0).argmax()) == 5  # x = 55 px is in column 5 of 8
    torch.testing.assert_close(cells[:, 5], torch.full((6,), float(cells[0, 5])))  # flat in y


def test_kl_loss_is_zero_exactly_when_distributions_match() -> None:
    p = torch.softmax(torch.randn(2, 3, 4).flatten(1), 1).view(2, 3, 4)
    assert float(kl_loss(p, p.log())) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_loss(p, torch.full_like(p, -math.log(12)))) > 0


def test_split_and_augmentation() -> None:
    images = [DistillImage(str(i), np.full((50, 70, 3), 10 * i, np.uint8)) for i in range(8)]
    train, held = split(images, 0.25, seed=0)
    assert len(held) == 2 and len(train) == 6 and not {i.image_id for i in held} & {i.image_id for i in train}
    assert split(images, 0.25, seed=0) == (train, held)
    with pytest.raises(ConfigError):
        split(images, 1.0, seed=0)
    rng = np.random.default_rng(0)
    batch = augment_batch(train, rng, size=48, batch=3, augment={"scale": [0.3, 1.0], "jitter": 0.1})
    assert batch.shape[0] == 3 and max(batch.shape[1:3]) == 48 and batch.dtype == np.float32
    assert np.allclose(batch * 255, np.round(batch * 255), atol=1e-3)  # 8-bit values


def test_fidelity_of_a_model_to_itself_is_perfect() -> None:
    classic = ClassicSaliency()
    images = [np.random.default_rng(i).random((64, 96, 3)).astype(np.float32) for i in range(2)]
    mean, per_image = fidelity(classic, classic, images, fixations=50)
    assert mean["cc"] == pytest.approx(1.0) and mean["kl_div"] == pytest.approx(0.0, abs=1e-9)
    assert mean["point_distance"] == 0 and mean["point_agreement"] == 1 and mean["auc"] > 0.5
    assert all(v == pytest.approx(1.0) for v in mean["crop_iou"].values()) and len(per_image) == 2
    assert crop_iou(CropBox(0, 0, 10, 10, 1.0), CropBox(5, 0, 10, 10, 1.0)) == pytest.approx(50 / 150)


def test_cli_tiny_run_and_clear_errors(tmp_path, folder: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY, "steps=2", f"images={folder}", f"hydra.run.dir={run_dir}"]
    done = blackbox(tmp_path, *args, module="blackbox.distill")
    assert done.returncode == 0, done.stderr
    assert "| classic |" in done.stdout and (run_dir / "last.pt").exists()
    unknown = blackbox(tmp_path, *args[1:], "teacher=nosuchmodel", module="blackbox.distill")
    assert unknown.returncode == 2 and "classic" in unknown.stderr and "Traceback" not in unknown.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    no_images = blackbox(
        tmp_path, *TINY, f"images={empty}", f"hydra.run.dir={tmp_path / 'x'}", module="blackbox.distill"
    )
    assert no_images.returncode == 2 and "no image files" in no_images.stderr
