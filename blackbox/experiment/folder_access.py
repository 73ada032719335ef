"""Run folders the system refuses: a read-only file system, no write permission, a full disk.

Each refusal becomes a :class:`RunFolderError` (exit 2) that names the folder, the cause and what to
do, never a traceback. :func:`check_writable` runs before any work (before Hydra touches the folder,
and again once a run holds it): it makes and removes a probe file, and opens for appending each
file a run adds to. A refusal met mid-run (the disk fills up) is turned into the same error by
:func:`refusal` (:func:`~blackbox.experiment.run_folder.working_in` catches it): every line written
so far is whole or set aside as a torn tail, so re-running the same command resumes.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from targets import ConfigError

# The files a run appends to or rewrites at its top level; each must open for appending.
WRITTEN = (
    ".blackbox.lock",
    "resume.json",
    "results.jsonl",
    "errors.jsonl",
    "optuna.journal",
    "optuna.sqlite3",
    "summary.md",
)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_WRITE = (errno.EROFS, errno.EACCES, errno.EPERM)


class RunFolderError(ConfigError):
    """The system refuses a run's writes in its folder; the message says why and what to do."""


def check_writable(run_dir: Path) -> None:
    """Raise :class:`RunFolderError` unless a run can write in ``run_dir``, or make it.

    A folder that does not exist yet is checked at its nearest existing parent (a new run folder
    under a read-only mount).
    """
    folder = run_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise RunFolderError(f"{run_dir}: {folder} is a file, not a folder; give the run another folder")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".blackbox-probe-")
    except OSError as error:
        error.filename = str(folder)  # not the probe's name, which says nothing to a user
        raise RunFolderError(refusal(run_dir, error)) from None
    os.close(handle)
    os.unlink(probe)
    for name in WRITTEN if folder == run_dir else ():
        if (run_dir / name).is_file():
            try:
                with (run_dir / name).open("ab"):
                    pass
            except OSError as error:
                raise RunFolderError(refusal(run_dir, error)) from None


def is_refusal(error: OSError, run_dir: Path) -> bool:
    """Whether ``error`` is the system refusing a write: no space anywhere, or no write in ``run_dir``."""
    if error.errno in _NO_SPACE or error.errno == errno.EROFS:
        return True
    if error.errno in _NO_WRITE and error.filename:
        return Path(os.path.abspath(error.filename)).is_relative_to(run_dir.absolute())
    return False


def refusal(run_dir: Path, error: OSError) -> str:
    """What to tell a user whose run folder the system refused, by cause."""
    cause = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    resume = "re-run the same command to resume (nothing done so far is lost)"
    if error.errno in _NO_SPACE:
        return f"no space left on the device of {run_dir} ({cause}): free space and {resume}"
    if error.errno == errno.EROFS:
        return (
            f"{run_dir} is on a read-only file system ({cause}): give the run a writable folder "
            f"(hydra.run.dir=...), or remount it read-write and {resume}"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        denied = error.filename if error.filename and Path(error.filename).is_dir() else run_dir
        return (
            f"no permission to write in {run_dir} ({cause}): give yourself write permission "
            f"(chmod -R u+w {denied}) and {resume}, or give the run another folder (hydra.run.dir=...)"
        )
    return f"cannot write in {run_dir} ({cause}): fix that, then {resume}"
