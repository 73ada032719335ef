"""The one interface every attack implements, and the one result type every attack returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from blackbox.core.goal import Goal
from blackbox.core.images import LoadedImage
from blackbox.core.objective import SuccessRule, success_rule
from blackbox.core.perturbation import PerturbationBudget
from targets import Capability, Target, TargetOutput


class AttackFailedError(RuntimeError):
    """An attack could not produce any result for an image (e.g. every target query failed)."""


@dataclass(frozen=True)
class AttackProblem:
    """One image to attack: the clean 8-bit image, what the target said of it, and the goal.

    ``eps``, ``norm`` and ``eps_inf`` (the L-inf cap, [0, 1] units, or ``None``) are the perturbation
    budget's numbers, kept as fields for the callers that build a problem positionally; attacks use
    :attr:`budget`, which holds the norm arithmetic.

    Raises:
        blackbox.core.perturbation.PerturbationBudgetError: ``norm`` is not ``l2``/``linf`` or
            ``eps`` is not a finite number > 0.
    """

    image: LoadedImage
    clean_output: TargetOutput
    goal: Goal
    eps: float
    norm: str
    target_name: str
    success: str = "auto"  # the success setting: auto | point | crops | any_crop (blackbox.core.objective)
    eps_inf: float | None = None  # the L-inf cap beside eps, [0, 1] units (3 / 255: 3 levels); None: none

    def __post_init__(self) -> None:
        self.budget  # noqa: B018 - a bad eps or norm is refused here, where the problem is made

    @cached_property
    def budget(self) -> PerturbationBudget:
        """The perturbation budget (``eps`` in ``norm``, capped by ``eps_inf``), with its norm arithmetic."""
        return PerturbationBudget(eps=self.eps, norm=self.norm, eps_inf=self.eps_inf)  # type: ignore[arg-type]


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
    eps_inf: float | None = None  # the L-inf cap the attack worked within, [0, 1] units (None: none)

    @property
    def budget(self) -> PerturbationBudget:
        """The perturbation budget the attack worked within (``eps`` in ``norm``, capped by ``eps_inf``)."""
        return PerturbationBudget(eps=self.eps, norm=self.norm, eps_inf=self.eps_inf)  # type: ignore[arg-type]


class Attack(abc.ABC):
    """An attack: given a problem and a target, find an adversarial image within the budget."""

    name: str = "attack"

    #: What the attack needs of a target beyond answering queries (``{Capability.GRADIENTS}`` for the
    #: gradient attacks). :meth:`run` starts with :func:`targets.require` on it, and the entry points
    #: check it before any image is loaded, so a target that lacks it fails at once, with one message.
    requires: ClassVar[frozenset[Capability]] = frozenset()

    @abc.abstractmethod
    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        """Attack one image.

        Raises :class:`targets.MissingCapabilityError` if ``target`` lacks what :attr:`requires` names.
        """

    @staticmethod
    def success_rule(problem: AttackProblem, target: Target) -> SuccessRule:
        """The rule the problem's ``success`` setting means for ``target`` (``auto`` resolved)."""
        return success_rule(problem.success, target)
