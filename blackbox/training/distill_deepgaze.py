"""``python -m blackbox.distill student=deepgaze ...``: train DeepGaze II's readout for ``target=deepgaze``.

What is trained is what DeepGaze II learns (Kümmerer, Wallis, Gatys & Bethge, ICCV 2017): the 1x1
readout (16-32-2-1 channels as published), the Gaussian blur's σ and the centre-bias weight of
:class:`targets.deepgaze.DeepGazeIINetwork`; the ImageNet VGG-19 stays frozen. The readout starts
from PyTorch's default initialisation (seeded by ``seed``), σ = 8 px of the half-size image and a
centre-bias weight of 1 (deepgaze_pytorch's ``Finalizer`` defaults), or from ``student.weights=PATH``.
Two sources of supervision:

* a zoo teacher's maps (``teacher=twitter``; FastGaze was itself distilled from DeepGaze II): as for
  the surrogate (:mod:`blackbox.training.distill`), augmented crops of the training images, the student's
  density pooled onto 16 px cells and pulled towards the teacher's (KL divergence, nats), or towards
  the salient point a map-less teacher gives; fidelity on the held-out images by
  :func:`blackbox.evaluate.fidelity.fidelity` (pysaliency's CC, KL-div, NSS, AUC; point distance; crop IoU);
* real fixations (``fixation_data=mit1003|cat2000|DIR``): pysaliency's stimuli and fixations, the
  negative log-likelihood of the training fixations (in nats per fixation, relative to a uniform
  density: the loss DeepGaze II is trained with), each stimulus scaled to ``image_size`` on its long
  side and mirrored at random; on the held-out stimuli, pysaliency's information gain over its
  ``UniformModel`` (bits per fixation), AUC (uniform non-fixations) and NSS of the predicted density,
  averaged over fixations (pysaliency's default), as the DeepGaze authors evaluate with pysaliency.

The run folder (``runs/distill/<teacher or fixation data>-deepgaze-seed<seed>``) holds ``last.pt``
(the resumable state: ``{"state_dict": <readout in deepgaze_pytorch's layout>, "optimizer", "step",
"metadata"}``, itself loadable by ``target=deepgaze``), ``deepgaze2_readout.pth`` (the plain readout
state dict, the file ``target=deepgaze`` looks for by name), ``train.jsonl``,
``fidelity_initial.json``/``fidelity.json`` (the metrics before and after) and ``summary.md``.
Re-running the same command resumes (saved every ``checkpoint_every`` steps, at the end and on
Ctrl-C); each step's data depends only on ``(seed, step)``, so a resumed run ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from blackbox.evaluate.fidelity import fidelity
from blackbox.training.data import augment_batch, evaluation_images, load_images, split
from blackbox.training.deepgaze_checkpoint import load_training_state, save_training_state
from blackbox.training.deepgaze_student import (
    STUDENT_SETTINGS,
    build_student,
    initial_readout_state,
    target_command,
)
from blackbox.training.fixations import (
    fixation_metrics,
    fixation_step_loss,
    load_fixation_data,
    split_fixation_data,
    stimulus_name,
)
from blackbox.training.losses import teacher_loss
from blackbox.training.summary import DistillSummary, fidelity_table, fixation_table
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
from targets import ConfigError, Target, load
from targets.deepgaze import PUBLISHED_READOUT, READOUT_FILE

MIN_BLUR_SIGMA = 0.5  # kept positive during training (the checkpoint format requires σ > 0)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"device must be cpu, cuda, cuda:N or auto, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: this torch build sees no CUDA GPU; use device=cpu")
    return torch.device(name)


def distill_deepgaze(cfg: DictConfig, run_dir: Path, *, teacher: Target | None = None) -> DistillSummary:
    """Train (or resume training) the DeepGaze II readout (see module doc); returns the
    :class:`blackbox.training.summary.DistillSummary`. Raises :class:`ConfigError` on bad settings,
    ``ImageLoadError`` on missing data, model-file errors on missing or bad VGG-19/readout files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    steps, batch, size = check_sizes(cfg)
    device = _device(str(cfg.get("device") or "cpu"))
    settings = OmegaConf.to_container(cfg.student, resolve=True)
    assert isinstance(settings, dict)
    fixation_data = cfg.get("fixation_data") or None
    checkpoint_path, readout_path, log_path = (
        run_dir / "last.pt",
        run_dir / READOUT_FILE.filename,
        run_dir / "train.jsonl",
    )
    run_fingerprint = fingerprint(cfg)

    state = None
    if checkpoint_path.exists():
        state = load_training_state(checkpoint_path)
        check_fingerprint(state.get("metadata", {}).get("fingerprint"), run_fingerprint, run_dir)
    if state is not None:
        readout: Mapping[str, torch.Tensor] | str = state["state_dict"]
    elif settings.get("weights"):
        readout = str(settings["weights"])  # fine-tune a readout someone has
    else:
        readout = initial_readout_state(
            settings.get("readout_channels") or PUBLISHED_READOUT, seed=int(cfg.seed)
        )
    # Data before the 550 MB VGG-19: a wrong path should not wait for it.
    if fixation_data:
        stimuli, fixations = load_fixation_data(str(fixation_data), cfg.get("fixation_location"))
        train_stimuli, train_fixations, held_stimuli, held_fixations, held = split_fixation_data(
            stimuli, fixations, float(cfg.held_out), int(cfg.seed)
        )
        names = [stimulus_name(stimuli, i) for i in range(len(stimuli))]
        train_ids = [names[i] for i in range(len(stimuli)) if i not in set(held)]
        held_ids = [names[i] for i in held]
    else:
        teacher = teacher or load(
            str(cfg.teacher), aspect_ratios=cfg.aspect_ratios, **(cfg.get("teacher_settings") or {})
        )
        images = load_images(cfg.get("images"))
        train, held_images = split(images, float(cfg.held_out), int(cfg.seed))
        train_ids, held_ids = [im.image_id for im in train], [im.image_id for im in held_images]
    student = build_student(settings, readout, cfg.aspect_ratios)
    network = student.network.to(device)
    parameters = network.trainable_parameters()
    optimizer = torch.optim.Adam(parameters, lr=float(cfg.lr))
    start = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        print(f"resuming {run_dir} from step {start} of {steps}", file=sys.stderr)
    summary = DistillSummary(run_dir, start, train_ids, held_ids)
    summary.resumed_from = start

    if fixation_data:
        step_loss = fixation_step_loss(
            student,
            train_stimuli,
            train_fixations,
            seed=int(cfg.seed),
            batch=batch,
            size=size,
            flip=bool(cfg.augment.get("flip", True)),
            device=device,
        )

        def measure() -> dict:
            return fixation_metrics(student, held_stimuli, held_fixations, size=size)

    else:
        evaluation = evaluation_images(held_images, int(cfg.eval_width))

        def step_loss(step: int) -> torch.Tensor:
            rng = np.random.default_rng([int(cfg.seed), step])
            crops = augment_batch(train, rng, size=size, batch=batch, augment=dict(cfg.augment))
            return teacher_loss(student, teacher, crops, point_sigma=float(cfg.point_sigma))

        def measure() -> dict:
            mean, per_image = fidelity(
                teacher, student, evaluation, fixations=int(cfg.fixations), seed=int(cfg.seed)
            )
            return {**mean, "per_image": dict(zip(held_ids, per_image, strict=True))}

    def evaluate(name: str) -> dict:
        network.eval()
        record = {"step": summary.step, **measure()}
        return write_fidelity(run_dir / name, record)

    summary.initial = initial_fidelity(run_dir, start, evaluate)

    def save() -> None:
        readout_state = network.readout_state_dict()
        metadata = {
            "source": f"fixations {fixation_data}" if fixation_data else f"teacher {cfg.teacher}",
            **run_metadata(run_fingerprint, summary),
            "target_settings": {k: settings.get(k) for k in STUDENT_SETTINGS if k in settings},
        }
        save_training_state(
            checkpoint_path,
            readout_path,
            readout=readout_state,
            optimizer=optimizer.state_dict(),
            step=summary.step,
            metadata=metadata,
        )

    run(
        steps=steps,
        start=start,
        step_loss=step_loss,
        parameters=parameters,
        optimizer=optimizer,
        network=network,
        summary=summary,
        log_path=log_path,
        save=save,
        checkpoint_every=int(cfg.checkpoint_every),
        description=f"deepgaze from {fixation_data or cfg.teacher}",
        progress=bool(cfg.progress),
    )
    if summary.interrupted:
        note_interrupted(summary, checkpoint_path)
        return summary
    save()
    summary.final = evaluate("fidelity.json")
    table = fixation_table(str(fixation_data), summary) if fixation_data else fidelity_table(cfg, summary)
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    print(f"\nreadout: {readout_path}  (use: {target_command(readout_path, settings)})")
    return summary


def run(
    *,
    steps: int,
    start: int,
    step_loss: Callable[[int], torch.Tensor],
    parameters: Sequence[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    network: torch.nn.Module,
    summary: DistillSummary,
    log_path: Path,
    save: Callable[[], None],
    checkpoint_every: int,
    description: str,
    progress: bool,
) -> None:
    """The optimisation loop: steps ``start..steps-1``, a line of ``train.jsonl`` per step, a save
    every ``checkpoint_every`` steps and on Ctrl-C (then ``summary.interrupted``)."""
    network.train()
    for parameter in parameters:
        parameter.requires_grad_(True)
    sigma = network.blur_sigma
    bar = tqdm(total=steps, initial=min(start, steps), desc=description, disable=not progress)
    try:
        for step in range(start, steps):
            began = time.perf_counter()
            loss = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 5.0)
            optimizer.step()
            with torch.no_grad():
                sigma.clamp_(min=MIN_BLUR_SIGMA)
            summary.step = step + 1
            summary.losses.append(loss.item())
            append_record(
                log_path,
                {"step": summary.step, "loss": summary.losses[-1], "seconds": time.perf_counter() - began},
            )
            bar.update(1)
            bar.set_postfix(loss=f"{summary.losses[-1]:.4f}")
            if summary.step % checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        summary.interrupted = True
        save()
    finally:
        bar.close()
        for parameter in parameters:
            parameter.requires_grad_(False)
        network.eval()
