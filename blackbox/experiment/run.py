"""One run: every image of the dataset attacked, outputs written under the run folder.

Used by ``python -m blackbox`` (Hydra) and callable from Python with a composed config.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from blackbox.attacks import (
    Attack,
    AttackFailedError,
    AttackProblem,
    AttackResult,
    IterativeFGM,
)
from blackbox.core.datasets import sources_from_config
from blackbox.core.goal import Goal, GoalError, default_goal, goal_axis, peak_along, user_goal
from blackbox.core.images import ImageLoadError, LoadedImage, save_png
from blackbox.core.metrics import ssim
from blackbox.core.objective import SUCCESS_RULES, score, succeeded, success_rule
from blackbox.core.visualize import side_by_side
from blackbox.experiment.jsonl import JsonlError, append_record, read_records
from blackbox.experiment.run_folder import check_resume_settings, working_in
from blackbox.experiment.storage import make_storage
from blackbox.experiment.study import open_experiment
from blackbox.search import PatchSearch
from blackbox.settings.checks import check_run_config
from targets import Capability, DifferentiableTarget, Target, TargetOutput, TargetQueryError, require
from targets._zoo import instantiate_target, load

# Exit codes of `python -m blackbox`.
EXIT_OK, EXIT_SKIPPED, EXIT_NOTHING_DONE, EXIT_BAD_CONFIG = 0, 3, 4, 2


@dataclass
class RunSummary:
    run_dir: Path
    records: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if not self.records and not self.resumed:
            return EXIT_NOTHING_DONE
        return EXIT_SKIPPED if self.skipped else EXIT_OK


def make_goal(cfg: Mapping, image: LoadedImage, clean: TargetOutput) -> Goal:
    """The configured goal for ``image``, along the axis its clean crops cut (:func:`goal_axis`).

    Raises :class:`GoalError` if every clean crop already shows the goal: no crop could move to it,
    so no result on it could be a success (the image is skipped with that reason).
    """
    goal_cfg = cfg.get("goal") or {}
    band = float(goal_cfg.get("band_width", 0.1))
    axis = goal_axis(clean.crops, image.width, image.height)
    if goal_cfg.get("box") is not None or goal_cfg.get("point") is not None:
        box = goal_cfg.get("box")
        point = goal_cfg.get("point")
        goal = user_goal(
            width=image.width,
            height=image.height,
            peak_x=peak_along(clean.log_density, clean.salient_point, axis),
            box=tuple(box) if box is not None else None,
            point=tuple(point) if point is not None else None,
            band_width=band,
            axis=axis,
        )
    else:
        goal = default_goal(
            width=image.width,
            height=image.height,
            log_density=clean.log_density,
            salient_point=clean.salient_point,
            band_width=band,
            fallback_distance=float(goal_cfg.get("fallback_distance", 0.15)),
            axis=axis,
            crops=clean.crops,
        )
    if clean.crops and all(goal.shown_by(c, image.height, image.width) for c in clean.crops):
        raise GoalError(
            f"every clean crop already shows the goal {[round(v) for v in goal.box]} ({goal.source}, "
            f"along {'columns' if axis == 'x' else 'rows'}): no crop can move to it, so it cannot be "
            "a success; give a goal some clean crop leaves out (goal.box=[x0,y0,x1,y1]), or a smaller "
            "goal.band_width"
        )
    return goal


_FROM_CONFIG = object()


def make_attack(
    cfg: DictConfig, run_dir: Path, *, storage=_FROM_CONFIG, trial_callbacks: Sequence[Callable] = ()
) -> Attack:
    """The configured attack: the black-box search, or a white-box attack from ``conf/attack/``.

    ``storage`` and ``trial_callbacks`` (e.g. artifact upload) come from the run's experiment.
    """
    if cfg.attack.name != "blackbox":
        settings = {k: v for k, v in OmegaConf.to_container(cfg.attack, resolve=True).items() if k != "name"}  # type: ignore[union-attr]
        return instantiate(settings)
    if storage is _FROM_CONFIG:
        storage = make_storage(cfg.storage.kind, run_dir, url=cfg.storage.get("url"))
    sampler_factory = instantiate(cfg.sampler.factory)
    return PatchSearch(
        sampler_factory=lambda seed: sampler_factory(seed=seed),
        sampler_name=str(cfg.sampler.name),
        search=OmegaConf.to_container(cfg.search, resolve=True),  # type: ignore[arg-type]
        budget=int(cfg.budget),
        batch_size=int(cfg.batch_size),
        early_stop=bool(cfg.early_stop),
        storage=storage,
        seed=int(cfg.seed),
        progress=bool(cfg.get("progress", True)),
        warm_start=make_warm_start(cfg),
        trial_callbacks=trial_callbacks,
        write_behind=bool(cfg.storage.get("write_behind", True)),
        ask_ahead=bool(cfg.get("ask_ahead", True)),
    )


def load_stand_in(setting: str, name: str, aspect_ratios) -> DifferentiableTarget:
    """The zoo target ``name`` as a differentiable stand-in (for ``warm_start=``, ``whitebox_target=``)."""
    stand_in = load(name, aspect_ratios=aspect_ratios)
    advice = f"name a zoo target that gives gradients (a local saliency model, e.g. {setting}=classic)"
    require(stand_in, {Capability.GRADIENTS}, by=setting, name=name, advice=advice)
    return cast(DifferentiableTarget, stand_in)  # the targets that give gradients are these


def make_warm_start(cfg: DictConfig):
    """``warm_start=<zoo name>``: iterative FGM on that local, differentiable stand-in."""
    name = cfg.get("warm_start")
    if not name:
        return None
    stand_in = load_stand_in("warm_start", str(name), cfg.aspect_ratios)
    crafter = IterativeFGM(steps=3, gradcam=stand_in.feature_layer() is not None, seed=int(cfg.seed))

    def transfer_perturbation(problem: AttackProblem) -> np.ndarray:
        result = crafter.run(problem, stand_in)
        return (result.adversarial.astype(np.float64) - problem.image.pixels) / 255.0

    return transfer_perturbation


def run(cfg: DictConfig, run_dir: Path, *, target_name: str, target: Target | None = None) -> RunSummary:
    """Attack every image; write PNGs, ``results.jsonl``, ``errors.jsonl`` and ``summary.md``.

    One process at a time works in ``run_dir`` (see :mod:`blackbox.experiment.run_folder`); a folder left by a
    killed run resumes: finished images are kept, an image's finished trials are not redone.
    """
    settings = OmegaConf.to_container(cfg, resolve=True)
    check_run_config(settings)  # type: ignore[arg-type]
    with working_in(run_dir, cfg):
        resume_settings = {
            **settings,  # type: ignore[dict-item]
            "target": target_name,
            "attack": cfg.attack.name,
            "sampler": cfg.sampler.name,
        }
        check_resume_settings(run_dir, resume_settings)
        for path in (run_dir / "results.jsonl", run_dir / "errors.jsonl"):
            read_records(path)  # a torn last line is set aside now, before anything is appended
        return _run(cfg, run_dir, target_name=target_name, target=target)


def _run(cfg: DictConfig, run_dir: Path, *, target_name: str, target: Target | None) -> RunSummary:
    sources = sources_from_config(image=cfg.get("image"), dataset=OmegaConf.to_container(cfg.dataset))  # type: ignore[arg-type]
    run_dir.mkdir(parents=True, exist_ok=True)
    target = target if target is not None else instantiate_target(cfg.target)
    # measure=<zoo name>: score on another model than the one attacked (transfer; the paper's DeepGaze II).
    measure_name = cfg.get("measure")
    measure = load(str(measure_name), aspect_ratios=cfg.aspect_ratios) if measure_name else None
    experiment = open_experiment(cfg, run_dir)  # storage, artifacts, which images are done
    callbacks = experiment.trial_callbacks(str(cfg.get("artifacts", "best")))
    attack = make_attack(cfg, run_dir, storage=experiment.storage, trial_callbacks=callbacks)
    require(target, attack.requires, by=f"attack={attack.name}", name=target_name)  # before any image
    summary = RunSummary(run_dir)
    results_path, errors_path = run_dir / "results.jsonl", run_dir / "errors.jsonl"
    # The whole job's progress (image k of N, time left); each image's search has its own bar.
    job = tqdm(total=len(sources), desc="images", unit="image", disable=not cfg.get("progress", True))
    scheduled = _counted(experiment.schedule(sources, cfg.get("working_width")), job)

    for source, loaded in scheduled:
        if experiment.is_done(source.image_id):
            summary.resumed.append(source.image_id)
            continue
        if isinstance(loaded, ImageLoadError):
            _skip(summary, errors_path, source.image_id, source.location, str(loaded))
            continue
        before = target.counters()
        try:
            clean_output = target.query([loaded.as_float])[0]
            measured_clean = measure.query([loaded.as_float])[0] if measure is not None else clean_output
        except TargetQueryError as error:  # a service down: the image is skipped, a re-run retries it
            _skip(summary, errors_path, source.image_id, source.location, f"clean image: {error}")
            continue
        try:
            goal = make_goal(cfg, loaded, measured_clean)
        except ValueError as error:
            _skip(summary, errors_path, source.image_id, source.location, str(error))
            continue
        problem = AttackProblem(
            loaded,
            clean_output,
            goal,
            float(cfg.eps),
            str(cfg.norm),
            target_name,
            str(cfg.get("success", "auto")),
        )
        try:
            result, record = attack_image(attack, problem, target, measure, measured_clean, measure_name)
        except (AttackFailedError, TargetQueryError) as error:
            counters = _counters_since(before, target)
            _skip(summary, errors_path, source.image_id, source.location, str(error), counters)
            continue
        if counters := _counters_since(before, target):  # e.g. HTTP requests and retries (not in the budget)
            record["target_counters"] = counters
        save_png(result.adversarial, run_dir / "adversarial" / f"{loaded.image_id}.png")
        side_by_side(
            loaded.pixels,
            result.adversarial,
            measured_clean,
            result.adversarial_output,
            goal,
            run_dir / "side_by_side" / f"{loaded.image_id}.png",
        )
        experiment.record(record)
        summary.records.append(record)

    job.close()
    experiment.close()
    records = read_records(results_path)
    errors = read_records(errors_path)
    table = summary_table(records) + skipped_table(errors, records)
    last_line = verdict(records, skipped_table_count(errors, records))
    (run_dir / "summary.md").write_text(f"{table}\n\n{last_line}\n")
    print(table)
    if summary.skipped:
        print(f"\n{len(summary.skipped)} input(s) skipped; reasons in {errors_path}", file=sys.stderr)
    print(f"\nrun folder: {run_dir}")
    print(last_line)
    return summary


def _counted(items: Iterator[tuple], bar: tqdm) -> Iterator[tuple]:
    """``items`` as they come, the bar advanced once each is done with (also when skipped)."""
    for item in items:
        bar.set_postfix_str(str(item[0].image_id), refresh=False)
        yield item
        bar.update(1)


def verdict(records: list[dict], skipped: int = 0) -> str:
    """One line for the end of a run: how many attacked images had their crops moved to the goal.

    Images whose clean salient point was already in the goal are not counted as attacked.
    """
    attacked = [r for r in records if not r["clean_in_goal"]]
    moved = sum(bool(r["success"]) for r in attacked)
    notes = []
    if len(attacked) < len(records):
        notes.append(f"{len(records) - len(attacked)} already in the goal")
    if skipped:
        notes.append(f"{skipped} skipped, see errors.jsonl")
    extra = f" ({'; '.join(notes)})" if notes else ""
    if not attacked:
        return f"verdict: no image attacked{extra}"
    return f"verdict: {moved} of {len(attacked)} images: crop moved to the goal{extra}"


def skipped_table_count(errors: list[dict], records: list[dict]) -> int:
    """How many inputs are skipped and not attacked since (as :func:`skipped_table` lists them)."""
    done = {r["image"] for r in records}
    return len({e["image"] for e in errors if e["image"] not in done})


def sweep_table(jobs: Sequence[tuple[str, Path]]) -> str:
    """One Markdown table for a ``-m`` sweep: a row per job (its overrides) from its results.

    ``jobs`` is ``(overrides, run folder)`` per job; a job that wrote no results shows dashes.
    """
    rows = [
        "| job | settings | images | success | shift % dist | queries | L2 | skipped |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for number, (overrides, folder) in enumerate(jobs):
        try:
            records = read_records(folder / "results.jsonl")
            skipped = skipped_table_count(read_records(folder / "errors.jsonl"), records)
        except JsonlError:
            records, skipped = [], 0
        rate = success_rate(records)

        def mean(key: str, records: list[dict] = records) -> str:
            values = [r[key] for r in records if r.get(key) is not None]
            return f"{float(np.mean(values)):.1f}" if values else "-"

        rows.append(
            f"| {number} | {overrides or '-'} | {len(records)} | "
            f"{'-' if math.isnan(rate) else f'{100 * rate:.0f}%'} | {mean('shift_pct_distance')} | "
            f"{mean('queries')} | {mean('l2')} | {skipped} |"
        )
    return "\n".join(rows)


def attack_image(
    attack: Attack,
    problem: AttackProblem,
    target: Target,
    measure: Target | None,
    measured_clean: TargetOutput,
    measure_name: str | None,
) -> tuple[AttackResult, dict]:
    """Attack one image and build its ``results.jsonl`` record.

    With a measuring target, the record scores the adversarial image on it (the paper crafted on one
    model and measured on DeepGaze II) and keeps what the attacked target said under ``on_target``.
    """
    result = attack.run(problem, target)
    record = result.record(problem.image, problem.clean_output, has_point=target.gives_point)
    record.update(target=problem.target_name, clean_queries=1)
    if measure is not None:
        crafted = record
        result = measured(result, measure, problem.image, success=problem.success)
        record = result.record(problem.image, measured_clean, has_point=measure.gives_point)
        record.update(target=problem.target_name, measure=str(measure_name), clean_queries=1)
        record["on_target"] = {k: crafted[k] for k in ON_TARGET_KEYS}
    record["ssim"] = ssim(problem.image.pixels, result.adversarial)
    return result, record


ON_TARGET_KEYS = ("success", "shift_pct_distance", "shift_pct_width", "score", "salient_point_adversarial")


def measured(
    result: AttackResult, measure: Target, image: LoadedImage, *, success: str = "auto"
) -> AttackResult:
    """The same adversarial image, scored by the measuring target instead of the attacked one.

    ``success`` is the run's setting; ``auto`` means the rule that suits the measuring target.
    """
    output = measure.query([result.adversarial.astype(np.float32) / 255.0])[0]
    has_point = measure.gives_point
    rule = success_rule(success, measure)
    width, height = image.width, image.height
    success = succeeded(output, result.goal, width, height, has_point=has_point, rule=rule)
    # "to success" follows the measured verdict: none if the measure says no; a one-query attack
    # (white-box) that the measure calls a success succeeded at that query.
    to_success = result.queries_to_success if success else None
    if success and to_success is None and result.queries == 1:
        to_success = 1
    return replace(
        result,
        adversarial_output=output,
        success=success,
        queries_to_success=to_success,
        score=score(output, result.goal, width, height, has_point=has_point, rule=rule),
        success_rule=rule,
    )


def _counters_since(before: dict[str, int], target: Target) -> dict[str, int]:
    return {key: value - before.get(key, 0) for key, value in target.counters().items()}


def _skip(
    summary: RunSummary,
    errors_path: Path,
    image_id: str,
    location: str,
    reason: str,
    counters: dict[str, int] | None = None,
) -> None:
    record: dict = {"image": image_id, "source": location, "error": reason}
    if counters:
        record["target_counters"] = counters
    summary.skipped.append(record)
    append_record(errors_path, record)
    print(f"skipped {location}: {reason}", file=sys.stderr)


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        # Rounding first, then + 0.0, prints a tiny negative as "0.0", not "-0.0".
        return "inf" if math.isinf(value) else f"{round(value, digits) + 0.0:.{digits}f}"
    return str(value)


def summary_table(records: list[dict]) -> str:
    """A Markdown table, one row per image and a mean row.

    An image whose clean salient point already lies in the goal succeeds trivially: the table marks
    it (``clean in goal``) and the mean row's success rate counts only the other images. ``success``
    is by the run's rule (``success=``); ``point / crops / any crop`` gives every rule's verdict
    (``n/a``: no crop can hold the goal; ``clean``: the clean image already met that rule), and the
    mean row each rule's rate over the images it counts (``40% of 5``), which leaves out both.
    """
    header = (
        "| image | goal | clean in goal | success | point / crops / any crop | shift % dist | shift % width "
        "| queries | to success | crops showing goal | L2 | Linf*255 | PSNR |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [header]
    for r in records:
        crops = r.get("crop_contains_goal") or {}
        clean_crops = r.get("clean_crop_contains_goal") or {}
        rows.append(
            f"| {r['image']} | {r['goal']['source']} | {_fmt(r['clean_in_goal'])} | {_fmt(r['success'])} | "
            f"{_by_rule(r)} | {_fmt(r['shift_pct_distance'])} | {_fmt(r['shift_pct_width'])} | "
            f"{r['queries']} | {_fmt(r['queries_to_success'])} | "
            f"{sum(clean_crops.values())}→{sum(crops.values())}/{len(crops)} | "
            f"{_fmt(r['l2'], 2)} | {_fmt(r['linf'] * 255, 0)} | {_fmt(r['psnr'])} |"
        )
    if records:

        def mean(key: str) -> float:
            values = [r[key] for r in records if r.get(key) is not None]
            return float(np.mean(values)) if values else float("nan")

        rate_text = _rate_text(success_rate(records))
        trivial = sum(bool(r["clean_in_goal"]) for r in records)
        rates = " / ".join(
            _rate_text(rule_success_rate(records, rule), _rule_counted(records, rule))
            for rule in SUCCESS_RULES
        )
        rows.append(
            f"| **mean ({len(records)})** | | {trivial} | {rate_text} | {rates} | "
            f"{mean('shift_pct_distance'):.1f} | {mean('shift_pct_width'):.1f} | {mean('queries'):.1f} | | | "
            f"{mean('l2'):.2f} | "
            f"{mean('linf') * 255:.0f} | {mean('psnr'):.1f} |"
        )
    return "\n".join(rows)


def skipped_table(errors: list[dict], records: list[dict]) -> str:
    """The inputs skipped and not attacked since (a re-run retries them), so none goes missing unseen."""
    done = {r["image"] for r in records}
    latest = {e["image"]: e for e in errors if e["image"] not in done}
    if not latest:
        return ""
    rows = [
        f"\n\n**Skipped ({len(latest)})**, not in the table above:\n",
        "| image | file | reason |",
        "|---|---|---|",
    ]
    rows += [f"| {e['image']} | {e['source']} | {e['error'].replace('|', '/')} |" for e in latest.values()]
    return "\n".join(rows)


def _by_rule(record: dict) -> str:
    """``yes / no / n/a`` for the point, crops and any-crop rules (``-`` in records made before them)."""
    by_rule = record.get("success_by_rule")
    if not by_rule:
        return "-"
    clean = record.get("clean_success_by_rule") or {}

    def verdict_text(rule: str) -> str:
        if by_rule.get(rule) is None:
            return "n/a"
        return "clean" if clean.get(rule) else _fmt(by_rule[rule])

    return " / ".join(verdict_text(rule) for rule in SUCCESS_RULES)


def _rate_text(rate: float, counted: int | None = None) -> str:
    if math.isnan(rate):
        return "-"
    return f"{100 * rate:.0f}%" if counted is None else f"{100 * rate:.0f}% of {counted}"


def _rule_verdicts(records: list[dict], rule: str) -> list[bool]:
    return [
        bool(r["success_by_rule"][rule])
        for r in records
        if r.get("success_by_rule")
        and r["success_by_rule"].get(rule) is not None
        and not r["clean_success_by_rule"].get(rule)
    ]


def _rule_counted(records: list[dict], rule: str) -> int:
    return len(_rule_verdicts(records, rule))


def rule_success_rate(records: list[dict], rule: str) -> float:
    """Success by ``rule`` over the images it applies to whose clean image did not already meet it."""
    verdicts = _rule_verdicts(records, rule)
    return float(np.mean(verdicts)) if verdicts else float("nan")


def success_rate(records: list[dict]) -> float:
    """Success over the images whose clean image did not already succeed (NaN if none).

    Images where the run's rule does not apply (no crop can hold the goal) are left out too.
    """
    attacked = [
        r
        for r in records
        if not r["clean_in_goal"]
        and (r.get("success_by_rule") or {}).get(r.get("success_rule", "point"), False) is not None
    ]
    return float(np.mean([r["success"] for r in attacked])) if attacked else float("nan")
