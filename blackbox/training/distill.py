"""``python -m blackbox.distill teacher=<zoo name> steps=N ...``: train ``target=surrogate`` on a teacher.

(``student=deepgaze`` trains DeepGaze II's readout for ``target=deepgaze`` instead, from a teacher
or from fixations: :mod:`blackbox.training.distill_deepgaze`.)

The teacher is any zoo target, queried only through :meth:`~targets.Target.query`, as an attacker
would query a service: its log-density maps when it gives them (the student minimises the KL
divergence from the teacher's density, pooled onto the student's output grid), else its salient
point, or the point its crops imply (the student's density is pulled towards a Gaussian of
``point_sigma`` grid cells around it; a crop that keeps the full width says nothing about x, and
then x is left free). Training images are augmented crops (random area, aspect ratio, mirror,
brightness/contrast) of a folder of images (``images=DIR``) or of scikit-image's bundled pictures,
less a held-out share on which fidelity is measured (:mod:`blackbox.evaluate.fidelity`) before and after.

The run folder (``runs/distill/<teacher>-<init>-seed<seed>`` by default) holds ``last.pt`` (the
checkpoint: load it with ``target=surrogate target.checkpoint=...``), ``train.jsonl`` (loss per
step), ``fidelity_initial.json``, ``fidelity.json`` and ``summary.md``. Re-running the same command
resumes from ``last.pt`` (saved every ``checkpoint_every`` steps, at the end and on Ctrl-C); raising
``steps`` trains further. Each step's augmentation depends only on ``(seed, step)``, so an
interrupted and resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from blackbox.core.datasets import folder_sources
from blackbox.core.images import ImageLoadError, prepare
from blackbox.evaluate.fidelity import fidelity, teacher_point
from targets import ConfigError, Target, TargetOutput
from targets._zoo import instantiate_target, load
from targets.surrogate import SurrogateSaliency, load_checkpoint, save_checkpoint

# scikit-image's pictures that need no download: photos, textures, text, microscopy.
DISTILL_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "moon",
    "page",
    "retina",
    "rocket",
    "stereo_motorcycle",
    "text",
)
MAX_SIDE = 800  # training crops come from images no larger than this (memory, speed)
BATCH_ASPECTS = (0.5625, 0.75, 1.0, 1.3333)  # height/width of a step's crops
# Settings that define what is trained; a resumed run must agree on all of them.
FINGERPRINT_KEYS = (
    "teacher",
    "teacher_settings",
    "student",
    "images",
    "held_out",
    "seed",
    "image_size",
    "batch_size",
    "lr",
    "augment",
    "point_sigma",
    "fixation_data",
)
EXIT_INTERRUPTED = 130
DEEPGAZE_TARGET = (
    "targets.deepgaze.DeepGazeII"  # student=deepgaze: blackbox.training.distill_deepgaze trains it
)

# The run folder's default name: the fixation data's name, else the teacher's (conf/distill.yaml).
OmegaConf.register_new_resolver(
    "distill_source", lambda data, teacher: Path(str(data)).name if data else teacher, replace=True
)


@dataclass(frozen=True)
class DistillImage:
    image_id: str
    pixels: np.ndarray  # (H, W, 3) uint8


@dataclass
class DistillSummary:
    run_dir: Path
    step: int
    train_ids: list[str]
    held_out_ids: list[str]
    initial: dict | None = None
    final: dict | None = None
    resumed_from: int = 0
    interrupted: bool = False
    losses: list[float] = field(default_factory=list)


def load_images(folder: str | None) -> list[DistillImage]:
    """The images of ``folder`` (unreadable files skipped with a note), or the bundled pictures."""
    images = []
    if folder:
        for source in folder_sources(folder):
            try:
                loaded = source.load(None)
            except ImageLoadError as error:
                print(f"skipped: {error}", file=sys.stderr)
                continue
            images.append(DistillImage(source.image_id, _shrink(loaded.pixels)))
    else:
        import skimage.data

        for name in DISTILL_PHOTOS:
            array = getattr(skimage.data, name)()
            array = array[0] if isinstance(array, tuple) else array
            loaded = prepare(Image.fromarray(array), image_id=name, source=name, working_width=None)
            images.append(DistillImage(name, _shrink(loaded.pixels)))
    if len(images) < 2:
        raise ImageLoadError(
            f"distillation needs at least 2 images (some to train on, some held out); got {len(images)}"
        )
    return images


def _shrink(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC))


def split(images: Sequence[DistillImage], held_out: float, seed: int) -> tuple[list, list]:
    """A fixed random split: ``held_out`` of the images (at least one, never all) kept for evaluation."""
    if not 0 < held_out < 1:
        raise ConfigError(f"held_out must be a fraction between 0 and 1, got {held_out}")
    order = np.random.default_rng(seed).permutation(len(images))
    count = min(len(images) - 1, max(1, round(held_out * len(images))))
    held = sorted(int(i) for i in order[:count])
    return [im for i, im in enumerate(images) if i not in held], [images[i] for i in held]


def augment_batch(
    images: Sequence[DistillImage], rng: np.random.Generator, *, size: int, batch: int, augment: dict
) -> np.ndarray:
    """``(B, H, W, 3)`` float32 crops in [0, 1], one aspect ratio per batch, long side ``size``."""
    aspect = float(rng.choice(BATCH_ASPECTS))
    out_w, out_h = (
        (size, max(32, round(size * aspect))) if aspect <= 1 else (max(32, round(size / aspect)), size)
    )
    low, high = augment.get("scale", (0.35, 1.0))
    jitter = float(augment.get("jitter", 0.0))
    crops = []
    for _ in range(batch):
        pixels = images[int(rng.integers(len(images)))].pixels
        height, width = pixels.shape[:2]
        area = rng.uniform(low, high) * width * height
        crop_w = math.sqrt(area / aspect)
        crop_h = crop_w * aspect
        shrink = min(1.0, width / crop_w, height / crop_h)
        crop_w, crop_h = max(8, int(crop_w * shrink)), max(8, int(crop_h * shrink))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        crop = Image.fromarray(pixels[top : top + crop_h, left : left + crop_w])
        array = np.asarray(crop.resize((out_w, out_h), Image.Resampling.BICUBIC), dtype=np.float32) / 255
        if augment.get("flip", True) and rng.random() < 0.5:
            array = array[:, ::-1]
        if jitter:
            contrast, brightness = rng.uniform(1 - jitter, 1 + jitter), rng.uniform(-jitter, jitter)
            array = (array - 0.5) * contrast + 0.5 + brightness
        # 8-bit, as any image a platform receives.
        crops.append(np.round(np.clip(array, 0, 1) * 255) / 255)
    return np.stack(crops).astype(np.float32)


def cell_targets(
    teacher: Target,
    outputs: Sequence[TargetOutput],
    grid: tuple[int, int],
    height: int,
    width: int,
    *,
    point_sigma: float,
) -> torch.Tensor:
    """``(B, rows, columns)`` probabilities the student's grid should match (see module doc)."""
    rows, columns = grid
    targets = []
    for output in outputs:
        if output.log_density is not None:
            density = torch.from_numpy(np.exp(output.log_density)).float()[None, None]
            cells = F.adaptive_avg_pool2d(density, grid)[0, 0]
        else:
            x, y = teacher_point(teacher, output, width, height)
            knows_x = teacher.gives_point or any(c.width < width for c in output.crops)
            knows_y = teacher.gives_point or any(c.height < height for c in output.crops)
            cx, cy = x / width * columns - 0.5, y / height * rows - 0.5  # in cell units, cell centres at k
            column_weights = torch.exp(-0.5 * ((torch.arange(columns) - cx) / point_sigma) ** 2)
            row_weights = torch.exp(-0.5 * ((torch.arange(rows) - cy) / point_sigma) ** 2)
            cells = (row_weights if knows_y else torch.ones(rows))[:, None] * (
                column_weights if knows_x else torch.ones(columns)
            )[None, :]
        targets.append(cells / cells.sum())
    return torch.stack(targets)


def kl_loss(target_cells: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL(teacher cells || student grid), in nats."""
    flat_p, flat_log_q = target_cells.flatten(1), log_density.flatten(1)
    return (torch.xlogy(flat_p, flat_p) - flat_p * flat_log_q).sum(dim=1).mean()


def _fingerprint(cfg: DictConfig) -> dict:
    container = OmegaConf.to_container(cfg, resolve=True)
    return {key: container.get(key) for key in FINGERPRINT_KEYS}  # type: ignore[union-attr]


def check_fingerprint(saved: dict | None, fingerprint: dict, run_dir: Path) -> None:
    """Refuse to resume a run made with other settings (a key missing from an older run's
    fingerprint counts as unset)."""
    differing = sorted(k for k in FINGERPRINT_KEYS if (saved or {}).get(k) != fingerprint.get(k))
    if saved is None or differing:
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({', '.join(differing) or 'unrecorded'} differ); "
            "resume it with the same settings or choose another hydra.run.dir"
        )


def _evaluation_images(images: Sequence[DistillImage], width: int) -> list[np.ndarray]:
    return [
        prepare(
            Image.fromarray(im.pixels), image_id=im.image_id, source=im.image_id, working_width=width
        ).as_float
        for im in images
    ]


def _append(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def distill(cfg: DictConfig, run_dir: Path, *, teacher: Target | None = None) -> DistillSummary:
    """Train (or resume training) the student on ``teacher``; evaluate fidelity on the held-out images.

    ``student=deepgaze`` trains DeepGaze II's readout instead (:mod:`blackbox.training.distill_deepgaze`).
    """
    if cfg.student.get("_target_") == DEEPGAZE_TARGET:
        from blackbox.training.distill_deepgaze import distill_deepgaze

        return distill_deepgaze(cfg, run_dir, teacher=teacher)
    if cfg.get("fixation_data"):
        raise ConfigError("fixation_data trains DeepGaze II's readout: add student=deepgaze")
    run_dir.mkdir(parents=True, exist_ok=True)
    steps, batch, size = int(cfg.steps), int(cfg.batch_size), int(cfg.image_size)
    if steps < 0 or batch < 1 or size < 32:
        raise ConfigError(
            f"need steps >= 0, batch_size >= 1 and image_size >= 32; got {steps}, {batch}, {size}"
        )
    if not float(cfg.point_sigma) > 0:
        raise ConfigError(f"point_sigma (grid cells) must be positive, got {cfg.point_sigma}")
    teacher = teacher or load(
        str(cfg.teacher), aspect_ratios=cfg.aspect_ratios, **(cfg.get("teacher_settings") or {})
    )
    images = load_images(cfg.get("images"))
    train, held = split(images, float(cfg.held_out), int(cfg.seed))
    checkpoint_path, log_path = run_dir / "last.pt", run_dir / "train.jsonl"
    fingerprint = _fingerprint(cfg)

    student = instantiate_target(cfg.student)
    assert isinstance(student, SurrogateSaliency)
    if not isinstance(student, SurrogateSaliency):
        raise ConfigError(
            f"the student must be a targets.surrogate.SurrogateSaliency, got {type(student).__name__}"
        )
    optimizer = torch.optim.Adam(student.net.parameters(), lr=float(cfg.lr))
    start = 0
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        check_fingerprint(state.get("metadata", {}).get("fingerprint"), fingerprint, run_dir)
        student = SurrogateSaliency(checkpoint=checkpoint_path, aspect_ratios=cfg.aspect_ratios)
        optimizer = torch.optim.Adam(student.net.parameters(), lr=float(cfg.lr))
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        print(f"resuming {run_dir} from step {start} of {steps}", file=sys.stderr)
    summary = DistillSummary(run_dir, start, [im.image_id for im in train], [im.image_id for im in held])
    summary.resumed_from = start
    evaluation = _evaluation_images(held, int(cfg.eval_width))

    def evaluate(name: str) -> dict:
        mean, per_image = fidelity(
            teacher, student, evaluation, fixations=int(cfg.fixations), seed=int(cfg.seed)
        )
        record = {
            "step": summary.step,
            **mean,
            "per_image": dict(zip(summary.held_out_ids, per_image, strict=True)),
        }
        (run_dir / name).write_text(json.dumps(record, indent=1, allow_nan=True))
        return record

    initial_path = run_dir / "fidelity_initial.json"
    summary.initial = json.loads(initial_path.read_text()) if initial_path.exists() else None
    if summary.initial is None and start == 0:
        summary.initial = evaluate(initial_path.name)

    def save() -> None:
        metadata = {
            "teacher": str(cfg.teacher),
            "fingerprint": fingerprint,
            "train_images": summary.train_ids,
            "held_out_images": summary.held_out_ids,
        }
        save_checkpoint(
            student, checkpoint_path, metadata=metadata, optimizer=optimizer.state_dict(), step=summary.step
        )

    student.net.train().requires_grad_(True)
    bar = tqdm(total=steps, initial=min(start, steps), desc=f"distil {cfg.teacher}", disable=not cfg.progress)
    try:
        for step in range(start, steps):
            began = time.perf_counter()
            rng = np.random.default_rng([int(cfg.seed), step])
            crops = augment_batch(train, rng, size=size, batch=batch, augment=dict(cfg.augment))
            outputs = teacher.query(list(crops))
            taught = time.perf_counter()
            tensor = torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
            log_density = student.grid_log_density(tensor)
            targets = cell_targets(
                teacher,
                outputs,
                tuple(log_density.shape[-2:]),
                *crops.shape[1:3],
                point_sigma=float(cfg.point_sigma),
            )
            loss = kl_loss(targets, log_density)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.net.parameters(), 5.0)
            optimizer.step()
            summary.step = step + 1
            summary.losses.append(loss.item())
            _append(
                log_path,
                {
                    "step": summary.step,
                    "loss": summary.losses[-1],
                    "teacher_seconds": taught - began,
                    "seconds": time.perf_counter() - began,
                },
            )
            bar.update(1)
            bar.set_postfix(loss=f"{summary.losses[-1]:.4f}")
            if summary.step % int(cfg.checkpoint_every) == 0:
                save()
    except KeyboardInterrupt:
        summary.interrupted = True
        save()
        print(
            f"\ninterrupted at step {summary.step}; saved {checkpoint_path}. "
            "Re-run the same command to resume.",
            file=sys.stderr,
        )
        return summary
    finally:
        bar.close()
        student.net.eval().requires_grad_(False)
    save()
    summary.final = evaluate("fidelity.json")
    table = fidelity_table(cfg, summary)
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    print(f"\ncheckpoint: {checkpoint_path}  (use: target=surrogate target.checkpoint={checkpoint_path})")
    return summary


def fidelity_table(cfg: DictConfig, summary: DistillSummary) -> str:
    """The fidelity of the student before and after training, as a Markdown table."""
    ratios = list((summary.final or {}).get("crop_iou", {}))
    header = (
        "| teacher | student | train / held-out images | steps | CC | KL-div | NSS | AUC | point dist. | "
        "point agree | " + " | ".join(f"IoU {r}" for r in ratios) + " |"
    )
    lines = [header, "|" + " --- |" * (10 + len(ratios))]
    for label, record in (("initial", summary.initial), ("distilled", summary.final)):
        if record is None:
            continue
        cells = [
            str(cfg.teacher),
            f"{cfg.student.get('init', 'deepgaze')} ({label})"
            if not cfg.student.get("checkpoint")
            else label,
            f"{len(summary.train_ids)} / {len(summary.held_out_ids)}",
            str(record["step"]),
            *(f"{record[k]:.3f}" for k in ("cc", "kl_div", "nss", "auc")),
            f"{100 * record['point_distance']:.1f}%",
            f"{100 * record['point_agreement']:.0f}%",
            *(f"{record['crop_iou'][r]:.2f}" for r in ratios),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nheld-out images: {', '.join(summary.held_out_ids)}")
    return "\n".join(lines)
