"""The end of a ``python -m blackbox -m ...`` sweep: one table of all its jobs.

:class:`SweepTable` is a Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``): Hydra calls it
in the process that launched the sweep once every job has ended, whichever launcher ran them
(in-process, or joblib's worker processes), so it reads each job's results from its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from blackbox.experiment.summary import sweep_table


def sweep_jobs(sweep_dir: Path) -> list[tuple[str, Path]]:
    """``(overrides, folder)`` of every job folder under ``sweep_dir``, in job-number order."""
    jobs = []
    for folder in sweep_dir.iterdir() if sweep_dir.is_dir() else ():
        overrides = folder / ".hydra" / "overrides.yaml"
        if folder.is_dir() and overrides.is_file():
            values = OmegaConf.load(overrides)
            jobs.append((" ".join(str(v) for v in values), folder))  # type: ignore[union-attr]
    return sorted(
        jobs,
        key=lambda job: (
            not job[1].name.isdigit(),
            int(job[1].name) if job[1].name.isdigit() else 0,
            job[1].name,
        ),
    )


class SweepTable(Callback):
    """Print (and keep in ``<sweep dir>/summary.md``) one table of a sweep's jobs at its end."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = [job for job in sweep_jobs(sweep_dir) if (job[1] / "results.jsonl").exists()]
        if len(jobs) < 2:  # one job's own table says it all (and compare runs keep results.csv)
            return
        table = sweep_table(jobs)
        (sweep_dir / "summary.md").write_text(table + "\n")
        print(f"\nall {len(jobs)} jobs of the sweep (also in {sweep_dir / 'summary.md'}):\n{table}")
