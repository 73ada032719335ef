"""Optuna storages for a run: the journal file under the run folder by default.

Measured on this project's 2-core machine (``python -m benchmarks.overhead``): a journal file costs a
few ms a trial, SQLite tens of ms, in-memory ~nothing but is lost with the process. The journal
keeps every trial across crashes (resume) and optuna-dashboard opens it directly.

Storage this Optuna cannot read ends a command with exit 2 and what to do, never a traceback: a
damaged journal line or a record Optuna cannot apply (an operation of another Optuna version, a
field missing) names the file and the line (:class:`~.jsonl.JsonlError`); an SQLite file or database
whose schema another Optuna version made names both versions (:class:`StorageVersionError`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from packaging.version import InvalidVersion, Version

from blackbox.experiment.jsonl import JsonlError, check_lines
from targets import UserError

STORAGE_KINDS = ("journal", "sqlite", "memory", "url")


class StorageVersionError(UserError, ValueError):
    """An RDB storage (SQLite file, database URL) another Optuna version made, or not one at all."""


class _NumberedJournal(JournalFileBackend):
    """Optuna's journal file, remembering the line of the last record it handed to Optuna's replay:
    a record Optuna cannot apply is then named by its line."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self.line, self.record = 0, None

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        # Optuna numbers records by line, from 0, and hands out every line from log_number_from on.
        for number, record in enumerate(super().read_logs(log_number_from), start=log_number_from + 1):
            self.line, self.record = number, record
            yield record


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

    Raises :class:`~.jsonl.JsonlError` naming a damaged line, or a record this Optuna cannot apply.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    check_journal(path)
    backend = _NumberedJournal(str(path))
    try:
        return JournalStorage(backend)  # replays every record
    except OSError:
        raise
    except Exception as error:  # whatever Optuna's replay raises on a record it cannot apply
        raise JsonlError(_unusable_record(path, backend.line, backend.record, error)) from None


def _unusable_record(path: Path, line: int, record: object, error: Exception) -> str:
    try:  # the operations this Optuna knows (a private enum: an error message must not depend on it)
        from optuna.storages.journal._storage import JournalOperation

        known: set[int] | None = {int(op) for op in JournalOperation}
    except ImportError:
        known = None
    op = record.get("op_code") if isinstance(record, dict) else None
    remedy = (
        f"move the file aside (mv {path} {path}.unreadable) and re-run the same command: images "
        "already in results.jsonl (results.csv for compare) stay done and the others restart their "
        "search; or re-run in a new folder (hydra.run.dir=...)"
    )
    if isinstance(op, int) and known is not None and op not in known:
        return (
            f"{path}, line {line} holds an operation this Optuna ({optuna.__version__}) does not know "
            f"(op_code {op}): another Optuna version wrote it. Open the folder with the Optuna that "
            f"wrote it (pip install -U optuna, if it was a newer one), or {remedy}"
        )
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return (
        f"{path}, line {line} is JSON but not an Optuna journal record this Optuna "
        f"({optuna.__version__}) can apply ({reason}): the file was edited, or another tool or Optuna "
        f"version wrote it. To go on, {remedy}"
    )


def check_rdb(url: str, where: str) -> None:
    """Open the RDB storage at ``url`` once (made if missing) to check its schema is this Optuna's.

    ``where`` names it in messages (the SQLite file, or the URL's kind). Raises
    :class:`StorageVersionError`: a schema an older Optuna made (upgrade it in place, or use that
    Optuna), a newer one (install it), or an SQLite file that is not a database.
    """
    try:
        storage = optuna.storages.RDBStorage(url)
    except RuntimeError as error:
        made_by = _schema_made_by(url)
        if made_by is None or made_by == optuna.__version__:
            raise
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
        raise StorageVersionError(_other_version(where, shown, made_by)) from error
    except sqlalchemy.exc.DatabaseError as error:
        if not url.startswith("sqlite:"):
            raise
        reason = str(getattr(error, "orig", error))
        raise StorageVersionError(
            f"{where} is not an SQLite database Optuna can read ({reason}): the file was damaged or "
            f"is another kind of file. Move it aside (mv {where} {where}.unreadable) and re-run the "
            "same command (images already in results.jsonl stay done; the others restart their "
            "search), or re-run in a new folder (hydra.run.dir=...)"
        ) from None
    storage.remove_session()
    storage.engine.dispose()


def _schema_made_by(url: str) -> str | None:
    """The Optuna version that made (or last upgraded) the storage's schema, as it recorded it."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            made_by = connection.execute(sqlalchemy.text("SELECT library_version FROM version_info")).scalar()
    except sqlalchemy.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return str(made_by) if made_by is not None else None


def _other_version(where: str, url: str, made_by: str) -> str:
    running = optuna.__version__
    try:
        newer = Version(made_by) > Version(running)
    except InvalidVersion:
        newer = False
    if newer:
        return (
            f"{where} was made by Optuna {made_by}, newer than this Optuna ({running}), which cannot "
            f"read its schema: install Optuna {made_by} or later (pip install 'optuna>={made_by}') to "
            "use it, or re-run in a new folder (hydra.run.dir=...)"
        )
    return (
        f"{where} was made by Optuna {made_by}, whose schema this Optuna ({running}) reads only once "
        f"upgraded: back it up, then upgrade it in place (optuna storage upgrade --storage {url}), or "
        f"run with Optuna {made_by} (pip install 'optuna=={made_by}'), or re-run in a new folder "
        "(hydra.run.dir=...)"
    )


def make_storage(
    kind: str, run_dir: Path, *, url: str | None = None
) -> optuna.storages.BaseStorage | str | None:
    """The storage a run uses; ``None`` means Optuna's in-memory storage."""
    if kind == "journal":
        return journal_storage(run_dir / "optuna.journal")
    if kind == "sqlite":
        run_dir.mkdir(parents=True, exist_ok=True)
        path = (run_dir / "optuna.sqlite3").resolve()
        check_rdb(f"sqlite:///{path}", str(path))
        return f"sqlite:///{path}"
    if kind == "memory":
        return None
    if kind == "url":
        if not url:
            raise ValueError("storage=url needs storage.url=<an RDB URL, e.g. postgresql://...>")
        check_rdb(url, "the storage.url database")
        return url
    if kind == "postgres":  # shared by many workers: see blackbox/experiment/workers.py
        raise ValueError(
            "storage=postgres is for python -m blackbox workers (experiment.workers), not this command"
        )
    raise ValueError(f"unknown storage kind {kind!r}; choose from {', '.join(STORAGE_KINDS)}, postgres")
