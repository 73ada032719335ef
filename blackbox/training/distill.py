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

import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from blackbox.core.extras import import_pysaliency
from blackbox.evaluate.fidelity import fidelity
from blackbox.training.data import augment_batch, evaluation_images, load_images, split
from blackbox.training.losses import cell_targets, kl_loss
from blackbox.training.summary import DistillSummary, fidelity_table
from blackbox.training.training_run import (
    append_record,
    check_fingerprint,
    check_sizes,
    fingerprint,
    initial_fidelity,
    note_interrupted,
    run_metadata,
    write_fidelity,
)
from targets import ConfigError, Target
from targets._zoo import instantiate_target, load
from targets.surrogate import SurrogateSaliency, load_checkpoint, save_checkpoint

EXIT_INTERRUPTED = 130
DEEPGAZE_TARGET = (
    "targets.deepgaze.DeepGazeII"  # student=deepgaze: blackbox.training.distill_deepgaze trains it
)

# The run folder's default name: the fixation data's name, else the teacher's (conf/distill.yaml).
OmegaConf.register_new_resolver(
    "distill_source", lambda data, teacher: Path(str(data)).name if data else teacher, replace=True
)


def distill(cfg: DictConfig, run_dir: Path, *, teacher: Target | None = None) -> DistillSummary:
    """Train (or resume training) the student on ``teacher``; evaluate fidelity on the held-out images.

    ``student=deepgaze`` trains DeepGaze II's readout instead (:mod:`blackbox.training.distill_deepgaze`).

    Raises:
        MissingExtraError: pysaliency (the extra ``distill``), which measures fidelity, is not installed.
    """
    import_pysaliency("python -m blackbox.distill")  # before any work: the fidelity needs it
    if cfg.student.get("_target_") == DEEPGAZE_TARGET:
        from blackbox.training.distill_deepgaze import distill_deepgaze

        return distill_deepgaze(cfg, run_dir, teacher=teacher)
    if cfg.get("fixation_data"):
        raise ConfigError("fixation_data trains DeepGaze II's readout: add student=deepgaze")
    run_dir.mkdir(parents=True, exist_ok=True)
    steps, batch, size = check_sizes(cfg)
    teacher = teacher or load(
        str(cfg.teacher), aspect_ratios=cfg.aspect_ratios, **(cfg.get("teacher_settings") or {})
    )
    images = load_images(cfg.get("images"))
    train, held = split(images, float(cfg.held_out), int(cfg.seed))
    checkpoint_path, log_path = run_dir / "last.pt", run_dir / "train.jsonl"
    run_fingerprint = fingerprint(cfg)

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
        check_fingerprint(state.get("metadata", {}).get("fingerprint"), run_fingerprint, run_dir)
        student = SurrogateSaliency(checkpoint=checkpoint_path, aspect_ratios=cfg.aspect_ratios)
        optimizer = torch.optim.Adam(student.net.parameters(), lr=float(cfg.lr))
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        print(f"resuming {run_dir} from step {start} of {steps}", file=sys.stderr)
    summary = DistillSummary(run_dir, start, [im.image_id for im in train], [im.image_id for im in held])
    summary.resumed_from = start
    evaluation = evaluation_images(held, int(cfg.eval_width))

    def evaluate(name: str) -> dict:
        mean, per_image = fidelity(
            teacher, student, evaluation, fixations=int(cfg.fixations), seed=int(cfg.seed)
        )
        record = {
            "step": summary.step,
            **mean,
            "per_image": dict(zip(summary.held_out_ids, per_image, strict=True)),
        }
        return write_fidelity(run_dir / name, record)

    summary.initial = initial_fidelity(run_dir, start, evaluate)

    def save() -> None:
        metadata = {"teacher": str(cfg.teacher), **run_metadata(run_fingerprint, summary)}
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
            append_record(
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
        note_interrupted(summary, checkpoint_path)
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
