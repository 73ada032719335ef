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

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from blackbox.attacks import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.core.goal import Goal
from blackbox.core.goal_rule import GoalRule
from blackbox.core.images import LoadedImage
from blackbox.core.objective import score, succeeded, success_rule
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
    and its record."""

    problem: AttackProblem
    clean: Clean = field(repr=False)
    result: AttackResult
    record: Record = field(repr=False)

    @property
    def adversarial(self) -> np.ndarray:
        """``(H, W, 3)`` uint8 at the working resolution: exactly what the target was shown."""
        return self.result.adversarial

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
        return self.result.goal

    @property
    def clean_output(self) -> TargetOutput:
        """What the scoring target (``measure``, else the target) said of the clean image."""
        return self.clean.measured

    @property
    def adversarial_output(self) -> TargetOutput:
        """What the scoring target said of the adversarial image."""
        return self.result.adversarial_output


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
