"""The one interface every attack implements, and the one result type every attack returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from blackbox.core.goal import Goal
from blackbox.core.images import LoadedImage
from blackbox.core.objective import SuccessRule, success_rule
from targets import Output, Target, TargetOutput


class AttackFailedError(RuntimeError):
    """An attack could not produce any result for an image (e.g. every target query failed)."""


@dataclass(frozen=True)
class AttackProblem:
    """One image to attack: the clean 8-bit image, what the target said of it, and the goal."""

    image: LoadedImage
    clean_output: TargetOutput
    goal: Goal
    eps: float
    norm: str
    target_name: str
    success: str = "auto"  # the success setting: auto | point | crops | any_crop (blackbox.core.objective)


@dataclass
class AttackResult:
    """What every attack returns (black-box or white-box), so all can be compared on one table."""

    image_id: str
    method: str
    success: bool
    adversarial: np.ndarray = field(repr=False)  # (H, W, 3) uint8, what the target was shown
    adversarial_output: TargetOutput = field(repr=False)
    goal: Goal
    eps: float
    norm: str
    queries: int  # target queries the attack spent (gradient steps count as none)
    queries_to_success: int | None  # queries spent up to the first success; None: no success
    score: float
    best_trial: int | None = None
    perturbation: dict | None = None  # the trial config that replays the adversarial image
    failed_queries: int = 0
    extra: dict = field(default_factory=dict)
    success_rule: SuccessRule = "point"  # the rule ``success`` was judged by (blackbox.core.objective)


class Attack(abc.ABC):
    """An attack: given a problem and a target, find an adversarial image within the budget."""

    name: str = "attack"

    @abc.abstractmethod
    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        """Attack one image."""

    @staticmethod
    def has_point(target: Target) -> bool:
        return Output.POINT in target.outputs or Output.SALIENCY in target.outputs

    @staticmethod
    def success_rule(problem: AttackProblem, target: Target) -> SuccessRule:
        """The rule the problem's ``success`` setting means for ``target`` (``auto`` resolved)."""
        return success_rule(problem.success, target)
