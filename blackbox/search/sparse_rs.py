"""A Sparse-RS-style random search (Croce et al., AAAI 2022) as an Optuna sampler.

Sparse-RS attacks with patches by random search: keep the best candidate so far, propose a copy
in which a few patches get a new *location* or new *content* (alternating), on a schedule whose
step size decays as the budget is spent, and keep the proposal only if it scores better (greedy).
Written as a sampler, it runs on the same patch parameterisation, storage and budget as TPE: each
trial mutates the best completed trial, so acceptance is greedy by construction.

The schedule follows the paper's piecewise-constant halving of ``p_init`` at fixed fractions of the
budget; ``p`` is the fraction of patches changed and scales the size of a location move.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

from blackbox.search.search_space import PatchParam

# Fractions of the budget at which p halves (Sparse-RS's schedule, rescaled to any budget).
HALVING_POINTS: Sequence[float] = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


class SparseRSSampler(BaseSampler):
    def __init__(self, *, budget: int, p_init: float = 0.8, seed: int | None = None) -> None:
        if budget <= 0 or not 0 < p_init <= 1:
            raise ValueError(f"need budget > 0 and 0 < p_init <= 1, got {budget}, {p_init}")
        self.budget = int(budget)
        self.p_init = float(p_init)
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()

    def schedule(self, iteration: int) -> float:
        halvings = sum(iteration > point * self.budget for point in HALVING_POINTS)
        return self.p_init / 2**halvings

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._space.calculate(study)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, object]:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete or not search_space:
            return {}  # the first candidate is uniformly random
        best = max(complete, key=lambda t: t.value if t.value is not None else -np.inf)
        params = {name: best.params[name] for name in search_space if name in best.params}
        # Which patch each parameter belongs to, by the names the search space declares.
        named = {name: parsed for name in params if (parsed := PatchParam.parse(name)) is not None}
        patches = sorted({parsed.patch for parsed in named.values()})
        if not patches:
            return {}
        p = self.schedule(len(complete))
        n_changed = max(1, round(p * len(patches)))
        move_location = len(complete) % 2 == 0
        for patch in self._rng.choice(patches, size=n_changed, replace=False):
            for name, distribution in search_space.items():
                parsed = named.get(name)
                if parsed is None or parsed.patch != patch:
                    continue
                if parsed.is_location == move_location:
                    params[name] = self._mutate(params[name], distribution, p, parsed.is_location)
        return params

    def _mutate(self, value: object, distribution: BaseDistribution, p: float, is_location: bool) -> object:
        if isinstance(distribution, IntDistribution) and is_location:
            # A location move of at most p x the region's extent (at least one pixel).
            span = max(1, round(p * (distribution.high - distribution.low)))
            moved = int(value) + int(self._rng.integers(-span, span + 1))  # type: ignore[call-overload]
            return int(np.clip(moved, distribution.low, distribution.high))
        if isinstance(distribution, FloatDistribution) and is_location:
            span = max(1.0, p * (distribution.high - distribution.low))
            moved = float(value) + float(self._rng.uniform(-span, span))  # type: ignore[arg-type]
            return float(np.clip(moved, distribution.low, distribution.high))
        if isinstance(distribution, FloatDistribution):
            return float(self._rng.uniform(distribution.low, distribution.high))
        if isinstance(distribution, IntDistribution):
            return int(self._rng.integers(distribution.low, distribution.high + 1))
        if isinstance(distribution, CategoricalDistribution):  # e.g. a grid feature's kind
            return distribution.choices[int(self._rng.integers(len(distribution.choices)))]
        return value

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> object:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
