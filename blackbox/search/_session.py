"""One image's search session: batches asked of the sampler, sent within the budget, told back.

Trials are asked in batches of ``batch_size`` and sent to the target as one call (constant liar
keeps TPE from proposing the same point for every member of a batch). A candidate that rounds to
the clean image is never sent. With ``ask_ahead``, the sampler asks batch k+1 while the target
answers batch k, and renders its images too, so the sampler's and the rendering's time hide behind
the target's; batch k+1 is always asked before batch k is told, so the search stays deterministic
(rendering depends on a trial's parameters only). When the search stops early, the asked-ahead
batch is never sent; it is kept as failed trials marked ``discarded``, which spend no queries.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

from blackbox.attacks._base import AttackProblem
from blackbox.core.objective import SuccessRule, score, succeeded
from blackbox.search._study import SearchStudy, batch_seed
from blackbox.search.budget import QueryBudget
from blackbox.search.search_space import render_config
from targets import TargetOutput

# Consecutive failed target calls after which an image is given up (its trials stay stored).
MAX_CONSECUTIVE_FAILURES = 3
# Unsent candidates allowed before giving up, at least (or the budget, if larger).
MIN_NO_CHANGE = 20
# Python's GIL switch interval while the target answers in a thread (its default is 5 ms): each of
# the target's torch or numpy calls gives the GIL up and must win it back from the sampler, which
# holds it up to the interval; with the default, a 15 ms classic query took twice as long.
ASK_AHEAD_SWITCH_INTERVAL_S = 0.0005


@dataclass(frozen=True)
class TrialRecord:
    """What a finished trial produced, handed to every trial callback (e.g. artifact upload)."""

    study: optuna.Study  # the study in the run's storage
    trial: optuna.trial.Trial  # the live trial (in memory until its batch is written, see write_behind)
    problem: AttackProblem
    adversarial: np.ndarray  # (H, W, 3) uint8, exactly what the target saw
    output: TargetOutput
    score: float
    success: bool
    queries: int


TrialCallback = Callable[[TrialRecord], None]


class Best:
    """The best trial so far; a successful trial beats any unsuccessful one."""

    def __init__(self) -> None:
        self.trial: int | None = None
        self.value = -np.inf
        self.success = False
        self.first_success_queries: int | None = None
        self.adversarial: np.ndarray | None = None  # None: from an earlier session, not re-rendered
        self.output: TargetOutput | None = None

    def offer(
        self,
        number: int,
        value: float,
        success: bool,
        queries: int,
        adversarial: np.ndarray | None,
        output: TargetOutput | None,
    ) -> None:
        if success and (self.first_success_queries is None or queries < self.first_success_queries):
            self.first_success_queries = queries
        if (success, value) > (self.success, self.value):
            self.trial, self.value, self.success = number, value, success
            self.adversarial, self.output = adversarial, output


@dataclass(frozen=True, kw_only=True)
class SessionSettings:
    """What a session needs of :class:`~blackbox.search.PatchSearch`'s settings."""

    sampler_factory: Callable[[int], optuna.samplers.BaseSampler]
    search: Mapping
    budget: int
    batch_size: int
    early_stop: bool
    ask_ahead: bool
    progress: bool
    trial_callbacks: Sequence[TrialCallback]


class SearchSession:
    """Searches one problem on a resumed study until the budget is spent or (early stop) success."""

    def __init__(
        self,
        *,
        settings: SessionSettings,
        problem: AttackProblem,
        study: SearchStudy,
        budget: QueryBudget,
        space: Mapping[str, optuna.distributions.BaseDistribution],
        make_config: Callable[[Mapping[str, object]], dict],
        seed: int,
        judge: Callable[[TargetOutput], tuple[float, bool]],
        best: Best,
    ) -> None:
        self.settings = settings
        self.problem = problem
        self.study = study
        self.budget = budget
        self.space = space
        self.make_config = make_config  # a trial's params -> its stored perturbation config
        self.seed = seed  # the study's seed (see batch_seed)
        self.judge = judge  # an output's score and success
        self.best = best
        self.failed = 0  # queries whose target call failed
        # Candidates that rounded to the clean image (never sent), earlier sessions' too: the
        # sampler's seed counts them, so a resumed search draws what an uninterrupted one would.
        self.no_change = study.count_unchanged()
        self.gave_up: Exception | None = None  # the last error, when the target failed too often
        self._consecutive_failures = 0
        self._ahead: list[optuna.trial.Trial] = []  # the next batch, asked while the target answered
        # The next batch's configs and images, rendered while the target answered (None: not yet).
        self._ahead_rendered: tuple[list[dict], list[np.ndarray]] | None = None

    def run(self) -> None:
        """Ask, send and tell batches until done. Answered trials are written even on Ctrl-C."""
        settings, budget, best = self.settings, self.budget, self.best
        bar = tqdm(
            total=settings.budget,
            initial=budget.used,
            desc=self.problem.image.image_id,
            leave=False,
            disable=not settings.progress,
        )
        pool = ThreadPoolExecutor(max_workers=1) if settings.ask_ahead else None
        switch_interval = sys.getswitchinterval()
        if pool is not None:
            sys.setswitchinterval(min(switch_interval, ASK_AHEAD_SWITCH_INTERVAL_S))
        try:
            while self._ahead or (budget.remaining > 0 and not (settings.early_stop and best.success)):
                trials = self._next_batch()
                first_number = trials[0].number
                configs, adversarials = self._render(trials)
                unchanged = [np.array_equal(a, self.problem.image.pixels) for a in adversarials]
                if any(unchanged):
                    trials, configs, adversarials = self._drop_unchanged(
                        trials, configs, adversarials, unchanged
                    )
                    if not trials:
                        if self.no_change >= max(settings.budget, MIN_NO_CHANGE):
                            break  # this eps and search space cannot change the image: see PatchSearch
                        continue
                self.study.mark_in_flight(trials, first_number)
                outputs = self.send(trials, adversarials, pool)
                if outputs is None:  # the target call failed: the batch is spent
                    bar.update(len(trials))
                    if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                        break
                    continue
                self.tell(trials, configs, adversarials, outputs)
                bar.update(len(trials))
                bar.set_postfix(best=f"{best.value:.3g}", success=best.success)
                if settings.early_stop and best.success:
                    break
        finally:
            self.study.write()  # also on Ctrl-C: answered trials are never lost
            self.study.discard(self._ahead)
            if pool is not None:
                pool.shutdown(wait=True)
            sys.setswitchinterval(switch_interval)
            bar.close()

    def _reseed(self, drawn: int) -> None:
        """A sampler seeded by the candidates drawn so far: a resumed study draws what an
        uninterrupted one would have, not its first draws again (the same seed, restarted)."""
        self.study.live.sampler = self.settings.sampler_factory(batch_seed(self.seed, drawn))

    def _next_batch(self) -> list[optuna.trial.Trial]:
        """The batch asked ahead, or a new one (unsent candidates count in the seed too, or a
        seeded sampler would draw them again)."""
        if self._ahead:
            return self._ahead
        self._ahead_rendered = None
        self._reseed(self.budget.used + self.no_change)
        size = min(self.settings.batch_size, self.budget.remaining)
        return [self.study.live.ask(self.space) for _ in range(size)]

    def _render(self, trials: list[optuna.trial.Trial]) -> tuple[list[dict], list[np.ndarray]]:
        """Each trial's perturbation config and the 8-bit adversarial image it describes."""
        if trials is self._ahead and self._ahead_rendered is not None:
            return self._ahead_rendered
        configs = [self.make_config(t.params) for t in trials]
        return configs, [render_config(self.problem.image.pixels, c) for c in configs]

    def _drop_unchanged(
        self,
        trials: list[optuna.trial.Trial],
        configs: list[dict],
        adversarials: list[np.ndarray],
        unchanged: list[bool],
    ) -> tuple[list[optuna.trial.Trial], list[dict], list[np.ndarray]]:
        """A candidate that rounds to the clean image would spend a query to learn what the clean
        query already said: it is failed unsent, and costs no query. Returns the others."""
        for trial, same in zip(trials, unchanged, strict=True):
            if same:
                self.study.skip_unchanged(trial)
        self.no_change += sum(unchanged)
        self.study.write()
        self._ahead, self._ahead_rendered = [], None
        kept = [i for i, same in enumerate(unchanged) if not same]
        return [trials[i] for i in kept], [configs[i] for i in kept], [adversarials[i] for i in kept]

    def send(
        self,
        trials: list[optuna.trial.Trial],
        adversarials: list[np.ndarray],
        pool: ThreadPoolExecutor | None,
    ) -> list[TargetOutput] | None:
        """The target's answers for the batch, asking the next batch meanwhile (ask-ahead).

        ``None`` if the call failed (e.g. TargetQueryError after retries): the trials are failed
        with the reason and their queries count as spent.
        """
        budget, count = self.budget, len(trials)
        images = [a.astype(np.float32) / 255.0 for a in adversarials]
        following = min(self.settings.batch_size, budget.remaining - count)
        try:
            if pool is not None and following > 0:
                # The target works (torch frees the GIL) while the sampler asks the next batch.
                # Those asks see this batch as running, not answered: the order of asks and tells,
                # so the search, is still the same on every run.
                spent = budget.used + count  # read before the thread counts this batch
                answer = pool.submit(budget.query, images)
                self._reseed(spent)
                self._ahead_rendered = None  # the batch rendered ahead was this one
                self._ahead = [self.study.live.ask(self.space) for _ in range(following)]
                self._render_ahead()
                outputs = answer.result()
            else:
                self._ahead, self._ahead_rendered = [], None
                outputs = budget.query(images)
        except (OSError, RuntimeError) as error:
            self.failed += count
            self._consecutive_failures += 1
            self.study.fail(trials, f"{type(error).__name__}: {error}")
            self.study.write()
            if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                self.gave_up = error
            return None
        self._consecutive_failures = 0
        return outputs

    def _render_ahead(self) -> None:
        """Render the batch just asked ahead, while the target answers (numpy frees the GIL).

        An error is left for the loop to raise when it renders that batch itself, after this batch
        is told, as without ask-ahead.
        """
        try:
            self._ahead_rendered = self._render(self._ahead)
        except Exception:  # raised again by _render in the loop, in its place
            self._ahead_rendered = None

    def tell(
        self,
        trials: list[optuna.trial.Trial],
        configs: list[dict],
        adversarials: list[np.ndarray],
        outputs: list[TargetOutput],
    ) -> list[tuple[float, bool]]:
        """Score each answer, store what replays it, run the callbacks, tell the sampler; return each
        answer's score and success."""
        first_query = self.budget.used - len(trials) + 1
        judged = []
        for index, (trial, config, adversarial, output) in enumerate(
            zip(trials, configs, adversarials, outputs, strict=True)
        ):
            value, hit = self.judge(output)
            judged.append((value, hit))
            queries = first_query + index
            trial.set_user_attr("perturbation", config)
            trial.set_user_attr("queries", queries)
            trial.set_user_attr("success", hit)
            trial.set_user_attr("salient_point", list(output.salient_point))
            record = TrialRecord(
                self.study.stored, trial, self.problem, adversarial, output, value, hit, queries
            )
            for callback in self.settings.trial_callbacks:
                callback(record)
            # A goal covering the whole map gives an infinite margin: storages need finite values.
            self.study.tell(trial, float(np.clip(value, -1e6, 1e6)))
            self.best.offer(trial.number, value, hit, queries, adversarial, output)
        self.study.write(trials)
        return judged


def judge_for(
    problem: AttackProblem, *, has_point: bool, rule: SuccessRule
) -> Callable[[TargetOutput], tuple[float, bool]]:
    """An output's score and success on ``problem`` (:mod:`blackbox.core.objective`)."""
    goal, width, height = problem.goal, problem.image.width, problem.image.height

    def judge(output: TargetOutput) -> tuple[float, bool]:
        return (
            score(output, goal, width, height, has_point=has_point, rule=rule),
            succeeded(output, goal, width, height, has_point=has_point, rule=rule),
        )

    return judge
