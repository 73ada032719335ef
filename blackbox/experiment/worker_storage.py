"""Optuna's RDB storage for ``storage=postgres`` workers: every trial has a heartbeat from its first
moment, so a killed worker's trials are recognisably stale, and a stale trial is enqueued again.
"""

from __future__ import annotations

import contextlib
import threading

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState


class WorkerStorage(RDBStorage):
    """Optuna's RDB storage, giving every trial a heartbeat from its first moment.

    Optuna records heartbeats only inside ``Study.optimize``; the attack uses ask-and-tell, so a
    trial is given one when it starts running, and :meth:`beat` (the lease thread) keeps this
    process's running trials alive. A trial of a killed worker is then recognisably stale.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._running: set[int] = set()
        self._running_lock = threading.Lock()

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            self._started(trial._trial_id)
        return trial

    def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
        changed = super().set_trial_state_values(trial_id, state=state, values=values)
        if changed and state == TrialState.RUNNING:  # an enqueued (e.g. retried) trial popped by ask()
            self._started(trial_id)
        elif state.is_finished():
            with self._running_lock:
                self._running.discard(trial_id)
        return changed

    def _started(self, trial_id: int) -> None:
        self.record_heartbeat(trial_id)
        with self._running_lock:
            self._running.add(trial_id)

    def fail_running(self) -> None:
        """Fail this process's trials still running (an image abandoned mid-batch); not retried."""
        with self._running_lock:
            running, self._running = list(self._running), set()
        for trial_id in running:
            # UpdateFinishedTrialError: another worker's stale check failed it meanwhile.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                super().set_trial_state_values(trial_id, state=TrialState.FAIL)

    def beat(self) -> None:
        with self._running_lock:
            running = list(self._running)
        for trial_id in running:
            self.record_heartbeat(trial_id)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_running_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._running_lock = threading.Lock()


def retry_stale_trials(max_retry: int) -> dict:
    """The storage argument that re-enqueues a stale trial (Optuna renamed it in 4.9)."""
    storages = optuna.storages
    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        return {
            "heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        }
    return {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=max_retry)}
