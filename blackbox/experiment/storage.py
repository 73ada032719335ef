"""Optuna storages for a run: the journal file under the run folder by default.

Measured on this project's 2-core machine (``python -m benchmarks.overhead``): a journal file costs a
few ms a trial, SQLite tens of ms, in-memory ~nothing but is lost with the process. The journal
keeps every trial across crashes (resume) and optuna-dashboard opens it directly.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from blackbox.experiment.jsonl import check_lines

STORAGE_KINDS = ("journal", "sqlite", "memory", "url")


def check_journal(path: Path) -> None:
    """Raise :class:`~.jsonl.JsonlError` (exit 2) naming a damaged line of an Optuna journal.

    Optuna replays the whole journal when it opens it, so one damaged record in the middle would
    end any command on that folder with a JSONDecodeError traceback, even for a finished run.
    """
    check_lines(
        path,
        "Optuna journal record",
        f"Optuna cannot read the trials past it. Move the file aside (mv {path} {path}.damaged) and "
        "re-run the same command: images already in results.jsonl (results.csv for compare) stay done "
        "and the others restart their search; or re-run in a new folder (hydra.run.dir=...)",
    )


def journal_storage(path: Path) -> JournalStorage:
    """An Optuna journal file at ``path``, made if missing.

    Raises :class:`~.jsonl.JsonlError` naming a damaged line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    check_journal(path)
    return JournalStorage(JournalFileBackend(str(path)))


def make_storage(
    kind: str, run_dir: Path, *, url: str | None = None
) -> optuna.storages.BaseStorage | str | None:
    """The storage a run uses; ``None`` means Optuna's in-memory storage."""
    if kind == "journal":
        return journal_storage(run_dir / "optuna.journal")
    if kind == "sqlite":
        run_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(run_dir / 'optuna.sqlite3').resolve()}"
    if kind == "memory":
        return None
    if kind == "url":
        if not url:
            raise ValueError("storage=url needs storage.url=<an RDB URL, e.g. postgresql://...>")
        return url
    if kind == "postgres":  # shared by many workers: see blackbox/experiment/workers.py
        raise ValueError(
            "storage=postgres is for python -m blackbox workers (experiment.workers), not this command"
        )
    raise ValueError(f"unknown storage kind {kind!r}; choose from {', '.join(STORAGE_KINDS)}, postgres")
