"""``python -m blackbox -m ...``: Hydra sweeps run every job, with the basic and the joblib launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import REPO
from tests.services import postgres_url
from tests.test_workers import drop_schema

SMALL = ["working_width=160", "budget=4", "batch_size=2", "progress=false", "early_stop=false"]


def multirun(
    tmp_path: Path, *overrides: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blackbox", "-m", *SMALL, *overrides, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def results(folder: Path) -> list[str]:
    return [json.loads(line)["image"] for line in (folder / "results.jsonl").read_text().splitlines()]


def test_a_sweep_runs_every_job(tmp_path) -> None:
    done = multirun(tmp_path, "eps=10,20", "dataset.names=[chelsea]")
    assert done.returncode == 0, done.stderr
    for job in ("0", "1"):
        assert results(tmp_path / "sweep" / job) == ["chelsea"]
    eps = [json.loads((tmp_path / "sweep" / job / "results.jsonl").read_text())["eps"] for job in ("0", "1")]
    assert eps == [10.0, 20.0]
    # One combined table at the end, a row per job, also kept beside the jobs.
    combined = done.stdout.split("all 2 jobs of the sweep")[1]
    assert "| 0 | " in combined and "eps=10 " in combined and "| 1 | " in combined and "eps=20 " in combined
    assert (tmp_path / "sweep" / "summary.md").read_text().count("dataset.names=[chelsea]") == 2
    assert done.stdout.count("verdict: ") == 2  # each job's one-line verdict


def test_joblib_launched_workers_share_one_postgres_experiment(tmp_path) -> None:
    url = postgres_url()
    experiment = f"test_{uuid.uuid4().hex[:10]}"
    images = ["chelsea", "coffee"]
    try:
        done = multirun(
            tmp_path,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "worker=1,2",
            "storage=postgres",
            f"storage.experiment={experiment}",
            f"storage.artifacts_dir={tmp_path / 'artifacts'}",
            f"dataset.names=[{','.join(images)}]",
            env={"BLACKBOX_POSTGRES_URL": url},
        )
        assert done.returncode == 0, done.stderr
        # Both workers ran to the end and each wrote the whole experiment's results, each image once.
        for job in ("0", "1"):
            assert results(tmp_path / "sweep" / job) == images
        workers = {
            json.loads((tmp_path / "sweep" / j / "experiment.json").read_text())["worker"] for j in "01"
        }
        assert len(workers) == 2
    finally:
        from blackbox.experiment.postgres import schema_for

        drop_schema(url, schema_for(experiment))


def test_the_sweep_table_reads_every_job_folder_in_job_order(tmp_path) -> None:
    from blackbox.settings.sweep_table import sweep_jobs

    for number in (0, 2, 10, 1):
        (tmp_path / str(number) / ".hydra").mkdir(parents=True)
        (tmp_path / str(number) / ".hydra" / "overrides.yaml").write_text(f"- eps={number}\n- budget=3\n")
    (tmp_path / "summary.md").write_text("")  # not a job
    jobs = sweep_jobs(tmp_path)
    assert [job.folder.name for job in jobs] == ["0", "1", "2", "10"]
    assert jobs[3].overrides == "eps=10 budget=3" and jobs[3].exit_code is None  # made before exit codes
