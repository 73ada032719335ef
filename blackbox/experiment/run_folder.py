"""One process per run folder, and a folder left by a crash made ready to resume.

:func:`claim_run_folder` holds an OS lock on ``<run>/.blackbox.lock`` for the whole run (the kernel
drops it when the process dies, even by SIGKILL), so two runs never write the same folder. Holding
it also proves any Optuna journal lock file there is stale: Optuna would wait 30 s for its dead
holder, so it is removed. Torn last lines of the journal and JSON-lines files are set aside
(:mod:`blackbox.experiment.jsonl`). A folder resumes only the run that made it: the settings that decide the
results are kept in ``resume.json`` and a re-run with other values is refused, not mixed in. A folder
the system refuses (read-only, a full disk) is named with the cause (:mod:`.folder_access`).

A refused run changes nothing of a finished folder: its checks run before Hydra makes or touches the
folder (:func:`check_run_folder`, from the command line's pre-flight), and Hydra writes no ``.hydra/``
there (``hydra.output_subdir: null``): the run writes its own record of its settings
(:func:`record_settings`) once the folder has accepted it, which is what readers read back
(:func:`stored_config`: the dashboard, replay, reports).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.folder_access import RunFolderError, check_writable, is_refusal, refusal
from blackbox.experiment.jsonl import check_lines, repair_torn_tail
from targets import ConfigError

RUN_LOCK = ".blackbox.lock"
RESUME_SETTINGS = "resume.json"
# What a result depends on: a re-run in the same folder must keep these to resume. (The dataset may
# grow; progress bars, storage and batch size change nothing a result holds.)
RESULT_SETTINGS = (
    "budget",
    "eps",
    "norm",
    "seed",
    "early_stop",
    "working_width",
    "aspect_ratios",
    "goal",
    "search",
    "measure",
    "warm_start",
    "success",
    "shrink",
)
# Folders made before a setting existed ran with what it then always was: success=point (issue 16).
_BEFORE_THE_SETTING = {"success": "point", "shrink": {"enabled": False, "steps": 8, "tolerance": 0.00390625}}
# Recorded since issue 29, unknown for folders made before (any value resumes those): where the trials
# are (a session in another storage would start unfinished images afresh, past their budget).
_NOT_ALWAYS_RECORDED = ("storage",)
# The run's own record of its settings, in the files and format Hydra wrote before.
RECORD = ".hydra"


class RunFolderBusyError(ConfigError):
    """Another process is running in this folder."""


@contextmanager
def claim_run_folder(run_dir: Path, journal: Path | None = None) -> Iterator[None]:
    """Hold the folder's lock while the run works in it; repair what a killed run left behind."""
    lock = FileLock(str(run_dir / RUN_LOCK), timeout=0)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise _busy(run_dir) from None
    except OSError as error:  # a read-only file system, no permission
        raise RunFolderError(refusal(run_dir, error)) from None
    try:
        check_writable(run_dir)
        if journal is not None:
            _clear_stale_journal_lock(journal)
            repair_torn_tail(journal)
        yield
    finally:
        lock.release()


def _busy(run_dir: Path) -> RunFolderBusyError:
    return RunFolderBusyError(
        f"another blackbox process is running in {run_dir}; wait for it to finish, or give this "
        "run its own folder (hydra.run.dir=...)"
    )


@contextmanager
def working_in(run_dir: Path, *, journal: bool, torch_threads: int | None = None) -> Iterator[None]:
    """The process setup every attacking command shares, around :func:`claim_run_folder`.

    Holds ``run_dir`` (with its Optuna journal when ``journal``: ``storage=journal``), turns the
    system refusing a write there (a full disk, a read-only file system) into a
    :class:`~.folder_access.RunFolderError` that says what to do, quiets
    Optuna's per-study log lines (one per in-memory study would break the progress bars) and gives
    torch ``torch_threads`` intra-op threads when set (on a small machine, one fewer leaves a
    core to the sampler).
    """
    import optuna  # here, not at the top: the folder checks above need neither optuna nor torch
    import torch

    with claim_run_folder(run_dir, run_dir / "optuna.journal" if journal else None):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        try:
            yield
        except OSError as error:  # e.g. the disk filled up mid-run: every line so far is kept
            if not is_refusal(error, run_dir):
                raise
            raise RunFolderError(refusal(run_dir, error)) from error


# What a run that ended before attacking leaves: Hydra's config and log, the lock, the settings.
_NOTHING_DONE = frozenset({".hydra", RUN_LOCK, RESUME_SETTINGS, "optuna.journal"})


def discard_if_unused(run_dir: Path) -> bool:
    """Remove ``run_dir`` if it holds nothing but what a run that never started leaves; True if so.

    A bad setting or a missing model found after Hydra made the folder would otherwise leave an
    empty run behind, which ``python -m blackbox.dashboard`` would then pick. Anything else in the
    folder (a result, a trial, a file of the user's) keeps it whole, and so does another process
    holding its lock (a run just starting there has not written anything yet either).
    """
    if not run_dir.is_dir():
        return False
    lock = FileLock(str(run_dir / RUN_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    try:
        if not _holds_nothing(run_dir):
            return False
        for entry in run_dir.iterdir():
            if entry.is_dir():
                for inner in entry.iterdir():
                    inner.unlink()
                entry.rmdir()
            elif entry.name != RUN_LOCK:
                entry.unlink()
    finally:
        lock.release()
    (run_dir / RUN_LOCK).unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:  # a process started there meanwhile: the folder is its now
        return False
    return True


def _holds_nothing(run_dir: Path) -> bool:
    """Only what a run that never started leaves (see :func:`discard_if_unused`)."""
    for entry in run_dir.iterdir():
        if entry.name == ".hydra" and entry.is_dir():
            if not all(inner.is_file() for inner in entry.iterdir()):
                return False
            continue
        if not entry.is_file() or (entry.suffix != ".log" and entry.name not in _NOTHING_DONE):
            return False
        if entry.name != RESUME_SETTINGS and entry.stat().st_size > 0:  # a log line, a journal record
            return False
    return True


def _clear_stale_journal_lock(journal: Path) -> None:
    stale = journal.with_name(journal.name + ".lock")  # Optuna's JournalFileSymlinkLock / OpenLock
    if stale.is_symlink() or stale.exists():
        stale.unlink()
        print(
            f"warning: removed the stale lock {stale} left by a run that was killed while writing "
            "its journal (no other process uses this folder)",
            file=sys.stderr,
        )


def check_run_folder(run_dir: Path, settings: Mapping | None = None) -> None:
    """Every check a run makes of an existing folder before it works there, without changing it.

    The command line calls it before Hydra makes or touches the folder: a refused run then leaves
    nothing. Raises :class:`RunFolderBusyError` (another process holds the folder),
    :class:`~.folder_access.RunFolderError` (the system refuses writes there, or where it would be
    made), :class:`ConfigError` (``settings``, when given, differ from those that made the folder)
    and :class:`~.jsonl.JsonlError` (a damaged line in a file the run keeps).
    """
    check_writable(run_dir)
    if not run_dir.is_dir():
        return
    if (run_dir / RUN_LOCK).exists():  # held by a live run (the kernel drops a dead one's lock)
        lock = FileLock(str(run_dir / RUN_LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise _busy(run_dir) from None
        lock.release()
    if settings is not None:
        check_resume_settings(run_dir, settings, record=False)
    from blackbox.experiment.storage import check_journal  # imports Optuna: only once it is needed

    check_journal(run_dir / "optuna.journal")
    for name in ("results.jsonl", "errors.jsonl"):
        remedy = "Fix or delete that line, or re-run in a new folder (hydra.run.dir=...)"
        check_lines(run_dir / name, "record", remedy)


def resume_settings(cfg: DictConfig, target_name: str) -> dict:
    """The settings a folder's results depend on (kept in ``resume.json``), from a run's composed
    config; ``target_name`` is its ``target=`` choice."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(settings, dict)
    storage = settings.get("storage")
    return {
        **{key: settings.get(key) for key in RESULT_SETTINGS},
        "target": target_name,
        "attack": str(cfg.attack.name),
        "sampler": str(cfg.sampler.name),
        "storage": storage.get("kind") if isinstance(storage, dict) else storage,
    }


def check_resume_settings(run_dir: Path, settings: Mapping, *, record: bool = True) -> None:
    """Record the settings a folder's results depend on (:func:`resume_settings`); refuse a re-run
    there with other values. ``record=False`` only checks (a folder without a record passes)."""
    current = dict(settings)
    path = run_dir / RESUME_SETTINGS
    if not path.exists():
        if record:
            path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
        return
    try:
        recorded = json.loads(path.read_text())
        if not isinstance(recorded, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"{path} is damaged ({error}): it records the settings this folder's results depend on. "
            f"If you know them, delete {path} and re-run with them (it is written again); else re-run "
            "in a new folder (hydra.run.dir=...)"
        ) from None
    recorded = {**_BEFORE_THE_SETTING, **recorded}
    changed = sorted(
        key
        for key in current
        if (key in recorded or key not in _NOT_ALWAYS_RECORDED)
        and _canonical(current[key]) != _canonical(recorded.get(key))
    )
    if changed:
        details = ", ".join(f"{k}: {recorded.get(k)!r} there, {current[k]!r} now" for k in changed)
        raise ConfigError(
            f"{run_dir} holds a run with other settings ({details}); re-run with its settings to "
            "resume it, or start a new folder (hydra.run.dir=...)"
        )


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def record_settings(
    run_dir: Path, config: DictConfig, *, overrides: Sequence[str] = (), hydra: DictConfig | None = None
) -> None:
    """Write the run's own record of its settings: ``.hydra/config.yaml`` (the composed config),
    ``overrides.yaml`` and, given Hydra's settings, ``hydra.yaml``: the files Hydra writes when left
    to (``hydra.output_subdir``), written here only once the folder has accepted the run.

    Each file is replaced whole (written beside it, then renamed): a reader never sees half of one.
    """
    folder = run_dir / RECORD
    folder.mkdir(exist_ok=True)
    files = {"config.yaml": config, "overrides.yaml": OmegaConf.create([str(o) for o in overrides])}
    if hydra is not None:
        files["hydra.yaml"] = OmegaConf.create({"hydra": OmegaConf.to_container(hydra)})
    for name, content in files.items():
        partial = folder / f".{name}.partial"
        OmegaConf.save(content, partial)
        os.replace(partial, folder / name)


def stored_config(run_dir: Path) -> DictConfig:
    """The composed config a run recorded in its folder (``.hydra/config.yaml``, :func:`record_settings`;
    Hydra's own copy in folders made before): the one place a finished run's settings are read back
    (replay, dashboard, report, worker progress).

    Raises:
        FileNotFoundError: ``run_dir`` is not a run folder.
    """
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder of python -m blackbox: {path} is missing")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def stored_settings(run_dir: Path) -> dict:
    """A run folder's saved settings as plain values (interpolations kept), ``{}`` when it has none:
    what ``python -m blackbox.report`` and ``blackbox.robustness_report`` read back."""
    if not (run_dir / ".hydra" / "config.yaml").exists():
        return {}
    settings = OmegaConf.to_container(stored_config(run_dir))
    assert isinstance(settings, dict)
    return settings
