"""The decision-based L2 shrink after a search's first success (``shrink.enabled``, issue 18).

Once the search has a success, the rest of the budget goes to the smallest successful L2: bisection
on the scale of the best successful trial. With ``rounds``, the search then goes on at ``factor``
times the smallest successful L2 (a new *round*: ordinary trials at that smaller ``eps``, the
sampler knowing every earlier trial), stops at its first success, bisects it, and so on until the
budget or the rounds are spent: as decision-based attacks (HopSkipJump, Sign-OPT) walk a success
towards the clean image, but through the search space, so every image is still one trial's config.

Each probe re-renders that trial's config at ``scale *
eps`` (its params unchanged, its stored ``perturbation`` config at the smaller ``eps``), so a probe
is one target query and one ordinary Optuna trial, and replays byte for byte like any other.

Probes are trials asked with the best trial's params enqueued, marked with the user attributes
:data:`SCALE` (the fraction of ``eps``) and :data:`OF` (the bisected trial's number). The bisection's
state (``low``, ``high``) is rebuilt from the stored probes, so a resumed study goes on where the
interrupted one stopped and draws nothing at random. A probe that rounds to the clean image is not
sent (no query) and counts as a failure. A round's trials carry their round number in their stored
config (:data:`ROUND`); each round's ``eps`` follows from the stored trials before it, so a resumed
study goes on in the round it stopped in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from blackbox.core.metrics import perturbation_norms
from blackbox.search._session import Best, SearchSession
from blackbox.search._study import UNCHANGED
from blackbox.search.budget import QueryBudget
from blackbox.search.search_space import render_config
from targets import TargetOutput

# User attribute of a shrink probe: the fraction of ``eps`` its config was rendered at.
SCALE = "shrink_scale"
# User attribute of a shrink probe: the number of the successful trial it bisects.
OF = "shrink_of"
# Key of a round's trial config: the round (1, 2, ...) that searched it.
ROUND = "shrink_round"
# Rounds end when the next would search above this fraction of the smallest successful L2.
LAST_FRACTION = 0.95


@dataclass(frozen=True, kw_only=True)
class ShrinkSettings:
    """``shrink:`` in ``conf/config.yaml``.

    Args:
        enabled: after the first success, bisect its scale instead of stopping (implies early stop
            of the search itself).
        steps: at most this many bisection probes (one query each, within the budget); >= 1.
        tolerance: stop once ``high - low`` (fractions of ``eps``) is at most this; in (0, 1).
        rounds: after a bisection, search again at ``factor`` x the smallest successful L2 (module
            doc), at most this many times; 0: stop after the first bisection.
        factor: each round's ``eps`` as a fraction of the smallest successful L2 so far, in (0, 1).
            After a round that found nothing, the next one tries halfway between its fraction and 1;
            the rounds end once that is above :data:`LAST_FRACTION`.
        patience: a round that has not succeeded within this many queries ends (>= 1).

    Raises:
        ValueError: ``steps``, ``tolerance``, ``rounds``, ``factor`` or ``patience`` out of range.
    """

    enabled: bool = False
    steps: int = 8
    tolerance: float = 1.0 / 256
    rounds: int = 0
    factor: float = 0.7
    patience: int = 20

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"shrink.patience must be at least 1 query a round, got {self.patience}")
        if self.rounds < 0:
            raise ValueError(f"shrink.rounds must be >= 0 searches after the bisection, got {self.rounds}")
        if not 0 < self.factor < 1:
            raise ValueError(
                f"shrink.factor must be in (0, 1) (of the smallest successful L2), got {self.factor}"
            )
        if self.steps < 1:
            raise ValueError(f"shrink.steps must be at least 1 bisection query, got {self.steps}")
        if not 0 < self.tolerance < 1:
            raise ValueError(f"shrink.tolerance must be in (0, 1) (a fraction of eps), got {self.tolerance}")


@dataclass
class Shrunk:
    """The smallest successful trial found: its number, L2, value, and (if sent in this session)
    image and output (``None``: from an earlier session, to be re-rendered and asked again)."""

    trial: int
    l2: float
    value: float
    adversarial: np.ndarray | None
    output: TargetOutput | None
    first_success_l2: float
    probes: int  # shrink queries stored for this bisection, earlier sessions' too


def probes_of(trials: list[optuna.trial.FrozenTrial], of: int) -> list[optuna.trial.FrozenTrial]:
    """The finished shrink probes of trial ``of``, in order (answered, or unsent as unchanged)."""
    return [
        t
        for t in trials
        if t.user_attrs.get(OF) == of
        and (t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and UNCHANGED in t.user_attrs))
    ]


def round_of(trial: optuna.trial.FrozenTrial) -> int:
    """The round that searched ``trial`` (0: the search before the first bisection)."""
    return int(trial.user_attrs.get("perturbation", {}).get(ROUND, 0))


def shrink(
    session: SearchSession,
    settings: ShrinkSettings,
    configure: Callable[[float], Callable[[Mapping[str, object]], dict]] | None = None,
) -> Shrunk | None:
    """Bisect the scale of ``session``'s best successful trial, then search and bisect in rounds.

    ``configure(eps)`` is the search's params-to-config function at ``eps`` (needed for
    ``settings.rounds > 0``). Returns ``None`` when the search had no success. The bisected trial
    itself is the result when no probe succeeds with a smaller L2.
    """
    best, study, problem = session.best, session.study, session.problem
    if not best.success or best.trial is None:
        return None
    clean = problem.image.pixels
    base = study.live.get_trials(deepcopy=False)[best.trial]
    base_image = (
        best.adversarial
        if best.adversarial is not None
        else render_config(clean, base.user_attrs["perturbation"])
    )
    first_l2 = perturbation_norms(clean, base_image)["l2"]
    found = Shrunk(
        trial=base.number,
        l2=first_l2,
        value=best.value,
        adversarial=best.adversarial,
        output=best.output,
        first_success_l2=first_l2,
        probes=0,
    )
    study.write_discarded()  # probes follow them: keep the stored numbers the live ones
    if not _bisect(session, settings, base.number, found):
        return found
    fraction = settings.factor
    for number in range(1, settings.rounds + 1):
        if configure is None or session.budget.remaining == 0 or fraction > LAST_FRACTION:
            break
        phase = _search_round(session, settings, number, configure(fraction * found.l2))
        if phase.gave_up is not None:
            break  # the target failed: a re-run resumes this round
        if not phase.best.success or phase.best.trial is None:
            fraction = (1 + fraction) / 2  # nothing this small found: the next round steps down less
            continue
        fraction = settings.factor
        trial = study.live.get_trials(deepcopy=False)[phase.best.trial]
        image = phase.best.adversarial
        if image is None:  # found by an earlier session
            image = render_config(clean, trial.user_attrs["perturbation"])
        _offer(found, trial.number, clean, image, phase.best.value, phase.best.adversarial, phase.best.output)
        study.write_discarded()
        if not _bisect(session, settings, trial.number, found):
            break
    return found


def _search_round(
    session: SearchSession,
    settings: ShrinkSettings,
    number: int,
    make_config: Callable[[Mapping[str, object]], dict],
) -> SearchSession:
    """Round ``number``: the search at a smaller ``eps`` (``make_config``'s) until its first
    success or ``patience`` queries, counted from the round's first stored query when resumed."""
    study, budget = session.study, session.budget

    def in_round(params: Mapping[str, object]) -> dict:
        return {**make_config(params), ROUND: number}

    stored = [t for t in study.live.get_trials(deepcopy=False) if round_of(t) == number]
    asked = [int(t.user_attrs["queries"]) - 1 for t in stored if "queries" in t.user_attrs]
    start = min(asked, default=budget.used)
    allowed = QueryBudget(budget.target, limit=min(budget.limit, start + settings.patience), used=budget.used)
    phase = SearchSession(
        settings=session.settings,
        problem=session.problem,
        study=study,
        budget=allowed,
        space=session.space,
        make_config=in_round,
        seed=session.seed,
        judge=session.judge,
        best=stored_best(
            [(t, int(t.user_attrs["queries"])) for t in stored if t.state == TrialState.COMPLETE], number
        ),
    )
    if allowed.remaining > 0:
        phase.run()
    budget.used = allowed.used
    session.failed += phase.failed
    return phase


def stored_best(completed: Iterable[tuple[optuna.trial.FrozenTrial, int]], number: int = 0) -> Best:
    """Round ``number``'s best (0: the search before the shrink) among stored completed trials, each
    with the queries spent up to it. Probes are left out: the shrink rebuilds its bisections."""
    best = Best()
    for trial, queries in completed:
        if OF not in trial.user_attrs and round_of(trial) == number:
            success = bool(trial.user_attrs.get("success"))
            best.offer(trial.number, float(trial.value), success, queries, None, None)
    return best


def _bisect(session: SearchSession, settings: ShrinkSettings, of: int, found: Shrunk) -> bool:
    """Bisect the successful trial ``of``'s scale into ``found``; ``False`` if a target call failed."""
    study, clean = session.study, session.problem.image.pixels
    trials = study.live.get_trials(deepcopy=False)
    base = trials[of]
    base_config = base.user_attrs["perturbation"]
    low, high = 0.0, 1.0
    done = probes_of(trials, of)  # an earlier session's probes: the bisection so far
    for probe in done:
        scale = float(probe.user_attrs[SCALE])
        hit = probe.state == TrialState.COMPLETE and bool(probe.user_attrs.get("success"))
        low, high = (low, min(high, scale)) if hit else (max(low, scale), high)
        found.probes += probe.state == TrialState.COMPLETE
        if hit:
            image = render_config(clean, probe.user_attrs["perturbation"])
            _offer(found, probe.number, clean, image, float(probe.value), None, None)  # type: ignore[arg-type]
    steps = len(done)
    while steps < settings.steps and high - low > settings.tolerance and session.budget.remaining > 0:
        steps += 1
        scale = (low + high) / 2
        config = dict(base_config, eps=float(base_config["eps"]) * scale)
        study.live.enqueue_trial(dict(base.params), user_attrs={SCALE: scale, OF: of})
        trial = study.live.ask(session.space)
        adversarial = render_config(clean, config)
        if np.array_equal(adversarial, clean):
            study.skip_unchanged(trial)
            study.write()
            low = scale
            continue
        study.mark_in_flight([trial], trial.number)
        outputs = session.send([trial], [adversarial], None)
        if outputs is None:  # the target call failed: stop here, a re-run resumes the bisection
            return False
        [(value, hit)] = session.tell([trial], [config], [adversarial], outputs)
        found.probes += 1
        if hit:
            high = scale
            _offer(found, trial.number, clean, adversarial, value, adversarial, outputs[0])
        else:
            low = scale
    return True


def _offer(
    found: Shrunk,
    number: int,
    clean: np.ndarray,
    image: np.ndarray,
    value: float,
    adversarial: np.ndarray | None,
    output: TargetOutput | None,
) -> None:
    """Keep the successful trial ``number`` if its L2 is smaller (8-bit rounding can break the
    order of scales, so the L2 decides, not the scale)."""
    l2 = perturbation_norms(clean, image)["l2"]
    if l2 < found.l2:
        found.trial, found.l2, found.value = number, l2, value
        found.adversarial, found.output = adversarial, output
