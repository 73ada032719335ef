"""The one result record: a ``results.jsonl`` line, and the table rows derived from it.

Every command writes what an attack did on one image through :func:`build_record`; the comparison's
and robustness report's ``results.csv`` rows come from a record through :func:`csv_row`, are read
back through :func:`parse_csv_row`, and the run's summary table reads the same keys
(:mod:`blackbox.experiment.summary`). The keys (a JSON object, values JSON-ready):

* identity: ``image``, ``source``, ``method``, ``target`` (the name attacked), ``measure`` (when
  scored on another model), ``width``, ``height`` (the working copy's pixels, in which every position
  in the record lies), ``original_width``, ``original_height`` (the image as given);
* verdicts: ``success`` and ``clean_in_goal`` by ``success_rule``; ``success_by_rule`` and
  ``clean_success_by_rule`` (``true``/``false``/``null`` per rule, ``null``: no crop can hold the goal);
* the goal (``goal``: its box, axis, source), ``eps`` and ``norm``;
* cost: ``queries``, ``queries_to_success``, ``failed_queries``, ``clean_queries``, ``best_trial``;
* movement: ``score``; ``point_shift_pct_distance`` and ``point_shift_pct_width``, how far the salient
  point (the target's own, its map's argmax, or the one its crops imply) moved toward the goal's
  centre along the goal's axis, for every target; the paper's *peak* shift of the saliency map's
  profile, ``shift_pct_distance`` and ``shift_pct_width`` with ``peak_x_clean``/``peak_x_adversarial``,
  only for a target that gives a map (``null`` otherwise); salient points, crop boxes and which crops
  show the goal, clean and adversarial;
* size: ``l2``, ``linf`` (pixels in [0, 1]), ``linf_levels`` (the largest change in 8-bit levels),
  ``psnr`` (dB; ``null`` when infinite), ``ssim``, ``ssimulacra2`` (a perceptual score: 90 and above,
  no difference a person sees in a flicker test at 1:1); ``eps_inf`` is the cap in levels (or null);
* ``on_target`` (what the attacked target said, when scored on ``measure``), ``target_counters``
  (a target's own counters, e.g. HTTP retries) and an attack's ``extra`` (e.g. ``study``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from blackbox.attacks import AttackResult
from blackbox.core.goal import Goal, peak_along
from blackbox.core.images import LoadedImage
from blackbox.core.metrics import peak_shift, perturbation_norms, ssim, ssimulacra2
from blackbox.core.objective import crop_shows_goal, salient_point, success_by_rule
from targets import TargetOutput

#: One record: a JSON object, the line ``results.jsonl`` holds per image.
Record = dict

#: What ``on_target`` keeps of the attacked target's record when the result is scored on ``measure``.
ON_TARGET_KEYS = (
    "success",
    "point_shift_pct_distance",
    "shift_pct_distance",
    "shift_pct_width",
    "score",
    "salient_point_adversarial",
)


def measurement(
    result: AttackResult, clean: LoadedImage, clean_output: TargetOutput, *, has_point: bool = True
) -> Record:
    """What ``result`` did to the target's answer: success, shift, crops, queries and sizes.

    ``clean_output`` is the answer the result is compared with (the scoring target's). ``success``
    and ``clean_in_goal`` (the clean image already succeeds) follow ``result.success_rule``;
    ``success_by_rule`` and ``clean_success_by_rule`` give every rule's verdict beside it (``None``:
    the rule does not apply, no crop can hold the goal). ``has_point``: the scoring target gives a
    salient point (or a map), so the point rule reads it rather than estimating it from the crops.
    """
    width, height = clean.width, clean.height
    goal = result.goal
    extent = goal.extent(width, height)
    has_map = clean_output.log_density is not None and result.adversarial_output.log_density is not None
    old_peak = _peak(clean_output, goal) if has_map else None
    new_peak = _peak(result.adversarial_output, goal) if has_map else None
    if old_peak is not None and new_peak is not None:
        shift: dict[str, float | None] = dict(peak_shift(old_peak, new_peak, goal.target_x, extent))
    else:
        shift = {"shift_pct_distance": None, "shift_pct_width": None}
    point_shift = peak_shift(
        _along(salient_point(clean_output, width, height, has_point=has_point), goal),
        _along(salient_point(result.adversarial_output, width, height, has_point=has_point), goal),
        goal.target_x,
        extent,
    )
    by_rule = success_by_rule(result.adversarial_output, goal, width, height, has_point=has_point)
    clean_by_rule = success_by_rule(clean_output, goal, width, height, has_point=has_point)
    norms = perturbation_norms(clean.pixels, result.adversarial)
    return {
        "image": result.image_id,
        "source": clean.source,
        "method": result.method,
        "success": bool(result.success),
        "clean_in_goal": bool(clean_by_rule[result.success_rule]),
        "success_rule": result.success_rule,
        "success_by_rule": by_rule,
        "clean_success_by_rule": clean_by_rule,
        "goal": goal.as_dict(),
        "eps": result.eps,
        "norm": result.norm,
        "eps_inf": None if result.eps_inf is None else round(result.eps_inf * 255.0, 6),
        "queries": result.queries,
        "queries_to_success": result.queries_to_success,
        "failed_queries": result.failed_queries,
        "score": _finite(result.score),
        "point_shift_pct_distance": point_shift["shift_pct_distance"],
        "point_shift_pct_width": point_shift["shift_pct_width"],
        "peak_x_clean": old_peak,
        "peak_x_adversarial": new_peak,
        **shift,
        "salient_point_clean": list(clean_output.salient_point),
        "salient_point_adversarial": list(result.adversarial_output.salient_point),
        "crop_boxes": _boxes(result.adversarial_output),
        "clean_crop_boxes": _boxes(clean_output),
        "crop_contains_goal": _shows(result.adversarial_output, goal, width, height),
        "clean_crop_contains_goal": _shows(clean_output, goal, width, height),
        "l2": norms["l2"],
        "linf": norms["linf"],
        "linf_levels": norms["linf_levels"],
        "psnr": _finite(norms["psnr"]),
        "best_trial": result.best_trial,
        "width": width,
        "height": height,
        "original_width": int(clean.original_pixels.shape[1]),
        "original_height": int(clean.original_pixels.shape[0]),
        **result.extra,
    }


def build_record(
    result: AttackResult,
    clean: LoadedImage,
    clean_output: TargetOutput,
    *,
    target_name: str,
    has_point: bool,
    measure_name: str | None = None,
    on_target: Record | None = None,
) -> Record:
    """The ``results.jsonl`` line of one attack on one image (the keys: module docstring).

    With ``measure_name``, ``result`` is the one scored on the measuring model, ``clean_output`` that
    model's clean answer and ``on_target`` the :func:`measurement` on the attacked target (its
    :data:`ON_TARGET_KEYS` are kept). :meth:`Pipeline.run <blackbox.experiment.pipeline.Pipeline.run>`
    adds ``target_counters``.
    """
    record = measurement(result, clean, clean_output, has_point=has_point)
    record["target"] = target_name
    if measure_name is not None:
        record["measure"] = measure_name
    record["clean_queries"] = 1  # the clean image's query, outside the budget
    if on_target is not None:
        record["on_target"] = {key: on_target[key] for key in ON_TARGET_KEYS}
    record["ssim"] = ssim(clean.pixels, result.adversarial)
    record["ssimulacra2"] = ssimulacra2(clean.pixels, result.adversarial)
    return record


def crop_counts(record: Mapping) -> tuple[int, int, int]:
    """``(adversarial crops showing the goal, clean crops showing it, crops)`` of a record."""
    crops = record.get("crop_contains_goal") or {}
    clean = record.get("clean_crop_contains_goal") or {}
    return sum(crops.values()), sum(clean.values()), len(crops)


def csv_row(record: Mapping, columns: Sequence[str], **fields: object) -> dict:
    """A ``results.csv`` row of ``columns`` from a record; ``fields`` set the command's own columns.

    The derived columns every table shares: ``goal_source``, ``crops_showing_goal``,
    ``clean_crops_showing_goal``, ``crops``; any other column is the record's key of that name.
    """
    shown, clean_shown, crops = crop_counts(record)
    derived = {
        "goal_source": record["goal"]["source"],
        "crops_showing_goal": shown,
        "clean_crops_showing_goal": clean_shown,
        "crops": crops,
    }
    row = {key: record.get(key) for key in columns}
    row.update({key: value for key, value in derived.items() if key in columns})
    row.update(fields)
    return row


def parse_csv_row(row: Mapping[str, str | None]) -> dict[str, object]:
    """A ``results.csv`` row as read (strings) with numbers, booleans and blanks (``None``) restored."""
    parsed: dict[str, object] = {}
    for key, text in row.items():
        if text in ("", "None", None):
            parsed[key] = None
        elif text in ("True", "False"):
            parsed[key] = text == "True"
        else:
            try:
                parsed[key] = float(text)  # type: ignore[arg-type]
            except ValueError:
                parsed[key] = text
    return parsed


def _peak(output: TargetOutput, goal: Goal) -> float:
    """The paper's peak: the map's profile maximum along the goal's axis."""
    return peak_along(output.log_density, output.salient_point, goal.axis)


def _along(point: tuple[float, float], goal: Goal) -> float:
    return point[0] if goal.axis == "x" else point[1]


def _boxes(output: TargetOutput) -> dict[str, list]:
    return {f"{c.aspect_ratio:g}": c.as_list() for c in output.crops}


def _shows(output: TargetOutput, goal: Goal, width: int, height: int) -> dict[str, bool]:
    return {f"{c.aspect_ratio:g}": crop_shows_goal(c, goal, width, height) for c in output.crops}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
