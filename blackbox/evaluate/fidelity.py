"""How faithfully a surrogate reproduces a teacher cropper, measured on images neither trained on.

Map metrics are pysaliency's (Kümmerer et al.'s reference implementations): the teacher's density
plays the role of the ground truth. ``cc``: correlation of the two densities; ``kl_div``: KL
divergence from the teacher's density to the student's (nats, lower is better); ``nss`` and
``auc``: the student's map scored on ``fixations`` fixations sampled from the teacher's density
(NSS of the student's density; AUC against all pixels as negatives). Teachers that expose no map
get only the crop metrics: ``point_distance`` (student to teacher salient point, as a fraction of
the image diagonal; a crop-only teacher's point is estimated from its crops), ``point_agreement``
(that distance at most ``agreement_radius``), and the IoU of the two crops per aspect ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from blackbox.core.extras import import_pysaliency
from blackbox.core.objective import estimate_point
from targets import CropBox, Target, TargetOutput

AGREEMENT_RADIUS = 0.1  # salient points this close (fraction of the diagonal) count as agreeing


def _pysaliency():
    pysaliency = import_pysaliency("measuring a student's fidelity (python -m blackbox.distill)")
    metrics, roc = pysaliency.metrics, pysaliency.roc
    return metrics.CC, metrics.NSS, metrics.probabilistic_image_based_kl_divergence, roc.general_roc


def crop_iou(a: CropBox, b: CropBox) -> float:
    width = max(0, min(a.right, b.right) - max(a.left, b.left))
    height = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = width * height
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def sample_fixations(log_density: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``count`` pixel positions ``(xs, ys)`` drawn from the density."""
    probabilities = np.exp(log_density - log_density.max()).ravel()
    indices = rng.choice(probabilities.size, size=count, p=probabilities / probabilities.sum())
    ys, xs = np.unravel_index(indices, log_density.shape)
    return xs, ys


def teacher_point(target: Target, output: TargetOutput, width: int, height: int) -> tuple[float, float]:
    if target.gives_point:
        return output.salient_point
    return estimate_point(output.crops, width, height)


def image_fidelity(
    teacher_output: TargetOutput,
    student_output: TargetOutput,
    teacher_point_xy: tuple[float, float],
    width: int,
    height: int,
    *,
    fixations: int,
    rng: np.random.Generator,
    agreement_radius: float = AGREEMENT_RADIUS,
) -> dict:
    """Every metric for one image (see module doc); map metrics are NaN without a teacher map."""
    cc_fn, nss_fn, kl_fn, roc_fn = _pysaliency()
    record: dict = {}
    teacher_map, student_map = teacher_output.log_density, student_output.log_density
    if teacher_map is not None and student_map is not None:
        record["cc"] = float(cc_fn(np.exp(teacher_map), np.exp(student_map)))
        record["kl_div"] = float(kl_fn(student_map, teacher_map))
        xs, ys = sample_fixations(teacher_map, fixations, rng)
        record["nss"] = float(np.mean(nss_fn(np.exp(student_map), xs, ys)))
        record["auc"] = float(
            roc_fn(student_map[ys, xs].astype(np.float64), student_map.ravel().astype(np.float64))[0]
        )
    else:
        record.update(cc=math.nan, kl_div=math.nan, nss=math.nan, auc=math.nan)
    diagonal = math.hypot(width, height)
    (tx, ty), (sx, sy) = teacher_point_xy, student_output.salient_point
    record["point_distance"] = math.hypot(tx - sx, ty - sy) / diagonal
    record["point_agreement"] = float(record["point_distance"] <= agreement_radius)
    record["crop_iou"] = {
        f"{t.aspect_ratio:g}": crop_iou(t, s)
        for t, s in zip(teacher_output.crops, student_output.crops, strict=True)
    }
    return record


def mean_fidelity(records: Sequence[dict]) -> dict:
    """Means over images (NaN metrics stay NaN)."""
    if not records:
        raise ValueError("no images to average fidelity over")
    summary = {
        key: float(np.mean([r[key] for r in records]))
        for key in ("cc", "kl_div", "nss", "auc", "point_distance", "point_agreement")
    }
    summary["crop_iou"] = {
        ratio: float(np.mean([r["crop_iou"][ratio] for r in records])) for ratio in records[0]["crop_iou"]
    }
    summary["images"] = len(records)
    return summary


def fidelity(
    teacher: Target,
    student: Target,
    images: Sequence[np.ndarray],
    *,
    fixations: int = 200,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """Query both on each ``(H, W, 3)`` float image; the mean metrics and the per-image ones."""
    rng = np.random.default_rng(seed)
    records = []
    for image in images:
        height, width = image.shape[:2]
        taught, learned = teacher.query([image])[0], student.query([image])[0]
        point = teacher_point(teacher, taught, width, height)
        records.append(image_fidelity(taught, learned, point, width, height, fixations=fixations, rng=rng))
    return mean_fidelity(records), records
