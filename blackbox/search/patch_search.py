"""The black-box attack: an Optuna search over patch coordinates and patterns.

Every trial renders ``n_patches`` patches (see :mod:`blackbox.core.perturbation`), fills the budget,
quantises to 8 bits, and asks the target. It sees only the target's outputs and scores them with
:mod:`blackbox.core.objective`. Trials are asked in batches of ``batch_size`` and sent to the target as
one call (constant liar keeps TPE from proposing the same point for every member of a batch). The
budget is counted in target queries; the search stops early on success if ``early_stop``.

One Optuna study per (image, target, goal, eps) keeps every trial, with its full perturbation
config as a user attribute: a trial replays to the byte-identical image (``blackbox.experiment.replay``). A
study found in the storage is resumed: its completed trials count against the budget and are not
redone.

With ``write_behind`` (the default), the search runs on an in-memory copy of the study and each
answered batch is written to the storage in one call per trial (``Study.add_trials``). Asking a
trial directly in a journal or RDB storage writes every one of its 32 parameters and attributes
separately, which cost more than a ``classic`` query. The price: a process killed between a batch's
answer and its write loses that one batch (at most ``batch_size`` queries, asked again on resume).

With ``ask_ahead`` (the default), the sampler asks batch k+1 while the target answers batch k, so
the sampler's time hides behind the target's. Batch k+1 is asked before batch k is told, always:
the search is as deterministic as before, and it sees results one batch later (constant liar
stands in for batch k). When the search stops early, the asked-ahead batch is never sent; it is
kept as failed trials marked ``discarded``, which spend no queries.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

from blackbox.attacks._base import Attack, AttackFailedError, AttackProblem, AttackResult
from blackbox.core.objective import score, succeeded
from blackbox.core.perturbation import Norm, perturb
from blackbox.search import features
from blackbox.search.budget import QueryBudget
from blackbox.search.search_space import distributions, patch_regions, patches_from_config, trial_config
from blackbox.search.warm_start import fit_patches
from targets import Target, TargetOutput

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]


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

# Consecutive failed target calls after which an image is given up (its trials stay stored).
MAX_CONSECUTIVE_FAILURES = 3


def study_name(problem: AttackProblem, sampler_name: str, rule: str = "point") -> str:
    """One study per (image, target, goal, eps), sampler and success rule: none share trials.

    The ``point`` rule adds nothing to the name, so studies made before the rules existed resume.
    """
    g = problem.goal
    return (
        f"{problem.image.image_id}|{problem.target_name}|goal={g.source}:"
        f"{g.x0:.0f},{g.y0:.0f},{g.x1:.0f},{g.y1:.0f}|{problem.norm}={problem.eps:g}|{sampler_name}"
        + (f"|success={rule}" if rule != "point" else "")
    )


def render_trial(problem: AttackProblem, config: Mapping) -> np.ndarray:
    """The 8-bit adversarial image a trial config describes (what replay re-does)."""
    return render_config(problem.image.pixels, config)


def render_config(clean: np.ndarray, config: Mapping) -> np.ndarray:
    """``clean`` (uint8) perturbed as the trial config says: patches, or grid features (``kind: grid``)."""
    if features.is_feature_space(config):
        return features.render_features(clean, config)
    norm: Norm = config["norm"]
    return perturb(clean, patches_from_config(config), eps=float(config["eps"]), norm=norm)


class PatchSearch(Attack):
    """Black-box patch search driven by any Optuna sampler (``tpe``, ``random``, ...)."""

    name = "blackbox"

    def __init__(
        self,
        *,
        sampler_factory: SamplerFactory,
        sampler_name: str,
        search: Mapping,
        budget: int,
        batch_size: int = 4,
        early_stop: bool = True,
        storage: optuna.storages.BaseStorage | str | None = None,
        seed: int = 0,
        progress: bool = True,
        trial_callbacks: Sequence[TrialCallback] = (),
        warm_start: Callable[[AttackProblem], np.ndarray] | None = None,
        write_behind: bool = True,
        ask_ahead: bool = True,
    ) -> None:
        if budget <= 0:
            raise ValueError(f"budget must be a positive number of queries, got {budget}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler_factory = sampler_factory
        self.sampler_name = sampler_name
        self.search = dict(search)
        self.budget = int(budget)
        self.batch_size = int(batch_size)
        self.early_stop = early_stop
        self.storage = storage
        self.seed = int(seed)
        self.progress = progress
        # Called before each trial is told, while its user attributes can still be set.
        self.trial_callbacks = tuple(trial_callbacks)
        # Gives a dense transfer perturbation for a problem; its fitted patches are the first trial.
        self.warm_start = warm_start
        # Search in memory and write each answered batch to the storage at once (module doc).
        self.write_behind = write_behind
        # Ask the next batch while the target answers this one (module doc).
        self.ask_ahead = ask_ahead
        self.name = sampler_name

    def run(self, problem: AttackProblem, target: Target) -> AttackResult:
        image = problem.image
        width, height = image.width, image.height
        has_point = self.has_point(target)
        rule = self.success_rule(problem, target)
        if features.is_feature_space(self.search):  # grid features for feature-scoring croppers
            if self.warm_start is not None:
                raise ValueError(
                    "warm_start fits Gaussian patches: use it with search=blobs or patches, not grid"
                )
            space, make_config = features.config_maker(
                self.search, problem.goal, width, height, eps=problem.eps, norm=problem.norm
            )
        else:
            regions = patch_regions(
                self.search, problem.goal, width, height, problem.clean_output.salient_point
            )
            region = regions if len(set(regions)) > 1 else regions[0]
            space = distributions(self.search, region)

            def make_config(params: Mapping) -> dict:
                return trial_config(
                    self.search, params=params, region=region, eps=problem.eps, norm=problem.norm
                )

        name = study_name(problem, self.sampler_name, rule)
        study_seed = (self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)
        stored = optuna.create_study(
            storage=self.storage,
            study_name=name,
            direction="maximize",
            sampler=self.sampler_factory(study_seed),
            load_if_exists=True,
        )
        study = stored
        if "image" not in stored.user_attrs:
            for key, value in {
                "image": image.image_id,
                "source": image.source,
                "target": problem.target_name,
                "goal": problem.goal.as_dict(),
                "eps": problem.eps,
                "norm": problem.norm,
                "sampler": self.sampler_name,
                "budget": self.budget,
            }.items():
                stored.set_user_attr(key, value)
        if self.write_behind and self.storage is not None:
            _fail_running(stored)
            _count_interrupted_batch(stored)
            study = optuna.create_study(direction="maximize", sampler=self.sampler_factory(study_seed))
            study.add_trials(stored.get_trials(deepcopy=False))
        unwritten: list[int] = []  # trial numbers answered in memory, not yet in the storage

        if self.warm_start is not None and not study.trials:
            delta = self.warm_start(problem)
            n_patches = int(self.search["n_patches"])
            study.enqueue_trial(fit_patches(delta, n_patches=n_patches, region=regions, space=self.search))
        best = _Best()
        used = _resume(study, best)
        budget = QueryBudget(target, limit=self.budget, used=used)
        failed = 0
        # Candidates that rounded to the clean image (never sent), earlier sessions' too: the
        # sampler's seed counts them, so a resumed search draws what an uninterrupted one would.
        no_change = sum(UNCHANGED in t.user_attrs for t in study.get_trials(deepcopy=False))
        consecutive_failures = 0
        gave_up: Exception | None = None
        bar = tqdm(
            total=self.budget, initial=used, desc=image.image_id, leave=False, disable=not self.progress
        )
        ahead: list[optuna.trial.Trial] = []  # the next batch, asked while the target answered
        pool = ThreadPoolExecutor(max_workers=1) if self.ask_ahead else None
        try:
            while ahead or (budget.remaining > 0 and not (self.early_stop and best.success)):
                if not ahead:
                    # A sampler seeded by the queries spent so far: a resumed study draws what an
                    # uninterrupted one would have, not its first draws again (the same seed, restarted).
                    # (Unsent candidates count too, or a seeded sampler would draw them again.)
                    study.sampler = self.sampler_factory(batch_seed(study_seed, budget.used + no_change))
                trials = ahead or [study.ask(space) for _ in range(min(self.batch_size, budget.remaining))]
                count = len(trials)
                configs = [make_config(t.params) for t in trials]
                adversarials = [render_trial(problem, c) for c in configs]
                first_number = trials[0].number
                unchanged = [np.array_equal(a, image.pixels) for a in adversarials]
                if any(unchanged):
                    # A candidate that rounds to the clean image would spend a query to learn what the
                    # clean query already said: it is failed unsent, and costs no query.
                    for trial, same in zip(trials, unchanged, strict=True):
                        if same:
                            trial.set_user_attr(UNCHANGED, NO_CHANGE_REASON)
                            study.tell(trial, state=optuna.trial.TrialState.FAIL)
                            unwritten.append(trial.number)
                    no_change += sum(unchanged)
                    _write(study, stored, unwritten)
                    kept = [i for i, same in enumerate(unchanged) if not same]
                    trials = [trials[i] for i in kept]
                    configs = [configs[i] for i in kept]
                    adversarials = [adversarials[i] for i in kept]
                    ahead = []
                    if not trials:
                        if no_change >= max(self.budget, MIN_NO_CHANGE):
                            break  # this eps and search space cannot change the image: see below
                        continue
                count = len(trials)
                images = [a.astype(np.float32) / 255.0 for a in adversarials]
                following = min(self.batch_size, budget.remaining - count)
                if study is not stored:  # write-behind: say which trials are out, in case of a kill
                    stored.set_user_attr(IN_FLIGHT, [first_number, trials[-1].number - first_number + 1])
                try:
                    if pool is not None and following > 0:
                        # The target works (torch frees the GIL) while the sampler asks the next
                        # batch. Those asks see this batch as running, not answered: the order of
                        # asks and tells, so the search, is still the same on every run.
                        spent = budget.used + count  # read before the thread counts this batch
                        answer = pool.submit(budget.query, images)
                        study.sampler = self.sampler_factory(batch_seed(study_seed, spent))
                        ahead = [study.ask(space) for _ in range(following)]
                        outputs = answer.result()
                    else:
                        ahead = []
                        outputs = budget.query(images)
                except (OSError, RuntimeError) as error:  # e.g. TargetQueryError: failed after retries
                    failed += count
                    consecutive_failures += 1
                    for trial in trials:
                        trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}")
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    unwritten += [t.number for t in trials]
                    _write(study, stored, unwritten)
                    bar.update(count)
                    if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                        gave_up = error
                        break
                    continue
                consecutive_failures = 0
                for trial, config, adversarial, output in zip(
                    trials, configs, adversarials, outputs, strict=True
                ):
                    value = score(output, problem.goal, width, height, has_point=has_point, rule=rule)
                    hit = succeeded(output, problem.goal, width, height, has_point=has_point, rule=rule)
                    queries_so_far = budget.used - count + 1 + trials.index(trial)
                    trial.set_user_attr("perturbation", config)
                    trial.set_user_attr("queries", queries_so_far)
                    trial.set_user_attr("success", hit)
                    trial.set_user_attr("salient_point", list(output.salient_point))
                    record = TrialRecord(
                        stored, trial, problem, adversarial, output, value, hit, queries_so_far
                    )
                    for callback in self.trial_callbacks:
                        callback(record)
                    # A goal covering the whole map gives an infinite margin: storages need finite values.
                    study.tell(trial, float(np.clip(value, -1e6, 1e6)))
                    best.offer(trial.number, value, hit, queries_so_far, adversarial, output)
                unwritten += [t.number for t in trials]
                _write(study, stored, unwritten)
                bar.update(count)
                bar.set_postfix(best=f"{best.value:.3g}", success=best.success)
                if self.early_stop and best.success:
                    break
        finally:
            _write(study, stored, unwritten)  # also on Ctrl-C: answered trials are never lost
            _discard(study, ahead)
            if pool is not None:
                pool.shutdown(wait=True)
            bar.close()

        if gave_up is not None and budget.remaining > 0:
            # Budget is left: the image is not done. Its completed trials stay in the study for a re-run.
            completed = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
            raise AttackFailedError(
                f"{image.image_id}: gave up after {MAX_CONSECUTIVE_FAILURES} failed target calls in a row "
                f"({failed} queries failed; {completed} completed trials kept in the study {name!r}); "
                f"last error: {type(gave_up).__name__}: {gave_up}. Re-run the same command to resume"
            )
        if best.trial is None and no_change:
            raise AttackFailedError(
                f"{image.image_id}: every one of {no_change} candidate perturbations rounded to the clean "
                f"image at eps={problem.eps:g} ({problem.norm}), so none was sent to the target; raise "
                "eps, or use fewer, smaller patches (search.n_patches, search.space.size) so the budget "
                "is not spread below one 8-bit level per pixel"
            )
        if best.trial is None:
            raise AttackFailedError(
                f"{image.image_id}: no trial completed ({failed} queries failed); the study "
                f"{name!r} is kept, re-run the same command to resume"
            )
        # The best trial came from an earlier, resumed session: its image is re-rendered and asked
        # once more (its map was not stored). That query is outside the budget and reported apart.
        requeries = 0
        if best.adversarial is None:
            trial = study.trials[best.trial]
            best.adversarial = render_trial(problem, trial.user_attrs["perturbation"])
            best.output = target.query([best.adversarial.astype(np.float32) / 255.0])[0]
            requeries = 1
        assert best.output is not None
        return AttackResult(
            image_id=image.image_id,
            method=self.name,
            success=best.success,
            adversarial=best.adversarial,
            adversarial_output=best.output,
            goal=problem.goal,
            eps=problem.eps,
            norm=problem.norm,
            queries=budget.used,
            queries_to_success=best.first_success_queries,
            score=best.value,
            best_trial=best.trial,
            perturbation=study.trials[best.trial].user_attrs.get("perturbation"),
            failed_queries=failed,
            extra={"study": name, "resumed_best_requeries": requeries},
            success_rule=rule,
        )


class _Best:
    """The best trial so far; a successful trial beats any unsuccessful one."""

    def __init__(self) -> None:
        self.trial: int | None = None
        self.value = -np.inf
        self.success = False
        self.first_success_queries: int | None = None
        self.adversarial: np.ndarray | None = None
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


def batch_seed(study_seed: int, used: int) -> int:
    """The sampler seed for the batch asked after ``used`` queries of a study."""
    return (study_seed + 7919 * used) % (2**31)


INTERRUPTED = "interrupted: the process ended before the answer was recorded"


def _fail_running(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed process: their batch may have reached the target.

    They are failed with the reason, which makes :func:`_resume` count them as spent: over all
    sessions an image never sends more than its budget.
    """
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", INTERRUPTED)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _discard(study: optuna.Study, trials: list[optuna.trial.Trial]) -> None:
    """Asked ahead, never sent: the search stopped first. Kept as failed, with no queries spent."""
    for trial in trials:
        trial.set_user_attr("discarded", "asked ahead of the target, not sent: the search had stopped")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _write(study: optuna.Study, stored: optuna.Study, numbers: list[int]) -> None:
    """Copy the finished trials ``numbers`` of the in-memory search to the storage, then forget them."""
    if study is stored or not numbers:
        numbers.clear()
        return
    trials = study.get_trials(deepcopy=False)
    stored.add_trials([trials[n] for n in numbers])
    stored.set_user_attr(IN_FLIGHT, None)
    numbers.clear()


# Trial attribute of a candidate that rounded to the clean image: failed unsent, no query spent.
UNCHANGED = "unchanged"
NO_CHANGE_REASON = "the perturbation rounds to the clean image: not sent, no query spent"
# Unsent candidates allowed before giving up, at least (or the budget, if larger).
MIN_NO_CHANGE = 20

# Study attribute ``[first trial number, count]`` of the batch sent to the target and not yet written.
IN_FLIGHT = "queries_in_flight"


def _count_interrupted_batch(stored: optuna.Study) -> None:
    """A batch that was out when the process died may have reached the target: count it as spent.

    Its trials were never written (write-behind), so they are added as failed trials saying so;
    over all sessions an image then never sends more than its budget.
    """
    in_flight = stored.user_attrs.get(IN_FLIGHT)
    if not in_flight:
        return
    first, count = in_flight
    written = {t.number for t in stored.get_trials(deepcopy=False)}
    lost = [n for n in range(first, first + count) if n not in written]
    stored.add_trials(
        [
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": INTERRUPTED}
            )
            for _ in lost
        ]
    )
    stored.set_user_attr(IN_FLIGHT, None)


def _resume(study: optuna.Study, best: _Best) -> int:
    """Take the finished trials of an earlier session into account; return the queries they used.

    Trials left RUNNING by a killed process never got an answer recorded, but their batch may have
    reached the target: they are marked failed and counted as spent, so over all sessions an image
    never sends more than its budget.
    """
    _fail_running(study)
    used = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.COMPLETE:
            used += 1
            best.offer(
                trial.number,
                float(trial.value),
                bool(trial.user_attrs.get("success")),
                int(trial.user_attrs.get("queries", used)),
                None,
                None,
            )
        elif trial.state == optuna.trial.TrialState.FAIL and "fail_reason" in trial.user_attrs:
            used += 1
    return used
