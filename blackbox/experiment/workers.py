"""``storage=postgres``: worker processes on any number of machines share one experiment.

``python -m blackbox ... storage=postgres`` started N times (on one machine or many, all reaching
the database at ``storage.url`` / ``$BLACKBOX_POSTGRES_URL``) is the whole recipe.

* **Experiment.** A PostgreSQL schema ``bb_<name>``, holding Optuna's tables and two of ours.
  ``<name>`` is ``storage.experiment`` or, by default, a digest of the run's settings except the
  storage, ``progress``, ``artifacts``, ``worker`` and ``torch_threads``: the same command started
  again joins the same experiment; another eps, budget, target or dataset is another experiment
  (named at the settings edge, :func:`blackbox.settings.build.experiment_name`).
* **One worker per image, by lease.** ``blackbox_claims`` has a row per image. A worker takes an
  image with one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (free, released, or its lease
  expired) ``RETURNING``: a compare-and-set inside the database, so two workers never both win.
  While it attacks, a thread renews the lease every ``heartbeat_interval`` seconds and records
  Optuna heartbeats for the worker's running trials. A lease not renewed for ``grace_period +
  2 * heartbeat_interval`` has expired and any worker takes the image over.
* **A dead worker's trials.** On taking an image over, Optuna's ``fail_stale_trials`` marks the
  trials whose heartbeat is older than ``grace_period`` failed, and ``RetryFailedTrialCallback``
  enqueues each again with its parameters (``max_retry`` times): the next ``ask`` runs it. The
  budget counts completed trials (as on resume), so the queries of the killed trials are spent
  again and no budgeted trial completes twice.
* **Results.** ``blackbox_results`` has one row per image, written in the transaction that marks the
  claim done and only while the worker still holds it: written once. A worker ends when every
  image is done (waiting for other workers' images, taking over expired leases) or was tried by it
  and failed (``errors.jsonl``); then it writes the whole experiment's ``results.jsonl``, in dataset
  order, to its run folder. ``run_dir/experiment.json`` names the schema and artifact folder.
* **Artifacts** go to ``storage.artifacts_dir`` (default ``runs/experiments/<schema>/artifacts``): a
  folder all machines reach (a shared file system) if the dashboard is to show every trial's images.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
from optuna.storages import RDBStorage

from blackbox.attacks import AttackFailedError
from blackbox.core.datasets import ImageSource, iterate
from blackbox.experiment.local import Experiment, Scheduled
from blackbox.experiment.options import StorageSettings
from blackbox.experiment.postgres import (
    CLAIM,
    FINISH,
    RELEASE,
    RENEW,
    SAVE_RESULT,
    open_reading_storage,
    open_storage,
    schema_for,
)
from blackbox.experiment.worker_storage import WorkerStorage
from blackbox.search.patch_search import TrialRecord
from targets import ConfigError


class LeaseLostError(AttackFailedError):
    """Another worker took this image over (this one stalled past its lease); this one stops."""


def worker_id(label: object | None = None) -> str:
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{label}" if label not in (None, "") else base


class PostgresExperiment(Experiment):
    """One experiment in PostgreSQL, shared by every worker that opens it (see the module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        name: str,
        run_dir: Path,
        heartbeat_interval: float = 10.0,
        grace_period: float = 30.0,
        max_retry: int = 3,
        poll_interval: float | None = None,
        artifacts_dir: Path | None = None,
        worker: str | None = None,
        reading: bool = False,
    ) -> None:
        if not url:
            raise ConfigError(
                "storage=postgres needs a database: set BLACKBOX_POSTGRES_URL or storage.url="
                "postgresql://user:password@host:5432/database"
            )
        if heartbeat_interval <= 0 or grace_period < heartbeat_interval:
            raise ConfigError(
                f"storage.heartbeat_interval must be > 0 and storage.grace_period >= it, got "
                f"{heartbeat_interval:g} and {grace_period:g} (seconds)"
            )
        try:
            import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver for postgresql:// URLs)
        except ImportError as error:
            raise ConfigError(
                "storage=postgres needs psycopg: pip install 'psycopg[binary]' (extra 'postgres')"
            ) from error
        self.url, self.name, self.schema = url, name, schema_for(name)
        self.run_dir = run_dir
        self.heartbeat_interval, self.grace_period = float(heartbeat_interval), float(grace_period)
        self.max_retry = int(max_retry)
        # Expired only once its trials are stale too (a trial's beat may follow the lease's by one interval).
        self.lease_seconds = self.grace_period + 2 * self.heartbeat_interval
        self.poll_interval = float(poll_interval) if poll_interval else self.heartbeat_interval
        self.artifact_dir = (
            artifacts_dir or Path("runs") / "experiments" / self.schema / "artifacts"
        ).resolve()
        self.worker = worker or worker_id()
        self._done: set[str] = set()
        self._recorded: set[str] = set()
        self._order: list[str] = []
        self._held: str | None = None
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        if reading:
            self.storage = self._open_for_reading()
            return
        # ask() warns on every trial that heartbeats are meant for optimize(); here they are kept by hand.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.storage = self._open()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "experiment.json").write_text(json.dumps(self.describe_dict(), indent=2) + "\n")

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, run_dir: Path, *, reading: bool = False
    ) -> PostgresExperiment:
        """The experiment ``storage`` names (``storage.experiment``, resolved at the settings edge)."""
        return cls(
            url=storage.url or "",
            name=storage.experiment or "",
            run_dir=run_dir,
            heartbeat_interval=storage.heartbeat_interval,
            grace_period=storage.grace_period,
            max_retry=storage.max_retry,
            poll_interval=storage.poll_interval,
            artifacts_dir=storage.artifacts_dir,
            worker=worker_id(storage.worker),
            reading=reading,
        )

    def describe_dict(self) -> dict:
        return {
            "experiment": self.name,
            "schema": self.schema,
            "worker": self.worker,
            "artifacts_dir": str(self.artifact_dir),
        }

    def describe(self) -> str:
        return f"storage=postgres, schema {self.schema}"

    # -- the database -------------------------------------------------------------------------------

    def _open(self) -> WorkerStorage:
        return open_storage(
            self.url,
            self.schema,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            max_retry=self.max_retry,
        )

    def _open_for_reading(self) -> RDBStorage:
        return open_reading_storage(self.url, self.schema, self.name)

    def _execute(self, statement: str, **parameters):
        import sqlalchemy

        with self.storage.engine.begin() as connection:
            result = connection.execute(sqlalchemy.text(statement), parameters)
            return result.rowcount, result.fetchall() if result.returns_rows else []

    def claim(self, image: str) -> str:
        """``claimed`` (this worker now holds the image), ``done``, or ``busy`` (another worker holds it)."""
        _, rows = self._execute(CLAIM, image=image, worker=self.worker, lease=self.lease_seconds)
        if rows:
            return "claimed"
        _, state = self._execute("SELECT state FROM blackbox_claims WHERE image = :image", image=image)
        return "done" if state and state[0][0] == "done" else "busy"

    def renew(self, image: str) -> bool:
        updated, _ = self._execute(RENEW, image=image, worker=self.worker)
        return updated == 1

    def release(self, image: str) -> None:
        self._execute(RELEASE, image=image, worker=self.worker)

    def results(self) -> dict[str, dict]:
        _, rows = self._execute("SELECT image, record FROM blackbox_results")
        return {image: json.loads(record) for image, record in rows}

    def claims(self) -> list[tuple]:
        _, rows = self._execute("SELECT image, state, worker, attempts FROM blackbox_claims ORDER BY image")
        return rows

    # -- the run ------------------------------------------------------------------------------------

    def is_done(self, image_id: str) -> bool:
        return image_id in self._done

    def schedule(self, sources: Sequence[ImageSource], working_width: int | None) -> Iterator[Scheduled]:
        """Claim images one at a time; wait for images other workers hold until they are done or expire."""
        self._order = [source.image_id for source in sources]
        finished: set[str] = set()  # done by anyone, or tried by this worker
        self._start_lease_thread()
        try:
            while True:
                others_hold = False
                for source in sources:
                    image = source.image_id
                    if image in finished:
                        continue
                    state = self.claim(image)
                    if state == "busy":
                        others_hold = True
                        continue
                    finished.add(image)
                    if state == "done":
                        self._done.add(image)
                        yield source, None
                        continue
                    self._hold(image)
                    try:
                        self._take_over(image)
                        yield from iterate([source], working_width)
                    finally:
                        self._hold(None)
                        self.storage.fail_running()
                        if image not in self._recorded:  # failed or skipped: free for another worker
                            self.release(image)
                if not others_hold:
                    return
                time.sleep(self.poll_interval)
        finally:
            self._stop.set()

    def _hold(self, image: str | None) -> None:
        self._lost.clear()
        self._held = image

    def _take_over(self, image: str) -> None:
        """Fail the stale trials a dead worker left in this image's studies; they are enqueued again."""
        for study in self.storage.get_all_studies():
            if study.user_attrs.get("image") == image:
                optuna.storages.fail_stale_trials(
                    optuna.load_study(study_name=study.study_name, storage=self.storage)
                )

    def _start_lease_thread(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep_alive, name="blackbox-lease", daemon=True)
        self._thread.start()

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            try:
                image = self._held
                if image is not None and not self.renew(image):
                    self._lost.set()
                self.storage.beat()
            except Exception as error:  # the database away for a moment: the next beat tries again
                print(f"warning: heartbeat failed: {error}", file=sys.stderr)

    def trial_callbacks(self, mode: str) -> list:
        def guard(record: TrialRecord) -> None:
            if self._lost.is_set():
                raise LeaseLostError(
                    f"{record.problem.image.image_id}: another worker took this image over (this worker "
                    f"stalled for more than {self.lease_seconds:g} s); its result is theirs"
                )

        return [guard, *super().trial_callbacks(mode)]

    def record(self, record: dict) -> None:
        import sqlalchemy

        image = record["image"]
        with self.storage.engine.begin() as connection:
            finished = connection.execute(sqlalchemy.text(FINISH), {"image": image, "worker": self.worker})
            if finished.rowcount != 1:
                connection.rollback()
                print(
                    f"warning: {image} was taken over by another worker; its result here is dropped",
                    file=sys.stderr,
                )
                return
            connection.execute(
                sqlalchemy.text(SAVE_RESULT),
                {"image": image, "worker": self.worker, "record": json.dumps(record, allow_nan=False)},
            )
        self._recorded.add(image)
        self._done.add(image)

    def close(self) -> None:
        """Write the experiment's ``results.jsonl`` (every worker's images, dataset order) to the run."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        results = self.results()
        order = {image: i for i, image in enumerate(self._order)}
        lines = [results[image] for image in sorted(results, key=lambda i: (order.get(i, len(order)), i))]
        path = self.run_dir / "results.jsonl"
        partial = path.with_suffix(".jsonl.partial")
        partial.write_text("".join(json.dumps(line, allow_nan=False) + "\n" for line in lines))
        os.replace(partial, path)
