"""The per-image pipeline every command runs: clean query, goal, problem, attack, measurement, record.

``python -m blackbox`` (:mod:`blackbox.experiment.run`, PostgreSQL workers included), the comparison,
the robustness report, :func:`blackbox.attack` and the benchmarks all go through :class:`Pipeline`:

1. :meth:`Pipeline.clean`: the clean image's answer from the target (and from ``measure``);
2. :meth:`Pipeline.goal`: the goal from the scoring target's clean answer (:class:`GoalRule`);
3. :meth:`Pipeline.attack`: the :class:`~blackbox.attacks.AttackProblem`, the attack, the result
   scored on ``measure`` when there is one (the paper crafted on one model and scored on
   DeepGaze II), and the record (:func:`~blackbox.experiment.record.build_record`).

:meth:`Pipeline.run` does all three; a command that attacks one image many times (several eps or
methods) calls them one by one. Whatever skips an image raises :class:`ImageSkipped` with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from blackbox.attacks import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.core.full_size import full_size_adversarial
from blackbox.core.goal import Goal
from blackbox.core.goal_rule import GoalRule
from blackbox.core.images import LoadedImage, save_png
from blackbox.core.objective import score, succeeded, success_rule
from blackbox.core.visualize import side_by_side_picture
from blackbox.experiment.record import Record, build_record, measurement
from targets import Target, TargetOutput, TargetQueryError, require


class ImageSkipped(Exception):
    """An image (or one attack on it) was left out; ``reason`` says why, for ``errors.jsonl``.

    Not a user error: the command goes on with the next image and ends with exit code 3.
    ``target_counters`` are the target's counters spent on it (e.g. HTTP retries), if any.
    """

    def __init__(self, reason: str, *, target_counters: Mapping[str, int] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.target_counters = dict(target_counters or {})


@dataclass(frozen=True, kw_only=True)
class Clean:
    """One clean image and what the targets said of it.

    ``output``: the attacked target's answer; ``measured``: the scoring target's (``output`` itself
    when the pipeline has no ``measure``), from which the goal is chosen and results are scored.
    """

    image: LoadedImage
    output: TargetOutput
    measured: TargetOutput


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One finished attack: its problem, the clean answers, its result (scored on ``measure`` if any)
    and its record.

    Sizes and coordinates: the attack ran on the image's working copy (``working_width`` px wide);
    :attr:`adversarial`, :attr:`goal_box` and the points are at the original image's size and in its
    pixels, while :attr:`result`, :attr:`clean_output` and :attr:`adversarial_output` are the attack's
    and the target's own, on the working copy (:attr:`working_size`; :attr:`scale` converts).
    """

    problem: AttackProblem
    clean: Clean = field(repr=False)
    result: AttackResult
    record: Record = field(repr=False)

    def __repr__(self) -> str:
        r = self.record
        (cx, cy), (ax, ay) = self.clean_point, self.adversarial_point
        psnr = "inf" if r.get("psnr") is None else f"{r['psnr']:.1f}"
        sizes = f"{self.original_size[0]}x{self.original_size[1]}"
        if self.working_size != self.original_size:
            sizes += f", attacked at {self.working_size[0]}x{self.working_size[1]}"
        return (
            f"Outcome(image={r['image']!r}, target={r['target']!r}, success={self.success}, "
            f"queries={self.queries}, l2={r['l2']:.2f}, linf={r['linf'] * 255:.0f}/255, psnr={psnr}, "
            f"point=({cx:.0f}, {cy:.0f})->({ax:.0f}, {ay:.0f}), "
            f"goal={[round(v) for v in self.goal_box]}, size={sizes})"
        )

    @property
    def image_id(self) -> str:
        return self.result.image_id

    @cached_property
    def adversarial(self) -> np.ndarray:
        """``(H0, W0, 3)`` uint8 at the original image's size: the working copy's perturbation resized,
        added to the original and quantised within the budget measured at that size
        (:func:`~blackbox.core.full_size.full_size_adversarial`: L-inf unchanged, L2 eps times the
        square root of the pixel-count ratio)."""
        image = self.clean.image
        return full_size_adversarial(
            image.original_pixels, image.pixels, self.result.adversarial, self.result.budget
        )

    @property
    def working_adversarial(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 at the working resolution: exactly what the target was shown."""
        return self.result.adversarial

    @property
    def original_size(self) -> tuple[int, int]:
        """``(width, height)`` of the image as given."""
        pixels = self.clean.image.original_pixels
        return int(pixels.shape[1]), int(pixels.shape[0])

    @property
    def working_size(self) -> tuple[int, int]:
        """``(width, height)`` of the working copy the target was shown."""
        return self.clean.image.width, self.clean.image.height

    @property
    def scale(self) -> tuple[float, float]:
        """``(x, y)`` working pixels per original pixel."""
        (width, height), (original_w, original_h) = self.working_size, self.original_size
        return width / original_w, height / original_h

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """A working-copy position ``(x, y)`` in the original image's pixels."""
        sx, sy = self.scale
        return round(x / sx, 6), round(y / sy, 6)  # no float noise in a box given in whole pixels

    @property
    def goal_box(self) -> tuple[float, float, float, float]:
        """The goal ``(x0, y0, x1, y1)`` in the original image's pixels."""
        x0, y0, x1, y1 = self.result.goal.box
        return (*self.to_original(x0, y0), *self.to_original(x1, y1))

    @property
    def clean_point(self) -> tuple[float, float]:
        """The clean image's salient point (given, the map's argmax, or implied by the crops), in
        the original image's pixels."""
        return self.to_original(*self.clean_output.salient_point)

    @property
    def adversarial_point(self) -> tuple[float, float]:
        """The adversarial image's salient point, in the original image's pixels."""
        return self.to_original(*self.adversarial_output.salient_point)

    @property
    def success(self) -> bool:
        """Whether the crop moved to the goal, by the record's ``success_rule``."""
        return bool(self.result.success)

    @property
    def queries(self) -> int:
        """Target queries the attack spent (the clean image's one query not counted)."""
        return int(self.result.queries)

    @property
    def goal(self) -> Goal:
        """The goal on the working copy (:attr:`goal_box` gives it in the original's pixels)."""
        return self.result.goal

    @property
    def clean_output(self) -> TargetOutput:
        """What the scoring target (``measure``, else the target) said of the clean working copy."""
        return self.clean.measured

    @property
    def adversarial_output(self) -> TargetOutput:
        """What the scoring target said of the adversarial working copy."""
        return self.result.adversarial_output

    def picture(self) -> Image.Image:
        """The side-by-side picture a run writes (working copy): clean and adversarial with their
        salient points, crops and the goal, and the amplified perturbation, above a legend."""
        return side_by_side_picture(
            self.clean.image.pixels,
            self.result.adversarial,
            self.clean_output,
            self.adversarial_output,
            self.result.goal,
        )

    def show(self) -> Image.Image:
        """Show :meth:`picture`: inline in a notebook (IPython's ``display``), else in the system's
        image viewer (PIL's ``Image.show``). Returns the picture."""
        picture = self.picture()
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            get_ipython = None  # type: ignore[assignment]
        if get_ipython is not None and get_ipython() is not None:
            display(picture)
        else:
            picture.show()
        return picture

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`picture` to ``path`` (PNG; its folder made if missing); returns the path."""
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        self.picture().save(out, format="PNG")
        return out

    def save_adversarial(self, path: str | os.PathLike) -> Path:
        """Write :attr:`adversarial` (the original size) to ``path`` as an sRGB PNG; returns the path."""
        out = Path(path).expanduser()
        save_png(self.adversarial, out)
        return out


@dataclass(frozen=True)
class Skipped:
    """An image of a batch that could not be attacked (:class:`ImageSkipped` for a single image).

    ``success`` is ``False`` and ``reason`` says why (e.g. every clean crop already shows the goal).
    """

    image_id: str
    reason: str
    success: bool = False

    def __repr__(self) -> str:
        return f"Skipped(image={self.image_id!r}, reason={self.reason!r})"


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """The per-image work against one target (see the module docstring).

    Args:
        target: the cropper attacked.
        target_name: its name in records and study names (a zoo name, or one of the caller's).
        goal_rule: how the goal is chosen from the scoring target's clean answer.
        norm: ``l2`` or ``linf``, the norm ``eps`` bounds.
        eps_inf: the L-inf cap beside ``eps``, in [0, 1] units (``None``: none).
        success: the success setting, ``auto`` | ``point`` | ``crops`` | ``any_crop``
            (:mod:`blackbox.core.objective`); ``auto`` is resolved per target.
        measure: score every result on this model instead of ``target`` (a transfer measurement).
        measure_name: its name in records (required with ``measure``).
    """

    target: Target
    target_name: str
    goal_rule: GoalRule = field(default_factory=GoalRule)
    norm: str = "l2"
    eps_inf: float | None = None
    success: str = "auto"
    measure: Target | None = None
    measure_name: str | None = None

    def __post_init__(self) -> None:
        if self.measure is not None and not self.measure_name:
            raise ValueError("Pipeline(measure=...) needs measure_name=<its name in the records>")

    def check(self, attack: Attack) -> None:
        """Raise :class:`targets.MissingCapabilityError` (a ``ConfigError``) if the target lacks what
        ``attack`` needs (:attr:`~blackbox.attacks.Attack.requires`)."""
        require(self.target, attack.requires, by=f"attack={attack.name}", name=self.target_name)

    def clean(self, image: LoadedImage) -> Clean:
        """Query the clean image on the target (and the measure).

        Raises:
            ImageSkipped: a target failed to answer (a service down, a non-finite map); a re-run retries.
        """
        try:
            output = self.target.query([image.as_float])[0]
            measured = self.measure.query([image.as_float])[0] if self.measure is not None else output
        except TargetQueryError as error:
            raise ImageSkipped(f"clean image: {error}") from error
        return Clean(image=image, output=output, measured=measured)

    def goal(self, clean: Clean) -> Goal:
        """The goal, from the scoring target's clean answer.

        Raises:
            ImageSkipped: no goal fits (e.g. every clean crop already shows it: never a success).
        """
        try:
            return self.goal_rule.goal_for(clean.image, clean.measured)
        except ValueError as error:
            raise ImageSkipped(str(error)) from error

    def problem(self, clean: Clean, goal: Goal, *, eps: float) -> AttackProblem:
        """The attack problem on ``target`` at ``eps`` (the norm and success setting are the pipeline's)."""
        return AttackProblem(
            clean.image, clean.output, goal, eps, self.norm, self.target_name, self.success, self.eps_inf
        )

    def attack(
        self,
        attack: Attack,
        clean: Clean,
        goal: Goal,
        *,
        eps: float,
        crafter: Target | None = None,
    ) -> Outcome:
        """Run ``attack`` on one image at ``eps`` and record it.

        ``crafter``: craft on this (differentiable) stand-in instead of ``target``, and score on the
        measure, or on ``target`` when there is none (a transfer attack: compare's ``whitebox_target``).

        Raises:
            ImageSkipped: the attack produced nothing (:class:`AttackFailedError`) or a query failed.
        """
        target, measure, measure_name = self.target, self.measure, self.measure_name
        try:
            problem = self.problem(clean, goal, eps=eps)
            if crafter is not None:
                target = crafter
                problem = replace(problem, clean_output=crafter.query([clean.image.as_float])[0])
                measure, measure_name = self.measure or self.target, self.measure_name or self.target_name
            output = problem.clean_output
            result = attack.run(problem, target)
            if measure is None:
                record = build_record(
                    result,
                    clean.image,
                    output,
                    target_name=self.target_name,
                    has_point=target.gives_point,
                )
                return Outcome(problem=problem, clean=clean, result=result, record=record)
            crafted = measurement(result, clean.image, output, has_point=target.gives_point)
            result = measured(result, measure, clean.image, success=self.success)
        except (AttackFailedError, TargetQueryError) as error:  # a re-run retries it
            raise ImageSkipped(str(error)) from error
        record = build_record(
            result,
            clean.image,
            clean.measured,
            target_name=self.target_name,
            has_point=measure.gives_point,
            measure_name=str(measure_name),
            on_target=crafted,
        )
        return Outcome(problem=problem, clean=clean, result=result, record=record)

    def run(self, attack: Attack, image: LoadedImage, *, eps: float) -> Outcome:
        """Every step on one image; the record carries the target's counters spent on it, if any.

        Raises:
            ImageSkipped: the image or its attack was left out (the reason, and the counters spent).
        """
        before = self.target.counters()
        clean = self.clean(image)
        goal = self.goal(clean)
        try:
            outcome = self.attack(attack, clean, goal, eps=eps)
        except ImageSkipped as skipped:
            raise ImageSkipped(skipped.reason, target_counters=self._spent(before)) from skipped
        if counters := self._spent(before):  # e.g. HTTP requests and retries (not in the budget)
            outcome.record["target_counters"] = counters
        return outcome

    def _spent(self, before: Mapping[str, int]) -> dict[str, int]:
        return {key: value - before.get(key, 0) for key, value in self.target.counters().items()}


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
    success_now = succeeded(output, result.goal, width, height, has_point=has_point, rule=rule)
    # "to success" follows the measured verdict: none if the measure says no; a one-query attack
    # (white-box) that the measure calls a success succeeded at that query.
    to_success = result.queries_to_success if success_now else None
    if success_now and to_success is None and result.queries == 1:
        to_success = 1
    return replace(
        result,
        adversarial_output=output,
        success=success_now,
        queries_to_success=to_success,
        score=score(output, result.goal, width, height, has_point=has_point, rule=rule),
        success_rule=rule,
    )
