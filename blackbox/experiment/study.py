"""Open a run's experiment: :class:`~blackbox.experiment.local.LocalExperiment` or, for
``storage=postgres``, :class:`~blackbox.experiment.workers.PostgresExperiment`, whose workers share one
experiment in PostgreSQL (each image claimed by one worker at a time, results kept in the database).

Both kinds build on :class:`~blackbox.experiment.local.Experiment`; this module is the only one that
knows both, so ``local`` and ``workers`` do not import each other.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from blackbox.experiment.artifacts import artifact_store
from blackbox.experiment.local import Experiment, LocalExperiment, Scheduled
from blackbox.experiment.options import StorageSettings
from blackbox.experiment.storage import make_storage
from blackbox.experiment.workers import PostgresExperiment

__all__ = ["Experiment", "LocalExperiment", "Scheduled", "open_experiment", "open_for_reading"]


def open_experiment(storage: StorageSettings, run_dir: Path) -> Experiment:
    """The experiment a run attacks in: its storage, artifacts, and which images are done."""
    if storage.kind == "postgres":
        return PostgresExperiment.from_settings(storage, run_dir)
    return LocalExperiment(storage=make_storage(storage.kind, run_dir, url=storage.url), run_dir=run_dir)


def open_for_reading(
    run_dir: Path, storage: StorageSettings | None
) -> tuple[optuna.storages.BaseStorage | str | None, object | None, str]:
    """A finished or running run's storage, its artifact store (``None`` if it has none), and a description.

    ``storage``: the run's storage settings (:func:`blackbox.settings.build.stored_storage`); ``None``
    for a folder without them (a run made from Python, or a comparison): its ``optuna.journal``. The
    storage returned is ``None`` for a ``storage=memory`` run, whose trials were not kept.

    Raises:
        FileNotFoundError: a journal run whose ``optuna.journal`` is missing.
    """
    if storage is None:
        return make_storage("journal", run_dir), _store_if_present(run_dir / "artifacts"), "optuna.journal"
    if storage.kind == "postgres":
        experiment = PostgresExperiment.from_settings(storage, run_dir, reading=True)
        return experiment.storage, _store_if_present(experiment.artifact_dir), experiment.describe()
    kept_in = {"journal": "optuna.journal", "sqlite": "optuna.sqlite3"}.get(storage.kind)
    if kept_in and not (run_dir / kept_in).exists():  # reading never makes a file
        raise FileNotFoundError(f"{run_dir}/{kept_in} is missing: that run kept no trials")
    kept = make_storage(storage.kind, run_dir, url=storage.url)
    return kept, _store_if_present(run_dir / "artifacts"), f"storage={storage.kind}"


def _store_if_present(directory: Path | None):
    return artifact_store(directory) if directory is not None and directory.is_dir() else None
