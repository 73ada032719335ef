"""``attack=accumulate``: a black-box search that accumulates accepted changes, then shrinks L2.

As Square Attack (Andriushchenko et al., ECCV 2020), Sparse-RS (Croce et al., AAAI 2022) and SimBA
(Guo et al., ICML 2019) do, the perturbation is built one change at a time: each query tries the
accepted perturbation plus one new change (a :class:`~blackbox.search.proposals.Proposal`: a block
of the model's grid cells in one colour, or a low-frequency DCT function), projected back onto the
``eps`` ball, quantised to 8 bits as every attack's image is
(:meth:`blackbox.core.perturbation.PerturbationBudget.apply`),
and kept if the target's score rose. The search goes on from what it kept, at the edge of the
budget. An Optuna sampler (``sampler="tpe"``, the project's attack; ``"random"``: Square-Attack-like
random search) chooses each change's parameters, told the score's gain over the accepted
perturbation.

After the first success a decision-based shrink looks for the smallest successful perturbation
within the rest of the budget: bisection on the successful perturbation's scale (``shrink_steps``
queries), then the accumulation goes on at ``shrink_factor`` times the smallest successful radius,
from that perturbation scaled down, and every new success is bisected again. The result is the
smallest successful image found (``extra.first_success_l2`` keeps the first one's L2).

Every target call is one query of the budget (the clean image's query is the caller's, as for every
attack). Candidates that round to the clean image are never sent. Nothing of the target but its
outputs is used: no gradients, no weights. Seeded: the same seed gives the same queries and bytes.
There are no stored trials: an interrupted image is attacked again from the start.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import optuna

from blackbox.attacks._base import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.core.metrics import perturbation_norms
from blackbox.core.objective import score, succeeded
from blackbox.core.perturbation import Norm, PerturbationBudget
from blackbox.search.budget import QueryBudget
from blackbox.search.proposals import Proposal, make_proposal
from targets import Target, TargetOutput, require

SAMPLERS = ("tpe", "random")
# Candidates rounding to the clean image allowed before giving up, at least (or the budget, if larger).
MIN_UNSENT = 20


@dataclass
class _Found:
    """The best image so far: a success beats any failure, then the smaller L2, then the score."""

    adversarial: np.ndarray | None = None
    output: TargetOutput | None = None
    value: float = -np.inf
    success: bool = False
    l2: float = np.inf
    first_success_queries: int | None = None
    first_success_l2: float | None = None
    successes: list[tuple[int, float]] = field(default_factory=list)  # (query, L2) of each new best

    def offer(
        self, adversarial: np.ndarray, output: TargetOutput, value: float, hit: bool, l2: float, q: int
    ):
        if hit and self.first_success_queries is None:
            self.first_success_queries, self.first_success_l2 = q, l2
        better = (hit, -l2 if hit else value) > (self.success, -self.l2 if self.success else self.value)
        if better:
            self.adversarial, self.output, self.value, self.success = adversarial, output, value, hit
            self.l2 = l2 if hit else np.inf
            if hit:
                self.successes.append((q, l2))


class AccumulateSearch(Attack):
    """Accumulate accepted changes chosen by an Optuna sampler; shrink L2 after the first success.

    Args:
        budget: target queries per image (every call counts, the shrink's too); positive.
        proposal: ``"cells"`` (:class:`~blackbox.search.proposals.CellOffsets`), ``"dct"``
            (:class:`~blackbox.search.proposals.LowFrequencyDCT`) or a :class:`Proposal`.
        proposal_settings: keyword arguments of the named proposal.
        sampler: ``"tpe"`` (multivariate TPE, ``n_startup`` random changes first) or ``"random"``.
        step: each change's L2 as a fraction of the current radius, in (0, 1].
        n_startup: random changes before TPE models the gains (>= 1).
        shrink: after the first success, spend the rest of the budget on a smaller L2.
        shrink_steps: bisection queries on the scale of each new success (>= 0).
        shrink_factor: the accumulation after a bisection goes on at this fraction of the smallest
            successful radius, in (0, 1).
        accept_ties: keep a change whose score equals the accepted one (drift across the plateaus
            of crop-only scores, which only move when a crop jumps).
        early_stop: without ``shrink``, stop at the first success.
        seed: seeds the sampler (with the image and eps).
        label: the method's name in results.

    Raises:
        ValueError: any setting out of range; the message says which and what to use.
    """

    def __init__(
        self,
        *,
        budget: int,
        proposal: str | Proposal = "cells",
        proposal_settings: Mapping | None = None,
        sampler: str = "tpe",
        step: float = 0.3,
        n_startup: int = 8,
        shrink: bool = True,
        shrink_steps: int = 5,
        shrink_factor: float = 0.7,
        accept_ties: bool = False,
        early_stop: bool = True,
        seed: int = 0,
        label: str = "accumulate",
    ) -> None:
        if int(budget) <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {budget}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if not 0 < step <= 1:
            raise ValueError(f"step must be in (0, 1] (a fraction of eps per change), got {step}")
        if n_startup < 1:
            raise ValueError(f"n_startup must be >= 1 random changes before TPE, got {n_startup}")
        if shrink_steps < 0:
            raise ValueError(f"shrink_steps must be >= 0 bisection queries, got {shrink_steps}")
        if not 0 < shrink_factor < 1:
            raise ValueError(f"shrink_factor must be in (0, 1), got {shrink_factor}")
        self.proposal = (
            proposal if isinstance(proposal, Proposal) else make_proposal(str(proposal), proposal_settings)
        )
        self.budget = int(budget)
        self.sampler = sampler
        self.step = float(step)
        self.n_startup = int(n_startup)
        self.shrink = bool(shrink)
        self.shrink_steps = int(shrink_steps)
        self.shrink_factor = float(shrink_factor)
        self.accept_ties = bool(accept_ties)
        self.early_stop = bool(early_stop)
        self.seed = int(seed)
        self.name = str(label)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup, multivariate=True)

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        image = problem.image
        clean, width, height = image.pixels, image.width, image.height
        norm: Norm = problem.norm  # type: ignore[assignment]
        cap = problem.eps_inf  # the L-inf cap holds at every radius the shrink tries
        require(target, self.requires, by=self.name, name=problem.target_name)
        has_point, rule = target.gives_point, self.success_rule(problem, target)
        self.proposal.setup(height, width, problem.goal, problem.clean_output.salient_point)
        space = self.proposal.space()
        key = f"{image.image_id}|{problem.target_name}|{norm}={problem.eps:g}|{self.name}"
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize",
            sampler=self._sampler((self.seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31),
        )
        budget = QueryBudget(target, limit=self.budget)
        found = _Found()
        unsent = 0

        def ask(delta: np.ndarray, radius: float) -> tuple[float, bool] | None:
            """Quantise, query and score ``delta`` at ``radius``; None if it rounds to the clean image."""
            nonlocal unsent
            adversarial = PerturbationBudget(eps=radius, norm=norm, eps_inf=cap).apply(clean, delta)
            if np.array_equal(adversarial, clean):
                unsent += 1
                return None
            output = budget.query([adversarial.astype(np.float32) / 255.0])[0]
            value = score(output, problem.goal, width, height, has_point=has_point, rule=rule)
            hit = succeeded(output, problem.goal, width, height, has_point=has_point, rule=rule)
            l2 = perturbation_norms(clean, adversarial)["l2"] if hit else np.inf  # only successes' L2 count
            found.offer(adversarial, output, value, hit, l2, budget.used)
            return value, hit

        def bisect(delta: np.ndarray) -> float:
            """Smallest successful scale of the successful ``delta`` within ``shrink_steps`` queries."""
            low, high = 0.0, 1.0
            for _ in range(self.shrink_steps):
                if budget.remaining == 0:
                    break
                middle = (low + high) / 2
                answer = ask(delta * middle, problem.eps)
                if answer is not None and answer[1]:
                    high = middle
                else:
                    low = middle
            return high

        delta = np.zeros((height, width, 3), dtype=np.float64)
        room = (clean.astype(np.float64) / 255.0, 1.0 - clean.astype(np.float64) / 255.0)
        radius = float(problem.eps)
        current = score(problem.clean_output, problem.goal, width, height, has_point=has_point, rule=rule)
        pending: np.ndarray | None = None  # a successful perturbation the shrink has not bisected yet
        while budget.remaining > 0 and unsent < max(self.budget, MIN_UNSENT):
            if pending is not None:
                # Go on below the smallest successful radius, from that perturbation scaled down.
                delta = pending * bisect(pending) * self.shrink_factor
                pending = None
                radius = _size(delta, norm)
                if radius <= 0 or budget.remaining == 0:
                    break
                restart = ask(delta, radius)
                if restart is None:
                    break  # below one 8-bit level: nothing smaller can be sent
                current = restart[0]
                if restart[1]:
                    pending = delta
                continue
            trial = study.ask(space)
            change = PerturbationBudget(eps=self.step * radius, norm=norm, eps_inf=cap).rescale(
                self.proposal.change(trial.params)
            )
            candidate = delta + change
            np.clip(candidate, -room[0], room[1], out=candidate)  # what clipping to [0, 1] would waste
            candidate = PerturbationBudget(eps=radius, norm=norm, eps_inf=cap).project(candidate)
            answer = ask(candidate, radius)
            if answer is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            value, hit = answer
            study.tell(trial, float(np.clip(value - current, -1e6, 1e6)))
            if hit and self.shrink:
                pending = candidate
            elif hit and self.early_stop:
                break
            elif value > current or (self.accept_ties and value == current) or hit:
                delta, current = candidate, value

        if found.adversarial is None or found.output is None:
            raise AttackFailedError(
                f"{image.image_id}: every one of {unsent} candidate changes rounded to the clean image at "
                f"eps={problem.eps:g} ({norm}), so none was sent; raise eps or step"
            )
        return AttackResult(
            image_id=image.image_id,
            method=self.name,
            success=found.success,
            adversarial=found.adversarial,
            adversarial_output=found.output,
            goal=problem.goal,
            eps=problem.eps,
            norm=problem.norm,
            eps_inf=problem.eps_inf,
            queries=budget.used,
            queries_to_success=found.first_success_queries,
            score=found.value,
            extra={
                "first_success_l2": found.first_success_l2,
                "successes": [list(s) for s in found.successes],
                "unsent_candidates": unsent,
            },
            success_rule=rule,
        )


def _size(delta: np.ndarray, norm: Norm) -> float:
    """``delta``'s size in ``norm`` (the budget's eps plays no part in measuring it)."""
    return PerturbationBudget(eps=1.0, norm=norm).size(delta)
