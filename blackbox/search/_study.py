"""The study a search runs on: where its trials are kept, written behind, resumed and seeded.

One Optuna study per (image, target, goal, eps) keeps every trial. A study found in the storage is
resumed: its completed trials count against the budget and are not redone, and trials that were out
when a process died count as spent (their batch may have reached the target), so over all sessions
an image never sends more than its budget.

With write-behind, the search asks and tells an in-memory copy of the study (:attr:`SearchStudy.live`)
and each answered batch is written to the storage in one call per trial (``Study.add_trials``).
Asking a trial directly in a journal or RDB storage writes every one of its 32 parameters and
attributes separately, which cost more than a ``classic`` query. The price: a process killed
between a batch's answer and its write loses that one batch; the study attribute :data:`IN_FLIGHT`
names it, and the next session counts it as spent.

A study resumes only the search that made it, when its caller says what made it: the settings
that decide its trials beyond its name (the search space, query budget, seed...: :data:`SETTINGS`)
are recorded when it is made, and a search with other values is refused (:class:`StudySettingsError`)
rather than handed the earlier result or mixed into it, as a run folder refuses a re-run with
other settings.

Seeds: the study's seed comes from the run's seed and the study's name; the sampler is re-seeded
per batch from the candidates drawn so far (:func:`batch_seed`), so a search resumed between
batches draws what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import optuna
from optuna.trial import TrialState

from targets import ConfigError

# The trial attribute that says why a trial failed; a failed trial that has one spent its query.
FAIL_REASON = "fail_reason"
INTERRUPTED = "interrupted: the process ended before the answer was recorded"
# Trial attribute of a candidate that rounded to the clean image: failed unsent, no query spent.
UNCHANGED = "unchanged"
NO_CHANGE_REASON = "the perturbation rounds to the clean image: not sent, no query spent"
# Trial attribute of a trial asked ahead and never sent (the search stopped first): no query spent.
DISCARDED = "discarded"
DISCARD_REASON = "asked ahead of the target, not sent: the search had stopped"
# Study attribute ``[first trial number, count]`` of the batch sent to the target and not yet written.
IN_FLIGHT = "queries_in_flight"
# Study attribute: the settings that decide its trials beyond its name (studies made before have none).
SETTINGS = "settings"


class StudySettingsError(ConfigError):
    """A stored study was made with other settings than the search that would resume it."""


def study_seed(seed: int, name: str) -> int:
    """The seed of study ``name`` in a run seeded ``seed``: studies of one run draw differently."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


def batch_seed(study_seed: int, used: int) -> int:
    """The sampler seed for the batch asked after ``used`` queries of a study."""
    return (study_seed + 7919 * used) % (2**31)


class SearchStudy:
    """The study a search asks and tells (:attr:`live`) and the one in the storage (:attr:`stored`).

    They are the same study unless the search writes behind (module doc). Trials finished through
    :meth:`fail` and :meth:`skip_unchanged`, and answered batches, are written by :meth:`write`.
    """

    def __init__(self, *, stored: optuna.Study, live: optuna.Study) -> None:
        self.stored = stored
        self.live = live
        self._unwritten: list[int] = []  # trial numbers answered in memory, not yet in the storage

    @classmethod
    def open(
        cls,
        *,
        storage: optuna.storages.BaseStorage | str | None,
        name: str,
        sampler: Callable[[], optuna.samplers.BaseSampler],
        attrs: Mapping[str, object],
        write_behind: bool,
        settings: Mapping[str, object] | None = None,
    ) -> SearchStudy:
        """Create study ``name`` or load it from ``storage``; give a new one its user ``attrs``.

        ``sampler`` makes a fresh sampler (one for the stored study, one for an in-memory copy).
        A storage of ``None`` is in memory already: nothing is written behind. ``settings`` (JSON
        values) are recorded in a new study and must equal those a loaded one recorded.

        Raises:
            StudySettingsError: the stored study was made with other ``settings``; the message names them.
        """
        stored = optuna.create_study(
            storage=storage, study_name=name, direction="maximize", sampler=sampler(), load_if_exists=True
        )
        current = json.loads(json.dumps(settings)) if settings is not None else None  # as stored
        if "image" not in stored.user_attrs:
            for key, value in {**attrs, **({SETTINGS: current} if current is not None else {})}.items():
                stored.set_user_attr(key, value)
        elif current is not None and stored.user_attrs.get(SETTINGS) is not None:
            _check_settings(name, stored.user_attrs[SETTINGS], current)
        if not (write_behind and storage is not None):
            return cls(stored=stored, live=stored)
        _fail_running(stored)
        _count_interrupted_batch(stored)
        live = optuna.create_study(direction="maximize", sampler=sampler())
        live.add_trials(stored.get_trials(deepcopy=False))
        return cls(stored=stored, live=live)

    @property
    def writes_behind(self) -> bool:
        return self.live is not self.stored

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.live.get_trials(deepcopy=False)

    def count_unchanged(self) -> int:
        """Candidates that rounded to the clean image, in every session: never sent, no query spent."""
        return sum(UNCHANGED in t.user_attrs for t in self.trials())

    def resume(self) -> tuple[int, list[tuple[optuna.trial.FrozenTrial, int]]]:
        """The queries earlier sessions spent, and their completed trials (in order) with the
        queries spent up to each (as stored; else as counted here).

        Trials left RUNNING by a killed process never got an answer recorded, but their batch may
        have reached the target: they are failed with the reason and counted as spent.
        """
        _fail_running(self.live)
        used, completed = 0, []
        for trial in self.trials():
            if trial.state == TrialState.COMPLETE:
                used += 1
                completed.append((trial, int(trial.user_attrs.get("queries", used))))
            elif trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs:
                used += 1
        return used, completed

    def mark_in_flight(self, trials: Sequence[optuna.trial.Trial], first: int) -> None:
        """Say that trials ``first`` to ``trials[-1]`` are out at the target, in case of a kill."""
        if self.writes_behind:
            self.stored.set_user_attr(IN_FLIGHT, [first, trials[-1].number - first + 1])

    def tell(self, trial: optuna.trial.Trial, value: float) -> None:
        """``trial`` was answered and scored ``value``; its batch is written by :meth:`write`."""
        self.live.tell(trial, value)

    def fail(self, trials: Iterable[optuna.trial.Trial], reason: str) -> None:
        """The target call for ``trials`` failed: they spent their queries and got no answer."""
        for trial in trials:
            trial.set_user_attr(FAIL_REASON, reason)
            self._fail(trial)

    def skip_unchanged(self, trial: optuna.trial.Trial) -> None:
        """``trial``'s candidate rounds to the clean image: failed unsent, no query spent."""
        trial.set_user_attr(UNCHANGED, NO_CHANGE_REASON)
        self._fail(trial)

    def discard(self, trials: Iterable[optuna.trial.Trial]) -> None:
        """Asked ahead, never sent: the search stopped first. Kept as failed, with no queries spent.

        They stay in the in-memory study only: nothing was sent, so the storage need not know.
        """
        for trial in trials:
            trial.set_user_attr(DISCARDED, DISCARD_REASON)
            self.live.tell(trial, state=TrialState.FAIL)

    def write_discarded(self) -> None:
        """Write the trials discarded at the end of the live study, when more trials will follow
        them (the shrink's probes): the stored trial numbers stay the live ones, which replay names."""
        if not self.writes_behind:
            return
        tail = self.live.get_trials(deepcopy=False)[len(self.stored.get_trials(deepcopy=False)) :]
        if any(DISCARDED not in t.user_attrs for t in tail):
            raise RuntimeError(
                "write_discarded: unwritten trials other than discarded ones; call write first"
            )
        self.stored.add_trials(tail)

    def write(self, answered: Sequence[optuna.trial.Trial] = ()) -> None:
        """Copy the trials finished since the last write, and the batch ``answered``, to the storage.

        A batch is written whole or not at all: one cut short (Ctrl-C while it is told) stays
        :data:`IN_FLIGHT`, so the next session counts all of it as spent.
        """
        self._unwritten += [t.number for t in answered]
        if self.writes_behind and self._unwritten:
            trials = self.live.get_trials(deepcopy=False)
            self.stored.add_trials([trials[n] for n in self._unwritten])
            self.stored.set_user_attr(IN_FLIGHT, None)
        self._unwritten.clear()

    def _fail(self, trial: optuna.trial.Trial) -> None:
        self.live.tell(trial, state=TrialState.FAIL)
        self._unwritten.append(trial.number)


def _check_settings(name: str, recorded: Mapping, current: Mapping) -> None:
    there, now = _flat(recorded), _flat(current)
    changed = sorted(
        (key for key in there.keys() | now.keys() if there.get(key) != now.get(key)),
        key=lambda key: (key.count("."), key),  # search.kind before search.space.angle.high
    )
    if not changed:
        return
    shown = [f"{key}: {there.get(key, '-')} there, {now.get(key, '-')} now" for key in changed[:4]]
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    raise StudySettingsError(
        f"the study {name!r} in this storage was made with other settings ({'; '.join(shown)}{more}); "
        "its trials and result belong to those: re-run with them to resume it, or keep this run's trials "
        "in another storage (another run folder, or another storage= for blackbox.attack)"
    )


def _flat(value: object, prefix: str = "") -> dict[str, str]:
    """Nested settings as ``{"search.n_patches": "4", ...}`` (values as JSON), to name what differs."""
    if isinstance(value, Mapping) and value:
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: json.dumps(value, sort_keys=True)}


def _fail_running(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed process: their batch may have reached the target.

    They are failed with the reason, which makes :meth:`SearchStudy.resume` count them as spent.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, INTERRUPTED)
        study.tell(trial.number, state=TrialState.FAIL)


def _count_interrupted_batch(stored: optuna.Study) -> None:
    """A batch that was out when the process died may have reached the target: count it as spent.

    Its trials were never written (write-behind), so they are added as failed trials saying so.
    """
    in_flight = stored.user_attrs.get(IN_FLIGHT)
    if not in_flight:
        return
    first, count = in_flight
    written = {t.number for t in stored.get_trials(deepcopy=False)}
    lost = [n for n in range(first, first + count) if n not in written]
    stored.add_trials(
        [
            optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={FAIL_REASON: INTERRUPTED})
            for _ in lost
        ]
    )
    stored.set_user_attr(IN_FLIGHT, None)
