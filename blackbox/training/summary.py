"""A distillation's result: :class:`DistillSummary`, and its fidelity before and after training as the
Markdown table of ``summary.md``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig


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


def fixation_table(data: str, summary: DistillSummary) -> str:
    """pysaliency's metrics on the held-out stimuli before and after training, as Markdown."""
    lines = [
        "| fixations | train / held-out stimuli | steps | IG over uniform (bit/fix) | AUC | NSS |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, record in (("initial", summary.initial), ("trained", summary.final)):
        if record is None:
            continue
        lines.append(
            f"| {data} ({label}) | {len(summary.train_ids)} / {len(summary.held_out_ids)} | "
            f"{record['step']} | {record['information_gain']:.3f} | {record['auc']:.3f} | "
            f"{record['nss']:.3f} |"
        )
    return "\n".join(lines)
