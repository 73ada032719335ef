"""``attack=square``: accumulated L-inf squares placed near the salient point and the goal, then pruned.

A change a person cannot see is a few 8-bit levels (the cap, ``eps_inf``), so it must be spread over
many pixels. As Square Attack (Andriushchenko et al., ECCV 2020, its L-inf version) does, each query
tries the accepted perturbation with one square *overwritten* by a pattern at plus or minus the cap,
and keeps it if the target's score rose. Two things differ, both measured on the 13 pictures of the
search-design table (docs/invisible.md):

* **Where the square goes.** White-box PGD spends most of its change near the clean salient point and
  in the goal band, and saliency croppers answer a change only within about 128 px of it. So a square
  is placed relative to an *anchor*, re-read from every accepted answer: the strongest point outside
  the goal (the rival the crop follows: the map's argmax outside the goal band, else the target's or
  the crops' salient point) or the strongest point inside the goal (the map's argmax there, else the
  goal's centre), offset by up to ``reach`` px. Square Attack's uniform placement is
  ``placement="uniform"``.
* **What the square holds.** A flat colour (one sign per RGB channel) or per-channel sign noise in
  blocks of 1, 2, 4 or 8 px: classic saliency answers colour contrast, FastGaze answers fine texture.

An Optuna sampler chooses each square (anchor, offset, log side, pattern, colour signs) and is told
the score's gain. After the first success the search *prunes* (``minimise``): it drops accepted
squares one at a time, oldest first, keeping each drop that still succeeds, then lowers the cap
level by level while it succeeds. Every target call is one query of the budget (the clean image's is
the caller's); nothing of the target is used but its outputs. Seeded: the same seed gives the same
queries and bytes. Given the run's storage (:meth:`SquareSearch.keeping_trials`), every query is
written as a trial when the image is done, and the result replays (:mod:`blackbox.search.square_trials`);
an interrupted image is attacked again from the start.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from blackbox.attacks._base import Attack, AttackProblem, AttackResult
from blackbox.core.goal import Goal
from blackbox.core.objective import salient_point
from blackbox.search._session import judge_for
from blackbox.search.budget import QueryBudget
from blackbox.search.patch_search import study_attrs, study_name
from blackbox.search.square_trials import encode_square, quantise, squares_config, squares_delta, write_study
from targets import Target, TargetOutput, require

SAMPLERS = ("random", "tpe")
PLACEMENTS = ("relative", "uniform")
PATTERNS = ("flat", "noise1", "noise2", "noise4", "noise8")


@dataclass(frozen=True)
class Square:
    """One accepted change: the ``side x side`` square at row ``y0``, column ``x0`` holds ``signs``.

    ``signs`` is ``(side, side, 3)`` int16 in {-1, 1}: the pattern; the perturbation is
    the signs times the cap in 8-bit levels.
    """

    y0: int
    x0: int
    signs: np.ndarray

    @property
    def side(self) -> int:
        return int(self.signs.shape[0])

    def as_dict(self) -> dict[str, object]:
        """A JSON form: position, side and packed signs (:func:`.square_trials.encode_square`)."""
        return encode_square(self.y0, self.x0, self.signs)


def render(squares: list[Square], height: int, width: int, levels: int) -> np.ndarray:
    """The ``(height, width, 3)`` int16 perturbation in 8-bit levels: later squares overwrite earlier ones."""
    return squares_delta([(s.y0, s.x0, s.signs) for s in squares], height, width, levels)


def pattern_signs(pattern: str, side: int, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(side, side, 3)`` int16 signs: ``flat`` (``colour``'s signs everywhere) or ``noiseB``.

    ``noiseB``: independent random signs per channel on ``B x B`` px blocks, drawn from ``rng``.
    """
    if pattern == "flat":
        return np.broadcast_to(colour.astype(np.int16), (side, side, 3)).copy()
    block = int(pattern.removeprefix("noise"))
    cells = -(-side // block)
    signs = rng.choice(np.array([-1, 1], dtype=np.int16), size=(cells, cells, 3))
    return np.repeat(np.repeat(signs, block, axis=0), block, axis=1)[:side, :side]


def anchors(
    output: TargetOutput, goal: Goal, width: int, height: int, *, has_point: bool
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(rival, inside)``: the strongest point outside the goal and inside it, in image pixels.

    With a saliency map both are its argmax outside and inside the goal box; without one the rival is
    the target's (or its crops') salient point and the inside anchor the goal's centre.
    """
    centre = ((goal.x0 + goal.x1) / 2, (goal.y0 + goal.y1) / 2)
    if output.log_density is None:
        return salient_point(output, width, height, has_point=has_point), centre
    density = np.asarray(output.log_density, dtype=np.float64)
    mh, mw = density.shape
    sx, sy = mw / width, mh / height  # map cells per image pixel
    inside = np.zeros((mh, mw), dtype=bool)
    x0, x1 = int(np.floor(goal.x0 * sx)), int(np.ceil((goal.x1 + 1) * sx))
    y0, y1 = int(np.floor(goal.y0 * sy)), int(np.ceil((goal.y1 + 1) * sy))
    inside[max(0, y0) : max(y1, y0 + 1), max(0, x0) : max(x1, x0 + 1)] = True
    points = []
    for mask in (~inside, inside):
        if not mask.any():
            points.append(centre)
            continue
        row, col = np.unravel_index(np.argmax(np.where(mask, density, -np.inf)), density.shape)
        points.append(((col + 0.5) / sx, (row + 0.5) / sy))
    return points[0], points[1]


class SquareSearch(Attack):
    """Accumulate L-inf squares chosen by an Optuna sampler under the cap; prune after the first success.

    Args:
        budget: target queries per image (the pruning's count too); positive.
        sampler: ``"random"`` (the default: as good as TPE on the search-design table, and cheaper)
            or ``"tpe"`` (multivariate TPE after ``n_startup`` random squares).
        placement: ``"relative"`` (near the rival or the goal's anchor, within ``reach`` px) or
            ``"uniform"`` (anywhere, as Square Attack).
        patterns: which of ``flat``, ``noise1``, ``noise2``, ``noise4``, ``noise8`` a square may hold.
        reach: the largest offset from the anchor, px at working resolution; positive.
        min_side, max_side: the square's side range, px (sampled on a log scale); 1 <= min <= max.
        n_startup: random squares before TPE models the gains (>= 1).
        minimise: after the first success, spend the rest of the budget pruning squares and the cap.
        early_stop: without ``minimise``, stop at the first success.
        seed: seeds the sampler and the noise (with the image, target and budget).
        label: the method's name in results.

    Raises:
        ValueError: a setting out of range (the message says which and what to use).
        UnusableBudgetError (from :meth:`run`): the problem has no L-inf cap (``eps_inf`` unset and
            ``norm="l2"``) or one below one 8-bit level.
    """

    def __init__(
        self,
        *,
        budget: int,
        sampler: str = "random",
        placement: str = "relative",
        patterns: tuple[str, ...] | list[str] = PATTERNS,
        reach: float = 96.0,
        min_side: int = 8,
        max_side: int = 96,
        n_startup: int = 10,
        minimise: bool = True,
        early_stop: bool = True,
        seed: int = 0,
        label: str = "square",
    ) -> None:
        if int(budget) <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {budget}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        patterns = tuple(str(p) for p in patterns)
        if not patterns or any(p not in PATTERNS for p in patterns):
            raise ValueError(
                f"patterns must be a non-empty list of {', '.join(PATTERNS)}, got {list(patterns)}"
            )
        if not reach > 0:
            raise ValueError(f"reach must be a positive number of pixels, got {reach}")
        if not 1 <= int(min_side) <= int(max_side):
            raise ValueError(f"need 1 <= min_side <= max_side (pixels), got {min_side} and {max_side}")
        if int(n_startup) < 1:
            raise ValueError(f"n_startup must be >= 1 random squares before TPE, got {n_startup}")
        self.budget, self.sampler, self.placement = int(budget), sampler, placement
        self.patterns, self.reach = patterns, float(reach)
        self.min_side, self.max_side, self.n_startup = int(min_side), int(max_side), int(n_startup)
        self.minimise, self.early_stop = bool(minimise), bool(early_stop)
        self.seed, self.name = int(seed), label
        self.storage: optuna.storages.BaseStorage | str | None = None

    def space(self) -> dict[str, BaseDistribution]:
        """The parameters of one square (fixed for the attack: TPE models them jointly)."""
        space: dict[str, BaseDistribution] = {
            "where": FloatDistribution(0.0, 1.0),  # relative: < 0.5 the rival, else the goal's anchor
            "dx": FloatDistribution(-1.0, 1.0),  # relative: times reach; uniform: the column's fraction
            "dy": FloatDistribution(-1.0, 1.0),
            "log_side": FloatDistribution(float(np.log(self.min_side)), float(np.log(self.max_side))),
            "red": FloatDistribution(-1.0, 1.0),
            "green": FloatDistribution(-1.0, 1.0),
            "blue": FloatDistribution(-1.0, 1.0),
        }
        if len(self.patterns) > 1:
            space["pattern"] = CategoricalDistribution(list(self.patterns))
        return space

    def keeping_trials(self, storage: optuna.storages.BaseStorage | str | None) -> SquareSearch:
        """This search, writing its trials to ``storage`` (``None``: kept in memory only) when each
        image is done (:mod:`blackbox.search.square_trials`); returns ``self``."""
        self.storage = storage
        return self

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        image = problem.image
        clean, width, height = image.pixels, image.width, image.height
        require(target, self.requires, by=self.name, name=problem.target_name)
        cap_levels = problem.budget.require_cap(by=f"attack={self.name}")
        has_point, rule = target.gives_point, self.success_rule(problem, target)
        key = f"{image.image_id}|{problem.target_name}|{problem.budget}|{self.name}"
        seed = (self.seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31
        rng = np.random.default_rng(seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if self.sampler == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=self.n_startup, multivariate=True
            )
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        space = self.space()
        queries = QueryBudget(target, limit=self.budget)
        budget = problem.budget
        judge = judge_for(problem, has_point=has_point, rule=rule)

        def ask(delta: np.ndarray) -> tuple[np.ndarray, TargetOutput, float, bool]:
            """Query ``clean + delta`` (int16 levels within the cap), quantised within the budget."""
            adversarial = quantise(clean, delta, budget)
            output = queries.query([adversarial.astype(np.float32) / 255.0])[0]
            return adversarial, output, *judge(output)

        accepted: list[Square] = []
        accepted_delta = np.zeros((height, width, 3), dtype=np.int16)  # render(accepted), kept up to date
        current = judge(problem.clean_output)[0]
        rival, inside = anchors(problem.clean_output, problem.goal, width, height, has_point=has_point)
        # The best image sent so far, its score, and how to replay it: (squares as sent, level, trial).
        best: tuple[np.ndarray, TargetOutput, float] | None = None
        best_made: tuple[list[Square], int, int] = ([], cap_levels, 0)
        first_success: int | None = None
        success = False
        while queries.remaining > 0 and not success:
            trial = study.ask(space)
            square = self._square(trial.params, rival, inside, width, height, rng)
            delta = accepted_delta.copy()
            s = square.side
            delta[square.y0 : square.y0 + s, square.x0 : square.x0 + s] = square.signs * cap_levels
            adversarial, output, value, hit = ask(delta)
            kept = hit or value > current
            for name, attr in (("phase", "search"), ("accepted", bool(kept)), ("success", bool(hit))):
                trial.set_user_attr(name, attr)
            study.tell(trial, float(np.clip(value - current, -1e6, 1e6)))
            if hit or best is None or value > best[2]:  # the best image sent so far
                best, best_made = (
                    (adversarial, output, value),
                    ([*accepted, square], cap_levels, trial.number),
                )
            if hit:
                success, first_success, accepted = True, queries.used, [*accepted, square]
            elif value > current:
                accepted, accepted_delta, current = [*accepted, square], delta, value
                rival, inside = anchors(output, problem.goal, width, height, has_point=has_point)

        def record(phase: str, value: float, hit: bool) -> int:
            """A pruning query as a trial of the study (no parameters: it changes no square)."""
            study.add_trial(
                optuna.trial.create_trial(
                    value=float(np.clip(value - current, -1e6, 1e6)),
                    user_attrs={"phase": phase, "accepted": hit, "success": hit},
                )
            )
            return len(study.trials) - 1

        levels, pruned = cap_levels, 0
        if success and self.minimise:
            # Drop squares oldest first (a later square may overwrite an earlier one's pixels), then
            # lower the cap level by level: every check is one query, and only successes are kept.
            index = 0
            while index < len(accepted) and queries.remaining > 0 and len(accepted) > 1:
                trial_squares = accepted[:index] + accepted[index + 1 :]
                adversarial, output, value, hit = ask(render(trial_squares, height, width, levels))
                number = record("prune", value, hit)
                if hit:
                    accepted, pruned = trial_squares, pruned + 1
                    best, best_made = (adversarial, output, value), (trial_squares, levels, number)
                else:
                    index += 1
            while levels > 1 and queries.remaining > 0:
                adversarial, output, value, hit = ask(render(accepted, height, width, levels - 1))
                number = record("level", value, hit)
                if not hit:
                    break
                levels, best, best_made = (
                    levels - 1,
                    (adversarial, output, value),
                    (accepted, levels - 1, number),
                )
        assert best is not None  # the budget is positive, so at least one candidate was sent
        adversarial, output, value = best
        made, made_levels, best_trial = best_made
        config = squares_config([q.as_dict() for q in made], made_levels, budget)
        name = study_name(problem, self.name, rule)
        if self.storage is not None:
            trials = study.get_trials(deepcopy=True)
            trials[best_trial].set_user_attr("perturbation", config)
            attrs = {**study_attrs(problem, self.name, self.budget), "eps_inf": problem.eps_inf}
            write_study(self.storage, name=name, attrs=attrs, trials=trials)
        changed = int(np.count_nonzero(np.any(adversarial != clean, axis=2)))
        return AttackResult(
            image_id=image.image_id,
            method=self.name,
            success=success,
            adversarial=adversarial,
            adversarial_output=output,
            goal=problem.goal,
            eps=problem.eps,
            norm=problem.norm,
            eps_inf=problem.eps_inf,
            queries=queries.used,
            queries_to_success=first_success,
            score=value,
            best_trial=best_trial,
            perturbation=config,
            extra={
                "squares": len(accepted),
                "pruned_squares": pruned,
                "levels": levels if success else cap_levels,
                "changed_pixels_pct": round(100.0 * changed / (width * height), 2),
                **({"study": name} if self.storage is not None else {}),
            },
            success_rule=rule,
        )

    def _square(
        self,
        params: dict[str, object],
        rival: tuple[float, float],
        inside: tuple[float, float],
        width: int,
        height: int,
        rng: np.random.Generator,
    ) -> Square:
        """The square ``params`` describe, clipped to lie inside the image."""
        side = int(min(round(float(np.exp(params["log_side"]))), width, height))  # type: ignore[arg-type]
        dx, dy = float(params["dx"]), float(params["dy"])  # type: ignore[arg-type]
        if self.placement == "relative":
            anchor = rival if float(params["where"]) < 0.5 else inside  # type: ignore[arg-type]
            cx, cy = anchor[0] + dx * self.reach, anchor[1] + dy * self.reach
        else:
            cx, cy = (dx + 1) / 2 * width, (dy + 1) / 2 * height
        x0 = int(np.clip(round(cx - side / 2), 0, width - side))
        y0 = int(np.clip(round(cy - side / 2), 0, height - side))
        colour = np.array([1 if float(params[c]) >= 0 else -1 for c in ("red", "green", "blue")])  # type: ignore[arg-type]
        pattern = str(params.get("pattern", self.patterns[0]))
        return Square(y0=y0, x0=x0, signs=pattern_signs(pattern, side, colour, rng))
