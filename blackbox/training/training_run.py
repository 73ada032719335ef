"""What the two trainers share about a resumable training run in its run folder: the checks on its
sizes, the fingerprint a resumed run must match, a line of ``train.jsonl`` per step, the fidelity before
training (``fidelity_initial.json``, measured once), the checkpoint's metadata and the note on Ctrl-C.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from blackbox.training.summary import DistillSummary
from targets import ConfigError

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
INITIAL_FIDELITY = "fidelity_initial.json"


def check_sizes(cfg: DictConfig) -> tuple[int, int, int]:
    """``(steps, batch_size, image_size)`` of ``cfg``; :class:`ConfigError` when one is out of range or
    ``point_sigma`` is not positive."""
    steps, batch, size = int(cfg.steps), int(cfg.batch_size), int(cfg.image_size)
    if steps < 0 or batch < 1 or size < 32:
        raise ConfigError(
            f"need steps >= 0, batch_size >= 1 and image_size >= 32; got {steps}, {batch}, {size}"
        )
    if not float(cfg.point_sigma) > 0:
        raise ConfigError(f"point_sigma (grid cells) must be positive, got {cfg.point_sigma}")
    return steps, batch, size


def fingerprint(cfg: DictConfig) -> dict:
    """The settings of :data:`FINGERPRINT_KEYS`, resolved: what a resumed run must agree on."""
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


def append_record(path: Path, record: dict) -> None:
    """One JSON line appended to ``path`` (``train.jsonl``)."""
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def write_fidelity(path: Path, record: dict) -> dict:
    """``record`` (a fidelity measurement) written to ``path`` as JSON (NaN kept); returns it."""
    path.write_text(json.dumps(record, indent=1, allow_nan=True))
    return record


def initial_fidelity(run_dir: Path, start: int, evaluate: Callable[[str], dict]) -> dict | None:
    """The fidelity before training: read from ``fidelity_initial.json`` when an earlier run measured it,
    else ``evaluate(name)`` when no step has been taken (a resumed run without the file has none)."""
    path = run_dir / INITIAL_FIDELITY
    initial = json.loads(path.read_text()) if path.exists() else None
    if initial is None and start == 0:
        initial = evaluate(path.name)
    return initial


def run_metadata(fingerprint: dict, summary: DistillSummary) -> dict:
    """What a checkpoint records of its run: the fingerprint and the training and held-out images."""
    return {
        "fingerprint": fingerprint,
        "train_images": summary.train_ids,
        "held_out_images": summary.held_out_ids,
    }


def note_interrupted(summary: DistillSummary, checkpoint_path: Path) -> None:
    """Say on stderr where an interrupted run was saved and how to resume it."""
    print(
        f"\ninterrupted at step {summary.step}; saved {checkpoint_path}. Re-run the same command to resume.",
        file=sys.stderr,
    )
