"""The end of a ``python -m blackbox -m ...`` sweep: one table of all its jobs.

:class:`SweepTable` is a Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``). Each job, as it
ends, appends its number, folder, overrides and exit code to ``<sweep dir>/jobs.jsonl``
(:meth:`SweepTable.on_job_end`, called in the job's process, whichever launcher ran it: in-process
or joblib's worker processes); once every job has ended, Hydra calls
:meth:`SweepTable.on_multirun_end` in the launching process, which reads that record and each job's
results from its folder. A job whose every input was skipped, or that left no folder, keeps its row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.jsonl import JsonlError, append_record, read_records
from blackbox.experiment.summary import SweepJob, sweep_table

# In the sweep folder: one line per job, appended as it ends.
JOBS = "jobs.jsonl"
# The exit code of a job that raised (a crash), as `python -m blackbox` exits on one.
_CRASHED = 1


def sweep_jobs(sweep_dir: Path) -> list[SweepJob]:
    """Every job of the sweep in ``sweep_dir``, in job-number order.

    The jobs recorded in ``jobs.jsonl`` (the latest record of each number: a sweep re-run in the same
    folder), then any job folder without a record (a sweep made before the record existed).
    """
    jobs: dict[str, SweepJob] = {}
    try:
        records = read_records(sweep_dir / JOBS)
    except JsonlError:  # a damaged record: the folders still give the rows, without exit codes
        records = []
    for record in records:
        number = str(record["job"])
        jobs[number] = SweepJob(
            number, " ".join(record["overrides"]), sweep_dir / record["folder"], record.get("exit_code")
        )
    recorded = {job.folder for job in jobs.values()}
    for folder in sweep_dir.iterdir() if sweep_dir.is_dir() else ():
        overrides = folder / ".hydra" / "overrides.yaml"
        if folder.is_dir() and overrides.is_file() and folder not in recorded and folder.name not in jobs:
            values = OmegaConf.load(overrides)
            jobs[folder.name] = SweepJob(folder.name, " ".join(str(v) for v in values), folder)  # type: ignore[union-attr]
    return sorted(
        jobs.values(),
        key=lambda job: (
            not job.number.isdigit(),
            int(job.number) if job.number.isdigit() else 0,
            job.number,
        ),
    )


def _is_attack_sweep(config: DictConfig) -> bool:
    """``python -m blackbox``'s sweep (compare and robustness runs keep their own tables)."""
    return config.hydra.job.get("config_name") == "config"


class SweepTable(Callback):
    """Record each job's exit code as it ends; print (and keep in ``<sweep dir>/summary.md``) one
    table of a sweep's jobs at its end."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN or not _is_attack_sweep(config):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        folder = Path(str(config.hydra.runtime.output_dir)).resolve()
        returned = job_return.return_value if job_return.status == JobStatus.COMPLETED else _CRASHED
        record = {
            "job": int(config.hydra.job.num),
            "folder": str(folder.relative_to(sweep_dir)) if folder.is_relative_to(sweep_dir) else str(folder),
            "overrides": [str(v) for v in config.hydra.overrides.task],
            "exit_code": returned if isinstance(returned, int) else _CRASHED,
        }
        sweep_dir.mkdir(parents=True, exist_ok=True)
        append_record(sweep_dir / JOBS, record)  # one whole line: jobs in parallel processes do not mix

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_attack_sweep(config):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = sweep_jobs(sweep_dir)
        if len(jobs) < 2:  # one job's own table says it all
            return
        table = sweep_table(jobs)
        (sweep_dir / "summary.md").write_text(table + "\n")
        print(f"\nall {len(jobs)} jobs of the sweep (also in {sweep_dir / 'summary.md'}):\n{table}")
