"""One perturbation for every cropper: an accumulating black-box search over an ensemble, after EoT.

The loop of :class:`blackbox.search.accumulate.AccumulateSearch` (Square Attack / SimBA style: try
the accepted perturbation plus one change, keep it if the value rose), with three differences:

* a candidate's value is the ensemble objective (:mod:`.ensemble`) over every cropper and every
  treatment of the fixed EoT sample (:mod:`.transforms`): each candidate is quantised to 8 bits,
  treated as the platform would treat it (shrunk, JPEG-encoded), and only then shown to each cropper;
* every image shown to every cropper is one query of the budget, counted per cropper
  (:class:`EnsembleQueries`); a candidate is sent only if the whole ensemble's queries still fit;
* after the first candidate that every pair keeps, a bisection on its scale (``shrink_steps``
  candidates) looks for a smaller one that is still kept everywhere (a smaller L-inf and L2).

The budget is :class:`~blackbox.core.perturbation.PerturbationBudget` at the working size (L2 ``eps``
with the ``eps_inf`` cap). Changes are proposed by :mod:`blackbox.search.proposals` (``cells`` by
default) and chosen by an Optuna sampler (multivariate TPE, or random) told each change's gain.
Black-box throughout: croppers are only queried. Seeded: the same seed gives the same queries.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna

from blackbox.core.goal import Goal
from blackbox.core.perturbation import PerturbationBudget
from blackbox.protection.ensemble import PairScore, Rule, aggregate, box_goal, pair_margin
from blackbox.protection.transforms import PlatformTransform
from blackbox.search.budget import BudgetExhaustedError
from blackbox.search.proposals import make_proposal
from targets import Target

__all__ = ["EnsembleQueries", "Evaluation", "SearchResult", "evaluate", "search"]


class EnsembleQueries:
    """Counts every image shown to every cropper against one ``limit`` (per cropper in :attr:`used`)."""

    def __init__(self, croppers: Mapping[str, Target], *, limit: int) -> None:
        if int(limit) <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {limit}")
        self.croppers = dict(croppers)
        self.limit = int(limit)
        self.used: dict[str, int] = dict.fromkeys(self.croppers, 0)

    @property
    def total(self) -> int:
        return sum(self.used.values())

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.total)

    def query(self, name: str, images: Sequence[np.ndarray]):
        if len(images) > self.remaining:
            raise BudgetExhaustedError(
                f"{len(images)} queries asked for, {self.remaining} left of {self.limit}"
            )
        self.used[name] += len(images)  # counted before the call: a failed call still cost the service
        return self.croppers[name].query([image.astype(np.float32) / 255.0 for image in images])


@dataclass(frozen=True)
class Evaluation:
    """A candidate scored on every (cropper, treatment) pair: ``pairs[(cropper, treatment name)]``."""

    value: float
    pairs: dict[tuple[str, str], PairScore]

    @property
    def kept(self) -> bool:
        return all(score.kept for score in self.pairs.values())

    def kept_by(self, cropper: str) -> bool:
        return all(score.kept for (name, _), score in self.pairs.items() if name == cropper)


def evaluate(
    pixels: np.ndarray,
    *,
    box: Sequence[float],
    croppers: Mapping[str, Target],
    transforms: Sequence[PlatformTransform],
    queries: EnsembleQueries,
    rule: Rule = "worst",
) -> Evaluation:
    """Score ``pixels`` (``(H, W, 3)`` uint8; ``box`` in its pixels) after each treatment on each cropper.

    One query per (cropper, treatment): each cropper gets its treated images in one batch.
    """
    height, width = pixels.shape[:2]
    treated = [(t.name, t.apply(pixels)) for t in transforms]
    pairs: dict[tuple[str, str], PairScore] = {}
    for name, target in croppers.items():
        outputs = queries.query(name, [image for _, image in treated])
        for (treatment, image), output in zip(treated, outputs, strict=True):
            h, w = image.shape[:2]
            goal = box_goal(box, (w, h), (width, height))
            pairs[(name, treatment)] = pair_margin(target, output, goal, w, h)
    return Evaluation(aggregate(list(pairs.values()), rule), pairs)


@dataclass
class SearchResult:
    """What :func:`search` found: the best working-size image (kept everywhere if ``kept``)."""

    adversarial: np.ndarray
    clean: Evaluation
    best: Evaluation
    queries: dict[str, int]
    queries_to_kept: int | None = None
    candidates: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)  # (queries, value) of each accepted step

    @property
    def kept(self) -> bool:
        return self.best.kept


def search(
    clean: np.ndarray,
    *,
    goal: Goal,
    croppers: Mapping[str, Target],
    transforms: Sequence[PlatformTransform],
    budget: PerturbationBudget,
    queries: int,
    rule: Rule = "worst",
    proposal: str = "cells",
    proposal_settings: Mapping | None = None,
    sampler: str = "tpe",
    step: float = 0.3,
    n_startup: int = 8,
    shrink_steps: int = 3,
    seed: int = 0,
) -> SearchResult:
    """Search one perturbation of ``clean`` (``(H, W, 3)`` uint8, the working copy) that every cropper's
    every crop keeps ``goal`` (working pixels) after each of ``transforms`` (at working scale).

    ``queries`` bounds every image shown to every cropper, the clean image's too. Returns the first
    candidate kept everywhere (after the shrink), or the best value found.

    Raises:
        ValueError: ``queries`` smaller than one candidate's (croppers x treatments) queries, or a bad
            sampler, step or proposal setting.
    """
    if sampler not in ("tpe", "random"):
        raise ValueError(f"sampler must be tpe or random, got {sampler!r}")
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    per_candidate = len(croppers) * len(transforms)
    if queries < 2 * per_candidate:
        raise ValueError(
            f"budget={queries} queries is below two candidates' worth ({per_candidate} croppers x "
            f"treatments each, the clean image and one candidate); raise budget"
        )
    counter = EnsembleQueries(croppers, limit=queries)
    height, width = clean.shape[:2]
    box = goal.box

    def score(pixels: np.ndarray) -> Evaluation:
        return evaluate(pixels, box=box, croppers=croppers, transforms=transforms, queries=counter, rule=rule)

    start = score(clean)
    result = SearchResult(clean.copy(), start, start, counter.used)
    if start.kept:
        return result
    change_maker = make_proposal(proposal, proposal_settings)
    centre = ((goal.x0 + goal.x1) / 2, (goal.y0 + goal.y1) / 2)
    change_maker.setup(height, width, goal, centre)
    space = change_maker.space()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    key = f"protect|{width}x{height}|{box}|{budget}"
    if sampler == "random":
        chooser: optuna.samplers.BaseSampler = optuna.samplers.RandomSampler(
            seed=(seed + zlib.crc32(key.encode())) % 2**31
        )
    else:
        chooser = optuna.samplers.TPESampler(
            seed=(seed + zlib.crc32(key.encode())) % 2**31, n_startup_trials=n_startup, multivariate=True
        )
    study = optuna.create_study(direction="maximize", sampler=chooser)
    room = (clean.astype(np.float64) / 255.0, 1.0 - clean.astype(np.float64) / 255.0)
    delta = np.zeros((height, width, 3), dtype=np.float64)
    current = start
    unsent = 0
    while counter.remaining >= per_candidate and unsent < 50:
        trial = study.ask(space)
        change = budget.with_eps(step * budget.eps).rescale(change_maker.change(trial.params))
        candidate = delta + change
        np.clip(candidate, -room[0], room[1], out=candidate)
        candidate = budget.project(candidate)
        pixels = budget.apply(clean, candidate)
        if np.array_equal(pixels, clean):
            unsent += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        scored = score(pixels)
        result.candidates += 1
        study.tell(trial, float(np.clip(scored.value - current.value, -1e6, 1e6)))
        if scored.kept or scored.value > current.value:
            delta, current = candidate, scored
            result.adversarial, result.best = pixels, scored
            result.history.append((counter.total, scored.value))
        if scored.kept:
            result.queries_to_kept = counter.total
            break
    if result.kept:
        # Bisection on the kept perturbation's scale: the smallest scale still kept everywhere.
        low, high = 0.0, 1.0
        for _ in range(shrink_steps):
            if counter.remaining < per_candidate:
                break
            middle = (low + high) / 2
            pixels = budget.apply(clean, delta * middle)
            if np.array_equal(pixels, clean):
                low = middle
                continue
            scored = score(pixels)
            result.candidates += 1
            if scored.kept:
                high, result.adversarial, result.best = middle, pixels, scored
            else:
                low = middle
    result.queries = dict(counter.used)
    return result
