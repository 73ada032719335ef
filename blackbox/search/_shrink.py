"""The decision-based L2 shrink after a search's first success (``shrink.enabled``, issue 18).

Once the search has a success, the rest of the budget goes to the smallest successful L2: bisection
on the scale of the best successful trial. Each probe re-renders that trial's config at ``scale *
eps`` (its params unchanged, its stored ``perturbation`` config at the smaller ``eps``), so a probe
is one target query and one ordinary Optuna trial, and replays byte for byte like any other.

Probes are trials asked with the best trial's params enqueued, marked with the user attributes
:data:`SCALE` (the fraction of ``eps``) and :data:`OF` (the bisected trial's number). The bisection's
state (``low``, ``high``) is rebuilt from the stored probes, so a resumed study goes on where the
interrupted one stopped and draws nothing at random. A probe that rounds to the clean image is not
sent (no query) and counts as a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import TrialState

from blackbox.core.metrics import perturbation_norms
from blackbox.search._session import SearchSession
from blackbox.search._study import UNCHANGED
from blackbox.search.search_space import render_config
from targets import TargetOutput

# User attribute of a shrink probe: the fraction of ``eps`` its config was rendered at.
SCALE = "shrink_scale"
# User attribute of a shrink probe: the number of the successful trial it bisects.
OF = "shrink_of"


@dataclass(frozen=True, kw_only=True)
class ShrinkSettings:
    """``shrink:`` in ``conf/config.yaml``.

    Args:
        enabled: after the first success, bisect its scale instead of stopping (implies early stop
            of the search itself).
        steps: at most this many bisection probes (one query each, within the budget); >= 1.
        tolerance: stop once ``high - low`` (fractions of ``eps``) is at most this; in (0, 1).

    Raises:
        ValueError: ``steps`` or ``tolerance`` out of range.
    """

    enabled: bool = False
    steps: int = 8
    tolerance: float = 1.0 / 256

    def __post_init__(self) -> None:
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


def shrink(session: SearchSession, settings: ShrinkSettings) -> Shrunk | None:
    """Bisect the scale of ``session``'s best successful trial within the budget left.

    Returns ``None`` when the search had no success. The bisected trial itself is the result when
    no probe succeeds with a smaller L2.
    """
    best, study, problem = session.best, session.study, session.problem
    if not best.success or best.trial is None:
        return None
    clean = problem.image.pixels
    trials = study.live.get_trials(deepcopy=False)
    base = trials[best.trial]
    base_config = base.user_attrs["perturbation"]
    base_image = best.adversarial if best.adversarial is not None else render_config(clean, base_config)
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
    low, high = 0.0, 1.0
    done = probes_of(trials, base.number)  # an earlier session's probes: the bisection so far
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
        study.live.enqueue_trial(dict(base.params), user_attrs={SCALE: scale, OF: base.number})
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
            break
        [(value, hit)] = session.tell([trial], [config], [adversarial], outputs)
        found.probes += 1
        if hit:
            high = scale
            _offer(found, trial.number, clean, adversarial, value, adversarial, outputs[0])
        else:
            low = scale
    return found


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
