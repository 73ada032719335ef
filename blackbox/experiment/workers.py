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

import contextlib
import json
import os
import re
import socket
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from blackbox.attacks import AttackFailedError
from blackbox.core.datasets import ImageSource, iterate
from blackbox.experiment.local import Experiment, Scheduled
from blackbox.experiment.options import StorageSettings
from blackbox.search.patch_search import TrialRecord
from targets import ConfigError

CREATE_TABLES = (
    """CREATE TABLE IF NOT EXISTS blackbox_claims (
        image TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('running', 'released', 'done')),
        worker TEXT NOT NULL,
        heartbeat TIMESTAMPTZ NOT NULL DEFAULT now(),
        attempts INTEGER NOT NULL DEFAULT 1)""",
    """CREATE TABLE IF NOT EXISTS blackbox_results (
        image TEXT PRIMARY KEY,
        worker TEXT NOT NULL,
        record TEXT NOT NULL,
        finished TIMESTAMPTZ NOT NULL DEFAULT now())""",
)
CLAIM = """
INSERT INTO blackbox_claims AS c (image, state, worker) VALUES (:image, 'running', :worker)
ON CONFLICT (image) DO UPDATE SET state = 'running', worker = EXCLUDED.worker, heartbeat = now(),
    attempts = c.attempts + 1
WHERE c.state = 'released' OR (c.state = 'running' AND c.heartbeat < now() - make_interval(secs => :lease))
RETURNING c.attempts"""
HELD = "WHERE image = :image AND worker = :worker AND state = 'running'"
RENEW = f"UPDATE blackbox_claims SET heartbeat = now() {HELD}"
RELEASE = f"UPDATE blackbox_claims SET state = 'released' {HELD}"
FINISH = f"UPDATE blackbox_claims SET state = 'done', heartbeat = now() {HELD}"
SAVE_RESULT = """INSERT INTO blackbox_results (image, worker, record) VALUES (:image, :worker, :record)
ON CONFLICT (image) DO NOTHING"""


class LeaseLostError(AttackFailedError):
    """Another worker took this image over (this one stalled past its lease); this one stops."""


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


def schema_for(name: str) -> str:
    """A PostgreSQL schema name for an experiment: ``bb_`` + lower-case letters, digits and ``_``."""
    cleaned = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not cleaned:
        raise ConfigError(f"storage.experiment={name!r} has no letters or digits to name a schema with")
    return f"bb_{cleaned}"[:63]


def worker_id(label: object | None = None) -> str:
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{label}" if label not in (None, "") else base


def _engine_kwargs(schema: str) -> dict:
    # Every connection of this experiment works inside its schema: Optuna's tables are created there.
    return {"connect_args": {"options": f"-csearch_path={schema}"}, "pool_pre_ping": True}


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
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        admin = sqlalchemy.create_engine(self.url, poolclass=NullPool)
        lock_key = zlib.crc32(self.schema.encode())
        try:
            with admin.connect() as connection:
                # Workers starting together would race to create the same tables: one at a time.
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": lock_key})
                try:
                    connection.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                    connection.commit()
                    storage = WorkerStorage(
                        self.url,
                        engine_kwargs=_engine_kwargs(self.schema),
                        heartbeat_interval=self.heartbeat_interval,  # type: ignore[arg-type]
                        grace_period=self.grace_period,  # type: ignore[arg-type]
                        **_retry_stale_trials(self.max_retry),
                    )
                    with storage.engine.begin() as tables:
                        for statement in CREATE_TABLES:
                            tables.execute(sqlalchemy.text(statement))
                finally:
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
                    connection.commit()
        except sqlalchemy.exc.OperationalError as error:
            raise ConfigError(f"cannot reach PostgreSQL at {_redacted(self.url)}: {error.orig}") from error
        finally:
            admin.dispose()
        return storage

    def _open_for_reading(self) -> RDBStorage:
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url)
        try:
            with engine.connect() as connection:
                found = connection.execute(
                    sqlalchemy.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                    {"s": self.schema},
                ).first()
        except sqlalchemy.exc.OperationalError as error:
            raise ConfigError(f"cannot reach PostgreSQL at {_redacted(self.url)}: {error.orig}") from error
        finally:
            engine.dispose()
        if found is None:
            raise ConfigError(f"no experiment {self.name!r} (schema {self.schema}) in {_redacted(self.url)}")
        return RDBStorage(self.url, engine_kwargs=_engine_kwargs(self.schema), skip_compatibility_check=True)

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


def _retry_stale_trials(max_retry: int) -> dict:
    """The storage argument that re-enqueues a stale trial (Optuna renamed it in 4.9)."""
    storages = optuna.storages
    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        return {
            "heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        }
    return {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=max_retry)}


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
